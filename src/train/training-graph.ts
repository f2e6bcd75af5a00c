/**
 * From an inference graph to a training graph: choose what trains, append the loss, differentiate,
 * and expose loss, predictions and one gradient per trainable parameter as outputs. The result is
 * one ONNX graph that onnxruntime runs in a single session per step.
 */
import type { Graph, Node } from '../graph/graph.js';
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
  /**
   * Give each parameter that an exporter tied to another (one initializer feeding several parameter
   * slots through Identity nodes, as torch.onnx does for equal-valued initializers) its own copy, so
   * they train independently (see untieParameters). Default false: they train as one, with a warning.
   */
  untie?: boolean;
  /** Where the tied-parameter warning goes (default: stderr, once per message per process). */
  warn?: (message: string) => void;
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
  BatchNormalization: [3, 4],
  Clip: [1, 2],
  Pow: [1],
  Dropout: [1, 2],
  Pad: [1, 2, 3],
  Resize: [1, 2, 3],
  Reshape: [1],
  Slice: [1, 2, 3, 4],
  Expand: [1],
  Tile: [1],
  OneHot: [1, 2],
  ConstantOfShape: [0],
};

/**
 * Float initializers that are parameters of differentiable nodes. An initializer read through Identity
 * nodes (an exporter's tie: see findTies) counts by the nodes that read the Identity outputs.
 */
export function candidateParams(g: Graph): string[] {
  const out = new Set<string>();
  const excluded = new Set<string>();
  const consumers = g.consumers();
  const judge = (init: string, t: Tensor, n: Node, i: number, seen: Set<Node>) => {
    if (n.opType === 'Identity' && i === 0 && !seen.has(n)) {
      seen.add(n);
      for (const c of consumers.get(n.outputs[0]!) ?? [])
        c.inputs.forEach((x, j) => {
          if (x === n.outputs[0]) judge(init, t, c, j, seen);
        });
      return;
    }
    if ((NOT_TRAINABLE_INPUTS[n.opType] ?? []).includes(i)) excluded.add(init);
    else if (
      numel(t.dims) >= 2 ||
      ['Conv', 'ConvTranspose', 'Gemm', 'BatchNormalization', 'LayerNormalization', 'MatMul'].includes(n.opType)
    )
      out.add(init);
  };
  for (const n of g.nodes)
    n.inputs.forEach((inp, i) => {
      const t = g.initializers.get(inp);
      if (t && t.dtype === 'float32') judge(inp, t, n, i, new Set());
    });
  return [...out].filter((k) => !excluded.has(k));
}

/** One initializer that an exporter shared between several parameter slots through Identity nodes. */
export interface Tie {
  initializer: string;
  /** The values it feeds: the outputs of the last Identity of each chain (and the initializer itself when a node reads it directly). */
  feeds: string[];
}

/**
 * Float initializers read through Identity nodes by more than one use: torch.onnx merges equal-valued
 * initializers of a model (the zero biases, the unit LayerNorm scales of a freshly initialized one)
 * into one initializer X and writes `Identity(X) → fc2.bias` for the others, so the layers would train
 * one shared tensor. `among` limits the search (e.g. to the trainable parameters).
 */
export function findTies(g: Graph, among?: Iterable<string>): Tie[] {
  const consumers = g.consumers();
  const outputs = new Set(g.outputs.map((o) => o.name));
  const names = among ? [...among] : [...g.initializers.keys()];
  const ties: Tie[] = [];
  for (const x of names) {
    const t = g.initializers.get(x);
    if (!t || t.dtype !== 'float32') continue;
    const feeds: string[] = [];
    let viaIdentity = false;
    const walk = (v: string, depth: number) => {
      const cs = consumers.get(v) ?? [];
      const ids = cs.filter((c) => c.opType === 'Identity' && c.inputs[0] === v);
      if (cs.length > ids.length || (outputs.has(v) && v !== x)) feeds.push(v);
      if (depth > 64) return; // a chain this long is no exporter's tie
      for (const c of ids) {
        viaIdentity = true;
        walk(c.outputs[0]!, depth + 1);
      }
    };
    walk(x, 0);
    if (viaIdentity && feeds.length >= 2) ties.push({ initializer: x, feeds: [...new Set(feeds)] });
  }
  return ties;
}

/**
 * A copy of the graph where every tied initializer (findTies; `among` limits which) gives each value it
 * feeds an initializer of its own (named after that value: torch's parameter name), and the Identity
 * nodes that shared it are gone. A tied value that is also a graph output keeps its Identity.
 */
export function untieParameters(model: Graph, among?: Iterable<string>): { graph: Graph; ties: Tie[] } {
  const ties = findTies(model, among);
  if (!ties.length) return { graph: model, ties };
  const g = model.clone();
  const outputs = new Set(g.outputs.map((o) => o.name));
  const done: Tie[] = [];
  for (const tie of ties) {
    const x = g.initializers.get(tie.initializer)!;
    const untied = tie.feeds.filter((f) => f !== tie.initializer && !outputs.has(f) && !g.initializers.has(f));
    if (!untied.length) continue;
    for (const f of untied) {
      g.initializers.set(f, { dtype: 'float32', dims: [...x.dims], data: Float32Array.from(x.data as Float32Array) });
      g.nodes = g.nodes.filter((n) => !(n.opType === 'Identity' && n.outputs[0] === f));
      // IR < 4 models list initializers among the inputs too
      const asInput = g.inputs.find((i) => i.name === tie.initializer);
      if (asInput) g.inputs.push({ ...asInput, name: f });
    }
    // Identity nodes left without readers (the middle of a chain), then the initializer if nothing reads it
    for (let changed = true; changed; ) {
      const used = new Set([...g.nodes.flatMap((n) => n.inputs), ...outputs]);
      const before = g.nodes.length;
      g.nodes = g.nodes.filter((n) => n.opType !== 'Identity' || used.has(n.outputs[0]!));
      changed = g.nodes.length !== before;
    }
    if (!g.nodes.some((n) => n.inputs.includes(tie.initializer)) && !outputs.has(tie.initializer)) {
      g.initializers.delete(tie.initializer);
      g.inputs = g.inputs.filter((i) => i.name !== tie.initializer);
    }
    done.push({
      initializer: tie.initializer,
      feeds: untied.concat(tie.feeds.includes(tie.initializer) ? [tie.initializer] : []),
    });
  }
  return { graph: g, ties: done };
}

/** A trainable spec after untieParameters: a listed tied initializer stands for every copy it became. */
export function untieSpec(spec: TrainableSpec | undefined, ties: Tie[]): TrainableSpec | undefined {
  if (!spec || spec === 'all' || !('names' in spec) || !ties.length) return spec;
  const by = new Map(ties.map((t) => [t.initializer, t.feeds]));
  return { names: [...new Set(spec.names.flatMap((n) => by.get(n) ?? [n]))] };
}

/** The one warning line for tied trainable parameters. */
export function tieWarning(ties: Tie[]): string {
  const list = ties.map((t) => `'${t.initializer}' feeds ${t.feeds.join(', ')}`).join('; ');
  return `tied parameters: ${list} (through Identity nodes: the exporter merged equal-valued initializers), so they train as one tensor; --untie (library: untie: true) gives each its own copy`;
}

const warned = new Set<string>();
const stderrWarn = (m: string) => {
  if (warned.has(m)) return;
  warned.add(m);
  process.stderr.write(`graft: warning: ${m}\n`);
};

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
    for (const n of spec.names)
      if (!set.has(n)) throw new GraftError(`'${n}' is not a trainable parameter of the model`);
    return spec.names;
  }
  if ('pattern' in spec) {
    const re = typeof spec.pattern === 'string' ? userRegExp(spec.pattern, '--trainable') : spec.pattern;
    const picked = all.filter((k) => re.test(k));
    if (!picked.length)
      throw new GraftError(
        `no parameter name matches /${re.source}/ (parameters: ${all.slice(0, 8).join(', ')}${all.length > 8 ? ', …' : ''})`,
      );
    return picked;
  }
  const node = g.nodes.find((n) => n.name === spec.after);
  const cut = new Set(node ? node.outputs : [spec.after]);
  if (!node && !g.nodes.some((n) => n.outputs.includes(spec.after)) && !g.inputs.some((i) => i.name === spec.after))
    throw new GraftError(`no node or value named '${spec.after}' to cut after`);
  const after = downstreamOf(g, cut);
  const inAfter = new Set([...after].flatMap((n) => n.inputs));
  // a parameter read through Identity nodes (an exporter's tie) is in the part after the cut when its Identity output is
  for (let grew = true; grew; ) {
    grew = false;
    for (const n of g.nodes)
      if (n.opType === 'Identity' && inAfter.has(n.outputs[0]!) && !inAfter.has(n.inputs[0]!)) {
        inAfter.add(n.inputs[0]!);
        grew = true;
      }
  }
  const picked = all.filter((k) => inAfter.has(k));
  if (!picked.length) throw new GraftError(`nothing trainable after '${spec.after}'`);
  return picked;
}

export async function compileTraining(model: Graph, opts: TrainingOptions = {}): Promise<TrainingGraph> {
  assertTrainableWeights(model);
  let base = upgradeOpset(model);
  let trainable = opts.trainable;
  if (opts.untie) {
    const u = untieParameters(base, candidateParams(base));
    base = u.graph;
    trainable = untieSpec(trainable, u.ties);
  }
  const g = base.clone();
  const output = opts.output ?? g.outputs[0]?.name;
  if (!output) throw new GraftError('the model has no outputs');
  if (!g.outputs.some((o) => o.name === output) && !g.nodes.some((n) => n.outputs.includes(output)))
    throw new GraftError(`the model has no output named '${output}'`);
  const params = [...selectTrainable(g, trainable)];
  if (!opts.untie) {
    const ties = findTies(g, params);
    if (ties.length) (opts.warn ?? stderrWarn)(tieWarning(ties));
  }
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
  const classes =
    loss.kind === 'cross-entropy'
      ? oa.dims[oa.dims.length - 1]
      : loss.kind === 'custom'
        ? ob.dims[ob.dims.length - 1]
        : undefined;
  if (loss.kind === 'cross-entropy' && oa.dims.length !== 2)
    throw new GraftError(`cross-entropy needs a [batch, classes] output; '${output}' has shape [${oa.dims}]`);
  const state = new Map<string, string>();
  const stateInitial = new Map<string, Tensor>();
  if (opts.batchNorm === 'batch') useBatchStatistics(g, state, stateInitial, opts.bnMomentum ?? 0.9);
  g.outputs = [];
  const batchDim = g.dataInputs()[0]?.shape?.[0];
  let lossName: string,
    target = '',
    targets: string[],
    extraOutputs: string[] = [],
    gradScale: Map<string, number> | undefined;
  let targetFeed: (o: { dims: number[] }, f: Feeds) => Feeds;
  if (loss.kind === 'custom') {
    const built = loss.build(g, output, new Builder(g, 'loss/'));
    lossName = built.loss;
    targets = built.targets;
    extraOutputs = built.outputs ?? [];
    gradScale = built.gradScale;
    for (const p of built.params ?? []) {
      if (!g.initializers.has(p))
        throw new GraftError(`custom loss parameter '${p}' is not an initializer of the graph`);
      params.push(p);
    }
    // Declare the loss's inputs (dtype and rank from a probe feed) unless build did.
    const probe = loss.probeFeeds(oa.dims);
    for (const t of targets) {
      const p = probe[t];
      if (!p) throw new GraftError(`custom loss: probeFeeds gives no value for its input '${t}'`);
      if (!g.inputs.some((i) => i.name === t))
        g.inputs.push({ name: t, dtype: p.dtype, shape: p.dims.map((_, i) => `${t}_${i}`) });
    }
    targetFeed = (o, f) => ({ ...f, ...loss.probeFeeds(o.dims) });
  } else {
    ({ loss: lossName, target } = addLoss(
      g,
      loss.kind === 'cross-entropy' ? logitsOf(g, output) : output,
      loss,
      classes,
      typeof batchDim === 'string' ? batchDim : 'batch',
    ));
    targets = [target];
    targetFeed = (o, f) => ({
      ...f,
      [target]:
        loss.kind === 'mse'
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
    graph: g,
    params,
    grads: gradMap,
    initial,
    state,
    stateInitial,
    loss: lossName,
    output,
    target,
    targets,
    extraOutputs,
    dataInputs: g
      .dataInputs()
      .map((v) => v.name)
      .filter((n) => !targets.includes(n) && !initial.has(n) && !state.has(n)),
    classes,
    shapes,
    model: base,
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
    for (const [i, k, o] of [
      [3, mean, n.outputs[1]!],
      [4, v, n.outputs[2]!],
    ] as const) {
      const t = g.initializers.get(k);
      if (!t) throw new GraftError(`BatchNormalization '${n.name}': running statistic '${k}' is not a constant`);
      state.set(k, b.op('Add', [b.mul(k, b.f32(momentum)), b.mul(o, b.f32(1 - momentum))], {}, `${k}/updated`));
      initial.set(k, t);
      // onnxruntime's BatchNormalization aliases outputs 1, 2 to inputs 3, 4 (writes them in place), which
      // with momentum 0 it otherwise ignores. Feed it a buffer computed per node and per step (k times a
      // constant of its own, so no common-subexpression or constant merging can share it): the update
      // above then reads the running statistic as fed, and no initializer is ever written to.
      n.inputs[i] = b.op('Mul', [k, b.f32(-++scratch)], {}, `${k}/scratch`);
    }
  }
}
