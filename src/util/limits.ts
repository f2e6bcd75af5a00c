/**
 * Sizes a file declares, checked before anything is allocated for them: element counts of tensor shapes
 * (each dimension a non-negative safe integer, the product at most 2^31 − 1 elements and never overflowing),
 * byte counts against the bytes actually present, and decompression capped so that a small gzip or zip
 * member cannot expand into gigabytes. Every reader uses these instead of its own product of dims.
 */
import { crc32, gunzipSync } from 'node:zlib';
import { type FlateStreamHandler, Gunzip, Inflate } from 'fflate';
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

/** Thrown from a stream's data handler to stop inflating at the cap (never escapes this module). */
const OVER_CAP = Symbol('over the decompression cap');
/** Longest possible expansion of deflate: 258 bytes per 2 bits, so a piece of n bytes yields at most ~1032 n. */
const DEFLATE_RATIO = 1032;

/**
 * Inflates through one of fflate's streams (pure JS: Node 20's zlib keeps ~16 KB for every corrupt stream it
 * rejects, which a long-lived server reading strangers' files cannot afford). The input is fed in pieces sized
 * so that one piece cannot expand far past what the cap still allows (at most ~256 KB past it), and the
 * stream is stopped as soon as its output passes the cap: nothing near the size a hostile stream claims is
 * ever allocated. `onData` sees each piece of output before it is kept, and may lower the cap (`max()`).
 * With `upTo` < `bytes.length` only that prefix is inflated (the stream is not finished: a check, not a result).
 * While `small()` is true the pieces are 64 bytes (≤ ~66 KB of output each): until a header has been read.
 */
function inflateCapped(
  stream: { push(chunk: Uint8Array, final?: boolean): void; ondata: FlateStreamHandler },
  bytes: Uint8Array,
  max: () => number,
  onData?: (data: Uint8Array) => void,
  upTo = bytes.length,
  small?: () => boolean,
): { out: Uint8Array; overCap: boolean } {
  const chunks: Uint8Array[] = [];
  let total = 0;
  stream.ondata = (data) => {
    if (!data.length) return;
    onData?.(data);
    total += data.length;
    if (total > max()) throw OVER_CAP;
    chunks.push(data);
  };
  let off = 0;
  try {
    do {
      const room = Math.max(0, max() - total);
      const piece = small?.() ? 64 : Math.min(65536, Math.max(256, Math.ceil(room / DEFLATE_RATIO)));
      const end = Math.min(upTo, off + piece);
      stream.push(bytes.subarray(off, end), end === bytes.length);
      off = end;
    } while (off < upTo);
  } catch (e) {
    if (e === OVER_CAP) return { out: new Uint8Array(0), overCap: true };
    throw e;
  }
  if (chunks.length === 1) return { out: chunks[0]!, overCap: false };
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return { out, overCap: false };
}

function invalid(e: unknown, what: string, kind: string): GraftError {
  if (e instanceof GraftError) return e;
  const why = e instanceof RangeError ? 'too deeply nested' : String((e as Error)?.message ?? e);
  return new GraftError(`${what}: not a valid ${kind} (${why})`);
}

function tooBig(what: string, max: number): GraftError {
  return new GraftError(
    `${what}: decompresses to more than ${max} bytes`,
    'compressed inputs are limited so that a small file cannot exhaust memory',
  );
}

/** Options of gunzipLimited. */
export interface GunzipLimits {
  /**
   * Called with the first output bytes (the first 4 KB at most, as they arrive) until it returns a number:
   * the cap is then lowered to that many bytes (a format whose header declares its size, like IDX). It may
   * throw a GraftError to refuse the stream from its header alone.
   */
  capFromHead?: (head: Uint8Array) => number | undefined;
}

/** Compressed size from which a gzip stream is inflated by zlib once fflate has inflated its first 256 KB. */
const ZLIB_FROM = 1 << 20;
const ZLIB_CHECK = 256 << 10;

/** A zlib error as a GraftError: over the cap, or not a valid stream. */
function zlibError(e: unknown, what: string, max: number, kind: string): GraftError {
  const code = (e as { code?: string }).code;
  if (code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) return tooBig(what, max);
  return new GraftError(`${what}: not a valid ${kind} (${(e as Error).message})`);
}

/**
 * gunzip (single or concatenated gzip members, each member's CRC-32 and length checked), refusing output over `max` bytes (default 1 GiB) with a GraftError naming `what`; nothing much larger
 * than `max` is allocated. Streams under 1 MB (every fuzzed one, and nearly every corrupt one) are inflated by
 * fflate; larger ones by zlib, ~3× faster, once fflate has inflated their first 256 KB without fault, so that
 * only a stream at least 1 MB long that is sound for its first 256 KB can reach zlib's ~16 KB leak per
 * rejected stream (bench/README.md, "Fuzzing").
 */
export function gunzipLimited(
  bytes: Uint8Array,
  what: string,
  max = MAX_INFLATED_BYTES,
  limits: GunzipLimits = {},
): Uint8Array {
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b || bytes[2] !== 8)
    throw new GraftError(
      `${what}: not a valid gzip file (${bytes.length < 18 ? `only ${bytes.length} bytes` : 'incorrect header'})`,
    );
  let cap = max;
  let head: Uint8Array | undefined = limits.capFromHead ? new Uint8Array(0) : undefined;
  let crc = 0;
  let size = 0;
  const checkTrailer = (end: number) => {
    const at = end - 8;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (at < 10 || dv.getUint32(at, true) !== crc || dv.getUint32(at + 4, true) !== size >>> 0)
      throw new GraftError(
        `${what}: not a valid gzip file (truncated, or its checksum or length does not match its data)`,
      );
    crc = 0;
    size = 0;
  };
  const big = bytes.length >= ZLIB_FROM;
  const gz = new Gunzip();
  gz.onmember = (offset) => checkTrailer(offset);
  let r: { out: Uint8Array; overCap: boolean };
  try {
    r = inflateCapped(
      gz,
      bytes,
      () => cap,
      (data) => {
        if (!big) crc = crc32(data, crc);
        size += data.length;
        if (head && limits.capFromHead) {
          if (head.length < 4096) {
            const h = new Uint8Array(Math.min(4096, head.length + data.length));
            h.set(head);
            h.set(data.subarray(0, h.length - head.length), head.length);
            head = h;
          }
          const c = limits.capFromHead(head);
          if (c !== undefined) cap = Math.min(cap, c);
          if (c !== undefined || head.length >= 4096) head = undefined;
        }
      },
      big ? ZLIB_CHECK : bytes.length,
      () => head !== undefined,
    );
    if (!r.overCap && !big) checkTrailer(bytes.length);
  } catch (e) {
    throw invalid(e, what, 'gzip file');
  }
  if (r.overCap) throw tooBig(what, cap);
  if (!big) return r.out;
  try {
    return gunzipSync(bytes, { maxOutputLength: cap });
  } catch (e) {
    throw zlibError(e, what, cap, 'gzip file');
  }
}

/** Raw deflate (zip members), refusing output over `max` bytes. */
export function inflateRawLimited(bytes: Uint8Array, what: string, max = MAX_INFLATED_BYTES): Uint8Array {
  if (!bytes.length) throw new GraftError(`${what}: not a valid deflate stream (empty)`);
  let r: { out: Uint8Array; overCap: boolean };
  try {
    r = inflateCapped(new Inflate(), bytes, () => max);
  } catch (e) {
    throw invalid(e, what, 'deflate stream');
  }
  if (r.overCap) throw tooBig(what, max);
  return r.out;
}
