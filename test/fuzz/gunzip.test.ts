/**
 * The capped decompression of untrusted bytes (src/util/limits.ts gunzipLimited / inflateRawLimited, and the
 * IDX reader's one-pass gunzip): what it accepts and refuses, that output stops at the cap on both of its
 * paths (fflate under 1 MB of input, zlib above once fflate has checked the first 256 KB), and that rejecting
 * thousands of corrupt streams does not leave memory behind (Node 20's zlib.gunzipSync keeps ~2 KB of JS heap
 * and ~16 KB in all for each one; bench/gunzip.ts measures it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { parseIdx } from '../../src/data/idx.js';
import { GraftError } from '../../src/util/errors.js';
import { gunzipLimited, inflateRawLimited } from '../../src/util/limits.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const text = Buffer.from('label,text\n'.repeat(500));

test('gunzipLimited: members, checksums, truncation, trailing bytes, and the cap (small streams, fflate)', () => {
  assert.deepEqual(Buffer.from(gunzipLimited(gzipSync(text), 'a.csv.gz')), text);
  const two = Buffer.concat([gzipSync(text), gzipSync(Buffer.from('x,y\n')), gzipSync(Buffer.alloc(0))]);
  assert.deepEqual(Buffer.from(gunzipLimited(two, 'a.csv.gz')), Buffer.concat([text, Buffer.from('x,y\n')]));
  const gz = gzipSync(text);
  const badCrc = Buffer.from(gz);
  badCrc[badCrc.length - 7] = badCrc[badCrc.length - 7]! ^ 1;
  assert.throws(
    () => gunzipLimited(badCrc, 'a.csv.gz'),
    /a\.csv\.gz: not a valid gzip file \(truncated, or its checksum/,
  );
  for (const cut of [1, 8, 9, gz.length >> 1])
    assert.throws(
      () => gunzipLimited(gz.subarray(0, gz.length - cut), 'a.csv.gz'),
      /a\.csv\.gz: not a valid gzip file/,
    );
  assert.throws(() => gunzipLimited(Buffer.concat([gz, Buffer.alloc(8)]), 'a.csv.gz'), /not a valid gzip file/);
  // cut after several 64 KB pieces (fflate does not always notice the end there: the checksum does)
  const mid = gzipSync(randomBytes(300_000));
  for (const n of [65537, 100_000, 200_000, mid.length - 4])
    assert.throws(() => gunzipLimited(mid.subarray(0, n), 'b.gz'), /b\.gz: not a valid gzip file/, `cut at ${n}`);
  assert.equal(gunzipLimited(gzipSync(Buffer.alloc(1000)), 'z.gz', 1000).length, 1000);
  assert.throws(
    () => gunzipLimited(gzipSync(Buffer.alloc(1001)), 'z.gz', 1000),
    /z\.gz: decompresses to more than 1000 bytes/,
  );
  // raw deflate (zip members)
  assert.deepEqual(Buffer.from(inflateRawLimited(deflateRawSync(text), 'm')), text);
  assert.throws(() => inflateRawLimited(deflateRawSync(text), 'member', 100), /member: decompresses to more than 100/);
  assert.throws(() => inflateRawLimited(deflateRawSync(text).subarray(0, 20), 'member'), /member: not a valid deflate/);
  assert.throws(() => inflateRawLimited(new Uint8Array(0), 'member'), /member: not a valid deflate stream/);
});

test('gunzipLimited: a stream over 1 MB (checked by fflate, inflated by zlib) keeps the cap; a bomb stops at it', () => {
  const noise = randomBytes(1_200_000); // incompressible: the gzip is over 1 MB
  const gz = gzipSync(noise);
  assert.ok(gz.length > 1 << 20);
  assert.deepEqual(Buffer.from(gunzipLimited(gz, 'big.gz')), noise);
  assert.throws(() => gunzipLimited(gz, 'big.gz', noise.length - 1), /big\.gz: decompresses to more than 1199999/);
  const corrupt = Buffer.from(gz);
  corrupt[gz.length - 5] = corrupt[gz.length - 5]! ^ 1; // the trailer's length: only zlib sees it
  assert.throws(() => gunzipLimited(corrupt, 'big.gz'), /big\.gz: not a valid gzip file/);
  // 1.2 MB of noise then 150 MB of zeros: the check passes, zlib stops at the 2 MB cap
  const bomb = Buffer.concat([gz, gzipSync(Buffer.alloc(150e6))]);
  const rss = process.memoryUsage().rss;
  assert.throws(() => gunzipLimited(bomb, 'bomb.gz', 2e6), /bomb\.gz: decompresses to more than 2000000 bytes/);
  assert.ok(process.memoryUsage().rss - rss < 100e6, 'the 150 MB were never inflated');
});

test('IDX: a gzip stream that is not IDX stops at its first bytes, without inflating the rest', () => {
  const gz = gzipSync(Buffer.alloc(60e6, 0xff)); // 60 MB that would expand under the 1 GiB cap
  const rss = process.memoryUsage().rss;
  assert.throws(() => parseIdx(gz, 'junk.idx.gz'), /junk\.idx\.gz: not an IDX file \(bad magic ff ?ff ?ff ?ff\)/i);
  assert.ok(process.memoryUsage().rss - rss < 40e6, 'the 60 MB were never inflated');
  const idx = new Uint8Array([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(parseIdx(gzipSync(idx), 'a.idx.gz').dims, [2, 3]);
  assert.throws(
    () => parseIdx(gzipSync(Buffer.concat([idx, Buffer.alloc(5000)])), 'a.idx.gz'),
    /a\.idx\.gz: the gzip stream holds more than the 18 bytes its IDX header declares/,
  );
});

test('rejecting 5,000 corrupt gzip streams leaves no memory behind (zlib.gunzipSync kept ~2 KB of heap each)', () => {
  const streams = Array.from({ length: 32 }, (_, i) => {
    const b = gzipSync(Buffer.from(`row ${i},${'x'.repeat(9 + i)}\n`));
    b[12] = b[12]! ^ 255;
    return b;
  });
  const run = (n: number) => {
    let refused = 0;
    for (let i = 0; i < n; i++)
      try {
        gunzipLimited(streams[i & 31]!, 'x.gz');
      } catch (e) {
        assert.ok(e instanceof GraftError, String(e));
        refused++;
      }
    return refused;
  };
  run(500);
  gc();
  const before = process.memoryUsage().heapUsed;
  assert.equal(run(5000), 5000);
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 2e6, `the heap grew by ${(grown / 1e6).toFixed(1)} MB over 5,000 rejected streams`);
});
