/**
 * Studio is safe by default (issue 13, item 5), checked route by route: every state-changing route the
 * app has (listed from the app itself, so a new one is checked too) refuses a cross-origin browser
 * request (403) before doing anything; on loopback a Host that is not loopback is refused (DNS
 * rebinding); bad JSON, missing, unknown or too many fields → 400 naming the field; a body of another
 * type → 415; and the bounds answer 503 instead of growing: the training queue, uploads at once and open
 * event streams (explanations at once, and the 413s of try/explain bodies: test/studio/image.test.ts).
 * Images are made with sharp; the runs point at a file that is no model (they fail in their worker), so
 * no external asset is needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { createStudio, type Studio } from '../../src/studio/app.js';
import { multipartBody } from './helpers.js';

async function call(s: Studio, method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) {
  const r = await s.app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: r.statusCode, body: r.body ? JSON.parse(r.body) : undefined };
}

const pngs = (n: number) =>
  Promise.all(
    Array.from({ length: n }, (_, i) =>
      sharp({ create: { width: 8, height: 8, channels: 3, background: { r: i * 20, g: 100, b: 200 - i * 20 } } })
        .png()
        .toBuffer(),
    ),
  );

test('every state-changing route refuses cross-origin browser requests (403) and changes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-csrf-'));
  const s = await createStudio({ dataDir: dir, uiDir: null });
  try {
    const p = (await call(s, 'POST', '/api/projects', { name: 'P', kind: 'text' })).body;
    const c = (await call(s, 'POST', `/api/projects/${p.id}/classes`, { name: 'k' })).body;
    const ex = (await call(s, 'POST', `/api/projects/${p.id}/classes/${c.id}/texts`, { texts: ['one'] })).body.added[0];
    const values: Record<string, string> = {
      pid: p.id,
      cid: c.id,
      eid: ex.id,
      rid: 'rnothere',
      sha: 'a'.repeat(64),
      name: 'run-rnothere',
    };
    const changing = s.routes.filter((r) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method));
    assert.ok(
      changing.length >= 15,
      `${changing.length} state-changing routes: ${changing.map((r) => `${r.method} ${r.url}`).join(', ')}`,
    );
    for (const r of changing) {
      const url = r.url.replace(/:(\w+)/g, (_, k: string) => values[k] ?? 'x');
      for (const headers of [
        { origin: 'http://evil.example' },
        { 'sec-fetch-site': 'cross-site' },
        { origin: 'null' },
      ] as Record<string, string>[]) {
        const res = await call(s, r.method, url, { name: 'evil', texts: ['evil'] }, headers);
        assert.equal(
          res.status,
          403,
          `${r.method} ${url} with ${JSON.stringify(headers)}: ${JSON.stringify(res.body)}`,
        );
        assert.equal(res.body.error, 'forbidden');
      }
    }
    // nothing changed; and the same-origin page's own requests pass
    const after = (await call(s, 'GET', `/api/projects/${p.id}`)).body;
    assert.deepEqual(
      [after.name, after.classes.map((k: { name: string }) => k.name), after.exampleCount],
      ['P', ['k'], 1],
    );
    const own = await call(
      s,
      'PATCH',
      `/api/projects/${p.id}`,
      { name: 'Q' },
      { origin: 'http://127.0.0.1', host: '127.0.0.1', 'sec-fetch-site': 'same-origin' },
    );
    assert.equal(own.status, 200, JSON.stringify(own.body));

    // loopback without a token: a page of another site reaching it through DNS rebinding names another Host (403)
    const rebound = await call(s, 'GET', '/api/projects', undefined, { host: 'evil.example:7860' });
    assert.equal(rebound.status, 403);
    assert.match(rebound.body.message, /not a loopback name/);
    assert.equal((await call(s, 'GET', '/api/projects', undefined, { host: 'localhost:7860' })).status, 200);

    // 400 naming the field, 415 for another body type
    const badJson = await s.app.inject({
      method: 'POST',
      url: '/api/projects',
      headers: { 'content-type': 'application/json' },
      payload: '{"name": "x", ',
    });
    assert.equal(badJson.statusCode, 400);
    assert.equal(JSON.parse(badJson.body).error, 'bad_request');
    const missing = await call(s, 'POST', '/api/projects', { name: 'x' });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /kind/);
    const extra = await call(s, 'POST', `/api/projects/${p.id}/classes`, { name: 'x', evil: true });
    assert.equal(extra.status, 400);
    assert.match(extra.body.message, /evil|additional/);
    const xml = await s.app.inject({
      method: 'POST',
      url: '/api/projects',
      headers: { 'content-type': 'application/xml' },
      payload: '<p/>',
    });
    assert.equal(xml.statusCode, 415);
    const tooMany = await call(s, 'POST', `/api/projects/${p.id}/classes/${c.id}/texts`, {
      texts: Array.from({ length: 1001 }, () => 't'),
    });
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.body.message, /texts/);
    assert.equal(
      (await call(s, 'GET', `/api/projects/${p.id}/examples?limit=100000`)).status,
      400,
      'page size bounded',
    );
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bounds answer 503: the training queue, uploads at once, open event streams', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-bounds-'));
  const s = await createStudio({
    dataDir: join(dir, 'data'),
    uiDir: null,
    maxQueuedRuns: 1,
    maxUploads: 1,
    maxStreams: 1,
  });
  const streams: AbortController[] = [];
  try {
    const p = (await call(s, 'POST', '/api/projects', { name: 'P', kind: 'image' })).body;
    const imgs = await pngs(8);
    const cls: string[] = [];
    for (const name of ['a', 'b']) cls.push((await call(s, 'POST', `/api/projects/${p.id}/classes`, { name })).body.id);
    // two uploads at once with room for one: one is stored, the other refused whole
    const up = (cid: string, from: number) =>
      s.app.inject({
        method: 'POST',
        url: `/api/projects/${p.id}/classes/${cid}/images`,
        ...multipartBody(
          imgs.slice(from, from + 4).map((b, i) => ({ name: `${from + i}.png`, bytes: b, type: 'image/png' })),
        ),
      });
    const both = await Promise.all([up(cls[0]!, 0), up(cls[1]!, 4)]);
    assert.deepEqual(both.map((r) => r.statusCode).sort(), [201, 503], both.map((r) => r.body).join(' | '));
    const refused = both.find((r) => r.statusCode === 503)!;
    assert.equal(JSON.parse(refused.body).error, 'unavailable');
    assert.match(JSON.parse(refused.body).message, /uploads/);
    // the gate opens again when the upload ends
    const i503 = both.findIndex((r) => r.statusCode === 503);
    assert.equal((await up(cls[i503]!, i503 * 4)).statusCode, 201);
    assert.deepEqual(
      (await call(s, 'GET', `/api/projects/${p.id}`)).body.classes.map((k: { count: number }) => k.count),
      [4, 4],
    );

    // the queue: one run trains, one waits, the next is refused
    const notAModel = join(dir, 'not-a-model.onnx');
    writeFileSync(notAModel, 'not a model');
    const body = { backbone: `folder:${notAModel}`, method: 'features' };
    const r1 = await call(s, 'POST', `/api/projects/${p.id}/runs`, body);
    const r2 = await call(s, 'POST', `/api/projects/${p.id}/runs`, body);
    assert.deepEqual([r1.status, r2.status, r2.body.status], [201, 201, 'queued'], JSON.stringify([r1.body, r2.body]));
    const r3 = await call(s, 'POST', `/api/projects/${p.id}/runs`, body);
    assert.equal(r3.status, 503, JSON.stringify(r3.body));
    assert.match(r3.body.message, /queue is full/);
    assert.equal(
      (await call(s, 'GET', `/api/projects/${p.id}/runs`)).body.runs.length,
      2,
      'the refused run was not stored',
    );

    // event streams: the queued run's stream stays open; a second stream is refused until it closes
    const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
    const open = async () => {
      const ac = new AbortController();
      streams.push(ac);
      return fetch(`${url}/api/runs/${r2.body.id}/events`, { signal: ac.signal });
    };
    const first = await open();
    assert.equal(first.status, 200);
    const second = await open();
    assert.equal(second.status, 503);
    assert.match(((await second.json()) as { message: string }).message, /event streams/);
    streams[0]!.abort();
    let third: Response;
    for (let t0 = Date.now(); ; await new Promise((res) => setTimeout(res, 50))) {
      third = await open();
      if (third.status !== 503) break;
      await third.body?.cancel();
      assert.ok(Date.now() - t0 < 5000, 'the closed stream did not free its place');
    }
    assert.equal(third.status, 200);
    assert.equal((await call(s, 'POST', `/api/runs/${r2.body.id}/cancel`)).status, 200);
  } finally {
    for (const ac of streams) ac.abort();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
