/**
 * Sizes a file declares, checked before anything is allocated for them: element counts of tensor shapes
 * (each dimension a non-negative safe integer, the product at most 2^31 − 1 elements and never overflowing),
 * byte counts against the bytes actually present, and decompression capped so that a small gzip or zip
 * member cannot expand into gigabytes. Every reader uses these instead of its own product of dims.
 */
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { GraftError } from './errors.js';

/** Most elements one tensor (or one IDX array) may declare: 2^31 − 1. */
export const MAX_ELEMENTS = 2 ** 31 - 1;
/** Most bytes a compressed file or archive member may expand to: 1 GiB. */
export const MAX_INFLATED_BYTES = 2 ** 30;

function shapeText(dims: unknown): string {
  return Array.isArray(dims) ? `[${dims.map((d) => String(d)).join(', ')}]` : (JSON.stringify(dims) ?? String(dims));
}

/**
 * The element count of `dims`, checked: `dims` must be an array of non-negative integers whose product is at
 * most `limit` (default 2^31 − 1). Otherwise a GraftError naming `what` (e.g. "tensor 'conv1/kernel'").
 */
export function checkedNumel(dims: unknown, what: string, limit = MAX_ELEMENTS): number {
  if (!Array.isArray(dims)) throw new GraftError(`${what}: shape ${shapeText(dims)} is not a list of dimensions`);
  if (dims.length > 64) throw new GraftError(`${what}: shape has ${dims.length} dimensions (at most 64 are accepted)`);
  let n = 1;
  for (const d of dims) {
    if (typeof d !== 'number' || !Number.isInteger(d))
      throw new GraftError(`${what}: shape ${shapeText(dims)} has a dimension that is not an integer`);
    if (d < 0) throw new GraftError(`${what}: shape ${shapeText(dims)} has a negative dimension`);
    if (d > limit) throw new GraftError(`${what}: shape ${shapeText(dims)} has a dimension over ${limit}`);
  }
  for (const d of dims) {
    n *= d;
    if (n > limit) throw new GraftError(`${what}: shape ${shapeText(dims)} has more than ${limit} elements`);
  }
  return n;
}

/** Bytes of `dims` at `bytesPer` bytes each, checked as checkedNumel (the byte count is a safe integer). */
export function checkedBytes(dims: unknown, bytesPer: number, what: string): number {
  return checkedNumel(dims, what) * bytesPer;
}

/** A non-negative safe integer read from a file (an offset, a length, a count), or a GraftError naming it. */
export function checkedCount(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    throw new GraftError(`${what}: ${JSON.stringify(v) ?? String(v)} is not a non-negative integer`);
  if (n > max) throw new GraftError(`${what}: ${n} is over the limit of ${max}`);
  return n;
}

function inflated(e: unknown, what: string, max: number, kind: string): GraftError {
  const code = (e as { code?: string }).code;
  if (code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError)
    return new GraftError(
      `${what}: decompresses to more than ${max} bytes`,
      'compressed inputs are limited so that a small file cannot exhaust memory',
    );
  return new GraftError(`${what}: not a valid ${kind} (${(e as Error).message})`);
}

/** gunzip, refusing output over `max` bytes (default 1 GiB) with a GraftError naming `what`. */
export function gunzipLimited(bytes: Uint8Array, what: string, max = MAX_INFLATED_BYTES): Uint8Array {
  try {
    return gunzipSync(bytes, { maxOutputLength: max });
  } catch (e) {
    throw inflated(e, what, max, 'gzip file');
  }
}

/** Raw deflate (zip members), refusing output over `max` bytes. */
export function inflateRawLimited(bytes: Uint8Array, what: string, max = MAX_INFLATED_BYTES): Uint8Array {
  try {
    return inflateRawSync(bytes, { maxOutputLength: max });
  } catch (e) {
    throw inflated(e, what, max, 'deflate stream');
  }
}
