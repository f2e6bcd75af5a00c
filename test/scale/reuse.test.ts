/**
 * What keeps the queue's per-shard and per-run costs down, on the Coral MobileNetV2 and 6
 * Fashion-MNIST PNG files: a prepared extraction (one cut, hash and onnxruntime session) reused by
 * several extractFeatures calls gives exactly the vectors of fresh calls and keeps its session; a
 * worker keeps one per model file until the file changes; cache keys handed over (knownKeys) are
 * used without reading the images (they are moved away here), with the same vectors.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath, needs } from '../helpers/assets.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { loadModel } from '../../src/formats/load.js';
import { FeatureCache } from '../../src/features/cache.js';
import { extractFeatures, prepareExtraction } from '../../src/features/extract.js';
import { extractorFor } from '../../src/scale/load.js';

const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const skip = needs(MODEL, FM);
const tmp = mkdtempSync(join(tmpdir(), 'graft-scale-reuse-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function pngs(dir: string, n: number): Promise<string[]> {
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = join(dir, `${i}.png`);
    writeFileSync(
      p,
      await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    );
    out.push(p);
  }
  return out;
}

test('a prepared extraction is reused across calls with the same vectors; known cache keys spare reading the images', {
  skip,
}, async () => {
  const files = await pngs(join(tmp, 'img'), 6);
  const batches = [files.slice(0, 4), files.slice(4)];
  const model = loadModel(MODEL);
  const fresh = await extractFeatures(model, undefined, batches, {
    batchSize: 4,
    cache: FeatureCache.open(join(tmp, 'c0')),
  });

  const p = prepareExtraction(model, undefined);
  try {
    const keys: string[] = [];
    const cache = FeatureCache.open(join(tmp, 'c1'));
    const a = await extractFeatures(model, p.value, batches.slice(0, 1), {
      batchSize: 4,
      cache,
      prepared: p,
      onKeys: (k) => keys.push(...k),
    });
    const s = await p.session();
    const b = await extractFeatures(model, p.value, batches.slice(1), {
      batchSize: 4,
      cache,
      prepared: p,
      onKeys: (k) => keys.push(...k),
    });
    assert.equal(await p.session(), s, 'the same onnxruntime session served both calls and is still open');
    assert.deepEqual([...a, ...b], fresh, 'bit for bit the vectors of a fresh extraction');
    assert.equal(keys.length, 6);
    assert.equal(new Set(keys).size, 6);

    // the images moved away: with their keys known they are not read, and the vectors come from the cache
    const gone = join(tmp, 'moved');
    renameSync(join(tmp, 'img'), gone);
    await assert.rejects(extractFeatures(model, undefined, batches, { batchSize: 4, cache }), /cannot read the file/);
    let computed = -1;
    const again = await extractFeatures(model, undefined, batches, {
      batchSize: 4,
      cache,
      knownKeys: new Map(files.map((f, i) => [f, keys[i]!])),
      onProgress: (q) => (computed = q.computed),
    });
    assert.deepEqual(again, fresh);
    assert.equal(computed, 0);
  } finally {
    await p.release();
  }
});

test('a worker keeps one prepared extraction per model file and node, and prepares again when the file changes', {
  skip,
}, async () => {
  const m = join(tmp, 'model.tflite');
  copyFileSync(MODEL, m);
  const a = extractorFor(m, undefined);
  assert.equal(extractorFor(m, undefined), a);
  assert.equal(a.value, prepareExtraction(loadModel(MODEL), undefined).value);
  const t = new Date(Date.now() + 5000);
  utimesSync(m, t, t);
  const b = extractorFor(m, undefined);
  assert.notEqual(b, a, 'a model file rewritten in place is loaded again');
  assert.equal(b.value, a.value);
  await b.release();
});
