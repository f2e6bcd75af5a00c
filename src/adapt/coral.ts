/**
 * CORAL, correlation alignment (Sun, Feng & Saenko 2016), on cached features: whiten the source
 * features with their own covariance and re-colour them with the target's, then fit the head on
 * the transformed source and apply it to raw target features:
 *
 *   x_s' = (x_s − μ_s) · C_s^{−1/2} · C_t^{1/2} + μ_t,   C = cov + λ·(mean variance)·I
 *
 * λ regularizes both covariances (the original adds the identity to covariances of normalized
 * features; here it is relative to the features' scale). Matrix powers by symmetric
 * eigendecomposition (./linalg.ts); the covariance products run in onnxruntime.
 */
import { covarianceEigen, fromEigen, matmul, transformRows, type CovarianceEigen } from './linalg.js';
import {
  checkDomains,
  fitHead,
  numClassesOf,
  type FeatureAdaptResult,
  type HeadOptions,
  type LabelledFeatures,
} from './feature-head.js';

export interface CoralOptions extends HeadOptions {
  /** Covariance regularization relative to the mean feature variance (default 1). */
  lambda?: number;
}

/** The CORAL map: x ↦ (x − sourceMean)·A + targetMean, A = C_s^{−1/2}·C_t^{1/2} (d×d). */
export async function coralMap(
  source: ArrayLike<number>[],
  target: ArrayLike<number>[],
  lambda = 1,
): Promise<{ A: Float64Array; sourceMean: Float64Array; targetMean: Float64Array; d: number }> {
  const S = await covarianceEigen(source),
    T = await covarianceEigen(target);
  const d = S.d;
  // C + ε·I has C's eigenvectors and eigenvalues shifted by ε, ε = λ · mean variance (trace / d)
  const eps = (E: CovarianceEigen) => Math.max(lambda * (E.values.reduce((a, v) => a + v, 0) / d), 1e-9);
  const es = eps(S),
    et = eps(T);
  const Cs = fromEigen(S.values, S.vectors, d, (l) => 1 / Math.sqrt(Math.max(l, 0) + es));
  const Ct = fromEigen(T.values, T.vectors, d, (l) => Math.sqrt(Math.max(l, 0) + et));
  return { A: matmul(Cs, Ct, d, d, d), sourceMean: S.mean, targetMean: T.mean, d };
}

/** The source features moved by the CORAL map: (x − μ_s)·A + μ_t for every source row. */
export async function coralMoveSource(
  source: ArrayLike<number>[],
  target: ArrayLike<number>[],
  lambda = 1,
): Promise<Float32Array[]> {
  const { A, sourceMean, targetMean, d } = await coralMap(source, target, lambda);
  return (await transformRows(source, sourceMean, A, d, d)).map((x) => {
    for (let j = 0; j < d; j++) x[j]! += targetMean[j]!;
    return x;
  });
}

export async function coral(
  source: LabelledFeatures,
  target: ArrayLike<number>[],
  o: CoralOptions = {},
): Promise<FeatureAdaptResult> {
  checkDomains(source, target);
  const t0 = performance.now();
  const lambda = o.lambda ?? 1;
  const moved = await coralMoveSource(source.x, target, lambda);
  const head = await fitHead(moved, source.y, { ...o, numClasses: numClassesOf(source.y, o) });
  return {
    method: 'coral',
    head,
    targetProba: head.predictProba(target),
    info: { lambda },
    seconds: (performance.now() - t0) / 1000,
  };
}
