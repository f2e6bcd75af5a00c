/**
 * IDX files (the MNIST / Fashion-MNIST format), optionally gzipped: a 4-byte magic (0, 0, type,
 * number of dims), the dims as big-endian uint32, then the data. Only unsigned-byte data (type 0x08)
 * is read, which is what image and label files use.
 */
import { readFileSync, existsSync } from 'node:fs';
import { GraftError } from '../util/errors.js';
import { checkedNumel, gunzipLimited, MAX_INFLATED_BYTES } from '../util/limits.js';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const TYPE_NAMES: Record<number, string> = {
  8: 'uint8',
  9: 'int8',
  11: 'int16',
  12: 'int32',
  13: 'float32',
  14: 'float64',
};

/**
 * The dims of an IDX header at the start of `buf`, checked (magic, uint8 type, at least one dim, a sane element
 * count), or undefined when `buf` is too short to hold the whole header.
 */
function idxHeader(buf: Uint8Array, label: string): { dims: number[]; header: number; n: number } | undefined {
  if (buf.length < 4) return undefined;
  if (buf[0] !== 0 || buf[1] !== 0)
    throw new GraftError(`${label}: not an IDX file (bad magic ${hex(buf.subarray(0, 4))})`);
  const type = buf[2]!;
  const ndims = buf[3]!;
  if (type !== 0x08)
    throw new GraftError(
      `${label}: IDX data type 0x${type.toString(16)} (${TYPE_NAMES[type] ?? 'unknown'}) is not supported; only uint8 (0x08)`,
    );
  if (ndims === 0) throw new GraftError(`${label}: IDX file with no dimensions`);
  const header = 4 + 4 * ndims;
  if (buf.length < header) return undefined;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(dv.getUint32(4 + 4 * i, false));
  return { dims, header, n: checkedNumel(dims, `${label}: IDX array`) };
}

/** Parse IDX bytes (already gunzipped, or gzipped: detected by the gzip magic). `label` names the source in errors. */
export function parseIdx(bytes: Uint8Array, label = 'IDX data'): IdxArray {
  let buf = bytes;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipIdx(buf, label);
  if (buf.length < 4) throw new GraftError(`${label}: not an IDX file (only ${buf.length} bytes)`);
  const h = idxHeader(buf, label);
  if (!h) throw new GraftError(`${label}: truncated IDX header (${buf.length} bytes, need ${4 + 4 * buf[3]!})`);
  const { dims, header, n } = h;
  const have = buf.length - header;
  if (have < n)
    throw new GraftError(`${label}: truncated IDX data: dims [${dims.join(', ')}] need ${n} bytes, file has ${have}`);
  if (have > n)
    throw new GraftError(`${label}: ${have - n} unexpected trailing bytes after IDX data of dims [${dims.join(', ')}]`);
  return { dims, data: buf.subarray(header, header + n) };
}

/**
 * Gunzip an IDX file without trusting it, in one pass: as soon as the header has been inflated (≤ 1,024
 * bytes) it is checked, and the rest is inflated only up to the size its dims declare (plus one byte, to
 * notice trailing data), so a small gzip stream cannot expand into gigabytes that the header never claimed,
 * and a stream that is not IDX stops at its first bytes.
 */
function gunzipIdx(gz: Uint8Array, label: string): Uint8Array {
  let declared: number | undefined;
  try {
    return gunzipLimited(gz, label, MAX_INFLATED_BYTES, {
      capFromHead: (head) => {
        const h = idxHeader(head, label);
        if (h) declared = h.header + h.n;
        return declared === undefined ? undefined : declared + 1;
      },
    });
  } catch (e) {
    if (declared !== undefined && e instanceof GraftError && /decompresses to more than/.test(e.message))
      throw new GraftError(`${label}: the gzip stream holds more than the ${declared} bytes its IDX header declares`);
    throw e;
  }
}

/** Read an IDX file (.gz or not). Errors name the file. */
export function readIdx(path: string): IdxArray {
  if (!existsSync(path)) throw new GraftError(`IDX file not found: ${path}`);
  return parseIdx(readFileSync(path), path);
}

export interface IdxDataset {
  /** One view per example into the shared pixel buffer (rows × cols, or the trailing dims, row-major). */
  images: Uint8Array[];
  labels: number[];
  /** Dims of one example, e.g. [28, 28]. */
  shape: number[];
  /** Number of distinct classes (max label + 1). */
  numClasses: number;
}

/** An images file and a labels file (MNIST layout) as per-example views and numeric labels. */
export function readIdxDataset(imagesPath: string, labelsPath: string): IdxDataset {
  const im = readIdx(imagesPath);
  const lb = readIdx(labelsPath);
  if (im.dims.length < 2)
    throw new GraftError(`${imagesPath}: images file has dims [${im.dims.join(', ')}], expected at least 2`);
  if (lb.dims.length !== 1)
    throw new GraftError(`${labelsPath}: labels file has dims [${lb.dims.join(', ')}], expected 1`);
  const count = im.dims[0]!;
  if (lb.dims[0] !== count)
    throw new GraftError(`${imagesPath} has ${count} images but ${labelsPath} has ${lb.dims[0]} labels`);
  const shape = im.dims.slice(1);
  const per = shape.reduce((a, b) => a * b, 1);
  const images: Uint8Array[] = new Array(count);
  for (let i = 0; i < count; i++) images[i] = im.data.subarray(i * per, (i + 1) * per);
  const labels = Array.from(lb.data);
  let numClasses = 0;
  for (const y of labels) if (y + 1 > numClasses) numClasses = y + 1;
  return { images, labels, shape, numClasses };
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
}
