/**
 * Transfer by features: cut a pretrained model at its feature value, extract (and cache) one vector
 * per image, fit a head (logistic regression, a small MLP, nearest class mean or k-NN; src/heads)
 * with its hyperparameter chosen by cross-validation, and save backbone + head as ONE ONNX file
 * that plain onnxruntime runs on images:
 *
 *   input ─▶ backbone (cut at the feature value) ─▶ [GlobalAveragePool ─▶ Flatten, if 4-D]
 *         ─▶ the head's nodes (FeatureHead.toOnnx; e.g. Gemm with the standardization folded in
 *            ─▶ Softmax) ─▶ probabilities
 *
 * The saved folder holds model.onnx (with the image preprocessing and the class names in its
 * metadata), labels.json, and the evaluation report (report.html, report.json). Images that cannot
 * be read are reported by path and skipped.
 */
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { loadModel } from '../formats/load.js';
import { atomicWrite, writeOnnx } from '../formats/onnx.js';
import { writeFolderAtomic, MODEL_FOLDER_FILES } from '../util/atomic.js';
import { getLabels, getPreprocess, setLabels, setPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { decodeImages } from '../data/image.js';
import { stratifiedSplit, type Split } from '../data/splits.js';
import type { LabelledImages } from '../data/labelled-images.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { fitCV, cvFolds } from '../heads/logistic.js';
import { fitMlp, type MlpOptions } from '../heads/mlp.js';
import { fitKnn, fitNcm, type KnnOptions, type NcmOptions } from '../heads/neighbors.js';
import { HEAD_KINDS, type FeatureHead, type HeadKind } from '../heads/head.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { writeReport } from '../eval/report.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { extractFeatures, defaultFeatureNode, type ExtractProgress } from './extract.js';
import { FeatureCache } from './cache.js';
import { GraftError } from '../util/errors.js';
import { argmaxRows } from '../util/vectors.js';

/** Name of the saved classifier's output and of its pooled feature value. */
export const PROBABILITIES = 'probabilities';
export const FEATURES = 'features';

/** Rank of a value: from the graph's value info, else by running the cut graph on one blank image. */
async function valueRank(
  model: Graph,
  value: string,
  pre: ImagePreprocess | undefined,
  runtime?: RuntimeOptions,
): Promise<number> {
  const known = model.valueInfoOf(value)?.shape;
  if (known) return known.length;
  const cut = model.cutBefore([value]);
  const input = cut.dataInputs()[0];
  if (!input) throw new GraftError(`${model.name}: the model has no data input`);
  // the probe image's size: from the preprocessing, else from the input's fixed dims (batch set to 1)
  const fixed = input.shape?.slice(1);
  const dims = pre
    ? [1, pre.channels, pre.height, pre.width]
    : fixed && fixed.length && fixed.every((d): d is number => typeof d === 'number')
      ? [1, ...fixed]
      : undefined;
  if (!dims)
    throw new GraftError(
      `${model.name}: cannot learn the shape of '${value}' without the model's image preprocessing or fixed input dims`,
    );
  const s = await Session.fromGraph(cut, runtime, `${model.name} (cut at ${value})`);
  try {
    const x: Tensor = { dtype: 'float32', dims, data: new Float32Array(dims.reduce((a, d) => a * d, 1)) };
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

/** Backbone cut at `node` (pooled to vectors if needed) + the head's nodes ending in probabilities: one graph. */
export async function exportFeatureClassifier(
  model: Graph,
  node: string,
  head: FeatureHead,
  o: ExportOptions,
): Promise<Graph> {
  const pre = o.preprocess ?? getPreprocess(model);
  const K = head.numClasses,
    D = head.dim;
  if (o.labels.length !== K) throw new GraftError(`${o.labels.length} class names for a head of ${K} classes`);
  const rank = await valueRank(model, node, pre, o.runtime);
  // the similarity heads use ops/signatures of opset ≥ 11 (TopK's k input, largest, sorted): an older backbone is upgraded
  const cut = model.cutBefore([node]);
  const g = (head.kind !== 'knn' && head.kind !== 'ncm') || cut.opset >= 13 ? cut : upgradeOpset(cut, 13);
  const input = g.dataInputs()[0];
  if (!input || g.dataInputs().length !== 1)
    throw new GraftError(`${model.name}: a feature classifier needs a model with one data input`);
  const b = new Builder(g, 'head/');
  let x = node;
  if (rank > 2) x = b.op('Flatten', [b.op('GlobalAveragePool', [x], {}, 'pool')], { axis: A.i(1) }, FEATURES);
  else if (rank < 2) throw new GraftError(`feature value '${node}' has rank ${rank}; expected [N, C] or [N, C, …]`);
  if (g.allNames().has(PROBABILITIES))
    throw new GraftError(`${model.name}: the backbone already has a value named '${PROBABILITIES}'`);
  const probs = head.toOnnx(b, x);
  const last = g.nodes.find((n) => n.outputs.includes(probs));
  if (!last) throw new Error(`head ${head.kind}: no node produces '${probs}'`);
  last.outputs = last.outputs.map((v) => (v === probs ? PROBABILITIES : v)); // a stable output name
  const batch = input.shape?.[0] ?? 'N';
  g.outputs = [{ name: PROBABILITIES, dtype: 'float32', shape: [batch === null ? 'N' : batch, K] }];
  g.valueInfo = g.valueInfo.filter((v) => v.name !== PROBABILITIES && v.name !== x);
  g.valueInfo.push({ name: x, dtype: 'float32', shape: [batch === null ? 'N' : batch, D] });
  g.name = `${model.name} + ${head.kind} head`;
  g.metadata = { ...model.metadata };
  if (pre) setPreprocess(g, pre);
  setLabels(g, o.labels);
  g.metadata['graft.feature_node'] = node;
  g.metadata['graft.head'] = JSON.stringify(head.summary());
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
  /** Cache keys already known by image path (the queue's shards computed them): those images are not read again. */
  knownKeys?: ReadonlyMap<string, string>;
  /** Images per onnxruntime run (default 32). */
  batchSize?: number;
  /** The head (default 'logistic'). */
  head?: HeadKind;
  /** logistic: penalties tried by cross-validation. */
  grid?: number[];
  /** mlp: settings (weight decays tried by cross-validation, hidden units, epochs…). */
  mlp?: Omit<MlpOptions, 'numClasses' | 'validation' | 'runtime'>;
  /** knn: neighbour counts tried by leave-one-out cross-validation. */
  knn?: Omit<KnnOptions, 'numClasses'>;
  /** ncm: softmax temperatures tried by cross-validation. */
  ncm?: Omit<NcmOptions, 'numClasses'>;
  /** Folder to save the classifier in (model.onnx, labels.json, report.json, report.html). */
  out?: string;
  runtime?: RuntimeOptions;
  onProgress?: (p: ExtractProgress & { total: number }) => void;
  /** Called for each image that cannot be read (it is skipped and listed in the report). */
  onSkip?: (f: SkippedFile) => void;
}

export interface SkippedFile {
  path: string;
  error: string;
}

export interface FeatureTrainReport {
  mode: 'features';
  model: string;
  featureNode: string;
  featureDim: number;
  classes: string[];
  examples: { train: number; val: number; test: number };
  extraction: ExtractProgress & { seconds: number; cacheDir?: string };
  head: {
    kind: HeadKind;
    /** The saved head's hyperparameters and sizes. */
    summary: Record<string, number | string>;
    /** Folds of the cross-validation (k-NN: leave-one-out, the number of training examples). */
    folds: number;
    /** Cross-validation score per candidate hyperparameter value. */
    cv: Record<string, number>[];
    /** logistic only: the chosen penalty and the final fit's L-BFGS iterations. */
    l2?: number;
    iterations?: number;
    seconds: number;
  };
  validation?: Metrics;
  test?: Metrics;
  /** Images that could not be read, skipped. */
  skipped: SkippedFile[];
  out?: string;
  /** Files written in `out`. */
  files?: string[];
  seconds: number;
}

export interface FeatureTrainResult {
  report: FeatureTrainReport;
  head: FeatureHead;
  /** Features of the examples used (train, then val, then test), as extracted. */
  features: Float32Array[];
  /** Dataset indices of those rows. */
  rows: number[];
  /** The split, without skipped images. */
  split: Split;
  classifier?: Graph;
}

interface FittedHead {
  head: FeatureHead;
  folds: number;
  cv: Record<string, number>[];
  l2?: number;
  iterations?: number;
}

/** Fit the chosen head on the training features (validation features: early stopping of the MLP). */
async function fitHead(
  kind: HeadKind,
  X: Float32Array[],
  y: number[],
  K: number,
  val: { X: Float32Array[]; y: number[] },
  o: FeatureTrainOptions,
): Promise<FittedHead> {
  const seed = o.seed ?? 0;
  switch (kind) {
    case 'logistic': {
      const cv = await fitCV(X, y, {
        numClasses: K,
        seed,
        ...(o.grid ? { grid: o.grid } : {}),
        ...(o.runtime ? { runtime: o.runtime } : {}),
      });
      return { head: cv.model, folds: cv.folds, cv: cv.scores, l2: cv.l2, iterations: cv.model.info.iterations };
    }
    case 'mlp': {
      const m = await fitMlp(X, y, {
        seed,
        ...o.mlp,
        numClasses: K,
        ...(val.X.length ? { validation: val } : {}),
        ...(o.runtime ? { runtime: o.runtime } : {}),
      });
      return { head: m, folds: m.cv.length ? cvFolds(y, K, o.mlp?.folds ?? 3) : 0, cv: m.cv };
    }
    case 'ncm': {
      const m = fitNcm(X, y, { seed, ...o.ncm, numClasses: K });
      return { head: m, folds: m.cv.length ? cvFolds(y, K, o.ncm?.folds ?? 5) : 0, cv: m.cv };
    }
    case 'knn': {
      const m = fitKnn(X, y, { ...o.knn, numClasses: K });
      return { head: m, folds: m.cv.length ? y.length : 0, cv: m.cv };
    }
    default:
      throw new GraftError(`unknown head '${String(kind)}'; expected one of ${HEAD_KINDS.join(', ')}`);
  }
}

/** Extract features, fit the head on the train split, score validation and test, optionally save (with a report). */
export async function trainFeatureClassifier(
  model: Graph | string,
  data: LabelledImages,
  o: FeatureTrainOptions = {},
): Promise<FeatureTrainResult> {
  const t0 = performance.now();
  const kind = o.head ?? 'logistic';
  if (!HEAD_KINDS.includes(kind))
    throw new GraftError(`unknown head '${kind}'; expected one of ${HEAD_KINDS.join(', ')}`);
  const g = typeof model === 'string' ? loadModel(model) : model;
  const node = o.node ?? defaultFeatureNode(g);
  const split0 = stratifiedSplit(data.labels, {
    valFraction: o.valFraction ?? 0.1,
    testFraction: o.testFraction ?? 0.2,
    ...(o.labelsPerClass !== undefined ? { perClass: o.labelsPerClass } : {}),
    seed: o.seed ?? 0,
  });
  const all = [...split0.train, ...split0.val, ...split0.test];
  const batchSize = o.batchSize ?? 32;
  const cache = o.cacheDir ? FeatureCache.open(o.cacheDir) : undefined;
  const chunks: (string | Uint8Array)[][] = [];
  for (let s = 0; s < all.length; s += batchSize) chunks.push(all.slice(s, s + batchSize).map((i) => data.inputs[i]!));
  let last: ExtractProgress = { examples: 0, cached: 0, computed: 0, runs: 0, skipped: 0 };
  const skipped: SkippedFile[] = [];
  const bad = new Set<number>();
  const te = performance.now();
  const feats = await extractFeatures(g, node, chunks, {
    batchSize,
    ...(cache ? { cache } : {}),
    ...(cache && o.knownKeys ? { knownKeys: o.knownKeys } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
    onProgress: (p) => {
      last = p;
      o.onProgress?.({ ...p, total: all.length });
    },
    onUnreadable: (f) => {
      const row = all[f.index]!;
      bad.add(row);
      const s = { path: data.names[row] ?? `example ${row}`, error: f.error };
      skipped.push(s);
      o.onSkip?.(s);
    },
  });
  const extractSeconds = (performance.now() - te) / 1000;
  const keep = (idx: number[]) => idx.filter((i) => !bad.has(i));
  const split: Split = { ...split0, train: keep(split0.train), val: keep(split0.val), test: keep(split0.test) };
  const rows = [...split.train, ...split.val, ...split.test];
  const nTr = split.train.length,
    nVa = split.val.length;
  if (nTr === 0) throw new GraftError('no readable training images');
  const Xtr = feats.slice(0, nTr),
    ytr = split.train.map((i) => data.labels[i]!);
  const Xva = feats.slice(nTr, nTr + nVa),
    yva = split.val.map((i) => data.labels[i]!);
  const th = performance.now();
  const K = data.classes.length;
  const fitted = await fitHead(kind, Xtr, ytr, K, { X: Xva, y: yva }, o);
  const headSeconds = (performance.now() - th) / 1000;
  const head = fitted.head;
  const score = (X: Float32Array[], idx: number[]) =>
    idx.length
      ? classificationMetrics(
          idx.map((i) => data.labels[i]!),
          head.predict(X),
          data.classes,
        )
      : undefined;
  const validation = score(Xva, split.val);
  const test = score(feats.slice(nTr + nVa), split.test);
  let classifier: Graph | undefined;
  if (o.out) {
    classifier = await exportFeatureClassifier(g, node, head, {
      labels: data.classes,
      ...(o.runtime ? { runtime: o.runtime } : {}),
    });
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
    head: {
      kind,
      summary: head.summary(),
      folds: fitted.folds,
      cv: fitted.cv,
      ...(fitted.l2 !== undefined ? { l2: fitted.l2 } : {}),
      ...(fitted.iterations !== undefined ? { iterations: fitted.iterations } : {}),
      seconds: headSeconds,
    },
    ...(validation ? { validation } : {}),
    ...(test ? { test } : {}),
    skipped,
    ...(o.out ? { out: o.out } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
  const shown = test ?? validation;
  if (o.out && shown) {
    const which = test ? 'test' : 'validation';
    const details: Record<string, string | number> = { split: which, head: kind };
    for (const [k, v] of Object.entries(head.summary())) if (k !== 'kind') details[`head ${k}`] = v;
    details['examples (train / val / test)'] = `${nTr} / ${nVa} / ${split.test.length}`;
    if (validation && test) details['validation accuracy'] = validation.accuracy.toFixed(4);
    // report.json: the whole training report plus the shown split's metrics
    report.files = [
      join(o.out, 'model.onnx'),
      join(o.out, 'labels.json'),
      join(o.out, 'report.html'),
      join(o.out, 'report.json'),
    ];
    writeReport(join(o.out, 'report.html'), shown, {
      title: `Graft classifier (${kind} head on ${node}): ${which} split`,
      model: report.model,
      details,
      skipped,
      extra: { training: report },
    });
  }
  return { report, head, features: feats, rows, split, ...(classifier ? { classifier } : {}) };
}

/** Write a classifier folder (model.onnx and labels.json) as one unit: a failure leaves the previous folder as it was. */
export function saveClassifier(g: Graph, dir: string): void {
  writeFolderAtomic(
    dir,
    (stage) => {
      writeOnnx(g, join(stage, 'model.onnx'));
      atomicWrite(join(stage, 'labels.json'), Buffer.from(JSON.stringify(getLabels(g) ?? [], null, 2) + '\n'));
    },
    { replaces: MODEL_FOLDER_FILES },
  );
}

export interface EvaluateOptions {
  batchSize?: number;
  runtime?: RuntimeOptions;
  onProgress?: (done: number, total: number) => void;
  /** Called for each image that cannot be read (it is skipped and listed in `skipped`). */
  onSkip?: (f: SkippedFile) => void;
}

export interface Evaluation {
  metrics: Metrics;
  /** Predicted class index (in the model's labels) per example. */
  predictions: number[];
  /** True class index (in the model's labels) per example (skipped images excluded). */
  truth: number[];
  /** Images that could not be read, skipped. */
  skipped: SkippedFile[];
}

/**
 * Run a saved classifier (any model whose first output is one score vector per image) over a
 * labelled dataset; dataset classes are matched to the model's labels by name.
 */
export async function evaluateClassifier(
  model: Graph,
  data: LabelledImages,
  o: EvaluateOptions = {},
): Promise<Evaluation> {
  const pre = getPreprocess(model);
  if (!pre) throw new GraftError(`${model.name}: the model records no image preprocessing`);
  const labels = getLabels(model) ?? data.classes;
  const index = new Map(labels.map((l, i) => [l, i]));
  const toModel = data.classes.map((c) => {
    const k = index.get(c);
    if (k === undefined)
      throw new GraftError(`dataset class '${c}' is not one of the model's classes (${labels.join(', ')})`);
    return k;
  });
  const input = model.dataInputs()[0];
  if (!input) throw new GraftError(`${model.name}: the model has no data input`);
  const out = model.outputs[0]!.name;
  const bs = o.batchSize ?? 32;
  const session = await Session.fromGraph(model, o.runtime, model.name);
  const predictions: number[] = [];
  const truth: number[] = [];
  const skipped: SkippedFile[] = [];
  try {
    for (let s = 0; s < data.inputs.length; s += bs) {
      const batch = data.inputs.slice(s, s + bs);
      const d = await decodeImages(batch, pre);
      for (const f of d.failed) {
        const sk = { path: data.names[s + f.index] ?? `example ${s + f.index}`, error: f.error };
        skipped.push(sk);
        o.onSkip?.(sk);
      }
      if (d.ok.length) {
        const r = (await session.run({ [input.name]: d.tensor }, [out]))[out]!;
        predictions.push(
          ...argmaxRows({ dtype: 'float32', dims: [d.ok.length, r.dims[r.dims.length - 1]!], data: r.data }),
        );
        for (const k of d.ok) truth.push(toModel[data.labels[s + k]!]!);
      }
      o.onProgress?.(Math.min(s + bs, data.inputs.length), data.inputs.length);
    }
  } finally {
    await session.release();
  }
  if (truth.length === 0) throw new GraftError('no readable images to evaluate');
  return { metrics: classificationMetrics(truth, predictions, labels), predictions, truth, skipped };
}
