/**
 * From an inference graph to a training graph: choose what trains, append the loss, differentiate,
 * and expose loss, predictions and one gradient per trainable parameter as outputs. The result is
 * one ONNX graph that onnxruntime runs in a single session per step.
 */
import { Graph, type Node } from '../graph/graph.js';
import { type Tensor, numel } from '../graph/tensor.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { buildBackward, gradientPath } from '../autodiff/backward.js';
import { probeShapes, exampleFeeds, concreteShapes, type ShapeMap } from '../autodiff/shapes.js';
import { promoteToInputs } from '../autodiff/grad-graph.js';
import { addLoss, type LossSpec } from './losses.js';
import { foldFrozenBatchNorm } from './fold-bn.js';
import { Builder } from '../graph/builder.js';
import type { Feeds, RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import { assertTrainableWeights } from '../formats/hf-folder.js';

/** What trains: everything, parameters whose names match, everything after a cut value/node, or a list. */
export type TrainableSpec = 'all' | { pattern: string | RegExp } | { after: string } | { names: string[] };

export interface TrainingOptions {
  trainable?: TrainableSpec;
  loss?: LossSpec;
  /** The model output the loss applies to (default: the first output). */
  output?: string;
  /** 'frozen' (default): BatchNormalization uses its running statistics; 'batch': batch statistics, running stats updated. */
  batchNorm?: 'frozen' | 'batch';
  /** BatchNormalization momentum for running statistics in 'batch' mode (ONNX convention: new = m·old + (1−m)·batch). */
  bnMomentum?: number;
  /** With frozen BatchNorm, fold each Conv → BatchNormalization into one Conv of rescaled weights (default true; see fold-bn.ts). */
  foldBatchNorm?: boolean;
  runtime?: RuntimeOptions;
}

export interface TrainingGraph {
  graph: Graph;
  /** Trainable parameters: inputs of the training graph, each with a gradient output. */
  params: string[];
  grads: Map<string, string>;
  /** Initial values of the trainable parameters (taken from the model). */
  initial: Map<string, Tensor>;
  /** Non-trained state that the step updates (BatchNorm running statistics): input name → output name. */
  state: Map<string, string>;
  stateInitial: Map<string, Tensor>;
  loss: string;
  output: string;
  /** The target input of a built-in loss ('' for a custom loss: see `targets`). */
  target: string;
  /** Every input the loss reads beside the model's (a built-in loss: [target]). */
  targets: string[];
  /** Extra values each step reports (a custom loss's `outputs`). */
  extraOutputs: string[];
  dataInputs: string[];
  classes: number | undefined;
  shapes: ShapeMap;
  /** The model the training graph was built from, after opset upgrade (used for export and prediction). */
  model: Graph;
}

/** Inputs of nodes that are constants/statistics, never trainable, by operator. */
const NOT_TRAINABLE_INPUTS: Record<string, number[]> = {
  BatchNormalization: [3, 4], Clip: [1, 2], Pow: [1], Dropout: [1, 2], Pad: [1, 2, 3], Resize: [1, 2, 3],
  Reshape: [1], Slice: [1, 2, 3, 4], Expand: [1], Tile: [1], OneHot: [1, 2], ConstantOfShape: [0],
};

/** Float initializers that are parameters of differentiable nodes. */
export function candidateParams(g: Graph): string[] {
  const out = new Set<string>();
  const excluded = new Set<string>();
  for (const n of g.nodes) {
    const skip = NOT_TRAINABLE_INPUTS[n.opType] ?? [];
    n.inputs.forEach((inp, i) => {
      const t = g.initializers.get(inp);
      if (!t || t.dtype !== 'float32') return;
      if (skip.includes(i)) excluded.add(inp);
      else if (numel(t.dims) >= 2 || ['Conv', 'ConvTranspose', 'Gemm', 'BatchNormalization', 'LayerNormalization', 'MatMul'].includes(n.opType))
        out.add(inp);
    });
  }
  return [...out].filter((k) => !excluded.has(k));
}

/** Nodes that depend on any of the given values (through data flow). */
function downstreamOf(g: Graph, values: Set<string>): Set<Node> {
  const reach = new Set(values);
  const nodes = new Set<Node>();
  for (const n of g.topoSort())
    if (n.inputs.some((i) => reach.has(i))) {
      nodes.add(n);
      n.outputs.forEach((o) => reach.add(o));
    }
  return nodes;
}

export function selectTrainable(g: Graph, spec: TrainableSpec = 'all'): string[] {
  const all = candidateParams(g);
  if (spec === 'all') return all;
  if ('names' in spec) {
    const set = new Set(all);
    for (const n of spec.names) if (!set.has(n)) throw new GraftError(`'${n}' is not a trainable parameter of the model`);
    return spec.names;
  }
  if ('pattern' in spec) {
    const re = typeof spec.pattern === 'string' ? userRegExp(spec.pattern, '--trainable') : spec.pattern;
    const picked = all.filter((k) => re.test(k));
    if (!picked.length) throw new GraftError(`no parameter name matches /${re.source}/ (parameters: ${all.slice(0, 8).join(', ')}${all.length > 8 ? ', …' : ''})`);
    return picked;
  }
  const node = g.nodes.find((n) => n.name === spec.after);
  const cut = new Set(node ? node.outputs : [spec.after]);
  if (!node && !g.nodes.some((n) => n.outputs.includes(spec.after)) && !g.inputs.some((i) => i.name === spec.after))
    throw new GraftError(`no node or value named '${spec.after}' to cut after`);
  const after = downstreamOf(g, cut);
  const inAfter = new Set([...after].flatMap((n) => n.inputs));
  const picked = all.filter((k) => inAfter.has(k));
  if (!picked.length) throw new GraftError(`nothing trainable after '${spec.after}'`);
  return picked;
}

export async function compileTraining(model: Graph, opts: TrainingOptions = {}): Promise<TrainingGraph> {
  assertTrainableWeights(model);
  const base = upgradeOpset(model);
  const g = base.clone();
  const output = opts.output ?? g.outputs[0]?.name;
  if (!output) throw new GraftError('the model has no outputs');
  if (!g.outputs.some((o) => o.name === output) && !g.nodes.some((n) => n.outputs.includes(output)))
    throw new GraftError(`the model has no output named '${output}'`);
  const params = [...selectTrainable(g, opts.trainable)];
  // Probe the forward model once per size to learn the output's size (classes, batch).
  const sizesA = new Map<string, number>();
  const sizesB = new Map<string, number>();
  const fa = exampleFeeds(g, 2, 1, sizesA);
  const fb = exampleFeeds(g, 3, 2, sizesB);
  const fwd = g.clone();
  fwd.outputs = [{ name: output }];
  const oa = (await concreteShapes(fwd.prune(), fa, opts.runtime)).get(output)!;
  const ob = (await concreteShapes(fwd, fb, opts.runtime)).get(output)!;
  const loss = opts.loss ?? { kind: 'cross-entropy' as const };
  const classes = loss.kind === 'cross-entropy' ? oa.dims[oa.dims.length - 1] : loss.kind === 'custom' ? ob.dims[ob.dims.length - 1] : undefined;
  if (loss.kind === 'cross-entropy' && oa.dims.length !== 2)
    throw new GraftError(`cross-entropy needs a [batch, classes] output; '${output}' has shape [${oa.dims}]`);
  const state = new Map<string, string>();
  const stateInitial = new Map<string, Tensor>();
  if (opts.batchNorm === 'batch') useBatchStatistics(g, state, stateInitial, opts.bnMomentum ?? 0.9);
  g.outputs = [];
  const batchDim = g.dataInputs()[0]?.shape?.[0];
  let lossName: string, target = '', targets: string[], extraOutputs: string[] = [], gradScale: Map<string, number> | undefined;
  let targetFeed: (o: { dims: number[] }, f: Feeds) => Feeds;
  if (loss.kind === 'custom') {
    const built = loss.build(g, output, new Builder(g, 'loss/'));
    lossName = built.loss;
    targets = built.targets;
    extraOutputs = built.outputs ?? [];
    gradScale = built.gradScale;
    for (const p of built.params ?? []) {
      if (!g.initializers.has(p)) throw new GraftError(`custom loss parameter '${p}' is not an initializer of the graph`);
      params.push(p);
    }
    // Declare the loss's inputs (dtype and rank from a probe feed) unless build did.
    const probe = loss.probeFeeds(oa.dims);
    for (const t of targets) {
      const p = probe[t];
      if (!p) throw new GraftError(`custom loss: probeFeeds gives no value for its input '${t}'`);
      if (!g.inputs.some((i) => i.name === t)) g.inputs.push({ name: t, dtype: p.dtype, shape: p.dims.map((_, i) => `${t}_${i}`) });
    }
    targetFeed = (o, f) => ({ ...f, ...loss.probeFeeds(o.dims) });
  } else {
    ({ loss: lossName, target } = addLoss(g, loss.kind === 'cross-entropy' ? logitsOf(g, output) : output, loss, classes, typeof batchDim === 'string' ? batchDim : 'batch'));
    targets = [target];
    targetFeed = (o, f) => ({
      ...f,
      [target]: loss.kind === 'mse'
        ? { dtype: 'float32', dims: o.dims, data: new Float32Array(numel(o.dims)) }
        : { dtype: 'int64', dims: [o.dims[0]!], data: new BigInt64Array(o.dims[0]!) },
    });
  }
  g.outputs = [{ name: lossName }, { name: output }, ...extraOutputs.map((name) => ({ name }))];
  if (opts.batchNorm !== 'batch' && opts.foldBatchNorm !== false)
    foldFrozenBatchNorm(g, { params, keep: [...targets, ...(gradScale?.keys() ?? [])] });
  const shapes = await probeShapes(g, { ...opts.runtime, feeds: [targetFeed(oa, fa), targetFeed(ob, fb)] });
  const initial = promoteToInputs(g, params);
  promoteToInputs(g, [...state.keys()]);
  const { onPath } = gradientPath(g, shapes, params, lossName);
  if (onPath.size === 0) throw new GraftError('the loss does not depend on any trainable parameter');
  const { grads } = buildBackward(g, shapes, { loss: lossName, wrt: params, ...(gradScale ? { gradScale } : {}) });
  const gradMap = new Map<string, string>();
  for (const p of params) {
    const gname = grads.get(p);
    if (!gname) throw new GraftError(`parameter '${p}' does not affect the loss; leave it frozen`);
    gradMap.set(p, gname);
    g.outputs.push({ name: gname });
  }
  for (const out of state.values()) g.outputs.push({ name: out });
  return {
    graph: g, params, grads: gradMap, initial, state, stateInitial, loss: lossName, output, target, targets, extraOutputs,
    dataInputs: g.dataInputs().map((v) => v.name).filter((n) => !targets.includes(n) && !initial.has(n) && !state.has(n)),
    classes, shapes, model: base,
  };
}

/**
 * The logits behind a classifier output: when the model ends in Softmax over the class axis (as many
 * exported classifiers do), cross-entropy must start from the Softmax's input, not apply it twice.
 */
export function logitsOf(g: Graph, output: string): string {
  const p = g.nodes.find((n) => n.outputs[0] === output);
  if (!p || p.opType !== 'Softmax') return output;
  const axis = p.attrs['axis']?.type === 'int' ? (p.attrs['axis'].value as number) : g.opset >= 13 ? -1 : 1;
  return axis === -1 || axis === 1 ? p.inputs[0]! : output; // outputs are [batch, classes]
}

/** A regular expression the user typed; a GraftError naming `flag` when it does not compile. */
export function userRegExp(pattern: string, flag: string): RegExp {
  try {
    return new RegExp(pattern);
  } catch (e) {
    throw new GraftError(`${flag}: '${pattern}' is not a valid regular expression (${(e as Error).message})`);
  }
}

/** Switch BatchNormalization nodes to batch statistics, exposing updated running mean/var as outputs. */
function useBatchStatistics(g: Graph, state: Map<string, string>, initial: Map<string, Tensor>, momentum: number) {
  if (g.opset < 14) g.opsets[''] = 14;
  // The node runs with momentum 0, so its outputs 1 and 2 are the batch mean and variance themselves
  // (the BatchNormalization gradient rule reuses them instead of recomputing them); the running update
  // m·old + (1−m)·batch is a few per-channel nodes here.
  const b = new Builder(g, 'bn-stats/');
  let scratch = 0;
  for (const n of g.nodes.filter((v) => v.opType === 'BatchNormalization')) {
    n.attrs['training_mode'] = { type: 'int', value: 1 };
    n.attrs['momentum'] = { type: 'float', value: 0 };
    const [mean, v] = [n.inputs[3]!, n.inputs[4]!];
    n.outputs = [n.outputs[0]!, g.uniqueName(`${mean}/batch`), g.uniqueName(`${v}/batch`)];
    for (const [i, k, o] of [[3, mean, n.outputs[1]!], [4, v, n.outputs[2]!]] as const) {
      const t = g.initializers.get(k);
      if (!t) throw new GraftError(`BatchNormalization '${n.name}': running statistic '${k}' is not a constant`);
      state.set(k, b.op('Add', [b.mul(k, b.f32(momentum)), b.mul(o, b.f32(1 - momentum))], {}, `${k}/updated`));
      initial.set(k, t);
      // onnxruntime's BatchNormalization aliases outputs 1, 2 to inputs 3, 4 (writes them in place), which
      // with momentum 0 it otherwise ignores. Feed it a buffer computed per node and per step (k times a
      // constant of its own, so no common-subexpression or constant merging can share it): the update
      // above then reads the running statistic as fed, and no initializer is ever written to.
      n.inputs[i] = b.op('Mul', [k, b.f32(-(++scratch))], {}, `${k}/scratch`);
    }
  }
}
