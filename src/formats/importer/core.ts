/**
 * The importer core every foreign-format reader (TFLite, TF.js layers, TF.js graph) is built on. It owns
 * what those importers share, so that each format is only a reader of its file plus a table of small
 * per-operator handlers:
 *
 * - value layout: an imported value's ONNX axis i holds the source tensor's axis perm[i]
 *   (NHWC sources are held NCHW, `NCHW`; Keras tensors channels-first, `channelsFirst`), and whether
 *   moving axes keeps the memory order (only size-1 axes move: a Reshape instead of a Transpose);
 * - weight layouts: HWIO / OHWI convolution kernels → OIHW, depthwise kernels → (C·M)·1·H·W;
 * - TensorFlow's SAME/VALID/explicit padding arithmetic;
 * - dequantization: affine (q − zero_point)·scale per tensor or per axis, TF.js's q·scale + min, float16;
 * - graph emission through the Builder: a graph set up for opset 17, named initializers, nodes with an
 *   exact output name, a result renamed after the layer or node that made it, distinct graph outputs;
 * - handler registration: `new Handlers<H>(format)`, `register(opType, handler)`, one entry per operator.
 */
import { Graph, type Attr, type ValueInfo } from '../../graph/graph.js';
import { A, Builder } from '../../graph/builder.js';
import { type Tensor, halfToFloat, numel, permuteData } from '../../graph/tensor.js';
import { GraftError } from '../../util/errors.js';

/* ------------------------------------------------------------------------------------------------
 * Handler registration
 * ---------------------------------------------------------------------------------------------- */

/** A table of operator handlers, by the source format's operator (or layer) name. */
export class Handlers<H> {
  private readonly table = new Map<string, H>();

  constructor(readonly format: string) {}

  /** Add one handler; `opType` may be a list of names sharing it. A name is registered once. */
  register(opType: string | string[], handler: H): this {
    for (const t of typeof opType === 'string' ? [opType] : opType) {
      if (this.table.has(t)) throw new Error(`${this.format}: operator '${t}' is registered twice`);
      this.table.set(t, handler);
    }
    return this;
  }

  get(opType: string): H | undefined {
    return this.table.get(opType);
  }

  has(opType: string): boolean {
    return this.table.has(opType);
  }

  /** The registered names, sorted. */
  names(): string[] {
    return [...this.table.keys()].sort();
  }
}

/* ------------------------------------------------------------------------------------------------
 * Layout: source (NHWC / channels-last) axes ↔ the ONNX value's axes
 * ---------------------------------------------------------------------------------------------- */

/** An NHWC tensor held NCHW: ONNX axis i holds source axis NCHW[i]. */
export const NCHW: number[] = [0, 3, 1, 2]; // never mutated

export const identity = (r: number): number[] => Array.from({ length: r }, (_, i) => i);

export const samePerm = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** The inverse permutation: q[p[i]] = i. */
export const invertPerm = (p: readonly number[]): number[] => {
  const q = new Array<number>(p.length);
  p.forEach((v, i) => {
    q[v] = i;
  });
  return q;
};

/** A channels-last tensor of rank r held channels-first (batch, channels, the rest), for rank ≥ 3. */
export const channelsFirst = (r: number): number[] =>
  r < 3 ? identity(r) : [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];

/**
 * Whether transposing a value of `dims` by `perm` leaves its elements in memory order: only size-1 axes
 * move (then a Reshape relabels the axes, or nothing is needed at all). An axis of unknown size (null)
 * counts as moving; one past the dims (undefined) as size 1.
 */
export function keepsMemoryOrder(dims: readonly (number | null | undefined)[], perm: readonly number[]): boolean {
  const moving = perm.filter((p) => dims[p] !== 1 && dims[p] !== undefined);
  return moving.every((p, i) => i === 0 || p > moving[i - 1]!);
}

/**
 * A value held in order `held` (ONNX axis i = source axis held[i]) brought to the source's own axis order,
 * for operators that look at memory order (reshape, flatten): the value itself when only size-1 axes
 * move, else a Transpose (named after `base` when given).
 */
export function toSourceOrder(
  b: Builder,
  x: string,
  held: number[],
  srcShape: readonly (number | null | undefined)[],
  base?: string,
): string {
  if (keepsMemoryOrder(srcShape, held)) return x;
  const perm = invertPerm(held);
  return base ? b.op('Transpose', [x], { perm: A.is(perm) }, base) : b.transpose(x, perm);
}

/** A value in the source's own axis order (shape `srcShape`) brought to the held order `held`; the inverse of toSourceOrder. */
export function fromSourceOrder(
  b: Builder,
  x: string,
  held: number[],
  srcShape: readonly (number | null | undefined)[],
  base?: string,
): string {
  if (keepsMemoryOrder(srcShape, held)) return x;
  return base ? b.op('Transpose', [x], { perm: A.is(held) }, base) : b.transpose(x, held);
}

/* ------------------------------------------------------------------------------------------------
 * Weight layouts (float32 data, permuted with the one permuteData)
 * ---------------------------------------------------------------------------------------------- */

/** A Keras/TF convolution kernel [kh, kw, cin, cout] (HWIO) → ONNX [cout, cin, kh, kw] (OIHW). */
export function hwioToOihw(data: Float32Array, dims: number[]): { data: Float32Array; dims: number[] } {
  return permuteData(data, dims, [3, 2, 0, 1]);
}

/** A TFLite convolution kernel [cout, kh, kw, cin] (OHWI) → ONNX [cout, cin, kh, kw] (OIHW). */
export function ohwiToOihw(data: Float32Array, dims: number[]): { data: Float32Array; dims: number[] } {
  return permuteData(data, dims, [0, 3, 1, 2]);
}

/** A TF depthwise kernel [kh, kw, C, M] → ONNX [C·M, 1, kh, kw]: C·M output channels of one input channel each (group = C, channel c·M + m). */
export function depthwiseToOihw(data: Float32Array, dims: number[]): { data: Float32Array; dims: number[] } {
  const [kh, kw, C, M] = dims as [number, number, number, number];
  return { data: permuteData(data, dims, [2, 3, 0, 1]).data, dims: [C * M, 1, kh, kw] };
}

/** A TFLite depthwise kernel [1, kh, kw, C·M] → ONNX [C·M, 1, kh, kw]. */
export function tfliteDepthwiseToOihw(data: Float32Array, dims: number[]): { data: Float32Array; dims: number[] } {
  const [, kh, kw, CM] = dims as [number, number, number, number];
  return { data: permuteData(data, dims, [3, 0, 1, 2]).data, dims: [CM, 1, kh, kw] };
}

/* ------------------------------------------------------------------------------------------------
 * Padding (TensorFlow's rule)
 * ---------------------------------------------------------------------------------------------- */

/** Explicit (begin, end) padding for one spatial axis, as TensorFlow computes SAME: the extra pad goes at the end. */
export function samePadding(inSize: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const eff = (kernel - 1) * dilation + 1;
  const out = Math.ceil(inSize / stride);
  const total = Math.max(0, (out - 1) * stride + eff - inSize);
  const begin = Math.floor(total / 2);
  return [begin, total - begin];
}

/**
 * Pads and output sizes of a windowed operator over spatial sizes `inp` (null = unknown), TF's rule:
 * SAME totals max((out−1)·s + (k−1)·d + 1 − in, 0), the odd one at the end; VALID pads nothing;
 * EXPLICIT takes `explicit` ([begin, end] per axis of the whole NHWC tensor). `pads` is ONNX's
 * [begins…, ends…], or null where SAME meets an unknown size (then auto_pad SAME_UPPER does it).
 */
export function windowPads(
  inp: (number | null)[],
  k: number[],
  s: number[],
  d: number[],
  padding: 'same' | 'valid' | 'explicit',
  where: string,
  explicit: number[] = [],
): { pads: number[] | null; out: (number | null)[] } {
  const begin: number[] = [],
    end: number[] = [],
    out: (number | null)[] = [];
  let known = true;
  inp.forEach((n, i) => {
    const eff = (k[i]! - 1) * d[i]! + 1;
    if (padding === 'explicit') {
      const pb = explicit[2 * (i + 1)] ?? 0,
        pe = explicit[2 * (i + 1) + 1] ?? 0;
      begin.push(pb);
      end.push(pe);
      out.push(n == null ? null : Math.floor((n + pb + pe - eff) / s[i]!) + 1);
      return;
    }
    if (n == null) {
      known = false;
      out.push(null);
      return;
    }
    if (padding === 'valid') {
      const o = Math.floor((n - eff) / s[i]!) + 1;
      if (o < 1) throw new GraftError(`${where}: a ${k.join('×')} window does not fit an input of ${inp.join('×')}`);
      out.push(o);
      begin.push(0);
      end.push(0);
    } else {
      const [b, e] = samePadding(n, k[i]!, s[i]!, d[i]!);
      out.push(Math.ceil(n / s[i]!));
      begin.push(b);
      end.push(e);
    }
  });
  if (!known) return { pads: padding === 'valid' ? Array(2 * inp.length).fill(0) : null, out };
  return { pads: [...begin, ...end], out };
}

/* ------------------------------------------------------------------------------------------------
 * Dequantization
 * ---------------------------------------------------------------------------------------------- */

/** Affine quantization parameters: one scale (per tensor) or one per index of `axis` (per axis). */
export interface AffineQuant {
  scale: number[];
  zeroPoint: number[];
  /** The axis the scales run along, when there are several. */
  axis: number;
}

/** (q − zero_point) × scale, per tensor or per axis (`dims` is the tensor's shape), in float32. */
export function dequantizeAffine(raw: ArrayLike<number>, q: AffineQuant, dims: number[]): Float32Array {
  const out = new Float32Array(raw.length);
  if (q.scale.length === 1) {
    const s = q.scale[0]!,
      z = q.zeroPoint[0]!;
    for (let i = 0; i < raw.length; i++) out[i] = (raw[i]! - z) * s;
    return out;
  }
  const inner = numel(dims.slice(q.axis + 1));
  const ch = q.scale.length;
  for (let i = 0; i < raw.length; i++) {
    const c = Math.floor(i / inner) % ch;
    out[i] = (raw[i]! - (q.zeroPoint.length > 1 ? q.zeroPoint[c]! : q.zeroPoint[0]!)) * q.scale[c]!;
  }
  return out;
}

/** q × scale + min (TF.js's weight quantization), rounded when the original values were integers. */
export function dequantizeMinScale(raw: ArrayLike<number>, scale: number, min: number, round = false): Float32Array {
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const x = raw[i]! * scale + min;
    out[i] = round ? Math.round(x) : x;
  }
  return out;
}

/** IEEE half-precision bit patterns → float32. */
export function float16ToFloat32(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]!);
  return out;
}

/* ------------------------------------------------------------------------------------------------
 * Graph emission
 * ---------------------------------------------------------------------------------------------- */

/** The graph an importer fills, with its Builder and the naming rules every importer follows. */
export class Emitter {
  readonly g = new Graph();
  readonly b: Builder;
  /** Initializers made once per key (a shared layer, a constant in one layout). */
  private readonly cache = new Map<string, string>();

  constructor(producerName = 'graft') {
    this.g.opsets = { '': 17 };
    this.g.producerName = producerName;
    this.b = new Builder(this.g);
  }

  /** A float32 initializer named after `base` (made unique). */
  initializer(base: string, data: Float32Array, dims: number[]): string {
    const name = this.b.name(base);
    this.g.initializers.set(name, { dtype: 'float32', dims, data });
    return name;
  }

  /** An initializer made once per key: later calls with the same key return the first one's name. */
  cachedInitializer(key: string, base: string, make: () => Tensor): string {
    const hit = this.cache.get(key);
    if (hit) return hit;
    const name = this.b.name(base);
    this.g.initializers.set(name, make());
    this.cache.set(key, name);
    return name;
  }

  /** Emit one node whose output has exactly the name given. */
  node(opType: string, inputs: string[], attrs: Record<string, Attr>, out: string): string {
    this.g.nodes.push({ name: this.b.name(`${out}_node`), opType, domain: '', inputs, outputs: [out], attrs });
    return out;
  }

  /** How many nodes the Builder has emitted: the mark `nameResult` starts from. */
  mark(): number {
    return this.b.emitted.length;
  }

  /**
   * Rename `value`, when a node emitted since `mark` computes it, after the layer or node that made it
   * (readable graphs, inner values probe-able by their source names). Returns the value's name.
   */
  nameResult(mark: number, value: string, base: string): string {
    const fresh = this.b.emitted.slice(mark);
    const p = fresh.find((x) => x.outputs.includes(value));
    if (!p) return value;
    const nn = this.b.name(base);
    p.outputs = p.outputs.map((o) => (o === value ? nn : o));
    for (const f of fresh) f.inputs = f.inputs.map((i) => (i === value ? nn : i));
    return nn;
  }

  /** The graph's outputs: distinct values, never a graph input itself (an Identity named `identityName(value)` then). */
  setOutputs(
    outs: { name: string; shape: ValueInfo['shape'] }[],
    identityName: (name: string, k: number) => string,
  ): void {
    const seen = new Set<string>(this.g.inputs.map((i) => i.name));
    this.g.outputs = outs.map((v, k) => {
      let name = v.name;
      if (seen.has(name)) name = this.b.op('Identity', [name], {}, identityName(name, k));
      seen.add(name);
      return { name, dtype: 'float32', shape: v.shape };
    });
  }
}
