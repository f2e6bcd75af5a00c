/**
 * What the feature-level adaptation methods share: labelled source features, unlabelled target
 * features, a logistic-regression head (src/heads/logistic.ts) fitted on (transformed) source
 * features, and the result as ONE linear head on raw target features (any feature transform is
 * folded into its weights), so it exports like any other feature classifier.
 */
import { fit as fitLogistic, LogisticRegression, type LogisticOptions } from '../heads/logistic.js';
import { GraftError } from '../util/errors.js';
import { classCount } from '../heads/head.js';

export interface LabelledFeatures {
  x: ArrayLike<number>[];
  y: number[];
}

export interface FeatureAdaptResult {
  method: string;
  /** The adapted head, applied to raw target features. */
  head: LogisticRegression;
  /** The head's class probabilities on the target features. */
  targetProba: Float64Array[];
  /** Hyperparameters and diagnostics. */
  info: Record<string, number | string>;
  seconds: number;
}

/** Head options every method passes through (penalty, iterations). */
export type HeadOptions = Pick<LogisticOptions, 'l2' | 'maxIter' | 'numClasses' | 'runtime'>;

export function checkDomains(source: LabelledFeatures, target: ArrayLike<number>[]): number {
  if (source.x.length === 0) throw new GraftError('no source examples');
  if (source.x.length !== source.y.length)
    throw new GraftError(`${source.x.length} source feature vectors but ${source.y.length} labels`);
  if (target.length < 2) throw new GraftError(`adaptation needs at least 2 target examples, got ${target.length}`);
  const d = source.x[0]!.length;
  if (target[0]!.length !== d)
    throw new GraftError(`source features have ${d} values, target features ${target[0]!.length}`);
  return d;
}

export function numClassesOf(y: number[], o: HeadOptions): number {
  return o.numClasses ?? classCount(y);
}

/** Fit the logistic head (warm-started from `from`, a head of the same size, when given). */
export async function fitHead(
  x: ArrayLike<number>[],
  y: number[],
  o: HeadOptions,
  from?: LogisticRegression,
): Promise<LogisticRegression> {
  const init = from ? Float64Array.from([...from.weights, ...from.bias]) : undefined;
  return fitLogistic(x, y, {
    l2: o.l2 ?? 1e-2,
    maxIter: o.maxIter ?? 200,
    ...(init ? { init } : {}),
    ...(o.numClasses ? { numClasses: o.numClasses } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
}

/**
 * The head h(z) = W·((z − m)/s) + b composed with z = (x − shift)·P (P: d×p, row-major) as one
 * head on x: W' = (W/s)·Pᵀ, b' = b − (W/s)·m − W'·shift.
 */
export function composeLinear(
  h: LogisticRegression,
  P: Float64Array,
  d: number,
  p: number,
  shift: Float64Array,
): LogisticRegression {
  if (h.dim !== p) throw new GraftError(`head has ${h.dim} inputs, the projection gives ${p}`);
  const K = h.numClasses;
  const W = new Float64Array(K * d),
    b = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    let c = h.bias[k]!;
    for (let j = 0; j < p; j++) {
      const w = h.weights[k * p + j]! / h.scale[j]!;
      c -= w * h.mean[j]!;
      for (let i = 0; i < d; i++) W[k * d + i]! += w * P[i * p + j]!;
    }
    for (let i = 0; i < d; i++) c -= W[k * d + i]! * shift[i]!;
    b[k] = c;
  }
  return new LogisticRegression(W, b, new Float64Array(d), new Float64Array(d).fill(1), K, h.info, h.l2);
}

/** Source-only baseline: the head fitted on source features, applied to the target as is. */
export async function sourceOnly(
  source: LabelledFeatures,
  target: ArrayLike<number>[],
  o: HeadOptions = {},
): Promise<FeatureAdaptResult> {
  checkDomains(source, target);
  const t0 = performance.now();
  const head = await fitHead(source.x, source.y, { ...o, numClasses: numClassesOf(source.y, o) });
  return {
    method: 'source-only',
    head,
    targetProba: head.predictProba(target),
    info: {},
    seconds: (performance.now() - t0) / 1000,
  };
}
