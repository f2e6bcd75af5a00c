/**
 * A tiny two-layer network and one mixed source/target batch for the adaptation-loss tests, and the
 * real-data comparison (small CNN, Fashion-MNIST → noisy Fashion-MNIST) the DANN and MMD tests share.
 */
import { Graph } from '../../src/graph/graph.js';
import { Builder } from '../../src/graph/builder.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { LABELS, IS_SOURCE, GRL_LAMBDA, type AdaptLoss } from '../../src/adapt/dann.js';
import { Rng } from '../../src/util/random.js';
import { adaptFit, sourceOnlyLoss } from '../../src/adapt/dann.js';
import { fashionShiftPair } from '../../src/data/shifts.js';
import { smallCnn } from '../../src/heads/scratch-cnn.js';
import { predictLabels, type Examples } from '../../src/train/fit.js';
import type { Trainer } from '../../src/train/trainer.js';
import { asset } from './assets.js';
import { accuracy } from '../../src/util/vectors.js';

/** x [N,4] → Gemm W1 [5,4] → Tanh → feat [N,5] → Gemm W2 [3,5] → logits [N,3]. */
export function tinyNet(seed = 3): Graph {
  const rng = new Rng(seed);
  const g = new Graph();
  g.name = 'tiny';
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['N', 4] });
  const w = (dims: number[]): Tensor => ({
    dtype: 'float32',
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.normal() * 0.7),
  });
  g.initializers.set('W1', w([5, 4]));
  g.initializers.set('b1', w([5]));
  g.initializers.set('W2', w([3, 5]));
  g.nodes.push({
    name: 'fc1',
    opType: 'Gemm',
    domain: '',
    inputs: ['x', 'W1', 'b1'],
    outputs: ['pre'],
    attrs: { transB: { type: 'int', value: 1 } },
  });
  g.nodes.push({ name: 'act', opType: 'Tanh', domain: '', inputs: ['pre'], outputs: ['feat'], attrs: {} });
  g.nodes.push({
    name: 'fc2',
    opType: 'Gemm',
    domain: '',
    inputs: ['feat', 'W2'],
    outputs: ['logits'],
    attrs: { transB: { type: 'int', value: 1 } },
  });
  g.outputs = [{ name: 'logits', dtype: 'float32', shape: ['N', 3] }];
  return g;
}

export const N = 6;
export function batchFeeds(lambda?: number): Record<string, Tensor> {
  const rng = new Rng(11);
  const f: Record<string, Tensor> = {
    x: { dtype: 'float32', dims: [N, 4], data: Float32Array.from({ length: N * 4 }, () => rng.normal()) },
    [LABELS]: { dtype: 'int64', dims: [N], data: BigInt64Array.from([0n, 2n, 1n, 0n, 0n, 0n]) },
    [IS_SOURCE]: { dtype: 'float32', dims: [N], data: Float32Array.from([1, 1, 1, 0, 0, 0]) },
  };
  if (lambda !== undefined) f[GRL_LAMBDA] = { dtype: 'float32', dims: [], data: Float32Array.from([lambda]) };
  return f;
}

/** The loss graph alone: model + loss nodes, output = the loss, the loss's inputs declared. */
export function lossGraph(loss: AdaptLoss, feeds: Record<string, Tensor>): { g: Graph; params: string[] } {
  const g = tinyNet();
  const built = loss.build(g, 'logits', new Builder(g, 'loss/'));
  for (const t of built.targets)
    g.inputs.push({ name: t, dtype: feeds[t]!.dtype, shape: feeds[t]!.dims.map((_, i) => `${t}_${i}`) });
  g.outputs = [{ name: built.loss }];
  return { g, params: built.params ?? [] };
}

type AdaptTrainer = (
  model: Graph,
  source: Examples,
  target: Float32Array[],
  o: { epochs: number; batchSize: number; lr: number; seed: number },
) => Promise<Trainer>;

/**
 * Target test accuracy of the small CNN trained source-only and with `method` on the same small
 * Fashion-MNIST → noisy Fashion-MNIST pair (target labels used only to score).
 */
export async function shiftPairAccuracies(
  method: AdaptTrainer,
): Promise<{ sourceOnly: number; adapted: number; description: string }> {
  asset('datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  const pair = fashionShiftPair({ sourcePerClass: 100, targetPerClass: 100, testPerClass: 40, seed: 0 });
  const o = { epochs: 6, batchSize: 64, lr: 2e-3, seed: 1 };
  const score = async (train: () => Promise<Trainer>) => {
    const tr = await train();
    try {
      return accuracy(await predictLabels(tr, tr.tg.model, pair.target.test.x), pair.target.test.y);
    } finally {
      await tr.release();
    }
  };
  const cnn = () => smallCnn({ channels: 1, size: 28, classes: 10, seed: 1 });
  const sourceOnly = await score(() => adaptFit(cnn(), sourceOnlyLoss(), pair.source.train, pair.target.train.x, o));
  const adapted = await score(() => method(cnn(), pair.source.train, pair.target.train.x, o));
  return { sourceOnly, adapted, description: pair.description };
}
