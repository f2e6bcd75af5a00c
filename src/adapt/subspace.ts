/**
 * Subspace alignment (Fernando et al. 2013), on cached features: take the top-k principal
 * directions of each domain (P_s, P_t: d×k), map the source subspace onto the target's with
 * M = P_sᵀ·P_t, fit the head on source features in the aligned coordinates and apply it to target
 * features in their own:
 *
 *   z_s = (x_s − μ_s)·P_s·M,   z_t = (x_t − μ_t)·P_t
 *
 * Each domain is first z-scored with its own statistics (option `standardize`, default on). The
 * returned head works on raw target features (scaling and projection are folded into its weights).
 */
import { covarianceEigen, matmul, transformRows } from './linalg.js';
import {
  checkDomains,
  composeLinear,
  fitHead,
  numClassesOf,
  type FeatureAdaptResult,
  type HeadOptions,
  type LabelledFeatures,
} from './feature-head.js';
import { GraftError } from '../util/errors.js';

export interface SubspaceOptions extends HeadOptions {
  /** Subspace dimension k (default min(d, 32)). */
  dims?: number;
  /** z-score each domain with its own mean and standard deviation first (default true, as in the paper's experiments). */
  standardize?: boolean;
}

const zMemo = new WeakMap<object, { z: Float32Array[]; std: Float64Array }>();

/** Each feature of X divided by its standard deviation over X (remembered per array). */
function scaled(X: ArrayLike<number>[]): { z: Float32Array[]; std: Float64Array } {
  const hit = zMemo.get(X);
  if (hit) return hit;
  const d = X[0]!.length,
    n = X.length;
  const m = new Float64Array(d),
    v = new Float64Array(d);
  for (const x of X) for (let j = 0; j < d; j++) m[j]! += x[j]! / n;
  for (const x of X) for (let j = 0; j < d; j++) v[j]! += (x[j]! - m[j]!) ** 2 / n;
  const std = Float64Array.from(v, (s) => (Math.sqrt(s) > 1e-12 ? Math.sqrt(s) : 1));
  const r = { z: X.map((x) => Float32Array.from({ length: d }, (_, j) => x[j]! / std[j]!)), std };
  zMemo.set(X, r);
  return r;
}

/** Top-k principal directions (d×k, row-major) and the mean of X. */
export async function pcaBasis(
  X: ArrayLike<number>[],
  k: number,
): Promise<{ basis: Float64Array; mean: Float64Array; explained: number }> {
  const { mean, values, vectors, d } = await covarianceEigen(X);
  const basis = new Float64Array(d * k);
  for (let i = 0; i < d; i++) for (let j = 0; j < k; j++) basis[i * k + j] = vectors[i * d + j]!;
  let top = 0,
    all = 0;
  values.forEach((v, i) => {
    all += Math.max(v, 0);
    if (i < k) top += Math.max(v, 0);
  });
  return { basis, mean, explained: all > 0 ? top / all : 0 };
}

export async function subspaceAlignment(
  source: LabelledFeatures,
  target: ArrayLike<number>[],
  o: SubspaceOptions = {},
): Promise<FeatureAdaptResult> {
  const d = checkDomains(source, target);
  const k = o.dims ?? Math.min(d, 32);
  if (!Number.isInteger(k) || k < 1 || k > d)
    throw new GraftError(`subspace dimension must be an integer in 1..${d}, got ${k}`);
  const t0 = performance.now();
  const std = o.standardize ?? true;
  const sx = std ? scaled(source.x) : { z: source.x, std: new Float64Array(d).fill(1) };
  const tx = std ? scaled(target) : { z: target, std: new Float64Array(d).fill(1) };
  const S = await pcaBasis(sx.z, k),
    T = await pcaBasis(tx.z, k);
  // M = P_sᵀ·P_t (k×k); source coordinates: (x − μ_s)·(P_s·M)
  const PsT = new Float64Array(k * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < k; j++) PsT[j * d + i] = S.basis[i * k + j]!;
  const M = matmul(PsT, T.basis, k, d, k);
  const zs = await transformRows(sx.z, S.mean, matmul(S.basis, M, d, k, k), d, k);
  const h = await fitHead(zs, source.y, { ...o, numClasses: numClassesOf(source.y, o) });
  // target coordinates ((x / σ_t) − μ_t')·P_t = (x − σ_t·μ_t')·(diag(1/σ_t)·P_t): one linear map of raw x
  const P = Float64Array.from(T.basis, (v, idx) => v / tx.std[Math.floor(idx / k)]!);
  const head = composeLinear(
    h,
    P,
    d,
    k,
    Float64Array.from(T.mean, (m, j) => m * tx.std[j]!),
  );
  return {
    method: 'subspace',
    head,
    targetProba: head.predictProba(target),
    info: {
      dims: k,
      standardize: std ? 1 : 0,
      sourceVarianceKept: +S.explained.toFixed(4),
      targetVarianceKept: +T.explained.toFixed(4),
    },
    seconds: (performance.now() - t0) / 1000,
  };
}
