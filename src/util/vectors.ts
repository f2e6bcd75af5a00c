/**
 * The small vector helpers every stage uses, one copy each: argmax (of a vector, of each row of a
 * [rows, classes] tensor), a numerically stable softmax, and accuracy of predicted labels.
 */
import type { Tensor } from '../graph/tensor.js';

/** The index of the largest value (the first one on ties; NaN never wins). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < x.length; k++) if (x[k]! > x[best]!) best = k;
  return best;
}

/** The argmax of each row of a tensor whose last axis holds the classes ([rows, classes] or more axes). */
export function argmaxRows(t: Tensor): number[] {
  const K = t.dims[t.dims.length - 1]!;
  const d = t.data as Float32Array | Float64Array;
  const out: number[] = [];
  for (let r = 0; r * K < d.length && K > 0; r++) out.push(argmax(d.subarray(r * K, (r + 1) * K)));
  return out;
}

/** exp(x − max) / Σ, in float64. */
export function softmax(x: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i]!);
  const out = new Float64Array(x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += out[i] = Math.exp(x[i]! - max);
  for (let i = 0; i < x.length; i++) out[i]! /= sum;
  return out;
}

/** The fraction of predictions equal to their label (0 for no labels). */
export function accuracy(pred: readonly number[], y: readonly number[]): number {
  let ok = 0;
  pred.forEach((p, i) => (ok += p === y[i] ? 1 : 0));
  return ok / Math.max(1, y.length);
}
