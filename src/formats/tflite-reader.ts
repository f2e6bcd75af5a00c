/**
 * The TFLite file reader: flatbuffers → plain objects (TfliteModel), with the `flatbuffers` package's
 * ByteBuffer, through hand-written accessors for the parts of the TFLite schema
 * (tensorflow/lite/schema/schema.fbs) that Graft needs, every offset bounds-checked so a truncated or
 * corrupt file fails with a message instead of reading zeros. Also: constant tensors' stored values,
 * their dequantization (through the importer core), and the files a model carries after its flatbuffer.
 * The conversion to a Graph is ./tflite.ts.
 */
import { ByteBuffer } from 'flatbuffers';
import { halfToFloat } from '../graph/tensor.js';
import { dequantizeAffine } from './importer/core.js';
import { GraftError } from '../util/errors.js';
import { checkedNumel, inflateRawLimited } from '../util/limits.js';

/* ------------------------------------------------------------------------------------------------
 * Schema constants (field ids and enum values from tensorflow/lite/schema/schema.fbs)
 * ---------------------------------------------------------------------------------------------- */

/** TensorType */
export const TFL_TYPE = {
  FLOAT32: 0,
  FLOAT16: 1,
  INT32: 2,
  UINT8: 3,
  INT64: 4,
  STRING: 5,
  BOOL: 6,
  INT16: 7,
  COMPLEX64: 8,
  INT8: 9,
  FLOAT64: 10,
  COMPLEX128: 11,
  UINT64: 12,
  RESOURCE: 13,
  VARIANT: 14,
  UINT32: 15,
  UINT16: 16,
  INT4: 17,
} as const;
export const TYPE_NAMES = Object.fromEntries(Object.entries(TFL_TYPE).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

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
export const ACT = { NONE: 0, RELU: 1, RELU_N1_TO_1: 2, RELU6: 3, TANH: 4, SIGN_BIT: 5 } as const;
/** Padding */
export const PAD_SAME = 0;

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

  constructor(
    readonly bytes: Uint8Array,
    readonly label: string,
  ) {
    this.bb = new ByteBuffer(bytes);
    this.size = bytes.byteLength;
  }

  corrupt(what: string): never {
    throw new GraftError(
      `${this.label} is truncated or not a valid TFLite file: ${what} lies outside the file's ${this.size} bytes`,
    );
  }

  need(pos: number, len: number, what: string): void {
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > this.size)
      this.corrupt(what);
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

  u8(t: number, id: number, dflt = 0): number {
    const p = this.field(t, id);
    return p ? this.bb.readUint8(p) : dflt;
  }
  i8(t: number, id: number, dflt = 0): number {
    const p = this.field(t, id);
    return p ? this.bb.readInt8(p) : dflt;
  }
  i32(t: number, id: number, dflt = 0): number {
    const p = this.field(t, id);
    return p ? this.bb.readInt32(p) : dflt;
  }
  u32(t: number, id: number, dflt = 0): number {
    const p = this.field(t, id);
    return p ? this.bb.readUint32(p) : dflt;
  }
  f32(t: number, id: number, dflt = 0): number {
    const p = this.field(t, id);
    return p ? this.bb.readFloat32(p) : dflt;
  }
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
  if (bytes.byteLength < 8)
    throw new GraftError(`${label} is truncated or not a TFLite file: only ${bytes.byteLength} bytes`);
  const r = new FlatReader(bytes, label);
  const ident = String.fromCharCode(...bytes.subarray(4, 8));
  if (ident !== 'TFL3')
    throw new GraftError(
      `${label} is not a TFLite file (file identifier '${ident.replace(/[^\x20-\x7e]/g, '?')}', expected 'TFL3')`,
    );
  const root = r.indirect(0, 'the root table');

  const opcodes = r.tables(root, MODEL.operatorCodes, 'operator codes').map((t) => {
    const dep = r.i8(t, OPCODE.deprecatedBuiltinCode);
    const ext = r.i32(t, OPCODE.builtinCode);
    return {
      code: Math.max(dep, ext),
      custom: r.str(t, OPCODE.customCode, 'custom operator name'),
      version: r.i32(t, OPCODE.version, 1),
    };
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
        index: ti,
        name,
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
      if (!oc)
        throw new GraftError(
          `${label}: operator ${oi} refers to operator code ${ci}, but the file has ${opcodes.length}`,
        );
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
        index: oi,
        code: oc.code,
        customCode: oc.custom || undefined,
        version: oc.version,
        options,
        inputs: r.ints(o, OPERATOR.inputs, `operator ${oi} inputs`) ?? [],
        outputs: r.ints(o, OPERATOR.outputs, `operator ${oi} outputs`) ?? [],
      };
    });
    const sub: TfliteSubgraph = {
      name: r.str(sg, SUBGRAPH.name, 'subgraph name'),
      tensors,
      operators,
      inputs: r.ints(sg, SUBGRAPH.inputs, `subgraph ${si} inputs`) ?? [],
      outputs: r.ints(sg, SUBGRAPH.outputs, `subgraph ${si} outputs`) ?? [],
    };
    for (const t of tensors)
      if (t.buffer >= buffers.length)
        throw new GraftError(
          `${label}: tensor '${t.name}' refers to buffer ${t.buffer}, but the file has ${buffers.length}`,
        );
    for (const op of operators)
      for (const i of [...op.inputs, ...op.outputs])
        if (i >= tensors.length || i < -1)
          throw new GraftError(
            `${label}: operator ${op.index} (${tfliteOpName(op.code)}) refers to tensor ${i}, but the subgraph has ${tensors.length}`,
          );
    for (const i of [...sub.inputs, ...sub.outputs])
      if (i < 0 || i >= tensors.length)
        throw new GraftError(
          `${label}: subgraph ${si} input/output refers to tensor ${i}, but it has ${tensors.length}`,
        );
    return sub;
  });
  if (!subgraphs.length) throw new GraftError(`${label} has no subgraphs`);
  return {
    version: r.u32(root, MODEL.version),
    description: r.str(root, MODEL.description, 'model description'),
    subgraphs,
    buffers,
  };
}

/* ------------------------------------------------------------------------------------------------
 * Tensor values
 * ---------------------------------------------------------------------------------------------- */

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

const ELEM_SIZE: Partial<Record<number, number>> = {
  [TFL_TYPE.FLOAT32]: 4,
  [TFL_TYPE.FLOAT16]: 2,
  [TFL_TYPE.INT32]: 4,
  [TFL_TYPE.UINT8]: 1,
  [TFL_TYPE.INT64]: 8,
  [TFL_TYPE.INT16]: 2,
  [TFL_TYPE.INT8]: 1,
  [TFL_TYPE.FLOAT64]: 8,
  [TFL_TYPE.BOOL]: 1,
};

/** The raw stored values of a constant tensor as JS numbers (no dequantization). */
export function rawValues(m: TfliteModel, t: TfliteTensor): Float64Array {
  const b = m.buffers[t.buffer]!;
  const size = ELEM_SIZE[t.type];
  if (!size)
    throw new GraftError(`tensor '${t.name}': constant data of type ${TYPE_NAMES[t.type] ?? t.type} is not supported`);
  const n = checkedNumel(t.shape, `tensor '${t.name}'`);
  if (b.byteLength !== n * size)
    throw new GraftError(
      `tensor '${t.name}': its buffer holds ${b.byteLength} bytes, shape [${t.shape}] of ${TYPE_NAMES[t.type]} needs ${n * size}`,
    );
  const dv = view(b);
  const out = new Float64Array(n);
  switch (t.type) {
    case TFL_TYPE.FLOAT32:
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      break;
    case TFL_TYPE.FLOAT64:
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      break;
    case TFL_TYPE.FLOAT16:
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      break;
    case TFL_TYPE.INT32:
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
      break;
    case TFL_TYPE.INT64:
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true));
      break;
    case TFL_TYPE.INT16:
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true);
      break;
    case TFL_TYPE.UINT8:
    case TFL_TYPE.BOOL:
      for (let i = 0; i < n; i++) out[i] = b[i]!;
      break;
    case TFL_TYPE.INT8:
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      break;
  }
  return out;
}

export const INTEGER_TYPES = new Set<number>([
  TFL_TYPE.UINT8,
  TFL_TYPE.INT8,
  TFL_TYPE.INT16,
  TFL_TYPE.INT32,
  TFL_TYPE.INT64,
]);

/** Check that a tensor's quantization can be undone; returns it (undefined for unquantized tensors). */
export function quantOf(t: TfliteTensor, where: string): TfliteQuant | undefined {
  if (t.unsupportedQuant)
    throw new GraftError(`${where}: tensor '${t.name}' has an unsupported quantization: ${t.unsupportedQuant}`);
  if (t.sparse) throw new GraftError(`${where}: tensor '${t.name}' is sparse, which is not supported`);
  const q = t.quant;
  if (!q) return undefined;
  if (q.scale.length > 1) {
    if (q.dim < 0 || q.dim >= t.shape.length || t.shape[q.dim] !== q.scale.length)
      throw new GraftError(
        `${where}: tensor '${t.name}' has an unsupported quantization: ${q.scale.length} scales along dimension ${q.dim} of shape [${t.shape}]`,
      );
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

/**
 * Files packed into the model: TFLite's metadata writer appends a zip archive of "associated files"
 * (label lists, vocabularies) after the flatbuffer. Stored and deflated entries are read.
 */
export function embeddedFiles(bytes: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--)
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd < 0) return out;
  const count = dv.getUint16(eocd + 10, true);
  const cdSize = dv.getUint32(eocd + 12, true);
  // offsets in the archive are relative to its start, which follows the flatbuffer
  const start = eocd - cdSize - dv.getUint32(eocd + 16, true);
  let p = eocd - cdSize;
  try {
    for (let k = 0; k < count && p >= 0 && p + 46 <= eocd; k++) {
      if (dv.getUint32(p, true) !== 0x02014b50) break;
      const method = dv.getUint16(p + 10, true),
        size = dv.getUint32(p + 20, true),
        usize = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true),
        extraLen = dv.getUint16(p + 30, true),
        commentLen = dv.getUint16(p + 32, true);
      const local = start + dv.getUint32(p + 42, true);
      const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
      p += 46 + nameLen + extraLen + commentLen;
      if (local < 0 || local + 30 > bytes.length || dv.getUint32(local, true) !== 0x04034b50) continue;
      const data = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
      const raw = bytes.subarray(data, data + size);
      if (method === 0) out.set(name, raw);
      // a member may not inflate beyond the size the archive declares for it (nor beyond 64 MB): no zip bombs.
      // Names are only keys here: nothing is ever written to disk, so there is no zip-slip to guard.
      else if (method === 8)
        out.set(name, new Uint8Array(inflateRawLimited(raw, `embedded file '${name}'`, Math.min(usize, 64 << 20))));
    }
  } catch {
    // a damaged archive only means no embedded files
  }
  return out;
}
