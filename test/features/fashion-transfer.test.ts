/**
 * Does transfer learning pay on Fashion-MNIST with few labels? ImageNet MobileNetV2 features (the
 * Coral uint8 model, cut at its default feature node) + a logistic-regression head, against the
 * small CNN of src/heads/scratch-cnn.ts trained from scratch through Graft's engine on the very same
 * labelled images. Both are scored on one fixed 500-image subset of the 10k test set.
 *
 * Labelled sets are seeded stratified picks from the 60k training set: 10 per class (100 images,
 * five independent draws, compared on the mean), and 100 per class (1000 images, one draw, a
 * superset of the first 10-per-class draw). Features go through a temporary FeatureCache, so the
 * images shared between the two are computed once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadModel } from '../../src/formats/load.js';
import { readIdxDataset, type IdxDataset } from '../../src/data/idx.js';
import { extractFeatures, defaultFeatureNode } from '../../src/features/extract.js';
import { FeatureCache } from '../../src/features/cache.js';
import { fit as lfit, fitCV } from '../../src/heads/logistic.js';
import { smallCnn } from '../../src/heads/scratch-cnn.js';
import { fit, predictLabels } from '../../src/train/fit.js';
import { Rng } from '../../src/util/random.js';
import type { Graph } from '../../src/graph/graph.js';
import { asset, needs } from '../helpers/assets.js';
import { shuffledByClass } from '../../src/data/splits.js';
import { accuracy } from '../../src/util/vectors.js';

const TEST_SIZE = 500;

/** Seeded stratified pick: `perClass` indices of every class; smaller picks are prefixes of larger ones. */
function stratifiedPick(labels: number[], perClass: number, seed: number): number[] {
  const out: number[] = [];
  for (const [c, idx] of shuffledByClass(labels, new Rng(seed))) {
    if (idx.length < perClass) throw new Error(`class ${c} has only ${idx.length} examples`);
    out.push(...idx.slice(0, perClass));
  }
  return out;
}

/** A fixed subset of the test set: the first n indices of a seeded shuffle. */
function testPick(count: number, n: number, seed: number): number[] {
  return new Rng(seed).shuffle([...Array(count).keys()]).slice(0, n);
}

/** 28×28 grey pixels as PNG bytes: the model's recorded preprocessing makes them 3 × 224 × 224. */
function toPng(px: Uint8Array): Promise<Buffer> {
  return sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
}

async function features(model: Graph, d: IdxDataset, idx: number[], cache: FeatureCache): Promise<Float32Array[]> {
  const pngs = await Promise.all(idx.map((i) => toPng(d.images[i]!)));
  const batches: Buffer[][] = [];
  for (let i = 0; i < pngs.length; i += 100) batches.push(pngs.slice(i, i + 100));
  return extractFeatures(model, undefined, batches, { batchSize: 50, cache });
}

/** The from-scratch baseline: pixels / 255, AdamW 2e-3 with weight decay 1e-4, batch 32. */
async function scratchAccuracy(
  train: { x: Float32Array[]; y: number[] },
  test: { x: Float32Array[]; y: number[] },
  epochs: number,
): Promise<number> {
  const g = smallCnn({ channels: 1, size: 28, classes: 10, seed: 7 });
  const r = await fit(g, train, {
    epochs,
    batchSize: 32,
    lr: 2e-3,
    optimizer: { kind: 'adamw', weightDecay: 1e-4 },
    seed: 7,
  });
  assert.ok(r.losses.at(-1)! < r.losses[0]!, 'the from-scratch CNN learned nothing');
  return accuracy(await predictLabels(r.trainer, r.trainer.tg.model, test.x, 100), test.y);
}

const pixels = (px: Uint8Array) => Float32Array.from(px, (v) => v / 255);

const PICKS = 5;

test('Fashion-MNIST with few labels: MobileNetV2 features + logistic head beat a CNN trained from scratch', {
  skip: needs('datasets/fashion-mnist', 'models/coral/mobilenet_v2_1.0_224_quant.tflite'),
}, async () => {
  const t0 = performance.now();
  const fm = asset('datasets/fashion-mnist');
  const train = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
  const t10k = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  const model = loadModel(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
  assert.equal(defaultFeatureNode(model), 'MobilenetV2/Logits/AvgPool');

  const testIdx = testPick(t10k.labels.length, TEST_SIZE, 99);
  const yTest = testIdx.map((i) => t10k.labels[i]!);
  const xTest = testIdx.map((i) => pixels(t10k.images[i]!));

  const dir = mkdtempSync(join(tmpdir(), 'graft-fashion-'));
  try {
    const cache = FeatureCache.open(dir);
    const fTest = await features(model, t10k, testIdx, cache);

    // 10 labels per class: a single draw of 100 images is noisy (a few points either way), so the
    // comparison is over PICKS independent stratified draws, same test images, same recipes
    const rows: { transfer: number; scratch: number; l2: number }[] = [];
    let pick100: number[] = [];
    for (let s = 0; s < PICKS; s++) {
      const pick = stratifiedPick(train.labels, s === 0 ? 100 : 10, 2024 + s);
      if (s === 0) pick100 = pick;
      const pick10 = s === 0 ? [...Array(10).keys()].flatMap((c) => pick.slice(c * 100, c * 100 + 10)) : pick;
      const y = pick10.map((i) => train.labels[i]!);
      const f = await features(model, train, pick10, cache);
      const cv = await fitCV(f, y, { numClasses: 10, grid: [1e-2, 1e-1, 1], folds: 3, gtol: 1e-4 });
      const transfer = cv.model.accuracy(fTest, yTest);
      const scratch = await scratchAccuracy(
        { x: pick10.map((i) => pixels(train.images[i]!)), y },
        { x: xTest, y: yTest },
        60,
      );
      rows.push({ transfer, scratch, l2: cv.l2 });
      console.log(
        `10 labels/class, draw ${s + 1}: transfer ${transfer.toFixed(3)} (l2 ${cv.l2}) vs from-scratch ${scratch.toFixed(3)}`,
      );
    }
    const mean = (k: 'transfer' | 'scratch') => rows.reduce((a, r) => a + r[k], 0) / rows.length;
    const wins = rows.filter((r) => r.transfer > r.scratch).length;
    console.log(
      `10 labels/class (100 images), ${TEST_SIZE} test images, mean of ${PICKS} draws: ` +
        `transfer (MobileNetV2 features + logistic) ${mean('transfer').toFixed(3)} vs from-scratch CNN ${mean('scratch').toFixed(3)}; transfer wins ${wins}/${PICKS}`,
    );
    const t10 = performance.now();

    // 100 labels per class: one draw (a superset of draw 1's 10 per class, whose features are cached);
    // l2 fixed at 0.1, what cross-validation picks at 10 per class (CV over 1000 × 1280 costs too much here)
    const y100 = pick100.map((i) => train.labels[i]!);
    const f100 = await features(model, train, pick100, cache);
    const transfer100 = (await lfit(f100, y100, { numClasses: 10, l2: 0.1, gtol: 1e-4 })).accuracy(fTest, yTest);
    const scratch100 = await scratchAccuracy(
      { x: pick100.map((i) => pixels(train.images[i]!)), y: y100 },
      { x: xTest, y: yTest },
      30,
    );
    console.log(
      `100 labels/class (1000 images), ${TEST_SIZE} test images: transfer ${transfer100.toFixed(3)} vs from-scratch CNN ${scratch100.toFixed(3)}`,
    );
    console.log(
      `time: 10/class ${((t10 - t0) / 1000).toFixed(1)} s, 100/class ${((performance.now() - t10) / 1000).toFixed(1)} s`,
    );

    assert.ok(
      mean('transfer') > mean('scratch'),
      `at 10 labels/class transfer should beat from-scratch on average: ${JSON.stringify(rows)}`,
    );
    // both learn well above chance (0.1); ten times the labels help both
    assert.ok(
      rows.every((r) => r.transfer > 0.6 && r.scratch > 0.5),
      JSON.stringify(rows),
    );
    assert.ok(
      transfer100 > mean('transfer') && scratch100 > mean('scratch'),
      JSON.stringify({ rows, transfer100, scratch100 }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
