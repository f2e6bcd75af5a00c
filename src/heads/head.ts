/**
 * What every head trained on cached features shares: the FeatureHead interface (probabilities in
 * TypeScript, and the same computation emitted as ONNX nodes for the merged backbone+head file),
 * feature standardization (population mean/std) and the standardize-then-L2-normalize step of the
 * similarity heads, in TypeScript and in ONNX.
 */
import type { Builder } from '../graph/builder.js';
import { GraftError } from '../util/errors.js';

export type HeadKind = 'logistic' | 'mlp' | 'ncm' | 'knn';
export const HEAD_KINDS: readonly HeadKind[] = ['logistic', 'mlp', 'ncm', 'knn'];

export interface FeatureHead {
  readonly kind: HeadKind;
  readonly numClasses: number;
  /** Feature length D. */
  readonly dim: number;
  /** Class probabilities, one Float64Array of K per example (each sums to 1). */
  predictProba(X: ArrayLike<number>[]): Float64Array[];
  /** The most probable class per example. */
  predict(X: ArrayLike<number>[]): number[];
  accuracy(X: ArrayLike<number>[], y: number[]): number;
  /**
   * Emit the head into `b`'s graph after `x`, a float32 [N, D] value; returns the name of the
   * [N, K] value holding the same probabilities as predictProba (up to float32 rounding).
   */
  toOnnx(b: Builder, x: string): string;
  /** Hyperparameters and sizes, for reports and the saved file's metadata. */
  summary(): Record<string, number | string>;
}

/**
 * Number of classes implied by integer labels: the largest label + 1 (0 for none). A loop, not
 * Math.max(...y), which overflows the call stack beyond ~150k labels.
 */
export function classCount(y: ArrayLike<number>): number {
  let m = -1;
  for (let i = 0; i < y.length; i++) if (y[i]! > m) m = y[i]!;
  return m + 1;
}

export interface Standardization {
  mean: Float64Array;
  /** Population standard deviation (1 where a feature is constant). */
  scale: Float64Array;
}

/** Per-feature mean and population std of X; all vectors must have the same length. */
export function standardization(X: ArrayLike<number>[], on = true): Standardization {
  const n = X.length,
    D = X[0]?.length ?? 0;
  const mean = new Float64Array(D),
    scale = new Float64Array(D).fill(1);
  for (const x of X) if (x.length !== D) throw new GraftError(`feature vectors differ in length (${x.length} vs ${D})`);
  if (!on || n === 0) return { mean, scale };
  for (const x of X) for (let j = 0; j < D; j++) mean[j]! += x[j]!;
  for (let j = 0; j < D; j++) mean[j]! /= n;
  const v = new Float64Array(D);
  for (const x of X)
    for (let j = 0; j < D; j++) {
      const t = x[j]! - mean[j]!;
      v[j]! += t * t;
    }
  for (let j = 0; j < D; j++) {
    const s = Math.sqrt(v[j]! / n);
    scale[j] = s > 1e-12 ? s : 1;
  }
  return { mean, scale };
}

/** Smallest squared norm a vector is divided by (a zero vector stays zero). */
export const NORM_FLOOR = 1e-24;

/** (x − mean) / scale, then divided by its Euclidean norm. */
export function standardizeNormalize(
  x: ArrayLike<number>,
  s: Standardization,
  out = new Float64Array(s.mean.length),
): Float64Array {
  const D = s.mean.length;
  if (x.length !== D) throw new GraftError(`feature vector has ${x.length} values, the head expects ${D}`);
  let ss = 0;
  for (let j = 0; j < D; j++) {
    const z = (x[j]! - s.mean[j]!) / s.scale[j]!;
    out[j] = z;
    ss += z * z;
  }
  const inv = 1 / Math.sqrt(Math.max(ss, NORM_FLOOR));
  for (let j = 0; j < D; j++) out[j]! *= inv;
  return out;
}

/** The same as standardizeNormalize, as ONNX nodes on a float32 [N, D] value. */
export function onnxStandardizeNormalize(b: Builder, x: string, s: Standardization): string {
  const D = s.mean.length;
  const mean = b.constant({ dtype: 'float32', dims: [D], data: Float32Array.from(s.mean) }, 'mean');
  const inv = b.constant({ dtype: 'float32', dims: [D], data: Float32Array.from(s.scale, (v) => 1 / v) }, 'inv_scale');
  const z = b.op('Mul', [b.op('Sub', [x, mean], {}, 'centred'), inv], {}, 'standardized');
  const ss = b.reduce('ReduceSumSquare', z, [1], true);
  const norm = b.op('Sqrt', [b.op('Max', [ss, b.f32(NORM_FLOOR)])], {}, 'norm');
  return b.op('Div', [z, norm], {}, 'normalized');
}

/**
 * An affine map on standardized features, rewritten for raw features:
 * W·((x − μ)/σ) + b = (W/σ)·x + (b − W·(μ/σ)). W is [rows, D] row-major; computed in float64.
 */
export function foldStandardization(
  W: ArrayLike<number>,
  b: ArrayLike<number>,
  std: Standardization,
): { weight: Float32Array; bias: Float32Array } {
  const D = std.mean.length,
    rows = b.length;
  const weight = new Float32Array(rows * D),
    bias = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let c = b[r]!;
    for (let j = 0; j < D; j++) {
      const w = W[r * D + j]! / std.scale[j]!;
      weight[r * D + j] = w;
      c -= w * std.mean[j]!;
    }
    bias[r] = c;
  }
  return { weight, bias };
}

/** out[r] = b[r] + Σⱼ W[r][j]·x[j] (W [rows, D] row-major), optionally through ReLU. */
export function denseInto(
  W: ArrayLike<number>,
  b: ArrayLike<number>,
  x: ArrayLike<number>,
  out: Float64Array,
  relu = false,
): Float64Array {
  const D = x.length;
  for (let r = 0; r < out.length; r++) {
    let v = b[r]!;
    const o = r * D;
    for (let j = 0; j < D; j++) v += W[o + j]! * x[j]!;
    out[r] = relu && v < 0 ? 0 : v;
  }
  return out;
}
