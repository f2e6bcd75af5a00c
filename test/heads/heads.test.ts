/**
 * Every head on real cached features: ImageNet MobileNetV2 (Coral, uint8 imported to float) features
 * of a fixed Fashion-MNIST subset (10 labelled images per class from the training set, 5 per class
 * for validation, 200 test images from the 10k test set). Each head must learn (test accuracy well
 * above chance, 0.1), pick its hyperparameter by cross-validation from the candidates, and its ONNX
 * form must give the same classes (and probabilities up to float32 rounding) as the TypeScript head;
 * the merged backbone+head file must classify images as the head does on their features.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { loadModel } from '../../src/formats/load.js';
import { encodeOnnx } from '../../src/formats/onnx.js';
import { readIdxDataset, type IdxDataset } from '../../src/data/idx.js';
import { shuffledByClass } from '../../src/data/splits.js';
import { extractFeatures, defaultFeatureNode } from '../../src/features/extract.js';
import { FeatureCache } from '../../src/features/cache.js';
import { exportFeatureClassifier, PROBABILITIES } from '../../src/features/classifier.js';
import { imagesToTensor } from '../../src/data/image.js';
import { getPreprocess, type ImagePreprocess } from '../../src/formats/preprocess.js';
import { fitCV } from '../../src/heads/logistic.js';
import { fitMlp } from '../../src/heads/mlp.js';
import { fitKnn, fitNcm } from '../../src/heads/neighbors.js';
import type { FeatureHead } from '../../src/heads/head.js';
import { Graph } from '../../src/graph/graph.js';
import { Builder } from '../../src/graph/builder.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { makeBatchDynamic } from '../../src/graph/rewrites.js';
import type { Graph as G } from '../../src/graph/graph.js';
import { asset, needs } from '../helpers/assets.js';

const LABELS = Array.from({ length: 10 }, (_, i) => `c${i}`);
let dir = '';
let model: G;
let train: { X: Float32Array[]; y: number[] };
let val: { X: Float32Array[]; y: number[] };
let testSet: { X: Float32Array[]; y: number[]; png: Buffer[] };

const toPng = (px: Uint8Array) =>
  sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();

async function features(
  d: IdxDataset,
  idx: number[],
  cache: FeatureCache,
): Promise<{ X: Float32Array[]; y: number[]; png: Buffer[] }> {
  const png = await Promise.all(idx.map((i) => toPng(d.images[i]!)));
  const X = await extractFeatures(model, undefined, [png], { batchSize: 50, cache });
  return { X, y: idx.map((i) => d.labels[i]!), png };
}

const skip = needs('datasets/fashion-mnist', 'models/coral/mobilenet_v2_1.0_224_quant.tflite');

before(async () => {
  if (skip) return; // every test below is skipped
  const fm = asset('datasets/fashion-mnist');
  const tr = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
  const te = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  model = loadModel(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
  dir = mkdtempSync(join(tmpdir(), 'graft-heads-'));
  const cache = FeatureCache.open(dir);
  const trIdx: number[] = [],
    vaIdx: number[] = [];
  for (const [, idx] of shuffledByClass(tr.labels, new Rng(31))) {
    trIdx.push(...idx.slice(0, 10));
    vaIdx.push(...idx.slice(10, 15));
  }
  const teIdx = new Rng(32).shuffle([...te.labels.keys()]).slice(0, 200);
  train = await features(tr, trIdx, cache);
  val = await features(tr, vaIdx, cache);
  testSet = await features(te, teIdx, cache);
});
after(() => dir && rmSync(dir, { recursive: true, force: true }));

/** The head alone as an ONNX graph: features [N, D] → probabilities [N, K]. */
async function onnxProba(head: FeatureHead, X: Float32Array[]): Promise<Float32Array> {
  const g = new Graph();
  g.inputs = [{ name: 'x', dtype: 'float32', shape: ['N', head.dim] }];
  const out = head.toOnnx(new Builder(g, 'head/'), 'x');
  g.outputs = [{ name: out, dtype: 'float32', shape: ['N', head.numClasses] }];
  const s = await Session.fromGraph(g);
  try {
    const data = new Float32Array(X.length * head.dim);
    X.forEach((x, i) => data.set(x, i * head.dim));
    return (await s.run({ x: { dtype: 'float32', dims: [X.length, head.dim], data } }))[out]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

async function checkHead(name: string, head: FeatureHead, minAccuracy: number) {
  const acc = head.accuracy(testSet.X, testSet.y);
  const pred = head.predict(testSet.X);
  const P = head.predictProba(testSet.X);
  const Q = await onnxProba(head, testSet.X);
  const K = head.numClasses;
  let maxDiff = 0,
    agree = 0;
  P.forEach((p, n) => {
    let best = 0;
    for (let k = 0; k < K; k++) {
      maxDiff = Math.max(maxDiff, Math.abs(p[k]! - Q[n * K + k]!));
      if (Q[n * K + k]! > Q[n * K + best]!) best = k;
    }
    if (best === pred[n]) agree++;
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-9, `${name}: probabilities sum to 1`);
  });
  console.log(
    `# ${name}: test accuracy ${acc.toFixed(3)} on ${testSet.y.length} images (10 labels/class); ONNX vs TypeScript: ${agree}/${pred.length} same class, max |Δp| ${maxDiff.toExponential(1)}; ${JSON.stringify(head.summary())}`,
  );
  assert.ok(acc >= minAccuracy, `${name}: test accuracy ${acc}`);
  assert.equal(agree, pred.length, `${name}: the ONNX head predicts other classes than the TypeScript head`);
  assert.ok(maxDiff < 1e-4, `${name}: max |Δp| ${maxDiff}`);
}

test('logistic regression: l2 by 5-fold CV; ONNX = TypeScript', { skip }, async () => {
  const cv = await fitCV(train.X, train.y, { numClasses: 10, grid: [1e-2, 0.1, 1], gtol: 1e-5 });
  assert.equal(cv.scores.length, 3);
  assert.ok([1e-2, 0.1, 1].includes(cv.l2));
  await checkHead('logistic', cv.model, 0.55);
});

test('nearest class mean: temperature by CV; ONNX = TypeScript', { skip }, async () => {
  const m = fitNcm(train.X, train.y, { numClasses: 10 });
  assert.equal(m.cv.length, 5);
  const best = m.cv.reduce((a, b) => (b.logloss < a.logloss ? b : a));
  assert.equal(m.temperature, best.temperature);
  await checkHead('ncm', m, 0.55);
});

test('k nearest neighbours: k by leave-one-out; ONNX (MatMul, TopK, vote) = TypeScript', { skip }, async () => {
  const m = fitKnn(train.X, train.y, { numClasses: 10 });
  assert.equal(m.cv.length, 7);
  assert.equal(m.k, m.cv.reduce((a, b) => (b.accuracy > a.accuracy ? b : a)).k);
  // k = 1 on its own training examples is perfect (each is its own nearest neighbour)
  assert.equal(fitKnn(train.X, train.y, { numClasses: 10, ks: [1] }).accuracy(train.X, train.y), 1);
  await checkHead('knn', m, 0.45);
  // an even k with split votes: the closer class wins, in ONNX as in TypeScript
  await checkHead('knn k=2', fitKnn(train.X, train.y, { numClasses: 10, ks: [2] }), 0.4);
});

test('MLP trained through the engine: weight decay by CV, early stopping on validation; ONNX = TypeScript', {
  skip,
}, async () => {
  const m = await fitMlp(train.X, train.y, {
    numClasses: 10,
    hidden: 64,
    weightDecays: [1e-4, 1e-1],
    folds: 3,
    maxEpochs: 60,
    validation: val,
    seed: 3,
  });
  assert.equal(m.cv.length, 2);
  assert.ok([1e-4, 1e-1].includes(m.weightDecay));
  assert.ok(m.epochs >= 1 && m.epochs <= 60, `${m.epochs} epochs`);
  await checkHead('mlp', m, 0.55);
});

test('merged backbone + head files (k-NN, NCM, MLP) classify images as the heads do on their features', {
  skip,
}, async () => {
  const node = defaultFeatureNode(model);
  const heads: FeatureHead[] = [
    fitKnn(train.X, train.y, { numClasses: 10, ks: [3] }),
    fitNcm(train.X, train.y, { numClasses: 10, temperatures: [10] }),
    await fitMlp(train.X, train.y, { numClasses: 10, hidden: 32, weightDecays: [1e-2], maxEpochs: 20, seed: 1 }),
  ];
  const imgs = testSet.png.slice(0, 16),
    X = testSet.X.slice(0, 16);
  for (const head of heads) {
    const g = await exportFeatureClassifier(model, node, head, { labels: LABELS });
    assert.deepEqual(
      g.outputs.map((o) => o.name),
      [PROBABILITIES],
    );
    const x = await imagesToTensor(imgs, getPreprocess(g)!);
    const s = await ort.InferenceSession.create(encodeOnnx(g));
    const P = (await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x.data as Float32Array, x.dims) }))[
      PROBABILITIES
    ]!.data as Float32Array;
    await s.release();
    const got = Array.from({ length: imgs.length }, (_, n) => {
      let b = 0;
      for (let k = 1; k < 10; k++) if (P[n * 10 + k]! > P[n * 10 + b]!) b = k;
      return b;
    });
    assert.deepEqual(got, head.predict(X), `${head.kind}: merged file vs head`);
    assert.equal(JSON.parse(g.metadata['graft.head']!).kind, head.summary()['kind']);
  }
});

test('an opset-7 backbone (mnist.onnx) is upgraded for the k-NN and NCM heads; the merged file runs in plain onnxruntime', {
  skip,
}, async () => {
  const mnist = makeBatchDynamic(loadModel(asset('models/onnxjs-demo/mnist.onnx')));
  assert.ok(mnist.opset < 11, `mnist.onnx opset ${mnist.opset}`);
  const fm = asset('datasets/fashion-mnist');
  const te = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  const pick: number[] = [];
  for (const [, idx] of shuffledByClass(te.labels, new Rng(5))) pick.push(...idx.slice(0, 10));
  const pixels = (idx: number[]) => ({
    dtype: 'float32' as const,
    dims: [idx.length, 1, 28, 28],
    data: Float32Array.from(idx.flatMap((i) => Array.from(te.images[i]!))),
  });
  const trIdx = pick.filter((_, r) => r % 10 < 6),
    teIdx = pick.filter((_, r) => r % 10 >= 6);
  const node = defaultFeatureNode(mnist);
  const Xtr = await extractFeatures(mnist, node, [pixels(trIdx)], { batchSize: 64 });
  const Xte = await extractFeatures(mnist, node, [pixels(teIdx)], { batchSize: 64 });
  // pixel values 0–255 as the model expects them: (p/255 − 0) / (1/255)
  const pre: ImagePreprocess = {
    layout: 'NCHW',
    width: 28,
    height: 28,
    channels: 1,
    channelOrder: 'RGB',
    mean: [0],
    std: [1 / 255],
    resize: 'stretch',
    source: 'default',
  };
  for (const head of [
    fitKnn(
      Xtr,
      trIdx.map((i) => te.labels[i]!),
      { numClasses: 10 },
    ),
    fitNcm(
      Xtr,
      trIdx.map((i) => te.labels[i]!),
      { numClasses: 10 },
    ),
  ]) {
    const g = await exportFeatureClassifier(mnist, node, head, { labels: LABELS, preprocess: pre });
    assert.ok(g.opset >= 13);
    const s = await ort.InferenceSession.create(encodeOnnx(g));
    const x = pixels(teIdx);
    const P = (await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x.data, x.dims) }))[PROBABILITIES]!
      .data as Float32Array;
    await s.release();
    const got = teIdx.map((_, n) => {
      let b = 0;
      for (let k = 1; k < 10; k++) if (P[n * 10 + k]! > P[n * 10 + b]!) b = k;
      return b;
    });
    assert.deepEqual(got, head.predict(Xte), head.kind);
    const acc = head.accuracy(
      Xte,
      teIdx.map((i) => te.labels[i]!),
    );
    console.log(
      `# mnist.onnx features (${head.dim}-d) on Fashion-MNIST, 6 labels/class, ${head.kind}: accuracy ${acc.toFixed(3)} on ${teIdx.length} images`,
    );
    assert.ok(acc > 0.3, `${head.kind}: ${acc}`);
  }
});
