/**
 * The one-call training loop for classifiers on in-memory examples: seeded shuffling, mini-batches,
 * a progress callback, and accuracy on held-out data. Everything underneath (Trainer, compileTraining,
 * buildBackward) stays available for more control.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Trainer, type TrainerOptions } from './trainer.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export interface Examples {
  /** One flat Float32Array per example, each of the model input's per-example size. */
  x: Float32Array[];
  y: number[];
}

export interface FitOptions extends TrainerOptions {
  epochs?: number;
  batchSize?: number;
  seed?: number;
  /** Called once before training with the number of steps it will take. */
  onStart?: (info: { totalSteps: number }) => void;
  /** Called after every step. */
  onStep?: (info: { epoch: number; step: number; loss: number }) => void;
  onEpoch?: (info: { epoch: number; loss: number; valAccuracy?: number }) => void;
  validation?: Examples;
}

export interface FitResult {
  trainer: Trainer;
  losses: number[];
  valAccuracy?: number;
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

export async function fit(model: Graph, data: Examples, o: FitOptions = {}): Promise<FitResult> {
  if (data.x.length !== data.y.length) throw new GraftError(`${data.x.length} examples but ${data.y.length} labels`);
  if (data.x.length === 0) throw new GraftError('no training examples');
  const trainer = await Trainer.create(model, o);
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  const rng = new Rng(o.seed ?? 0);
  const bs = o.batchSize ?? 32;
  const losses: number[] = [];
  let valAccuracy: number | undefined;
  const epochs = o.epochs ?? 10;
  o.onStart?.({ totalSteps: epochs * Math.ceil(data.x.length / bs) });
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const order = rng.shuffle([...data.x.keys()]);
    let sum = 0;
    let steps = 0;
    for (let i = 0; i < order.length; i += bs) {
      const idx = order.slice(i, i + bs);
      const r = await trainer.step({ [name]: stack(idx.map((k) => data.x[k]!), dims) }, labelsTensor(idx.map((k) => data.y[k]!)));
      losses.push(r.loss);
      sum += r.loss;
      steps++;
      o.onStep?.({ epoch, step: trainer.steps, loss: r.loss });
    }
    if (o.validation) valAccuracy = accuracy(await predictLabels(trainer, trainer.tg.model, o.validation.x), o.validation.y);
    o.onEpoch?.({ epoch, loss: sum / steps, ...(valAccuracy !== undefined ? { valAccuracy } : {}) });
  }
  return { trainer, losses, ...(valAccuracy !== undefined ? { valAccuracy } : {}) };
}
