/**
 * The one-call training loop for classifiers on in-memory examples: seeded shuffling, mini-batches,
 * learning-rate schedules, class weights, discriminative learning rates, gradual unfreezing, early
 * stopping with best-weight restore, per-epoch checkpoints with bit-exact resume, and progress
 * callbacks (loss, learning rate, examples/s). Everything underneath (Trainer, compileTraining,
 * buildBackward) stays available for more control.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Trainer, type TrainerOptions } from './trainer.js';
import { GraftError } from '../util/errors.js';
import { argmaxRows, accuracy } from '../util/vectors.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { selectTrainable, logitsOf, untieParameters, untieSpec, candidateParams } from './training-graph.js';
import type { ScheduleSpec } from './schedule.js';
import { layerGroups, discriminativeScales } from './layer-groups.js';
import {
  trainLoop,
  shuffledBatches,
  type BatchSource,
  type Callback,
  type EpochLogs,
  type LoopContext,
} from './loop.js';
import {
  LearningRate,
  EarlyStoppingCallback,
  Checkpoint,
  Unfreezing,
  Logger,
  Progress,
  type ProgressOptions,
} from './callbacks.js';
import type { ParamGroup } from '../optim/optimizer.js';

export interface Examples {
  /** One flat Float32Array per example, each of the model input's per-example size. */
  x: Float32Array[];
  y: number[];
}

/**
 * Examples held elsewhere, e.g. fp16 activations cached at a cut with K augmented views of each image
 * (src/finetune/top-blocks.ts): fit asks for batches. With views > 1 each epoch visits every example
 * once, through one of its views drawn by the seeded generator (so resume stays bit-exact).
 */
export interface ExampleBatches {
  y: number[];
  /** Views per example (default 1). */
  views?: number;
  /** Examples `idx` (view `views[k]` of example idx[k]; view 0 when omitted) as one tensor [n, ...exampleDims]. */
  batch(idx: number[], views?: number[]): Tensor;
}

/** What fit(), evaluate() and the learning-rate finder train or score on. */
export type TrainingData = Examples | ExampleBatches;

/** The number of examples. */
export function sizeOf(d: TrainingData): number {
  return d.y.length;
}

/** A batch of examples (and views) as one tensor. */
export function batchOf(d: TrainingData, idx: number[], dims: number[], views?: number[]): Tensor {
  return 'batch' in d
    ? d.batch(idx, views)
    : stack(
        idx.map((k) => d.x[k]!),
        dims,
      );
}

/** How early stopping watches the validation data. */
export interface EarlyStopping {
  /** 'accuracy' (higher is better, the default) or 'loss' (validation cross-entropy, lower is better). */
  monitor?: 'accuracy' | 'loss';
  /** Stop after this many epochs without improvement (default 3). */
  patience?: number;
  /** Smallest change that counts as an improvement (default 0). */
  minDelta?: number;
  /** Put back the weights of the best epoch at the end (default true). */
  restoreBest?: boolean;
}

export interface StepInfo {
  epoch: number;
  /** Global step, 1-based. */
  step: number;
  loss: number;
  lr: number;
  /** Training examples per second over the current epoch so far. */
  examplesPerSecond: number;
}

export interface EpochInfo {
  epoch: number;
  loss: number;
  lr: number;
  seconds: number;
  examplesPerSecond: number;
  valAccuracy?: number;
  valLoss?: number;
  /** Early stopping: this epoch is the best so far. */
  improved?: boolean;
  /** Early stopping ends the run after this epoch. */
  stopping?: boolean;
  /** A checkpoint of this epoch was written here. */
  checkpoint?: string;
}

/** One fit() call; only `epochs` and friends for the simple case, every part of the loop controllable. */
export interface FitOptions extends TrainerOptions {
  epochs?: number;
  batchSize?: number;
  /** Seeds the shuffling (default 0). Same seed and data → the same weights, bit for bit, on CPU. */
  seed?: number;
  /** Learning-rate schedule over the global step (default constant). `lr` is its base/peak rate. */
  schedule?: ScheduleSpec;
  /** Cross-entropy class weights: 'balanced' (n / (classes · count), as scikit-learn) or one per class. */
  classWeights?: 'balanced' | number[];
  /** Stop when the validation metric stops improving; needs `validation`. */
  earlyStopping?: EarlyStopping;
  /** Discriminative learning rates: each layer group trains at `lrDecay` × the rate of the group after it. */
  lrDecay?: number;
  /** Merge the model's layers into this many groups for lrDecay and unfreezeEvery (default: one group per weight layer). */
  layerGroups?: number;
  /** Gradual unfreezing: train the last layer group first, then one more group every this many epochs. */
  unfreezeEvery?: number;
  /** Write a checkpoint per epoch into `dir`; with `resume`, continue from the newest one there. */
  checkpoint?: { dir: string; resume?: boolean; keep?: number };
  /** Called once before training with the number of steps it will take (startStep > 0 when resuming). */
  onStart?: (info: { totalSteps: number; startStep: number; resumedEpoch?: number }) => void;
  /** Called after every step. */
  onStep?: (info: StepInfo) => void;
  onEpoch?: (info: EpochInfo) => void;
  /** Gradual unfreezing: called when a stage starts, with the parameters that train from then on. */
  onStage?: (info: { epoch: number; stage: number; trainable: string[] }) => void;
  validation?: TrainingData;
  /** More callbacks (src/train/callbacks.ts or your own), run after the built-in ones. */
  callbacks?: Callback[];
  /** Draw a progress bar on stderr (only on a terminal). */
  progress?: boolean | ProgressOptions;
}

export interface FitResult {
  trainer: Trainer;
  losses: number[];
  valAccuracy?: number;
  valLoss?: number;
  /** Epochs trained (including those before a resume). */
  epochs: number;
  /** Early stopping: the epoch whose weights the trainer holds at the end. */
  bestEpoch?: number;
  /** The epoch a resumed run started after (0: none). */
  resumedFrom: number;
}

/** Class weights for cross-entropy from a spec and the training labels. */
export function resolveClassWeights(spec: 'balanced' | number[], y: number[], classes: number): number[] {
  if (spec !== 'balanced') {
    if (spec.length !== classes)
      throw new GraftError(`${spec.length} class weights given for a model with ${classes} classes`);
    if (spec.some((w) => !(w >= 0)))
      throw new GraftError(`class weights must be non-negative numbers, got ${spec.join(',')}`);
    return spec;
  }
  const counts = new Array<number>(classes).fill(0);
  for (const c of y) if (c >= 0 && c < classes) counts[c]!++;
  const present = counts.filter((c) => c > 0).length;
  return counts.map((c) => (c > 0 ? y.length / (present * c) : 1));
}

/** The number of classes the model's (first) output declares in its shape (features/multi-task.ts outputClasses runs the model instead). */
export function declaredClassCount(model: Graph, output?: string): number | undefined {
  const name = output ?? model.outputs[0]?.name;
  const vi = model.outputs.find((o) => o.name === name) ?? (name ? model.valueInfoOf(name) : undefined);
  const last = vi?.shape?.[vi.shape.length - 1];
  return typeof last === 'number' ? last : undefined;
}

/** Trainer options with fit-level conveniences (class weights) turned into the loss they mean. */
export function trainerOptions(model: Graph, data: { y: number[] }, o: FitOptions): TrainerOptions {
  if (!o.classWeights) return o;
  const loss = o.loss ?? { kind: 'cross-entropy' as const };
  if (loss.kind !== 'cross-entropy')
    throw new GraftError(`class weights apply to the cross-entropy loss, not '${loss.kind}'`);
  const classes = declaredClassCount(model, o.output) ?? Math.max(...data.y) + 1;
  return { ...o, loss: { ...loss, classWeights: resolveClassWeights(o.classWeights, data.y, classes) } };
}

/** Mean cross-entropy of [n, classes] model outputs (logits, or probabilities when `probs`), optionally class-weighted. */
export function crossEntropyOf(out: Tensor, y: number[], probs: boolean, weights?: number[]): number {
  const c = out.dims[1]!;
  const d = out.data as Float32Array;
  let sum = 0;
  let wsum = 0;
  for (let r = 0; r < y.length; r++) {
    const row = d.subarray(r * c, r * c + c);
    let nll: number;
    if (probs) nll = -Math.log(Math.max(row[y[r]!]!, 1e-12));
    else {
      let mx = -Infinity;
      for (const v of row) mx = Math.max(mx, v);
      let s = 0;
      for (const v of row) s += Math.exp(v - mx);
      nll = mx + Math.log(s) - row[y[r]!]!;
    }
    const w = weights?.[y[r]!] ?? 1;
    sum += w * nll;
    wsum += w;
  }
  return sum / Math.max(wsum, 1e-12);
}

/** Accuracy and cross-entropy of the trainer's current weights on examples. */
export async function evaluate(
  trainer: Trainer,
  data: TrainingData,
  batchSize = 64,
  weights?: number[],
): Promise<{ accuracy: number; loss: number }> {
  const model = trainer.tg.model;
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  const probs = logitsOf(model, trainer.tg.output) !== trainer.tg.output;
  const pred: number[] = [];
  let lossSum = 0;
  let wSum = 0;
  const n = sizeOf(data);
  for (let i = 0; i < n; i += batchSize) {
    const idx = [...Array(Math.min(batchSize, n - i)).keys()].map((k) => i + k);
    const out = await trainer.predict({ [name]: batchOf(data, idx, dims) });
    const ys = data.y.slice(i, i + batchSize);
    pred.push(...argmaxRows(out));
    const w = ys.reduce((s, c) => s + (weights?.[c] ?? 1), 0);
    lossSum += crossEntropyOf(out, ys, probs, weights) * w;
    wSum += w;
  }
  return { accuracy: accuracy(pred, data.y), loss: lossSum / Math.max(wSum, 1e-12) };
}

/** The examples as a batch source: a seeded shuffle per epoch, mini-batches, a view per example drawn after it. */
export function exampleSource(model: Graph, data: TrainingData, batchSize: number, epochs: number): BatchSource {
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  const nViews = 'batch' in data ? (data.views ?? 1) : 1;
  return shuffledBatches(sizeOf(data), batchSize, epochs, (idx, _e, rng) => {
    const views = nViews > 1 ? idx.map(() => rng.int(nViews)) : undefined;
    return {
      feeds: { [name]: batchOf(data, idx, dims, views) },
      target: labelsTensor(idx.map((k) => data.y[k]!)),
      size: idx.length,
    };
  });
}

/** Validation accuracy and loss after every epoch, into the epoch's logs (before early stopping reads them). */
export class Validation implements Callback {
  readonly name = 'validation';
  constructor(
    readonly data: TrainingData,
    readonly weights?: number[],
    readonly batchSize = 64,
  ) {}
  async onEpochEnd(ctx: LoopContext, logs: EpochLogs): Promise<void> {
    const ev = await evaluate(ctx.trainer, this.data, this.batchSize, this.weights);
    logs.valAccuracy = ev.accuracy;
    logs.valLoss = ev.loss;
  }
}

/**
 * Train a classifier on examples: fit's options become a batch source (exampleSource) and callbacks
 * (LearningRate, Validation, EarlyStopping, Unfreezing, Checkpoint, Logger) run by the one training
 * loop (src/train/loop.ts); `callbacks` adds more (after the built-in ones, before the logger).
 */
export async function fit(model: Graph, data: TrainingData, o: FitOptions = {}): Promise<FitResult> {
  if (o.untie) {
    // untie once, before choosing what trains, so layer groups, checkpoints and every stage's trainer see the copies
    const up = upgradeOpset(model);
    const u = untieParameters(up, candidateParams(up));
    if (u.ties.length) {
      model = u.graph;
      const trainable = untieSpec(o.trainable, u.ties);
      o = { ...o, ...(trainable ? { trainable } : {}) };
    }
  }
  if ('x' in data && data.x.length !== data.y.length)
    throw new GraftError(`${data.x.length} examples but ${data.y.length} labels`);
  const n = sizeOf(data);
  const nViews = 'batch' in data ? (data.views ?? 1) : 1;
  if (n === 0) throw new GraftError('no training examples');
  const hasVal = !!o.validation && sizeOf(o.validation) > 0;
  if (o.earlyStopping && !hasVal) throw new GraftError('early stopping needs validation data');
  const topts = trainerOptions(model, data, o);
  const classWeights = topts.loss?.kind === 'cross-entropy' ? topts.loss.classWeights : undefined;
  exampleDims(model);
  const bs = o.batchSize ?? 32;
  if (!Number.isInteger(bs) || bs < 1) throw new GraftError(`batch size must be a positive integer, got ${bs}`);
  const epochs = o.epochs ?? 10;
  if (!Number.isInteger(epochs) || epochs < 0)
    throw new GraftError(`epochs must be a non-negative integer, got ${epochs}`);
  const patience = o.earlyStopping?.patience;
  if (patience !== undefined && !(Number.isInteger(patience) && patience >= 1))
    throw new GraftError(`early stopping patience must be a positive number of epochs, got ${patience}`);
  const keep = o.checkpoint?.keep;
  if (keep !== undefined && !(Number.isInteger(keep) && keep >= 1))
    throw new GraftError(`the number of checkpoints to keep must be a positive integer, got ${keep}`);
  const stepsPerEpoch = Math.ceil(n / bs);
  const totalSteps = epochs * stepsPerEpoch;
  const baseLr = o.lr ?? 1e-3;

  // What trains, in layer groups (for discriminative rates and gradual unfreezing).
  const upgraded = upgradeOpset(model);
  const trainable = selectTrainable(upgraded, o.trainable);
  const needGroups = o.lrDecay !== undefined || o.unfreezeEvery !== undefined;
  const groups = needGroups ? layerGroups(upgraded, trainable, o.layerGroups) : [trainable];
  if (o.unfreezeEvery !== undefined && !(Number.isInteger(o.unfreezeEvery) && o.unfreezeEvery >= 1))
    throw new GraftError(`unfreezeEvery must be a positive number of epochs, got ${o.unfreezeEvery}`);
  const scales = o.lrDecay !== undefined ? discriminativeScales(groups, o.lrDecay) : undefined;
  const makeTrainer = async (g: Graph, names: string[]): Promise<Trainer> => {
    const t = await Trainer.create(g, { ...topts, trainable: { names } });
    if (scales) {
      const base =
        (o.optimizer && 'groups' in o.optimizer ? o.optimizer.groups : undefined) ?? new Map<string, ParamGroup>();
      t.optimizer.setGroups(
        new Map(names.map((k) => [k, { ...base.get(k), lrScale: (base.get(k)?.lrScale ?? 1) * scales.get(k)! }])),
      );
    }
    return t;
  };
  const unfreeze: Unfreezing | undefined = o.unfreezeEvery
    ? new Unfreezing(
        groups,
        o.unfreezeEvery,
        (g, stage) => makeTrainer(g, groups.slice(groups.length - 1 - stage).flat()),
        o.onStage,
      )
    : undefined;
  const namesAt = (epoch: number) =>
    unfreeze ? unfreeze.namesOf(unfreeze.stageOf(Math.min(epochs, epoch))) : trainable;

  const config: Record<string, unknown> = {
    examples: n,
    ...(nViews > 1 ? { views: nViews } : {}),
    batchSize: bs,
    seed: o.seed ?? 0,
    lr: baseLr,
    schedule: o.schedule ?? null,
    optimizer: o.optimizer
      ? {
          ...o.optimizer,
          ...('groups' in o.optimizer && o.optimizer.groups ? { groups: [...o.optimizer.groups] } : {}),
        }
      : null,
    trainable,
    lrDecay: o.lrDecay ?? null,
    layerGroups: o.layerGroups ?? null,
    unfreezeEvery: o.unfreezeEvery ?? null,
    batchNorm: o.batchNorm ?? 'frozen',
    bnMomentum: o.bnMomentum ?? null,
    classWeights: classWeights ?? null,
    earlyStopping: o.earlyStopping ?? null,
    loss: o.loss ?? null,
    clipNorm: o.clipNorm ?? null,
    ...(o.schedule && o.schedule.kind !== 'constant' && o.schedule.kind !== 'step' ? { epochs } : {}),
  };
  const trainer = await makeTrainer(model, namesAt(1));
  const tracked = [...new Set([...trainable, ...trainer.stateValues.keys()])];
  const es = o.earlyStopping;
  const early = es
    ? new EarlyStoppingCallback({
        monitor: es.monitor === 'loss' ? 'valLoss' : 'valAccuracy',
        mode: es.monitor === 'loss' ? 'min' : 'max',
        ...(es.patience !== undefined ? { patience: es.patience } : {}),
        minDelta: es.minDelta ?? 0,
        restoreBest: es.restoreBest ?? true,
        weights: tracked,
      })
    : undefined;
  const callbacks: Callback[] = [LearningRate.of(o.schedule, baseLr, { totalSteps, stepsPerEpoch })];
  if (hasVal) callbacks.push(new Validation(o.validation!, classWeights));
  if (early) callbacks.push(early);
  if (unfreeze) callbacks.push(unfreeze);
  if (o.checkpoint)
    callbacks.push(
      new Checkpoint({
        dir: o.checkpoint.dir,
        resume: o.checkpoint.resume,
        keep: o.checkpoint.keep,
        config,
        weights: tracked,
        model,
      }),
    );
  callbacks.push(...(o.callbacks ?? []));
  callbacks.push(
    new Logger({
      onStart: (ctx) => {
        if (!unfreeze && ctx.epoch < epochs && !ctx.stop) o.onStage?.({ epoch: ctx.epoch + 1, stage: 0, trainable });
        o.onStart?.({
          totalSteps,
          startStep: ctx.trainer.steps,
          ...(ctx.resumedFrom ? { resumedEpoch: ctx.resumedFrom } : {}),
        });
      },
      onStep: (_ctx, s) =>
        o.onStep?.({ epoch: s.epoch, step: s.step, loss: s.loss, lr: s.lr, examplesPerSecond: s.examplesPerSecond }),
      onEpoch: (_ctx, l) =>
        o.onEpoch?.({
          epoch: l.epoch,
          loss: l.loss,
          lr: l.lr,
          seconds: l.seconds,
          examplesPerSecond: l.examplesPerSecond,
          ...(l.valAccuracy !== undefined ? { valAccuracy: l.valAccuracy } : {}),
          ...(l.valLoss !== undefined ? { valLoss: l.valLoss } : {}),
          ...(l.improved !== undefined ? { improved: l.improved } : {}),
          ...(l.stopping !== undefined ? { stopping: l.stopping } : {}),
          ...(l.checkpoint !== undefined ? { checkpoint: l.checkpoint } : {}),
        }),
    }),
  );
  if (o.progress) callbacks.push(new Progress(typeof o.progress === 'object' ? o.progress : {}));
  const r = await trainLoop(trainer, exampleSource(model, data, bs, epochs), {
    seed: o.seed ?? 0,
    lr: baseLr,
    callbacks,
    rebuild: (g, ctx) => makeTrainer(g, namesAt(ctx.epoch + 1)),
  });
  let valAccuracy = r.last?.valAccuracy;
  let valLoss = r.last?.valLoss;
  try {
    if (hasVal && (early?.restoredEpoch !== undefined || (r.resumedFrom && r.epochs === r.resumedFrom)))
      ({ accuracy: valAccuracy, loss: valLoss } = await evaluate(r.trainer, o.validation!, 64, classWeights));
  } catch (e) {
    await r.trainer.release().catch(() => undefined);
    throw e;
  }
  const bestEpoch = early?.restoredEpoch;
  return {
    trainer: r.trainer,
    losses: r.losses,
    epochs: r.epochs,
    resumedFrom: r.resumedFrom,
    ...(valAccuracy !== undefined ? { valAccuracy } : {}),
    ...(valLoss !== undefined ? { valLoss } : {}),
    ...(bestEpoch !== undefined ? { bestEpoch } : {}),
  };
}

/** Stack examples into one batch tensor of shape [n, ...exampleDims]. */
export function stack(xs: Float32Array[], exampleDims: number[]): Tensor {
  const per = xs[0]?.length ?? 0;
  const data = new Float32Array(xs.length * per);
  xs.forEach((x, i) => {
    if (x.length !== per) throw new GraftError(`example ${i} has ${x.length} values, expected ${per}`);
    data.set(x, i * per);
  });
  return { dtype: 'float32', dims: [xs.length, ...exampleDims], data };
}

export function labelsTensor(ys: number[]): Tensor {
  return { dtype: 'int64', dims: [ys.length], data: BigInt64Array.from(ys.map((y) => BigInt(y))) };
}

/** Per-example input dims of the model's (single) data input, batch axis removed. */
export function exampleDims(model: Graph): number[] {
  const inp = model.dataInputs();
  if (inp.length !== 1) throw new GraftError(`expected a model with one data input, found ${inp.length}`);
  const shape = inp[0]!.shape ?? [];
  const dims = shape.slice(1);
  if (dims.some((d) => typeof d !== 'number'))
    throw new GraftError(`input '${inp[0]!.name}' has non-fixed dims [${shape}]`);
  return dims as number[];
}

export async function predictLabels(
  trainer: Trainer,
  model: Graph,
  xs: Float32Array[],
  batchSize = 64,
): Promise<number[]> {
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  const out: number[] = [];
  for (let i = 0; i < xs.length; i += batchSize) {
    out.push(...argmaxRows(await trainer.predict({ [name]: stack(xs.slice(i, i + batchSize), dims) })));
  }
  return out;
}
