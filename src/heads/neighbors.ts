/**
 * Heads for very few labels, by cosine similarity on standardized, L2-normalized features:
 *
 * - Nearest class mean (NCM): one prototype per class (the renormalized mean of its examples);
 *   probabilities softmax(τ · cos(x, prototype)), with the temperature τ chosen by stratified k-fold
 *   cross-validation (validation log loss). ONNX: standardize, normalize, Gemm against the
 *   prototypes (τ folded in), Softmax.
 * - k nearest neighbours (k-NN): the k most similar training examples vote, each with weight
 *   1 + 10⁻³·cos (so equal votes go to the class whose neighbours are closer); probabilities are the
 *   vote shares. k is chosen by leave-one-out cross-validation accuracy (ties: smaller k). ONNX:
 *   standardize, normalize, MatMul against the stored training vectors, TopK, Gather of their one-hot
 *   labels, weighted ReduceSum, Div.
 */
import { A, type Builder } from '../graph/builder.js';
import { GraftError } from '../util/errors.js';
import { dot } from './lbfgs.js';
import {
  onnxStandardizeNormalize,
  standardization,
  standardizeNormalize,
  type FeatureHead,
  type Standardization,
} from './head.js';
import { cvFolds, stratifiedFolds } from './logistic.js';
import { argmax, accuracy, softmax } from '../util/vectors.js';

function checkData(X: ArrayLike<number>[], y: number[], numClasses?: number): number {
  if (X.length === 0) throw new GraftError('a head needs at least one training example');
  if (y.length !== X.length) throw new GraftError(`${X.length} feature vectors but ${y.length} labels`);
  let K = numClasses ?? 0;
  for (const v of y) {
    if (!Number.isInteger(v) || v < 0) throw new GraftError(`labels must be non-negative integers, got ${v}`);
    if (numClasses === undefined) K = Math.max(K, v + 1);
    else if (v >= K) throw new GraftError(`label ${v} is out of range for ${K} classes`);
  }
  return K;
}

/* ---------------- nearest class mean ---------------- */

export interface NcmOptions {
  numClasses?: number;
  /** Softmax temperatures tried by cross-validation (default 1, 3, 10, 30, 100). */
  temperatures?: number[];
  folds?: number;
  seed?: number;
}

export class NearestClassMean implements FeatureHead {
  readonly kind = 'ncm' as const;

  constructor(
    readonly std: Standardization,
    /** K × D unit prototypes (a class with no examples has a zero row). */
    readonly prototypes: Float64Array,
    readonly numClasses: number,
    readonly temperature: number,
    /** Cross-validation scores per temperature. */
    readonly cv: { temperature: number; logloss: number; accuracy: number }[] = [],
  ) {}

  get dim(): number {
    return this.std.mean.length;
  }

  /** Cosine similarity to each class prototype. */
  similarities(X: ArrayLike<number>[]): Float64Array[] {
    const K = this.numClasses,
      D = this.dim;
    const z = new Float64Array(D);
    return X.map((x) => {
      standardizeNormalize(x, this.std, z);
      return Float64Array.from({ length: K }, (_, k) => dot(z, this.prototypes.subarray(k * D, (k + 1) * D)));
    });
  }

  predictProba(X: ArrayLike<number>[]): Float64Array[] {
    return this.similarities(X).map((s) => softmax(s.map((v) => v * this.temperature)));
  }

  predict(X: ArrayLike<number>[]): number[] {
    return this.similarities(X).map(argmax);
  }

  accuracy(X: ArrayLike<number>[], y: number[]): number {
    return accuracy(this.predict(X), y);
  }

  toOnnx(b: Builder, x: string): string {
    const K = this.numClasses,
      D = this.dim;
    const xn = onnxStandardizeNormalize(b, x, this.std);
    const P = b.constant(
      { dtype: 'float32', dims: [K, D], data: Float32Array.from(this.prototypes, (v) => v * this.temperature) },
      'prototypes',
    );
    const scores = b.op('Gemm', [xn, P], { transB: A.i(1) }, 'scaled_cosine');
    return b.op('Softmax', [scores], { axis: A.i(1) }, 'softmax');
  }

  summary(): Record<string, number | string> {
    return { kind: 'nearest-class-mean', classes: this.numClasses, dim: this.dim, temperature: this.temperature };
  }
}

function prototypes(Z: Float64Array[], y: number[], K: number, D: number): Float64Array {
  const P = new Float64Array(K * D);
  Z.forEach((z, i) => {
    const o = y[i]! * D;
    for (let j = 0; j < D; j++) P[o + j]! += z[j]!;
  });
  for (let k = 0; k < K; k++) {
    const row = P.subarray(k * D, (k + 1) * D);
    const n = Math.sqrt(dot(row, row));
    if (n > 0) for (let j = 0; j < D; j++) row[j]! /= n;
  }
  return P;
}

function fitNcmAt(X: ArrayLike<number>[], y: number[], K: number, temperature: number): NearestClassMean {
  const std = standardization(X);
  const Z = X.map((x) => standardizeNormalize(x, std));
  return new NearestClassMean(std, prototypes(Z, y, K, std.mean.length), K, temperature);
}

/** Fit prototypes; the temperature by stratified k-fold cross-validation (log loss). */
export function fitNcm(X: ArrayLike<number>[], y: number[], o: NcmOptions = {}): NearestClassMean {
  const K = checkData(X, y, o.numClasses);
  const temps = o.temperatures ?? [1, 3, 10, 30, 100];
  if (temps.length === 0 || temps.some((t) => !(t > 0))) throw new GraftError('NCM temperatures must be positive');
  let cv: NearestClassMean['cv'] = [];
  let best = temps[0]!;
  if (temps.length > 1) {
    const k = cvFolds(y, K, o.folds ?? 5);
    const fold = stratifiedFolds(y, k, o.seed ?? 0);
    const ll = new Float64Array(temps.length),
      correct = new Float64Array(temps.length);
    for (let f = 0; f < k; f++) {
      const tr = y.flatMap((_, i) => (fold[i] === f ? [] : [i])),
        va = y.flatMap((_, i) => (fold[i] === f ? [i] : []));
      const m = fitNcmAt(
        tr.map((i) => X[i]!),
        tr.map((i) => y[i]!),
        K,
        1,
      );
      const S = m.similarities(va.map((i) => X[i]!));
      const pred = S.map(argmax);
      temps.forEach((t, ti) => {
        va.forEach((i, r) => {
          const p = softmax(S[r]!.map((v) => v * t));
          ll[ti]! -= Math.log(Math.max(p[y[i]!]!, 1e-15));
          if (pred[r] === y[i]) correct[ti]!++;
        });
      });
    }
    cv = temps.map((temperature, i) => ({ temperature, logloss: ll[i]! / y.length, accuracy: correct[i]! / y.length }));
    best = cv.reduce((a, b) => (b.logloss < a.logloss ? b : a)).temperature;
  }
  const m = fitNcmAt(X, y, K, best);
  return new NearestClassMean(m.std, m.prototypes, K, best, cv);
}

/* ---------------- k nearest neighbours ---------------- */

export interface KnnOptions {
  numClasses?: number;
  /** Neighbour counts tried by leave-one-out cross-validation (default 1, 3, 5, 7, 9, 15, 25). */
  ks?: number[];
}

/** Vote weight of a neighbour at cosine similarity s. */
export const TIE_BREAK = 1e-3;

export class KNearestNeighbors implements FeatureHead {
  readonly kind = 'knn' as const;

  constructor(
    readonly std: Standardization,
    /** n × D unit training vectors. */
    readonly train: Float64Array,
    readonly labels: Int32Array,
    readonly numClasses: number,
    readonly k: number,
    readonly cv: { k: number; accuracy: number }[] = [],
  ) {
    if (!(k >= 1 && k <= labels.length)) throw new GraftError(`k must be between 1 and ${labels.length}, got ${k}`);
  }

  get dim(): number {
    return this.std.mean.length;
  }

  predictProba(X: ArrayLike<number>[]): Float64Array[] {
    const n = this.labels.length,
      D = this.dim;
    const z = new Float64Array(D),
      sims = new Float64Array(n);
    return X.map((x) => {
      standardizeNormalize(x, this.std, z);
      similarities(this.train, z, sims);
      return vote(sims, this.labels, this.numClasses, this.k);
    });
  }

  predict(X: ArrayLike<number>[]): number[] {
    return this.predictProba(X).map(argmax);
  }

  accuracy(X: ArrayLike<number>[], y: number[]): number {
    return accuracy(this.predict(X), y);
  }

  toOnnx(b: Builder, x: string): string {
    const n = this.labels.length,
      D = this.dim,
      K = this.numClasses;
    const xn = onnxStandardizeNormalize(b, x, this.std);
    const T = new Float32Array(D * n); // Dᵀ layout: [D, n]
    for (let i = 0; i < n; i++) for (let j = 0; j < D; j++) T[j * n + i] = this.train[i * D + j]!;
    const sims = b.op(
      'MatMul',
      [xn, b.constant({ dtype: 'float32', dims: [D, n], data: T }, 'train_vectors_t')],
      {},
      'cosine',
    );
    const [vals, idx] = b.opN(
      'TopK',
      [sims, b.i64([this.k])],
      { axis: A.i(1), largest: A.i(1), sorted: A.i(1) },
      2,
      'neighbours',
    );
    const w = b.op('Add', [b.op('Mul', [vals!, b.f32(TIE_BREAK)]), b.f32(1)], {}, 'vote_weight');
    const onehot = new Float32Array(n * K);
    this.labels.forEach((c, i) => (onehot[i * K + c] = 1));
    const oh = b.op(
      'Gather',
      [b.constant({ dtype: 'float32', dims: [n, K], data: onehot }, 'train_onehot'), idx!],
      { axis: A.i(0) },
      'neighbour_labels',
    );
    const votes = b.reduce('ReduceSum', b.op('Mul', [oh, b.unsqueeze(w, [2])]), [1], false);
    const total = b.reduce('ReduceSum', w, [1], true);
    return b.op('Div', [votes, total], {}, 'vote_share');
  }

  summary(): Record<string, number | string> {
    return {
      kind: 'k-nearest-neighbours',
      classes: this.numClasses,
      dim: this.dim,
      k: this.k,
      examples: this.labels.length,
    };
  }
}

/** out[i] = ⟨rows[i], z⟩ for the n × D row-major `rows`. */
function similarities(rows: Float64Array, z: Float64Array, out: Float64Array): void {
  const D = z.length;
  for (let i = 0, o = 0; i < out.length; i++, o += D) {
    let s = 0;
    for (let j = 0; j < D; j++) s += rows[o + j]! * z[j]!;
    out[i] = s;
  }
}

/** Weighted vote of the k most similar (ties in similarity: lower index first). */
function vote(sims: Float64Array, labels: Int32Array, K: number, k: number, skip = -1): Float64Array {
  // partial selection of the top k, in order
  const top: number[] = [];
  for (let i = 0; i < sims.length; i++) {
    if (i === skip) continue;
    if (top.length < k) top.push(i);
    else if (sims[i]! > sims[top[k - 1]!]!) top[k - 1] = i;
    else continue;
    for (let p = top.length - 1; p > 0 && sims[top[p - 1]!]! < sims[top[p]!]!; p--)
      [top[p - 1], top[p]] = [top[p]!, top[p - 1]!];
  }
  const p = new Float64Array(K);
  let total = 0;
  for (const i of top) {
    const w = 1 + TIE_BREAK * sims[i]!;
    p[labels[i]!]! += w;
    total += w;
  }
  for (let c = 0; c < K; c++) p[c]! /= total;
  return p;
}

/** Store the normalized training vectors; k by leave-one-out accuracy over the candidates ≤ n − 1. */
export function fitKnn(X: ArrayLike<number>[], y: number[], o: KnnOptions = {}): KNearestNeighbors {
  const K = checkData(X, y, o.numClasses);
  const n = X.length;
  const std = standardization(X);
  const D = std.mean.length;
  const train = new Float64Array(n * D);
  X.forEach((x, i) => standardizeNormalize(x, std, train.subarray(i * D, (i + 1) * D)));
  const labels = Int32Array.from(y);
  const ks = [...new Set(o.ks ?? [1, 3, 5, 7, 9, 15, 25])]
    .filter((k) => Number.isInteger(k) && k >= 1 && k <= Math.max(1, n - 1))
    .sort((a, b) => a - b);
  if (ks.length === 0) throw new GraftError(`no usable k for ${n} training examples`);
  let cv: KNearestNeighbors['cv'] = [];
  let best = ks[0]!;
  if (ks.length > 1 && n > 2) {
    const correct = new Float64Array(ks.length);
    const sims = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      similarities(train, train.subarray(i * D, (i + 1) * D), sims);
      ks.forEach((k, ki) => {
        const p = vote(sims, labels, K, k, i);
        if (argmax(p) === y[i]) correct[ki]!++;
      });
    }
    cv = ks.map((k, i) => ({ k, accuracy: correct[i]! / n }));
    best = cv.reduce((a, b) => (b.accuracy > a.accuracy ? b : a)).k;
  }
  return new KNearestNeighbors(std, train, labels, K, best, cv);
}
