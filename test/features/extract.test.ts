import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadModel } from '../../src/formats/load.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { extractFeatures, defaultFeatureNode, type ExtractProgress } from '../../src/features/extract.js';
import { FeatureCache } from '../../src/features/cache.js';
import { imagesToTensor } from '../../src/data/image.js';
import { getPreprocess } from '../../src/formats/preprocess.js';
import { asset, needs } from '../helpers/assets.js';

test('MobileNetV2 features of Fashion-MNIST images: 1280-d, cached on the second run', {
  skip: needs('models/coral/mobilenet_v2_1.0_224_quant.tflite', 'datasets/fashion-mnist'),
}, async () => {
  const model = loadModel(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
  assert.equal(defaultFeatureNode(model), 'MobilenetV2/Logits/AvgPool');
  const fm = asset('datasets/fashion-mnist');
  const d = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  // 8 grey 28×28 images as PNG bytes; the model's preprocessing makes them 3 × 224 × 224
  const pngs = await Promise.all(
    d.images.slice(0, 8).map((px) =>
      sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    ),
  );
  const dir = mkdtempSync(join(tmpdir(), 'graft-extract-'));
  try {
    const cache = FeatureCache.open(dir);
    let last: ExtractProgress | undefined;
    const batches = [pngs.slice(0, 5), pngs.slice(5)];
    const f1 = await extractFeatures(model, undefined, batches, { batchSize: 3, cache, onProgress: (p) => (last = p) });
    assert.equal(f1.length, 8);
    for (const f of f1) {
      assert.equal(f.length, 1280);
      assert.ok(
        f.every((v) => v >= 0 && v <= 6.0001),
        'ReLU6 then average',
      );
    }
    assert.ok(
      f1[0]!.some((v, i) => Math.abs(v - f1[1]![i]!) > 1e-3),
      'different images, different features',
    );
    assert.deepEqual(last, { examples: 8, cached: 0, computed: 8, runs: 3, skipped: 0 }); // 5 → 3+2, 3 → 3
    assert.equal(cache.size, 8);

    // second run, from a fresh handle on the same folder: nothing computed, the same vectors bit for bit
    // (a run with a cache returns the fp16 values it stores, computed or read)
    const again = FeatureCache.open(dir);
    const f2 = await extractFeatures(
      model,
      undefined,
      (async function* () {
        yield pngs.slice(0, 4);
        yield pngs.slice(4);
      })(),
      {
        batchSize: 4,
        cache: again,
        onProgress: (p) => (last = p),
      },
    );
    assert.deepEqual(last, { examples: 8, cached: 8, computed: 0, runs: 0, skipped: 0 });
    assert.deepEqual(f2, f1);

    // a 4-D cut point is global-average-pooled: Conv_1 output (7×7×1280) pooled = AvgPool features
    const pre = getPreprocess(model)!;
    const t = await imagesToTensor(pngs.slice(0, 2), pre);
    const f3 = await extractFeatures(model, 'MobilenetV2/Conv_1/Relu6', [t], { batchSize: 2 });
    assert.equal(f3[0]!.length, 1280);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 1280; j++) assert.ok(Math.abs(f3[i]![j]! - f1[i]![j]!) <= 1e-3 * Math.abs(f3[i]![j]!) + 1e-4); // f1: fp16
    // tensor batches use the cache too (keyed by the example's values)
    let runs = -1;
    await extractFeatures(model, undefined, [t], { batchSize: 8, cache: again, onProgress: (p) => (runs = p.runs) });
    assert.equal(runs, 1);
    await extractFeatures(model, undefined, [t], { batchSize: 8, cache: again, onProgress: (p) => (runs = p.runs) });
    assert.equal(runs, 0);
    await assert.rejects(extractFeatures(model, 'no/such/value', [t], { batchSize: 2 }), /no value named/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unreadable images (a truncated JPEG, a text file named .png, a missing file) are reported by path and skipped, with or without a cache', {
  skip: needs('models/coral/mobilenet_v2_1.0_224_quant.tflite', 'datasets/fashion-mnist'),
}, async () => {
  const model = loadModel(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
  const fm = asset('datasets/fashion-mnist');
  const d = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  const dir = mkdtempSync(join(tmpdir(), 'graft-extract-bad-'));
  try {
    const good = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const p = join(dir, `good${i}.png`);
        await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
          .png()
          .toFile(p);
        return p;
      }),
    );
    const jpeg = await sharp(Buffer.from(d.images[3]!), { raw: { width: 28, height: 28, channels: 1 } })
      .resize(200, 200)
      .jpeg()
      .toBuffer();
    const truncated = join(dir, 'truncated.jpg');
    writeFileSync(truncated, jpeg.subarray(0, Math.floor(jpeg.length / 2)));
    const text = join(dir, 'notes.png');
    writeFileSync(text, 'this is a text file, not a PNG\n');
    const missing = join(dir, 'missing.png');
    const inputs = [good[0]!, truncated, good[1]!, text, missing, good[2]!];

    // without a handler: an error naming the file
    await assert.rejects(extractFeatures(model, undefined, [inputs], { batchSize: 4 }), /truncated\.jpg/);

    const plain = await extractFeatures(model, undefined, [good], { batchSize: 4 });
    for (const cache of [undefined, FeatureCache.open(join(dir, 'cache'))]) {
      const bad: { index: number; input: string | Uint8Array; error: string }[] = [];
      let last: ExtractProgress | undefined;
      const f = await extractFeatures(model, undefined, [inputs.slice(0, 3), inputs.slice(3)], {
        batchSize: 4,
        ...(cache ? { cache } : {}),
        onUnreadable: (x) => bad.push(x),
        onProgress: (p) => (last = p),
      });
      assert.deepEqual(
        bad.map((b) => [b.index, b.input]).sort((a, b) => (a[0] as number) - (b[0] as number)),
        [
          [1, truncated],
          [3, text],
          [4, missing],
        ],
      );
      for (const b of bad) assert.ok(b.error.includes(b.input as string), b.error);
      assert.equal(f.length, 3);
      f.forEach((v, i) =>
        v.forEach((x, j) =>
          assert.ok(
            Math.abs(x - plain[i]![j]!) <= 1e-3 * Math.abs(plain[i]![j]!) + 1e-4,
            `${i}/${j}: ${x} vs ${plain[i]![j]}`,
          ),
        ),
      ); // with a cache: fp16
      assert.deepEqual(last, { examples: 6, cached: 0, computed: 3, runs: 2, skipped: 3 });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
