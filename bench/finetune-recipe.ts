/**
 * Choosing the top-block fine-tuning recipe without looking at test images: a development split
 * carved from the Fashion-MNIST *training* set (seed 7: 100 labelled images per class, the first 10
 * of each class for the 10-per-class case, and the next 100 per class as development evaluation
 * images), activations cached once on disk per cut, then each candidate recipe scored against the
 * frozen-feature logistic head on the same development images. The test set (t10k) is never read,
 * except by --final: the recipe chosen here, with the picks of test/finetune/fashion-topblocks.test.ts,
 * scored once on the test images with a paired sign test (--top-blocks 3 for the chosen recipe).
 *
 *   node --import tsx bench/finetune-recipe.ts --top-blocks 3 --final [--test N]   (N test images, default all 10,000)
 *   node --import tsx bench/finetune-recipe.ts [--warm] [--top-blocks 2] [--views 4] [--sizes 10,100] [--grid '[[name, options], …]']
 *
 * Env GRAFT_RECIPE_CACHE: the activation cache folder (default /tmp/graft-recipe-cache).
 */
import { join } from 'node:path';
import { loadModel } from '../src/formats/load.js';
import { readIdxDataset } from '../src/data/idx.js';
import { greyToBmp } from '../src/data/labelled-images.js';
import { shuffledByClass } from '../src/data/splits.js';
import { fitCV } from '../src/heads/logistic.js';
import { FeatureCache } from '../src/features/cache.js';
import {
  ActivationStore,
  cacheActivations,
  frozenFeatures,
  predictStore,
  splitTopBlocks,
  trainTopBlocks,
  type TopBlocksTrainOptions,
} from '../src/finetune/top-blocks.js';
import { Rng } from '../src/util/random.js';
import { assetPath } from '../src/data/assets.js';

const arg = (k: string, d: string) => {
  const i = process.argv.indexOf(k);
  return i >= 0 ? process.argv[i + 1]! : d;
};
const warm = process.argv.includes('--warm');
const B = Number(arg('--top-blocks', '2'));
const V = Number(arg('--views', '4'));
const final = process.argv.includes('--final');
const fm = assetPath('datasets/fashion-mnist');
const train = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
const model = loadModel(assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
const m = await splitTopBlocks(model, 10, { topBlocks: B });
const cache = FeatureCache.open(process.env.GRAFT_RECIPE_CACHE ?? '/tmp/graft-recipe-cache');
if (final) {
  // The recipe of test/finetune/fashion-topblocks.test.ts, fixed beforehand, scored once on all 10,000 test images.
  const t10k = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  const first10: number[] = [],
    next90: number[] = [];
  for (const [, idx] of shuffledByClass(train.labels, new Rng(2024))) {
    first10.push(...idx.slice(0, 10));
    next90.push(...idx.slice(10, 100));
  }
  const n = Number(arg('--test', String(t10k.labels.length)));
  const testIdx = new Rng(99).shuffle([...Array(t10k.labels.length).keys()]).slice(0, n);
  const yT = testIdx.map((i) => t10k.labels[i]!);
  const te = await cacheActivations(
    m,
    testIdx.map((i) => greyToBmp(t10k.images[i]!, 28, 28)),
    { cache },
  );
  const tr10 = await cacheActivations(
    m,
    first10.map((i) => greyToBmp(train.images[i]!, 28, 28)),
    { views: 4, seed: 1, augment: {}, cache },
  );
  const rest = await cacheActivations(
    m,
    next90.map((i) => greyToBmp(train.images[i]!, 28, 28)),
    { views: 2, seed: 1, augment: {}, cache },
  );
  const tr100 = new ActivationStore(m.cutDims, [...tr10.rows.map((r) => r.slice(0, 2)), ...rest.rows]);
  const y10 = first10.map((i) => train.labels[i]!);
  const y100 = [...y10, ...next90.map((i) => train.labels[i]!)];
  const recipe: TopBlocksTrainOptions = {
    lr: 1e-3,
    batchSize: 16,
    loss: { kind: 'cross-entropy', labelSmoothing: 0.1 },
    seed: 3,
    probeGrid: [1e-2, 1e-1, 1],
  };
  for (const [label, s, y, epochs] of [
    ['10/class', tr10, y10, 30],
    ['100/class', tr100, y100, 6],
  ] as const) {
    const cv = await fitCV(await frozenFeatures(m, s), [...y], {
      numClasses: 10,
      grid: [1e-2, 1e-1, 1],
      folds: 3,
      gtol: 1e-4,
    });
    const fr = cv.model.predict(await frozenFeatures(m, te));
    const r = await trainTopBlocks(m, s, [...y], { ...recipe, epochs });
    const ft = await predictStore(r.trainer, m, te);
    await r.trainer.release();
    let b = 0,
      c = 0,
      okF = 0,
      okT = 0;
    yT.forEach((t, i) => {
      okF += fr[i] === t ? 1 : 0;
      okT += ft[i] === t ? 1 : 0;
      if (ft[i] === t && fr[i] !== t) b++;
      if (fr[i] === t && ft[i] !== t) c++;
    });
    console.log(
      `${label} on ${n} test images: frozen ${(okF / n).toFixed(4)}, fine-tuned ${(okT / n).toFixed(4)} (only fine-tuned right ${b}, only frozen right ${c}, z ${((b - c) / Math.sqrt(b + c)).toFixed(2)})`,
    );
  }
  process.exit(0);
}
const dev100: number[] = [],
  devEval: number[] = [];
for (const [, idx] of shuffledByClass(train.labels, new Rng(7))) {
  dev100.push(...idx.slice(0, 100));
  devEval.push(...idx.slice(100, 200));
}
const at10 = [...Array(10).keys()].flatMap((c) => [...Array(10).keys()].map((k) => c * 100 + k));
const img = (i: number) => greyToBmp(train.images[i]!, 28, 28);
const t0 = performance.now();
const ev = await cacheActivations(m, devEval.map(img), { cache });
const tr = await cacheActivations(m, dev100.map(img), { views: V, seed: 1, augment: {}, cache });
console.log(
  `cut ${m.cut} [${m.cutDims}], ${V} views: cache ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
if (warm) process.exit(0);
const yEv = devEval.map((i) => train.labels[i]!);
const y100 = dev100.map((i) => train.labels[i]!);
const sub = (s: ActivationStore, idx: number[], views = s.views) =>
  new ActivationStore(
    s.dims,
    idx.map((i) => s.rows[i]!.slice(0, views)),
  );
const acc = (p: number[]) => p.reduce((a, v, i) => a + (v === yEv[i] ? 1 : 0), 0) / yEv.length;
const grid: [string, TopBlocksTrainOptions][] = JSON.parse(arg('--grid', '[]'));
const sizes = arg('--sizes', '10,100').split(',').map(Number);
for (const [n, idx] of (
  [
    [10, at10],
    [100, [...dev100.keys()]],
  ] as [number, number[]][]
).filter(([n]) => sizes.includes(n))) {
  const y = idx.map((k) => y100[k]!);
  const s = sub(tr, idx);
  const cv = await fitCV(await frozenFeatures(m, s), y, {
    numClasses: 10,
    grid: [1e-2, 1e-1, 1],
    folds: 3,
    gtol: 1e-4,
  });
  const frozenPred = cv.model.predict(await frozenFeatures(m, ev));
  const frozen = acc(frozenPred);
  console.log(`${n}/class frozen ${frozen.toFixed(4)}`);
  for (const [name, o] of grid) {
    const views = (o as { views?: number }).views ?? V;
    const t = performance.now();
    const r = await trainTopBlocks(m, sub(tr, idx, views), y, {
      seed: 3,
      probeGrid: [1e-2, 1e-1, 1],
      ...o,
      ...(n === 100 && (o as { epochs100?: number }).epochs100
        ? { epochs: (o as { epochs100?: number }).epochs100 }
        : {}),
    });
    const pred = await predictStore(r.trainer, m, ev);
    const a = acc(pred);
    await r.trainer.release();
    // paired sign test over the images the two disagree on
    let b = 0,
      c = 0;
    yEv.forEach((t, i) => {
      if (pred[i] === t && frozenPred[i] !== t) b++;
      if (frozenPred[i] === t && pred[i] !== t) c++;
    });
    const z = (b - c) / Math.sqrt(Math.max(1, b + c));
    console.log(
      `${n}/class ${name}: ${a.toFixed(4)} (${a - frozen >= 0 ? '+' : ''}${((a - frozen) * 100).toFixed(1)} pts, z ${z.toFixed(2)}, ${((performance.now() - t) / 1000).toFixed(1)} s)`,
    );
  }
}
