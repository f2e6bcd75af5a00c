/**
 * Fine-tune a pretrained classifier on a labelled dataset, end to end: load, free the batch size,
 * split (stratified, seeded, optionally few labels per class, a validation part when early stopping
 * needs one), measure zero-shot accuracy, train, measure test accuracy, save the trained ONNX model.
 * Also the learning-rate range test on the same training split.
 *
 * Inductive transfer: when the dataset's class count differs from the model's output size (or
 * `newHead` is true), the model is cut at its features (featureNodeOf: the metadata a previous
 * `graft train`/`graft adapt` recorded, else the input of its final classifier layer) and gets a new,
 * freshly initialized head for the new classes (withNewHead) instead of training the old output.
 */
import type { Graph } from '../graph/graph.js';
import { loadModel } from '../formats/load.js';
import { writeOnnx } from '../formats/onnx.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { stratifiedSplit } from '../data/splits.js';
import { loadPixelDataset } from '../data/pixel-dataset.js';
import { fit, predictLabels, exampleDims, stack, type Examples, type FitOptions } from '../train/fit.js';
import { findLr, type LrFindOptions, type LrFindResult } from '../train/lr-finder.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { withNewHead, outputClasses } from '../features/multi-task.js';
import { GraftError } from '../util/errors.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { accuracy, argmaxRows } from '../util/vectors.js';

export interface FinetuneOptions extends FitOptions {
  labelsPerClass?: number;
  testFraction?: number;
  preprocess?: 'mnist' | 'stretch';
  pixelMax?: number;
  /**
   * Fraction of each class of the data held out for validation (early stopping watches it). Default:
   * 0.1 when earlyStopping is set and no `validation` is given, else none.
   */
  valFraction?: number;
  /** Where to save the trained model (.onnx); nothing is saved when omitted. */
  out?: string;
  /** Replace the model's head with a new one for the dataset's classes: 'auto' (default) when the class counts differ. */
  newHead?: boolean | 'auto';
  /** Called when a new head replaces the old output. */
  onNewHead?: (info: NewHeadInfo) => void;
}

export interface NewHeadInfo {
  node: string;
  previousOutputs: number;
  classes: number;
  forced: boolean;
}

export interface FinetuneReport {
  trainExamples: number;
  testExamples: number;
  zeroShotAccuracy: number;
  testAccuracy: number;
  /** Test-split metrics (classes named by their label numbers). */
  test: Metrics;
  validationExamples: number;
  valAccuracy?: number;
  finalLoss: number;
  steps: number;
  /** Epochs trained (early stopping may end sooner than asked). */
  epochs: number;
  /** Early stopping: the epoch whose weights were kept. */
  bestEpoch?: number;
  /** The run continued from the checkpoint of this epoch (0: started fresh). */
  resumedFrom: number;
  seconds: number;
  out?: string;
  /** Set when a new head replaced the model's old output (zeroShotAccuracy is then the untrained head's). */
  newHead?: NewHeadInfo;
}

export async function evaluateModel(
  g: Graph,
  data: Examples,
  batchSize = 64,
  runtime: RuntimeOptions = {},
): Promise<number> {
  const s = await Session.fromGraph(g, runtime, g.name);
  const dims = exampleDims(g);
  const name = g.dataInputs()[0]!.name;
  const pred: number[] = [];
  try {
    for (let i = 0; i < data.x.length; i += batchSize) {
      pred.push(...argmaxRows(Object.values(await s.run({ [name]: stack(data.x.slice(i, i + batchSize), dims) }))[0]!));
    }
  } finally {
    await s.release();
  }
  return accuracy(pred, data.y);
}

interface Prepared {
  model: Graph;
  train: Examples;
  val?: Examples;
  test: Examples;
  newHead?: NewHeadInfo;
}

async function prepare(modelPath: string, dataPath: string, o: FinetuneOptions): Promise<Prepared> {
  const model = makeBatchDynamic(loadModel(modelPath));
  const dims = exampleDims(model);
  if (dims.length !== 3 || dims[0] !== 1 || dims[1] !== dims[2])
    throw new GraftError(
      `this dataset holds grey square images; the model's input is [batch, ${dims}] (expected [batch, 1, S, S])`,
    );
  const data = await loadPixelDataset(dataPath, {
    side: dims[1]!,
    preprocess: o.preprocess ?? 'mnist',
    pixelMax: o.pixelMax ?? 255,
  });
  const valFraction = o.valFraction ?? (o.earlyStopping && !o.validation ? 0.1 : 0);
  const split = stratifiedSplit(data.y, {
    testFraction: o.testFraction ?? 0.3,
    ...(valFraction ? { valFraction } : {}),
    ...(o.labelsPerClass ? { perClass: o.labelsPerClass } : {}),
    seed: o.seed ?? 0,
  });
  const pick = (idx: number[]): Examples => ({ x: idx.map((i) => data.x[i]!), y: idx.map((i) => data.y[i]!) });
  const K = Math.max(...data.y) + 1;
  const outputs = await outputClasses(model);
  const forced = o.newHead === true;
  if (o.newHead === false && outputs !== K)
    throw new GraftError(
      `${modelPath} has ${outputs} outputs but ${dataPath} has ${K} classes`,
      "drop --no-new-head to put a new head on the model's features",
    );
  if (forced || (o.newHead !== false && outputs !== K)) {
    const fresh = await withNewHead(model, K, { seed: o.seed ?? 0 });
    const newHead: NewHeadInfo = {
      node: fresh.metadata['graft.features']!,
      previousOutputs: outputs,
      classes: K,
      forced,
    };
    o.onNewHead?.(newHead);
    return {
      model: fresh,
      train: pick(split.train),
      ...(split.val.length ? { val: pick(split.val) } : {}),
      test: pick(split.test),
      newHead,
    };
  }
  return {
    model,
    train: pick(split.train),
    ...(split.val.length ? { val: pick(split.val) } : {}),
    test: pick(split.test),
  };
}

export async function finetuneImageCsv(
  modelPath: string,
  dataPath: string,
  o: FinetuneOptions = {},
): Promise<FinetuneReport> {
  const { model, train, val, test, newHead } = await prepare(modelPath, dataPath, o);
  const zeroShotAccuracy = await evaluateModel(model, test, 64, o.runtime);
  const t0 = performance.now();
  const validation = o.validation ?? val;
  const r = await fit(model, train, { ...o, ...(validation ? { validation } : {}) });
  const seconds = (performance.now() - t0) / 1000;
  let testAccuracy: number, metrics: Metrics;
  try {
    const pred = await predictLabels(r.trainer, r.trainer.tg.model, test.x);
    testAccuracy = accuracy(pred, test.y);
    metrics = classificationMetrics(test.y, pred, Math.max(...train.y, ...test.y) + 1);
    const trained = r.trainer.toGraph();
    trained.metadata['graft.trained_on'] = dataPath;
    trained.metadata['graft.test_accuracy'] = testAccuracy.toFixed(4);
    if (o.out) writeOnnx(trained, o.out);
  } finally {
    await r.trainer.release();
  }
  return {
    trainExamples: train.x.length,
    testExamples: test.x.length,
    validationExamples: validation?.y.length ?? 0,
    zeroShotAccuracy,
    testAccuracy,
    test: metrics,
    ...(r.valAccuracy !== undefined ? { valAccuracy: r.valAccuracy } : {}),
    finalLoss: r.losses[r.losses.length - 1] ?? NaN,
    steps: r.losses.length,
    epochs: r.epochs,
    resumedFrom: r.resumedFrom,
    ...(r.bestEpoch !== undefined ? { bestEpoch: r.bestEpoch } : {}),
    seconds,
    ...(o.out ? { out: o.out } : {}),
    ...(newHead ? { newHead } : {}),
  };
}

/** The learning-rate range test on the training split finetuneImageCsv would use (same options). */
export async function lrFindImageCsv(
  modelPath: string,
  dataPath: string,
  o: FinetuneOptions & LrFindOptions = {},
): Promise<LrFindResult> {
  const { model, train } = await prepare(modelPath, dataPath, o);
  return findLr(model, train, o);
}
