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
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { selectTrainable, logitsOf, untieParameters, untieSpec, candidateParams } from './training-graph.js';
import { makeSchedule, type ScheduleSpec } from './schedule.js';
import { layerGroups, discriminativeScales } from './layer-groups.js';
import { writeCheckpoint, readLatestCheckpoint, configMismatch, type EarlyStoppingState } from './checkpoint.js';
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
  return 'batch' in d ? d.batch(idx, views) : stack(idx.map((k) => d.x[k]!), dims);
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
    if (spec.length !== classes) throw new GraftError(`${spec.length} class weights given for a model with ${classes} classes`);
    if (spec.some((w) => !(w >= 0))) throw new GraftError(`class weights must be non-negative numbers, got ${spec.join(',')}`);
    return spec;
  }
  const counts = new Array<number>(classes).fill(0);
  for (const c of y) if (c >= 0 && c < classes) counts[c]!++;
  const present = counts.filter((c) => c > 0).length;
  return counts.map((c) => (c > 0 ? y.length / (present * c) : 1));
}

/** The number of classes of the model's (first) output, from its declared shape. */
export function outputClasses(model: Graph, output?: string): number | undefined {
  const name = output ?? model.outputs[0]?.name;
  const vi = model.outputs.find((o) => o.name === name) ?? (name ? model.valueInfoOf(name) : undefined);
  const last = vi?.shape?.[vi.shape.length - 1];
  return typeof last === 'number' ? last : undefined;
}

/** Trainer options with fit-level conveniences (class weights) turned into the loss they mean. */
export function trainerOptions(model: Graph, data: { y: number[] }, o: FitOptions): TrainerOptions {
  if (!o.classWeights) return o;
  const loss = o.loss ?? { kind: 'cross-entropy' as const };
  if (loss.kind !== 'cross-entropy') throw new GraftError(`class weights apply to the cross-entropy loss, not '${loss.kind}'`);
  const classes = outputClasses(model, o.output) ?? Math.max(...data.y) + 1;
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
export async function evaluate(trainer: Trainer, data: TrainingData, batchSize = 64, weights?: number[]): Promise<{ accuracy: number; loss: number }> {
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

/** Current values of the named weights: trained ones from the trainer, frozen ones from its graph. */
function snapshot(trainer: Trainer, names: string[]): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const k of names) {
    const v = trainer.params.get(k) ?? trainer.stateValues.get(k) ?? (trainer.tg.model.initializers.get(k)?.data as Float32Array | undefined);
    if (v) out.set(k, Float32Array.from(v));
  }
  return out;
}

/** Write saved weights back into the trainer (the ones it trains; the others are frozen and unchanged). */
function restore(trainer: Trainer, w: Map<string, Float32Array>): void {
  for (const [k, v] of w) (trainer.params.get(k) ?? trainer.stateValues.get(k))?.set(v);
}

/** The model with some initializers replaced (weights from a checkpoint). */
function withWeights(model: Graph, w: Map<string, Float32Array>): Graph {
  const g = model.clone();
  for (const [k, v] of w) {
    const t = g.initializers.get(k);
    if (!t || t.dtype !== 'float32' || (t.data as Float32Array).length !== v.length)
      throw new GraftError(`checkpoint weight '${k}' does not fit the model (${t ? `${t.dtype}[${t.dims}]` : 'no such initializer'})`);
    g.initializers.set(k, { dtype: 'float32', dims: [...t.dims], data: Float32Array.from(v) });
  }
  return g;
}

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
  if ('x' in data && data.x.length !== data.y.length) throw new GraftError(`${data.x.length} examples but ${data.y.length} labels`);
  const n = sizeOf(data);
  const nViews = 'batch' in data ? data.views ?? 1 : 1;
  if (n === 0) throw new GraftError('no training examples');
  const hasVal = !!o.validation && sizeOf(o.validation) > 0;
  if (o.earlyStopping && !hasVal) throw new GraftError('early stopping needs validation data');
  const topts = trainerOptions(model, data, o);
  const classWeights = topts.loss?.kind === 'cross-entropy' ? topts.loss.classWeights : undefined;
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  const bs = o.batchSize ?? 32;
  if (!Number.isInteger(bs) || bs < 1) throw new GraftError(`batch size must be a positive integer, got ${bs}`);
  const epochs = o.epochs ?? 10;
  if (!Number.isInteger(epochs) || epochs < 0) throw new GraftError(`epochs must be a non-negative integer, got ${epochs}`);
  const patience = o.earlyStopping?.patience;
  if (patience !== undefined && !(Number.isInteger(patience) && patience >= 1)) throw new GraftError(`early stopping patience must be a positive number of epochs, got ${patience}`);
  const keep = o.checkpoint?.keep;
  if (keep !== undefined && !(Number.isInteger(keep) && keep >= 1)) throw new GraftError(`the number of checkpoints to keep must be a positive integer, got ${keep}`);
  const stepsPerEpoch = Math.ceil(n / bs);
  const totalSteps = epochs * stepsPerEpoch;
  const baseLr = o.lr ?? 1e-3;
  const lrAt = makeSchedule(o.schedule, baseLr, { totalSteps, stepsPerEpoch });

  // What trains, in layer groups (for discriminative rates and gradual unfreezing).
  const upgraded = upgradeOpset(model);
  const trainable = selectTrainable(upgraded, o.trainable);
  const needGroups = o.lrDecay !== undefined || o.unfreezeEvery !== undefined;
  const groups = needGroups ? layerGroups(upgraded, trainable, o.layerGroups) : [trainable];
  if (o.unfreezeEvery !== undefined && !(Number.isInteger(o.unfreezeEvery) && o.unfreezeEvery >= 1))
    throw new GraftError(`unfreezeEvery must be a positive number of epochs, got ${o.unfreezeEvery}`);
  const scales = o.lrDecay !== undefined ? discriminativeScales(groups, o.lrDecay) : undefined;
  const stageOf = (epoch: number) => (o.unfreezeEvery ? Math.min(groups.length - 1, Math.floor((epoch - 1) / o.unfreezeEvery)) : 0);
  const namesOf = (stage: number) => (o.unfreezeEvery ? groups.slice(groups.length - 1 - stage).flat() : trainable);
  const makeTrainer = async (g: Graph, stage: number): Promise<Trainer> => {
    const names = namesOf(stage);
    const t = await Trainer.create(g, { ...topts, trainable: { names } });
    if (scales) {
      const base = (o.optimizer && 'groups' in o.optimizer ? o.optimizer.groups : undefined) ?? new Map<string, ParamGroup>();
      t.optimizer.setGroups(new Map(names.map((k) => [k, { ...base.get(k), lrScale: (base.get(k)?.lrScale ?? 1) * scales.get(k)! }])));
    }
    return t;
  };

  const config: Record<string, unknown> = {
    examples: n, ...(nViews > 1 ? { views: nViews } : {}), batchSize: bs, seed: o.seed ?? 0, lr: baseLr, schedule: o.schedule ?? null,
    optimizer: o.optimizer ? { ...o.optimizer, ...('groups' in o.optimizer && o.optimizer.groups ? { groups: [...o.optimizer.groups] } : {}) } : null,
    trainable, lrDecay: o.lrDecay ?? null, layerGroups: o.layerGroups ?? null, unfreezeEvery: o.unfreezeEvery ?? null,
    batchNorm: o.batchNorm ?? 'frozen', bnMomentum: o.bnMomentum ?? null, classWeights: classWeights ?? null, earlyStopping: o.earlyStopping ?? null,
    loss: o.loss ?? null, clipNorm: o.clipNorm ?? null,
    ...(o.schedule && o.schedule.kind !== 'constant' && o.schedule.kind !== 'step' ? { epochs } : {}),
  };
  const rng = new Rng(o.seed ?? 0);
  let losses: number[] = [];
  let startEpoch = 0;
  let early: EarlyStoppingState | undefined = o.earlyStopping ? { best: null, bestEpoch: 0, bad: 0, stopped: false } : undefined;
  let best: Map<string, Float32Array> | undefined;
  let trainer: Trainer;
  let stage = stageOf(1);
  const ckpt = o.checkpoint;
  const saved = ckpt?.resume ? readLatestCheckpoint(ckpt.dir) : undefined;
  if (saved) {
    const diff = configMismatch(saved.config, config);
    if (diff.length)
      throw new GraftError(`the checkpoint in ${ckpt!.dir} was written by a run with other settings (${diff.join(', ')}); resume with the same settings or use another --checkpoint-dir`);
    startEpoch = saved.epoch;
    rng.state = saved.rng;
    losses = saved.losses;
    early = saved.early;
    stage = stageOf(Math.min(epochs, startEpoch + 1));
    trainer = await makeTrainer(withWeights(model, saved.weights), stage);
    trainer.optimizer.importState(saved.optimizer);
    trainer.steps = saved.step;
    best = saved.bestWeights ?? (early ? saved.weights : undefined);
  } else trainer = await makeTrainer(model, stage);
  const tracked = [...new Set([...trainable, ...trainer.stateValues.keys()])];
  if (startEpoch < epochs && !early?.stopped) o.onStage?.({ epoch: startEpoch + 1, stage, trainable: namesOf(stage) });
  o.onStart?.({ totalSteps, startStep: trainer.steps, ...(saved ? { resumedEpoch: startEpoch } : {}) });

  let valAccuracy: number | undefined;
  let valLoss: number | undefined;
  let epoch = startEpoch;
  const done = () => epoch >= epochs || !!early?.stopped;
  let bestEpoch: number | undefined;
  try {
    while (!done()) {
      epoch++;
      if (stageOf(epoch) !== stage) {
        stage = stageOf(epoch);
        const opt = trainer.optimizer.exportState();
        const steps = trainer.steps;
        const g = trainer.toGraph();
        await trainer.release();
        trainer = await makeTrainer(g, stage);
        trainer.optimizer.importState(opt);
        trainer.steps = steps;
        o.onStage?.({ epoch, stage, trainable: namesOf(stage) });
      }
      const t0 = performance.now();
      const order = rng.shuffle([...Array(n).keys()]);
      let sum = 0;
      let steps = 0;
      let lr = lrAt(trainer.steps);
      for (let i = 0; i < order.length; i += bs) {
        const idx = order.slice(i, i + bs);
        lr = lrAt(trainer.steps);
        const views = nViews > 1 ? idx.map(() => rng.int(nViews)) : undefined;
        const r = await trainer.step({ [name]: batchOf(data, idx, dims, views) }, labelsTensor(idx.map((k) => data.y[k]!)), lr);
        losses.push(r.loss);
        sum += r.loss;
        steps++;
        o.onStep?.({ epoch, step: trainer.steps, loss: r.loss, lr, examplesPerSecond: (Math.min(i + bs, order.length) * 1000) / (performance.now() - t0) });
      }
      const seconds = (performance.now() - t0) / 1000;
      const info: EpochInfo = { epoch, loss: sum / steps, lr, seconds, examplesPerSecond: n / seconds };
      if (hasVal) {
        const ev = await evaluate(trainer, o.validation!, 64, classWeights);
        valAccuracy = info.valAccuracy = ev.accuracy;
        valLoss = info.valLoss = ev.loss;
      }
      if (early) {
        const es = o.earlyStopping!;
        const loss = es.monitor === 'loss';
        const v = loss ? valLoss! : valAccuracy!;
        const delta = es.minDelta ?? 0;
        const improved = early.best === null || (loss ? v < early.best - delta : v > early.best + delta);
        if (improved) {
          early = { ...early, best: v, bestEpoch: epoch, bad: 0 };
          best = snapshot(trainer, tracked);
        } else early = { ...early, bad: early.bad + 1 };
        if (early.bad >= (es.patience ?? 3)) early.stopped = true;
        info.improved = improved;
        info.stopping = early.stopped;
      }
      if (ckpt) {
        info.checkpoint = writeCheckpoint(ckpt.dir, {
          epoch, step: trainer.steps, rng: rng.state, losses, weights: snapshot(trainer, tracked), optimizer: trainer.optimizer.exportState(),
          ...(early ? { early } : {}), ...(early && best && early.bestEpoch !== epoch ? { bestWeights: best } : {}), config,
        }, ckpt.keep);
      }
      o.onEpoch?.(info);
    }
    if (early && best && (o.earlyStopping!.restoreBest ?? true)) {
      restore(trainer, best);
      bestEpoch = early.bestEpoch;
      if (hasVal) ({ accuracy: valAccuracy, loss: valLoss } = await evaluate(trainer, o.validation!, 64, classWeights));
    } else if (saved && epoch === startEpoch && hasVal) ({ accuracy: valAccuracy, loss: valLoss } = await evaluate(trainer, o.validation!, 64, classWeights));
  } catch (e) {
    // an error (or an interrupt thrown by a callback) must not leak the trainer's onnxruntime sessions
    await trainer.release().catch(() => undefined);
    throw e;
  }
  return {
    trainer, losses, epochs: epoch, resumedFrom: saved ? startEpoch : 0,
    ...(valAccuracy !== undefined ? { valAccuracy } : {}), ...(valLoss !== undefined ? { valLoss } : {}), ...(bestEpoch !== undefined ? { bestEpoch } : {}),
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
  if (dims.some((d) => typeof d !== 'number')) throw new GraftError(`input '${inp[0]!.name}' has non-fixed dims [${shape}]`);
  return dims as number[];
}

export async function predictLabels(trainer: Trainer, model: Graph, xs: Float32Array[], batchSize = 64): Promise<number[]> {
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  const out: number[] = [];
  for (let i = 0; i < xs.length; i += batchSize) {
    out.push(...argmaxRows(await trainer.predict({ [name]: stack(xs.slice(i, i + batchSize), dims) })));
  }
  return out;
}

/** The index of the largest value in each row of a [rows, classes] tensor. */
export function argmaxRows(t: Tensor): number[] {
  const c = t.dims[1]!;
  const d = t.data as Float32Array;
  const out: number[] = [];
  for (let r = 0; r < t.dims[0]!; r++) {
    let best = 0;
    for (let k = 1; k < c; k++) if (d[r * c + k]! > d[r * c + best]!) best = k;
    out.push(best);
  }
  return out;
}

export function accuracy(pred: number[], y: number[]): number {
  let ok = 0;
  pred.forEach((p, i) => (ok += p === y[i] ? 1 : 0));
  return ok / Math.max(1, y.length);
}

