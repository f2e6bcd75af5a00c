/**
 * Real-data proof for top-block fine-tuning (issue 5, item 9): the imported ImageNet MobileNetV2
 * (Coral uint8 TFLite) on Fashion-MNIST with 10 and 100 labels per class, against the frozen-feature
 * head of the features mode on the same split, scored on 1000 images of the 10k test set.
 *
 *   frozen:     logistic regression, L2 chosen by 3-fold CV over {1e-2, 1e-1, 1}, on the frozen
 *               network's pooled 1280-d features of the plain training images
 *   fine-tuned: the top 3 blocks (expanded_conv_15, expanded_conv_16, Conv_1) + a new head, trained
 *               through fit() on activations cached once at expanded_conv_14/add (fp16, 160×7×7 per
 *               view); head started from that same linear probe ("linear probe, then fine-tune");
 *               AdamW lr 1e-3 with cosine decay, batch 16, label smoothing 0.1, BN statistics frozen
 *               (the Coral model has them folded anyway); augmented views (crop, flip, jitter):
 *               4 per image and 30 epochs at 10 labels/class, 2 per image and 6 epochs at 100.
 *
 * The recipe was fixed before this test read any test image: it was chosen with bench/finetune-recipe.ts
 * on a development split carved from the Fashion-MNIST *training* file (the test file is never read
 * there; numbers in bench/README.md). On all 10,000 test images (bench/finetune-recipe.ts --final) the
 * same recipe wins at both sizes beyond noise: 10/class 0.751 → 0.771 (z 5.7), 100/class 0.836 → 0.852
 * (z 5.4). At 100 labels/class the win is asserted beyond noise with a paired
 * sign test over the test images the two classifiers disagree on: (only fine-tuned right − only frozen
 * right) > 2·√(disagreements). Measured here (1000 images): 10/class frozen 0.754, fine-tuned 0.763
 * (66 vs 57 images, z 0.8: a win, within noise on 1000 images); 100/class 0.837 → 0.858 (55 vs 34, z 2.2).
 * Time: 74–77 s of CPU in all with GRAFT_THREADS=1 (131 s wall, cache 55 s, on the shared 2-core
 * machine under load; 343 s in a heavier moment).
 *
 * The frozen features come from the same cache (the frozen tail run over it), so both sides see
 * bit-identical inputs at the cut. Cost: the bottom runs 100 × 4 + 900 × 2 + 1000 times.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel } from '../../src/formats/load.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { greyToBmp } from '../../src/data/labelled-images.js';
import { shuffledByClass } from '../../src/data/splits.js';
import { fitCV } from '../../src/heads/logistic.js';
import {
  ActivationStore,
  cacheActivations,
  frozenFeatures,
  predictStore,
  splitTopBlocks,
  trainTopBlocks,
  type TopBlocksModel,
  type TopBlocksTrainOptions,
} from '../../src/finetune/top-blocks.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

const TEST_SIZE = 1000;
const RECIPE: TopBlocksTrainOptions = {
  lr: 1e-3,
  batchSize: 16,
  loss: { kind: 'cross-entropy', labelSmoothing: 0.1 },
  batchNorm: 'frozen',
  seed: 3,
  probeGrid: [1e-2, 1e-1, 1],
};

async function frozenPredictions(
  m: TopBlocksModel,
  tr: ActivationStore,
  y: number[],
  te: ActivationStore,
): Promise<number[]> {
  const cv = await fitCV(await frozenFeatures(m, tr), y, {
    numClasses: 10,
    grid: [1e-2, 1e-1, 1],
    folds: 3,
    gtol: 1e-4,
  });
  return cv.model.predict(await frozenFeatures(m, te));
}

async function finetunedPredictions(
  m: TopBlocksModel,
  tr: ActivationStore,
  y: number[],
  te: ActivationStore,
  epochs: number,
): Promise<{ pred: number[]; seconds: number }> {
  const r = await trainTopBlocks(m, tr, y, { ...RECIPE, epochs });
  assert.ok(r.losses.at(-1)! < r.losses[0]!, 'fine-tuning did not lower the loss');
  const pred = await predictStore(r.trainer, m, te);
  await r.trainer.release();
  return { pred, seconds: r.seconds };
}

/** Accuracies and the paired sign test: b = only fine-tuned right, c = only frozen right. */
function compare(ft: number[], fr: number[], y: number[]) {
  let b = 0,
    c = 0,
    okFt = 0,
    okFr = 0;
  y.forEach((t, i) => {
    okFt += ft[i] === t ? 1 : 0;
    okFr += fr[i] === t ? 1 : 0;
    if (ft[i] === t && fr[i] !== t) b++;
    if (fr[i] === t && ft[i] !== t) c++;
  });
  return { ft: okFt / y.length, frozen: okFr / y.length, b, c, z: (b - c) / Math.sqrt(Math.max(1, b + c)) };
}

test('Fashion-MNIST, 10 and 100 labels/class: MobileNetV2 top blocks fine-tuned on cached activations beat the frozen-feature head', {
  skip: needs('datasets/fashion-mnist', 'models/coral/mobilenet_v2_1.0_224_quant.tflite'),
}, async () => {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const fm = asset('datasets/fashion-mnist');
  const train = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
  const t10k = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  const model = loadModel(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
  const m = await splitTopBlocks(model, 10, { topBlocks: 3 });
  assert.equal(m.cut, 'MobilenetV2/expanded_conv_14/add');
  assert.deepEqual(m.cutDims, [160, 7, 7]);

  // 100 per class (seed 2024); the first 10 of each class are the 10-per-class set
  const first10: number[] = [],
    next90: number[] = [];
  for (const [, idx] of shuffledByClass(train.labels, new Rng(2024))) {
    first10.push(...idx.slice(0, 10));
    next90.push(...idx.slice(10, 100));
  }
  const testIdx = new Rng(99).shuffle([...Array(t10k.labels.length).keys()]).slice(0, TEST_SIZE);
  const yTest = testIdx.map((i) => t10k.labels[i]!);
  const img = (i: number) => greyToBmp(train.images[i]!, 28, 28);
  const te = await cacheActivations(
    m,
    testIdx.map((i) => greyToBmp(t10k.images[i]!, 28, 28)),
  );
  // a view depends only on (seed, view index, image), so the 10-per-class images' first two views are
  // exactly the views the 100-per-class set would compute for them
  const tr10 = await cacheActivations(m, first10.map(img), { views: 4, seed: 1, augment: {} });
  const rest = await cacheActivations(m, next90.map(img), { views: 2, seed: 1, augment: {} });
  const tr100 = new ActivationStore(m.cutDims, [...tr10.rows.map((r) => r.slice(0, 2)), ...rest.rows]);
  assert.equal(tr10.views, 4);
  assert.equal(tr100.views, 2);
  assert.equal(tr10.rows[0]![0]!.length, 160 * 49, 'un-pooled activations are stored (fp16)');
  const y10 = first10.map((i) => train.labels[i]!);
  const y100 = [...y10, ...next90.map((i) => train.labels[i]!)];
  const tCache = performance.now();

  const fr10 = await frozenPredictions(m, tr10, y10, te);
  const ft10 = await finetunedPredictions(m, tr10, y10, te, 30);
  const c10 = compare(ft10.pred, fr10, yTest);
  console.log(
    `10 labels/class: frozen-feature head ${c10.frozen.toFixed(3)}, top-3-block fine-tuning ${c10.ft.toFixed(3)} (only fine-tuned right ${c10.b}, only frozen right ${c10.c}, z ${c10.z.toFixed(2)}; ${ft10.seconds.toFixed(1)} s)`,
  );
  const fr100 = await frozenPredictions(m, tr100, y100, te);
  const ft100 = await finetunedPredictions(m, tr100, y100, te, 6);
  const c100 = compare(ft100.pred, fr100, yTest);
  console.log(
    `100 labels/class: frozen-feature head ${c100.frozen.toFixed(3)}, top-3-block fine-tuning ${c100.ft.toFixed(3)} (only fine-tuned right ${c100.b}, only frozen right ${c100.c}, z ${c100.z.toFixed(2)}; ${ft100.seconds.toFixed(1)} s)`,
  );
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `time: cache ${((tCache - t0) / 1000).toFixed(1)} s (${TEST_SIZE} + 100 × 4 + 900 × 2 views), total ${((performance.now() - t0) / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU`,
  );

  // 10 labels/class: the win on these 1000 images is small (measured +0.9 points, z 0.8); the full
  // 10k test set (bench/finetune-recipe.ts --final, numbers in bench/README.md) is what shows whether
  // it is beyond noise. Here: more images fixed than broken.
  assert.ok(
    c10.b > c10.c,
    `10 labels/class: fine-tuned ${c10.ft} does not beat frozen ${c10.frozen} (only fine-tuned right ${c10.b}, only frozen right ${c10.c})`,
  );
  assert.ok(
    c100.z > 2,
    `100 labels/class: fine-tuned ${c100.ft} vs frozen ${c100.frozen} is not a win beyond noise (z ${c100.z.toFixed(2)})`,
  );
  assert.ok(c100.frozen > c10.frozen && c100.ft > c10.ft, 'ten times the labels should help both');
});
