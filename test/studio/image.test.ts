/**
 * Studio's API journey for an image project on real images (three Fashion-MNIST classes (T-shirt, shirt, bag) as PNG
 * uploads, the MNIST network's frozen features): create, upload, list with thumbnails and counts,
 * train (live over server-sent events), evaluation plausible and consistent, predict through graft
 * serve's route, explain, export (the zip holds the classifier folder; its ONNX agrees with the server),
 * and the safety rules (ids that are not ids, non-images, oversize files, cross-origin writes, explanations at once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { createStudio, type Studio } from '../../src/studio/app.js';
import { needs } from '../helpers/assets.js';
import { fashionPngs, multipartBody } from './helpers.js';

const skip = needs('datasets/fashion-mnist', 'models/onnxjs-demo/mnist.onnx');

async function json(s: Studio, method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) {
  const r = await s.app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: r.statusCode, body: r.body ? JSON.parse(r.body) : undefined, raw: r };
}

/** Read a server-sent event stream until the server closes it: [event, data][]. */
async function readEvents(url: string): Promise<[string, any][]> {
  const res = await fetch(url);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('event:'))
    .map((b) => {
      const [e, d] = b.split('\n');
      return [e!.slice(7), JSON.parse(d!.slice(6))];
    });
}

test('image project journey: upload Fashion-MNIST PNGs, train, evaluate, predict, explain, export; safety rules', {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-image-'));
  const s = await createStudio({ dataDir: dir, uiDir: null, maxFileMb: 0.05, maxFiles: 30, maxExplains: 1 });
  try {
    const p = (await json(s, 'POST', '/api/projects', { name: 'Fashion', kind: 'image' })).body;
    assert.match(p.id, /^p[a-z0-9]+$/);
    const imgs = await fashionPngs({ 0: 'tshirt', 6: 'shirt', 8: 'bag' }, 25);
    const classIds: Record<string, string> = {};
    for (const name of ['tshirt', 'shirt', 'bag']) {
      const list = imgs[name]!;
      const c = await json(s, 'POST', `/api/projects/${p.id}/classes`, { name });
      assert.equal(c.status, 201);
      classIds[name] = c.body.id;
      const mp = multipartBody(list.map((b, i) => ({ name: `${name}-${i}.png`, bytes: b, type: 'image/png' })));
      const r = await s.app.inject({ method: 'POST', url: `/api/projects/${p.id}/classes/${c.body.id}/images`, ...mp });
      assert.equal(r.statusCode, 201, r.body);
      assert.equal(JSON.parse(r.body).added.length, 25);
    }
    assert.equal((await json(s, 'POST', `/api/projects/${p.id}/classes`, { name: 'bag' })).status, 409);
    // rename a class; list with counts and thumbnails; remove one example
    assert.equal(
      (await json(s, 'PATCH', `/api/projects/${p.id}/classes/${classIds['tshirt']}`, { name: 't-shirt' })).body.name,
      't-shirt',
    );
    const list = (await json(s, 'GET', `/api/projects/${p.id}/examples?classId=${classIds['bag']}`)).body;
    assert.equal(list.total, 25);
    assert.deepEqual(Object.values(list.counts).sort(), [25, 25, 25]);
    const thumb = await s.app.inject({ method: 'GET', url: list.examples[0].thumbUrl });
    assert.equal(thumb.headers['content-type'], 'image/jpeg');
    assert.equal((await sharp(thumb.rawPayload).metadata()).width, 28);
    assert.equal((await json(s, 'DELETE', `/api/projects/${p.id}/examples/${list.examples[24].id}`)).status, 204);
    const proj = (await json(s, 'GET', `/api/projects/${p.id}`)).body;
    assert.deepEqual(
      proj.classes.map((c: { name: string; count: number }) => `${c.name}:${c.count}`),
      ['t-shirt:25', 'shirt:25', 'bag:24'],
    );

    // safety: ids are never paths; non-images 415 naming the file; oversize 413; cross-origin writes 403
    const bad = await json(s, 'GET', '/api/projects/..%2F..%2Fetc%2Fpasswd');
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /pid/);
    assert.equal((await json(s, 'GET', '/api/blobs/..%2Fstudio.db')).status, 400);
    assert.equal((await json(s, 'GET', '/api/runs/rnothere')).status, 404);
    const fake = multipartBody([
      { name: 'ok.png', bytes: imgs['bag']![0]!, type: 'image/png' },
      { name: 'notes.png', bytes: Buffer.from('not an image at all'), type: 'image/png' },
    ]);
    const r415 = await s.app.inject({
      method: 'POST',
      url: `/api/projects/${p.id}/classes/${classIds['bag']}/images`,
      ...fake,
    });
    assert.equal(r415.statusCode, 415);
    assert.match(JSON.parse(r415.body).message, /notes\.png/);
    assert.equal(
      (await json(s, 'GET', `/api/projects/${p.id}`)).body.exampleCount,
      74,
      'nothing from the refused upload was added',
    );
    const big = multipartBody([{ name: 'big.png', bytes: Buffer.alloc(80_000, 7), type: 'image/png' }]);
    assert.equal(
      (await s.app.inject({ method: 'POST', url: `/api/projects/${p.id}/classes/${classIds['bag']}/images`, ...big }))
        .statusCode,
      413,
    );
    const many = multipartBody(
      Array.from({ length: 31 }, (_, i) => ({ name: `same${i}.png`, bytes: imgs['bag']![0]!, type: 'image/png' })),
    );
    assert.equal(
      (await s.app.inject({ method: 'POST', url: `/api/projects/${p.id}/classes/${classIds['bag']}/images`, ...many }))
        .statusCode,
      413,
    );
    const cross = await json(
      s,
      'POST',
      '/api/projects',
      { name: 'evil', kind: 'image' },
      { origin: 'http://evil.example' },
    );
    assert.equal(cross.status, 403);
    assert.equal((await json(s, 'POST', '/api/projects', { name: 'x', kind: 'audio' })).status, 400);
    const badSettings = await json(s, 'POST', `/api/projects/${p.id}/runs`, {
      backbone: 'local:models/onnxjs-demo/mnist.onnx',
      method: 'features',
      settings: { epochs: -1 },
    });
    assert.equal(badSettings.status, 400);
    assert.match(badSettings.body.message, /epochs/);
    assert.equal(
      (await json(s, 'POST', `/api/projects/${p.id}/runs`, { backbone: 'folder:../../etc', method: 'features' }))
        .status,
      400,
    );

    // train, watching it live
    const address = await s.app.listen({ host: '127.0.0.1', port: 0 });
    const created = await json(s, 'POST', `/api/projects/${p.id}/runs`, {
      backbone: 'local:models/onnxjs-demo/mnist.onnx',
      method: 'features',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const rid = created.body.id;
    // one training at a time: a second run waits in the queue, visible there, and can be cancelled
    const second = await json(s, 'POST', `/api/projects/${p.id}/runs`, {
      backbone: 'local:models/onnxjs-demo/mnist.onnx',
      method: 'features',
    });
    assert.equal(second.body.status, 'queued');
    assert.equal(second.body.queuePosition, 0);
    assert.deepEqual((await json(s, 'GET', '/api/queue')).body, { running: [rid], queued: [second.body.id] });
    assert.equal((await json(s, 'POST', `/api/runs/${second.body.id}/cancel`)).body.status, 'cancelled');
    assert.equal((await json(s, 'POST', `/api/runs/${second.body.id}/cancel`)).status, 409);
    const events = await readEvents(`${address}/api/runs/${rid}/events`);
    assert.ok(
      events.some(([e]) => e === 'progress'),
      `progress events were streamed: ${JSON.stringify(events.map(([e, d]) => [e, d.status ?? d.phase]))}`,
    );
    const last = events.at(-1)!;
    assert.equal(last[0], 'run');
    assert.equal(last[1].status, 'done', last[1].error);
    const run = (await json(s, 'GET', `/api/runs/${rid}`)).body;
    const ev = run.evaluation;
    assert.deepEqual(ev.classes, ['t-shirt', 'shirt', 'bag']);
    assert.equal(ev.heldOut + ev.trained, 74);
    assert.equal(
      ev.confusion.flat().reduce((a: number, b: number) => a + b, 0),
      ev.heldOut,
    );
    const correct = ev.confusion.reduce((a: number, row: number[], i: number) => a + row[i]!, 0);
    assert.equal(ev.accuracy, correct / ev.heldOut);
    assert.ok(ev.accuracy > 0.6, `held-out accuracy ${ev.accuracy} (chance 0.33)`);
    assert.ok(ev.misclassified.length > 0, 'T-shirts and shirts get confused now and then');
    assert.equal(ev.misclassified.length, ev.heldOut - correct);
    for (const m of ev.misclassified) {
      assert.notEqual(m.trueClass, m.predictedClass);
      assert.match(m.thumbUrl, /^\/api\/blobs\/[0-9a-f]{64}\/thumb$/);
      assert.ok(m.probability >= 1 / 3 && m.probability <= 1, `the predicted class's probability ${m.probability}`);
    }
    assert.equal(ev.perClass.length, 3);
    assert.equal(run.modelName, `run-${rid}`);

    // try: graft serve's predict route, raw PNG body
    const bagPng = imgs['bag']![3]!;
    const pr = await s.app.inject({
      method: 'POST',
      url: `/v1/models/run-${rid}/predict`,
      headers: { 'content-type': 'image/png' },
      payload: bagPng,
    });
    assert.equal(pr.statusCode, 200, pr.body);
    const top = JSON.parse(pr.body).predictions[0].top;
    assert.equal(top[0].label, 'bag');
    // explain: a Grad-CAM overlay PNG
    const ex = await json(s, 'POST', `/api/runs/${rid}/explain`, { exampleId: list.examples[3].id });
    assert.equal(ex.status, 200, JSON.stringify(ex.body));
    assert.match(ex.body.overlayUrl, /^data:image\/png;base64,/);
    // explanations run on the server's thread: with room for one at a time, a second at once is refused (503)
    const twice = await Promise.all(
      [0, 1].map(() => json(s, 'POST', `/api/runs/${rid}/explain`, { exampleId: list.examples[3].id })),
    );
    assert.deepEqual(twice.map((r) => r.status).sort(), [200, 503], JSON.stringify(twice.map((r) => r.body)));
    assert.match(twice.find((r) => r.status === 503)!.body.message, /explanations/);
    // try/explain bodies are bounded too: one image to explain; at most maxFile × 20 bytes to predict (413)
    const two = multipartBody([0, 1].map((i) => ({ name: `b${i}.png`, bytes: imgs['bag']![i]!, type: 'image/png' })));
    const ex2 = await s.app.inject({ method: 'POST', url: `/api/runs/${rid}/explain`, ...two });
    assert.equal(ex2.statusCode, 413, ex2.body);
    assert.match(JSON.parse(ex2.body).message, /one image/);
    const heavy = multipartBody(
      Array.from({ length: 21 }, (_, i) => ({ name: `h${i}.png`, bytes: Buffer.alloc(50_000, i), type: 'image/png' })),
    );
    const pr413 = await s.app.inject({ method: 'POST', url: `/api/runs/${rid}/predict`, ...heavy });
    assert.equal(pr413.statusCode, 413, pr413.body);
    assert.match(JSON.parse(pr413.body).message, /add up to/);

    // cancel a running training: fine-tuning with checkpoints, stopped after its first epoch
    const long = (
      await json(s, 'POST', `/api/projects/${p.id}/runs`, {
        backbone: 'local:models/onnxjs-demo/mnist.onnx',
        method: 'finetune',
        settings: { epochs: 200 },
      })
    ).body;
    for (let t0 = Date.now(); (await json(s, 'GET', `/api/runs/${long.id}`)).body.metrics.length < 1; ) {
      assert.ok(Date.now() - t0 < 60_000, 'no epoch in a minute');
      await new Promise((res) => setTimeout(res, 100));
    }
    // predictions are answered while it trains
    const during = await s.app.inject({
      method: 'POST',
      url: `/v1/models/run-${rid}/predict`,
      headers: { 'content-type': 'image/png' },
      payload: bagPng,
    });
    assert.equal(during.statusCode, 200);
    assert.equal((await json(s, 'GET', `/api/runs/${long.id}`)).body.status, 'running');
    assert.equal((await json(s, 'POST', `/api/runs/${long.id}/cancel`)).status, 200);
    let stopped;
    for (let t0 = Date.now(); ; await new Promise((res) => setTimeout(res, 100))) {
      stopped = (await json(s, 'GET', `/api/runs/${long.id}`)).body;
      if (stopped.status !== 'running') break;
      assert.ok(Date.now() - t0 < 30_000, 'the cancelled run did not stop');
    }
    assert.equal(stopped.status, 'cancelled');
    assert.equal(stopped.resumable, 'checkpoint');
    // the cancelled run can resume, so it keeps its snapshot's files; the done run let go of them
    assert.equal(s.db.runFiles(long.id).length, 74);
    assert.deepEqual(s.db.runFiles(rid), []);
    assert.ok(stopped.metrics.length < 200);

    // export: the ONNX and the zip of the folder; the ONNX in onnxruntime-node agrees with the server
    const onnx = await s.app.inject({ method: 'GET', url: `/api/runs/${rid}/export/model.onnx` });
    assert.equal(onnx.statusCode, 200);
    const zip = unzipSync(
      new Uint8Array((await s.app.inject({ method: 'GET', url: `/api/runs/${rid}/export/classifier.zip` })).rawPayload),
    );
    const names = Object.keys(zip).map((n) => n.split('/').pop());
    for (const f of ['model.onnx', 'labels.json', 'report.json', 'evaluation.json'])
      assert.ok(names.includes(f), `${f} in ${names.join(', ')}`);
    assert.deepEqual(Buffer.from(zip[Object.keys(zip).find((n) => n.endsWith('/model.onnx'))!]!), onnx.rawPayload);
    const pre = (await json(s, 'GET', `/api/runs/${rid}/export/preprocess`)).body;
    assert.deepEqual([pre.width, pre.height, pre.channels], [28, 28, 1]);
    const snip = (await json(s, 'GET', `/api/runs/${rid}/export/snippet`)).body;
    assert.match(snip.node, /onnxruntime-node/);
    assert.match(snip.browser, /onnxruntime-web/);
    const session = await ort.InferenceSession.create(onnx.rawPayload);
    const { data } = await sharp(bagPng).greyscale().raw().toBuffer({ resolveWithObject: true });
    const x = Float32Array.from(data, (v) => (v / 255 - pre.mean[0]) / pre.std[0]);
    const out = await session.run({ [pre.inputName]: new ort.Tensor('float32', x, [1, 1, 28, 28]) });
    const probs = out[pre.outputName]!.data as Float32Array;
    assert.ok(
      Math.abs(probs[2]! - top[0].probability) < 1e-4,
      `exported ONNX ${probs[2]} vs server ${top[0].probability}`,
    );
    await session.release();
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('import a folder on the server: one class per subfolder, files decode-checked, the rest reported as skipped', {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-folder-'));
  const s = await createStudio({ dataDir: join(dir, 'data'), uiDir: null });
  try {
    const imgs = await fashionPngs({ 1: 'trouser', 7: 'sneaker' }, 3);
    for (const name of ['trouser', 'sneaker']) {
      mkdirSync(join(dir, 'photos', name), { recursive: true });
      imgs[name]!.forEach((b, i) => writeFileSync(join(dir, 'photos', name, `${i}.png`), b));
    }
    writeFileSync(join(dir, 'photos', 'sneaker', 'broken.png'), Buffer.from('\x89PNG\r\n\x1a\n truncated'));
    writeFileSync(join(dir, 'photos', 'sneaker', 'notes.txt'), 'three sneakers');
    writeFileSync(join(dir, 'photos', 'stray.png'), imgs['trouser']![0]!);
    const p = (await json(s, 'POST', '/api/projects', { name: 'Folder', kind: 'image' })).body;
    assert.equal(
      (await json(s, 'POST', `/api/projects/${p.id}/import/folder`, { path: 'photos' })).status,
      400,
      'relative paths are refused',
    );
    const r = await json(s, 'POST', `/api/projects/${p.id}/import/folder`, { path: join(dir, 'photos') });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.added, 6);
    assert.deepEqual(r.body.classesCreated, ['sneaker', 'trouser']);
    assert.deepEqual(r.body.skipped.map((x: { file: string }) => x.file).sort(), [
      'sneaker/broken.png',
      'sneaker/notes.txt',
    ]);
    const proj = (await json(s, 'GET', `/api/projects/${p.id}`)).body;
    assert.deepEqual(
      proj.classes.map((c: { name: string; count: number }) => `${c.name}:${c.count}`),
      ['sneaker:3', 'trouser:3'],
    );
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--token: every route needs it; ?token= counts for GET (links, EventSource) but never for state changes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-token-'));
  const token = 'a-long-enough-test-token';
  const s = await createStudio({ dataDir: dir, uiDir: null, token });
  try {
    const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
    assert.equal((await fetch(`${url}/api/projects`)).status, 401);
    assert.equal((await fetch(`${url}/api/projects?token=wrong-token-wrong-token`)).status, 401);
    assert.equal((await fetch(`${url}/api/projects?token=${token}`)).status, 200);
    const body = JSON.stringify({ name: 'p', kind: 'text' });
    assert.equal(
      (
        await fetch(`${url}/api/projects?token=${token}`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json' },
        })
      ).status,
      401,
    );
    assert.equal(
      (
        await fetch(`${url}/api/projects`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        })
      ).status,
      201,
    );
    await assert.rejects(createStudio({ dataDir: join(dir, 'other'), uiDir: null, host: '0.0.0.0' }), /token/);
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
