/**
 * `graft train images --queue` as a library call (finetuneImagesOnQueue) on a real Redis with two
 * workers in this process: 30 Fashion-MNIST PNG files (3 classes), the Coral MobileNetV2, the top
 * block fine-tuned on activations cached below the cut, 2 augmented views per training image. The
 * activation shards fill the cache; the training job computes none itself; the saved classifier,
 * the metrics and the loss are those of the local trainImageClassifier bit for bit.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath, needs } from '../helpers/assets.js';
import { needsRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { trainImageClassifier } from '../../src/finetune/train-images.js';
import { finetuneImagesOnQueue, activationShards } from '../../src/scale/finetune.js';
import { startWorker, type RunningWorker } from '../../src/scale/worker.js';

const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const skip = needsRedis() || needs(MODEL, FM);
const tmp = mkdtempSync(join(tmpdir(), 'graft-scale-ft-'));
let redis: TestRedis | undefined;
const workers: RunningWorker[] = [];
const data = join(tmp, 'data');

before(async () => {
  if (skip) return;
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  const names: Record<number, string> = { 0: 'tshirt', 1: 'trouser', 7: 'sneaker' };
  const count: Record<number, number> = {};
  for (let i = 0; i < d.labels.length; i++) {
    const y = d.labels[i]!,
      name = names[y];
    if (!name || (count[y] ?? 0) >= 10) continue;
    count[y] = (count[y] ?? 0) + 1;
    mkdirSync(join(data, name), { recursive: true });
    writeFileSync(
      join(data, name, `${i}.png`),
      await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    );
  }
  redis = await startRedis();
  workers.push(await startWorker(redis.url), await startWorker(redis.url));
});

after(async () => {
  for (const w of workers) await w.close();
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test('activation shards are whole batches of 32 (image, view) pairs', () => {
  assert.deepEqual(
    activationShards([...Array(40).keys()], 2, 32).map((s) => s.length),
    [16, 16, 8],
  );
  assert.deepEqual(
    activationShards([...Array(40).keys()], 3, 40).map((s) => s.length),
    [32, 8],
  ); // 32 images × 3 views = 3 batches
  assert.deepEqual(
    activationShards([...Array(70).keys()], 1, 1).map((s) => s.length),
    [32, 32, 6],
  );
});

test('fine-tuning the top block on the queue: the local classifier bit for bit; the training job computes no activation', {
  skip,
}, async () => {
  const opts = { epochs: 1, batchSize: 8, seed: 1, topBlocks: 1, augment: true, views: 2 };
  const here = await trainImageClassifier(MODEL, data, {
    ...opts,
    cacheDir: join(tmp, 'cache-here'),
    out: join(tmp, 'here'),
  });
  assert.equal(here.data, 'images');
  const seen: number[] = [];
  const q = await finetuneImagesOnQueue(
    MODEL,
    data,
    { ...opts, cacheDir: join(tmp, 'cache-q'), out: join(tmp, 'q') },
    {
      queue: redis!.url,
      shardSize: 32,
      onProgress: (p) => seen.push(p.examples),
    },
  );
  const l = here.report,
    r = q.report;
  // 7 train × 2 views + 1 val + 2 test per class: train 21 images in shards of 16, then val, then test
  assert.equal(r.queue.shards, 4);
  assert.deepEqual([r.cache.computed, r.cache.cached], [51, 0], 'every activation computed once, by the shards');
  assert.equal(seen.at(-1), 51);
  assert.deepEqual(
    {
      cut: r.cut,
      examples: r.examples,
      views: r.views,
      steps: r.steps,
      finalLoss: r.finalLoss,
      probe: r.probe,
      validation: r.validation,
      test: r.test,
      maxAbsDiff: r.export?.maxAbsDiff,
    },
    {
      cut: l.cut,
      examples: l.examples,
      views: l.views,
      steps: l.steps,
      finalLoss: l.finalLoss,
      probe: l.probe,
      validation: l.validation,
      test: l.test,
      maxAbsDiff: l.export?.maxAbsDiff,
    },
  );
  for (const f of ['model.onnx', 'labels.json'])
    assert.ok(
      readFileSync(join(tmp, 'q', f)).equals(readFileSync(join(tmp, 'here', f))),
      `${f}: byte for byte the local one`,
    );
});
