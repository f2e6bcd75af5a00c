/**
 * ONNX files ⇄ Graph, through protobufjs. Handles every numeric initializer type (raw_data and the
 * typed *_data fields), external data files, and keeps fields Graft does not interpret for round trips.
 */
import { readFileSync, existsSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import protobuf from 'protobufjs';
import Long from 'long';
import { ONNX_PROTO } from './onnx-schema.js';
import { Graph, type Attr, type Node, type ValueInfo, type Dim } from '../graph/graph.js';
import {
  type Tensor,
  type DType,
  dtypeFromOnnx,
  ONNX_DTYPE,
  typedFromBytes,
  bytesOf,
  emptyTyped,
  BYTES_PER_ELEMENT,
  floatToHalf,
} from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';
import { atomicWrite } from '../util/atomic.js';
import { insideFolder } from '../util/paths.js';
import { checkedNumel, checkedCount } from '../util/limits.js';

const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
const ModelProto = root.lookupType('onnx.ModelProto');
const TensorProtoT = root.lookupType('onnx.TensorProto');

/* eslint-disable @typescript-eslint/no-explicit-any */
type Msg = any;

const num = (v: unknown): number =>
  v == null ? 0 : typeof v === 'number' ? v : Long.isLong(v) ? (v as Long).toNumber() : Number(v);
const toLong = (v: number): number | Long => {
  if (Number.isSafeInteger(v)) return v;
  if (v >= 9.2e18) return Long.MAX_VALUE;
  if (v <= -9.2e18) return Long.MIN_VALUE;
  return Long.fromString(BigInt(Math.trunc(v)).toString());
};
const utf8 = new TextDecoder();
const enc = new TextEncoder();

export interface ReadOptions {
  /** Folder that external data paths are relative to (default: the model file's folder). */
  baseDir?: string;
}

export function readOnnx(path: string): Graph {
  if (!existsSync(path)) throw new GraftError(`model file not found: ${path}`);
  return decodeOnnx(readFileSync(path), { baseDir: dirname(path) }, path);
}

export function decodeOnnx(bytes: Uint8Array, opts: ReadOptions = {}, label = 'model'): Graph {
  let m: Msg;
  try {
    m = ModelProto.decode(bytes);
  } catch (e) {
    throw new GraftError(`${label} is not a valid ONNX file: ${(e as Error).message}`);
  }
  if (!m.graph) throw new GraftError(`${label} is not a valid ONNX file: it has no graph`);
  const g = new Graph();
  g.irVersion = num(m.ir_version);
  g.producerName = m.producer_name ?? '';
  g.producerVersion = m.producer_version ?? '';
  g.docString = m.doc_string ?? '';
  g.opsets = {};
  for (const o of m.opset_import ?? []) g.opsets[o.domain ?? ''] = num(o.version);
  if (!('' in g.opsets) && !('ai.onnx' in g.opsets)) g.opsets[''] = 1;
  for (const p of m.metadata_props ?? []) g.metadata[p.key] = p.value;
  for (const k of ['domain', 'model_version', 'training_info', 'functions'] as const) {
    const v = m[k];
    if (v != null && !(Array.isArray(v) && v.length === 0)) g.extra[k] = v;
  }
  const gp = m.graph;
  g.name = gp.name ?? 'graph';
  const base = opts.baseDir ?? '.';
  for (const t of gp.initializer ?? []) {
    try {
      g.initializers.set(t.name, tensorFromProto(t, base));
    } catch (e) {
      throw ownError(e, `${label}: initializer '${t.name}'`);
    }
  }
  try {
    g.inputs = (gp.input ?? []).map(valueInfoFromProto);
    g.outputs = (gp.output ?? []).map(valueInfoFromProto);
    g.valueInfo = (gp.value_info ?? []).map(valueInfoFromProto);
    g.nodes = (gp.node ?? []).map((n: Msg, i: number) => {
      try {
        return nodeFromProto(n, i, base);
      } catch (e) {
        throw ownError(e, `node '${n.name || i}' (${n.op_type})`);
      }
    });
  } catch (e) {
    throw ownError(e, label);
  }
  for (const k of ['sparse_initializer', 'quantization_annotation', 'doc_string', 'metadata_props'] as const) {
    const v = gp[k];
    if (v != null && !(Array.isArray(v) && v.length === 0)) g.extra[`graph.${k}`] = v;
  }
  return g;
}

/**
 * The reader's own complaints (GraftErrors, and the plain Errors thrown while decoding a tensor or a type)
 * as a GraftError prefixed with where; anything else (a TypeError, a RangeError) is a bug and passes through.
 */
function ownError(e: unknown, where: string): unknown {
  if (e instanceof GraftError) return new GraftError(`${where}: ${e.message}`, e.hint);
  if (e instanceof Error && e.constructor === Error) return new GraftError(`${where}: ${e.message}`);
  return e;
}

function nodeFromProto(n: Msg, i: number, base: string): Node {
  const attrs: Record<string, Attr> = {};
  for (const a of n.attribute ?? []) attrs[a.name] = attrFromProto(a, base);
  return {
    name: n.name || `${n.op_type}_${i}`,
    opType: n.op_type,
    domain: n.domain ?? '',
    inputs: [...(n.input ?? [])],
    outputs: [...(n.output ?? [])],
    attrs,
    ...(n.doc_string ? { docString: n.doc_string } : {}),
  };
}

function attrFromProto(a: Msg, base: string): Attr {
  // type 0 (UNDEFINED) appears in very old files: infer from which field is set.
  let type: number = a.type ?? 0;
  if (!type) {
    if (a.ints?.length) type = 7;
    else if (a.floats?.length) type = 6;
    else if (a.strings?.length) type = 8;
    else if (a.t) type = 4;
    else if (a.g) type = 5;
    else if (a.s != null && a.s.length) type = 3;
    else if (a.f != null && a.f !== 0) type = 1;
    else type = 2;
  }
  switch (type) {
    case 1:
      return { type: 'float', value: a.f ?? 0 };
    case 2:
      return { type: 'int', value: num(a.i) };
    case 3:
      return { type: 'string', value: utf8.decode(a.s instanceof Uint8Array ? a.s : new Uint8Array()) };
    case 4:
      return { type: 'tensor', value: tensorFromProto(a.t, base) };
    case 6:
      return { type: 'floats', value: [...(a.floats ?? [])] };
    case 7:
      return { type: 'ints', value: (a.ints ?? []).map(num) };
    case 8:
      return { type: 'strings', value: (a.strings ?? []).map((s: Uint8Array) => utf8.decode(s)) };
    default:
      return { type: 'raw', value: a };
  }
}

function shapeFromProto(s: Msg): Dim[] | undefined {
  if (!s) return undefined;
  return (s.dim ?? []).map((d: Msg): Dim => {
    if (d.value === 'dim_value') return num(d.dim_value);
    if (d.value === 'dim_param' && d.dim_param !== '') return d.dim_param;
    return null;
  });
}

function valueInfoFromProto(v: Msg): ValueInfo {
  const out: ValueInfo = { name: v.name };
  const tt = v.type?.tensor_type;
  if (tt) {
    if (tt.elem_type) out.dtype = dtypeFromOnnx(tt.elem_type);
    const shape = shapeFromProto(tt.shape);
    if (shape) out.shape = shape;
  } else if (v.type) out.rawType = v.type;
  if (v.doc_string) out.docString = v.doc_string;
  return out;
}

export function tensorFromProto(t: Msg, base = '.'): Tensor {
  if (t == null) throw new Error('missing tensor');
  const dtype = dtypeFromOnnx(t.data_type ?? 0);
  const dims: number[] = (t.dims ?? []).map(num);
  const n = checkedNumel(dims, `tensor '${t.name ?? ''}'`);
  if (dtype === 'string') {
    if ((t.string_data ?? []).length !== n)
      throw new Error(`tensor has ${(t.string_data ?? []).length} strings, expected ${n}`);
    return { dtype, dims, data: (t.string_data ?? []).map((s: Uint8Array) => utf8.decode(s)) };
  }
  if (t.data_location === 1)
    return { dtype, dims, data: typedFromBytes(dtype, readExternal(t, base, n * BYTES_PER_ELEMENT[dtype])) };
  if (t.raw_data && t.raw_data.length) {
    if (t.raw_data.length !== n * BYTES_PER_ELEMENT[dtype])
      throw new Error(
        `raw data has ${t.raw_data.length} bytes, expected ${n * BYTES_PER_ELEMENT[dtype]} for ${dtype}[${dims}]`,
      );
    return { dtype, dims, data: typedFromBytes(dtype, t.raw_data) };
  }
  let src: ArrayLike<unknown> = [];
  switch (dtype) {
    case 'float32':
      src = t.float_data ?? [];
      break;
    case 'float64':
      src = t.double_data ?? [];
      break;
    case 'int64':
      src = t.int64_data ?? [];
      break;
    case 'uint32':
    case 'uint64':
      src = t.uint64_data ?? [];
      break;
    default:
      src = t.int32_data ?? []; // int8..int32, uint8, uint16, bool, float16/bfloat16 bits
  }
  if (src.length !== n && !(n === 0 && src.length === 0)) {
    if (src.length === 0 && n > 0) throw new Error(`tensor has no data for ${dtype}[${dims}]`);
    throw new Error(`tensor has ${src.length} values, expected ${n}`);
  }
  const data = emptyTyped(dtype, n); // only now: the file holds a value for every element
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) {
      const v = src[i] as Msg;
      data[i] = Long.isLong(v) ? BigInt((v as Long).toString()) : BigInt(v as number);
    }
  } else {
    for (let i = 0; i < n; i++) (data as Float32Array)[i] = num(src[i]);
  }
  return { dtype, dims, data };
}

function readExternal(t: Msg, base: string, nbytes: number): Uint8Array {
  const kv: Record<string, string> = {};
  for (const e of t.external_data ?? []) kv[e.key] = e.value;
  const loc = kv['location'];
  if (!loc) throw new Error('external data without a location');
  const file = insideFolder(base, loc, 'external data location');
  if (!existsSync(file)) throw new Error(`external data file not found: ${file}`);
  const offset = checkedCount(kv['offset'] ?? 0, 'external data offset');
  const length = kv['length'] != null ? checkedCount(kv['length'], 'external data length') : nbytes;
  if (length !== nbytes) throw new Error(`external data length ${length} does not match ${nbytes} bytes`);
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    // the bytes must be there before a buffer is allocated for them
    if (offset + length > size)
      throw new Error(`external data file ${file} is truncated (wanted ${length} bytes at ${offset}, it has ${size})`);
    const buf = new Uint8Array(length);
    const got = readSync(fd, buf, 0, length, offset);
    if (got !== length)
      throw new Error(`external data file ${file} is truncated (wanted ${length} bytes at ${offset}, got ${got})`);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/* ------------------------------------------------------------------ writing */

export interface WriteOptions {
  /** Store initializers of at least this many bytes in a side file `<model>.data` (ONNX external data). */
  externalDataThreshold?: number;
  /** Name of the external data file, relative to the model (default `<model file name>.data`). */
  externalDataFile?: string;
}

export function tensorToProto(name: string, t: Tensor, external?: { file: string; offset: number }): Msg {
  const p: Msg = { name, dims: t.dims.map(toLong), data_type: ONNX_DTYPE[t.dtype] };
  if (t.dtype === 'string') p.string_data = (t.data as string[]).map((s) => enc.encode(s));
  else if (external) {
    p.data_location = 1;
    p.external_data = [
      { key: 'location', value: external.file },
      { key: 'offset', value: String(external.offset) },
      { key: 'length', value: String(bytesOf(t).byteLength) },
    ];
  } else p.raw_data = bytesOf(t);
  return p;
}

function attrToProto(name: string, a: Attr): Msg {
  switch (a.type) {
    case 'float':
      return { name, type: 1, f: a.value };
    case 'int':
      return { name, type: 2, i: toLong(a.value) };
    case 'string':
      return { name, type: 3, s: enc.encode(a.value) };
    case 'tensor':
      return { name, type: 4, t: tensorToProto('', a.value) };
    case 'floats':
      return { name, type: 6, floats: a.value };
    case 'ints':
      return { name, type: 7, ints: a.value.map(toLong) };
    case 'strings':
      return { name, type: 8, strings: a.value.map((s) => enc.encode(s)) };
    case 'raw':
      return { ...(a.value as object), name };
  }
}

function valueInfoToProto(v: ValueInfo): Msg {
  const p: Msg = { name: v.name };
  if (v.rawType) p.type = v.rawType;
  else if (v.dtype) {
    const tt: Msg = { elem_type: ONNX_DTYPE[v.dtype] };
    if (v.shape)
      tt.shape = {
        dim: v.shape.map((d) =>
          typeof d === 'number' ? { dim_value: toLong(d) } : typeof d === 'string' ? { dim_param: d } : {},
        ),
      };
    p.type = { tensor_type: tt };
  }
  if (v.docString) p.doc_string = v.docString;
  return p;
}

export function encodeOnnx(g: Graph, external?: { file: string; threshold: number; chunks: Uint8Array[] }): Uint8Array {
  let offset = 0;
  const initializer = [...g.initializers].map(([name, t]) => {
    if (external && t.dtype !== 'string' && bytesOf(t).byteLength >= external.threshold) {
      const bytes = bytesOf(t);
      const pad = (4096 - (offset % 4096)) % 4096; // page-align like onnx's own writer
      if (pad) external.chunks.push(new Uint8Array(pad));
      offset += pad;
      const p = tensorToProto(name, t, { file: external.file, offset });
      external.chunks.push(bytes);
      offset += bytes.byteLength;
      return p;
    }
    return tensorToProto(name, t);
  });
  const graph: Msg = {
    name: g.name,
    node: g.nodes.map((n) => ({
      name: n.name,
      op_type: n.opType,
      ...(n.domain ? { domain: n.domain } : {}),
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([k, a]) => attrToProto(k, a)),
      ...(n.docString ? { doc_string: n.docString } : {}),
    })),
    initializer,
    input: g.inputs.map(valueInfoToProto),
    output: g.outputs.map(valueInfoToProto),
    value_info: g.valueInfo.map(valueInfoToProto),
  };
  for (const [k, v] of Object.entries(g.extra)) if (k.startsWith('graph.')) graph[k.slice(6)] = v;
  const model: Msg = {
    ir_version: toLong(g.irVersion),
    opset_import: Object.entries(g.opsets).map(([domain, version]) => ({ domain, version: toLong(version) })),
    producer_name: g.producerName,
    producer_version: g.producerVersion,
    graph,
    metadata_props: Object.entries(g.metadata).map(([key, value]) => ({ key, value })),
  };
  if (g.docString) model.doc_string = g.docString;
  for (const [k, v] of Object.entries(g.extra)) if (!k.startsWith('graph.')) model[k] = v;
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** Write a model atomically (temp file + rename), optionally with large initializers in a side file. */
export function writeOnnx(g: Graph, path: string, opts: WriteOptions = {}): void {
  let ext: { file: string; threshold: number; chunks: Uint8Array[] } | undefined;
  if (opts.externalDataThreshold != null) {
    ext = {
      file: opts.externalDataFile ?? `${basename(path)}.data`,
      threshold: opts.externalDataThreshold,
      chunks: [],
    };
  }
  const bytes = encodeOnnx(g, ext);
  if (ext && ext.chunks.length) {
    const dataPath = join(dirname(path), ext.file);
    atomicWrite(dataPath, Buffer.concat(ext.chunks));
  }
  atomicWrite(path, bytes);
}

/** Write a file via a temporary file, fsync and a rename (src/util/atomic.ts); nothing half-written is left. */
export { atomicWrite };

/** A float32 scalar or small tensor as a TensorProto-compatible Tensor (used by builders). */
export function f32Tensor(values: number[], dims: number[] = [values.length]): Tensor {
  return { dtype: 'float32', dims, data: Float32Array.from(values) };
}

export function f16FromF32(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]!);
  return out;
}

export { TensorProtoT };
export type { DType };
