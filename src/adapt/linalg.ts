/**
 * Small dense linear algebra for feature-level adaptation, in float64: means, covariance (the big
 * n×d by d×d product runs as one onnxruntime MatMul), the symmetric eigendecomposition
 * (Householder tridiagonalization + implicit QL, ~0.1 s at d = 256), matrix functions of a symmetric matrix
 * through its eigenvalues (C^p: C^{1/2}, C^{−1/2}), and plain products. Matrices are row-major
 * Float64Arrays with their sizes passed alongside.
 */
import { Graph } from '../graph/graph.js';
import { Session } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';

export function columnMeans(X: ArrayLike<number>[], d: number): Float64Array {
  const m = new Float64Array(d);
  for (const x of X) for (let j = 0; j < d; j++) m[j]! += x[j]!;
  for (let j = 0; j < d; j++) m[j]! /= Math.max(1, X.length);
  return m;
}

/** Xᵀ X for a row-major n×d float32 matrix, by onnxruntime (float32 accumulate), as float64 d×d. */
export async function gram(X: Float32Array, n: number, d: number): Promise<Float64Array> {
  const g = new Graph();
  g.name = 'gram';
  g.opsets = { '': 13 };
  g.inputs = [{ name: 'X', dtype: 'float32', shape: [n, d] }];
  g.nodes = [
    {
      name: 't',
      opType: 'Transpose',
      domain: '',
      inputs: ['X'],
      outputs: ['Xt'],
      attrs: { perm: { type: 'ints', value: [1, 0] } },
    },
    { name: 'mm', opType: 'MatMul', domain: '', inputs: ['Xt', 'X'], outputs: ['G'], attrs: {} },
  ];
  g.outputs = [{ name: 'G' }];
  const s = await Session.fromGraph(g, {}, 'gram');
  try {
    const r = await s.run({ X: { dtype: 'float32', dims: [n, d], data: X } });
    return Float64Array.from(r['G']!.data as Float32Array);
  } finally {
    await s.release();
  }
}

/** Covariance (divided by n − 1) of the rows of X around `mean`, d×d. */
export async function covariance(X: ArrayLike<number>[], mean: Float64Array): Promise<Float64Array> {
  const n = X.length,
    d = mean.length;
  if (n < 2) throw new GraftError(`a covariance needs at least 2 examples, got ${n}`);
  const C = new Float32Array(n * d);
  X.forEach((x, i) => {
    for (let j = 0; j < d; j++) C[i * d + j] = x[j]! - mean[j]!;
  });
  const G = await gram(C, n, d);
  for (let i = 0; i < d; i++)
    for (let j = i; j < d; j++) {
      const v = (G[i * d + j]! + G[j * d + i]!) / 2 / (n - 1);
      G[i * d + j] = v;
      G[j * d + i] = v;
    }
  return G;
}

/**
 * Eigendecomposition of a symmetric d×d matrix: Householder reduction to tridiagonal form, then the
 * implicit QL method (the tred2/tql2 pair of EISPACK, as in JAMA). Values descending; vectors as the
 * columns of a row-major d×d matrix. O(d³): about 0.1 s at d = 256.
 */
export function symmetricEigen(S: Float64Array, d: number): { values: Float64Array; vectors: Float64Array } {
  const n = d;
  const V: Float64Array[] = Array.from({ length: n }, (_, i) => S.slice(i * n, (i + 1) * n));
  const dd = new Float64Array(n),
    e = new Float64Array(n);
  // tred2
  for (let j = 0; j < n; j++) dd[j] = V[n - 1]![j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0,
      h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(dd[k]!);
    if (scale === 0) {
      e[i] = dd[i - 1]!;
      for (let j = 0; j < i; j++) {
        dd[j] = V[i - 1]![j]!;
        V[i]![j] = 0;
        V[j]![i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        dd[k]! /= scale;
        h += dd[k]! * dd[k]!;
      }
      let f = dd[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      dd[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = dd[j]!;
        V[j]![i] = f;
        g = e[j]! + V[j]![j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k]![j]! * dd[k]!;
          e[k]! += V[k]![j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j]! /= h;
        f += e[j]! * dd[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j]! -= hh * dd[j]!;
      for (let j = 0; j < i; j++) {
        f = dd[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k]![j]! -= f * e[k]! + g * dd[k]!;
        dd[j] = V[i - 1]![j]!;
        V[i]![j] = 0;
      }
    }
    dd[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[n - 1]![i] = V[i]![i]!;
    V[i]![i] = 1;
    const h = dd[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) dd[k] = V[k]![i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k]![i + 1]! * V[k]![j]!;
        for (let k = 0; k <= i; k++) V[k]![j]! -= g * dd[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k]![i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    dd[j] = V[n - 1]![j]!;
    V[n - 1]![j] = 0;
  }
  V[n - 1]![n - 1] = 1;
  e[0] = 0;
  // tql2
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0,
    tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(dd[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      for (let iter = 0; iter < 100; iter++) {
        let g = dd[l]!;
        let p = (dd[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        dd[l] = e[l]! / (p + r);
        dd[l + 1] = e[l]! * (p + r);
        const dl1 = dd[l + 1]!;
        let h = g - dd[l]!;
        for (let i = l + 2; i < n; i++) dd[i]! -= h;
        f += h;
        p = dd[m]!;
        let c = 1,
          c2 = c,
          c3 = c,
          s = 0,
          s2 = 0;
        const el1 = e[l + 1]!;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * dd[i]! - s * g;
          dd[i + 1] = h + s * (c * g + s * dd[i]!);
          for (let k = 0; k < n; k++) {
            const vk = V[k]!;
            h = vk[i + 1]!;
            vk[i + 1] = s * vk[i]! + c * h;
            vk[i] = c * vk[i]! - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        dd[l] = c * p;
        if (!(Math.abs(e[l]!) > eps * tst1)) break;
      }
    }
    dd[l] = dd[l]! + f;
    e[l] = 0;
  }
  const order = [...Array(n).keys()].sort((i, j) => dd[j]! - dd[i]!);
  const values = Float64Array.from(order, (i) => dd[i]!);
  const vectors = new Float64Array(n * n);
  for (let r = 0; r < n; r++) order.forEach((i, c) => (vectors[r * n + c] = V[r]![i]!));
  return { values, vectors };
}

/** f(S) = V·diag(f(λ))·Vᵀ from an eigendecomposition. */
export function fromEigen(
  values: Float64Array,
  vectors: Float64Array,
  d: number,
  f: (l: number) => number,
): Float64Array {
  const fl = Float64Array.from(values, f);
  const out = new Float64Array(d * d);
  const Vf = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let k = 0; k < d; k++) Vf[i * d + k] = vectors[i * d + k]! * fl[k]!;
  for (let i = 0; i < d; i++)
    for (let j = i; j < d; j++) {
      let s = 0;
      const a = i * d,
        b = j * d;
      for (let k = 0; k < d; k++) s += Vf[a + k]! * vectors[b + k]!;
      out[i * d + j] = s;
      out[j * d + i] = s;
    }
  return out;
}

/** S^power for a symmetric positive semi-definite S (eigenvalues floored at `floor`). */
export function symmetricPower(S: Float64Array, d: number, power: number, floor = 1e-12): Float64Array {
  const { values, vectors } = symmetricEigen(S, d);
  return fromEigen(values, vectors, d, (l) => Math.max(l, floor) ** power);
}

/** A (n×m) · B (m×p). */
export function matmul(A: Float64Array, B: Float64Array, n: number, m: number, p: number): Float64Array {
  const C = new Float64Array(n * p);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < m; k++) {
      const a = A[i * m + k]!;
      if (a === 0) continue;
      const bo = k * p,
        co = i * p;
      for (let j = 0; j < p; j++) C[co + j]! += a * B[bo + j]!;
    }
  return C;
}

/** Each row x ↦ (x − shift) · M (d×p), as float32 rows; large products run as one onnxruntime MatMul. */
export async function transformRows(
  X: ArrayLike<number>[],
  shift: Float64Array | undefined,
  M: Float64Array,
  d: number,
  p: number,
): Promise<Float32Array[]> {
  const n = X.length;
  if (n * d * p < 1e6) {
    const z = new Float64Array(d);
    return X.map((x) => {
      for (let j = 0; j < d; j++) z[j] = x[j]! - (shift ? shift[j]! : 0);
      const out = new Float32Array(p);
      for (let k = 0; k < d; k++) {
        const a = z[k]!;
        if (a === 0) continue;
        const o = k * p;
        for (let j = 0; j < p; j++) out[j]! += a * M[o + j]!;
      }
      return out;
    });
  }
  const flat = new Float32Array(n * d);
  X.forEach((x, i) => {
    for (let j = 0; j < d; j++) flat[i * d + j] = x[j]! - (shift ? shift[j]! : 0);
  });
  const g = new Graph();
  g.name = 'transform';
  g.opsets = { '': 13 };
  g.inputs = [
    { name: 'X', dtype: 'float32', shape: [n, d] },
    { name: 'M', dtype: 'float32', shape: [d, p] },
  ];
  g.nodes = [{ name: 'mm', opType: 'MatMul', domain: '', inputs: ['X', 'M'], outputs: ['Y'], attrs: {} }];
  g.outputs = [{ name: 'Y' }];
  const s = await Session.fromGraph(g, {}, 'transform');
  try {
    const r = await s.run({
      X: { dtype: 'float32', dims: [n, d], data: flat },
      M: { dtype: 'float32', dims: [d, p], data: Float32Array.from(M) },
    });
    const y = r['Y']!.data as Float32Array;
    return Array.from({ length: n }, (_, i) => y.slice(i * p, (i + 1) * p));
  } finally {
    await s.release();
  }
}

export interface CovarianceEigen {
  mean: Float64Array;
  /** Eigenvalues of the covariance, descending. */
  values: Float64Array;
  /** Eigenvectors as columns, row-major d×d. */
  vectors: Float64Array;
  d: number;
}

const eigenMemo = new WeakMap<object, CovarianceEigen>();

/**
 * Mean and covariance eigendecomposition of the rows of X, remembered per array object (a
 * hyperparameter search reuses one domain's decomposition for every candidate).
 */
export async function covarianceEigen(X: ArrayLike<number>[]): Promise<CovarianceEigen> {
  const hit = eigenMemo.get(X);
  if (hit) return hit;
  const d = X[0]!.length;
  const mean = columnMeans(X, d);
  const { values, vectors } = symmetricEigen(await covariance(X, mean), d);
  const r = { mean, values, vectors, d };
  eigenMemo.set(X, r);
  return r;
}
