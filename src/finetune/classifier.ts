/**
 * Fine-tune a pretrained classifier on a labelled dataset, end to end: load, free the batch size,
 * split (stratified, seeded, optionally few labels per class), measure zero-shot accuracy, train,
 * measure test accuracy, save the trained ONNX model.
 */
import type { Graph } from '../graph/graph.js';
import { loadModel } from '../formats/load.js';
import { writeOnnx } from '../formats/onnx.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { stratifiedSplit } from '../data/splits.js';
import { loadPixelDataset } from '../data/pixel-dataset.js';
import { fit, accuracy, predictLabels, exampleDims, stack, argmaxRows, type Examples, type FitOptions } from '../train/fit.js';
import { Session } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';

export interface FinetuneOptions extends FitOptions {
  labelsPerClass?: number;
  testFraction?: number;
  preprocess?: 'mnist' | 'stretch';
  pixelMax?: number;
  /** Where to save the trained model (.onnx); nothing is saved when omitted. */
  out?: string;
}

export interface FinetuneReport {
  trainExamples: number;
  testExamples: number;
  zeroShotAccuracy: number;
  testAccuracy: number;
  finalLoss: number;
  steps: number;
  seconds: number;
  out?: string;
}

export async function evaluateModel(g: Graph, data: Examples, batchSize = 64): Promise<number> {
  const s = await Session.fromGraph(g, {}, g.name);
  const dims = exampleDims(g);
  const name = g.dataInputs()[0]!.name;
  const pred: number[] = [];
  for (let i = 0; i < data.x.length; i += batchSize) {
    pred.push(...argmaxRows(Object.values(await s.run({ [name]: stack(data.x.slice(i, i + batchSize), dims) }))[0]!));
  }
  await s.release();
  return accuracy(pred, data.y);
}

export async function finetuneImageCsv(modelPath: string, dataPath: string, o: FinetuneOptions = {}): Promise<FinetuneReport> {
  const model = makeBatchDynamic(loadModel(modelPath));
  const dims = exampleDims(model);
  if (dims.length !== 3 || dims[0] !== 1 || dims[1] !== dims[2])
    throw new GraftError(`this dataset holds grey square images; the model's input is [batch, ${dims}] (expected [batch, 1, S, S])`);
  const data = await loadPixelDataset(dataPath, { side: dims[1]!, preprocess: o.preprocess ?? 'mnist', pixelMax: o.pixelMax ?? 255 });
  const split = stratifiedSplit(data.y, { testFraction: o.testFraction ?? 0.3, ...(o.labelsPerClass ? { perClass: o.labelsPerClass } : {}), seed: o.seed ?? 0 });
  const pick = (idx: number[]): Examples => ({ x: idx.map((i) => data.x[i]!), y: idx.map((i) => data.y[i]!) });
  const train = pick(split.train);
  const test = pick(split.test);
  const zeroShotAccuracy = await evaluateModel(model, test);
  const t0 = performance.now();
  const r = await fit(model, train, o);
  const seconds = (performance.now() - t0) / 1000;
  const testAccuracy = accuracy(await predictLabels(r.trainer, r.trainer.tg.model, test.x), test.y);
  const trained = r.trainer.toGraph();
  trained.metadata['graft.trained_on'] = dataPath;
  trained.metadata['graft.test_accuracy'] = testAccuracy.toFixed(4);
  if (o.out) writeOnnx(trained, o.out);
  await r.trainer.release();
  return {
    trainExamples: train.x.length, testExamples: test.x.length, zeroShotAccuracy, testAccuracy,
    finalLoss: r.losses[r.losses.length - 1] ?? NaN, steps: r.losses.length, seconds, ...(o.out ? { out: o.out } : {}),
  };
}
