/**
 * TFLite flatbuffers → Graph. The file is read with the `flatbuffers` package's ByteBuffer, through
 * hand-written accessors for the parts of the TFLite schema (tensorflow/lite/schema/schema.fbs) that
 * Graft needs, every offset bounds-checked so a truncated or corrupt file fails with a message
 * instead of reading zeros.
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
import { ByteBuffer } from 'flatbuffers';
import type { Graph, Dim, Attr } from '../graph/graph.js';
import { A } from '../graph/builder.js';
import { numel, halfToFloat, permuteData } from '../graph/tensor.js';
import {
  Emitter, Handlers, NCHW, identity, samePerm as same, keepsMemoryOrder, toSourceOrder, samePadding, dequantizeAffine, ohwiToOihw, tfliteDepthwiseToOihw,
} from './importer/core.js';
import { setPreprocess, setLabels, type ImagePreprocess } from './preprocess.js';
import { readLabels, parseLabels } from './labels.js';
import { GraftError } from '../util/errors.js';
import { checkedNumel, inflateRawLimited } from '../util/limits.js';

/* ------------------------------------------------------------------------------------------------
 * Schema constants (field ids and enum values from tensorflow/lite/schema/schema.fbs)
 * ---------------------------------------------------------------------------------------------- */

/** TensorType */
export const TFL_TYPE = {
  FLOAT32: 0, FLOAT16: 1, INT32: 2, UINT8: 3, INT64: 4, STRING: 5, BOOL: 6, INT16: 7, COMPLEX64: 8, INT8: 9,
  FLOAT64: 10, COMPLEX128: 11, UINT64: 12, RESOURCE: 13, VARIANT: 14, UINT32: 15, UINT16: 16, INT4: 17,
} as const;
const TYPE_NAMES = Object.fromEntries(Object.entries(TFL_TYPE).map(([k, v]) => [v, k])) as Record<number, string>;

/** BuiltinOperator names by code, for the importer's dispatch and its messages. */
const OP_NAMES: string[] = (
  'ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR ' +
  'FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION ' +
  'LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH ' +
  'CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER ' +
  'BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE ' +
  'BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ' +
  'ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE ' +
  'TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK ' +
  'LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD ' +
  'RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N ' +
  'GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE ' +
  'NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL ' +
  'PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE ' +
  'HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ' +
  'ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU ' +
  'DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2 ' +
  'UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT'
).split(' ');

export function tfliteOpName(code: number): string {
  return OP_NAMES[code] ?? `builtin operator ${code}`;
}

/** ActivationFunctionType */
const ACT = { NONE: 0, RELU: 1, RELU_N1_TO_1: 2, RELU6: 3, TANH: 4, SIGN_BIT: 5 } as const;
/** Padding */
const PAD_SAME = 0;

/* ------------------------------------------------------------------------------------------------
 * The parsed file: plain objects, no flatbuffers types leak out
 * ---------------------------------------------------------------------------------------------- */

export interface TfliteQuant {
  scale: number[];
  zeroPoint: number[];
  /** Axis the scales and zero points run along (per-channel quantization). */
  dim: number;
}

export interface TfliteTensor {
  index: number;
  name: string;
  shape: number[];
  type: number;
  /** Index into the model's buffers (0: no data). */
  buffer: number;
  quant?: TfliteQuant;
  /** Non-empty when the tensor uses a quantization the importer does not understand. */
  unsupportedQuant?: string;
  sparse: boolean;
}

/** One table of builtin options: reads fields by id with defaults. */
export interface Options {
  present: boolean;
  int(id: number, dflt?: number): number;
  /** An enum field (TFLite enums are stored as bytes). */
  byte(id: number, dflt?: number): number;
  float(id: number, dflt?: number): number;
  bool(id: number, dflt?: boolean): boolean;
  ints(id: number): number[] | undefined;
}

export interface TfliteOperator {
  index: number;
  /** BuiltinOperator code (CUSTOM = 32 for custom operators). */
  code: number;
  customCode?: string;
  version: number;
  inputs: number[];
  outputs: number[];
  options: Options;
}

export interface TfliteSubgraph {
  name: string;
  tensors: TfliteTensor[];
  inputs: number[];
  outputs: number[];
  operators: TfliteOperator[];
}

export interface TfliteModel {
  version: number;
  description: string;
  subgraphs: TfliteSubgraph[];
  /** Buffer contents (empty arrays for buffers without data). Views into the file's bytes. */
  buffers: Uint8Array[];
}

/* ------------------------------------------------------------------------------------------------
 * Bounds-checked flatbuffer access on top of flatbuffers' ByteBuffer
 * ---------------------------------------------------------------------------------------------- */

class FlatReader {
  readonly bb: ByteBuffer;
  readonly size: number;

  constructor(readonly bytes: Uint8Array, readonly label: string) {
    this.bb = new ByteBuffer(bytes);
    this.size = bytes.byteLength;
  }

  corrupt(what: string): never {
    throw new GraftError(
      `${this.label} is truncated or not a valid TFLite file: ${what} lies outside the file's ${this.size} bytes`,
    );
  }

  need(pos: number, len: number, what: string): void {
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > this.size) this.corrupt(what);
  }

  /** Position of the table referenced by the uoffset stored at `pos`. */
  indirect(pos: number, what: string): number {
    this.need(pos, 4, what);
    const t = pos + this.bb.readUint32(pos);
    this.checkTable(t, what);
    return t;
  }

  checkTable(t: number, what: string): void {
    this.need(t, 4, what);
    const vt = t - this.bb.readInt32(t);
    this.need(vt, 4, `${what} (vtable)`);
    const vtSize = this.bb.readUint16(vt);
    const objSize = this.bb.readUint16(vt + 2);
    if (vtSize < 4 || vtSize % 2) this.corrupt(`${what} (vtable of size ${vtSize})`);
    this.need(vt, vtSize, `${what} (vtable)`);
    this.need(t, objSize, what);
  }

  /** Absolute position of field `id` of the table at `t`, or 0 when absent. */
  field(t: number, id: number): number {
    const vt = t - this.bb.readInt32(t);
    const vo = 4 + 2 * id;
    if (vo >= this.bb.readUint16(vt)) return 0;
    const off = this.bb.readUint16(vt + vo);
    return off ? t + off : 0;
  }

  u8(t: number, id: number, dflt = 0): number { const p = this.field(t, id); return p ? this.bb.readUint8(p) : dflt; }
  i8(t: number, id: number, dflt = 0): number { const p = this.field(t, id); return p ? this.bb.readInt8(p) : dflt; }
  i32(t: number, id: number, dflt = 0): number { const p = this.field(t, id); return p ? this.bb.readInt32(p) : dflt; }
  u32(t: number, id: number, dflt = 0): number { const p = this.field(t, id); return p ? this.bb.readUint32(p) : dflt; }
  f32(t: number, id: number, dflt = 0): number { const p = this.field(t, id); return p ? this.bb.readFloat32(p) : dflt; }
  u64(t: number, id: number): number {
    const p = this.field(t, id);
    if (!p) return 0;
    this.need(p, 8, 'a 64-bit field');
    return Number(this.bb.readUint64(p));
  }

  /** A vector field: start of its elements and their count, or null when absent. */
  vector(t: number, id: number, elemSize: number, what: string): { start: number; len: number } | null {
    const p = this.field(t, id);
    if (!p) return null;
    this.need(p, 4, what);
    const v = p + this.bb.readUint32(p);
    this.need(v, 4, what);
    const len = this.bb.readUint32(v);
    this.need(v + 4, len * elemSize, what);
    return { start: v + 4, len };
  }

  tables(t: number, id: number, what: string): number[] {
    const v = this.vector(t, id, 4, what);
    if (!v) return [];
    return Array.from({ length: v.len }, (_, i) => this.indirect(v.start + 4 * i, `${what}[${i}]`));
  }

  table(t: number, id: number, what: string): number | null {
    const p = this.field(t, id);
    return p ? this.indirect(p, what) : null;
  }

  ints(t: number, id: number, what: string): number[] | undefined {
    const v = this.vector(t, id, 4, what);
    if (!v) return undefined;
    return Array.from({ length: v.len }, (_, i) => this.bb.readInt32(v.start + 4 * i));
  }

  floats(t: number, id: number, what: string): number[] | undefined {
    const v = this.vector(t, id, 4, what);
    if (!v) return undefined;
    return Array.from({ length: v.len }, (_, i) => this.bb.readFloat32(v.start + 4 * i));
  }

  longs(t: number, id: number, what: string): number[] | undefined {
    const v = this.vector(t, id, 8, what);
    if (!v) return undefined;
    return Array.from({ length: v.len }, (_, i) => Number(this.bb.readInt64(v.start + 8 * i)));
  }

  bytesOf(t: number, id: number, what: string): Uint8Array | undefined {
    const v = this.vector(t, id, 1, what);
    if (!v) return undefined;
    return this.bytes.subarray(v.start, v.start + v.len);
  }

  str(t: number, id: number, what: string): string {
    const b = this.bytesOf(t, id, what);
    return b ? new TextDecoder().decode(b) : '';
  }
}

/* Field ids, per table. */
const MODEL = { version: 0, operatorCodes: 1, subgraphs: 2, description: 3, buffers: 4 };
const OPCODE = { deprecatedBuiltinCode: 0, customCode: 1, version: 2, builtinCode: 3 };
const SUBGRAPH = { tensors: 0, inputs: 1, outputs: 2, operators: 3, name: 4 };
const TENSOR = { shape: 0, type: 1, buffer: 2, name: 3, quantization: 4, isVariable: 5, sparsity: 6 };
const QUANT = { min: 0, max: 1, scale: 2, zeroPoint: 3, detailsType: 4, details: 5, quantizedDimension: 6 };
const OPERATOR = { opcodeIndex: 0, inputs: 1, outputs: 2, builtinOptionsType: 3, builtinOptions: 4, customOptions: 5 };
const BUFFER = { data: 0, offset: 1, size: 2 };

/** Parse a TFLite flatbuffer into plain objects. Throws GraftError on truncated or corrupt input. */
export function parseTflite(bytes: Uint8Array, label = 'model'): TfliteModel {
  if (bytes.byteLength < 8) throw new GraftError(`${label} is truncated or not a TFLite file: only ${bytes.byteLength} bytes`);
  const r = new FlatReader(bytes, label);
  const ident = String.fromCharCode(...bytes.subarray(4, 8));
  if (ident !== 'TFL3') throw new GraftError(`${label} is not a TFLite file (file identifier '${ident.replace(/[^\x20-\x7e]/g, '?')}', expected 'TFL3')`);
  const root = r.indirect(0, 'the root table');

  const opcodes = r.tables(root, MODEL.operatorCodes, 'operator codes').map((t) => {
    const dep = r.i8(t, OPCODE.deprecatedBuiltinCode);
    const ext = r.i32(t, OPCODE.builtinCode);
    return { code: Math.max(dep, ext), custom: r.str(t, OPCODE.customCode, 'custom operator name'), version: r.i32(t, OPCODE.version, 1) };
  });

  const buffers = r.tables(root, MODEL.buffers, 'buffers').map((t, i) => {
    const data = r.bytesOf(t, BUFFER.data, `buffer ${i}`);
    if (data && data.byteLength) return data;
    const offset = r.u64(t, BUFFER.offset);
    const size = r.u64(t, BUFFER.size);
    if (offset > 1) {
      r.need(offset, size, `buffer ${i} (external data at offset ${offset}, ${size} bytes)`);
      return bytes.subarray(offset, offset + size);
    }
    return new Uint8Array(0);
  });

  const subgraphs = r.tables(root, MODEL.subgraphs, 'subgraphs').map((sg, si): TfliteSubgraph => {
    const tensors = r.tables(sg, SUBGRAPH.tensors, `subgraph ${si} tensors`).map((t, ti): TfliteTensor => {
      const name = r.str(t, TENSOR.name, `tensor ${ti} name`) || `tensor_${ti}`;
      const tensor: TfliteTensor = {
        index: ti, name,
        shape: r.ints(t, TENSOR.shape, `tensor '${name}' shape`) ?? [],
        type: r.i8(t, TENSOR.type),
        buffer: r.u32(t, TENSOR.buffer),
        sparse: r.field(t, TENSOR.sparsity) !== 0,
      };
      const q = r.table(t, TENSOR.quantization, `tensor '${name}' quantization`);
      if (q) {
        const scale = r.floats(q, QUANT.scale, `tensor '${name}' scales`) ?? [];
        const zeroPoint = r.longs(q, QUANT.zeroPoint, `tensor '${name}' zero points`) ?? [];
        const details = r.u8(q, QUANT.detailsType);
        if (details !== 0) tensor.unsupportedQuant = `custom quantization details (type ${details})`;
        else if (scale.length) {
          const dim = r.i32(q, QUANT.quantizedDimension);
          if (zeroPoint.length !== scale.length && zeroPoint.length > 1)
            tensor.unsupportedQuant = `${scale.length} scales but ${zeroPoint.length} zero points`;
          else tensor.quant = { scale, zeroPoint: zeroPoint.length ? zeroPoint : [0], dim };
        }
      }
      return tensor;
    });
    const operators = r.tables(sg, SUBGRAPH.operators, `subgraph ${si} operators`).map((o, oi): TfliteOperator => {
      const ci = r.u32(o, OPERATOR.opcodeIndex);
      const oc = opcodes[ci];
      if (!oc) throw new GraftError(`${label}: operator ${oi} refers to operator code ${ci}, but the file has ${opcodes.length}`);
      const opt = r.table(o, OPERATOR.builtinOptions, `operator ${oi} options`);
      const options: Options = {
        present: opt != null,
        int: (id, d = 0) => (opt == null ? d : r.i32(opt, id, d)),
        byte: (id, d = 0) => (opt == null ? d : r.i8(opt, id, d)),
        float: (id, d = 0) => (opt == null ? d : r.f32(opt, id, d)),
        bool: (id, d = false) => (opt == null ? d : r.u8(opt, id, d ? 1 : 0) !== 0),
        ints: (id) => (opt == null ? undefined : r.ints(opt, id, `operator ${oi} options`)),
      };
      return {
        index: oi, code: oc.code, customCode: oc.custom || undefined, version: oc.version, options,
        inputs: r.ints(o, OPERATOR.inputs, `operator ${oi} inputs`) ?? [],
        outputs: r.ints(o, OPERATOR.outputs, `operator ${oi} outputs`) ?? [],
      };
    });
    const sub: TfliteSubgraph = {
      name: r.str(sg, SUBGRAPH.name, 'subgraph name'),
      tensors, operators,
      inputs: r.ints(sg, SUBGRAPH.inputs, `subgraph ${si} inputs`) ?? [],
      outputs: r.ints(sg, SUBGRAPH.outputs, `subgraph ${si} outputs`) ?? [],
    };
    for (const t of tensors)
      if (t.buffer >= buffers.length) throw new GraftError(`${label}: tensor '${t.name}' refers to buffer ${t.buffer}, but the file has ${buffers.length}`);
    for (const op of operators)
      for (const i of [...op.inputs, ...op.outputs])
        if (i >= tensors.length || i < -1) throw new GraftError(`${label}: operator ${op.index} (${tfliteOpName(op.code)}) refers to tensor ${i}, but the subgraph has ${tensors.length}`);
    for (const i of [...sub.inputs, ...sub.outputs])
      if (i < 0 || i >= tensors.length) throw new GraftError(`${label}: subgraph ${si} input/output refers to tensor ${i}, but it has ${tensors.length}`);
    return sub;
  });
  if (!subgraphs.length) throw new GraftError(`${label} has no subgraphs`);
  return {
    version: r.u32(root, MODEL.version),
    description: r.str(root, MODEL.description, 'model description'),
    subgraphs, buffers,
  };
}

/* ------------------------------------------------------------------------------------------------
 * Tensor values
 * ---------------------------------------------------------------------------------------------- */

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

const ELEM_SIZE: Partial<Record<number, number>> = {
  [TFL_TYPE.FLOAT32]: 4, [TFL_TYPE.FLOAT16]: 2, [TFL_TYPE.INT32]: 4, [TFL_TYPE.UINT8]: 1, [TFL_TYPE.INT64]: 8,
  [TFL_TYPE.INT16]: 2, [TFL_TYPE.INT8]: 1, [TFL_TYPE.FLOAT64]: 8, [TFL_TYPE.BOOL]: 1,
};

/** The raw stored values of a constant tensor as JS numbers (no dequantization). */
export function rawValues(m: TfliteModel, t: TfliteTensor): Float64Array {
  const b = m.buffers[t.buffer]!;
  const size = ELEM_SIZE[t.type];
  if (!size) throw new GraftError(`tensor '${t.name}': constant data of type ${TYPE_NAMES[t.type] ?? t.type} is not supported`);
  const n = checkedNumel(t.shape, `tensor '${t.name}'`);
  if (b.byteLength !== n * size)
    throw new GraftError(`tensor '${t.name}': its buffer holds ${b.byteLength} bytes, shape [${t.shape}] of ${TYPE_NAMES[t.type]} needs ${n * size}`);
  const dv = view(b);
  const out = new Float64Array(n);
  switch (t.type) {
    case TFL_TYPE.FLOAT32: for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true); break;
    case TFL_TYPE.FLOAT64: for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true); break;
    case TFL_TYPE.FLOAT16: for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true)); break;
    case TFL_TYPE.INT32: for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true); break;
    case TFL_TYPE.INT64: for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true)); break;
    case TFL_TYPE.INT16: for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true); break;
    case TFL_TYPE.UINT8: case TFL_TYPE.BOOL: for (let i = 0; i < n; i++) out[i] = b[i]!; break;
    case TFL_TYPE.INT8: for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); break;
  }
  return out;
}

const INTEGER_TYPES = new Set<number>([TFL_TYPE.UINT8, TFL_TYPE.INT8, TFL_TYPE.INT16, TFL_TYPE.INT32, TFL_TYPE.INT64]);

/** Check that a tensor's quantization can be undone; returns it (undefined for unquantized tensors). */
function quantOf(t: TfliteTensor, where: string): TfliteQuant | undefined {
  if (t.unsupportedQuant) throw new GraftError(`${where}: tensor '${t.name}' has an unsupported quantization: ${t.unsupportedQuant}`);
  if (t.sparse) throw new GraftError(`${where}: tensor '${t.name}' is sparse, which is not supported`);
  const q = t.quant;
  if (!q) return undefined;
  if (q.scale.length > 1) {
    if (q.dim < 0 || q.dim >= t.shape.length || t.shape[q.dim] !== q.scale.length)
      throw new GraftError(`${where}: tensor '${t.name}' has an unsupported quantization: ${q.scale.length} scales along dimension ${q.dim} of shape [${t.shape}]`);
  }
  if (q.scale.some((s) => !Number.isFinite(s)))
    throw new GraftError(`${where}: tensor '${t.name}' has an unsupported quantization: non-finite scale`);
  return q;
}

/**
 * A constant tensor's real values in float32, TFLite layout: quantized integers become
 * (q − zero_point) × scale, with one scale per channel along quantized_dimension when there are several.
 */
export function dequantize(m: TfliteModel, t: TfliteTensor, where = 'model'): Float32Array {
  const raw = rawValues(m, t);
  const q = INTEGER_TYPES.has(t.type) ? quantOf(t, where) : undefined;
  if (!q) return Float32Array.from(raw);
  return dequantizeAffine(raw, { scale: q.scale, zeroPoint: q.zeroPoint, axis: q.dim }, t.shape);
}

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

/**
 * Files packed into the model: TFLite's metadata writer appends a zip archive of "associated files"
 * (label lists, vocabularies) after the flatbuffer. Stored and deflated entries are read.
 */
export function embeddedFiles(bytes: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--)
    if (dv.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) return out;
  const count = dv.getUint16(eocd + 10, true);
  const cdSize = dv.getUint32(eocd + 12, true);
  // offsets in the archive are relative to its start, which follows the flatbuffer
  const start = eocd - cdSize - dv.getUint32(eocd + 16, true);
  let p = eocd - cdSize;
  try {
    for (let k = 0; k < count && p >= 0 && p + 46 <= eocd; k++) {
      if (dv.getUint32(p, true) !== 0x02014b50) break;
      const method = dv.getUint16(p + 10, true), size = dv.getUint32(p + 20, true), usize = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true), commentLen = dv.getUint16(p + 32, true);
      const local = start + dv.getUint32(p + 42, true);
      const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
      p += 46 + nameLen + extraLen + commentLen;
      if (local < 0 || local + 30 > bytes.length || dv.getUint32(local, true) !== 0x04034b50) continue;
      const data = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
      const raw = bytes.subarray(data, data + size);
      if (method === 0) out.set(name, raw);
      // a member may not inflate beyond the size the archive declares for it (nor beyond 64 MB): no zip bombs.
      // Names are only keys here: nothing is ever written to disk, so there is no zip-slip to guard.
      else if (method === 8) out.set(name, new Uint8Array(inflateRawLimited(raw, `embedded file '${name}'`, Math.min(usize, 64 << 20))));
    }
  } catch {
    // a damaged archive only means no embedded files
  }
  return out;
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

  constructor(readonly m: TfliteModel, readonly label: string, readonly opts: TfliteImportOptions) {
    super('graft (from TFLite)');
    const si = opts.subgraph ?? 0;
    const sg = m.subgraphs[si];
    if (!sg) throw new GraftError(`${label} has ${m.subgraphs.length} subgraph(s), no subgraph ${si}`);
    this.sg = sg;
    this.g.name = sg.name || basename(label).replace(/\.tflite$/, '');
    this.g.docString = m.description;
    this.dynamic = (opts.batch ?? 'dynamic') === 'dynamic';
    for (const t of sg.tensors) if (t.buffer > 0 && m.buffers[t.buffer]!.byteLength > 0) this.constOf.set(t.index, t.index);
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
    if (!t) throw new GraftError(`${this.label}: an operator needs tensor ${i}, but the subgraph has tensors 0 to ${this.sg.tensors.length - 1}`);
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
      throw new GraftError(`${this.where(op)}: tensor '${this.tensor(i).name}' of shape [${own}] takes its values from '${src.name}' of shape [${src.shape}]`);
    return { data: dequantize(this.m, src, this.where(op)), dims: src.shape };
  }

  constInts(i: number, op: TfliteOperator): number[] {
    const c = this.constOf.get(i);
    if (c == null) throw new GraftError(`${this.where(op)}: input '${this.tensor(i).name}' must be a constant`);
    const v = Array.from(rawValues(this.m, this.tensor(c)));
    if (v.some((x) => !Number.isSafeInteger(x))) throw new GraftError(`${this.where(op)}: input '${this.tensor(i).name}' must hold integers, it holds [${v.slice(0, 8)}${v.length > 8 ? ', …' : ''}]`);
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
    throw new GraftError(`${this.where(op)}: input tensor ${i} ('${this.tensor(i).name}') is computed by no earlier operator`);
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
      if (dims.length > rank) throw new GraftError(`${this.where(op)}: constant input '${this.tensor(i).name}' has rank ${dims.length}, more than the operator's ${rank}`);
      if (dims.length === 0 || numel(dims) === 1) name = this.initializer(this.nameOf(i), data, dims.length === 0 ? [] : new Array(rank).fill(1));
      else {
        const full = [...new Array(rank - dims.length).fill(1), ...dims];
        name = this.initializer(this.nameOf(i), permuteData(data, full, perm).data, perm.map((p) => full[p]!));
      }
      this.constCache.set(key, name);
      return name;
    }
    let v = this.act(i, op);
    const shape = this.tensor(i).shape;
    if (v.perm.length < rank) {
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
      throw new GraftError(`${this.label}: a value of rank ${v.perm.length} is used where its tensor declares shape [${tflShape}] (rank ${perm.length} expected)`);
    const t = perm.map((p) => v.perm.indexOf(p));
    // moving unit axes only: a Reshape keeps the element order and, unlike Transpose, costs nothing
    if (sameMemoryOrder(t, v.perm.map((p) => tflShape[p] ?? 1)) && !tflShape.slice(1).some((d) => d < 0)) {
      return this.b.reshape(v.name, this.reshapeTarget(perm.map((p) => tflShape[p]!), perm[0] === 0 && v.perm[0] === 0));
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

  /** Apply a fused activation; `pre` is the value before it. Returns the output value name. */
  fused(op: TfliteOperator, act: number, emit: (name: string) => string): string {
    if (act === ACT.NONE) return emit(this.outName(op));
    const pre = emit(this.b.name(`${this.nameOf(op.outputs[0]!)}/preact`));
    const out = this.outName(op);
    switch (act) {
      case ACT.RELU: return this.node('Relu', [pre], {}, out);
      case ACT.RELU6: return this.node('Clip', [pre, this.b.f32(0), this.b.f32(6)], {}, out);
      case ACT.RELU_N1_TO_1: return this.node('Clip', [pre, this.b.f32(-1), this.b.f32(1)], {}, out);
      case ACT.TANH: return this.node('Tanh', [pre], {}, out);
      default: throw new GraftError(`${this.where(op)}: fused activation ${act} is not supported`);
    }
  }

  /* ---- the graph ---- */

  run(): Graph {
    const sg = this.sg;
    for (const i of sg.inputs) {
      const t = this.tensor(i);
      if (t.type !== TFL_TYPE.FLOAT32 && !(INTEGER_TYPES.has(t.type) && t.quant))
        throw new GraftError(`${this.label}: input '${t.name}' is ${TYPE_NAMES[t.type] ?? t.type}; only float and quantized inputs are supported`);
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
      if (this.g.outputs.some((o) => o.name === name) || this.g.inputs.some((o) => o.name === name)) name = this.node('Identity', [name], {}, this.b.name(this.nameOf(i)));
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
      if (next.length === 1 && next[0]!.code === 114 /* QUANTIZE */) range = quantRange(this.tensor(next[0]!.outputs[0]!));
    }
    const base = { layout: 'NCHW' as const, width: t.shape[2]!, height: t.shape[1]!, channels, channelOrder: channels === 3 ? ('RGB' as const) : ('GRAY' as const), resize: 'stretch' as const };
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
      throw new GraftError(`${this.label}: unsupported ${what} (operator index ${op.index}); Graft imports ${TFLITE_HANDLERS.names().join(', ')}`);
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
    const padding = o.byte(0), sw = o.int(1, 1), sh = o.int(2, 1);
    const act = o.byte(depthwise ? 4 : 3);
    const dw = o.int(depthwise ? 5 : 4, 1), dh = o.int(depthwise ? 6 : 5, 1);
    const [xi, wi, bi] = op.inputs as [number, number, number?];
    const xt = this.tensor(xi), wt = this.tensor(wi);
    if (!this.isConst(wi)) throw new GraftError(`${this.where(op)}: weights '${wt.name}' must be constant`);
    if (xt.shape.length !== 4 || wt.shape.length !== 4) throw new GraftError(`${this.where(op)}: expects 4-D input and weights, got [${xt.shape}] and [${wt.shape}]`);
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
      kernel_shape: A.is([kh, kw]), strides: A.is([sh, sw]), dilations: A.is([dh, dw]), pads: A.is(pads), group: A.i(group),
    };
    const out = this.fused(op, act, (n) => this.node('Conv', [xname, ...inputs], attrs, n));
    this.setOut(op, out, NCHW);
  }

  pool(op: TfliteOperator, type: 'AveragePool' | 'MaxPool'): void {
    // Pool2DOptions: padding 0, stride_w 1, stride_h 2, filter_width 3, filter_height 4, fused 5
    const o = op.options;
    const padding = o.byte(0), sw = o.int(1, 1), sh = o.int(2, 1), fw = o.int(3, 1), fh = o.int(4, 1), act = o.byte(5);
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
    const perm = outRank === 4 ? NCHW : firstAct?.perm ?? identity(outRank);
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
    const it = this.tensor(op.inputs[0]!), ot = this.tensor(op.outputs[0]!);
    let shape = ot.shape;
    if (!shape.length && op.code === 22 && op.inputs[1] != null && op.inputs[1] >= 0 && this.isConst(op.inputs[1])) shape = this.constInts(op.inputs[1], op);
    if (shape.some((d) => d < 0)) throw new GraftError(`${this.where(op)}: output '${ot.name}' has no static shape ([${shape}])`);
    const v = this.act(op.inputs[0]!, op);
    // bring the input to TFLite element order (free when only unit axes differ)
    const x = toSourceOrder(this.b, v.name, v.perm, it.shape);
    // a 4-D result goes to NCHW when that keeps the element order (e.g. [1,1,1,C]); else TFLite order
    const perm = shape.length === 4 && sameMemoryOrder(NCHW, shape) ? NCHW : identity(shape.length);
    const target = this.reshapeTarget(perm.map((p) => shape[p]!), v.perm[0] === 0 && it.shape[0] === 1);
    const out = this.node('Reshape', [x, this.b.i64(target)], {}, this.outName(op));
    this.setOut(op, out, perm);
  }

  fullyConnected(op: TfliteOperator): void {
    // FullyConnectedOptions: fused 0, weights_format 1, keep_num_dims 2
    const o = op.options;
    const act = o.byte(0), format = o.byte(1), keep = o.bool(2);
    if (format !== 0) throw new GraftError(`${this.where(op)}: shuffled weights format ${format} is not supported`);
    const [xi, wi, bi] = op.inputs as [number, number, number?];
    const it = this.tensor(xi), wt = this.tensor(wi), ot = this.tensor(op.outputs[0]!);
    if (wt.shape.length !== 2) throw new GraftError(`${this.where(op)}: weights '${wt.name}' have shape [${wt.shape}], expected [units, inputs]`);
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
    const perm = rank === 4 ? NCHW : firstAct?.perm ?? identity(rank);
    const xs = op.inputs.map((i) => this.input(i, op, perm));
    const out = this.fused(op, op.options.byte(1), (n) => this.node('Concat', xs, { axis: A.i(perm.indexOf(axis)) }, n));
    this.setOut(op, out, perm);
  }

  pad(op: TfliteOperator): void {
    const it = this.tensor(op.inputs[0]!);
    const rank = it.shape.length;
    const p = this.constInts(op.inputs[1]!, op); // [rank, 2]
    if (p.length !== 2 * rank) throw new GraftError(`${this.where(op)}: ${p.length} padding values for a rank-${rank} input (expected ${2 * rank})`);
    let value = 0;
    if (op.code === 60 /* PADV2 */ && op.inputs[2] != null && op.inputs[2] >= 0) value = this.constData(op.inputs[2], op).data[0] ?? 0;
    const v = this.act(op.inputs[0]!, op);
    // zero padding of H and W only, feeding only convolutions: folded into their pads
    const uses = this.consumers.get(op.outputs[0]!) ?? [];
    const spatialOnly = rank === 4 && p[0] === 0 && p[1] === 0 && p[6] === 0 && p[7] === 0;
    if (value === 0 && spatialOnly && same(v.perm, NCHW) && uses.length > 0 && !this.sg.outputs.includes(op.outputs[0]!) &&
        uses.every((u) => (u.code === 3 || u.code === 4) && u.inputs[0] === op.outputs[0] && !u.inputs.slice(1).includes(op.outputs[0]!))) {
      this.vals.set(op.outputs[0]!, { name: '', perm: NCHW, pendingPad: { source: v, pads: [p[2]!, p[4]!, p[3]!, p[5]!] } });
      return;
    }
    const begins = v.perm.map((a) => p[2 * a]!), ends = v.perm.map((a) => p[2 * a + 1]!);
    const out = this.node('Pad', [v.name, this.b.i64([...begins, ...ends]), this.b.f32(value)], { mode: A.s('constant') }, this.outName(op));
    this.setOut(op, out, v.perm);
  }

  materializePad(i: number, v: Val): Val {
    const pp = v.pendingPad!;
    const pads = [0, 0, pp.pads[0]!, pp.pads[1]!, 0, 0, pp.pads[2]!, pp.pads[3]!];
    const name = this.node('Pad', [pp.source.name, this.b.i64(pads), this.b.f32(0)], { mode: A.s('constant') }, this.b.name(this.nameOf(i)));
    const out = { name, perm: NCHW };
    this.vals.set(i, out);
    return out;
  }

  transpose(op: TfliteOperator): void {
    const tperm = this.constInts(op.inputs[1]!, op);
    const v = this.act(op.inputs[0]!, op);
    // output TFLite axis j = input TFLite axis tperm[j]: the data stays as it is, only the axes' meaning changes
    this.setOut(op, v.name, v.perm.map((a) => tperm.indexOf(a)));
  }

  alias(op: TfliteOperator): void {
    // QUANTIZE / DEQUANTIZE: the imported graph computes in float, so these change nothing
    const i = op.inputs[0]!, o = op.outputs[0]!;
    const v = this.vals.get(i);
    if (v) this.vals.set(o, v);
    else if (this.isConst(i)) this.constOf.set(o, this.constOf.get(i)!);
    else throw new GraftError(`${this.where(op)}: input tensor ${i} is computed by no earlier operator`);
  }
}

type Handler = (im: Importer, op: TfliteOperator) => void;

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
    im.vals.set(op.outputs[0]!, { name: im.node('Mul', [v.name, v.name], {}, im.b.name(`${v.name}/squared`)), perm: v.perm });
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
  .register('LEAKY_RELU', (im, op) => im.unary(op, (x, o) => im.node('LeakyRelu', [x], { alpha: A.f(op.options.float(0, 0.2)) }, o)))
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

