/**
 * The dense linear algebra under CORAL and subspace alignment, and the two methods' defining
 * properties on synthetic data: the eigendecomposition reconstructs its matrix, CORAL makes the
 * moved source covariance equal the target's, and the folded subspace-alignment head equals the
 * head applied to projected target features.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  symmetricEigen,
  symmetricPower,
  matmul,
  covariance,
  columnMeans,
  gram,
  transformRows,
} from '../../src/adapt/linalg.js';
import { coralMap } from '../../src/adapt/coral.js';
import { composeLinear, fitHead } from '../../src/adapt/feature-head.js';
import { pcaBasis } from '../../src/adapt/subspace.js';
import { Rng } from '../../src/util/random.js';

function randomSymmetric(d: number, rng: Rng): Float64Array {
  const A = Float64Array.from({ length: d * d }, () => rng.normal());
  const S = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) S[i * d + j] = A[i * d + j]! + A[j * d + i]!;
  return S;
}

test('symmetric eigendecomposition: S·v = λ·v, orthonormal vectors, descending values; powers compose', () => {
  const rng = new Rng(5);
  for (const d of [1, 2, 7, 40]) {
    const S = randomSymmetric(d, rng);
    const { values, vectors } = symmetricEigen(S, d);
    for (let c = 0; c < d; c++) {
      if (c > 0) assert.ok(values[c - 1]! >= values[c]!);
      for (let i = 0; i < d; i++) {
        let sv = 0;
        for (let k = 0; k < d; k++) sv += S[i * d + k]! * vectors[k * d + c]!;
        assert.ok(Math.abs(sv - values[c]! * vectors[i * d + c]!) < 1e-9, `d=${d} column ${c}`);
      }
      for (let c2 = 0; c2 < d; c2++) {
        let dot = 0;
        for (let k = 0; k < d; k++) dot += vectors[k * d + c]! * vectors[k * d + c2]!;
        assert.ok(Math.abs(dot - (c === c2 ? 1 : 0)) < 1e-9);
      }
    }
  }
  const d = 12;
  const A = Float64Array.from({ length: d * d }, () => rng.normal());
  const At = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) At[i * d + j] = A[j * d + i]!;
  const P = matmul(A, At, d, d, d); // positive definite (almost surely)
  const half = symmetricPower(P, d, 0.5),
    inv = symmetricPower(P, d, -0.5);
  const back = matmul(half, half, d, d, d),
    id = matmul(matmul(inv, P, d, d, d), inv, d, d, d);
  for (let i = 0; i < d * d; i++) {
    assert.ok(Math.abs(back[i]! - P[i]!) < 1e-8 * (1 + Math.abs(P[i]!)));
    assert.ok(Math.abs(id[i]! - (i % (d + 1) === 0 ? 1 : 0)) < 1e-8);
  }
});

test('gram (onnxruntime MatMul) matches the product in JavaScript', async () => {
  const rng = new Rng(2);
  const n = 30,
    d = 6;
  const X = Float32Array.from({ length: n * d }, () => rng.normal());
  const G = await gram(X, n, d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let r = 0; r < n; r++) s += X[r * d + i]! * X[r * d + j]!;
      assert.ok(Math.abs(G[i * d + j]! - s) < 1e-4 * (1 + Math.abs(s)));
    }
});

function correlated(n: number, d: number, rng: Rng, mix: number, shift: number): Float32Array[] {
  return Array.from({ length: n }, () => {
    const z = Array.from({ length: d }, () => rng.normal());
    return Float32Array.from({ length: d }, (_, j) => z[j]! * (1 + j) + mix * z[(j + 1) % d]! + shift);
  });
}

test('CORAL: the moved source has the target mean and (regularized) covariance', async () => {
  const rng = new Rng(9);
  const d = 5;
  const S = correlated(400, d, rng, 0.1, 0),
    T = correlated(300, d, rng, 2.5, 3);
  const { A, sourceMean, targetMean } = await coralMap(S, T, 1e-9);
  const moved = (await transformRows(S, sourceMean, A, d, d)).map((x) => x.map((v, j) => v + targetMean[j]!));
  const mm = columnMeans(moved, d),
    mt = columnMeans(T, d);
  const Cm = await covariance(moved, mm),
    Ct = await covariance(T, mt);
  for (let j = 0; j < d; j++) assert.ok(Math.abs(mm[j]! - mt[j]!) < 1e-3, `mean ${j}: ${mm[j]} vs ${mt[j]}`);
  for (let i = 0; i < d * d; i++)
    assert.ok(Math.abs(Cm[i]! - Ct[i]!) < 2e-3 * (1 + Math.abs(Ct[i]!)), `cov ${i}: ${Cm[i]} vs ${Ct[i]}`);
});

test('subspace alignment: the folded head on raw features equals the head on projected features', async () => {
  const rng = new Rng(4);
  const d = 6,
    k = 3;
  const X = correlated(200, d, rng, 0.5, 1);
  const y = X.map((x) => (x[0]! > 1 ? 1 : 0) + (x[3]! > 1 ? 1 : 0));
  const { basis, mean } = await pcaBasis(X, k);
  const Z = await transformRows(X, mean, basis, d, k);
  const h = await fitHead(Z, y, { numClasses: 3 });
  const folded = composeLinear(h, basis, d, k, mean);
  const a = h.predictProba(Z),
    b = folded.predictProba(X);
  a.forEach((p, i) => p.forEach((v, c) => assert.ok(Math.abs(v - b[i]![c]!) < 1e-6))); // Z is float32
});

test('transformRows: the onnxruntime path (large products) equals the JavaScript path', async () => {
  const rng = new Rng(8);
  const d = 50,
    p = 40;
  const M = Float64Array.from({ length: d * p }, () => rng.normal());
  const shift = Float64Array.from({ length: d }, () => rng.normal());
  const X = Array.from({ length: 600 }, () => Float32Array.from({ length: d }, () => rng.normal()));
  const big = await transformRows(X, shift, M, d, p); // 600·50·40 ≥ 1e6: onnxruntime
  const small = (await Promise.all(X.map((x) => transformRows([x], shift, M, d, p)))).map((r) => r[0]!);
  big.forEach((r, i) => r.forEach((v, j) => assert.ok(Math.abs(v - small[i]![j]!) < 1e-3, `${i},${j}`)));
});
