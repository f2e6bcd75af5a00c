/**
 * Raw pixels as a predict body (Content-Type application/vnd.graft.pixels with width, height and
 * channels in the query): the probabilities equal those of the same pixels sent as a PNG, both when
 * they need fitting to the model's input (8×8 digits, grey and RGB, for a 28×28 grey model) and when
 * they already have its size (no decoding at all); wrong sizes and missing fields are 400s naming the
 * field, a declared size over the pixel limit a 413 before anything is allocated.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { createServer, predictRoutes, PIXELS_TYPE } from '../../src/server/app.js';
import { ModelRegistry } from '../../src/server/registry.js';
import { digitClassifier, digitPng } from './fixtures.js';
import { needs } from '../helpers/assets.js';

const skip = needs('datasets/digits-8x8/digits.csv.gz');
const tmp = mkdtempSync(join(tmpdir(), 'graft-serve-pixels-'));
let app: FastifyInstance | undefined, registry: ModelRegistry | undefined;
let url = '';

before(async () => {
  if (skip) return;
  const clf = await digitClassifier(join(tmp, 'digits'));
  registry = new ModelRegistry({ batching: { maxBatch: 1 } });
  await registry.add('digits', clf);
  app = await createServer({});
  await app.register(predictRoutes, { registry });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  await app?.close();
  await registry?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const post = async (body: Uint8Array, type: string, query = '') => {
  const r = await fetch(`${url}/v1/models/digits/predict?top=10${query}`, {
    method: 'POST',
    body: new Uint8Array(body),
    headers: { 'content-type': type },
  });
  return { status: r.status, body: (await r.json()) as any };
};
/** Probabilities by class index. */
const probs = (r: { body: any }): number[] => {
  const out: number[] = [];
  for (const t of r.body.predictions[0].top) out[t.index] = t.probability;
  return out;
};

test('raw pixels give the probabilities of the same pixels sent as a PNG', { skip }, async () => {
  for (const i of [401, 402, 403]) {
    const png = await digitPng(i);
    const grey = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    assert.equal(grey.info.channels, 1);
    const a = await post(png, 'image/png');
    // 8×8 grey: fitted to 28×28 by sharp, as the PNG is
    const b = await post(grey.data, PIXELS_TYPE, `&width=${grey.info.width}&height=${grey.info.height}&channels=1`);
    assert.equal(b.status, 200, JSON.stringify(b.body));
    assert.deepEqual(probs(b), probs(a), `digit ${i}, grey pixels`);
    // 8×8 RGB: made grey and fitted
    const rgb = await sharp(png).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    assert.equal(rgb.info.channels, 3);
    const rgbPng = await sharp(rgb.data, { raw: { width: 8, height: 8, channels: 3 } })
      .png()
      .toBuffer();
    const c = await post(rgb.data, PIXELS_TYPE, '&width=8&height=8&channels=3');
    assert.deepEqual(probs(c), probs(await post(rgbPng, 'image/png')), `digit ${i}, RGB pixels`);
    // already the model's size (28×28 grey): normalized as they are, without sharp
    const big = await sharp(png).resize(28, 28).extractChannel(0).raw().toBuffer();
    const bigPng = await sharp(big, { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toBuffer();
    const d = await post(big, PIXELS_TYPE, '&width=28&height=28&channels=1');
    assert.deepEqual(probs(d), probs(await post(bigPng, 'image/png')), `digit ${i}, model-size pixels`);
  }
});

test('raw pixels of the wrong size, without their size, or too large are refused naming the field', {
  skip,
}, async () => {
  const px = new Uint8Array(8 * 8);
  const short = await post(px.subarray(1), PIXELS_TYPE, '&width=8&height=8&channels=1');
  assert.equal(short.status, 400);
  assert.match(short.body.message, /^body: .*8×8×1 pixels are 64 bytes, the body has 63/);
  const noWidth = await post(px, PIXELS_TYPE, '&height=8&channels=1');
  assert.equal(noWidth.status, 400);
  assert.match(noWidth.body.message, /querystring\/width/);
  const twoChannels = await post(px, PIXELS_TYPE, '&width=8&height=4&channels=2');
  assert.equal(twoChannels.status, 400);
  assert.match(twoChannels.body.message, /channels/);
  const huge = await post(px, PIXELS_TYPE, '&width=100000&height=100000&channels=1');
  assert.equal(huge.status, 413);
  assert.match(huge.body.message, /100000×100000 pixels, over the limit/);
});
