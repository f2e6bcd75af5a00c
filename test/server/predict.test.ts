/**
 * The prediction API over HTTP (a real listening server on 127.0.0.1, port 0) with a real saved image
 * classifier (MNIST features + logistic head, trained in `before`): answers equal the library's
 * (`graft predict`'s classifyImages), concurrent requests are batched (fewer onnxruntime runs than
 * requests) with the same results as unbatched, and the safety rules answer 400/401/403/404/413/415/503.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createServer, predictRoutes } from '../../src/server/app.js';
import { ModelRegistry, prepareImage, UnsupportedInputError } from '../../src/server/registry.js';
import type { BatcherOptions } from '../../src/server/batcher.js';
import { loadModel } from '../../src/formats/load.js';
import { classifyImages } from '../../src/eval/classify.js';
import { getPreprocess } from '../../src/formats/preprocess.js';
import { GraftError } from '../../src/util/errors.js';
import { digitClassifier, digitPng } from './fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'graft-serve-'));
let clf = '';
const pngs: Buffer[] = [];
const files: string[] = [];
const servers: { app: FastifyInstance; registry: ModelRegistry }[] = [];

before(async () => {
  clf = await digitClassifier(join(tmp, 'digits'));
  for (let i = 0; i < 24; i++) {
    pngs.push(await digitPng(400 + i)); // digits the classifier was not trained on
    files.push(join(tmp, `d${i}.png`));
    writeFileSync(files[i]!, pngs[i]!);
  }
});

after(async () => {
  for (const s of servers) {
    await s.app.close();
    await s.registry.close();
  }
  rmSync(tmp, { recursive: true, force: true });
});

/** A listening server over the digit classifier; returns its base URL. */
async function serve(o: { batching?: BatcherOptions; token?: string; bodyLimitMb?: number; maxInputs?: number } = {}) {
  const registry = new ModelRegistry({ batching: o.batching ?? {} });
  await registry.add(undefined, clf);
  const app = await createServer({
    ...(o.token ? { token: o.token } : {}),
    ...(o.bodyLimitMb ? { bodyLimitMb: o.bodyLimitMb } : {}),
    ...(o.maxInputs ? { maxInputs: o.maxInputs } : {}),
  });
  await app.register(predictRoutes, { registry });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  servers.push({ app, registry });
  return { url, registry, app };
}

const png = (b: Uint8Array, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  body: new Uint8Array(b),
  headers: { 'content-type': 'image/png', ...headers },
});

function multipart(items: { name: string; bytes: Uint8Array; type?: string }[]): FormData {
  const f = new FormData();
  for (const it of items)
    f.append('file', new Blob([new Uint8Array(it.bytes)], { type: it.type ?? 'image/png' }), it.name);
  return f;
}

/** A PNG whose header (IHDR, CRC fixed) declares width × height: a few hundred bytes claiming a huge image. */
function declaredSize(png: Buffer, width: number, height: number): Buffer {
  const b = Buffer.from(png);
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  let c = ~0;
  for (const x of b.subarray(12, 29)) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  b.writeUInt32BE(~c >>> 0, 29);
  return b;
}

async function json(r: Response) {
  return { status: r.status, body: (await r.json()) as any };
}

test("predictions over HTTP (raw image, multipart) equal the library's; models, healthz and openapi.json describe the server", async () => {
  const { url } = await serve();
  const lib = await classifyImages(loadModel(clf), files.slice(0, 4), { top: 3 });

  const raw = await json(await fetch(`${url}/v1/models/digits/predict?top=3`, png(pngs[0]!)));
  assert.equal(raw.status, 200);
  assert.deepEqual(raw.body, {
    model: 'digits',
    predictions: [
      { input: 'image', top: lib[0]!.top.map((t) => ({ label: t.label, index: t.index, probability: t.probability })) },
    ],
  });

  const mp = await json(
    await fetch(`${url}/v1/models/digits/predict?top=3`, {
      method: 'POST',
      body: multipart(pngs.slice(0, 4).map((b, i) => ({ name: `d${i}.png`, bytes: b }))),
    }),
  );
  assert.equal(mp.status, 200);
  assert.deepEqual(
    mp.body.predictions.map((p: any) => p.input),
    ['d0.png', 'd1.png', 'd2.png', 'd3.png'],
  );
  assert.deepEqual(
    mp.body.predictions.map((p: any) => p.top),
    lib.map((r) => r.top),
  );

  const models = await json(await fetch(`${url}/v1/models`));
  assert.equal(models.body.models.length, 1);
  const m = models.body.models[0];
  assert.deepEqual(
    [m.name, m.kind, m.labels.length, m.image],
    ['digits', 'image', 10, { width: 28, height: 28, channels: 1 }],
  );
  assert.equal(m.batching.inputs, 5);
  assert.deepEqual(await (await fetch(`${url}/healthz`)).json(), { status: 'ok', models: 1 });

  const doc = await json(await fetch(`${url}/openapi.json`));
  assert.equal(doc.body.openapi, '3.0.3');
  assert.deepEqual(Object.keys(doc.body.paths).sort(), [
    '/healthz',
    '/openapi.json',
    '/v1/models',
    '/v1/models/{name}',
    '/v1/models/{name}/predict',
  ]);
  const post = doc.body.paths['/v1/models/{name}/predict'].post;
  assert.deepEqual(Object.keys(post.requestBody.content).sort(), [
    'application/json',
    'application/vnd.graft.pixels',
    'image/*',
    'multipart/form-data',
  ]);
  assert.ok(post.responses['503'] && post.responses['415'] && post.responses['413']);
});

test('the held-out digits are classified well above chance over HTTP', async () => {
  const { url } = await serve();
  const { readPixelCsv } = await import('../../src/data/tabular.js');
  const { asset } = await import('../helpers/assets.js');
  const labels = readPixelCsv(asset('datasets/digits-8x8/digits.csv.gz')).labels;
  const r = await json(
    await fetch(`${url}/v1/models/digits/predict?top=1`, {
      method: 'POST',
      body: multipart(pngs.map((b, i) => ({ name: String(400 + i), bytes: b }))),
    }),
  );
  const right = r.body.predictions.filter((p: any) => p.top[0].label === `digit-${labels[Number(p.input)]}`).length;
  assert.ok(right >= 18, `${right} of 24 right`);
});

test('concurrent requests run as batches (fewer onnxruntime runs than requests) with the same results as one at a time', async () => {
  const batched = await serve({ batching: { maxBatch: 32, maxDelayMs: 50 } });
  const alone = await serve({ batching: { maxBatch: 1 } });
  const ask = (url: string) =>
    Promise.all(pngs.map((b) => fetch(`${url}/v1/models/digits/predict?top=10`, png(b)).then(json)));
  const [a, b] = [await ask(batched.url), await ask(alone.url)];
  assert.ok(a.every((r) => r.status === 200) && b.every((r) => r.status === 200));
  const sa = batched.registry.get('digits').stats(),
    sb = alone.registry.get('digits').stats();
  assert.equal(sa.inputs, 24);
  assert.ok(sa.runs <= 4, `24 concurrent requests ran in ${sa.runs} batches (largest ${sa.largestBatch})`);
  assert.ok(sa.largestBatch >= 6);
  assert.deepEqual([sb.runs, sb.largestBatch], [24, 1]);
  for (let i = 0; i < 24; i++) {
    const pa = a[i]!.body.predictions[0].top,
      pb = b[i]!.body.predictions[0].top;
    assert.deepEqual(
      pa.map((t: any) => t.index),
      pb.map((t: any) => t.index),
    );
    pa.forEach((t: any, k: number) =>
      assert.ok(
        Math.abs(t.probability - pb[k].probability) <= 1e-6,
        `image ${i} class ${t.index}: ${t.probability} vs ${pb[k].probability}`,
      ),
    );
  }
});

test('a full queue answers 503 at once; the queued inputs still run', async () => {
  const { url, registry } = await serve({ batching: { maxBatch: 4, maxDelayMs: 300, maxQueue: 3 } });
  const first = fetch(`${url}/v1/models/digits/predict`, {
    method: 'POST',
    body: multipart(pngs.slice(0, 3).map((b, i) => ({ name: `${i}.png`, bytes: b }))),
  });
  await new Promise((r) => setTimeout(r, 50)); // admitted, waiting for its batch
  const refused = await json(await fetch(`${url}/v1/models/digits/predict`, png(pngs[3]!)));
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error, 'unavailable');
  assert.match(refused.body.message, /queue is full \(3 inputs waiting\)/);
  assert.equal((await json(await first)).status, 200);
  assert.equal(registry.get('digits').stats().refused, 1);
  assert.equal((await fetch(`${url}/v1/models/digits/predict`, png(pngs[3]!))).status, 200);
});

test('errors: 415 for a file that is not an image (named), 413 for size and count limits, 400 for bad JSON and fields, 404 for an unknown model', async () => {
  const { url } = await serve({ bodyLimitMb: 0.05, maxInputs: 3 });
  const text = Buffer.from('this is not a PNG, whatever its name and type say\n'.repeat(5));
  const r1 = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: multipart([
        { name: 'ok.png', bytes: pngs[0]! },
        { name: 'cat.png', bytes: text },
      ]),
    }),
  );
  assert.equal(r1.status, 415);
  assert.equal(r1.body.error, 'unsupported_media_type');
  assert.match(r1.body.message, /"cat\.png" is not an image/);
  const r2 = await json(
    await fetch(`${url}/v1/models/digits/predict?filename=x.jpg`, png(text, { 'content-type': 'image/jpeg' })),
  );
  assert.equal(r2.status, 415);
  assert.match(r2.body.message, /"x\.jpg" is not an image/);
  // a truncated PNG: its header reads, its pixels do not
  const cut = await json(
    await fetch(`${url}/v1/models/digits/predict?filename=cut.png`, png(pngs[0]!.subarray(0, 60))),
  );
  assert.equal(cut.status, 415);
  assert.match(cut.body.message, /"cut\.png"/);
  const svg = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28" fill="#fff"/></svg>',
  );
  const r2b = await json(
    await fetch(`${url}/v1/models/digits/predict?filename=a.svg`, png(svg, { 'content-type': 'image/svg+xml' })),
  );
  assert.equal(r2b.status, 415);
  assert.match(r2b.body.message, /"a\.svg" is a SVG file, not an accepted image/);
  const r3 = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: 'hello',
      headers: { 'content-type': 'text/plain' },
    }),
  );
  assert.equal(r3.status, 415);

  const big = Buffer.alloc(60 * 1024, 7);
  const r4 = await json(await fetch(`${url}/v1/models/digits/predict`, png(big)));
  assert.equal(r4.status, 413);
  assert.equal(r4.body.error, 'payload_too_large');
  const r5 = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: multipart(pngs.slice(0, 4).map((b, i) => ({ name: `${i}.png`, bytes: b }))),
    }),
  );
  assert.equal(r5.status, 413);
  const r6 = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: multipart([{ name: 'big.png', bytes: big }]),
    }),
  );
  assert.equal(r6.status, 413);
  // a small PNG that declares a huge image: refused from its header, nothing allocated for it
  const huge = declaredSize(pngs[0]!, 10000, 5000);
  const r7 = await json(await fetch(`${url}/v1/models/digits/predict?filename=huge.png`, png(huge)));
  assert.equal(r7.status, 413);
  assert.match(r7.body.message, /"huge\.png" is 10000×5000 pixels, over the limit/);

  const bad = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: '{"texts": [',
      headers: { 'content-type': 'application/json' },
    }),
  );
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, 'bad_request');
  const field = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: JSON.stringify({ texts: 'one' }),
      headers: { 'content-type': 'application/json' },
    }),
  );
  assert.equal(field.status, 400);
  assert.match(field.body.message, /texts/);
  const empty = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: JSON.stringify({ texts: ['ok', ''] }),
      headers: { 'content-type': 'application/json' },
    }),
  );
  assert.equal(empty.status, 400);
  assert.match(empty.body.message, /texts\/1/);
  const top = await json(await fetch(`${url}/v1/models/digits/predict?top=0`, png(pngs[0]!)));
  assert.equal(top.status, 400);
  assert.match(top.body.message, /top/);
  const kind = await json(
    await fetch(`${url}/v1/models/digits/predict`, {
      method: 'POST',
      body: JSON.stringify({ texts: ['a digit?'] }),
      headers: { 'content-type': 'application/json' },
    }),
  );
  assert.equal(kind.status, 415);
  assert.match(kind.body.message, /classifies images, not texts/);
  const missing = await json(await fetch(`${url}/v1/models/nope/predict`, png(pngs[0]!)));
  assert.deepEqual([missing.status, missing.body.error], [404, 'not_found']);
  const badName = await json(await fetch(`${url}/v1/models/${encodeURIComponent('../etc')}/predict`, png(pngs[0]!)));
  assert.equal(badName.status, 400);
  assert.match(badName.body.message, /name/);
});

test('a token guards every route (401); cross-origin POSTs from a browser are refused (403) unless they carry the token; a foreign Host is refused on loopback', async () => {
  const token = 'a-test-token-0123456789';
  const { url } = await serve({ token });
  for (const path of ['/healthz', '/v1/models', '/openapi.json']) {
    const r = await fetch(url + path);
    assert.equal(r.status, 401, path);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="graft"');
    assert.equal(((await r.json()) as any).error, 'unauthorized');
  }
  assert.equal(
    (await fetch(`${url}/v1/models/digits/predict`, png(pngs[0]!, { authorization: 'Bearer wrong-token-0123456789' })))
      .status,
    401,
  );
  const auth = { authorization: `Bearer ${token}` };
  assert.equal((await fetch(`${url}/v1/models`, { headers: auth })).status, 200);
  // with the token, a cross-origin request cannot be a forgery: allowed
  assert.equal(
    (await fetch(`${url}/v1/models/digits/predict`, png(pngs[0]!, { ...auth, origin: 'https://evil.example' }))).status,
    200,
  );

  const open = await serve();
  const post = (h: Record<string, string>) =>
    fetch(`${open.url}/v1/models/digits/predict`, png(pngs[0]!, h)).then(json);
  const evil = await post({ origin: 'https://evil.example' });
  assert.deepEqual([evil.status, evil.body.error], [403, 'forbidden']);
  assert.match(evil.body.message, /cross-origin request refused \(Origin: https:\/\/evil\.example\)/);
  assert.equal((await post({ 'sec-fetch-site': 'cross-site' })).status, 403);
  assert.equal((await post({ 'sec-fetch-site': 'same-site' })).status, 403); // another port on localhost is same-site
  assert.equal((await post({ origin: 'null' })).status, 403);
  const self = new URL(open.url);
  assert.equal((await post({ origin: `http://${self.host}`, 'sec-fetch-site': 'same-origin' })).status, 200);
  assert.equal((await post({})).status, 200); // no Origin: not a browser
  // a DNS-rebinding page reaches 127.0.0.1 under its own name: refused
  const { request } = await import('node:http');
  const status = await new Promise<number>((res, rej) => {
    const q = request(
      { host: '127.0.0.1', port: self.port, path: '/v1/models', headers: { host: `evil.example:${self.port}` } },
      (r) => {
        r.resume();
        res(r.statusCode!);
      },
    );
    q.on('error', rej);
    q.end();
  });
  assert.equal(status, 403);
});

test('createServer refuses a non-loopback host without a token, and a short token', async () => {
  await assert.rejects(
    createServer({ host: '0.0.0.0' }),
    (e: GraftError) => e instanceof GraftError && /needs a token/.test(e.message),
  );
  await assert.rejects(createServer({ host: '192.168.1.20' }), /needs a token/);
  await assert.rejects(createServer({ host: '0.0.0.0', token: 'short' }), /at least 16 characters/);
  const app = await createServer({ host: '0.0.0.0', token: 'a-long-enough-token-123' });
  await app.close();
});

test('the registry: names are checked, never paths; add, replace and remove at run time', async () => {
  const registry = new ModelRegistry();
  try {
    await assert.rejects(registry.add('../x', clf), /invalid model name/);
    await assert.rejects(registry.add('..', clf), /invalid model name/);
    await assert.rejects(registry.add('a'.repeat(65), clf), /invalid model name/);
    await registry.add('one', clf);
    await assert.rejects(registry.add('one', clf), /already served/);
    await registry.add('one', clf, { replace: true });
    await registry.add('two', clf);
    assert.deepEqual(
      registry.list().map((m) => m.name),
      ['one', 'two'],
    );
    const p = registry.get('two').predictImages([{ name: 'a', bytes: pngs[0]! }]);
    assert.equal(await registry.remove('two'), true); // the queued input still runs
    assert.equal((await p).length, 1);
    assert.throws(() => registry.get('two'), /no model named "two"/);
    assert.equal(await registry.remove('two'), false);
    await assert.rejects(
      prepareImage({ name: 'n.png', bytes: new Uint8Array([1, 2, 3]) }, getPreprocess(loadModel(clf))!),
      UnsupportedInputError,
    );
  } finally {
    await registry.close();
  }
});

test('ThreadedSession: the model runs on a worker thread with the same results as Session; a failed run is a 500 naming the model', async () => {
  const { ThreadedSession, ModelRunError } = await import('../../src/server/threaded-session.js');
  const { Session } = await import('../../src/runtime/session.js');
  const { imagesToTensor } = await import('../../src/data/image.js');
  const g = loadModel(clf);
  const x = await imagesToTensor(pngs.slice(0, 3), getPreprocess(g)!);
  const plain = await Session.fromGraph(g, {}, 'plain');
  const want = (await plain.run({ [g.dataInputs()[0]!.name]: x }))['probabilities']!;
  await plain.release();
  const t = await ThreadedSession.fromGraph(g, {}, 'digits');
  try {
    const got = (await t.run({ [g.dataInputs()[0]!.name]: { ...x, data: (x.data as Float32Array).slice() } }))[
      'probabilities'
    ]!;
    assert.deepEqual(got.dims, want.dims);
    assert.deepEqual(Array.from(got.data as Float32Array), Array.from(want.data as Float32Array));
    const bad = { dtype: 'float32' as const, dims: [1, 1, 5, 5], data: new Float32Array(25) };
    await assert.rejects(
      t.run({ [g.dataInputs()[0]!.name]: bad }),
      (e: Error) => e instanceof ModelRunError && e.statusCode === 500 && /^digits: onnxruntime failed/.test(e.message),
    );
  } finally {
    await t.release();
  }
});
