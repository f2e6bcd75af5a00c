/**
 * Subspace alignment (Fernando et al. 2013), on cached features: take the top-k principal
 * directions of each domain (P_s, P_t: d×k), map the source subspace onto the target's with
 * M = P_sᵀ·P_t, fit the head on source features in the aligned coordinates and apply it to target
 * features in their own:
 *
 *   z_s = (x_s − μ_s)·P_s·M,   z_t = (x_t − μ_t)·P_t
 *
 * The returned head works on raw target features (the projection is folded into its weights).
 */
import { covarianceEigen, matmul, transformRows } from './linalg.js';
import { checkDomains, composeLinear, fitHead, numClassesOf, type FeatureAdaptResult, type HeadOptions, type LabelledFeatures } from './feature-head.js';
import { GraftError } from '../util/errors.js';

export interface SubspaceOptions extends HeadOptions {
  /** Subspace dimension k (default min(d, 32)). */
  dims?: number;
}

/** Top-k principal directions (d×k, row-major) and the mean of X. */
export async function pcaBasis(X: ArrayLike<number>[], k: number): Promise<{ basis: Float64Array; mean: Float64Array; explained: number }> {
  const { mean, values, vectors, d } = await covarianceEigen(X);
  const basis = new Float64Array(d * k);
  for (let i = 0; i < d; i++) for (let j = 0; j < k; j++) basis[i * k + j] = vectors[i * d + j]!;
  let top = 0, all = 0;
  values.forEach((v, i) => { all += Math.max(v, 0); if (i < k) top += Math.max(v, 0); });
  return { basis, mean, explained: all > 0 ? top / all : 0 };
}

export async function subspaceAlignment(source: LabelledFeatures, target: ArrayLike<number>[], o: SubspaceOptions = {}): Promise<FeatureAdaptResult> {
  const d = checkDomains(source, target);
  const k = o.dims ?? Math.min(d, 32);
  if (!Number.isInteger(k) || k < 1 || k > d) throw new GraftError(`subspace dimension must be an integer in 1..${d}, got ${k}`);
  const t0 = performance.now();
  const S = await pcaBasis(source.x, k), T = await pcaBasis(target, k);
  // M = P_sᵀ·P_t (k×k); source coordinates: (x − μ_s)·(P_s·M)
  const PsT = new Float64Array(k * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < k; j++) PsT[j * d + i] = S.basis[i * k + j]!;
  const M = matmul(PsT, T.basis, k, d, k);
  const zs = await transformRows(source.x, S.mean, matmul(S.basis, M, d, k, k), d, k);
  const h = await fitHead(zs, source.y, { ...o, numClasses: numClassesOf(source.y, o) });
  const head = composeLinear(h, T.basis, d, k, T.mean);
  return {
    method: 'subspace', head, targetProba: head.predictProba(target),
    info: { dims: k, sourceVarianceKept: +S.explained.toFixed(4), targetVarianceKept: +T.explained.toFixed(4) },
    seconds: (performance.now() - t0) / 1000,
  };
}
