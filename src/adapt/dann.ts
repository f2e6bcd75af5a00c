/**
 * DANN (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation") as a custom
 * loss, plus the training loop every in-network adaptation loss with labelled source and unlabelled
 * target data shares (adaptFit, a batch source of the one training loop; deep MMD / CORAL in ./mmd.ts
 * use it too).
 *
 * Each batch holds source and target rows; the loss reads three extra inputs:
 *   labels     int64 [N]  source labels (anything on target rows),
 *   is_source  float [N]  1 on source rows, 0 on target rows,
 *   grl_lambda float []   the reversal strength λ of this step (DANN only).
 *
 *   loss = CE(source rows) + CE_domain(all rows)
 *
 * The domain classifier (Gemm → Relu → Gemm → 2 logits, its own parameters) reads the network's
 * features through a gradient-reversal node: forward it is the identity, backward it multiplies the
 * gradient by −λ. λ must change per step (the paper's ramp λ_p = 2/(1 + exp(−10·p)) − 1, p the
 * fraction of training done) while the backward graph is built once, so the node is
 *
 *   h = stop(f) + λ · (rev(f) − stop(f))      stop: gradient ×0, rev: gradient ×(−1)  (gradScale)
 *
 * whose value is exactly f and whose gradient at f is −λ times the one arriving at h.
 */
import type { Graph } from '../graph/graph.js';
import { A, type Builder } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import type { CustomLoss, CustomLossNodes } from '../train/losses.js';
import { Trainer, type TrainerOptions } from '../train/trainer.js';
import { exampleDims, stack, type Examples } from '../train/fit.js';
import { defaultFeatureNode } from '../features/extract.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { Rng } from '../util/random.js';
import { trainLoop, type BatchSource } from '../train/loop.js';
import { Logger, runCallbacks, type RunOptions } from '../train/callbacks.js';
import { flatSize } from '../features/multi-task.js';
import { GraftError } from '../util/errors.js';

export const LABELS = 'labels';
export const IS_SOURCE = 'is_source';
export const GRL_LAMBDA = 'grl_lambda';

/** A custom loss for source + target batches, with any per-step scalar inputs it reads. */
export interface AdaptLoss extends CustomLoss {
  /** Per-step inputs beside labels and is_source (e.g. λ), given the fraction of training done. */
  stepFeeds?(progress: number): Record<string, Tensor>;
}

/** The DANN paper's ramp: 0 at the start, → 1 at the end. */
export function dannLambda(progress: number, gamma = 10): number {
  return 2 / (1 + Math.exp(-gamma * progress)) - 1;
}

/** Cross-entropy of the logits `output` [N, K] averaged over the rows where is_source is 1. */
export function sourceCrossEntropy(b: Builder, output: string): string {
  const logp = b.op('LogSoftmax', [output], { axis: A.i(-1) });
  const picked = b.op('GatherElements', [logp, b.unsqueeze(LABELS, [1])], { axis: A.i(1) });
  const per = b.neg(b.squeeze(picked, [1]));
  const n = b.op('Max', [b.reduce('ReduceSum', IS_SOURCE, [0], false), b.f32(1)]);
  return b.div(b.reduce('ReduceSum', b.mul(per, IS_SOURCE), [0], false), n);
}

/** Flatten a feature value to [N, D] (identity for 2-D values). */
export function flatFeatures(b: Builder, feature: string): string {
  return b.op('Flatten', [feature], { axis: A.i(1) });
}

export interface DannOptions {
  /** The feature value the domain classifier reads (default: the input of the final classifier). */
  feature: string;
  /** Size of the flattened feature. */
  featureDim: number;
  /** Hidden units of the domain classifier (default 64). */
  hidden?: number;
  /** Weight of the domain loss in the total (default 1). */
  domainWeight?: number;
  /** Ramp steepness γ of λ_p (default 10); `fixedLambda` replaces the ramp. */
  gamma?: number;
  fixedLambda?: number;
  seed?: number;
}

function probe(dims: number[], withLambda: boolean): Record<string, Tensor> {
  const n = dims[0]!;
  const out: Record<string, Tensor> = {
    [LABELS]: { dtype: 'int64', dims: [n], data: new BigInt64Array(n) },
    [IS_SOURCE]: {
      dtype: 'float32',
      dims: [n],
      data: Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 0)),
    },
  };
  if (withLambda) out[GRL_LAMBDA] = { dtype: 'float32', dims: [], data: Float32Array.from([0.5]) };
  return out;
}

/** The DANN loss described in the header; its domain-classifier weights train with the model. */
export function dannLoss(o: DannOptions): AdaptLoss {
  const H = o.hidden ?? 64;
  return {
    kind: 'custom',
    build(g: Graph, output: string, b: Builder): CustomLossNodes {
      const rng = new Rng(o.seed ?? 0);
      const D = o.featureDim;
      const init = (dims: number[], fanIn: number): Tensor => ({
        dtype: 'float32',
        dims,
        data: Float32Array.from({ length: dims.reduce((p, q) => p * q, 1) }, () => rng.normal() * Math.sqrt(2 / fanIn)),
      });
      const param = (name: string, t: Tensor) => {
        const k = g.uniqueName(name);
        g.initializers.set(k, t);
        return k;
      };
      const ce = sourceCrossEntropy(b, output);
      const f = flatFeatures(b, o.feature);
      const stop = b.op('Identity', [f], {}, 'grl_stop');
      const rev = b.op('Identity', [f], {}, 'grl_reverse');
      const h = b.add(stop, b.mul(GRL_LAMBDA, b.sub(rev, stop)));
      const w1 = param('domain/fc1.weight', init([H, D], D)),
        b1 = param('domain/fc1.bias', { dtype: 'float32', dims: [H], data: new Float32Array(H) });
      const w2 = param('domain/fc2.weight', init([2, H], H)),
        b2 = param('domain/fc2.bias', { dtype: 'float32', dims: [2], data: new Float32Array(2) });
      const z = b.op(
        'Gemm',
        [b.op('Relu', [b.op('Gemm', [h, w1, b1], { transB: A.i(1) })]), w2, b2],
        { transB: A.i(1) },
        'domain_logits',
      );
      const m = b.unsqueeze(IS_SOURCE, [1]);
      const target = b.op('Concat', [m, b.sub(b.f32(1), m)], { axis: A.i(1) });
      const lp = b.op('LogSoftmax', [z], { axis: A.i(-1) });
      const domain = b.neg(b.reduceAll('ReduceMean', b.reduce('ReduceSum', b.mul(target, lp), [1], false)));
      const wd = o.domainWeight ?? 1;
      const loss = b.add(ce, wd === 1 ? domain : b.mul(domain, b.f32(wd)));
      return {
        loss,
        targets: [LABELS, IS_SOURCE, GRL_LAMBDA],
        params: [w1, b1, w2, b2],
        outputs: [ce, domain],
        gradScale: new Map([
          [stop, 0],
          [rev, -1],
        ]),
      };
    },
    probeFeeds: (dims) => probe(dims, true),
    stepFeeds: (p) => ({
      [GRL_LAMBDA]: { dtype: 'float32', dims: [], data: Float32Array.from([o.fixedLambda ?? dannLambda(p, o.gamma)]) },
    }),
  };
}

/** Source-only training restated as an AdaptLoss (CE on source rows; target rows are ignored). */
export function sourceOnlyLoss(): AdaptLoss {
  return {
    kind: 'custom',
    build: (_g, output, b) => ({ loss: sourceCrossEntropy(b, output), targets: [LABELS, IS_SOURCE] }),
    probeFeeds: (dims) => probe(dims, false),
  };
}

export { probe as adaptProbeFeeds };

/** Size of the flattened `feature` value of a model for one example (one forward run). */
export function featureDim(model: Graph, feature: string): Promise<number> {
  return flatSize(upgradeOpset(model), feature);
}

export interface AdaptFitOptions extends Omit<TrainerOptions, 'loss'>, RunOptions {
  epochs?: number;
  /** Rows per step, half source and half target (default 64). */
  batchSize?: number;
  seed?: number;
  onStep?: (info: { step: number; total: number; loss: number; values?: Record<string, number> }) => void;
  /** Called after each epoch with the trainer (score checkpoints here, without target labels). */
  onEpoch?: (info: { epoch: number; trainer: Trainer }) => Promise<void> | void;
}

/**
 * Train `model` with an AdaptLoss on labelled source examples and unlabelled target inputs. Each
 * step takes batchSize/2 source rows and batchSize/2 target rows (the target set is cycled); an epoch
 * is one pass over the source. Returns the trainer (its toGraph() is the adapted model).
 */
export async function adaptFit(
  model: Graph,
  loss: AdaptLoss,
  source: Examples,
  target: Float32Array[],
  o: AdaptFitOptions = {},
): Promise<Trainer> {
  if (!source.x.length) throw new GraftError('domain adaptation needs labelled source examples');
  if (!target.length) throw new GraftError('domain adaptation needs target examples');
  const half = Math.max(1, Math.floor((o.batchSize ?? 64) / 2));
  const epochs = o.epochs ?? 10;
  const perEpoch = Math.ceil(source.x.length / half);
  const total = epochs * perEpoch;
  const config = {
    source: source.x.length,
    target: target.length,
    epochs,
    batchSize: o.batchSize ?? 64,
    seed: o.seed ?? 0,
    lr: o.lr ?? 1e-3,
  };
  const extra = runCallbacks(o, config, 'adapting');
  const trainer = await Trainer.create(model, { ...o, loss });
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  // the target set is cycled across epochs: its order and position are the source's state
  let tOrder: number[] = [];
  let tPos = 0;
  const batches: BatchSource = {
    epochs,
    steps: () => perEpoch,
    *batches(_epoch, rng, ctx) {
      const sOrder = rng.shuffle([...source.x.keys()]);
      for (let i = 0; i < sOrder.length; i += half) {
        const s = sOrder.slice(i, i + half);
        const t: number[] = [];
        while (t.length < half) {
          if (tPos >= tOrder.length) {
            tOrder = rng.shuffle([...target.keys()]);
            tPos = 0;
          }
          t.push(tOrder[tPos++]!);
        }
        const n = s.length + t.length;
        yield {
          feeds: {
            [name]: stack([...s.map((k) => source.x[k]!), ...t.map((k) => target[k]!)], dims),
            [LABELS]: {
              dtype: 'int64',
              dims: [n],
              data: BigInt64Array.from([...s.map((k) => BigInt(source.y[k]!)), ...t.map(() => 0n)]),
            },
            [IS_SOURCE]: {
              dtype: 'float32',
              dims: [n],
              data: Float32Array.from({ length: n }, (_, j) => (j < s.length ? 1 : 0)),
            },
            ...loss.stepFeeds?.(ctx.trainer.steps / total),
          },
          size: n,
        };
      }
    },
    state: () => ({ tOrder, tPos }),
    restore: (st) => ({ tOrder, tPos } = st as { tOrder: number[]; tPos: number }),
  };
  const r = await trainLoop(trainer, batches, {
    seed: o.seed ?? 0,
    callbacks: [
      new Logger({
        onStep: (_c, s) => {
          const values = s.result.values
            ? Object.fromEntries(Object.entries(s.result.values).map(([k, v]) => [k, Number(v.data[0])]))
            : undefined;
          o.onStep?.({ step: s.step, total, loss: s.loss, ...(values ? { values } : {}) });
        },
        onEpoch: (ctx, l) => o.onEpoch?.({ epoch: l.epoch, trainer: ctx.trainer }),
      }),
      ...extra,
    ],
  });
  return r.trainer;
}

/** DANN end to end: the feature value defaults to the model's classifier input. */
export async function dann(
  model: Graph,
  source: Examples,
  target: Float32Array[],
  o: AdaptFitOptions & Partial<DannOptions> = {},
): Promise<Trainer> {
  const feature = o.feature ?? defaultFeatureNode(model);
  const D = o.featureDim ?? (await featureDim(model, feature));
  return adaptFit(model, dannLoss({ ...o, feature, featureDim: D }), source, target, o);
}
