/**
 * Transfer by features: cut a pretrained model at its feature value, extract (and cache) one vector
 * per image, fit a logistic-regression head with the L2 penalty chosen by cross-validation, and save
 * backbone + head as ONE ONNX file that plain onnxruntime runs on images:
 *
 *   input ─▶ backbone (cut at the feature value) ─▶ [GlobalAveragePool ─▶ Flatten, if 4-D]
 *         ─▶ Gemm (standardization folded into the weights) ─▶ Softmax ─▶ probabilities
 *
 * Folding: the head computes W·((x − μ)/σ) + b = (W/σ)·x + (b − W·(μ/σ)), so the saved Gemm has
 * B[k][j] = W[k][j]/σ[j] and C[k] = b[k] − Σⱼ W[k][j]·μ[j]/σ[j] (computed in float64).
 *
 * The saved folder holds model.onnx (with the image preprocessing and the class names in its
 * metadata) and labels.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { loadModel } from '../formats/load.js';
import { writeOnnx } from '../formats/onnx.js';
import { getLabels, getPreprocess, setLabels, setPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { imagesToTensor } from '../data/image.js';
import { stratifiedSplit, type Split } from '../data/splits.js';
import type { LabelledImages } from '../data/labelled-images.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { fitCV, type LogisticRegression } from '../heads/logistic.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { extractFeatures, defaultFeatureNode, type ExtractProgress } from './extract.js';
import { FeatureCache } from './cache.js';
import { GraftError } from '../util/errors.js';

/** Name of the saved classifier's output and of its pooled feature value. */
export const PROBABILITIES = 'probabilities';
export const FEATURES = 'features';

/** Rank of a value: from the graph's value info, else by running the cut graph on one blank image. */
async function valueRank(model: Graph, value: string, pre: ImagePreprocess | undefined, runtime?: RuntimeOptions): Promise<number> {
  const known = model.valueInfoOf(value)?.shape;
  if (known) return known.length;
  const cut = model.cutBefore([value]);
  const input = cut.dataInputs()[0];
  if (!input) throw new GraftError(`${model.name}: the model has no data input`);
  if (!pre) throw new GraftError(`${model.name}: cannot learn the shape of '${value}' without the model's image preprocessing`);
  const s = await Session.fromGraph(cut, runtime, `${model.name} (cut at ${value})`);
  try {
    const n = pre.channels * pre.height * pre.width;
    const x: Tensor = { dtype: 'float32', dims: [1, pre.channels, pre.height, pre.width], data: new Float32Array(n) };
    const r = await s.run({ [input.name]: x }, [value]);
    return r[value]!.dims.length;
  } finally {
    await s.release();
  }
}

export interface ExportOptions {
  labels: string[];
  preprocess?: ImagePreprocess;
  runtime?: RuntimeOptions;
}

/** Backbone cut at `node` (pooled to vectors if needed) + the head as Gemm + Softmax: one graph. */
export async function exportFeatureClassifier(model: Graph, node: string, head: LogisticRegression, o: ExportOptions): Promise<Graph> {
  const pre = o.preprocess ?? getPreprocess(model);
  const K = head.numClasses, D = head.dim;
  if (o.labels.length !== K) throw new GraftError(`${o.labels.length} class names for a head of ${K} classes`);
  const rank = await valueRank(model, node, pre, o.runtime);
  const g = model.cutBefore([node]);
  const input = g.dataInputs()[0];
  if (!input || g.dataInputs().length !== 1) throw new GraftError(`${model.name}: a feature classifier needs a model with one data input`);
  const b = new Builder(g, 'head/');
  let x = node;
  if (rank > 2) x = b.op('Flatten', [b.op('GlobalAveragePool', [x], {}, 'pool')], { axis: A.i(1) }, FEATURES);
  else if (rank < 2) throw new GraftError(`feature value '${node}' has rank ${rank}; expected [N, C] or [N, C, …]`);
  const W = new Float32Array(K * D), C = new Float32Array(K);
  for (let k = 0; k < K; k++) {
    let c = head.bias[k]!;
    for (let j = 0; j < D; j++) {
      const w = head.weights[k * D + j]! / head.scale[j]!;
      W[k * D + j] = w;
      c -= w * head.mean[j]!;
    }
    C[k] = c;
  }
  const wName = b.constant({ dtype: 'float32', dims: [K, D], data: W }, 'weight');
  const cName = b.constant({ dtype: 'float32', dims: [K], data: C }, 'bias');
  const logits = b.op('Gemm', [x, wName, cName], { transB: A.i(1) }, 'logits');
  if (g.allNames().has(PROBABILITIES)) throw new GraftError(`${model.name}: the backbone already has a value named '${PROBABILITIES}'`);
  b.op('Softmax', [logits], { axis: A.i(1) }, 'softmax');
  g.nodes[g.nodes.length - 1]!.outputs = [PROBABILITIES]; // a stable output name
  const batch = input.shape?.[0] ?? 'N';
  g.outputs = [{ name: PROBABILITIES, dtype: 'float32', shape: [batch === null ? 'N' : batch, K] }];
  g.valueInfo = g.valueInfo.filter((v) => v.name !== PROBABILITIES && v.name !== x);
  g.valueInfo.push({ name: x, dtype: 'float32', shape: [batch === null ? 'N' : batch, D] });
  g.name = `${model.name} + logistic head`;
  g.metadata = { ...model.metadata };
  if (pre) setPreprocess(g, pre);
  setLabels(g, o.labels);
  g.metadata['graft.feature_node'] = node;
  g.metadata['graft.head'] = JSON.stringify({ kind: 'logistic-regression', classes: K, dim: D, l2: head.l2 });
  return g;
}

export interface FeatureTrainOptions {
  /** Feature value to cut at (default: the input of the final classifier). */
  node?: string;
  labelsPerClass?: number;
  /** Fractions of each class held out (defaults 0.1 and 0.2). */
  valFraction?: number;
  testFraction?: number;
  seed?: number;
  /** Activation cache folder. */
  cacheDir?: string;
  /** Images per onnxruntime run (default 32). */
  batchSize?: number;
  /** Penalties tried by cross-validation. */
  grid?: number[];
  /** Folder to save the classifier in (model.onnx, labels.json). */
  out?: string;
  runtime?: RuntimeOptions;
  onProgress?: (p: ExtractProgress & { total: number }) => void;
}

export interface FeatureTrainReport {
  mode: 'features';
  model: string;
  featureNode: string;
  featureDim: number;
  classes: string[];
  examples: { train: number; val: number; test: number };
  extraction: ExtractProgress & { seconds: number; cacheDir?: string };
  head: { l2: number; folds: number; cv: { l2: number; logloss: number; accuracy: number }[]; iterations: number; seconds: number };
  validation?: Metrics;
  test?: Metrics;
  out?: string;
  seconds: number;
}

export interface FeatureTrainResult {
  report: FeatureTrainReport;
  head: LogisticRegression;
  /** Features of the examples used (train, then val, then test), as extracted. */
  features: Float32Array[];
  /** Dataset indices of those rows. */
  rows: number[];
  split: Split;
  classifier?: Graph;
}

/** Extract features, fit the head on the train split, score validation and test, optionally save. */
export async function trainFeatureClassifier(model: Graph | string, data: LabelledImages, o: FeatureTrainOptions = {}): Promise<FeatureTrainResult> {
  const t0 = performance.now();
  const g = typeof model === 'string' ? loadModel(model) : model;
  const node = o.node ?? defaultFeatureNode(g);
  const split = stratifiedSplit(data.labels, {
    valFraction: o.valFraction ?? 0.1,
    testFraction: o.testFraction ?? 0.2,
    ...(o.labelsPerClass !== undefined ? { perClass: o.labelsPerClass } : {}),
    seed: o.seed ?? 0,
  });
  const rows = [...split.train, ...split.val, ...split.test];
  const batchSize = o.batchSize ?? 32;
  const cache = o.cacheDir ? FeatureCache.open(o.cacheDir) : undefined;
  const chunks: (string | Uint8Array)[][] = [];
  for (let s = 0; s < rows.length; s += batchSize) chunks.push(rows.slice(s, s + batchSize).map((i) => data.inputs[i]!));
  let last: ExtractProgress = { examples: 0, cached: 0, computed: 0, runs: 0 };
  const te = performance.now();
  const feats = await extractFeatures(g, node, chunks, {
    batchSize,
    ...(cache ? { cache } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
    onProgress: (p) => {
      last = p;
      o.onProgress?.({ ...p, total: rows.length });
    },
  });
  const extractSeconds = (performance.now() - te) / 1000;
  const nTr = split.train.length, nVa = split.val.length;
  const Xtr = feats.slice(0, nTr), ytr = split.train.map((i) => data.labels[i]!);
  const th = performance.now();
  const K = data.classes.length;
  const cv = fitCV(Xtr, ytr, { numClasses: K, seed: o.seed ?? 0, ...(o.grid ? { grid: o.grid } : {}) });
  const headSeconds = (performance.now() - th) / 1000;
  const head = cv.model;
  const score = (X: Float32Array[], idx: number[]) =>
    idx.length ? classificationMetrics(idx.map((i) => data.labels[i]!), head.predict(X), data.classes) : undefined;
  const validation = score(feats.slice(nTr, nTr + nVa), split.val);
  const test = score(feats.slice(nTr + nVa), split.test);
  let classifier: Graph | undefined;
  if (o.out) {
    classifier = await exportFeatureClassifier(g, node, head, { labels: data.classes, ...(o.runtime ? { runtime: o.runtime } : {}) });
    saveClassifier(classifier, o.out);
  }
  const report: FeatureTrainReport = {
    mode: 'features',
    model: typeof model === 'string' ? model : g.name,
    featureNode: node,
    featureDim: head.dim,
    classes: data.classes,
    examples: { train: nTr, val: nVa, test: split.test.length },
    extraction: { ...last, seconds: extractSeconds, ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}) },
    head: { l2: cv.l2, folds: cv.folds, cv: cv.scores, iterations: head.info.iterations, seconds: headSeconds },
    ...(validation ? { validation } : {}),
    ...(test ? { test } : {}),
    ...(o.out ? { out: o.out } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
  return { report, head, features: feats, rows, split, ...(classifier ? { classifier } : {}) };
}

/** Write a classifier folder: model.onnx (atomic) and labels.json. */
export function saveClassifier(g: Graph, dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeOnnx(g, join(dir, 'model.onnx'));
  writeFileSync(join(dir, 'labels.json'), JSON.stringify(getLabels(g) ?? [], null, 2) + '\n');
}

export interface EvaluateOptions {
  batchSize?: number;
  runtime?: RuntimeOptions;
  onProgress?: (done: number, total: number) => void;
}

export interface Evaluation {
  metrics: Metrics;
  /** Predicted class index (in the model's labels) per example. */
  predictions: number[];
  /** True class index (in the model's labels) per example. */
  truth: number[];
}

/**
 * Run a saved classifier (any model whose first output is one score vector per image) over a
 * labelled dataset; dataset classes are matched to the model's labels by name.
 */
export async function evaluateClassifier(model: Graph, data: LabelledImages, o: EvaluateOptions = {}): Promise<Evaluation> {
  const pre = getPreprocess(model);
  if (!pre) throw new GraftError(`${model.name}: the model records no image preprocessing`);
  const labels = getLabels(model) ?? data.classes;
  const index = new Map(labels.map((l, i) => [l, i]));
  const toModel = data.classes.map((c) => {
    const k = index.get(c);
    if (k === undefined) throw new GraftError(`dataset class '${c}' is not one of the model's classes (${labels.join(', ')})`);
    return k;
  });
  const input = model.dataInputs()[0];
  if (!input) throw new GraftError(`${model.name}: the model has no data input`);
  const out = model.outputs[0]!.name;
  const bs = o.batchSize ?? 32;
  const session = await Session.fromGraph(model, o.runtime, model.name);
  const predictions: number[] = [];
  try {
    for (let s = 0; s < data.inputs.length; s += bs) {
      const batch = data.inputs.slice(s, s + bs);
      const r = (await session.run({ [input.name]: await imagesToTensor(batch, pre) }, [out]))[out]!;
      const K = r.dims[r.dims.length - 1]!;
      const d = r.data as Float32Array;
      for (let n = 0; n < batch.length; n++) {
        let best = 0;
        for (let k = 1; k < K; k++) if (d[n * K + k]! > d[n * K + best]!) best = k;
        predictions.push(best);
      }
      o.onProgress?.(Math.min(s + bs, data.inputs.length), data.inputs.length);
    }
  } finally {
    await session.release();
  }
  const truth = data.labels.map((y) => toModel[y]!);
  return { metrics: classificationMetrics(truth, predictions, labels), predictions, truth };
}
