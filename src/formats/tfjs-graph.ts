/**
 * TF.js graph models (model.json with `format: "graph-model"`: `modelTopology.node` is a TensorFlow
 * GraphDef as JSON, Const nodes take their values from `weightsManifest` or from an inline tensor) →
 * Graft's ONNX graph, NCHW.
 *
 * TF graphs compute NHWC. As in the layers importer (./tfjs.ts) the conversion happens once, at the
 * edges: the ONNX input is declared [batch, C, H, W]; every rank-4 tensor is held channels-first
 * (TF axis 3 → ONNX axis 1, axes 1, 2 → 2, 3), other ranks as they are; constant operands are permuted
 * when read (Conv2D HWIO → OIHW, depthwise HW·C·M → (C·M)·1·H·W, rank-4 or broadcast vectors → NCHW);
 * axis operands (Mean, Max, Sum, ConcatV2, Pad, Squeeze, Softmax) are remapped. Where TF looks at the
 * memory order of a rank-4 tensor (Reshape, or an axis change of rank) a Transpose appears, unless only
 * size-1 axes move. SAME padding follows TF's rule (the odd pixel at the end). Unknown ops are errors
 * naming the op and the node.
 *
 * The file is read by ./tfjs-reader.ts; layout, padding, kernel layouts, constants and naming come from
 * the importer core (./importer/core.ts); each TF op is one entry of TFJS_GRAPH_OPS.
 */
import type { Attr, Dim, Graph } from '../graph/graph.js';
import { A, type Builder } from '../graph/builder.js';
import { type Tensor, numel, permuteData } from '../graph/tensor.js';
import {
  Emitter,
  Handlers,
  NCHW,
  identity,
  keepsMemoryOrder,
  toSourceOrder,
  fromSourceOrder,
  windowPads,
  hwioToOihw,
  depthwiseToOihw,
} from './importer/core.js';
import { setLabels, setPreprocess } from './preprocess.js';
import { GraftError } from '../util/errors.js';
import { checkedNumel, MAX_ELEMENTS } from '../util/limits.js';
import { existsSync, readFileSync } from 'node:fs';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

export interface TfjsGraphOptions {
  name?: string;
  labels?: string[] | string | false;
  preprocess?: {
    mean?: number[];
    std?: number[];
    channelOrder?: 'RGB' | 'BGR' | 'GRAY';
    resize?: 'stretch' | 'center-crop';
  };
}

interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, Json>;
  device?: string;
}

/** A TF value during import: ONNX name (null for a constant not yet emitted), TF shape (null = unknown); rank 4 is held NCHW. */
interface TVal {
  name: string | null;
  shape: (number | null)[];
  const?: Tensor;
  tfName: string;
}

/** ONNX axis of TF axis `a` of a rank-`r` tensor. */
function onnxAxis(a: number, r: number): number {
  const x = a < 0 ? a + r : a;
  if (x < 0 || x >= r) throw new Error(`axis ${a} out of range for rank ${r}`);
  return r === 4 ? NCHW.indexOf(x) : x;
}
/** TF axis held at each ONNX axis of a rank-r value. */
const heldOrder = (r: number): number[] => (r === 4 ? NCHW : identity(r));

/** Whether transposing `dims` by `perm` keeps memory order (only size-1 axes move). */
const permIsRelabel = keepsMemoryOrder;

const str = (v: Json): string => (v?.s != null ? Buffer.from(String(v.s), 'base64').toString('utf8') : '');
const list = (v: unknown): Json[] => (Array.isArray(v) ? v : []);
const ints = (v: Json): number[] => list(v?.list?.i).map(Number);
const strs = (v: Json): string[] =>
  list(v?.list?.s).map((s: unknown) => Buffer.from(String(s), 'base64').toString('utf8'));
const flt = (v: Json, d: number): number => (v?.f != null ? Number(v.f) : d);
const bool = (v: Json): boolean => v?.b === true;

function shapeOf(s: Json): (number | null)[] | null {
  if (!s || typeof s !== 'object' || s.unknownRank) return null;
  return list(s.dim).map((d: Json) => {
    const n = Number(d?.size ?? -1);
    return n < 0 || !Number.isFinite(n) ? null : n;
  });
}

/** An inline tensor of a Const node's `value` attr (float/int data as float32). */
function inlineTensor(t: Json, where: string): Tensor {
  const dims = (shapeOf(t.tensorShape) ?? []).map((d) => {
    if (d == null) throw new GraftError(`${where}: constant with unknown shape`);
    return d;
  });
  const dt = String(t.dtype ?? 'DT_FLOAT');
  const vals: Json[] = list(t.floatVal ?? t.intVal ?? t.int64Val ?? t.boolVal ?? t.doubleVal);
  // TF fills a constant from fewer values than elements (one value: a fill); such a fill is capped at
  // 2^24 elements, since the file did not pay for them
  const n = checkedNumel(
    dims,
    `${where}: constant`,
    t.tensorContent || vals.length >= 2 ** 24 ? MAX_ELEMENTS : 2 ** 24,
  );
  const dt2 = dt === 'DT_FLOAT' || dt === 'DT_INT32' ? 4 : dt === 'DT_INT64' ? 8 : 0;
  if (t.tensorContent) {
    const b = Buffer.from(String(t.tensorContent), 'base64');
    if (dt2 && b.byteLength < n * dt2)
      throw new GraftError(
        `${where}: constant [${dims}] of ${dt} needs ${n * dt2} bytes, its tensorContent has ${b.byteLength}`,
      );
  }
  const out = new Float32Array(n);
  if (t.tensorContent) {
    const b = Buffer.from(String(t.tensorContent), 'base64');
    const bytes = new Uint8Array(b);
    const src =
      dt === 'DT_FLOAT'
        ? new Float32Array(bytes.buffer, 0, n)
        : dt === 'DT_INT32'
          ? new Int32Array(bytes.buffer, 0, n)
          : dt === 'DT_INT64'
            ? Array.from(new BigInt64Array(bytes.buffer, 0, n), Number)
            : null;
    if (!src) throw new GraftError(`${where}: constant of dtype ${dt} is not supported`);
    for (let i = 0; i < n; i++) out[i] = Number(src[i]);
  } else {
    for (let i = 0; i < n; i++) out[i] = Number(vals.length ? vals[Math.min(i, vals.length - 1)] : 0);
  }
  return { dtype: 'float32', dims, data: out };
}

/** TF's padding (the importer core's), for TF's padding names. */
function spatialPads(
  inp: (number | null)[],
  k: number[],
  s: number[],
  d: number[],
  padding: string,
  explicit: number[],
  where: string,
): { pads: number[] | null; out: (number | null)[] } {
  const mode = ({ SAME: 'same', VALID: 'valid', EXPLICIT: 'explicit' } as const)[padding as 'SAME'];
  if (!mode) throw new GraftError(`${where}: padding '${padding}' is not supported (SAME, VALID, EXPLICIT)`);
  return windowPads(inp, k, s, d, mode, where, explicit);
}

function broadcastShape(a: (number | null)[], b: (number | null)[]): (number | null)[] {
  const r = Math.max(a.length, b.length);
  const out: (number | null)[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1,
      y = b[b.length - r + i] ?? 1;
    out.push(x === 1 ? y : y === 1 ? x : (x ?? y));
  }
  return out;
}

class GraphImporter extends Emitter {
  private readonly vals = new Map<string, TVal>();
  private readonly nodes = new Map<string, TfNode>();

  constructor(
    readonly weights: Map<string, Tensor>,
    readonly label: string,
  ) {
    super();
  }

  err(n: TfNode, msg: string): GraftError {
    return new GraftError(`${this.label}: node '${n.name}' (${n.op}): ${msg}`);
  }

  run(nodes: TfNode[], outputs: string[]): TVal[] {
    for (const n of nodes) this.nodes.set(n.name, n);
    // iterative post-order over the inputs of the requested outputs
    const done = new Set<string>();
    const visiting = new Set<string>();
    for (const o of outputs) {
      const stack: [string, boolean][] = [[refNode(o), false]];
      while (stack.length) {
        const [name, expanded] = stack.pop()!;
        if (done.has(name)) continue;
        const n = this.nodes.get(name);
        if (!n) throw new GraftError(`${this.label}: a node refers to '${name}', which the graph does not have`);
        if (expanded) {
          visiting.delete(name);
          this.vals.set(name, this.convertNode(n));
          done.add(name);
          continue;
        }
        if (visiting.has(name)) throw new GraftError(`${this.label}: the graph has a cycle through '${name}'`);
        visiting.add(name);
        stack.push([name, true]);
        for (const i of dataInputs(n)) if (!done.has(refNode(i))) stack.push([refNode(i), false]);
      }
    }
    return outputs.map((o) => this.vals.get(refNode(o))!);
  }

  input(n: TfNode, k: number): TVal {
    const ins = dataInputs(n);
    const ref = ins[k];
    if (ref == null) throw this.err(n, `expects at least ${k + 1} inputs, has ${ins.length}`);
    if (/:[1-9]\d*$/.test(ref))
      throw this.err(
        n,
        `uses output ${ref.split(':').pop()} of '${refNode(ref)}'; only single-output nodes are supported`,
      );
    return this.vals.get(refNode(ref))!;
  }

  constOf(n: TfNode, v: TVal, what: string): Tensor {
    if (!v.const) throw this.err(n, `its ${what} ('${v.tfName}') must be a constant`);
    return v.const;
  }

  /** A constant that must hold integers (a shape, axes, paddings): its values, or an error naming it. */
  constInts(n: TfNode, v: TVal, what: string, count?: number): number[] {
    const vals = Array.from(this.constOf(n, v, what).data as Float32Array, Number);
    if (vals.some((x) => !Number.isSafeInteger(x)))
      throw this.err(n, `its ${what} ('${v.tfName}') must hold integers, it holds [${vals.slice(0, 8)}]`);
    if (count !== undefined && vals.length !== count)
      throw this.err(n, `its ${what} ('${v.tfName}') has ${vals.length} values, expected ${count}`);
    return vals;
  }

  /** The ONNX value of `v`; a constant becomes an initializer, laid out for a rank-`rank` consumer (NCHW when 4). */
  val(v: TVal, rank = v.shape.length): string {
    if (!v.const) return v.name!;
    const t = v.const;
    let dims = t.dims,
      data = t.data as Float32Array;
    let key = v.tfName;
    if (rank === 4 && dims.length >= 1) {
      const full = [...Array(4 - dims.length).fill(1), ...dims];
      const p = permuteData(data, full, NCHW);
      dims = p.dims;
      data = p.data;
      key += '#nchw';
    }
    return this.cachedInitializer(key, v.tfName, () => ({ dtype: 'float32', dims: [...dims], data }));
  }

  out(n: TfNode, name: string, shape: (number | null)[]): TVal {
    return { name, shape, tfName: n.name };
  }

  /** `v` (rank 4 held NCHW) in TF's own axis order: a Transpose unless only size-1 axes move. */
  tfOrder(n: TfNode, v: TVal): string {
    if (v.const) return this.val(v, 0);
    const x = this.val(v);
    return toSourceOrder(this.b, x, heldOrder(v.shape.length), v.shape, `${n.name}/to_nhwc`);
  }

  /** A value in TF order of shape `shape` → held layout (NCHW when rank 4). */
  fromTfOrder(n: TfNode, x: string, shape: (number | null)[]): string {
    return fromSourceOrder(this.b, x, heldOrder(shape.length), shape, `${n.name}/to_nchw`);
  }

  /**
   * After an op that removes axes `removed` from a held value `v`: ONNX keeps the held order minus
   * those axes; TF's order of the result is its own order minus them. Returns the value in the held
   * layout of the result.
   */
  afterRemovingAxes(n: TfNode, y: string, v: TVal, removed: number[], outShape: (number | null)[]): string {
    const kept = heldOrder(v.shape.length).filter((a) => !removed.includes(a)); // TF axes at ONNX positions of y
    const tfKept = [...Array(v.shape.length).keys()].filter((a) => !removed.includes(a));
    const want = heldOrder(outShape.length).map((i) => tfKept[i]!); // TF axes the result should hold, per position
    const perm = want.map((a) => kept.indexOf(a));
    if (perm.every((p, i) => p === i)) return y;
    const dimsNow = kept.map((a) => v.shape[a]!);
    if (permIsRelabel(dimsNow, perm))
      return this.b.reshape(
        y,
        want.map((a) => v.shape[a] ?? -1).map((d, i) => (i === 0 ? 0 : d)),
      );
    return this.b.op('Transpose', [y], { perm: A.is(perm) }, `${n.name}/Transpose`);
  }

  private convertNode(n: TfNode): TVal {
    const mark = this.mark();
    const v = this.op(n);
    if (v.const || !v.name) return v;
    // name the node's result after the TF node (readable graphs, inner values probe-able by TF name)
    if (v.name !== n.name && !this.g.inputs.some((i) => i.name === v.name))
      v.name = this.nameResult(mark, v.name, n.name);
    return v;
  }

  private op(n: TfNode): TVal {
    const a = n.attr ?? {};
    const b = this.b;
    const df = a.data_format ? str(a.data_format) : 'NHWC';
    if (df !== 'NHWC' && df !== '') throw this.err(n, `data_format '${df}' is not supported (NHWC)`);
    const x0 = () => this.input(n, 0);
    const unary = (op: string, attrs: Record<string, Attr> = {}, extra: string[] = []): TVal => {
      const x = x0();
      return this.out(n, b.op(op, [this.val(x), ...extra], attrs, n.name), [...x.shape]);
    };
    const handler = TFJS_GRAPH_OPS.get(n.op);
    if (!handler)
      throw new GraftError(
        `${this.label}: node '${n.name}' is a ${n.op}, which the TF.js graph-model importer does not support`,
      );
    return handler(this, { n, a, b, x0, unary });
  }

  binary(n: TfNode, op: string): TVal {
    const x = this.input(n, 0),
      y = this.input(n, 1);
    const shape = broadcastShape(x.shape, y.shape);
    const r = shape.length;
    if (r === 4)
      for (const v of [x, y]) {
        if (
          !v.const &&
          v.shape.length !== 4 &&
          v.shape.length !== 0 &&
          !(v.shape.length > 0 && v.shape.every((d) => d === 1))
        )
          throw this.err(
            n,
            `broadcasting a computed rank-${v.shape.length} value against a rank-4 one is not supported`,
          );
      }
    // constants are laid out NCHW against a rank-4 value; a computed rank-4 value is already; size-1 ones broadcast as they are
    const operand = (v: TVal) => (v.const ? this.val(v, r === 4 ? 4 : v.shape.length) : this.val(v));
    return this.out(n, this.b.op(op, [operand(x), operand(y)], {}, n.name), shape);
  }

  /** The fused ops after a conv/matmul, in order: each one entry of TFJS_GRAPH_FUSED_OPS. */
  fused(n: TfNode, y: string, firstArg: number, rank: number, skipBias = false): string {
    for (const f of strs(n.attr?.fused_ops)) {
      const apply = TFJS_GRAPH_FUSED_OPS.get(f);
      if (!apply) throw this.err(n, `fused op '${f}' is not supported`);
      y = apply(this, { n, y, firstArg, rank, skipBias, b: this.b });
    }
    return y;
  }

  conv(n: TfNode): TVal {
    const a = n.attr ?? {};
    const b = this.b;
    const x = this.input(n, 0);
    if (x.shape.length !== 4) throw this.err(n, 'expects a rank-4 input');
    const K = this.constOf(n, this.input(n, 1), 'filter');
    if (K.dims.length !== 4) throw this.err(n, `filter of shape [${K.dims}], expected rank 4`);
    const depthwise = n.op.includes('Depthwise');
    const [kh, kw, C, M] = K.dims as [number, number, number, number];
    const s = ints(a.strides),
      d = ints(a.dilations);
    const st = s.length === 4 ? s.slice(1, 3) : [1, 1],
      dl = d.length === 4 ? d.slice(1, 3) : [1, 1];
    if (s.length === 4 && (s[0] !== 1 || s[3] !== 1))
      throw this.err(n, 'strides over batch or channels are not supported');
    let W: Float32Array, wDims: number[], group: number, F: number;
    if (depthwise) {
      const p = depthwiseToOihw(K.data as Float32Array, K.dims);
      W = p.data;
      wDims = p.dims;
      group = C;
      F = C * M;
    } else {
      const p = hwioToOihw(K.data as Float32Array, K.dims);
      W = p.data;
      wDims = p.dims;
      F = M;
      const cin = x.shape[3];
      group = cin != null && cin !== C ? cin / C : 1;
      if (!Number.isInteger(group)) throw this.err(n, `filter [${K.dims}] does not fit ${cin} input channels`);
    }
    const fusedOps = n.op.startsWith('_Fused') || n.op.startsWith('Fused') ? strs(a.fused_ops) : [];
    let bias: Float32Array | null = null;
    if (fusedOps[0] === 'FusedBatchNorm') {
      // args: scale, offset, mean, variance → fold into the filter and a bias
      const [sc, of, mu, va] = [2, 3, 4, 5].map(
        (k) => this.constOf(n, this.input(n, k), 'batch-norm parameter').data as Float32Array,
      ) as Float32Array[];
      const eps = flt(a.epsilon, 1e-3);
      const per = W.length / F;
      bias = new Float32Array(F);
      W = Float32Array.from(W);
      for (let f = 0; f < F; f++) {
        const m = sc![f]! / Math.sqrt(va![f]! + eps);
        for (let i = 0; i < per; i++) W[f * per + i]! *= m;
        bias[f] = of![f]! - mu![f]! * m;
      }
    } else if (fusedOps[0] === 'BiasAdd') {
      const bt = this.constOf(n, this.input(n, 2), 'bias');
      if (numel(bt.dims) !== F) throw this.err(n, `bias of ${numel(bt.dims)} values for ${F} filters`);
      bias = bt.data as Float32Array;
    }
    const wName = b.constant({ dtype: 'float32', dims: wDims, data: W }, `${n.name}/weights`);
    const ins = [this.val(x), wName];
    if (bias) ins.push(b.constant({ dtype: 'float32', dims: [F], data: Float32Array.from(bias) }, `${n.name}/bias`));
    const { pads, out } = spatialPads(
      x.shape.slice(1, 3),
      [kh, kw],
      st,
      dl,
      str(a.padding),
      ints(a.explicit_paddings),
      `${this.label}: node '${n.name}'`,
    );
    const attrs = {
      kernel_shape: A.is([kh, kw]),
      strides: A.is(st),
      dilations: A.is(dl),
      group: A.i(group),
      ...(pads ? { pads: A.is(pads) } : { auto_pad: A.s('SAME_UPPER') }),
    };
    let y = b.op('Conv', ins, attrs, `${n.name}/Conv`);
    if (fusedOps.length) y = this.fused(n, y, 2, 4, true);
    return this.out(n, y, [x.shape[0]!, ...out, F]);
  }
}

/** What an op handler gets: the node, its attributes and helpers. */
interface NodeCall {
  n: TfNode;
  /** The node's attributes (an empty object when it has none). */
  a: Record<string, Json>;
  b: Builder;
  /** The node's first input. */
  x0: () => TVal;
  /** An elementwise one-input ONNX operator of the same shape, named after the node. */
  unary: (op: string, attrs?: Record<string, Attr>, extra?: string[]) => TVal;
}

type OpHandler = (im: GraphImporter, call: NodeCall) => TVal;

/** What a fused-op handler gets: the fused node, the value so far and where its extra operands start. */
interface FusedCall {
  n: TfNode;
  /** The value the fused op applies to (the conv/matmul result, or the previous fused op's). */
  y: string;
  /** The node's input index of the first extra operand (the bias). */
  firstArg: number;
  rank: number;
  /** The bias was already folded in (with a FusedBatchNorm). */
  skipBias: boolean;
  b: Builder;
}

/** The ops a _FusedConv2D / _FusedMatMul / FusedDepthwiseConv2dNative applies after it, by name: one entry each. */
export const TFJS_GRAPH_FUSED_OPS = new Handlers<(im: GraphImporter, f: FusedCall) => string>('TF.js graph fused ops')
  .register('BiasAdd', (im, { n, y, firstArg, rank, skipBias, b }) => {
    if (skipBias) return y;
    const bias = im.constOf(n, im.input(n, firstArg), 'bias');
    const C = numel(bias.dims);
    return b.op(
      'Add',
      [y, b.constant({ dtype: 'float32', dims: rank === 4 ? [C, 1, 1] : [C], data: bias.data }, `${n.name}/bias`)],
      {},
      `${n.name}/BiasAdd`,
    );
  })
  .register('FusedBatchNorm', (_im, { y }) => y) // folded into the weights by conv()
  .register('Relu', (_im, { n, y, b }) => b.op('Relu', [y], {}, `${n.name}/Relu`))
  .register('Relu6', (_im, { n, y, b }) => b.op('Clip', [y, b.f32(0), b.f32(6)], {}, `${n.name}/Relu6`))
  .register('Elu', (_im, { n, y, b }) => b.op('Elu', [y], { alpha: A.f(1) }, `${n.name}/Elu`))
  .register('Sigmoid', (_im, { n, y, b }) => b.op('Sigmoid', [y], {}, `${n.name}/Sigmoid`))
  .register('Tanh', (_im, { n, y, b }) => b.op('Tanh', [y], {}, `${n.name}/Tanh`))
  .register('LeakyRelu', (_im, { n, y, b }) =>
    b.op('LeakyRelu', [y], { alpha: A.f(flt(n.attr?.leakyrelu_alpha, 0.2)) }, `${n.name}/LeakyRelu`),
  );

/** The TensorFlow ops Graft converts, by op name: one entry each. */
export const TFJS_GRAPH_OPS = new Handlers<OpHandler>('TF.js graph')
  .register('Placeholder', (im, { n, a, b }) => {
    const dt = a.dtype?.type ?? 'DT_FLOAT';
    if (dt !== 'DT_FLOAT') throw im.err(n, `input dtype ${dt}; only float32 inputs are supported`);
    const s = shapeOf(a.shape?.shape) ?? null;
    if (!s) throw im.err(n, 'the input has no shape');
    const shape = s.map((d, i) => (i === 0 ? null : d));
    const name = b.name(n.name);
    const sym =
      shape.length === 4
        ? ['batch', 'channels', 'height', 'width']
        : shape.map((_, i) => (i === 0 ? 'batch' : `${name}_d${i}`));
    const dims: Dim[] = heldOrder(shape.length).map((t, i) => (i === 0 ? 'batch' : (shape[t] ?? sym[i]!)));
    im.g.inputs.push({ name, dtype: 'float32', shape: dims });
    return { name, shape, tfName: n.name };
  })
  .register('Const', (im, { n, a }) => {
    const w = im.weights.get(n.name);
    const t = w ?? (a.value?.tensor ? inlineTensor(a.value.tensor, `${im.label}: node '${n.name}'`) : null);
    if (!t) throw im.err(n, 'a constant with neither a weight in the manifest nor an inline value');
    return { name: null, shape: [...t.dims], const: t, tfName: n.name };
  })
  .register(['Identity', 'StopGradient', 'Snapshot', 'PreventGradient'], (_, { n, x0 }) => {
    const x = x0();
    return x.const ? { ...x } : { ...x, tfName: n.name };
  })
  .register(['Conv2D', '_FusedConv2D', 'DepthwiseConv2dNative', 'FusedDepthwiseConv2dNative'], (im, { n }) =>
    im.conv(n),
  )
  .register('BiasAdd', (im, { n }) => im.binary(n, 'Add'))
  .register(['Add', 'AddV2'], (im, { n }) => im.binary(n, 'Add'))
  .register('Sub', (im, { n }) => im.binary(n, 'Sub'))
  .register('Mul', (im, { n }) => im.binary(n, 'Mul'))
  .register(['RealDiv', 'Div'], (im, { n }) => im.binary(n, 'Div'))
  .register('Maximum', (im, { n }) => im.binary(n, 'Max'))
  .register('Minimum', (im, { n }) => im.binary(n, 'Min'))
  .register('Relu', (_, { unary }) => unary('Relu'))
  .register('Relu6', (_, { b, unary }) => unary('Clip', {}, [b.f32(0), b.f32(6)]))
  .register('Elu', (_, { unary }) => unary('Elu', { alpha: A.f(1) }))
  .register('Sigmoid', (_, { unary }) => unary('Sigmoid'))
  .register('Tanh', (_, { unary }) => unary('Tanh'))
  .register('LeakyRelu', (_, { a, unary }) => unary('LeakyRelu', { alpha: A.f(flt(a.alpha, 0.2)) }))
  .register(['Softmax', 'LogSoftmax'], (im, { n, b, x0 }) => {
    const x = x0();
    const r = x.shape.length;
    return im.out(n, b.op(n.op, [im.val(x)], { axis: A.i(onnxAxis(-1, r)) }, n.name), [...x.shape]);
  })
  .register(['FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3'], (im, { n, a, b, x0 }) => {
    const x = x0();
    const [sc, of, mu, va] = [1, 2, 3, 4].map(
      (k) => im.constOf(n, im.input(n, k), 'batch-norm parameter').data as Float32Array,
    ) as Float32Array[];
    const eps = flt(a.epsilon, 1e-3);
    const C = sc!.length;
    const mul = new Float32Array(C),
      add = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      mul[c] = sc![c]! / Math.sqrt(va![c]! + eps);
      add[c] = of![c]! - mu![c]! * mul[c]!;
    }
    const r = x.shape.length;
    const cd = r === 4 ? [C, 1, 1] : [C];
    const m = b.constant({ dtype: 'float32', dims: cd, data: mul }, `${n.name}/scale`);
    const ad = b.constant({ dtype: 'float32', dims: cd, data: add }, `${n.name}/offset`);
    return im.out(n, b.op('Add', [b.op('Mul', [im.val(x), m], {}, `${n.name}/Mul`), ad], {}, n.name), [...x.shape]);
  })
  .register(['AvgPool', 'MaxPool'], (im, { n, a, b, x0 }) => {
    const x = x0();
    if (x.shape.length !== 4) throw im.err(n, 'expects a rank-4 input');
    const k = ints(a.ksize),
      s = ints(a.strides);
    if (k[0] !== 1 || k[3] !== 1 || s[0] !== 1 || s[3] !== 1)
      throw im.err(n, 'pooling over batch or channels is not supported');
    const { pads, out } = spatialPads(
      x.shape.slice(1, 3),
      k.slice(1, 3),
      s.slice(1, 3),
      [1, 1],
      str(a.padding),
      [],
      `${im.label}: node '${n.name}'`,
    );
    const attrs: Record<string, Attr> = {
      kernel_shape: A.is(k.slice(1, 3)),
      strides: A.is(s.slice(1, 3)),
      ...(pads ? { pads: A.is(pads) } : { auto_pad: A.s('SAME_UPPER') }),
    };
    if (n.op === 'AvgPool') attrs.count_include_pad = A.i(0); // TF averages over the window's valid pixels only
    return im.out(n, b.op(n.op === 'AvgPool' ? 'AveragePool' : 'MaxPool', [im.val(x)], attrs, n.name), [
      x.shape[0]!,
      ...out,
      x.shape[3]!,
    ]);
  })
  .register(['Mean', 'Max', 'Min', 'Sum', 'Prod'], (im, { n, a, b, x0 }) => {
    const x = x0();
    const r = x.shape.length;
    const axes = [...new Set(im.constInts(n, im.input(n, 1), 'axes').map((v) => (v < 0 ? v + r : v)))].sort(
      (p, q) => p - q,
    );
    const keep = bool(a.keep_dims);
    const op = (
      { Mean: 'ReduceMean', Max: 'ReduceMax', Min: 'ReduceMin', Sum: 'ReduceSum', Prod: 'ReduceProd' } as const
    )[n.op as 'Mean'];
    const y = b.reduce(
      op,
      im.val(x),
      axes.map((t) => onnxAxis(t, r)).sort((p, q) => p - q),
      keep,
    );
    if (keep)
      return im.out(
        n,
        y,
        x.shape.map((d, i) => (axes.includes(i) ? 1 : d)),
      );
    const shape = x.shape.filter((_, i) => !axes.includes(i));
    return im.out(n, im.afterRemovingAxes(n, y, x, axes, shape), shape);
  })
  .register('Squeeze', (im, { n, a, b, x0 }) => {
    const x = x0();
    const r = x.shape.length;
    let axes = ints(a.squeeze_dims ?? a.axis).map((t) => (t < 0 ? t + r : t));
    if (!axes.length) axes = x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
    for (const t of axes)
      if (x.shape[t] !== 1 && x.shape[t] != null) throw im.err(n, `squeezes axis ${t} of size ${x.shape[t]}`);
    const shape = x.shape.filter((_, i) => !axes.includes(i));
    const y = b.squeeze(
      im.val(x),
      axes.map((t) => onnxAxis(t, r)).sort((p, q) => p - q),
    );
    return im.out(n, im.afterRemovingAxes(n, y, x, axes, shape), shape);
  })
  .register('Reshape', (im, { n, b, x0 }) => {
    const x = x0();
    const target = im.constInts(n, im.input(n, 1), 'shape');
    const known = x.shape.every((d) => d != null) ? numel(x.shape as number[]) : null;
    const rest = target.filter((d) => d !== -1);
    const shape = target.map((d) => (d === -1 ? (known != null && numel(rest) ? known / numel(rest) : null) : d));
    if (target.includes(-1) && shape[0] == null && x.shape[0] == null) shape[0] = null;
    if (target.includes(0)) throw im.err(n, 'a zero in the target shape is not supported');
    const y = b.reshape(im.tfOrder(n, x), target);
    return im.out(n, im.fromTfOrder(n, y, shape), shape);
  })
  .register('ConcatV2', (im, { n, b }) => {
    const ins = dataInputs(n);
    const vs = ins.slice(0, -1).map((_, k) => im.input(n, k));
    if (!vs.length) throw im.err(n, 'has no inputs to concatenate');
    const [a0] = im.constInts(n, im.input(n, ins.length - 1), 'axis', 1) as [number];
    const r = vs[0]!.shape.length;
    const axis = a0 < 0 ? a0 + r : a0;
    if (axis < 0 || axis >= r) throw im.err(n, `axis ${a0} is out of range for rank ${r}`);
    const shape = [...vs[0]!.shape];
    shape[axis] = vs.every((v) => v.shape[axis] != null) ? vs.reduce((s, v) => s + v.shape[axis]!, 0) : null;
    return im.out(
      n,
      b.op(
        'Concat',
        vs.map((v) => im.val(v, r)),
        { axis: A.i(onnxAxis(axis, r)) },
        n.name,
      ),
      shape,
    );
  })
  .register(['Pad', 'PadV2', 'MirrorPad'], (im, { n, a, b, x0 }) => {
    const x = x0();
    const r = x.shape.length;
    const p = im.constInts(n, im.input(n, 1), 'paddings', 2 * r);
    const order = heldOrder(r);
    const pads = [...order.map((t) => p[2 * t]!), ...order.map((t) => p[2 * t + 1]!)];
    const ins = [im.val(x), b.i64(pads)];
    let mode = 'constant';
    if (n.op === 'PadV2') ins.push(im.val({ ...im.input(n, 2), shape: [] }, 0));
    if (n.op === 'MirrorPad') {
      const m = str(a.mode);
      if (m !== 'REFLECT') throw im.err(n, `mode '${m}' is not supported (REFLECT)`);
      mode = 'reflect';
    }
    const shape = x.shape.map((d, i) => (d == null ? null : d + p[2 * i]! + p[2 * i + 1]!));
    return im.out(n, b.op('Pad', ins, { mode: A.s(mode) }, n.name), shape);
  })
  .register(['MatMul', '_FusedMatMul'], (im, { n, a, b, x0 }) => {
    const x = x0(),
      w = im.input(n, 1);
    if (x.shape.length !== 2 || w.shape.length !== 2) throw im.err(n, 'only rank-2 operands are supported');
    let xa = im.val(x);
    if (bool(a.transpose_a)) xa = b.op('Transpose', [xa], { perm: A.is([1, 0]) }, `${n.name}/transpose_a`);
    let wb: string;
    if (w.const && bool(a.transpose_b)) {
      wb = b.constant(
        { dtype: 'float32', ...permuteData(w.const.data as Float32Array, w.const.dims, [1, 0]) },
        `${n.name}/weights`,
      );
    } else {
      wb = im.val(w);
      if (bool(a.transpose_b)) wb = b.op('Transpose', [wb], { perm: A.is([1, 0]) }, `${n.name}/transpose_b`);
    }
    const m = bool(a.transpose_a) ? x.shape[1]! : x.shape[0]!;
    const units = bool(a.transpose_b) ? w.shape[0]! : w.shape[1]!;
    let y = b.op('MatMul', [xa, wb], {}, `${n.name}/MatMul`);
    if (n.op === '_FusedMatMul') y = im.fused(n, y, 2, 2);
    return im.out(n, y, [m, units]);
  });

const refNode = (r: string): string => r.replace(/^\^/, '').replace(/:\d+$/, '');
const dataInputs = (n: TfNode): string[] => (n.input ?? []).filter((i) => !i.startsWith('^'));

/**
 * Import a TF.js graph model: its model.json object and decoded weights (by name, TF layout).
 * `label` names the file in messages.
 */
export function importTfjsGraphModel(
  json: Json,
  weights: Map<string, Tensor>,
  label: string,
  opts: TfjsGraphOptions = {},
): Graph {
  const topo = json.modelTopology;
  const nodes: TfNode[] = topo?.node;
  if (!Array.isArray(nodes) || !nodes.length) throw new GraftError(`${label}: the graph model has no nodes`);
  nodes.forEach((n, i) => {
    const bad = (what: string): never => {
      throw new GraftError(`${label}: node ${i}${typeof n?.name === 'string' ? ` ('${n.name}')` : ''} ${what}`);
    };
    if (n === null || typeof n !== 'object') bad('is not an object');
    if (typeof n.name !== 'string' || typeof n.op !== 'string') bad('has no name or op');
    if (n.input !== undefined && (!Array.isArray(n.input) || n.input.some((x) => typeof x !== 'string')))
      bad('has inputs that are not a list of names');
    if (n.attr !== undefined && (n.attr === null || typeof n.attr !== 'object'))
      bad('has attributes that are not an object');
  });
  if (topo.library?.function?.length)
    throw new GraftError(`${label}: graph models with functions (control flow) are not supported`);
  const sig = json.signature ?? json.userDefinedMetadata?.signature;
  let outputs: string[] = sig?.outputs
    ? Object.values(sig.outputs as Record<string, { name?: string }>).map((o) => String(o.name))
    : [];
  if (!outputs.length) {
    const used = new Set(nodes.flatMap((n) => (n.input ?? []).map(refNode)));
    outputs = nodes.filter((n) => !used.has(n.name) && n.op !== 'Const' && n.op !== 'NoOp').map((n) => n.name);
  }
  const imp = new GraphImporter(weights, label);
  const outs = imp.run(nodes, outputs);
  const g = imp.g;
  // every placeholder is an input, even one the outputs do not use (it keeps the input order of the file)
  g.name = opts.name ?? 'tfjs-graph-model';
  g.docString = `imported from the TF.js graph model ${label}`;
  for (const v of outs) if (v.const) throw new GraftError(`${label}: output '${v.tfName}' is a constant`);
  imp.setOutputs(
    outs.map((v) => ({
      name: v.name!,
      shape: heldOrder(v.shape.length).map((t, i): Dim => (i === 0 ? 'batch' : (v.shape[t] ?? null))),
    })),
    (_, k) => `${outs[k]!.tfName}/output`,
  );
  g.prune();

  const inp = g.dataInputs();
  const s = inp.length === 1 ? inp[0]!.shape : undefined;
  if (s && s.length === 4 && (s[1] === 1 || s[1] === 3) && typeof s[2] === 'number' && typeof s[3] === 'number') {
    const ch = s[1] as 1 | 3;
    const p = opts.preprocess ?? {};
    const fill = (v: number[] | undefined, dflt: number) =>
      !v || !v.length ? Array(ch).fill(dflt) : v.length === 1 ? Array(ch).fill(v[0]) : v;
    setPreprocess(g, {
      layout: 'NCHW',
      width: s[3],
      height: s[2],
      channels: ch,
      channelOrder: p.channelOrder ?? (ch === 1 ? 'GRAY' : 'RGB'),
      resize: p.resize ?? 'stretch',
      mean: fill(p.mean, 0),
      std: fill(p.std, 1),
      source: p.mean || p.std ? 'flag' : 'default',
    });
  }
  const last = outs[0]?.shape;
  const classes = last && last.length === 2 ? last[1] : null;
  if (classes != null && opts.labels) {
    let labels: string[];
    if (Array.isArray(opts.labels)) labels = opts.labels;
    else {
      if (!existsSync(opts.labels)) throw new GraftError(`labels file not found: ${opts.labels}`);
      labels = readFileSync(opts.labels, 'utf8')
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter(Boolean)
        .slice(0, classes);
    }
    if (labels.length !== classes)
      throw new GraftError(`${labels.length} labels given for a model with ${classes} outputs`);
    setLabels(g, labels);
  }
  return g;
}
