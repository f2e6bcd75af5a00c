/** safetensors files (Hugging Face's tensor format): an 8-byte header length, a JSON header, raw data. */
import { readFileSync, existsSync } from 'node:fs';
import { type Tensor, type DType, typedFromBytes, bytesOf, BYTES_PER_ELEMENT } from '../graph/tensor.js';
import { atomicWrite } from './onnx.js';
import { GraftError } from '../util/errors.js';
import { checkedNumel, checkedCount } from '../util/limits.js';

const CODES: Partial<Record<DType, string>> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
  uint16: 'U16',
  uint32: 'U32',
  uint64: 'U64',
};
const FROM_CODE = new Map(Object.entries(CODES).map(([k, v]) => [v, k as DType]));

export function decodeSafetensors(
  bytes: Uint8Array,
  label = 'safetensors data',
): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  if (bytes.byteLength < 8) throw new GraftError(`${label} is too short to be a safetensors file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > bytes.byteLength - 8) throw new GraftError(`${label}: header length ${n} exceeds the file size`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new GraftError(`${label}: the header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header))
    throw new GraftError(`${label}: the header is not a JSON object`);
  const data = bytes.subarray(8 + n);
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (info === null || typeof info !== 'object' || Array.isArray(info))
        throw new GraftError(`${label}: __metadata__ is not an object`);
      metadata = info as Record<string, string>;
      continue;
    }
    const what = `${label}: tensor '${name}'`;
    if (info === null || typeof info !== 'object') throw new GraftError(`${what} has no dtype/shape/data_offsets`);
    const { dtype: code, shape, data_offsets } = info as { dtype: unknown; shape: unknown; data_offsets: unknown };
    const dtype = typeof code === 'string' ? FROM_CODE.get(code) : undefined;
    if (!dtype) throw new GraftError(`${what} has unsupported dtype ${String(code)}`);
    const count = checkedNumel(shape, what);
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2)
      throw new GraftError(`${what}: data_offsets is not a [begin, end] pair`);
    const b = checkedCount(data_offsets[0], `${what}: data offset`),
      e = checkedCount(data_offsets[1], `${what}: data offset`);
    if (e < b || e - b !== count * BYTES_PER_ELEMENT[dtype] || e > data.byteLength)
      throw new GraftError(
        `${what} has inconsistent offsets [${b}, ${e}] for ${code}[${String(shape)}] (the data section holds ${data.byteLength} bytes)`,
      );
    tensors.set(name, { dtype, dims: [...(shape as number[])], data: typedFromBytes(dtype, data.subarray(b, e)) });
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  if (!existsSync(path)) throw new GraftError(`file not found: ${path}`);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new GraftError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return decodeSafetensors(bytes, path);
}

export function encodeSafetensors(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let off = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of entries) {
    const code = CODES[t.dtype];
    if (!code) throw new GraftError(`cannot store ${t.dtype} tensor '${name}' in safetensors`);
    const b = bytesOf(t);
    header[name] = { dtype: code, shape: t.dims, data_offsets: [off, off + b.byteLength] };
    chunks.push(b);
    off += b.byteLength;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(raw.byteLength + ((8 - (raw.byteLength % 8)) % 8)).fill(0x20); // pad with spaces: data 8-byte aligned
  head.set(raw);
  const out = new Uint8Array(8 + head.byteLength + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let p = 8 + head.byteLength;
  for (const c of chunks) {
    out.set(c, p);
    p += c.byteLength;
  }
  return out;
}

export function writeSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  atomicWrite(path, encodeSafetensors(tensors, metadata));
}
