/**
 * Graft's capped gunzip (src/util/limits.ts, fflate underneath) against Node's zlib.gunzipSync, in the same
 * run: (1) memory over many corrupt streams — Node 20's zlib keeps ~16 KB for every stream it rejects, so a
 * long-lived process reading strangers' .gz files grows without bound; each side runs in its own child
 * process and reports its RSS before and after (after gc()); (2) speed on a real file (Fashion-MNIST's
 * training images, 26 MB of gzip, 47 MB inflated), the median of a few runs, as a ratio to zlib.
 *
 *   node --expose-gc --import tsx bench/gunzip.ts                 # 50,000 corrupt streams, 5 timed runs
 *   node --expose-gc --import tsx bench/gunzip.ts --streams 100000 --runs 9
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { gunzipLimited } from '../src/util/limits.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** The corrupt streams: valid gzip of a short text, one byte of the deflate data flipped (varied per stream). */
function corrupt(i: number): Uint8Array {
  const b = gzipSync(Buffer.from(`row ${i},${'x'.repeat(9 + (i % 50))}\n`));
  b[12] = b[12]! ^ 255;
  return b;
}

function leakChild(impl: string, streams: number): void {
  const inputs = Array.from({ length: 64 }, (_, i) => corrupt(i));
  const f = impl === 'zlib' ? (b: Uint8Array) => gunzipSync(b) : (b: Uint8Array) => gunzipLimited(b, 'x.gz');
  for (let i = 0; i < 1000; i++)
    try {
      f(inputs[i & 63]!);
    } catch {}
  gc();
  const before = process.memoryUsage();
  let refused = 0;
  const t0 = performance.now();
  for (let i = 0; i < streams; i++) {
    try {
      f(inputs[i & 63]!);
    } catch {
      refused++;
    }
  }
  const ms = performance.now() - t0;
  gc();
  const after = process.memoryUsage();
  process.stdout.write(
    `RESULT ${JSON.stringify({ impl, streams, refused, ms, rssBefore: before.rss, rssAfter: after.rss, heapBefore: before.heapUsed, heapAfter: after.heapUsed })}\n`,
  );
}

if (process.argv.includes('--leak-child')) {
  leakChild(arg('impl')!, Number(arg('streams')));
} else {
  const streams = Number(arg('streams') ?? 50000);
  const self = fileURLToPath(import.meta.url);
  console.log(`memory after ${streams.toLocaleString('en')} corrupt gzip streams (each side in its own process):`);
  for (const impl of ['zlib', 'graft']) {
    const p = spawnSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', self, '--leak-child', '--impl', impl, '--streams', String(streams)],
      { encoding: 'utf8' },
    );
    const line = (p.stdout ?? '').split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) {
      console.log(`${impl}: the child failed\n${p.stderr}`);
      continue;
    }
    const r = JSON.parse(line.slice(7));
    const mb = (x: number) => (x / 1e6).toFixed(0);
    console.log(
      `  ${impl === 'zlib' ? 'zlib.gunzipSync ' : 'gunzipLimited   '} refused ${r.refused}/${r.streams} in ${(r.ms / 1000).toFixed(1)} s  RSS ${mb(r.rssBefore)} → ${mb(r.rssAfter)} MB (${r.rssAfter >= r.rssBefore ? '+' : '−'}${mb(Math.abs(r.rssAfter - r.rssBefore))})  heap ${mb(r.heapBefore)} → ${mb(r.heapAfter)} MB`,
    );
  }

  const file = join(process.env['GRAFT_ASSETS'] ?? '/work/shared', 'datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  if (!existsSync(file)) {
    console.log(`speed: skipped, ${file} is missing`);
  } else {
    const gz = readFileSync(file);
    const runs = Number(arg('runs') ?? 5);
    const time = (f: () => Uint8Array) => {
      const ts: number[] = [];
      let n = 0;
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        n = f().length;
        ts.push(performance.now() - t0);
      }
      ts.sort((a, b) => a - b);
      return { ms: ts[ts.length >> 1]!, n };
    };
    const z = time(() => gunzipSync(gz));
    const g = time(() => gunzipLimited(gz, file));
    if (z.n !== g.n) throw new Error(`outputs differ: ${z.n} vs ${g.n} bytes`);
    const sameBytes = Buffer.from(gunzipSync(gz)).equals(Buffer.from(gunzipLimited(gz, file)));
    console.log(
      `speed on ${file.split('/').slice(-2).join('/')} (${(gz.length / 1e6).toFixed(1)} MB → ${(z.n / 1e6).toFixed(1)} MB, median of ${runs}):\n` +
        `  zlib.gunzipSync ${z.ms.toFixed(0)} ms (${(z.n / 1e3 / z.ms).toFixed(0)} MB/s)\n` +
        `  gunzipLimited   ${g.ms.toFixed(0)} ms (${(g.n / 1e3 / g.ms).toFixed(0)} MB/s): ${(g.ms / z.ms).toFixed(2)}× zlib's time, same bytes: ${sameBytes}`,
    );
  }
}
