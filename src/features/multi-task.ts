/**
 * Inductive transfer from one network to new tasks:
 *
 * - withNewHead: a trained classifier (pretrained, or saved by an earlier `graft train`) as the
 *   start of a new task: cut at its features (the saved model's `graft.feature_node` metadata, else
 *   the input of its final classifier layer), and put a new, freshly initialized Gemm head with the
 *   new task's number of classes on top; the result fine-tunes like any model.
 * - multi-task: k heads sharing one backbone and one feature extraction (optionally one on-disk
 *   FeatureCache): k logistic-regression heads on the same cached features for k label sets, and one
 *   ONNX file with k outputs (`probabilities_<task>`), so one forward pass answers every task.
 */
import type { Graph } from '../graph/graph.js';
import { A, Builder } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { exampleDims } from '../train/fit.js';
import { fitCV, type LogisticRegression } from '../heads/logistic.js';
import { extractFeatures, defaultFeatureNode } from './extract.js';
import type { FeatureCache } from './cache.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { classCount } from '../heads/head.js';

/** The value a classifier's head reads: recorded metadata first, then the input of its final layer. */
export function featureNodeOf(model: Graph): string {
  const names = model.allNames();
  for (const key of ['graft.features', 'graft.feature_node']) {
    const v = model.metadata[key];
    if (v && names.has(v)) return v;
  }
  // a classifier saved by `graft train --mode features` names its pooled vector 'features'
  for (const v of ['features', 'head/features']) if (model.nodes.some((n) => n.outputs.includes(v))) return v;
  return defaultFeatureNode(model);
}

/** Size of the flattened value `node` of a model for one example (one forward run). */
export async function flatSize(model: Graph, node: string, runtime?: RuntimeOptions): Promise<number> {
  const g = makeBatchDynamic(model).cutBefore([node]);
  const dims = exampleDims(g);
  const s = await Session.fromGraph(g, runtime, `${model.name} (cut at ${node})`);
  try {
    const x: Tensor = { dtype: 'float32', dims: [1, ...dims], data: new Float32Array(dims.reduce((a, b) => a * b, 1)) };
    const r = await s.run({ [g.dataInputs()[0]!.name]: x }, [node]);
    return r[node]!.dims.slice(1).reduce((a, b) => a * b, 1);
  } finally {
    await s.release();
  }
}

/** Output size of a classifier: the last axis of its first output for one zero example. */
export async function outputClasses(model: Graph, runtime?: RuntimeOptions): Promise<number> {
  const g = makeBatchDynamic(model);
  const dims = exampleDims(g);
  const out = g.outputs[0]?.name;
  if (!out) throw new GraftError(`${model.name}: the model has no outputs`);
  const s = await Session.fromGraph(g, runtime, `${model.name} (output probe)`);
  try {
    const x: Tensor = { dtype: 'float32', dims: [1, ...dims], data: new Float32Array(dims.reduce((a, b) => a * b, 1)) };
    const t = (await s.run({ [g.dataInputs()[0]!.name]: x }, [out]))[out]!;
    return t.dims[t.dims.length - 1]!;
  } finally {
    await s.release();
  }
}

export interface NewHeadOptions {
  /** Value to cut at (default: featureNodeOf(model)). */
  node?: string;
  seed?: number;
  runtime?: RuntimeOptions;
}

/**
 * The model cut at its features + a new head: Flatten → Gemm (weights N(0, 1/D), bias 0) → logits
 * [N, classes] (output 'logits'; names 'new_head.weight' / 'new_head.bias'). The batch axis is freed.
 */
export async function withNewHead(model: Graph, classes: number, o: NewHeadOptions = {}): Promise<Graph> {
  if (!Number.isInteger(classes) || classes < 2)
    throw new GraftError(`a new head needs at least 2 classes, got ${classes}`);
  const node = o.node ?? featureNodeOf(model);
  const D = await flatSize(model, node, o.runtime);
  const g = makeBatchDynamic(model).cutBefore([node]);
  const b = new Builder(g, 'new_head/');
  const rng = new Rng(o.seed ?? 0);
  const w = g.uniqueName('new_head.weight'),
    bias = g.uniqueName('new_head.bias');
  g.initializers.set(w, {
    dtype: 'float32',
    dims: [classes, D],
    data: Float32Array.from({ length: classes * D }, () => rng.normal() / Math.sqrt(D)),
  });
  g.initializers.set(bias, { dtype: 'float32', dims: [classes], data: new Float32Array(classes) });
  const flat = b.op('Flatten', [node], { axis: A.i(1) });
  const out = g.allNames().has('logits') ? g.uniqueName('logits') : 'logits';
  g.nodes.push({
    name: g.uniqueName('new_head/gemm'),
    opType: 'Gemm',
    domain: '',
    inputs: [flat, w, bias],
    outputs: [out],
    attrs: { transB: A.i(1) },
  });
  g.outputs = [{ name: out, dtype: 'float32', shape: ['batch', classes] }];
  g.metadata = { ...model.metadata, 'graft.features': node };
  delete g.metadata['graft.labels'];
  g.name = `${model.name} + new head`;
  return g;
}

export interface Task {
  name: string;
  /** Label of every example (same order as the inputs). */
  labels: number[];
  classes?: string[];
}

export interface MultiTaskOptions {
  node?: string;
  /** Rows (indices into the inputs) the heads train on; every other row is left alone. */
  train: number[];
  cache?: FeatureCache;
  batchSize?: number;
  seed?: number;
  runtime?: RuntimeOptions;
}

export interface MultiTaskResult {
  node: string;
  /** Features of every input (extracted once, shared by all heads). */
  features: Float32Array[];
  heads: { task: string; head: LogisticRegression; l2: number; seconds: number }[];
  extractSeconds: number;
}

/** Extract features once, then fit one cross-validated logistic head per task on the same rows. */
export async function trainMultiTask(
  model: Graph,
  inputs: Float32Array[],
  tasks: Task[],
  o: MultiTaskOptions,
): Promise<MultiTaskResult> {
  if (!tasks.length) throw new GraftError('multi-task training needs at least one task');
  const names = new Set<string>();
  for (const t of tasks) {
    if (!/^[A-Za-z0-9_-]+$/.test(t.name)) throw new GraftError(`task name '${t.name}' must be letters, digits, _ or -`);
    if (names.has(t.name)) throw new GraftError(`two tasks are named '${t.name}'`);
    names.add(t.name);
    if (t.labels.length !== inputs.length)
      throw new GraftError(`task '${t.name}' has ${t.labels.length} labels for ${inputs.length} inputs`);
  }
  const node = o.node ?? featureNodeOf(model);
  const g = makeBatchDynamic(model);
  const dims = exampleDims(g);
  const bs = o.batchSize ?? 128;
  const batches: Tensor[] = [];
  for (let i = 0; i < inputs.length; i += bs) {
    const xs = inputs.slice(i, i + bs);
    const data = new Float32Array(xs.length * xs[0]!.length);
    xs.forEach((x, k) => data.set(x, k * x.length));
    batches.push({ dtype: 'float32', dims: [xs.length, ...dims], data });
  }
  const t0 = performance.now();
  const features = await extractFeatures(g, node, batches, {
    batchSize: bs,
    ...(o.cache ? { cache: o.cache } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
  const extractSeconds = (performance.now() - t0) / 1000;
  const X = o.train.map((i) => features[i]!);
  const heads: MultiTaskResult['heads'] = [];
  for (const t of tasks) {
    const th = performance.now();
    const cv = await fitCV(
      X,
      o.train.map((i) => t.labels[i]!),
      { numClasses: classCount(t.labels), seed: o.seed ?? 0 },
    );
    heads.push({ task: t.name, head: cv.model, l2: cv.l2, seconds: (performance.now() - th) / 1000 });
  }
  return { node, features, heads, extractSeconds };
}

/**
 * One ONNX graph: the backbone cut at `node` (flattened), then per task a Gemm (standardization
 * folded into the weights, as in exportFeatureClassifier) and a Softmax, output `probabilities_<task>`.
 */
export function exportMultiTask(
  model: Graph,
  node: string,
  heads: { task: string; head: LogisticRegression }[],
): Graph {
  const g = makeBatchDynamic(model).cutBefore([node]);
  const b = new Builder(g, 'heads/');
  const flat = b.op('Flatten', [node], { axis: A.i(1) }, 'features');
  g.outputs = [];
  for (const { task, head } of heads) {
    const K = head.numClasses,
      D = head.dim;
    const { weight: W, bias: C } = head.folded();
    const logits = b.op(
      'Gemm',
      [
        flat,
        b.constant({ dtype: 'float32', dims: [K, D], data: W }, `${task}.weight`),
        b.constant({ dtype: 'float32', dims: [K], data: C }, `${task}.bias`),
      ],
      { transB: A.i(1) },
      `${task}_logits`,
    );
    const out = `probabilities_${task}`;
    if (g.allNames().has(out)) throw new GraftError(`the backbone already has a value named '${out}'`);
    g.nodes.push({
      name: g.uniqueName(`heads/${task}_softmax`),
      opType: 'Softmax',
      domain: '',
      inputs: [logits],
      outputs: [out],
      attrs: { axis: A.i(1) },
    });
    g.outputs.push({ name: out, dtype: 'float32', shape: ['batch', K] });
  }
  g.name = `${model.name} + ${heads.length} heads`;
  g.metadata = {
    ...model.metadata,
    'graft.feature_node': node,
    'graft.tasks': JSON.stringify(heads.map((h) => ({ task: h.task, classes: h.head.numClasses }))),
  };
  return g;
}
