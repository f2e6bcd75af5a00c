/**
 * Entropy minimization on unlabelled target data (TENT, Wang et al. 2021): no labels, the loss is
 * the mean Shannon entropy of the model's predictions on target batches, optionally minus a
 * class-diversity term (the entropy of the batch's mean prediction, as in SHOT's information
 * maximization) that keeps all predictions from collapsing onto one class:
 *
 *   loss = mean_i H(p_i) − diversity · H(mean_i p_i)
 *
 * What trains: by default ('auto') the BatchNormalization scale and shift when the model has
 * BatchNormalization (with batch statistics, as TENT does), otherwise every parameter; any
 * TrainableSpec picks a subset (e.g. the last layers). Small learning rate, few steps.
 */
import type { Graph } from '../graph/graph.js';
import { A } from '../graph/builder.js';
import type { CustomLoss } from '../train/losses.js';
import { Trainer } from '../train/trainer.js';
import { logitsOf, type TrainableSpec } from '../train/training-graph.js';
import { exampleDims, stack } from '../train/fit.js';
import type { OptimizerSpec } from '../optim/optimizer.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { batchesOf } from './predict.js';
import { trainLoop, steppedBatches } from '../train/loop.js';
import { Logger } from '../train/callbacks.js';
import { GraftError } from '../util/errors.js';

/** The entropy (minus diversity) loss as a CustomLoss: reads only the model's output, no targets. */
export function entropyLoss(diversity = 0, temperature = 1): CustomLoss {
  if (!(temperature > 0)) throw new GraftError(`temperature must be > 0, got ${temperature}`);
  if (!(diversity >= 0)) throw new GraftError(`diversity weight must be ≥ 0, got ${diversity}`);
  return {
    kind: 'custom',
    build(g, output, b) {
      const raw = logitsOf(g, output);
      const logits = temperature === 1 ? raw : b.mul(raw, b.f32(1 / temperature));
      const logp = b.op('LogSoftmax', [logits], { axis: A.i(-1) });
      const p = b.op('Exp', [logp]);
      const perExample = b.neg(b.reduce('ReduceSum', b.mul(p, logp), [1], false));
      const ent = b.reduce('ReduceMean', perExample, [0], false);
      if (diversity === 0) return { loss: ent, targets: [], outputs: [] };
      const pbar = b.reduce('ReduceMean', p, [0], false);
      const hbar = b.neg(b.reduce('ReduceSum', b.mul(pbar, b.op('Log', [b.add(pbar, b.f32(1e-8))])), [0], false));
      return { loss: b.sub(ent, b.mul(hbar, b.f32(diversity))), targets: [], outputs: [ent, hbar] };
    },
    probeFeeds: () => ({}),
  };
}

/** BatchNormalization scale and shift parameters of a model (empty when it has none). */
export function batchNormAffine(g: Graph): string[] {
  const out: string[] = [];
  for (const n of g.nodes)
    if (n.opType === 'BatchNormalization')
      for (const k of [n.inputs[1], n.inputs[2]]) if (k && g.initializers.has(k)) out.push(k);
  return out;
}

export function hasBatchNorm(g: Graph): boolean {
  return g.nodes.some((n) => n.opType === 'BatchNormalization');
}

export interface EntropyOptions {
  /** Optimizer steps (default 50). */
  steps?: number;
  /** Learning rate (default 1e-4). */
  lr?: number;
  batchSize?: number;
  /** Weight of the class-diversity term (default 0: plain TENT). */
  diversity?: number;
  /** Divide the logits by this before the softmax (default 1); overconfident models need > 1 for a gradient. */
  temperature?: number;
  /** What trains (default 'auto': BN affine parameters when there is BN, else all). */
  trainable?: TrainableSpec | 'auto';
  optimizer?: OptimizerSpec;
  seed?: number;
  runtime?: RuntimeOptions;
  /** Called after every step with the loss. */
  onStep?: (info: { step: number; loss: number }) => void;
  /** Checkpoints: also return the model after each of these step counts. */
  checkpoints?: number[];
}

export interface EntropyResult {
  model: Graph;
  losses: number[];
  /** Models at the requested checkpoint steps (step → model). */
  checkpoints: Map<number, Graph>;
  trainable: string[];
}

/** Adapt a classifier to unlabelled target examples by entropy minimization. */
export async function entropyMinimize(
  model: Graph,
  target: Float32Array[],
  o: EntropyOptions = {},
): Promise<EntropyResult> {
  if (target.length === 0) throw new GraftError('entropy minimization needs target examples');
  const steps = o.steps ?? 50;
  const bn = hasBatchNorm(model);
  const spec = o.trainable ?? 'auto';
  const trainable: TrainableSpec = spec === 'auto' ? (bn ? { names: batchNormAffine(model) } : 'all') : spec;
  const tr = await Trainer.create(model, {
    loss: entropyLoss(o.diversity ?? 0, o.temperature ?? 1),
    trainable,
    lr: o.lr ?? 1e-4,
    optimizer: o.optimizer ?? { kind: 'adamw', weightDecay: 0 },
    ...(bn ? { batchNorm: 'batch' as const } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
  const dims = exampleDims(tr.tg.model);
  const name = tr.tg.dataInputs[0]!;
  const bs = Math.min(o.batchSize ?? 64, target.length);
  const epochs = Math.ceil((steps * bs) / target.length) + 1;
  let batches: number[][] = [];
  // the batches of every step, drawn at the first step from the loop's generator (seeded)
  const source = steppedBatches(steps, Math.max(1, steps), (s, rng) => {
    if (s === 0) batches = batchesOf(target.length, bs, epochs, rng).filter((b) => b.length === bs);
    const idx = batches[s % batches.length]!;
    return {
      feeds: {
        [name]: stack(
          idx.map((i) => target[i]!),
          dims,
        ),
      },
      size: idx.length,
    };
  });
  const checkpoints = new Map<number, Graph>();
  const want = new Set(o.checkpoints ?? []);
  const r = await trainLoop(tr, source, {
    seed: o.seed ?? 0,
    callbacks: [
      new Logger({
        onStep: (ctx, s) => {
          o.onStep?.({ step: s.step, loss: s.loss });
          if (want.has(s.step)) checkpoints.set(s.step, ctx.trainer.toGraph());
        },
      }),
    ],
  });
  const losses = r.losses;
  try {
    return { model: tr.toGraph(), losses, checkpoints, trainable: tr.tg.params };
  } finally {
    await tr.release();
  }
}
