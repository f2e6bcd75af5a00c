/** Numeric comparisons and layout conversion shared by the importer tests. */
import assert from 'node:assert/strict';

/** NHWC → NCHW for a [n, h, w, c] tensor. */
export function toNchw(x: Float32Array, [n, h, w, c]: number[]): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n!; b++)
    for (let i = 0; i < h!; i++)
      for (let j = 0; j < w!; j++)
        for (let k = 0; k < c!; k++) out[((b * c! + k) * h! + i) * w! + j] = x[((b * h! + i) * w! + j) * c! + k]!;
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
