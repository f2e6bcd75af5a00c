/**
 * Emits new nodes and constants into a Graph with fresh, readable names. Gradient rules, losses and
 * graph rewrites all build through this, so every generated tensor is named after what made it.
 */
import type { Graph, Attr, Node } from './graph.js';
import { ONNX_DTYPE, type DType, type Tensor } from './tensor.js';

export const A = {
  i: (value: number): Attr => ({ type: 'int', value }),
  f: (value: number): Attr => ({ type: 'float', value }),
  is: (value: number[]): Attr => ({ type: 'ints', value }),
  fs: (value: number[]): Attr => ({ type: 'floats', value }),
  s: (value: string): Attr => ({ type: 'string', value }),
  t: (value: Tensor): Attr => ({ type: 'tensor', value }),
};

export class Builder {
  private names: Set<string>;
  private consts = new Map<string, string>();
  /** Nodes emitted by this builder, in emission order. */
  readonly emitted: Node[] = [];

  constructor(
    readonly graph: Graph,
    readonly prefix = '',
  ) {
    this.names = graph.allNames();
  }

  get opset(): number {
    return this.graph.opset;
  }

  name(base: string): string {
    return this.graph.uniqueName(this.prefix + base, this.names);
  }

  /** Add a node; returns its output names (`nOut` of them). */
  opN(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, nOut = 1, base?: string): string[] {
    const stem = base ?? opType;
    const outputs = Array.from({ length: nOut }, (_, k) => this.name(nOut === 1 ? stem : `${stem}:${k}`));
    const node: Node = { name: this.name(`${stem}_node`), opType, domain: '', inputs, outputs, attrs };
    this.graph.nodes.push(node);
    this.emitted.push(node);
    return outputs;
  }

  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, base?: string): string {
    return this.opN(opType, inputs, attrs, 1, base)[0]!;
  }

  /** A constant initializer, deduplicated by value. */
  constant(t: Tensor, base = 'const'): string {
    const key = `${t.dtype}|${t.dims.join(',')}|${Array.from(t.data as ArrayLike<unknown>).join(',')}`;
    const small = (t.data as ArrayLike<unknown>).length <= 64;
    if (small) {
      const hit = this.consts.get(key);
      if (hit) return hit;
    }
    const name = this.name(this.prefix ? base : `graft/${base}`);
    this.graph.initializers.set(name, t);
    if (small) this.consts.set(key, name);
    return name;
  }

  f32(values: number | number[], dims?: number[]): string {
    const v = typeof values === 'number' ? [values] : values;
    return this.constant({
      dtype: 'float32',
      dims: dims ?? (typeof values === 'number' ? [] : [v.length]),
      data: Float32Array.from(v),
    });
  }

  scalar(value: number, dtype: DType = 'float32'): string {
    if (dtype === 'float64') return this.constant({ dtype, dims: [], data: Float64Array.from([value]) });
    if (dtype !== 'float32') throw new Error(`scalar of ${dtype} not supported`);
    return this.f32(value);
  }

  i64(values: number | number[], dims?: number[]): string {
    const v = typeof values === 'number' ? [values] : values;
    return this.constant({
      dtype: 'int64',
      dims: dims ?? (typeof values === 'number' ? [] : [v.length]),
      data: BigInt64Array.from(v.map((x) => BigInt(x))),
    });
  }

  /* ---- version-aware helpers for operators whose signature changed between opsets 13 and 18 ---- */

  reduce(
    op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax' | 'ReduceMin' | 'ReduceProd' | 'ReduceSumSquare',
    x: string,
    axes: number[],
    keepdims: boolean,
  ): string {
    if (axes.length === 0) return this.op('Identity', [x]);
    const axesAsInput = op === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    if (axesAsInput) return this.op(op, [x, this.i64(axes)], { keepdims: A.i(keepdims ? 1 : 0) });
    return this.op(op, [x], { axes: A.is(axes), keepdims: A.i(keepdims ? 1 : 0) });
  }

  /** Reduce over every axis (no axes given). */
  reduceAll(op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax', x: string, keepdims = false): string {
    return this.op(op, [x], { keepdims: A.i(keepdims ? 1 : 0) });
  }

  squeeze(x: string, axes: number[]): string {
    return this.opset >= 13 ? this.op('Squeeze', [x, this.i64(axes)]) : this.op('Squeeze', [x], { axes: A.is(axes) });
  }

  unsqueeze(x: string, axes: number[]): string {
    return this.opset >= 13
      ? this.op('Unsqueeze', [x, this.i64(axes)])
      : this.op('Unsqueeze', [x], { axes: A.is(axes) });
  }

  reshape(x: string, shape: number[] | string): string {
    return this.op('Reshape', [x, typeof shape === 'string' ? shape : this.i64(shape)]);
  }

  transpose(x: string, perm: number[]): string {
    return this.op('Transpose', [x], { perm: A.is(perm) });
  }

  shapeOf(x: string): string {
    return this.op('Shape', [x]);
  }

  add(a: string, b: string): string {
    return this.op('Add', [a, b]);
  }
  sub(a: string, b: string): string {
    return this.op('Sub', [a, b]);
  }
  mul(a: string, b: string): string {
    return this.op('Mul', [a, b]);
  }
  div(a: string, b: string): string {
    return this.op('Div', [a, b]);
  }
  neg(a: string): string {
    return this.op('Neg', [a]);
  }
  exp(a: string): string {
    return this.op('Exp', [a]);
  }
  log(a: string): string {
    return this.op('Log', [a]);
  }
  sqrt(a: string): string {
    return this.op('Sqrt', [a]);
  }
  recip(a: string): string {
    return this.op('Reciprocal', [a]);
  }
  sign(a: string): string {
    return this.op('Sign', [a]);
  }

  /* comparisons and selection (boolean results) */
  greater(a: string, b: string): string {
    return this.op('Greater', [a, b]);
  }
  less(a: string, b: string): string {
    return this.op('Less', [a, b]);
  }
  equal(a: string, b: string): string {
    return this.op('Equal', [a, b]);
  }
  and(a: string, b: string): string {
    return this.op('And', [a, b]);
  }
  not(a: string): string {
    return this.op('Not', [a]);
  }
  /** cond ? a : b, elementwise. */
  where(cond: string, a: string, b: string): string {
    return this.op('Where', [cond, a, b]);
  }
  /** x converted to `to` (default float32; booleans become 0 and 1). */
  cast(x: string, to: DType = 'float32'): string {
    return this.op('Cast', [x], { to: A.i(ONNX_DTYPE[to]) });
  }

  /** Sum of several tensors of one shape (one node). */
  sum(xs: string[]): string {
    if (xs.length === 1) return xs[0]!;
    if (xs.length === 2) return this.add(xs[0]!, xs[1]!);
    return this.op('Sum', xs);
  }
}
