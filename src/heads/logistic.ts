/**
 * Multinomial logistic regression on fixed features, trained by L-BFGS (./lbfgs.ts): standardized
 * features, L2 penalty on the weights (not the biases), optional class weights, and the penalty
 * chosen by stratified k-fold cross-validation (fitCV).
 *
 * Objective: Σᵢ wᵢ·CE(softmax(W xᵢ + b), yᵢ) / Σᵢ wᵢ + (l2 / 2)·‖W‖², with xᵢ standardized and
 * wᵢ the weight of yᵢ's class.
 *
 * The heavy part of every evaluation (Z·Wᵀ, log-sum-exp, (P − Y)ᵀ·Z over all examples) runs in one
 * small float64 onnxruntime graph (LogisticSession); the standardized data is fed to it without a
 * copy. One session serves every fit of a cross-validation, and each fold walks the penalty grid from
 * strong to weak, starting each fit from the previous optimum (the objective is convex, so the optimum
 * found is the same; only the iterations are fewer).
 */
import { minimize, type LbfgsResult } from './lbfgs.js';
import { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { classCount, standardization, foldStandardization, denseInto, type FeatureHead } from './head.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { shuffledByClass } from '../data/splits.js';
import { argmax, accuracy, softmax } from '../util/vectors.js';

export interface LogisticOptions {
  /** L2 penalty on the weights (default 1e-2). */
  l2?: number;
  /** Per-class weights, or 'balanced' (n / (K · count of the class)). Default: all 1. */
  classWeights?: number[] | 'balanced';
  maxIter?: number;
  /** Gradient-norm tolerance for L-BFGS (default 1e-6). */
  gtol?: number;
  /**
   * Stop when an iteration lowers the objective by less than ftol × max(|f|, 1) (default 2.2e-9:
   * scipy's L-BFGS-B default, factr 1e7 × machine epsilon, which scikit-learn's lbfgs solver uses).
   */
  ftol?: number;
  /** Number of classes (default: max label + 1). */
  numClasses?: number;
  /** Standardize features (default true). */
  standardize?: boolean;
  /** onnxruntime settings for the objective's session. */
  runtime?: RuntimeOptions;
  /** A session to reuse (else one is made and released per call). */
  session?: LogisticSession;
  /** Starting point [W (K×D) | b (K)] (default zeros). */
  init?: Float64Array;
}

export interface FitInfo extends Omit<LbfgsResult, 'x'> {}

export class LogisticRegression implements FeatureHead {
  readonly kind = 'logistic' as const;

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
    const K = this.numClasses,
      D = this.dim;
    const z = new Float64Array(D),
      s = new Float64Array(K);
    return X.map((x) => {
      if (x.length !== D) throw new GraftError(`feature vector has ${x.length} values, the model expects ${D}`);
      for (let j = 0; j < D; j++) z[j] = (x[j]! - this.mean[j]!) / this.scale[j]!;
      return softmax(denseInto(this.weights, this.bias, z, s));
    });
  }

  predict(X: ArrayLike<number>[]): number[] {
    return this.predictProba(X).map(argmax);
  }

  accuracy(X: ArrayLike<number>[], y: number[]): number {
    return accuracy(this.predict(X), y);
  }

  /**
   * The head on raw (unstandardized) features, as one affine map: W·((x − μ)/σ) + b = (W/σ)·x + (b − W·(μ/σ)),
   * so weight[k][j] = W[k][j]/σ[j] and bias[k] = b[k] − Σⱼ W[k][j]·μ[j]/σ[j] (computed in float64).
   * weight is [classes, dim], row-major (Gemm with transB).
   */
  folded(): { weight: Float32Array; bias: Float32Array } {
    return foldStandardization(this.weights, this.bias, this);
  }

  /** Gemm + Softmax on raw features (standardization folded in, see `folded`). */
  toOnnx(b: Builder, x: string): string {
    const K = this.numClasses,
      D = this.dim;
    const { weight, bias } = this.folded();
    const wName = b.constant({ dtype: 'float32', dims: [K, D], data: weight }, 'weight');
    const cName = b.constant({ dtype: 'float32', dims: [K], data: bias }, 'bias');
    const logits = b.op('Gemm', [x, wName, cName], { transB: A.i(1) }, 'logits');
    return b.op('Softmax', [logits], { axis: A.i(1) }, 'softmax');
  }

  summary(): Record<string, number | string> {
    return {
      kind: 'logistic-regression',
      classes: this.numClasses,
      dim: this.dim,
      l2: this.l2,
      iterations: this.info.iterations,
    };
  }
}

/**
 * The data term and its gradient as an onnxruntime graph, float64, all dims symbolic:
 *   inputs Z [n, D], W [K, D], b [K], wcol [n, 1] (wᵢ / Σw), Yw [n, K] (one-hot · wcol);
 *   outputs loss = Σᵢ wcolᵢ·lseᵢ − Σ Yw ⊙ logits, gW = Rᵀ·Z, gb = Σᵢ Rᵢ with R = P ⊙ wcol − Yw.
 */
function objectiveGraph(): Graph {
  const g = new Graph();
  g.name = 'logistic-objective';
  const f = 'float64' as const;
  g.inputs = [
    { name: 'Z', dtype: f, shape: ['n', 'D'] },
    { name: 'W', dtype: f, shape: ['K', 'D'] },
    { name: 'b', dtype: f, shape: ['K'] },
    { name: 'wcol', dtype: f, shape: ['n', 1] },
    { name: 'Yw', dtype: f, shape: ['n', 'K'] },
  ];
  const B = new Builder(g);
  const logits = B.op('Gemm', ['Z', 'W', 'b'], { transB: A.i(1) }, 'logits');
  const lse = B.op('ReduceLogSumExp', [logits], { axes: A.is([1]), keepdims: A.i(1) }, 'lse');
  const P = B.op('Exp', [B.op('Sub', [logits, lse])], {}, 'P');
  const R = B.op('Sub', [B.op('Mul', [P, 'wcol']), 'Yw'], {}, 'R');
  const a = B.op('ReduceSum', [B.op('Mul', ['wcol', lse])], { keepdims: A.i(0) });
  const c = B.op('ReduceSum', [B.op('Mul', ['Yw', logits])], { keepdims: A.i(0) });
  g.nodes.push({ name: 'loss_node', opType: 'Sub', domain: '', inputs: [a, c], outputs: ['loss'], attrs: {} });
  g.nodes.push({
    name: 'gW_node',
    opType: 'Gemm',
    domain: '',
    inputs: [R, 'Z'],
    outputs: ['gW'],
    attrs: { transA: A.i(1) },
  });
  g.nodes.push({
    name: 'gb_node',
    opType: 'ReduceSum',
    domain: '',
    inputs: [R, B.i64([0])],
    outputs: ['gb'],
    attrs: { keepdims: A.i(0) },
  });
  g.outputs = [
    { name: 'loss', dtype: f, shape: [] },
    { name: 'gW', dtype: f, shape: ['K', 'D'] },
    { name: 'gb', dtype: f, shape: ['K'] },
  ];
  return g;
}

/** The onnxruntime session that evaluates logistic objectives; any n, D, K. */
export class LogisticSession {
  private constructor(private readonly s: Session) {}

  static async create(runtime?: RuntimeOptions): Promise<LogisticSession> {
    return new LogisticSession(await Session.fromGraph(objectiveGraph(), runtime, 'logistic objective'));
  }

  async evaluate(
    Z: Float64Array,
    wcol: Float64Array,
    Yw: Float64Array,
    n: number,
    D: number,
    K: number,
    theta: Float64Array,
    grad: Float64Array,
  ): Promise<number> {
    const r = await this.s.run({
      Z: { dtype: 'float64', dims: [n, D], data: Z },
      W: { dtype: 'float64', dims: [K, D], data: theta.subarray(0, K * D) },
      b: { dtype: 'float64', dims: [K], data: theta.subarray(K * D, K * D + K) },
      wcol: { dtype: 'float64', dims: [n, 1], data: wcol },
      Yw: { dtype: 'float64', dims: [n, K], data: Yw },
    });
    grad.set(r['gW']!.data as Float64Array, 0);
    grad.set(r['gb']!.data as Float64Array, K * D);
    return (r['loss']!.data as Float64Array)[0]!;
  }

  release(): Promise<void> {
    return this.s.release();
  }
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
  /** Objective and gradient at theta = [W (K×D), b (K)], with this problem's l2. */
  fg(theta: Float64Array, grad: Float64Array): Promise<number>;
  /** The same objective with another penalty. */
  withL2(l2: number): (theta: Float64Array, grad: Float64Array) => Promise<number>;
}

export function logisticProblem(
  X: ArrayLike<number>[],
  y: number[],
  session: LogisticSession,
  o: LogisticOptions = {},
): LogisticProblem {
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
  for (const x of X) if (x.length !== D) throw new GraftError(`feature vectors differ in length (${x.length} vs ${D})`);
  const { mean, scale } = standardization(X, o.standardize ?? true);
  const Z = new Float64Array(n * D);
  X.forEach((x, i) => {
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
  const wcol = Float64Array.from(w, (v) => v / wsum);
  const Yw = new Float64Array(n * K);
  for (let i = 0; i < n; i++) Yw[i * K + yi[i]!] = wcol[i]!;

  const withL2 =
    (pen: number) =>
    async (theta: Float64Array, grad: Float64Array): Promise<number> => {
      const loss = await session.evaluate(Z, wcol, Yw, n, D, K, theta, grad);
      let reg = 0;
      for (let t = 0; t < K * D; t++) {
        reg += theta[t]! * theta[t]!;
        grad[t]! += pen * theta[t]!;
      }
      return loss + 0.5 * pen * reg;
    };
  return { n, D, K, Z, y: yi, w, l2, mean, scale, fg: withL2(l2), withL2 };
}

async function withSession<T>(o: LogisticOptions, f: (s: LogisticSession) => Promise<T>): Promise<T> {
  if (o.session) return f(o.session);
  const s = await LogisticSession.create(o.runtime);
  try {
    return await f(s);
  } finally {
    await s.release();
  }
}

async function solve(
  pr: LogisticProblem,
  l2: number,
  o: LogisticOptions,
  init?: Float64Array,
): Promise<LogisticRegression> {
  const { K, D } = pr;
  const x0 = init ? Float64Array.from(init) : new Float64Array(K * D + K);
  if (x0.length !== K * D + K)
    throw new GraftError(`initial parameters have ${x0.length} values, expected ${K * D + K}`);
  const res = await minimize(pr.withL2(l2), x0, {
    maxIter: o.maxIter ?? 500,
    gtol: o.gtol ?? 1e-6,
    ftol: o.ftol ?? 2.2e-9,
    m: 10,
  });
  const { x, ...info } = res;
  return new LogisticRegression(x.slice(0, K * D), x.slice(K * D), pr.mean, pr.scale, K, info, l2);
}

/** Train by L-BFGS (history 10, strong Wolfe line search). */
export async function fit(X: ArrayLike<number>[], y: number[], o: LogisticOptions = {}): Promise<LogisticRegression> {
  return withSession(o, async (s) => {
    const pr = logisticProblem(X, y, s, o);
    return solve(pr, pr.l2, o, o.init);
  });
}

export interface CVOptions extends Omit<LogisticOptions, 'l2' | 'init'> {
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

/** Number of folds for k-fold CV on labels y: `want` (default 5), fewer when a class is smaller; throws when too few examples. */
export function cvFolds(y: number[], K: number, want = 5): number {
  const counts = new Array<number>(K).fill(0);
  for (const v of y) counts[v]!++;
  const minCount = Math.min(...counts.filter((c) => c > 0));
  const k = Math.min(want, Math.max(2, minCount));
  if (y.length < 2 * k) throw new GraftError(`too few examples (${y.length}) for ${k}-fold cross-validation`);
  return k;
}

/**
 * Choose l2 by stratified k-fold cross-validation on (X, y), then refit on all of it. Each fold
 * fits the grid from the largest penalty down, warm-starting from the previous optimum; the final
 * fit starts from the chosen penalty's solution on the last fold.
 */
export async function fitCV(X: ArrayLike<number>[], y: number[], o: CVOptions = {}): Promise<CVResult> {
  const grid = o.grid ?? [1e-4, 1e-3, 1e-2, 1e-1, 1, 10];
  if (grid.length === 0) throw new GraftError('fitCV needs at least one l2 value');
  const K = o.numClasses ?? classCount(y);
  const k = cvFolds(y, K, o.folds);
  const fold = stratifiedFolds(y, k, o.seed ?? 0);
  const order = grid.map((l2, i) => ({ l2, i })).sort((a, b) => b.l2 - a.l2);
  const ll = new Float64Array(grid.length),
    correct = new Float64Array(grid.length);
  /** The last fold's solution per penalty: the final fit's starting point. */
  const starts: (Float64Array | undefined)[] = [];
  return withSession(o, async (session) => {
    for (let f = 0; f < k; f++) {
      const tr: number[] = [],
        va: number[] = [];
      for (let i = 0; i < y.length; i++) (fold[i] === f ? va : tr).push(i);
      const pr = logisticProblem(
        tr.map((i) => X[i]!),
        tr.map((i) => y[i]!),
        session,
        { ...o, numClasses: K },
      );
      const Xva = va.map((i) => X[i]!);
      let prev: Float64Array | undefined;
      for (const { l2, i: gi } of order) {
        const m = await solve(pr, l2, o, prev);
        prev = new Float64Array(K * pr.D + K);
        prev.set(m.weights);
        prev.set(m.bias, K * pr.D);
        starts[gi] = prev;
        const P = m.predictProba(Xva);
        const pred = P.map(argmax);
        va.forEach((i, r) => {
          ll[gi]! -= Math.log(Math.max(P[r]![y[i]!]!, 1e-15));
          if (pred[r] === y[i]) correct[gi]!++;
        });
      }
    }
    const scores = grid.map((l2, i) => ({ l2, logloss: ll[i]! / y.length, accuracy: correct[i]! / y.length }));
    const better = (a: (typeof scores)[0], b: (typeof scores)[0]) =>
      (o.score ?? 'logloss') === 'accuracy'
        ? a.accuracy > b.accuracy || (a.accuracy === b.accuracy && a.logloss < b.logloss)
        : a.logloss < b.logloss;
    let best = scores[0]!;
    for (const s of scores) if (better(s, best)) best = s;
    const pr = logisticProblem(X, y, session, { ...o, numClasses: K });
    const model = await solve(pr, best.l2, o, starts[grid.indexOf(best.l2)]);
    return { model, l2: best.l2, scores, folds: k };
  });
}
