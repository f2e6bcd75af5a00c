/**
 * Graph-level entry points of the autodiff: turn initializers into inputs, attach a probe loss, build a
 * graph that outputs the loss and the gradients, and check gradients against finite differences.
 */
import type { Graph, Node } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import { type Tensor, type DType, isFloat, numel, toNumbers, ONNX_DTYPE } from '../graph/tensor.js';
import { buildBackward, gradientPath } from './backward.js';
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
    if (existing) {
      existing.dtype = t.dtype;
      existing.shape = [...t.dims];
    } else g.inputs.push({ name: n, dtype: t.dtype, shape: [...t.dims] });
  }
  return values;
}

/** Float parameters of the graph (initializers of a float type with more than one element or named like weights). */
export function floatParameters(g: Graph): string[] {
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  return [...g.initializers]
    .filter(([k, t]) => isFloat(t.dtype) && t.dtype === 'float32' && used.has(k) && numel(t.dims) > 0)
    .map(([k]) => k);
}

/** An output left out of a probe loss, and why. */
export interface SkippedOutput {
  name: string;
  dtype: DType | 'unknown';
  reason: string;
}
/** Which outputs a probe loss Σ_k Σ(Y_k · R_k) uses, and which it leaves out. */
export interface ProbeOutputs {
  used: { name: string; dtype: DType }[];
  skipped: SkippedOutput[];
}

/**
 * The outputs a probe loss can use: floating-point outputs (any precision) that depend on one of
 * `wrt` through differentiable operators. Integer, boolean and string outputs (argmax ids, masks,
 * pooling indices) are skipped, and so are float outputs that none of `wrt` reaches.
 */
export function probeOutputs(
  g: Graph,
  shapes: ShapeMap,
  wrt: string[],
  names = g.outputs.map((o) => o.name),
): ProbeOutputs {
  const out: ProbeOutputs = { used: [], skipped: [] };
  for (const name of names) {
    const dtype = shapes.get(name)?.dtype ?? g.outputs.find((o) => o.name === name)?.dtype;
    if (!dtype) out.skipped.push({ name, dtype: 'unknown', reason: 'its type is unknown' });
    else if (!isFloat(dtype))
      out.skipped.push({
        name,
        dtype,
        reason: dtype === 'string' ? 'string values' : dtype === 'bool' ? 'boolean values' : 'integer values',
      });
    else if (!gradientPath(g, shapes, wrt, name).requires.has(name))
      out.skipped.push({ name, dtype, reason: 'no differentiated value reaches it' });
    else out.used.push({ name, dtype });
  }
  return out;
}

export interface GradGraph {
  graph: Graph;
  loss: string;
  grads: Map<string, string | null>;
  shapes: ShapeMap;
}

/**
 * Add the weighted-sum probe loss L = Σ_k Σ (Y_k · R_k) over the given outputs (each R_k a new float32
 * input named `R` for one output, `R:<output>` for several) and differentiate it. Without `outputs`
 * the loss takes every differentiable floating-point output (see probeOutputs), each cast to the
 * probe's precision first (float32; float64 once the graph goes through toFloat64).
 */
export async function weightedSumGradGraph(
  src: Graph,
  wrt: string[],
  feeds: [Feeds, Feeds] | Feeds,
  outputs?: string[],
  opts: RuntimeOptions = {},
): Promise<GradGraph & { rNames: Map<string, string>; probe: ProbeOutputs }> {
  const [fa, fb] = Array.isArray(feeds) ? feeds : [feeds, feeds];
  const values = new Map<string, Tensor>();
  for (const w of wrt) {
    const t = src.initializers.get(w);
    if (t) values.set(w, t);
  }
  // The R inputs take the outputs' shapes, and the probe the outputs' types: run the forward graph.
  const withValues = (f: Feeds): Feeds => ({ ...Object.fromEntries(values), ...f });
  const concreteA = await concreteShapes(src, pickInputs(src, withValues(fa)), opts);
  const concreteB = fa === fb ? concreteA : await concreteShapes(src, pickInputs(src, withValues(fb)), opts);
  const probe = probeOutputs(src, concreteA, wrt, outputs);
  if (outputs)
    for (const s of probe.skipped) throw new GraftError(`output '${s.name}' cannot carry a gradient: ${s.reason}`);
  if (probe.used.length === 0) {
    const why = probe.skipped.map((s) => `'${s.name}' (${s.dtype}): ${s.reason}`).join('; ');
    throw new GraftError(`no output of ${src.name} is a floating-point function of the differentiated values: ${why}`);
  }
  const g = src.clone();
  promoteToInputs(
    g,
    wrt.filter((w) => g.initializers.has(w)),
  );
  const b = new Builder(g, 'loss/');
  const rNames = new Map<string, string>();
  const terms: string[] = [];
  for (const { name: o } of probe.used) {
    const r = probe.used.length === 1 ? 'R' : `R:${o}`;
    if (g.allNames().has(r)) throw new GraftError(`the graph already has a value named '${r}'`);
    rNames.set(o, r);
    // always a Cast: in a float64 check some outputs stay float32 (LayerNormalization's statistics)
    const y = b.op('Cast', [o], { to: A.i(ONNX_DTYPE.float32) }, `${o}/probe`);
    terms.push(b.op('ReduceSum', [b.mul(y, r)], { keepdims: A.i(0) }));
  }
  const loss = b.sum(terms);
  g.outputs = [{ name: loss, dtype: 'float32', shape: [] }];
  const rng = new Rng(7);
  const withR = (f: Feeds, concrete: Map<string, { dims: number[] }>): Feeds => {
    const out = withValues(f);
    for (const [o, r] of rNames) {
      const dims = concrete.get(o)!.dims;
      out[r] = f[r] ?? { dtype: 'float32', dims, data: Float32Array.from({ length: numel(dims) }, () => rng.normal()) };
    }
    return out;
  };
  const fa2 = withR(fa, concreteA);
  const fb2 = fa === fb ? fa2 : withR(fb, concreteB);
  for (const [, r] of rNames) {
    const [da, db] = [fa2[r]!.dims, fb2[r]!.dims];
    g.inputs.push({ name: r, dtype: 'float32', shape: da.map((d, i) => (db[i] === d ? d : `${r}_dim${i}`)) });
  }
  const shapes = await probeShapes(g, { ...opts, feeds: [fa2, fb2] });
  const { grads } = buildBackward(g, shapes, { loss, wrt });
  for (const [, gname] of grads) if (gname) g.outputs.push({ name: gname });
  return { graph: g, loss, grads, shapes, rNames, probe };
}

export interface GradCheckOptions extends RuntimeOptions {
  /** Values to check (default: every float initializer and float data input). */
  wrt?: string[];
  feeds?: Feeds;
  /** Elements checked per tensor (default 12), besides `directions` random directions. */
  samples?: number;
  /** Random dense directions checked per tensor (default 2): they cover the elements not sampled. */
  directions?: number;
  /**
   * Finite-difference step(s), each scaled by the size of the values moved (default 1e-1…1e-4 in
   * float32, 1e-2…1e-7 in float64). Every step gives a central and two one-sided estimates, and each
   * direction keeps the estimate closest to the analytic value: a large step suffers from kinks
   * (ReLU, max-pool switching), a small one from rounding; a wrong gradient fails at all of them.
   */
  eps?: number | number[];
  seed?: number;
  /** Compute in float64 (default false): removes rounding noise where onnxruntime has double kernels. */
  float64?: boolean;
  /** Move the checked values off kinks first (default true): a tiny random jitter, so no value sits exactly at a ReLU's 0 or on a tie. */
  offKinks?: boolean;
  /** Relative error at which the check fails (default 1e-3 when everything runs in float64, else 2e-2). */
  tolerance?: number;
}

export interface GradCheckEntry {
  name: string;
  checked: number;
  maxRelError: number;
  maxAbsGrad: number;
}
export interface GradCheckResult {
  worst: number;
  entries: GradCheckEntry[];
  /** The relative error at which the check fails, and whether every entry stayed below it. */
  tolerance: number;
  passed: boolean;
  /** The outputs the probe loss used, and those it left out. */
  outputs: ProbeOutputs;
  /** In a float64 check: operators that ran in float32 (onnxruntime has no double kernel for them). */
  float32Ops: string[];
}

/** Operators without double kernels in onnxruntime's CPU provider, beyond FLOAT32_ONLY, named by a failed session load. */
function missingDoubleKernel(e: unknown): string | null {
  const m = /Could not find an implementation for (\w+)\(\d+\)/.exec(e instanceof Error ? e.message : String(e));
  return m ? m[1]! : null;
}

/**
 * Run the named operators in float32 inside a graph about to become float64: their float32 inputs get
 * Casts named `…/as_f32` (which toFloat64 keeps) and their float32 outputs a Cast to double.
 */
function keepFloat32(src: Graph, shapes: ShapeMap, ops: ReadonlySet<string>): Graph {
  if (ops.size === 0) return src;
  const g = src.clone();
  const names = g.allNames();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (!ops.has(n.opType)) {
      nodes.push(n);
      continue;
    }
    const is32 = (v: string) => !!v && shapes.get(v)?.dtype === 'float32';
    const inputs = n.inputs.map((i) => {
      if (!is32(i)) return i;
      const c = g.uniqueName(`${i}/as_f32`, names);
      nodes.push({
        name: g.uniqueName(`${c}_node`, names),
        opType: 'Cast',
        domain: '',
        inputs: [i],
        outputs: [c],
        attrs: { to: A.i(1) },
      });
      return c;
    });
    const after: Node[] = [];
    const outputs = n.outputs.map((o) => {
      if (!is32(o)) return o;
      const tmp = g.uniqueName(`${o}/f32`, names);
      after.push({
        name: g.uniqueName(`${tmp}_to_f64`, names),
        opType: 'Cast',
        domain: '',
        inputs: [tmp],
        outputs: [o],
        attrs: { to: A.i(11) },
      });
      return tmp;
    });
    nodes.push({ ...n, inputs, outputs }, ...after);
  }
  g.nodes = nodes;
  return g;
}

/** The unit roundoff of the lowest precision that values of the graph are computed in. */
function roundoff(shapes: ShapeMap, float64: boolean, float32Ops: boolean): number {
  const types = new Set([...shapes.values()].map((s) => s.dtype));
  if (types.has('bfloat16')) return 2 ** -8;
  if (types.has('float16')) return 2 ** -11;
  return float64 && !float32Ops ? 2 ** -53 : 2 ** -24;
}

/**
 * A copy of t with every value moved by a relative ~1e-3 random amount (no ties left), and values near
 * 0 (the kink of ReLU, LeakyReLU, Elu, Abs) pushed 1e-3…2e-3 away from it: further than the smallest
 * finite-difference steps reach.
 */
function moveOffKinks(t: Tensor, rng: Rng): Tensor {
  const x = t.data as Float32Array | Float64Array;
  const data = x.slice();
  for (let i = 0; i < data.length; i++) {
    const v = x[i]!;
    const sign = v > 0 ? 1 : v < 0 ? -1 : rng.uniform() < 0.5 ? -1 : 1;
    data[i] =
      Math.abs(v) < 2e-3 ? sign * (1e-3 + 1e-3 * rng.uniform()) : v + 1e-3 * Math.abs(v) * (rng.uniform() - 0.5);
  }
  return { dtype: t.dtype, dims: [...t.dims], data };
}

/**
 * Compare the analytic gradient of L = Σ(Y · R) with finite differences, along directions of each
 * tensor: `samples` single elements and `directions` random dense directions v. For each, the analytic
 * directional derivative g·Δx/h is compared with the difference quotients at every step h (central,
 * forward and backward, with Δx the step actually taken after rounding), keeping the closest. The
 * relative error is |a − n| / max(|a|, |n|, max(0.1·max|g|, 30·u·Σ|Y·R|)·|v|∞, noise), where
 * noise = 8·Σ|Y·R|·u/h is what rounding (unit roundoff u of the precision the graph runs in) can do to
 * a difference quotient.
 */
export async function gradCheck(g: Graph, opts: GradCheckOptions = {}): Promise<GradCheckResult> {
  const seed = opts.seed ?? 1;
  const feeds = opts.feeds ?? exampleFeeds(g, 2, seed);
  const floatInputs = g
    .dataInputs()
    .filter((v) => v.dtype && isFloat(v.dtype))
    .map((v) => v.name);
  const wrt = opts.wrt ?? [...floatInputs, ...floatParameters(g)];
  // R must not share a seed with example data made from the same seed (R = x hides errors).
  const rng = new Rng((opts.seed ?? 3) + 7919);
  const base: Feeds = { ...feeds };
  for (const w of wrt) {
    const t = base[w] ?? g.initializers.get(w);
    if (!t) throw new GraftError(`'${w}' is neither an input nor an initializer of the graph`);
    if (t.dtype !== 'float32' && t.dtype !== 'float64')
      throw new GraftError(`'${w}' is ${t.dtype}; finite differences need float32 or float64 values`);
    base[w] = opts.offKinks === false ? cloneTensor(t) : moveOffKinks(t, rng);
  }
  const dataFeeds: Feeds = { ...feeds };
  for (const w of wrt) if (feeds[w]) dataFeeds[w] = base[w]!;
  // onnxruntime's training-mode BatchNormalization can write its updated running statistics into the
  // buffers fed as its mean and var (when those outputs are not graph outputs): every run gets copies.
  const written = new Set(
    g.nodes
      .filter((n) => n.opType === 'BatchNormalization')
      .flatMap((n) => [n.inputs[3], n.inputs[4]])
      .filter((v): v is string => !!v),
  );
  const feed = (f: Feeds, names: readonly string[]): Feeds => {
    const o = pick(f, names);
    for (const k of written) if (o[k]) o[k] = cloneTensor(o[k]!);
    return o;
  };
  const built = await weightedSumGradGraph(g, wrt, feed(dataFeeds, Object.keys(dataFeeds)), undefined, opts);
  const { loss, grads, rNames } = built;
  // R: match the output shapes from one forward run; its result also sizes the rounding noise.
  const fwd = await Session.fromGraph(g, opts, g.name);
  const outs = await fwd.run(feed(base, fwd.inputNames));
  await fwd.release();
  let scale = 0;
  for (const [o, r] of rNames) {
    const y = toNumbers(outs[o]!);
    const rv = Float32Array.from({ length: y.length }, () => rng.normal());
    base[r] = { dtype: 'float32', dims: outs[o]!.dims, data: rv };
    for (let i = 0; i < y.length; i++) scale += Math.abs(y[i]! * rv[i]!);
  }
  // float64 where onnxruntime has double kernels: operators without one run in float32 between Casts.
  const f32Ops = new Set<string>();
  const random = exposeRandomDraws(built.graph);
  let graph = built.graph;
  let gradSession: Session | undefined;
  for (let attempt = 0; !gradSession; attempt++) {
    graph = opts.float64 ? toFloat64(keepFloat32(built.graph, built.shapes, f32Ops)) : built.graph;
    try {
      gradSession = await Session.fromGraph(graph, opts, `${g.name} (gradient)`);
    } catch (e) {
      const op = opts.float64 ? missingDoubleKernel(e) : null;
      if (!op || f32Ops.has(op) || attempt > 8) throw e;
      f32Ops.add(op);
    }
  }
  for (const n of g.nodes) if (opts.float64 && FLOAT32_ONLY.has(n.opType)) f32Ops.add(n.opType);
  if (opts.float64)
    for (const k of Object.keys(base)) {
      const t = base[k]!;
      if (t.dtype === 'float32')
        base[k] = { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) };
    }
  const res = await gradSession.run(feed(base, gradSession.inputNames));
  // Loss-only session for finite differences, with the random draws of the gradient run held fixed.
  const lossGraph = graph.clone();
  const held = holdRandomFixed(lossGraph, random, res, base);
  lossGraph.outputs = [{ name: loss }, ...held.map(([y]) => ({ name: y }))];
  lossGraph.prune();
  const lossOpts = { ...opts, optimization: 'disabled' as const };
  const lossSession = await Session.fromGraph(lossGraph, lossOpts, `${g.name} (loss)`);
  if (held.length) {
    // the fixed-mask function must be the operator's own at the checked point: same outputs as the gradient run
    const got = await lossSession.run(feed(base, lossSession.inputNames));
    for (const [y, want] of held) {
      const [u, v] = [toNumbers(got[y]!), toNumbers(want)];
      const size = v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      if (u.some((x, i) => !(Math.abs(x - v[i]!) <= 1e-6 * size)))
        throw new GraftError(
          `${g.name}: '${y}' with its random draws held fixed differs from onnxruntime's output: finite differences cannot check it`,
        );
    }
  }
  let evalLoss = async (f: Feeds) =>
    Number((await lossSession.run(feed(f, lossSession.inputNames), [loss]))[loss]!.data[0]);
  let l0 = await evalLoss(base);
  if (!Number.isFinite(l0))
    throw new GraftError(
      `the probe loss of ${g.name} is ${l0} at the checked point (an output is not finite): finite differences cannot check it`,
    );
  if ((await evalLoss(base)) !== l0) {
    // Runs of one session differ (a random operator, or state onnxruntime keeps between runs, as
    // training-mode BatchNormalization's running statistics): evaluate each point in a fresh session.
    evalLoss = async (f: Feeds) => {
      const s = await Session.fromGraph(lossGraph, lossOpts, `${g.name} (loss)`);
      try {
        return Number((await s.run(feed(f, s.inputNames)))[loss]!.data[0]);
      } finally {
        await s.release();
      }
    };
    l0 = await evalLoss(base);
    if ((await evalLoss(base)) !== l0)
      throw new GraftError(
        `${g.name} gives a different loss on every run of the same inputs (a random operator such as Dropout in training mode): finite differences cannot check it`,
      );
  }
  const unit = roundoff(built.shapes, !!opts.float64, f32Ops.size > 0);
  const tolerance = opts.tolerance ?? (unit < 1e-12 ? 1e-3 : 2e-2);
  const steps = Array.isArray(opts.eps)
    ? opts.eps
    : opts.eps != null
      ? [opts.eps]
      : opts.float64
        ? [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]
        : [1e-1, 1e-2, 1e-3, 1e-4];
  const samples = opts.samples ?? 12;
  const denseCount = opts.directions ?? 2;
  const entries: GradCheckEntry[] = [];
  for (const w of wrt) {
    const gname = grads.get(w);
    const t = base[w]!;
    const x0 = t.data as Float32Array | Float64Array;
    const n = x0.length;
    const analytic = gname ? Float64Array.from(res[gname]!.data as Float32Array | Float64Array) : new Float64Array(n);
    if (analytic.length !== n)
      throw new GraftError(`gradient of '${w}' has ${analytic.length} elements, expected ${n}`);
    const gmax = analytic.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    let ss = 0;
    for (const v of x0) ss += v * v;
    const rms = Math.sqrt(ss / Math.max(1, n));
    // directions: sampled single elements, then dense Gaussian ones
    const dirs: { idx: number[]; v: number[]; size: number }[] = [];
    const idx = n <= samples ? [...Array(n).keys()] : Array.from({ length: samples }, () => rng.int(n));
    for (const i of idx) dirs.push({ idx: [i], v: [1], size: Math.max(1, Math.abs(x0[i]!)) });
    if (n > 1)
      for (let k = 0; k < denseCount; k++)
        dirs.push({
          idx: [...Array(n).keys()],
          v: Array.from({ length: n }, () => rng.normal()),
          size: Math.max(1, rms),
        });
    let worst = 0;
    for (const d of dirs) {
      const vmax = d.v.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      // 0.1·max|g| (errors relative to the gradient's scale), and rounding in the analytic gradient itself
      const floor = Math.max(0.1 * gmax, 30 * unit * scale) * vmax;
      let best = Infinity;
      for (const eps of steps) {
        const h = eps * d.size;
        const xp = x0.slice();
        const xm = x0.slice();
        d.idx.forEach((i, k) => {
          xp[i] = x0[i]! + h * d.v[k]!;
          xm[i] = x0[i]! - h * d.v[k]!;
        });
        // analytic change over the steps actually taken (after rounding to the tensor's precision)
        let ap = 0;
        let am = 0;
        for (const i of d.idx) {
          ap += analytic[i]! * (xp[i]! - x0[i]!);
          am += analytic[i]! * (x0[i]! - xm[i]!);
        }
        const lp = await evalLoss({ ...base, [w]: { ...t, data: xp } });
        const lm = await evalLoss({ ...base, [w]: { ...t, data: xm } });
        const noise = (8 * scale * unit) / h;
        // [analytic, numeric, noise], all per unit step
        const candidates: [number, number, number][] = [
          [(ap + am) / (2 * h), (lp - lm) / (2 * h), noise],
          [ap / h, (lp - l0) / h, 2 * noise],
          [am / h, (l0 - lm) / h, 2 * noise],
        ];
        for (const [a, nu, ns] of candidates) {
          const err = Math.abs(a - nu) / Math.max(Math.abs(a), Math.abs(nu), floor, ns, 1e-30);
          if (Number.isFinite(err)) best = Math.min(best, err);
          else if (Number.isNaN(err) || !Number.isFinite(a)) best = Math.min(best, Infinity);
        }
      }
      worst = Math.max(worst, best);
    }
    entries.push({ name: w, checked: dirs.length, maxRelError: worst, maxAbsGrad: gmax });
  }
  await gradSession.release();
  await lossSession.release();
  const worst = Math.max(0, ...entries.map((e) => e.maxRelError));
  return { worst, entries, tolerance, passed: worst < tolerance, outputs: built.probe, float32Ops: [...f32Ops].sort() };
}

/** Operators whose outputs are random draws (besides Dropout in training mode, which draws its mask). */
export const RANDOM_OPS: ReadonlySet<string> = new Set([
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'Bernoulli',
  'Multinomial',
]);

/** Whether a node draws random numbers when it runs (Dropout only with a training_mode input). */
export function drawsRandom(n: Node): boolean {
  return RANDOM_OPS.has(n.opType) || (n.opType === 'Dropout' && !!n.inputs[2]);
}

/**
 * Make the random draws of a gradient graph observable: each training-mode Dropout gets a named mask
 * output, and Dropout's result, its mask and every random generator's output become graph outputs.
 * onnxruntime draws anew on every run (a `seed` attribute fixes only a session's sequence of draws),
 * so the finite differences hold the draws of the gradient run fixed (see holdRandomFixed).
 */
function exposeRandomDraws(g: Graph): Node[] {
  const nodes = g.nodes.filter(drawsRandom);
  const names = g.allNames();
  for (const n of nodes) {
    if (n.opType === 'Dropout') {
      while (n.outputs.length < 2) n.outputs.push('');
      if (!n.outputs[1]) n.outputs[1] = g.uniqueName(`${n.name || 'dropout'}/mask`, names);
    }
    for (const o of n.outputs) if (o && !g.outputs.some((v) => v.name === o)) g.outputs.push({ name: o });
  }
  return nodes;
}

/**
 * Replace the random nodes of `g` (a copy of the gradient graph, node for node) by the values one run
 * (on `feeds`)
 * drew: generators by constants, a training-mode Dropout by y = x · K with the constant K = mask ·
 * 1/(1 − ratio) from that run's mask (the mask the rule used). Returns each replaced Dropout's result
 * with the value the run gave, for the caller to confirm that the replacement computes onnxruntime's
 * output at the checked point.
 */
function holdRandomFixed(g: Graph, random: Node[], run: Record<string, Tensor>, feeds: Feeds): [string, Tensor][] {
  const byName = new Map(random.map((n) => [n.name, n]));
  const check: [string, Tensor][] = [];
  const names = g.allNames();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const src = byName.get(n.name);
    if (!src) {
      nodes.push(n);
      continue;
    }
    for (const o of n.outputs) if (o && o !== n.outputs[0]) g.initializers.set(o, run[o]!);
    if (n.opType !== 'Dropout') {
      g.initializers.set(n.outputs[0]!, run[n.outputs[0]!]!);
      continue;
    }
    const y = run[n.outputs[0]!]!;
    const mask = run[n.outputs[1]!]!.data as Uint8Array;
    // the scale: 1/(1 − ratio) in training mode, else 1, from a ratio and training_mode that are constants or fed
    const value = (v: string | undefined, dflt: number): number | null => {
      if (!v) return dflt;
      const t = g.initializers.get(v) ?? feeds[v];
      return t ? toNumbers(t)[0]! : null;
    };
    const ratio = value(n.inputs[1], 0.5);
    const training = value(n.inputs[2], 0);
    if (ratio == null || training == null)
      throw new GraftError(
        `Dropout '${n.name}': its ratio and training_mode must be constants for a finite-difference check`,
      );
    const scale = training ? 1 / (1 - ratio) : 1;
    const k = Array.from(mask, (m) => (m ? scale : 0));
    const K: Tensor =
      y.dtype === 'float64'
        ? { dtype: 'float64', dims: [...y.dims], data: Float64Array.from(k) }
        : { dtype: 'float32', dims: [...y.dims], data: Float32Array.from(k) };
    if (y.dtype !== 'float32' && y.dtype !== 'float64')
      throw new GraftError(`Dropout '${n.name}' on ${y.dtype}: a finite-difference check needs float32 or float64`);
    const kName = g.uniqueName(`${n.outputs[0]}/held_mask`, names);
    g.initializers.set(kName, K);
    nodes.push({
      name: g.uniqueName(`${n.name}/held`, names),
      opType: 'Mul',
      domain: '',
      inputs: [n.inputs[0]!, kName],
      outputs: [n.outputs[0]!],
      attrs: {},
    });
    check.push([n.outputs[0]!, y]);
  }
  g.nodes = nodes;
  return check;
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
