/**
 * TFLite → Graph: the importer on top of the reader (./tflite-reader.ts) and the importer core
 * (./importer/core.ts), with one handler per TFLite operator in TFLITE_HANDLERS.
 *
 * The imported graph computes in float32: quantized weights are dequantized, (q − zero_point) ×
 * scale, per tensor or per channel; QUANTIZE/DEQUANTIZE become nothing. TFLite is NHWC; the ONNX
 * graph is NCHW. The layout is converted once, at the boundary: the ONNX input is declared NCHW,
 * convolution weights are stored OIHW, and every other operator's axes are remapped, so no
 * Transpose surrounds each node. Each value remembers how its axes relate to the TFLite tensor's
 * (a permutation), which is how axis-dependent operators (MEAN, SOFTMAX, CONCATENATION, PAD, …)
 * find their ONNX axes, and where a Transpose is needed at all (RESHAPE of a feature map whose
 * memory order differs).
 */
import { readFileSync, existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { Graph, Dim, Attr } from '../graph/graph.js';
import { A } from '../graph/builder.js';
import { numel, permuteData } from '../graph/tensor.js';
import {
  Emitter,
  Handlers,
  NCHW,
  identity,
  samePerm as same,
  keepsMemoryOrder,
  toSourceOrder,
  samePadding,
  ohwiToOihw,
  tfliteDepthwiseToOihw,
} from './importer/core.js';
import {
  ACT,
  PAD_SAME,
  TFL_TYPE,
  TYPE_NAMES,
  INTEGER_TYPES,
  parseTflite,
  tfliteOpName,
  rawValues,
  dequantize,
  quantOf,
  embeddedFiles,
  type TfliteModel,
  type TfliteSubgraph,
  type TfliteTensor,
  type TfliteOperator,
} from './tflite-reader.js';
import { setPreprocess, setLabels, type ImagePreprocess } from './preprocess.js';
import { readLabels, parseLabels } from './labels.js';
import { GraftError } from '../util/errors.js';

export {
  TFL_TYPE,
  tfliteOpName,
  parseTflite,
  rawValues,
  dequantize,
  embeddedFiles,
  type TfliteModel,
  type TfliteSubgraph,
  type TfliteTensor,
  type TfliteOperator,
  type TfliteQuant,
  type Options,
} from './tflite-reader.js';

/* ------------------------------------------------------------------------------------------------
 * Import
 * ---------------------------------------------------------------------------------------------- */

export interface TfliteImportOptions {
  /** Class names: a labels file (one per line; "index name" lines accepted) or the names themselves. */
  labels?: string | string[];
  /** Batch dimension of the ONNX input: 'dynamic' (default, a symbolic 'batch') or the file's fixed size. */
  batch?: 'dynamic' | 'fixed';
  /** Subgraph to import (default 0, the main one). */
  subgraph?: number;
  /**
   * Leave out a final SOFTMAX, so the outputs are logits: what a cross-entropy loss wants when the
   * model is fine-tuned (default false: the outputs are the model's own).
   */
  logits?: boolean;
}

/** An imported activation: its ONNX value and how its axes map to the TFLite tensor's. */
interface Val {
  name: string;
  /** ONNX axis i is TFLite axis perm[i]. */
  perm: number[];
  /** Zero padding not yet applied ([top, left, bottom, right]), folded into a following convolution. */
  pendingPad?: { source: Val; pads: number[] };
}

/** Whether a value with axes in order `perm` has the same element order in memory as with identity order. */
const sameMemoryOrder = (perm: number[], tflShape: number[]): boolean => keepsMemoryOrder(tflShape, perm);

/** TensorFlow's SAME padding of one axis (the importer core's). */
export { samePadding };

export function readTflite(path: string, opts: TfliteImportOptions = {}): Graph {
  if (!existsSync(path)) throw new GraftError(`model file not found: ${path}`);
  return decodeTflite(readFileSync(path), opts, path);
}

export function decodeTflite(bytes: Uint8Array, opts: TfliteImportOptions = {}, label = 'model'): Graph {
  const model = parseTflite(bytes, label);
  const g = new Importer(model, label, opts).run();
  if (opts.labels) {
    const labels = typeof opts.labels === 'string' ? readLabels(opts.labels) : opts.labels;
    setLabels(g, labels);
  } else {
    const labels = embeddedLabels(bytes, g);
    if (labels) setLabels(g, labels);
  }
  return g;
}

/** Class names packed into the model: the embedded .txt file with one line per output class. */
function embeddedLabels(bytes: Uint8Array, g: Graph): string[] | undefined {
  const classes = g.outputs[0]?.shape?.at(-1);
  if (typeof classes !== 'number') return undefined;
  for (const [name, data] of embeddedFiles(bytes)) {
    if (!/\.txt$/i.test(name)) continue;
    const labels = parseLabels(new TextDecoder().decode(data));
    if (labels.length === classes) return labels;
  }
  return undefined;
}

class Importer extends Emitter {
  readonly sg: TfliteSubgraph;
  readonly vals = new Map<number, Val>();
  /** Tensors that hold constants: their own index, or the constant they alias through (DE)QUANTIZE. */
  readonly constOf = new Map<number, number>();
  readonly consumers = new Map<number, TfliteOperator[]>();
  readonly dynamic: boolean;
  /** Constants already placed as initializers, by tensor and axis order. */
  readonly constCache = new Map<string, string>();

  constructor(
    readonly m: TfliteModel,
    readonly label: string,
    readonly opts: TfliteImportOptions,
  ) {
    super('graft (from TFLite)');
    const si = opts.subgraph ?? 0;
    const sg = m.subgraphs[si];
    if (!sg) throw new GraftError(`${label} has ${m.subgraphs.length} subgraph(s), no subgraph ${si}`);
    this.sg = sg;
    this.g.name = sg.name || basename(label).replace(/\.tflite$/, '');
    this.g.docString = m.description;
    this.dynamic = (opts.batch ?? 'dynamic') === 'dynamic';
    for (const t of sg.tensors)
      if (t.buffer > 0 && m.buffers[t.buffer]!.byteLength > 0) this.constOf.set(t.index, t.index);
    for (const op of sg.operators)
      for (const i of op.inputs) {
        if (i < 0) continue;
        let l = this.consumers.get(i);
        if (!l) this.consumers.set(i, (l = []));
        l.push(op);
      }
  }

  where(op: TfliteOperator): string {
    return `${this.label}: operator ${op.index} (${tfliteOpName(op.code)})`;
  }

  tensor(i: number): TfliteTensor {
    const t = this.sg.tensors[i];
    if (!t)
      throw new GraftError(
        `${this.label}: an operator needs tensor ${i}, but the subgraph has tensors 0 to ${this.sg.tensors.length - 1}`,
      );
    return t;
  }

  /** A readable ONNX name for a tensor: TFLite joins the names of the TF ops it fused with ';', keep the first. */
  nameOf(i: number): string {
    return this.tensor(i).name.split(';')[0] || `tensor_${i}`;
  }

  /* ---- values ---- */

  isConst(i: number): boolean {
    return this.constOf.has(i);
  }

  /** A constant's real values (dequantized), in TFLite layout. */
  constData(i: number, op: TfliteOperator): { data: Float32Array; dims: number[] } {
    const src = this.tensor(this.constOf.get(i)!);
    const own = this.tensor(i).shape;
    // a constant reached through (DE)QUANTIZE must have the shape the operator's tensor declares
    if (own.length !== src.shape.length || own.some((d, k) => d !== src.shape[k]))
      throw new GraftError(
        `${this.where(op)}: tensor '${this.tensor(i).name}' of shape [${own}] takes its values from '${src.name}' of shape [${src.shape}]`,
      );
    return { data: dequantize(this.m, src, this.where(op)), dims: src.shape };
  }

  constInts(i: number, op: TfliteOperator): number[] {
    const c = this.constOf.get(i);
    if (c == null) throw new GraftError(`${this.where(op)}: input '${this.tensor(i).name}' must be a constant`);
    const v = Array.from(rawValues(this.m, this.tensor(c)));
    if (v.some((x) => !Number.isSafeInteger(x)))
      throw new GraftError(
        `${this.where(op)}: input '${this.tensor(i).name}' must hold integers, it holds [${v.slice(0, 8)}${v.length > 8 ? ', …' : ''}]`,
      );
    return v;
  }

  /** The ONNX value of an activation input, with any folded padding applied. */
  act(i: number, op: TfliteOperator): Val {
    const v = this.vals.get(i);
    if (v) return v.pendingPad ? this.materializePad(i, v) : v;
    if (this.isConst(i)) {
      const { data, dims } = this.constData(i, op);
      return { name: this.initializer(this.nameOf(i), data, dims), perm: identity(dims.length) };
    }
    throw new GraftError(
      `${this.where(op)}: input tensor ${i} ('${this.tensor(i).name}') is computed by no earlier operator`,
    );
  }

  /** An input in the axis order `perm` (relative to the TFLite tensor), padded to `perm.length` axes like TFLite broadcasting. */
  input(i: number, op: TfliteOperator, perm: number[]): string {
    const rank = perm.length;
    if (!this.vals.has(i) && this.isConst(i)) {
      const key = `${this.constOf.get(i)}|${perm}`;
      const hit = this.constCache.get(key);
      if (hit) return hit;
      const { data, dims } = this.constData(i, op);
      let name: string;
      if (dims.length > rank)
        throw new GraftError(
          `${this.where(op)}: constant input '${this.tensor(i).name}' has rank ${dims.length}, more than the operator's ${rank}`,
        );
      if (dims.length === 0 || numel(dims) === 1)
        name = this.initializer(this.nameOf(i), data, dims.length === 0 ? [] : new Array(rank).fill(1));
      else {
        const full = [...new Array(rank - dims.length).fill(1), ...dims];
        name = this.initializer(
          this.nameOf(i),
          permuteData(data, full, perm).data,
          perm.map((p) => full[p]!),
        );
      }
      this.constCache.set(key, name);
      return name;
    }
    let v = this.act(i, op);
    const shape = this.tensor(i).shape;
    if (v.perm.length < rank) {
      if (shape.length > rank)
        throw new GraftError(
          `${this.where(op)}: input '${this.tensor(i).name}' declares shape [${shape}], of higher rank than the operator's ${rank}`,
        );
      // broadcast a lower-rank value: TFLite order, then leading unit axes
      const name = this.reorder(v, identity(v.perm.length), shape);
      v = { name: this.b.unsqueeze(name, identity(rank - v.perm.length)), perm: identity(rank) };
      return this.reorder(v, perm, [...new Array(rank - shape.length).fill(1), ...shape]);
    }
    return this.reorder(v, perm, shape);
  }

  /** The value's axes rearranged into order `perm` (a Transpose only when the order actually differs). */
  reorder(v: Val, perm: number[], tflShape: number[]): string {
    if (same(v.perm, perm)) return v.name;
    if (perm.some((p) => tflShape[p] === undefined) || v.perm.length !== perm.length)
      throw new GraftError(
        `${this.label}: a value of rank ${v.perm.length} is used where its tensor declares shape [${tflShape}] (rank ${perm.length} expected)`,
      );
    const t = perm.map((p) => v.perm.indexOf(p));
    // moving unit axes only: a Reshape keeps the element order and, unlike Transpose, costs nothing
    if (
      sameMemoryOrder(
        t,
        v.perm.map((p) => tflShape[p] ?? 1),
      ) &&
      !tflShape.slice(1).some((d) => d < 0)
    ) {
      return this.b.reshape(
        v.name,
        this.reshapeTarget(
          perm.map((p) => tflShape[p]!),
          perm[0] === 0 && v.perm[0] === 0,
        ),
      );
    }
    return this.b.transpose(v.name, t);
  }

  /** A Reshape target; with a dynamic batch, the leading axis becomes -1 when it is the batch on both sides. */
  reshapeTarget(dims: number[], batchLeads: boolean): number[] {
    return this.dynamic && batchLeads && dims[0] === 1 ? [-1, ...dims.slice(1)] : dims;
  }

  setOut(op: TfliteOperator, name: string, perm: number[], k = 0): void {
    this.vals.set(op.outputs[k]!, { name, perm });
  }

  outName(op: TfliteOperator, k = 0): string {
    return this.b.name(this.nameOf(op.outputs[k]!));
  }

  /** Apply a fused activation (one entry of TFLITE_FUSED_ACTIVATIONS). Returns the output value name. */
  fused(op: TfliteOperator, act: number, emit: (name: string) => string): string {
    if (act === ACT.NONE) return emit(this.outName(op));
    const name = ACT_NAMES.get(act);
    const apply = name === undefined ? undefined : TFLITE_FUSED_ACTIVATIONS.get(name);
    if (!apply)
      throw new GraftError(`${this.where(op)}: fused activation ${act}${name ? ` (${name})` : ''} is not supported`);
    const pre = emit(this.b.name(`${this.nameOf(op.outputs[0]!)}/preact`));
    return apply(this, pre, this.outName(op));
  }

  /* ---- the graph ---- */

  run(): Graph {
    const sg = this.sg;
    for (const i of sg.inputs) {
      const t = this.tensor(i);
      if (t.type !== TFL_TYPE.FLOAT32 && !(INTEGER_TYPES.has(t.type) && t.quant))
        throw new GraftError(
          `${this.label}: input '${t.name}' is ${TYPE_NAMES[t.type] ?? t.type}; only float and quantized inputs are supported`,
        );
      quantOf(t, `${this.label}: input`);
      const perm = t.shape.length === 4 ? NCHW : identity(t.shape.length);
      const name = this.b.name(this.nameOf(i));
      const shape: Dim[] = perm.map((p) => t.shape[p]!);
      if (this.dynamic && shape.length) shape[0] = 'batch';
      this.g.inputs.push({ name, dtype: 'float32', shape });
      this.vals.set(i, { name, perm });
    }
    for (const op of sg.operators) this.convert(op);
    for (const i of sg.outputs) {
      const t = this.tensor(i);
      let v = this.vals.get(i);
      if (!v) throw new GraftError(`${this.label}: output '${t.name}' is computed by no operator`);
      if (v.pendingPad) v = this.materializePad(i, v);
      let name = v.name;
      if (this.opts.logits) {
        const p = this.g.nodes.find((n) => n.outputs[0] === name);
        if (p?.opType === 'Softmax') name = p.inputs[0]!;
      }
      if (this.g.outputs.some((o) => o.name === name) || this.g.inputs.some((o) => o.name === name))
        name = this.node('Identity', [name], {}, this.b.name(this.nameOf(i)));
      const shape: Dim[] = v.perm.map((p) => t.shape[p]!);
      if (this.dynamic && shape.length && v.perm[0] === 0) shape[0] = 'batch';
      this.g.outputs.push({ name, dtype: 'float32', shape });
    }
    this.g.prune();
    this.recordPreprocess();
    this.g.metadata['graft.source'] = `tflite:${basename(this.label)}`;
    return this.g;
  }

  /** What an image must become before it enters the graph, from the input's quantization (or the QUANTIZE right after it). */
  recordPreprocess(): void {
    if (this.sg.inputs.length !== 1) return;
    const t = this.tensor(this.sg.inputs[0]!);
    if (t.shape.length !== 4 || (t.shape[3] !== 3 && t.shape[3] !== 1)) return;
    const channels = t.shape[3] as 1 | 3;
    let range: [number, number] | undefined;
    const quantRange = (x: TfliteTensor): [number, number] | undefined => {
      const q = x.quant;
      if (!q || q.scale.length !== 1) return undefined;
      const [lo, hi] = x.type === TFL_TYPE.UINT8 ? [0, 255] : x.type === TFL_TYPE.INT8 ? [-128, 127] : [NaN, NaN];
      if (!Number.isFinite(lo)) return undefined;
      return [(lo - q.zeroPoint[0]!) * q.scale[0]!, (hi - q.zeroPoint[0]!) * q.scale[0]!];
    };
    if (INTEGER_TYPES.has(t.type)) range = quantRange(t);
    else {
      // a float input quantized straight away: the quantizer's range is the range the model was calibrated on
      const next = this.consumers.get(t.index) ?? [];
      if (next.length === 1 && next[0]!.code === 114 /* QUANTIZE */)
        range = quantRange(this.tensor(next[0]!.outputs[0]!));
    }
    const base = {
      layout: 'NCHW' as const,
      width: t.shape[2]!,
      height: t.shape[1]!,
      channels,
      channelOrder: channels === 3 ? ('RGB' as const) : ('GRAY' as const),
      resize: 'stretch' as const,
    };
    let p: ImagePreprocess;
    if (range) {
      // value = (pixel/255 − mean)/std maps pixel 0 → lo and 255 → hi
      const std = 1 / (range[1] - range[0]);
      const mean = -range[0] * std;
      p = { ...base, mean: new Array(channels).fill(mean), std: new Array(channels).fill(std), source: 'file' };
    } else {
      p = { ...base, mean: new Array(channels).fill(0.5), std: new Array(channels).fill(0.5), source: 'default' };
    }
    setPreprocess(this.g, p);
  }

  convert(op: TfliteOperator): void {
    const name = tfliteOpName(op.code);
    const handler = TFLITE_HANDLERS.get(name);
    if (!handler || op.code === 32 /* CUSTOM */) {
      const what = op.code === 32 ? `custom operator '${op.customCode ?? '?'}'` : `operator ${name}`;
      throw new GraftError(
        `${this.label}: unsupported ${what} (operator index ${op.index}); Graft imports ${TFLITE_HANDLERS.names().join(', ')}`,
      );
    }
    for (const i of op.outputs) {
      const t = this.tensor(i);
      if (t.unsupportedQuant || t.sparse) quantOf(t, this.where(op));
    }
    handler(this, op);
  }

  /* ---- operator helpers ---- */

  conv(op: TfliteOperator, depthwise: boolean): void {
    const o = op.options;
    // Conv2DOptions: padding 0, stride_w 1, stride_h 2, fused 3, dilation_w 4, dilation_h 5
    // DepthwiseConv2DOptions: padding 0, stride_w 1, stride_h 2, depth_multiplier 3, fused 4, dilation_w 5, dilation_h 6
    const padding = o.byte(0),
      sw = o.int(1, 1),
      sh = o.int(2, 1);
    const act = o.byte(depthwise ? 4 : 3);
    const dw = o.int(depthwise ? 5 : 4, 1),
      dh = o.int(depthwise ? 6 : 5, 1);
    const [xi, wi, bi] = op.inputs as [number, number, number?];
    const xt = this.tensor(xi),
      wt = this.tensor(wi);
    if (!this.isConst(wi)) throw new GraftError(`${this.where(op)}: weights '${wt.name}' must be constant`);
    if (xt.shape.length !== 4 || wt.shape.length !== 4)
      throw new GraftError(`${this.where(op)}: expects 4-D input and weights, got [${xt.shape}] and [${wt.shape}]`);
    const { data, dims } = this.constData(wi, op);
    const [, kh, kw] = dims as [number, number, number, number];
    const cin = xt.shape[3]!;
    // depthwise [1, kh, kw, cin·mult] → [cin·mult, 1, kh, kw], one group per input channel; else OHWI → OIHW
    const w = depthwise ? tfliteDepthwiseToOihw(data, dims) : ohwiToOihw(data, dims);
    const group = depthwise ? cin : cin / dims[3]!;
    const wName = this.initializer(this.nameOf(wi), w.data, w.dims);
    const inputs = [wName];
    if (bi != null && bi >= 0) {
      if (!this.isConst(bi)) throw new GraftError(`${this.where(op)}: bias '${this.tensor(bi).name}' must be constant`);
      const bias = this.constData(bi, op);
      inputs.push(this.initializer(this.nameOf(bi), bias.data, [bias.data.length]));
    }
    let pads = [0, 0, 0, 0];
    if (padding === PAD_SAME) {
      const [t, bo] = samePadding(xt.shape[1]!, kh, sh, dh);
      const [l, r] = samePadding(xt.shape[2]!, kw, sw, dw);
      pads = [t, l, bo, r];
    }
    const x = this.vals.get(xi);
    let xname: string;
    if (x?.pendingPad && same(x.pendingPad.source.perm, NCHW)) {
      const pp = x.pendingPad.pads;
      pads = [pads[0]! + pp[0]!, pads[1]! + pp[1]!, pads[2]! + pp[2]!, pads[3]! + pp[3]!];
      xname = x.pendingPad.source.name;
    } else xname = this.input(xi, op, NCHW);
    const attrs = {
      kernel_shape: A.is([kh, kw]),
      strides: A.is([sh, sw]),
      dilations: A.is([dh, dw]),
      pads: A.is(pads),
      group: A.i(group),
    };
    const out = this.fused(op, act, (n) => this.node('Conv', [xname, ...inputs], attrs, n));
    this.setOut(op, out, NCHW);
  }

  pool(op: TfliteOperator, type: 'AveragePool' | 'MaxPool'): void {
    // Pool2DOptions: padding 0, stride_w 1, stride_h 2, filter_width 3, filter_height 4, fused 5
    const o = op.options;
    const padding = o.byte(0),
      sw = o.int(1, 1),
      sh = o.int(2, 1),
      fw = o.int(3, 1),
      fh = o.int(4, 1),
      act = o.byte(5);
    const xt = this.tensor(op.inputs[0]!);
    if (xt.shape.length !== 4) throw new GraftError(`${this.where(op)}: expects a 4-D input, got [${xt.shape}]`);
    let pads = [0, 0, 0, 0];
    if (padding === PAD_SAME) {
      const [t, b] = samePadding(xt.shape[1]!, fh, sh);
      const [l, r] = samePadding(xt.shape[2]!, fw, sw);
      pads = [t, l, b, r];
    }
    const x = this.input(op.inputs[0]!, op, NCHW);
    const ot = this.tensor(op.outputs[0]!);
    if (type === 'AveragePool' && fh === xt.shape[1] && fw === xt.shape[2] && ot.shape[1] === 1 && ot.shape[2] === 1) {
      // a window over the whole feature map is a global mean: ReduceMean, which onnxruntime also runs in float64
      const out = this.fused(op, act, (n) => this.node('ReduceMean', [x], { axes: A.is([2, 3]), keepdims: A.i(1) }, n));
      this.setOut(op, out, NCHW);
      return;
    }
    // TFLite's average pool divides by the number of real (unpadded) elements: count_include_pad = 0
    const attrs = { kernel_shape: A.is([fh, fw]), strides: A.is([sh, sw]), pads: A.is(pads) };
    const out = this.fused(op, act, (n) => this.node(type, [x], attrs, n));
    this.setOut(op, out, NCHW);
  }

  /** Elementwise operators: the output takes NCHW when 4-D, else the first activation input's order. */
  elementwise(op: TfliteOperator, onnx: string, actId: number | null): void {
    const outRank = this.tensor(op.outputs[0]!).shape.length;
    const ins = op.inputs.filter((i) => i >= 0);
    const firstAct = ins.map((i) => this.vals.get(i)).find((v) => v && v.perm.length === outRank);
    const perm = outRank === 4 ? NCHW : (firstAct?.perm ?? identity(outRank));
    const xs = ins.map((i) => this.input(i, op, perm));
    const act = actId == null ? ACT.NONE : op.options.byte(actId);
    const out = this.fused(op, act, (n) => this.node(onnx, xs, {}, n));
    this.setOut(op, out, perm);
  }

  unary(op: TfliteOperator, emit: (x: string, out: string) => string): void {
    const v = this.act(op.inputs[0]!, op);
    this.setOut(op, emit(v.name, this.outName(op)), v.perm);
  }

  /** RESHAPE / SQUEEZE / EXPAND_DIMS: a Reshape to the output tensor's static shape. */
  reshape(op: TfliteOperator): void {
    const it = this.tensor(op.inputs[0]!),
      ot = this.tensor(op.outputs[0]!);
    let shape = ot.shape;
    if (!shape.length && op.code === 22 && op.inputs[1] != null && op.inputs[1] >= 0 && this.isConst(op.inputs[1]))
      shape = this.constInts(op.inputs[1], op);
    if (shape.some((d) => d < 0))
      throw new GraftError(`${this.where(op)}: output '${ot.name}' has no static shape ([${shape}])`);
    const v = this.act(op.inputs[0]!, op);
    // bring the input to TFLite element order (free when only unit axes differ)
    const x = toSourceOrder(this.b, v.name, v.perm, it.shape);
    // a 4-D result goes to NCHW when that keeps the element order (e.g. [1,1,1,C]); else TFLite order
    const perm = shape.length === 4 && sameMemoryOrder(NCHW, shape) ? NCHW : identity(shape.length);
    const target = this.reshapeTarget(
      perm.map((p) => shape[p]!),
      v.perm[0] === 0 && it.shape[0] === 1,
    );
    const out = this.node('Reshape', [x, this.b.i64(target)], {}, this.outName(op));
    this.setOut(op, out, perm);
  }

  fullyConnected(op: TfliteOperator): void {
    // FullyConnectedOptions: fused 0, weights_format 1, keep_num_dims 2
    const o = op.options;
    const act = o.byte(0),
      format = o.byte(1),
      keep = o.bool(2);
    if (format !== 0) throw new GraftError(`${this.where(op)}: shuffled weights format ${format} is not supported`);
    const [xi, wi, bi] = op.inputs as [number, number, number?];
    const it = this.tensor(xi),
      wt = this.tensor(wi),
      ot = this.tensor(op.outputs[0]!);
    if (wt.shape.length !== 2)
      throw new GraftError(
        `${this.where(op)}: weights '${wt.name}' have shape [${wt.shape}], expected [units, inputs]`,
      );
    const [units, k] = wt.shape as [number, number];
    const v = this.act(xi, op);
    let x: string;
    if (it.shape.length === 2 && same(v.perm, [0, 1])) x = v.name;
    else {
      const flat = toSourceOrder(this.b, v.name, v.perm, it.shape);
      x = this.b.reshape(flat, [-1, k]);
    }
    let w: string;
    if (this.isConst(wi)) {
      const { data } = this.constData(wi, op);
      w = this.initializer(this.nameOf(wi), data, [units, k]);
    } else w = this.input(wi, op, [0, 1]);
    const inputs = [x, w];
    if (bi != null && bi >= 0) inputs.push(this.input(bi, op, [0]));
    const keepShape = keep && ot.shape.length !== 2;
    const out = this.fused(op, act, (n) => {
      if (!keepShape) return this.node('Gemm', inputs, { transB: A.i(1) }, n);
      const y = this.b.op('Gemm', inputs, { transB: A.i(1) });
      return this.node('Reshape', [y, this.b.i64(this.reshapeTarget(ot.shape, true))], {}, n);
    });
    this.setOut(op, out, identity(keepShape ? ot.shape.length : 2));
  }

  mean(op: TfliteOperator, onnx: 'ReduceMean' | 'ReduceMax' | 'ReduceMin' | 'ReduceSum'): void {
    const keep = op.options.bool(0);
    const it = this.tensor(op.inputs[0]!);
    const rank = it.shape.length;
    const axes = [...new Set(this.constInts(op.inputs[1]!, op).map((a) => (a < 0 ? a + rank : a)))];
    const v = this.act(op.inputs[0]!, op);
    const onnxAxes = axes.map((a) => v.perm.indexOf(a)).sort((a, b) => a - b);
    let perm: number[];
    if (keep) perm = v.perm;
    else {
      const kept = identity(rank).filter((a) => !axes.includes(a));
      perm = v.perm.filter((a) => !axes.includes(a)).map((a) => kept.indexOf(a));
    }
    // opset 17: ReduceSum takes its axes as an input, the others as an attribute
    const attrs: Record<string, Attr> = { keepdims: A.i(keep ? 1 : 0) };
    const inputs = [v.name];
    if (onnx === 'ReduceSum') inputs.push(this.b.i64(onnxAxes));
    else attrs['axes'] = A.is(onnxAxes);
    this.setOut(op, this.node(onnx, inputs, attrs, this.outName(op)), perm);
  }

  softmax(op: TfliteOperator, log: boolean): void {
    const beta = log ? 1 : op.options.float(0, 1);
    const it = this.tensor(op.inputs[0]!);
    const v = this.act(op.inputs[0]!, op);
    const axis = v.perm.indexOf(it.shape.length - 1);
    const x = beta === 1 ? v.name : this.b.mul(v.name, this.b.f32(beta));
    const out = this.node(log ? 'LogSoftmax' : 'Softmax', [x], { axis: A.i(axis) }, this.outName(op));
    this.setOut(op, out, v.perm);
  }

  concat(op: TfliteOperator): void {
    // ConcatenationOptions: axis 0, fused 1
    const ot = this.tensor(op.outputs[0]!);
    const rank = ot.shape.length;
    let axis = op.options.int(0);
    if (axis < 0) axis += rank;
    const firstAct = op.inputs.map((i) => this.vals.get(i)).find((v) => v && v.perm.length === rank);
    const perm = rank === 4 ? NCHW : (firstAct?.perm ?? identity(rank));
    const xs = op.inputs.map((i) => this.input(i, op, perm));
    const out = this.fused(op, op.options.byte(1), (n) =>
      this.node('Concat', xs, { axis: A.i(perm.indexOf(axis)) }, n),
    );
    this.setOut(op, out, perm);
  }

  pad(op: TfliteOperator): void {
    const it = this.tensor(op.inputs[0]!);
    const rank = it.shape.length;
    const p = this.constInts(op.inputs[1]!, op); // [rank, 2]
    if (p.length !== 2 * rank)
      throw new GraftError(
        `${this.where(op)}: ${p.length} padding values for a rank-${rank} input (expected ${2 * rank})`,
      );
    let value = 0;
    if (op.code === 60 /* PADV2 */ && op.inputs[2] != null && op.inputs[2] >= 0)
      value = this.constData(op.inputs[2], op).data[0] ?? 0;
    const v = this.act(op.inputs[0]!, op);
    // zero padding of H and W only, feeding only convolutions: folded into their pads
    const uses = this.consumers.get(op.outputs[0]!) ?? [];
    const spatialOnly = rank === 4 && p[0] === 0 && p[1] === 0 && p[6] === 0 && p[7] === 0;
    if (
      value === 0 &&
      spatialOnly &&
      same(v.perm, NCHW) &&
      uses.length > 0 &&
      !this.sg.outputs.includes(op.outputs[0]!) &&
      uses.every(
        (u) =>
          (u.code === 3 || u.code === 4) &&
          u.inputs[0] === op.outputs[0] &&
          !u.inputs.slice(1).includes(op.outputs[0]!),
      )
    ) {
      this.vals.set(op.outputs[0]!, {
        name: '',
        perm: NCHW,
        pendingPad: { source: v, pads: [p[2]!, p[4]!, p[3]!, p[5]!] },
      });
      return;
    }
    const begins = v.perm.map((a) => p[2 * a]!),
      ends = v.perm.map((a) => p[2 * a + 1]!);
    const out = this.node(
      'Pad',
      [v.name, this.b.i64([...begins, ...ends]), this.b.f32(value)],
      { mode: A.s('constant') },
      this.outName(op),
    );
    this.setOut(op, out, v.perm);
  }

  materializePad(i: number, v: Val): Val {
    const pp = v.pendingPad!;
    const pads = [0, 0, pp.pads[0]!, pp.pads[1]!, 0, 0, pp.pads[2]!, pp.pads[3]!];
    const name = this.node(
      'Pad',
      [pp.source.name, this.b.i64(pads), this.b.f32(0)],
      { mode: A.s('constant') },
      this.b.name(this.nameOf(i)),
    );
    const out = { name, perm: NCHW };
    this.vals.set(i, out);
    return out;
  }

  transpose(op: TfliteOperator): void {
    const tperm = this.constInts(op.inputs[1]!, op);
    const v = this.act(op.inputs[0]!, op);
    // output TFLite axis j = input TFLite axis tperm[j]: the data stays as it is, only the axes' meaning changes
    this.setOut(
      op,
      v.name,
      v.perm.map((a) => tperm.indexOf(a)),
    );
  }

  alias(op: TfliteOperator): void {
    // QUANTIZE / DEQUANTIZE: the imported graph computes in float, so these change nothing
    const i = op.inputs[0]!,
      o = op.outputs[0]!;
    const v = this.vals.get(i);
    if (v) this.vals.set(o, v);
    else if (this.isConst(i)) this.constOf.set(o, this.constOf.get(i)!);
    else throw new GraftError(`${this.where(op)}: input tensor ${i} is computed by no earlier operator`);
  }
}

type Handler = (im: Importer, op: TfliteOperator) => void;

/** ActivationFunctionType names by code (RELU, RELU6, …), the keys of TFLITE_FUSED_ACTIVATIONS. */
const ACT_NAMES = new Map<number, string>(Object.entries(ACT).map(([k, v]) => [v, k]));

/**
 * The fused activations of TFLite operators (their options' fused_activation_function), by
 * ActivationFunctionType name: the output `out` of the activation applied to `pre`. NONE needs no entry.
 */
export const TFLITE_FUSED_ACTIVATIONS = new Handlers<(im: Importer, pre: string, out: string) => string>(
  'TFLite fused activations',
)
  .register('RELU', (im, pre, out) => im.node('Relu', [pre], {}, out))
  .register('RELU6', (im, pre, out) => im.node('Clip', [pre, im.b.f32(0), im.b.f32(6)], {}, out))
  .register('RELU_N1_TO_1', (im, pre, out) => im.node('Clip', [pre, im.b.f32(-1), im.b.f32(1)], {}, out))
  .register('TANH', (im, pre, out) => im.node('Tanh', [pre], {}, out));

/** The TFLite operators Graft converts: one entry each, by BuiltinOperator name. */
export const TFLITE_HANDLERS = new Handlers<Handler>('TFLite')
  .register('CONV_2D', (im, op) => im.conv(op, false))
  .register('DEPTHWISE_CONV_2D', (im, op) => im.conv(op, true))
  .register('AVERAGE_POOL_2D', (im, op) => im.pool(op, 'AveragePool'))
  .register('MAX_POOL_2D', (im, op) => im.pool(op, 'MaxPool'))
  // AddOptions / MulOptions / SubOptions / DivOptions: fused_activation_function is field 0
  .register('ADD', (im, op) => im.elementwise(op, 'Add', 0))
  .register('MUL', (im, op) => im.elementwise(op, 'Mul', 0))
  .register('SUB', (im, op) => im.elementwise(op, 'Sub', 0))
  .register('DIV', (im, op) => im.elementwise(op, 'Div', 0))
  .register('MAXIMUM', (im, op) => im.elementwise(op, 'Max', null))
  .register('MINIMUM', (im, op) => im.elementwise(op, 'Min', null))
  .register('SQUARED_DIFFERENCE', (im, op) => {
    im.elementwise(op, 'Sub', null);
    const v = im.vals.get(op.outputs[0]!)!;
    im.vals.set(op.outputs[0]!, {
      name: im.node('Mul', [v.name, v.name], {}, im.b.name(`${v.name}/squared`)),
      perm: v.perm,
    });
  })
  .register('MEAN', (im, op) => im.mean(op, 'ReduceMean'))
  .register('SUM', (im, op) => im.mean(op, 'ReduceSum'))
  .register('REDUCE_MAX', (im, op) => im.mean(op, 'ReduceMax'))
  .register('REDUCE_MIN', (im, op) => im.mean(op, 'ReduceMin'))
  .register('RESHAPE', (im, op) => im.reshape(op))
  .register('SQUEEZE', (im, op) => im.reshape(op))
  .register('EXPAND_DIMS', (im, op) => im.reshape(op))
  .register('SOFTMAX', (im, op) => im.softmax(op, false))
  .register('LOG_SOFTMAX', (im, op) => im.softmax(op, true))
  .register('FULLY_CONNECTED', (im, op) => im.fullyConnected(op))
  .register('CONCATENATION', (im, op) => im.concat(op))
  .register('PAD', (im, op) => im.pad(op))
  .register('PADV2', (im, op) => im.pad(op))
  .register('TRANSPOSE', (im, op) => im.transpose(op))
  .register('QUANTIZE', (im, op) => im.alias(op))
  .register('DEQUANTIZE', (im, op) => im.alias(op))
  .register('RELU', (im, op) => im.unary(op, (x, o) => im.node('Relu', [x], {}, o)))
  .register('RELU6', (im, op) => im.unary(op, (x, o) => im.node('Clip', [x, im.b.f32(0), im.b.f32(6)], {}, o)))
  .register('RELU_N1_TO_1', (im, op) => im.unary(op, (x, o) => im.node('Clip', [x, im.b.f32(-1), im.b.f32(1)], {}, o)))
  .register('RELU_0_TO_1', (im, op) => im.unary(op, (x, o) => im.node('Clip', [x, im.b.f32(0), im.b.f32(1)], {}, o)))
  .register('LOGISTIC', (im, op) => im.unary(op, (x, o) => im.node('Sigmoid', [x], {}, o)))
  .register('TANH', (im, op) => im.unary(op, (x, o) => im.node('Tanh', [x], {}, o)))
  .register('HARD_SWISH', (im, op) => im.unary(op, (x, o) => im.node('HardSwish', [x], {}, o)))
  // LeakyReluOptions: alpha 0
  .register('LEAKY_RELU', (im, op) =>
    im.unary(op, (x, o) => im.node('LeakyRelu', [x], { alpha: A.f(op.options.float(0, 0.2)) }, o)),
  )
  .register('EXP', (im, op) => im.unary(op, (x, o) => im.node('Exp', [x], {}, o)))
  .register('SQRT', (im, op) => im.unary(op, (x, o) => im.node('Sqrt', [x], {}, o)))
  .register('ABS', (im, op) => im.unary(op, (x, o) => im.node('Abs', [x], {}, o)))
  .register('NEG', (im, op) => im.unary(op, (x, o) => im.node('Neg', [x], {}, o)))
  .register('L2_NORMALIZATION', (im, op) => {
    // x / sqrt(max(Σx², 1e-6)) over the last axis (TFLite's epsilon)
    const it = im.tensor(op.inputs[0]!);
    const v = im.act(op.inputs[0]!, op);
    const axis = v.perm.indexOf(it.shape.length - 1);
    const ss = im.b.reduce('ReduceSumSquare', v.name, [axis], true);
    const norm = im.b.op('Sqrt', [im.b.op('Max', [ss, im.b.f32(1e-6)])]);
    im.setOut(op, im.node('Div', [v.name, norm], {}, im.outName(op)), v.perm);
  });

/** Operator names the importer converts. */
export const TFLITE_OPERATORS: readonly string[] = TFLITE_HANDLERS.names();
