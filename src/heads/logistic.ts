/**
 * Multinomial logistic regression on fixed features, trained by L-BFGS (./lbfgs.ts): standardized
 * features, L2 penalty on the weights (not the biases), optional class weights, and the penalty
 * chosen by stratified k-fold cross-validation (fitCV).
 *
 * Objective: Σᵢ wᵢ·CE(softmax(W xᵢ + b), yᵢ) / Σᵢ wᵢ + (l2 / 2)·‖W‖², with xᵢ standardized and
 * wᵢ the weight of yᵢ's class.
 */
import { minimize, type LbfgsResult } from './lbfgs.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { shuffledByClass } from '../data/splits.js';

export interface LogisticOptions {
  /** L2 penalty on the weights (default 1e-2). */
  l2?: number;
  /** Per-class weights, or 'balanced' (n / (K · count of the class)). Default: all 1. */
  classWeights?: number[] | 'balanced';
  maxIter?: number;
  /** Gradient-norm tolerance for L-BFGS (default 1e-6). */
  gtol?: number;
  /** Number of classes (default: max label + 1). */
  numClasses?: number;
  /** Standardize features (default true). */
  standardize?: boolean;
}

export interface FitInfo extends Omit<LbfgsResult, 'x'> {}

export class LogisticRegression {
  constructor(
    /** K × D weights on standardized features, row-major. */
    readonly weights: Float64Array,
    readonly bias: Float64Array,
    readonly mean: Float64Array,
    readonly scale: Float64Array,
    readonly numClasses: number,
    readonly info: FitInfo,
    readonly l2: number,
  ) {}

  get dim(): number {
    return this.mean.length;
  }

  /** Class probabilities, one Float64Array of K per example. */
  predictProba(X: ArrayLike<number>[]): Float64Array[] {
    const K = this.numClasses, D = this.dim;
    const z = new Float64Array(D);
    return X.map((x) => {
      if (x.length !== D) throw new GraftError(`feature vector has ${x.length} values, the model expects ${D}`);
      for (let j = 0; j < D; j++) z[j] = (x[j]! - this.mean[j]!) / this.scale[j]!;
      const p = new Float64Array(K);
      for (let k = 0; k < K; k++) {
        let s = this.bias[k]!;
        const o = k * D;
        for (let j = 0; j < D; j++) s += this.weights[o + j]! * z[j]!;
        p[k] = s;
      }
      softmaxInPlace(p);
      return p;
    });
  }

  predict(X: ArrayLike<number>[]): number[] {
    return this.predictProba(X).map(argmax);
  }

  accuracy(X: ArrayLike<number>[], y: number[]): number {
    const p = this.predict(X);
    let c = 0;
    for (let i = 0; i < y.length; i++) if (p[i] === y[i]) c++;
    return c / y.length;
  }
}

export function argmax(p: ArrayLike<number>): number {
  let b = 0;
  for (let k = 1; k < p.length; k++) if (p[k]! > p[b]!) b = k;
  return b;
}

function softmaxInPlace(p: Float64Array): number {
  let mx = -Infinity;
  for (let k = 0; k < p.length; k++) if (p[k]! > mx) mx = p[k]!;
  let s = 0;
  for (let k = 0; k < p.length; k++) { p[k] = Math.exp(p[k]! - mx); s += p[k]!; }
  for (let k = 0; k < p.length; k++) p[k]! /= s;
  return mx + Math.log(s); // log-sum-exp
}

/** The problem in the form the optimizer sees: standardized data and the objective over [W | b]. */
export interface LogisticProblem {
  n: number;
  D: number;
  K: number;
  Z: Float64Array;
  y: Int32Array;
  w: Float64Array;
  l2: number;
  mean: Float64Array;
  scale: Float64Array;
  /** Objective and gradient at theta = [W (K×D), b (K)]. */
  fg(theta: Float64Array, grad: Float64Array): number;
}

export function logisticProblem(X: ArrayLike<number>[], y: number[], o: LogisticOptions = {}): LogisticProblem {
  const n = X.length;
  if (n === 0) throw new GraftError('logistic regression needs at least one example');
  if (y.length !== n) throw new GraftError(`${n} feature vectors but ${y.length} labels`);
  const D = X[0]!.length;
  let K = o.numClasses ?? 0;
  for (const v of y) {
    if (!Number.isInteger(v) || v < 0) throw new GraftError(`labels must be non-negative integers, got ${v}`);
    if (o.numClasses === undefined) K = Math.max(K, v + 1);
    else if (v >= K) throw new GraftError(`label ${v} is out of range for ${K} classes`);
  }
  const l2 = o.l2 ?? 1e-2;
  if (!(l2 >= 0)) throw new GraftError(`l2 must be ≥ 0, got ${l2}`);
  const mean = new Float64Array(D), scale = new Float64Array(D).fill(1);
  if (o.standardize ?? true) {
    for (const x of X) {
      if (x.length !== D) throw new GraftError(`feature vectors differ in length (${x.length} vs ${D})`);
      for (let j = 0; j < D; j++) mean[j]! += x[j]!;
    }
    for (let j = 0; j < D; j++) mean[j]! /= n;
    const v = new Float64Array(D);
    for (const x of X) for (let j = 0; j < D; j++) { const t = x[j]! - mean[j]!; v[j]! += t * t; }
    for (let j = 0; j < D; j++) { const s = Math.sqrt(v[j]! / n); scale[j] = s > 1e-12 ? s : 1; }
  }
  const Z = new Float64Array(n * D);
  X.forEach((x, i) => {
    if (x.length !== D) throw new GraftError(`feature vectors differ in length (${x.length} vs ${D})`);
    for (let j = 0; j < D; j++) Z[i * D + j] = (x[j]! - mean[j]!) / scale[j]!;
  });
  const counts = new Array<number>(K).fill(0);
  for (const v of y) counts[v]!++;
  let cw: number[];
  if (o.classWeights === 'balanced') cw = counts.map((c) => (c ? n / (K * c) : 0));
  else if (o.classWeights) {
    if (o.classWeights.length < K) throw new GraftError(`${o.classWeights.length} class weights for ${K} classes`);
    cw = o.classWeights;
  } else cw = new Array<number>(K).fill(1);
  const w = Float64Array.from(y, (v) => cw[v]!);
  let wsum = 0;
  for (const v of w) wsum += v;
  if (!(wsum > 0)) throw new GraftError('class weights sum to zero over the examples');
  const yi = Int32Array.from(y);
  const p = new Float64Array(K);

  const fg = (theta: Float64Array, grad: Float64Array): number => {
    grad.fill(0);
    const bOff = K * D;
    let loss = 0;
    for (let i = 0; i < n; i++) {
      const wi = w[i]! / wsum;
      if (wi === 0) continue;
      const zo = i * D;
      for (let k = 0; k < K; k++) {
        let s = theta[bOff + k]!;
        const o = k * D;
        for (let j = 0; j < D; j++) s += theta[o + j]! * Z[zo + j]!;
        p[k] = s;
      }
      const target = p[yi[i]!]!;
      const lse = softmaxInPlace(p);
      loss += wi * (lse - target);
      p[yi[i]!]! -= 1;
      for (let k = 0; k < K; k++) {
        const r = wi * p[k]!;
        if (r === 0) continue;
        const o = k * D;
        for (let j = 0; j < D; j++) grad[o + j]! += r * Z[zo + j]!;
        grad[bOff + k]! += r;
      }
    }
    let reg = 0;
    for (let t = 0; t < bOff; t++) { reg += theta[t]! * theta[t]!; grad[t]! += l2 * theta[t]!; }
    return loss + 0.5 * l2 * reg;
  };
  return { n, D, K, Z, y: yi, w, l2, mean, scale, fg };
}

/** Train by L-BFGS (history 10, strong Wolfe line search). */
export function fit(X: ArrayLike<number>[], y: number[], o: LogisticOptions = {}): LogisticRegression {
  const pr = logisticProblem(X, y, o);
  const { K, D } = pr;
  const res = minimize(pr.fg, new Float64Array(K * D + K), { maxIter: o.maxIter ?? 500, gtol: o.gtol ?? 1e-6, m: 10 });
  const { x, ...info } = res;
  return new LogisticRegression(x.slice(0, K * D), x.slice(K * D), pr.mean, pr.scale, K, info, pr.l2);
}

export interface CVOptions extends Omit<LogisticOptions, 'l2'> {
  /** Penalties to try (default 1e-4 … 10, one per decade). */
  grid?: number[];
  /** Folds (default 5, fewer when a class has fewer examples). */
  folds?: number;
  seed?: number;
  /** What picks the penalty: mean validation log loss (default) or accuracy (ties broken by log loss). */
  score?: 'logloss' | 'accuracy';
}

export interface CVResult {
  model: LogisticRegression;
  l2: number;
  scores: { l2: number; logloss: number; accuracy: number }[];
  folds: number;
}

/** Stratified k-fold assignment: fold index per example. */
export function stratifiedFolds(y: number[], k: number, seed = 0): number[] {
  const fold = new Array<number>(y.length).fill(0);
  let offset = 0;
  for (const [, idx] of shuffledByClass(y, new Rng(seed))) {
    idx.forEach((i, r) => (fold[i] = (r + offset) % k));
    offset += idx.length; // spread remainders over folds
  }
  return fold;
}

/** Choose l2 by stratified k-fold cross-validation on (X, y), then refit on all of it. */
export function fitCV(X: ArrayLike<number>[], y: number[], o: CVOptions = {}): CVResult {
  const grid = o.grid ?? [1e-4, 1e-3, 1e-2, 1e-1, 1, 10];
  if (grid.length === 0) throw new GraftError('fitCV needs at least one l2 value');
  const K = o.numClasses ?? Math.max(...y) + 1;
  const counts = new Array<number>(K).fill(0);
  for (const v of y) counts[v]!++;
  const minCount = Math.min(...counts.filter((c) => c > 0));
  const k = Math.min(o.folds ?? 5, Math.max(2, minCount));
  if (y.length < 2 * k) throw new GraftError(`too few examples (${y.length}) for ${k}-fold cross-validation`);
  const fold = stratifiedFolds(y, k, o.seed ?? 0);
  const scores = grid.map((l2) => {
    let ll = 0, correct = 0;
    for (let f = 0; f < k; f++) {
      const tr: number[] = [], va: number[] = [];
      for (let i = 0; i < y.length; i++) (fold[i] === f ? va : tr).push(i);
      const m = fit(tr.map((i) => X[i]!), tr.map((i) => y[i]!), { ...o, l2, numClasses: K });
      const P = m.predictProba(va.map((i) => X[i]!));
      va.forEach((i, r) => {
        ll -= Math.log(Math.max(P[r]![y[i]!]!, 1e-15));
        if (argmax(P[r]!) === y[i]) correct++;
      });
    }
    return { l2, logloss: ll / y.length, accuracy: correct / y.length };
  });
  const better = (a: (typeof scores)[0], b: (typeof scores)[0]) =>
    (o.score ?? 'logloss') === 'accuracy' ? a.accuracy > b.accuracy || (a.accuracy === b.accuracy && a.logloss < b.logloss) : a.logloss < b.logloss;
  let best = scores[0]!;
  for (const s of scores) if (better(s, best)) best = s;
  return { model: fit(X, y, { ...o, l2: best.l2, numClasses: K }), l2: best.l2, scores, folds: k };
}
