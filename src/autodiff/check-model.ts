/**
 * What `graft check` and `graft grad` do, as library functions: which operators of a model have
 * gradient rules, a finite-difference check of a sample of parameters, and the gradient of every
 * trainable parameter for a given feed.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { RULES, NON_DIFFERENTIABLE } from './rules/index.js';
import {
  gradCheck,
  weightedSumGradGraph,
  probeOutputs,
  type GradCheckResult,
  type ProbeOutputs,
} from './grad-graph.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { probeShapes, concreteShapes, exampleFeeds } from './shapes.js';
import { gradientPath } from './backward.js';
import { candidateParams, compileTraining } from '../train/training-graph.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { numel } from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';

export type OpStatus = 'gradient rule' | 'no gradient needed' | 'MISSING';

export interface ModelCheck {
  ops: { op: string; count: number; status: OpStatus }[];
  missing: string[];
  /** The outputs the probe loss of the finite-difference check uses (differentiable float outputs), and those it skips. */
  outputs: ProbeOutputs;
  parameters: number;
  parameterValues: number;
  gradcheck?: GradCheckResult;
  /** Precision the finite-difference check ran in (in float64, gradcheck.float32Ops name any operator run in float32). */
  precision?: 'float64' | 'float32';
}

/** The relative error at which `graft check` reports a gradient as wrong, by precision. */
export function gradcheckTolerance(precision: 'float64' | 'float32', float32Ops: string[] = []): number {
  return precision === 'float64' && float32Ops.length === 0 ? 1e-3 : 2e-2;
}

export function opStatus(op: string): OpStatus {
  return NON_DIFFERENTIABLE.has(op) ? 'no gradient needed' : op in RULES ? 'gradient rule' : 'MISSING';
}

export interface CheckOptions extends RuntimeOptions {
  /** Parameters sampled for the finite-difference check (default 4; 0 skips it). */
  params?: number;
  /** Elements sampled per parameter (default 6). */
  samples?: number;
  seed?: number;
  /** Values for the data inputs (default: random example inputs). */
  feeds?: Feeds;
  /** Values to differentiate (default: the model's trainable parameters); data inputs allowed. */
  wrt?: string[];
}

/**
 * Operator types that lie on a path from a parameter to an output: only those need gradient rules
 * (integer and shape computations, e.g. position ids or attention masks, do not). Found by probing.
 */
async function differentiatedOps(
  g: Graph,
  params: string[],
  o: CheckOptions,
): Promise<{ ops: Set<string>; outputs: ProbeOutputs }> {
  const shapes = await probeShapes(g, { ...o, feeds: o.feeds ? [o.feeds, o.feeds] : undefined });
  const outputs = probeOutputs(g, shapes, params);
  const ops = new Set<string>();
  for (const out of outputs.used) for (const n of gradientPath(g, shapes, params, out.name).onPath) ops.add(n.opType);
  return { ops, outputs };
}

export async function checkModel(model: Graph, o: CheckOptions = {}): Promise<ModelCheck> {
  const g = upgradeOpset(model);
  const params = o.wrt ?? candidateParams(g);
  const { ops: onPath, outputs } = await differentiatedOps(g, params, o);
  const status = (op: string): OpStatus => {
    const s = opStatus(op);
    return s === 'MISSING' && !onPath.has(op) ? 'no gradient needed' : s;
  };
  const ops = [...g.opCounts()]
    .map(([op, count]) => ({ op, count, status: status(op) }))
    .sort((a, b) => b.count - a.count);
  const missing = ops.filter((x) => x.status === 'MISSING').map((x) => x.op);
  const result: ModelCheck = {
    ops,
    missing,
    outputs,
    parameters: params.length,
    parameterValues: params.reduce((s, p) => s + numel((g.initializers.get(p) ?? o.feeds?.[p])?.dims ?? []), 0),
  };
  const k = Math.min(o.params ?? 4, params.length);
  if (missing.length === 0 && k > 0 && outputs.used.length > 0) {
    // spread the sample over the depth of the network: first, last, and evenly between
    const pick = [
      ...new Set(
        Array.from({ length: k }, (_, i) => params[Math.round((i * (params.length - 1)) / Math.max(1, k - 1))]!),
      ),
    ];
    // float64 first (exact enough to expose any wrong rule; operators without double kernels run in
    // float32 inside it); all float32 where the float64 graph does not load at all.
    const go = { ...o, wrt: pick, samples: o.samples ?? 6 };
    try {
      result.gradcheck = await gradCheck(g, { ...go, float64: true });
      result.precision = 'float64';
    } catch (e) {
      if (!(e instanceof GraftError) || !/could not load|Could not find an implementation/.test(e.message)) throw e;
      result.gradcheck = await gradCheck(g, go);
      result.precision = 'float32';
    }
  }
  return result;
}

export type GradLoss = 'weighted-sum' | 'cross-entropy';

/** Check feeds against the model's declared inputs: names, dtypes and fixed dims. */
export function validateFeeds(g: Graph, feeds: Feeds, extra: string[] = []): void {
  for (const v of g.dataInputs()) {
    const t = feeds[v.name];
    if (!t)
      throw new GraftError(
        `the feed has no tensor '${v.name}' (the model's inputs: ${g
          .dataInputs()
          .map((i) => i.name)
          .join(', ')})`,
      );
    if (v.dtype && t.dtype !== v.dtype)
      throw new GraftError(`feed '${v.name}' is ${t.dtype}, the model expects ${v.dtype}`);
    if (v.shape) {
      const bad =
        v.shape.length !== t.dims.length || v.shape.some((d, i) => typeof d === 'number' && d > 0 && d !== t.dims[i]);
      if (bad)
        throw new GraftError(
          `feed '${v.name}' has shape [${t.dims}], the model expects [${v.shape.map((d) => d ?? '?')}]`,
        );
    }
  }
  for (const e of extra) if (!feeds[e]) throw new GraftError(`the feed has no tensor '${e}'`);
}

/**
 * Gradients of every trainable parameter. weighted-sum: L = Σ(first output · R) with R from the feed;
 * cross-entropy: mean softmax cross-entropy of the first output against the feed's int64 `labels`.
 */
export async function modelGradients(
  model: Graph,
  feeds: Feeds,
  loss: GradLoss,
  o: RuntimeOptions = {},
): Promise<{ loss: number; grads: Map<string, Tensor>; outputs: ProbeOutputs }> {
  const g = upgradeOpset(model);
  const params = candidateParams(g);
  const out = new Map<string, Tensor>();
  // R:<output> feeds name the outputs of a weighted sum; otherwise the first differentiable float output
  const named = Object.keys(feeds)
    .filter((k) => k.startsWith('R:'))
    .map((k) => k.slice(2));
  validateFeeds(g, feeds, loss === 'cross-entropy' ? ['labels'] : named.length ? [] : ['R']);
  const modelFeeds: Feeds = {};
  for (const v of g.dataInputs()) modelFeeds[v.name] = feeds[v.name]!;
  const probe = await differentiableOutputs(g, params, modelFeeds, o);
  for (const n of named)
    if (!g.outputs.some((x) => x.name === n)) throw new GraftError(`feed 'R:${n}' names no output of the model`);
  const used = named.length ? named : probe.used.slice(0, 1).map((u) => u.name);
  if (used.length === 0)
    throw new GraftError(
      `no output is a floating-point function of the parameters: ${probe.skipped.map((s) => `'${s.name}' (${s.dtype}): ${s.reason}`).join('; ')}`,
    );
  const outputs: ProbeOutputs = {
    used: probe.used.filter((u) => used.includes(u.name)),
    skipped: [
      ...probe.skipped,
      ...probe.used
        .filter((u) => !used.includes(u.name))
        .map((u) => ({ ...u, reason: named.length ? 'no R: feed names it' : 'not the first differentiable output' })),
    ],
  };
  if (loss === 'weighted-sum') {
    const gg = await weightedSumGradGraph(g, params, modelFeeds, used, o);
    const s = await Session.fromGraph(gg.graph, o, `${g.name} (gradient)`);
    const all: Feeds = { ...modelFeeds };
    for (const [name, r] of gg.rNames) all[r] = feeds[named.length ? `R:${name}` : 'R']!;
    for (const p of params) all[p] = g.initializers.get(p)!;
    const res = await s.run(all);
    await s.release();
    for (const p of params) {
      const gname = gg.grads.get(p);
      const t = g.initializers.get(p)!;
      out.set(p, gname ? res[gname]! : { dtype: 'float32', dims: t.dims, data: new Float32Array(numel(t.dims)) });
    }
    return { loss: Number(res[gg.loss]!.data[0]), grads: out, outputs };
  }
  if (feeds['labels']!.dtype !== 'int64')
    throw new GraftError(`feed 'labels' must be int64, got ${feeds['labels']!.dtype}`);
  const tg = await compileTraining(g, { loss: { kind: 'cross-entropy' }, runtime: o, output: used[0]! });
  const s = await Session.fromGraph(tg.graph, o, `${g.name} (gradient)`);
  const all: Feeds = { [tg.target]: feeds['labels']! };
  for (const k of tg.dataInputs) all[k] = feeds[k]!;
  for (const [p, t] of tg.initial) all[p] = t;
  const res = await s.run(all);
  await s.release();
  for (const [p, gname] of tg.grads) out.set(p, res[gname]!);
  return { loss: Number(res[tg.loss]!.data[0]), grads: out, outputs };
}

/** Which outputs of g a probe loss over `wrt` can use, found by one forward run on the feeds. */
export async function differentiableOutputs(
  g: Graph,
  wrt: string[],
  feeds: Feeds = exampleFeeds(g),
  o: RuntimeOptions = {},
): Promise<ProbeOutputs> {
  return probeOutputs(g, await concreteShapes(g, feeds, o), wrt);
}
