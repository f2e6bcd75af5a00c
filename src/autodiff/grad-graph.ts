/**
 * Graph-level entry points of the autodiff: turn initializers into inputs, attach a probe loss, build a
 * graph that outputs the loss and the gradients, and check gradients against finite differences.
 */
import { Graph } from '../graph/graph.js';
import { Builder } from '../graph/builder.js';
import { type Tensor, isFloat, numel } from '../graph/tensor.js';
import { buildBackward } from './backward.js';
import { toFloat64, FLOAT32_ONLY } from '../graph/rewrites.js';
import { probeShapes, exampleFeeds, concreteShapes, type ShapeMap } from './shapes.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

/** Move the named initializers to graph inputs, so each run can feed new values. Returns their old values. */
export function promoteToInputs(g: Graph, names: string[]): Map<string, Tensor> {
  const values = new Map<string, Tensor>();
  for (const n of names) {
    const t = g.initializers.get(n);
    if (!t) {
      if (g.inputs.some((i) => i.name === n)) continue;
      throw new GraftError(`'${n}' is not an initializer of the graph`);
    }
    values.set(n, t);
    g.initializers.delete(n);
    const existing = g.inputs.find((i) => i.name === n);
    if (existing) { existing.dtype = t.dtype; existing.shape = [...t.dims]; }
    else g.inputs.push({ name: n, dtype: t.dtype, shape: [...t.dims] });
  }
  return values;
}

/** Float parameters of the graph (initializers of a float type with more than one element or named like weights). */
export function floatParameters(g: Graph): string[] {
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  return [...g.initializers].filter(([k, t]) => isFloat(t.dtype) && t.dtype === 'float32' && used.has(k) && numel(t.dims) > 0).map(([k]) => k);
}

export interface GradGraph {
  graph: Graph;
  loss: string;
  grads: Map<string, string | null>;
  shapes: ShapeMap;
}

/**
 * Add the weighted-sum probe loss L = Σ_k Σ (Y_k · R_k) over the given outputs (each R_k a new input
 * named `R` for one output, `R:<output>` for several) and differentiate it.
 */
export async function weightedSumGradGraph(
  src: Graph, wrt: string[], feeds: [Feeds, Feeds] | Feeds, outputs?: string[], opts: RuntimeOptions = {},
): Promise<GradGraph & { rNames: Map<string, string> }> {
  const g = src.clone();
  const promoted = promoteToInputs(g, wrt.filter((w) => g.initializers.has(w)));
  const outs = outputs ?? g.outputs.map((o) => o.name);
  const b = new Builder(g, 'loss/');
  const rNames = new Map<string, string>();
  const terms: string[] = [];
  for (const o of outs) {
    const r = outs.length === 1 ? 'R' : `R:${o}`;
    if (g.allNames().has(r)) throw new GraftError(`the graph already has a value named '${r}'`);
    rNames.set(o, r);
    terms.push(b.op('ReduceSum', [b.mul(o, r)], { keepdims: { type: 'int', value: 0 } }));
  }
  const loss = b.sum(terms);
  g.outputs = [{ name: loss, dtype: 'float32', shape: [] }];
  const [fa, fb] = Array.isArray(feeds) ? feeds : [feeds, feeds];
  // The R inputs take the outputs' shapes: find those by running the forward graph on each feed set.
  const rng = new Rng(7);
  const withR = async (f: Feeds): Promise<Feeds> => {
    const out: Feeds = { ...Object.fromEntries(promoted), ...f };
    const concrete = await concreteShapes(src, pickInputs(src, out), opts);
    for (const [o, r] of rNames) {
      const dims = concrete.get(o)!.dims;
      out[r] = f[r] ?? { dtype: 'float32', dims, data: Float32Array.from({ length: numel(dims) }, () => rng.normal()) };
    }
    return out;
  };
  const fa2 = await withR(fa);
  const fb2 = fa === fb ? fa2 : await withR(fb);
  for (const [, r] of rNames) {
    const [da, db] = [fa2[r]!.dims, fb2[r]!.dims];
    g.inputs.push({ name: r, dtype: 'float32', shape: da.map((d, i) => (db[i] === d ? d : `${r}_dim${i}`)) });
  }
  const shapes = await probeShapes(g, { ...opts, feeds: [fa2, fb2] });
  const { grads } = buildBackward(g, shapes, { loss, wrt });
  for (const [, gname] of grads) if (gname) g.outputs.push({ name: gname });
  return { graph: g, loss, grads, shapes, rNames };
}

export interface GradCheckOptions extends RuntimeOptions {
  /** Values to check (default: every float initializer and float data input). */
  wrt?: string[];
  feeds?: Feeds;
  /** Elements checked per tensor (default 12). */
  samples?: number;
  /**
   * Finite-difference step(s), each scaled by max(1, |x|) (default 1e-2). With several steps each
   * element keeps the estimate closest to the analytic value: a large step suffers from kinks
   * (ReLU, max-pool switching), a small one from float32 rounding; a wrong gradient fails at all.
   */
  eps?: number | number[];
  seed?: number;
  /** Compute in float64 (default false): removes rounding noise where onnxruntime has double kernels. */
  float64?: boolean;
}

export interface GradCheckEntry { name: string; checked: number; maxRelError: number; maxAbsGrad: number }
export interface GradCheckResult { worst: number; entries: GradCheckEntry[] }

/**
 * Compare the analytic gradient of L = Σ(Y · R) with central finite differences, on a sample of
 * elements of each tensor. The relative error of an element is |a − n| / max(|a|, |n|, 0.1·max|n|, 1e-4).
 */
export async function gradCheck(g: Graph, opts: GradCheckOptions = {}): Promise<GradCheckResult> {
  const feeds = opts.feeds ?? exampleFeeds(g, 2, opts.seed ?? 1);
  const floatInputs = g.dataInputs().filter((v) => v.dtype && isFloat(v.dtype)).map((v) => v.name);
  const wrt = opts.wrt ?? [...floatInputs, ...floatParameters(g)];
  const built = await weightedSumGradGraph(g, wrt, feeds, undefined, opts);
  const { loss, grads, rNames } = built;
  const graph = opts.float64 ? toFloat64(built.graph) : built.graph;
  const cast = (t: Tensor): Tensor =>
    opts.float64 && t.dtype === 'float32' ? { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) } : t;
  // Feeds for the gradient graph: data, promoted parameters, and the R weights (fixed once).
  // R must not share a seed with example data made from the same seed (R = x hides errors).
  const rng = new Rng((opts.seed ?? 3) + 7919);
  const base: Feeds = { ...feeds };
  for (const w of wrt) if (!base[w]) base[w] = cloneTensor(g.initializers.get(w)!);
  const gradSession = await Session.fromGraph(graph, opts, `${g.name} (gradient)`);
  // R: match the output shapes from one forward run.
  const fwd = await Session.fromGraph(g, opts, g.name);
  const outs = await fwd.run(pick(base, fwd.inputNames));
  await fwd.release();
  for (const [o, r] of rNames) {
    const y = outs[o]!;
    base[r] = { dtype: 'float32', dims: y.dims, data: Float32Array.from({ length: numel(y.dims) }, () => rng.normal()) };
  }
  if (opts.float64) for (const k of Object.keys(base)) base[k] = cast(base[k]!);
  const res = await gradSession.run(pick(base, gradSession.inputNames));
  // Loss-only session for finite differences.
  const lossGraph = graph.clone();
  lossGraph.outputs = [{ name: loss }];
  lossGraph.prune();
  const lossSession = await Session.fromGraph(lossGraph, { ...opts, optimization: 'disabled' }, `${g.name} (loss)`);
  const evalLoss = async (f: Feeds) => Number((await lossSession.run(pick(f, lossSession.inputNames)))[loss]!.data[0]);
  const entries: GradCheckEntry[] = [];
  const samples = opts.samples ?? 12;
  // float32 rounding of the loss limits what a difference quotient can resolve: |L|·2⁻²³ / h.
  const l0 = Math.abs(await evalLoss(base));
  const steps = Array.isArray(opts.eps) ? opts.eps : [opts.eps ?? 1e-2];
  // unit roundoff of the arithmetic: float32 also in float64 mode when some operators (Conv) run in float32
  const unit = opts.float64 && !g.nodes.some((n) => FLOAT32_ONLY.has(n.opType)) ? 2 ** -52 : 2 ** -23;
  for (const w of wrt) {
    const gname = grads.get(w);
    const t = base[w]!;
    const n = numel(t.dims);
    const analytic = gname ? (res[gname]!.data as Float32Array | Float64Array) : new Float64Array(n);
    if (analytic.length !== n) throw new GraftError(`gradient of '${w}' has ${analytic.length} elements, expected ${n}`);
    const idx = n <= samples ? [...Array(n).keys()] : Array.from({ length: samples }, () => rng.int(n));
    const numeric: number[] = [];
    for (const i of idx) {
      const data = (t.data as Float32Array).slice();
      const x0 = data[i]!;
      let best = NaN;
      for (const eps of steps) {
        const h = eps * Math.max(1, Math.abs(x0));
        data[i] = x0 + h;
        const lp = await evalLoss({ ...base, [w]: { ...t, data } });
        data[i] = x0 - h;
        const lm = await evalLoss({ ...base, [w]: { ...t, data } });
        data[i] = x0;
        const est = (lp - lm) / (2 * h);
        if (Number.isNaN(best) || Math.abs(est - analytic[i]!) < Math.abs(best - analytic[i]!)) best = est;
      }
      numeric.push(best);
    }
    const maxN = Math.max(...numeric.map(Math.abs), ...idx.map((i) => Math.abs(analytic[i]!)));
    let worst = 0;
    idx.forEach((i, k) => {
      const a = analytic[i]!;
      const nu = numeric[k]!;
      const h = Math.min(...steps) * Math.max(1, Math.abs((t.data as Float32Array)[i]!));
      const resolution = (10 * l0 * unit) / h;
      const err = Math.abs(a - nu) / Math.max(Math.abs(a), Math.abs(nu), 0.1 * maxN, resolution, 1e-6);
      worst = Math.max(worst, err);
    });
    entries.push({ name: w, checked: idx.length, maxRelError: worst, maxAbsGrad: maxN });
  }
  await gradSession.release();
  await lossSession.release();
  return { worst: Math.max(0, ...entries.map((e) => e.maxRelError)), entries };
}

/** The feeds a graph takes as data inputs (its initializers keep their values). */
function pickInputs(g: Graph, f: Feeds): Feeds {
  const o: Feeds = {};
  for (const v of g.inputs) if (f[v.name] && !g.initializers.has(v.name)) o[v.name] = f[v.name]!;
  return o;
}

function pick(f: Feeds, names: readonly string[]): Feeds {
  const o: Feeds = {};
  for (const n of names) if (f[n]) o[n] = f[n]!;
  return o;
}

function cloneTensor(t: Tensor): Tensor {
  return { dtype: t.dtype, dims: [...t.dims], data: (t.data as Float32Array).slice() };
}
