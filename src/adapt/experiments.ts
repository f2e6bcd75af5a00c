/**
 * The real-data adaptation experiments of docs/adaptation.md, shared by the tests (test/adapt/),
 * the benchmark (bench/adapt.ts) and the report script (examples/adapt-report.ts), so all three
 * measure the same thing:
 *
 * - digits: the pretrained MNIST network (assets: models/onnxjs-demo/mnist.onnx) and the 8×8
 *   handwritten digits (datasets/digits-8x8), MNIST-style preprocessing; a seeded stratified 70/30
 *   split: the 70 % are the unlabelled target the methods adapt on, the 30 % the held-out test.
 * - fashion-bn: a small BatchNorm CNN (./bn-cnn.ts) trained from scratch on Fashion-MNIST training
 *   images (the labelled source), adapted to shifted Fashion-MNIST test images (src/data/shifts.ts):
 *   one block of the test file is the unlabelled target, the next block the held-out test.
 * - fashion features: mnist.onnx features (its 256-d input to the final layer) of Fashion-MNIST
 *   training images (labelled source) and of shifted test images (target), for the feature-level
 *   methods.
 */
import type { Graph } from '../graph/graph.js';
import { loadModel } from '../formats/load.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { requireAsset } from '../data/assets.js';
import { loadPixelDataset } from '../data/pixel-dataset.js';
import { readIdxDataset, type IdxDataset } from '../data/idx.js';
import { stratifiedSplit } from '../data/splits.js';
import { extractFeatures } from '../features/extract.js';
import { fit, stack, type Examples } from '../train/fit.js';
import { smallBnCnn } from './bn-cnn.js';
import { shiftImages, type PixelShift } from '../data/shifts.js';
import type { LabelledFeatures } from './feature-head.js';

/** The value of mnist.onnx feeding its final MatMul (the 256-d feature). */
export const MNIST_FEATURE_NODE = 'Pooling160_Output_0_reshape0';

export interface SourceFreeTask {
  model: Graph;
  /** Unlabelled target examples to adapt on. */
  target: Float32Array[];
  /** Held-out labelled target examples, for the report only. */
  test: Examples;
}

export function mnistModel(): Graph {
  return makeBatchDynamic(loadModel(requireAsset('models/onnxjs-demo/mnist.onnx')));
}

export async function digitsTask(seed = 0): Promise<SourceFreeTask> {
  const d = await loadPixelDataset(requireAsset('datasets/digits-8x8/digits.csv.gz'), { side: 28, pixelMax: 16 });
  const sp = stratifiedSplit(d.y, { testFraction: 0.3, seed });
  return {
    model: mnistModel(),
    target: sp.train.map((i) => d.x[i]!),
    test: { x: sp.test.map((i) => d.x[i]!), y: sp.test.map((i) => d.y[i]!) },
  };
}

let fashionMemo: { train: IdxDataset; test: IdxDataset } | undefined;
export function fashionMnist(): { train: IdxDataset; test: IdxDataset } {
  const f = (p: string) => requireAsset(`datasets/fashion-mnist/${p}`);
  fashionMemo ??= {
    train: readIdxDataset(f('train-images-idx3-ubyte.gz'), f('train-labels-idx1-ubyte.gz')),
    test: readIdxDataset(f('t10k-images-idx3-ubyte.gz'), f('t10k-labels-idx1-ubyte.gz')),
  };
  return fashionMemo;
}

const unit = (u: Uint8Array) => Float32Array.from(u, (v) => v / 255);

export interface FashionBnOptions {
  /** Labelled source training images (default 3000). */
  sourceExamples?: number;
  epochs?: number;
  /** Unlabelled target images (default 1000) and held-out target test images (default 1000). */
  targetExamples?: number;
  testExamples?: number;
  shift?: PixelShift;
  seed?: number;
}

export interface FashionBnTask extends SourceFreeTask {
  /** Accuracy bookkeeping: the same held-out images unshifted. */
  sourceTest: Examples;
}

/** Train the BN CNN on the source (batch statistics) and cut the shifted target blocks. */
export async function fashionBnTask(o: FashionBnOptions = {}): Promise<FashionBnTask> {
  const { train, test } = fashionMnist();
  const n = o.sourceExamples ?? 3000,
    a = o.targetExamples ?? 1000,
    h = o.testExamples ?? 1000;
  const shift = o.shift ?? 'dim-noisy';
  const r = await fit(
    smallBnCnn({ channels: 1, size: 28, classes: 10, seed: o.seed ?? 0 }),
    { x: train.images.slice(0, n).map(unit), y: train.labels.slice(0, n) },
    {
      epochs: o.epochs ?? 3,
      batchSize: 64,
      lr: 2e-3,
      batchNorm: 'batch',
      seed: o.seed ?? 0,
    },
  );
  const model = r.trainer.toGraph();
  await r.trainer.release();
  const held = test.images.slice(a, a + h).map(unit),
    hy = test.labels.slice(a, a + h);
  return {
    model,
    target: shiftImages(test.images.slice(0, a).map(unit), shift, 1),
    test: { x: shiftImages(held, shift, 2), y: hy },
    sourceTest: { x: held, y: hy },
  };
}

/** mnist.onnx features of 28×28 images in 0–1 (the network reads 0–255). */
export async function mnistFeatures(model: Graph, xs: Float32Array[], batchSize = 500): Promise<Float32Array[]> {
  const batches = [];
  for (let i = 0; i < xs.length; i += batchSize)
    batches.push(
      stack(
        xs.slice(i, i + batchSize).map((x) => x.map((v) => v * 255)),
        [1, 28, 28],
      ),
    );
  return extractFeatures(model, MNIST_FEATURE_NODE, batches, { batchSize });
}

export interface FashionFeaturePair {
  source: LabelledFeatures;
  /** Target features and their labels (labels for the report only). */
  target: { x: Float32Array[]; y: number[] };
}

/** Source: the first n Fashion-MNIST training images; target: the first n test images, shifted. */
export async function fashionFeaturePair(n = 2000, shift: PixelShift = 'dim-noisy'): Promise<FashionFeaturePair> {
  const { train, test } = fashionMnist();
  const model = mnistModel();
  return {
    source: { x: await mnistFeatures(model, train.images.slice(0, n).map(unit)), y: train.labels.slice(0, n) },
    target: {
      x: await mnistFeatures(model, shiftImages(test.images.slice(0, n).map(unit), shift, 1)),
      y: test.labels.slice(0, n),
    },
  };
}
