/**
 * Shapes and dtypes of every value, found by running the graph: onnxruntime executes it twice with
 * different sizes for each symbolic input dimension, with every intermediate value exposed as an
 * output. A dimension that differs between the runs is dynamic (null); the rest are fixed numbers.
 * This needs no shape-inference code of Graft's own and is exact for the ops onnxruntime runs.
 */
import type { Graph, ValueInfo } from '../graph/graph.js';
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

/**
 * Random example feeds for the graph's data inputs: floats ~N(0,1); integer inputs that index a
 * table (Gather, e.g. token ids) uniform over the first min(rows, 100) rows; other integers 0; masks 1.
 */
export function exampleFeeds(g: Graph, sizeBase = 2, seed = 1, sizes = new Map<string, number>()): Feeds {
  const rng = new Rng(seed);
  const feeds: Feeds = {};
  for (const v of g.dataInputs()) {
    if (!v.dtype) throw new GraftError(`input '${v.name}' has no type`);
    const dims = concreteDims(v, sizes, sizeBase);
    const rows = /mask/i.test(v.name) ? 0 : indexedRows(g, v.name);
    feeds[v.name] = randomTensor(v.dtype, dims, rng, /mask/i.test(v.name) ? 1 : 0, Math.min(rows, 100));
  }
  return feeds;
}

/** Rows of the constant table that an input indexes through Gather (0 when it indexes none). */
function indexedRows(g: Graph, input: string): number {
  let rows = 0;
  for (const n of g.nodes) {
    if (n.opType !== 'Gather' || n.inputs[1] !== input) continue;
    const t = g.initializers.get(n.inputs[0]!);
    const axis = n.attrs['axis']?.type === 'int' ? (n.attrs['axis'].value as number) : 0;
    const d = t?.dims[axis < 0 ? axis + t.dims.length : axis];
    if (d) rows = rows ? Math.min(rows, d) : d;
  }
  return rows;
}

/** A random tensor; integer tensors are `intValue`, or uniform in [0, intRange) when intRange > 1. */
export function randomTensor(dtype: DType, dims: number[], rng: Rng, intValue = 0, intRange = 0): Tensor {
  const n = numel(dims);
  const data = emptyTyped(dtype, n);
  const int = () => (intRange > 1 ? rng.int(intRange) : intValue);
  if (dtype === 'float32' || dtype === 'float64') for (let i = 0; i < n; i++) (data as Float32Array)[i] = rng.normal();
  else if (data instanceof BigInt64Array) for (let i = 0; i < n; i++) data[i] = BigInt(int());
  else if (!isFloat(dtype)) for (let i = 0; i < n; i++) (data as Int32Array)[i] = int();
  return { dtype, dims, data };
}

/** Run the graph with every value exposed and return each value's dtype and concrete dims. */
export async function concreteShapes(
  g: Graph,
  feeds: Feeds,
  opts: RuntimeOptions = {},
): Promise<Map<string, { dtype: DType; dims: number[] }>> {
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
