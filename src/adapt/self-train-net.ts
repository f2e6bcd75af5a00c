/**
 * Network self-training on unlabelled target data: the model labels the target itself, keeps the
 * examples it is confident about (probability of the predicted class ≥ threshold, at a temperature
 * that puts an overconfident model's probabilities on a usable scale), and is fine-tuned on those
 * pseudo-labels with cross-entropy at the same temperature (at temperature 1 a model that is
 * certain of its own labels gets no gradient from them); repeated for a few rounds, relabelling
 * each time.
 */
import type { Graph } from '../graph/graph.js';
import { A } from '../graph/builder.js';
import { Trainer } from '../train/trainer.js';
import { exampleDims, stack, labelsTensor } from '../train/fit.js';
import { logitsOf } from '../train/training-graph.js';
import type { CustomLoss } from '../train/losses.js';
import type { TrainableSpec } from '../train/training-graph.js';
import type { OptimizerSpec } from '../optim/optimizer.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { predictClassProba } from './predict.js';
import { trainLoop, shuffledBatches } from '../train/loop.js';
import { GraftError } from '../util/errors.js';
import { argmax } from '../util/vectors.js';

export interface NetSelfTrainOptions {
  /** Keep target examples whose top probability is at least this (default 0.9). */
  threshold?: number;
  /** Temperature for the confidences (default 1). */
  temperature?: number;
  /** Relabel-and-train rounds (default 3). */
  rounds?: number;
  /** Epochs over the kept examples per round (default 2). */
  epochs?: number;
  lr?: number;
  batchSize?: number;
  trainable?: TrainableSpec;
  optimizer?: OptimizerSpec;
  seed?: number;
  runtime?: RuntimeOptions;
  onRound?: (info: { round: number; kept: number; total: number; loss: number }) => void;
}

export interface NetSelfTrainResult {
  model: Graph;
  /** Models after each round (round 1 first). */
  rounds: Graph[];
  /** Examples kept (pseudo-labelled) in each round. */
  kept: number[];
}

/** Cross-entropy of softmax(logits / T) against int64 `pseudo_labels` [N]. */
export function temperedCrossEntropy(temperature = 1): CustomLoss {
  if (!(temperature > 0)) throw new GraftError(`temperature must be > 0, got ${temperature}`);
  return {
    kind: 'custom',
    build(g, output, b) {
      const raw = logitsOf(g, output);
      const z = temperature === 1 ? raw : b.mul(raw, b.f32(1 / temperature));
      const logp = b.op('LogSoftmax', [z], { axis: A.i(-1) });
      const picked = b.op('GatherElements', [logp, b.unsqueeze('pseudo_labels', [1])], { axis: A.i(1) });
      const perExample = b.neg(b.squeeze(picked, [1]));
      return { loss: b.reduce('ReduceMean', perExample, [0], false), targets: ['pseudo_labels'] };
    },
    probeFeeds: (dims) => ({ pseudo_labels: { dtype: 'int64', dims: [dims[0]!], data: new BigInt64Array(dims[0]!) } }),
  };
}

export async function selfTrainNetwork(
  model: Graph,
  target: Float32Array[],
  o: NetSelfTrainOptions = {},
): Promise<NetSelfTrainResult> {
  if (target.length === 0) throw new GraftError('self-training needs target examples');
  const threshold = o.threshold ?? 0.9;
  if (!(threshold >= 0 && threshold < 1)) throw new GraftError(`threshold must be in [0, 1), got ${threshold}`);
  let current = model;
  const rounds: Graph[] = [],
    kept: number[] = [];
  for (let r = 1; r <= (o.rounds ?? 3); r++) {
    const P = await predictClassProba(current, target, {
      temperature: o.temperature ?? 1,
      ...(o.runtime ? { runtime: o.runtime } : {}),
    });
    const idx: number[] = [];
    P.forEach((p, i) => {
      if (p[argmax(p)]! >= threshold) idx.push(i);
    });
    kept.push(idx.length);
    if (idx.length === 0)
      throw new GraftError(`self-training: no target example reaches confidence ${threshold}; lower the threshold`);
    const tr = await Trainer.create(current, {
      loss: temperedCrossEntropy(o.temperature ?? 1),
      lr: o.lr ?? 1e-4,
      optimizer: o.optimizer ?? { kind: 'adamw', weightDecay: 0 },
      ...(o.trainable ? { trainable: o.trainable } : {}),
      ...(o.runtime ? { runtime: o.runtime } : {}),
    });
    let loss = NaN;
    try {
      const dims = exampleDims(tr.tg.model);
      const name = tr.tg.dataInputs[0]!;
      const source = shuffledBatches(idx.length, o.batchSize ?? 32, o.epochs ?? 2, (batch) => {
        const rows = batch.map((j) => idx[j]!);
        return {
          feeds: {
            [name]: stack(
              rows.map((i) => target[i]!),
              dims,
            ),
            pseudo_labels: labelsTensor(rows.map((i) => argmax(P[i]!))),
          },
          size: rows.length,
        };
      });
      const run = await trainLoop(tr, source, { seed: (o.seed ?? 0) + r, releaseOnError: false });
      loss = run.losses.at(-1) ?? NaN;
      current = tr.toGraph();
    } finally {
      await tr.release();
    }
    rounds.push(current);
    o.onRound?.({ round: r, kept: idx.length, total: target.length, loss });
  }
  return { model: current, rounds, kept };
}
