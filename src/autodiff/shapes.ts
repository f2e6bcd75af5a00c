/**
 * Shapes and dtypes of every value, found by running the graph: onnxruntime executes it twice with
 * different sizes for each symbolic input dimension, with every intermediate value exposed as an
 * output. A dimension that differs between the runs is dynamic (null); the rest are fixed numbers.
 * This needs no shape-inference code of Graft's own and is exact for the ops onnxruntime runs.
 */
import { Graph, type ValueInfo } from '../graph/graph.js';
import { type DType, type Tensor, numel, emptyTyped, isFloat } from '../graph/tensor.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import { Rng } from '../util/random.js';

export interface ValueShape {
  dtype: DType;
  /** Fixed sizes as numbers; dimensions that change with the input size as null. */
  dims: (number | null)[];
}

export type ShapeMap = Map<string, ValueShape>;

/** Concrete sizes for an input's dims: symbolic dims get one size per distinct name. */
export function concreteDims(v: ValueInfo, sizes: Map<string, number>, fallback: number): number[] {
  if (!v.shape) throw new GraftError(`input '${v.name}' has no shape; give example inputs instead`);
  return v.shape.map((d, axis) => {
    if (typeof d === 'number' && d > 0) return d;
    const key = typeof d === 'string' && d ? d : `${v.name}:${axis}`;
    let s = sizes.get(key);
    if (s == null) sizes.set(key, (s = fallback + sizes.size));
    return s;
  });
}

/** Random example feeds for the graph's data inputs (floats ~N(0,1), integers 0, masks 1). */
export function exampleFeeds(g: Graph, sizeBase = 2, seed = 1, sizes = new Map<string, number>()): Feeds {
  const rng = new Rng(seed);
  const feeds: Feeds = {};
  for (const v of g.dataInputs()) {
    if (!v.dtype) throw new GraftError(`input '${v.name}' has no type`);
    const dims = concreteDims(v, sizes, sizeBase);
    feeds[v.name] = randomTensor(v.dtype, dims, rng, /mask/i.test(v.name) ? 1 : 0);
  }
  return feeds;
}

export function randomTensor(dtype: DType, dims: number[], rng: Rng, intValue = 0): Tensor {
  const n = numel(dims);
  const data = emptyTyped(dtype, n);
  if (dtype === 'float32' || dtype === 'float64') for (let i = 0; i < n; i++) (data as Float32Array)[i] = rng.normal();
  else if (data instanceof BigInt64Array) data.fill(BigInt(intValue));
  else if (!isFloat(dtype)) (data as Int32Array).fill(intValue);
  return { dtype, dims, data };
}

/** Run the graph with every value exposed and return each value's dtype and concrete dims. */
export async function concreteShapes(g: Graph, feeds: Feeds, opts: RuntimeOptions = {}): Promise<Map<string, { dtype: DType; dims: number[] }>> {
  const probe = g.clone();
  const seen = new Set(probe.outputs.map((o) => o.name));
  for (const n of probe.nodes)
    for (const o of n.outputs)
      if (o && !seen.has(o)) {
        seen.add(o);
        probe.outputs.push({ name: o });
      }
  const s = await Session.fromGraph(probe, { ...opts, optimization: 'disabled' }, `${g.name} (shape probe)`);
  const res = await s.run(feeds);
  await s.release();
  const out = new Map<string, { dtype: DType; dims: number[] }>();
  for (const [k, t] of Object.entries(res)) out.set(k, { dtype: t.dtype, dims: t.dims });
  for (const [k, t] of Object.entries(feeds)) out.set(k, { dtype: t.dtype, dims: t.dims });
  for (const [k, t] of g.initializers) out.set(k, { dtype: t.dtype, dims: t.dims });
  return out;
}

/** Probe shapes with two different sizes for every symbolic dimension. */
export async function probeShapes(g: Graph, opts: RuntimeOptions & { feeds?: [Feeds, Feeds] } = {}): Promise<ShapeMap> {
  const [fa, fb] = opts.feeds ?? [exampleFeeds(g, 2, 1), exampleFeeds(g, 3, 2)];
  const a = await concreteShapes(g, fa, opts);
  const b = await concreteShapes(g, fb, opts);
  const out: ShapeMap = new Map();
  for (const [k, va] of a) {
    const vb = b.get(k);
    const dims = va.dims.map((d, i) => (vb && vb.dims.length === va.dims.length && vb.dims[i] === d ? d : null));
    out.set(k, { dtype: va.dtype, dims });
  }
  return out;
}
