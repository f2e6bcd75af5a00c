/**
 * A small MLP head on cached features, trained through Graft's engine: the ONNX graph
 * features → Gemm → Relu → Gemm → logits is compiled into a training graph (cross-entropy) and run
 * on the one training loop (src/train/loop.ts) with AdamW; standardization happens before the features are fed.
 *
 * Weight decay is chosen by stratified k-fold cross-validation on the training examples (mean
 * held-out log loss at each fit's best epoch); every fit stops early when its held-out log loss has
 * not improved for `patience` epochs and keeps its best epoch's weights. The final fit on all
 * training examples stops early on `validation` when given, else runs the folds' mean best epoch
 * count. Export folds the standardization into the first Gemm: Gemm → Relu → Gemm → Softmax.
 */
import { Graph } from '../graph/graph.js';
import { A, type Builder } from '../graph/builder.js';
import { Trainer } from '../train/trainer.js';
import { stack, labelsTensor } from '../train/fit.js';
import { softmax, accuracy, argmax } from '../util/vectors.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { Rng } from '../util/random.js';
import { trainLoop, shuffledBatches, type Callback } from '../train/loop.js';
import { EarlyStoppingCallback, Logger } from '../train/callbacks.js';
import { GraftError } from '../util/errors.js';
import {
  classCount,
  standardization,
  foldStandardization,
  denseInto,
  type FeatureHead,
  type Standardization,
} from './head.js';
import { cvFolds, stratifiedFolds } from './logistic.js';

export interface MlpOptions {
  numClasses?: number;
  /** Hidden units (default 128). */
  hidden?: number;
  /** AdamW learning rate (default 1e-3). */
  lr?: number;
  batchSize?: number;
  /** Most epochs per fit (default 100). */
  maxEpochs?: number;
  /** Stop after this many epochs without a better held-out log loss (default 8). */
  patience?: number;
  /** Weight decays tried by cross-validation (default 1e-4, 1e-2, 1). */
  weightDecays?: number[];
  folds?: number;
  seed?: number;
  /** Held-out examples for early stopping of the final fit. */
  validation?: { X: ArrayLike<number>[]; y: number[] };
  runtime?: RuntimeOptions;
  onProgress?: (info: { stage: string; epoch: number; loss: number }) => void;
}

const P = { W1: 'mlp/W1', b1: 'mlp/b1', W2: 'mlp/W2', b2: 'mlp/b2' } as const;
const INPUT = 'features',
  OUTPUT = 'logits';

export class MlpHead implements FeatureHead {
  readonly kind = 'mlp' as const;

  constructor(
    readonly std: Standardization,
    /** H × D, H, K × H, K (on standardized features). */
    readonly W1: Float32Array,
    readonly b1: Float32Array,
    readonly W2: Float32Array,
    readonly b2: Float32Array,
    readonly numClasses: number,
    readonly weightDecay: number,
    readonly epochs: number,
    readonly cv: { weightDecay: number; logloss: number; accuracy: number; epochs: number }[] = [],
  ) {}

  get dim(): number {
    return this.std.mean.length;
  }

  get hidden(): number {
    return this.b1.length;
  }

  predictProba(X: ArrayLike<number>[]): Float64Array[] {
    const D = this.dim,
      H = this.hidden,
      K = this.numClasses;
    const z = new Float64Array(D),
      h = new Float64Array(H),
      s = new Float64Array(K);
    return X.map((x) => {
      if (x.length !== D) throw new GraftError(`feature vector has ${x.length} values, the head expects ${D}`);
      for (let j = 0; j < D; j++) z[j] = (x[j]! - this.std.mean[j]!) / this.std.scale[j]!;
      denseInto(this.W1, this.b1, z, h, true);
      return softmax(denseInto(this.W2, this.b2, h, s));
    });
  }

  predict(X: ArrayLike<number>[]): number[] {
    return this.predictProba(X).map(argmax);
  }

  accuracy(X: ArrayLike<number>[], y: number[]): number {
    return accuracy(this.predict(X), y);
  }

  toOnnx(b: Builder, x: string): string {
    const D = this.dim,
      H = this.hidden,
      K = this.numClasses;
    const { weight: W, bias: c } = foldStandardization(this.W1, this.b1, this.std);
    const h = b.op(
      'Relu',
      [
        b.op(
          'Gemm',
          [
            x,
            b.constant({ dtype: 'float32', dims: [H, D], data: W }, 'W1'),
            b.constant({ dtype: 'float32', dims: [H], data: c }, 'b1'),
          ],
          { transB: A.i(1) },
          'hidden',
        ),
      ],
      {},
      'relu',
    );
    const logits = b.op(
      'Gemm',
      [
        h,
        b.constant({ dtype: 'float32', dims: [K, H], data: this.W2 }, 'W2'),
        b.constant({ dtype: 'float32', dims: [K], data: this.b2 }, 'b2'),
      ],
      { transB: A.i(1) },
      'logits',
    );
    return b.op('Softmax', [logits], { axis: A.i(1) }, 'softmax');
  }

  summary(): Record<string, number | string> {
    return {
      kind: 'mlp',
      classes: this.numClasses,
      dim: this.dim,
      hidden: this.hidden,
      weightDecay: this.weightDecay,
      epochs: this.epochs,
    };
  }
}

/** features [N, D] → Gemm → Relu → Gemm → logits [N, K], He-initialized from `seed`. */
export function mlpGraph(D: number, H: number, K: number, seed: number): Graph {
  const g = new Graph();
  g.name = 'mlp-head';
  g.inputs = [{ name: INPUT, dtype: 'float32', shape: ['N', D] }];
  const rng = new Rng(seed);
  const normal = (n: number, sd: number) => Float32Array.from({ length: n }, () => rng.normal() * sd);
  g.initializers.set(P.W1, { dtype: 'float32', dims: [H, D], data: normal(H * D, Math.sqrt(2 / D)) });
  g.initializers.set(P.b1, { dtype: 'float32', dims: [H], data: new Float32Array(H) });
  g.initializers.set(P.W2, { dtype: 'float32', dims: [K, H], data: normal(K * H, Math.sqrt(1 / H)) });
  g.initializers.set(P.b2, { dtype: 'float32', dims: [K], data: new Float32Array(K) });
  g.nodes.push(
    {
      name: 'fc1',
      opType: 'Gemm',
      domain: '',
      inputs: [INPUT, P.W1, P.b1],
      outputs: ['hidden'],
      attrs: { transB: A.i(1) },
    },
    { name: 'relu', opType: 'Relu', domain: '', inputs: ['hidden'], outputs: ['relu'], attrs: {} },
    {
      name: 'fc2',
      opType: 'Gemm',
      domain: '',
      inputs: ['relu', P.W2, P.b2],
      outputs: [OUTPUT],
      attrs: { transB: A.i(1) },
    },
  );
  g.outputs = [{ name: OUTPUT, dtype: 'float32', shape: ['N', K] }];
  return g;
}

interface Run {
  params: Map<string, Float32Array>;
  /** Epochs whose weights were kept. */
  epochs: number;
  /** Held-out mean log loss and accuracy at that epoch (when there was a held-out set). */
  logloss?: number;
  accuracy?: number;
}

function standardized(X: ArrayLike<number>[], s: Standardization): Float32Array[] {
  const D = s.mean.length;
  return X.map((x) => {
    if (x.length !== D) throw new GraftError(`feature vector has ${x.length} values, the head expects ${D}`);
    return Float32Array.from({ length: D }, (_, j) => (x[j]! - s.mean[j]!) / s.scale[j]!);
  });
}

/** One fit on the one training loop: a fixed number of epochs, or early stopping on `held`'s log loss. */
async function train(
  Z: Float32Array[],
  y: number[],
  K: number,
  wd: number,
  o: MlpOptions,
  stage: string,
  held?: { Z: Float32Array[]; y: number[] },
  epochs?: number,
): Promise<Run> {
  const D = Z[0]!.length,
    H = o.hidden ?? 128,
    bs = o.batchSize ?? 32;
  const seed = o.seed ?? 0;
  const trainer = await Trainer.create(mlpGraph(D, H, K, seed), {
    loss: { kind: 'cross-entropy' },
    optimizer: { kind: 'adamw', weightDecay: wd },
    lr: o.lr ?? 1e-3,
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
  const maxEpochs = epochs ?? o.maxEpochs ?? 100;
  const source = shuffledBatches(Z.length, bs, maxEpochs, (idx) => ({
    feeds: {
      [INPUT]: stack(
        idx.map((k) => Z[k]!),
        [D],
      ),
    },
    target: labelsTensor(idx.map((k) => y[k]!)),
    size: idx.length,
  }));
  const scores = new Map<number, { logloss: number; accuracy: number }>();
  const early = held
    ? new EarlyStoppingCallback({ monitor: 'valLoss', mode: 'min', minDelta: 1e-4, patience: o.patience ?? 8 })
    : undefined;
  const callbacks: Callback[] = [
    new Logger({ onEpoch: (_c, l) => o.onProgress?.({ stage, epoch: l.epoch, loss: l.loss }) }),
  ];
  if (held)
    callbacks.push(
      {
        name: 'held-out',
        onEpochEnd: async (ctx, logs) => {
          const s = await heldOut(ctx.trainer, held, K);
          scores.set(ctx.epoch, s);
          logs.valLoss = s.logloss;
          logs.valAccuracy = s.accuracy;
        },
      },
      early!,
    );
  const r = await trainLoop(trainer, source, { seed: seed + 1, callbacks });
  try {
    const params = new Map([...r.trainer.params].map(([k, v]) => [k, Float32Array.from(v)]));
    const best = early?.restoredEpoch;
    return best !== undefined ? { params, epochs: best, ...scores.get(best)! } : { params, epochs: maxEpochs };
  } finally {
    await r.trainer.release();
  }
}

/** Mean log loss and accuracy of the trainer's MLP on held-out standardized features. */
async function heldOut(
  trainer: Trainer,
  held: { Z: Float32Array[]; y: number[] },
  K: number,
): Promise<{ logloss: number; accuracy: number }> {
  const D = held.Z[0]!.length;
  let ll = 0,
    correct = 0;
  for (let i = 0; i < held.Z.length; i += 256) {
    const out = await trainer.predict({ [INPUT]: stack(held.Z.slice(i, i + 256), [D]) });
    const L = out.data as Float32Array;
    for (let r = 0; r < out.dims[0]!; r++) {
      const p = softmax(L.subarray(r * K, (r + 1) * K));
      const t = held.y[i + r]!;
      ll -= Math.log(Math.max(p[t]!, 1e-15));
      if (argmax(p) === t) correct++;
    }
  }
  return { logloss: ll / held.Z.length, accuracy: correct / held.Z.length };
}

/** Fit the MLP head; weight decay by cross-validation unless one value is given. */
export async function fitMlp(X: ArrayLike<number>[], y: number[], o: MlpOptions = {}): Promise<MlpHead> {
  if (X.length === 0) throw new GraftError('the MLP head needs at least one training example');
  if (y.length !== X.length) throw new GraftError(`${X.length} feature vectors but ${y.length} labels`);
  const K = o.numClasses ?? classCount(y);
  for (const v of y)
    if (!Number.isInteger(v) || v < 0 || v >= K) throw new GraftError(`label ${v} is out of range for ${K} classes`);
  const wds = o.weightDecays ?? [1e-4, 1e-2, 1];
  if (wds.length === 0 || wds.some((w) => !(w >= 0))) throw new GraftError('MLP weight decays must be ≥ 0');
  const std = standardization(X);
  const Z = standardized(X, std);
  const cv: MlpHead['cv'] = [];
  let wd = wds[0]!;
  let cvEpochs: number | undefined;
  if (wds.length > 1) {
    const k = cvFolds(y, K, o.folds ?? 3);
    const fold = stratifiedFolds(y, k, o.seed ?? 0);
    for (const w of wds) {
      let ll = 0,
        correct = 0,
        ep = 0;
      for (let f = 0; f < k; f++) {
        const tr = y.flatMap((_, i) => (fold[i] === f ? [] : [i])),
          va = y.flatMap((_, i) => (fold[i] === f ? [i] : []));
        // each fold standardizes on its own training part, as the final fit does on all of it
        const s = standardization(tr.map((i) => X[i]!));
        const run = await train(
          standardized(
            tr.map((i) => X[i]!),
            s,
          ),
          tr.map((i) => y[i]!),
          K,
          w,
          o,
          `cv wd=${w} fold ${f + 1}/${k}`,
          {
            Z: standardized(
              va.map((i) => X[i]!),
              s,
            ),
            y: va.map((i) => y[i]!),
          },
        );
        ll += run.logloss! * va.length;
        correct += run.accuracy! * va.length;
        ep += run.epochs;
      }
      cv.push({ weightDecay: w, logloss: ll / y.length, accuracy: correct / y.length, epochs: Math.round(ep / k) });
    }
    const best = cv.reduce((a, b) => (b.logloss < a.logloss ? b : a));
    wd = best.weightDecay;
    cvEpochs = best.epochs;
  }
  const held =
    o.validation && o.validation.X.length ? { Z: standardized(o.validation.X, std), y: o.validation.y } : undefined;
  const run = await train(Z, y, K, wd, o, 'final', held, held ? undefined : (cvEpochs ?? o.maxEpochs ?? 100));
  const p = (k: string) => run.params.get(k)!;
  return new MlpHead(std, p(P.W1), p(P.b1), p(P.W2), p(P.b2), K, wd, run.epochs, cv);
}
