/**
 * A text classifier behind the API: a sentiment head on bert-mini-debian's pooled features (fitted in
 * `before`, seconds). JSON {"texts": […]} answers equal `graft predict`'s predictTexts; concurrent
 * requests are batched (padding differs per batch, so probabilities agree within 1e-5, the classes
 * exactly); over-long texts are marked truncated; an image sent to a text model is a 415.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createServer, predictRoutes } from '../../src/server/app.js';
import { ModelRegistry } from '../../src/server/registry.js';
import { loadTextClassifier, predictTexts } from '../../src/text/saved.js';
import { needs } from '../helpers/assets.js';
import { textClassifier, TEXT_MODEL, digitPng } from './fixtures.js';

const skip = needs(TEXT_MODEL);
const tmp = mkdtempSync(join(tmpdir(), 'graft-serve-text-'));
let app: FastifyInstance | undefined;
let registry: ModelRegistry | undefined;
let url = '';
let dir = '';

before(async () => {
  if (skip) return;
  dir = await textClassifier(join(tmp, 'sentiment'));
  registry = new ModelRegistry({ batching: { maxBatch: 32, maxDelayMs: 30 } });
  await registry.add(undefined, dir);
  app = await createServer();
  await app.register(predictRoutes, { registry });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  await app?.close();
  await registry?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const post = (body: unknown) =>
  fetch(`${url}/v1/models/sentiment/predict?top=2`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

const texts = [
  'what a lovely, clever film',
  'boring and far too long',
  'i enjoyed it a lot',
  'the plot was stupid',
  'funny and moving',
  'tedious from start to end',
];

test('texts over HTTP: one request of several, and concurrent single-text requests (batched), agree with predictTexts', {
  skip,
}, async () => {
  const lib = await predictTexts(loadTextClassifier(dir), texts, { top: 2 });
  const one = await post({ texts });
  assert.equal(one.status, 200);
  assert.deepEqual(
    one.body.predictions.map((p: any) => p.input),
    texts.map((_, i) => `texts[${i}]`),
  );
  const before = registry!.get('sentiment').stats().runs;
  const many = await Promise.all(texts.map((t) => post({ texts: [t] })));
  const runs = registry!.get('sentiment').stats().runs - before;
  assert.ok(runs < texts.length, `${texts.length} concurrent requests in ${runs} runs`);
  for (const [i, l] of lib.entries()) {
    for (const got of [one.body.predictions[i], many[i]!.body.predictions[0]]) {
      assert.deepEqual(
        got.top.map((t: any) => t.label),
        l.top.map((t) => t.label),
      );
      got.top.forEach((t: any, k: number) =>
        assert.ok(
          Math.abs(t.probability - l.top[k]!.probability) <= 1e-5,
          `${texts[i]}: ${t.probability} vs ${l.top[k]!.probability}`,
        ),
      );
    }
  }
  // the head learned something real from its twelve sentences
  assert.equal(one.body.predictions[0].top[0].label, 'positive');
  assert.equal(one.body.predictions[1].top[0].label, 'negative');
});

test("a text longer than the model's maximum length is cut and marked; bad fields are 400s naming them; an image is a 415", {
  skip,
}, async () => {
  const long = await post({ texts: ['great '.repeat(100), 'short'] });
  assert.equal(long.status, 200);
  assert.equal(long.body.predictions[0].truncated, true);
  assert.equal(long.body.predictions[1].truncated, undefined);
  const extra = await post({ texts: ['fine'], top: 3 });
  assert.equal(extra.status, 400);
  assert.match(extra.body.message, /additional properties/);
  const blank = await post({ texts: ['fine', '   '] });
  assert.equal(blank.status, 400);
  assert.match(blank.body.message, /texts\[1\]: is an empty text/);
  const img = await fetch(`${url}/v1/models/sentiment/predict`, {
    method: 'POST',
    body: new Uint8Array(await digitPng(0)),
    headers: { 'content-type': 'image/png' },
  });
  assert.equal(img.status, 415);
  assert.match(((await img.json()) as any).message, /classifies texts, not images/);
  const info = (await (await fetch(`${url}/v1/models/sentiment`)).json()) as any;
  assert.deepEqual(
    [info.kind, info.labels, info.text],
    ['text', ['negative', 'positive'], { maxLength: 32, mode: 'features' }],
  );
});
