/** Tensors held in memory: a dtype, dims and a typed array in the dtype's natural JS form. */

export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool'
  | 'string';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export interface Tensor {
  dtype: DType;
  dims: number[];
  /** float16/bfloat16 are kept as raw Uint16 bits, bool as Uint8 (0/1), strings as string[]. */
  data: TypedArray | string[];
}

/** ONNX TensorProto.DataType codes. */
export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
  bfloat16: 16,
};

const BY_CODE = new Map<number, DType>(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));

export function dtypeFromOnnx(code: number): DType {
  const d = BY_CODE.get(code);
  if (!d) throw new Error(`unsupported ONNX tensor data type ${code}`);
  return d;
}

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
  bool: 1,
  string: 0,
};

export function isFloat(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16' || d === 'bfloat16';
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** A typed array of the right kind viewing (or copying, when unaligned) little-endian bytes. */
export function typedFromBytes(dtype: DType, bytes: Uint8Array): TypedArray {
  const size = BYTES_PER_ELEMENT[dtype];
  if (size === 0) throw new Error('string tensors have no raw byte form');
  if (bytes.byteLength % size !== 0)
    throw new Error(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  // Copy into a fresh, aligned buffer so the result owns its memory.
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  const buf = copy.buffer;
  const n = bytes.byteLength / size;
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf, 0, n);
    case 'float64':
      return new Float64Array(buf, 0, n);
    case 'float16':
    case 'bfloat16':
    case 'uint16':
      return new Uint16Array(buf, 0, n);
    case 'int8':
      return new Int8Array(buf, 0, n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buf, 0, n);
    case 'int16':
      return new Int16Array(buf, 0, n);
    case 'int32':
      return new Int32Array(buf, 0, n);
    case 'uint32':
      return new Uint32Array(buf, 0, n);
    case 'int64':
      return new BigInt64Array(buf, 0, n);
    case 'uint64':
      return new BigUint64Array(buf, 0, n);
    default:
      throw new Error(`no typed array for ${dtype}`);
  }
}

export function bytesOf(t: Tensor): Uint8Array {
  if (Array.isArray(t.data)) throw new Error('string tensors have no raw byte form');
  const a = t.data as TypedArray;
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function emptyTyped(dtype: DType, n: number): TypedArray {
  return typedFromBytes(dtype, new Uint8Array(n * BYTES_PER_ELEMENT[dtype]));
}

export function float32(dims: number[], values?: ArrayLike<number>): Tensor {
  const data = new Float32Array(numel(dims));
  if (values) data.set(values as ArrayLike<number>);
  return { dtype: 'float32', dims, data };
}

export function int64(dims: number[], values: ArrayLike<number | bigint>): Tensor {
  const data = new BigInt64Array(numel(dims));
  for (let i = 0; i < data.length; i++) data[i] = BigInt(values[i] as number);
  return { dtype: 'int64', dims, data };
}

/** Convert any numeric tensor's values to plain JS numbers (fp16/bf16 decoded). */
export function toNumbers(t: Tensor): number[] {
  if (Array.isArray(t.data)) throw new Error('string tensor');
  const out = new Array<number>(t.data.length);
  if (t.dtype === 'float16') for (let i = 0; i < out.length; i++) out[i] = halfToFloat((t.data as Uint16Array)[i]!);
  else if (t.dtype === 'bfloat16')
    for (let i = 0; i < out.length; i++) out[i] = bf16ToFloat((t.data as Uint16Array)[i]!);
  else for (let i = 0; i < out.length; i++) out[i] = Number(t.data[i]);
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >> 16) & 0x8000;
  const e = ((x >> 23) & 0xff) - 127 + 15;
  let m = x & 0x7fffff;
  if (((x >> 23) & 0xff) === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let r = m >> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (m >> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

export function bf16ToFloat(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** A float32 tensor's data with its axes permuted. */
export function permuteData(
  data: Float32Array,
  dims: number[],
  perm: number[],
): { data: Float32Array; dims: number[] } {
  const r = dims.length;
  const outDims = perm.map((p) => dims[p]!);
  const inStrides = new Array<number>(r);
  for (let i = r - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= dims[i]!;
  }
  const st = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = data[src]!;
    for (let a = r - 1; a >= 0; a--) {
      idx[a]!++;
      src += st[a]!;
      if (idx[a]! < outDims[a]!) break;
      src -= st[a]! * outDims[a]!;
      idx[a] = 0;
    }
  }
  return { data: out, dims: outDims };
}
