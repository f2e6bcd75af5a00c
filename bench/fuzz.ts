/**
 * Long fuzzing of every reader of untrusted files (targets: test/fuzz/targets.ts). Each reader runs in its own
 * child process (so its peak memory is its own), mutating the committed corpus (test/fixtures/fuzz-corpus/)
 * with fast-check, and reports executions, crashes (anything thrown that is not a GraftError), hangs (one
 * input taking over 2 s) and peak memory (the child's maxRSS, and the largest heap seen). Each new kind of
 * crash is shrunk by fast-check to a minimal input and written to test/fixtures/fuzz-regressions/<reader>/,
 * where test/fuzz/readers.test.ts replays it.
 *
 *   node --import tsx bench/fuzz.ts                      # every reader, 10,000 inputs each
 *   node --import tsx bench/fuzz.ts --runs 1000000       # the goal: a million inputs per reader
 *   node --import tsx bench/fuzz.ts --seconds 600 --reader onnx,tflite --seed 7
 *
 * Options: --runs N (per reader), --seconds S (per reader; whichever ends first), --reader a,b (default all),
 * --seed N (default: random, printed), --scratch DIR (where path-reading targets write; default /dev/shm
 * when present), --no-save (do not write regressions). Each reader prints its progress every minute.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import {
  TARGETS,
  REGRESSIONS_DIR,
  Scratch,
  corpus,
  inputArb,
  materialize,
  runOne,
  target,
  writeCase,
  type Files,
  type Input,
} from '../test/fuzz/targets.js';

const HANG_MS = 2000;
/** How often a child prints its progress (to stderr, which the parent passes through). */
const PROGRESS_MS = 60_000;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface Result {
  reader: string;
  runs: number;
  seconds: number;
  crashes: number;
  kinds: { kind: string; count: number; saved?: string }[];
  hangs: number;
  slowestMs: number;
  maxRssMB: number;
  peakHeapMB: number;
  seed: number;
}

function kindOf(e: unknown): string {
  const err = e as Error;
  const frame = (err?.stack ?? '').split('\n').find((l) => l.includes('/src/')) ?? '';
  // one kind per error class and place (the message varies with the input)
  return `${err?.name ?? typeof e} @ ${frame
    .trim()
    .replace(/^at /, '')
    .replace(/:\d+\)?$/, '')}`;
}

function child(
  reader: string,
  runs: number,
  seconds: number,
  seed: number,
  scratchBase: string,
  save: boolean,
): Result {
  const t = target(reader);
  const seeds = Object.values(corpus(t));
  if (!seeds.length) throw new Error(`no corpus for ${reader}: run node --import tsx test/fuzz/make-corpus.ts`);
  const scratch = new Scratch(scratchBase);
  const kinds = new Map<string, { count: number; input: Input; message: string; saved?: string }>();
  let n = 0,
    hangs = 0,
    slowest = 0,
    peakHeap = 0;
  const start = Date.now();
  let lastReport = start;
  try {
    fc.assert(
      fc.property(inputArb, (input) => {
        n++;
        const files = materialize(t, seeds, input);
        const t0 = performance.now();
        const e = runOne(t, files, scratch);
        const ms = performance.now() - t0;
        if (ms > slowest) slowest = ms;
        if (ms > HANG_MS) {
          hangs++;
          if (save) saveCase(reader, `hang-${hash(files)}`, files, `took ${ms.toFixed(0)} ms`);
        }
        if (e) {
          const k = kindOf(e);
          const rec = kinds.get(k);
          if (rec) rec.count++;
          else kinds.set(k, { count: 1, input, message: String((e as Error)?.message ?? e).slice(0, 200) });
        }
        if ((n & 255) === 0) {
          peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
          if (Date.now() - lastReport > PROGRESS_MS) {
            lastReport = Date.now();
            const s = (lastReport - start) / 1000;
            process.stderr.write(
              `  ${reader}: ${n} inputs in ${s.toFixed(0)} s (${(n / s).toFixed(0)}/s), crashes ${[...kinds.values()].reduce((a, r) => a + r.count, 0)}, hangs ${hangs}, slowest ${slowest.toFixed(0)} ms, maxRSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MB\n`,
            );
          }
        }
        return true;
      }),
      { numRuns: runs, seed, interruptAfterTimeLimit: seconds * 1000, markInterruptAsFailure: false },
    );
    // shrink each kind of crash to a minimal input, and keep it as a regression case
    for (const [k, rec] of kinds) {
      let minimal = materialize(t, seeds, rec.input);
      try {
        fc.assert(
          fc.property(inputArb, (input) => {
            const e = runOne(t, materialize(t, seeds, input), scratch);
            return !(e && kindOf(e) === k);
          }),
          { examples: [[rec.input]], numRuns: 0 },
        );
      } catch (e) {
        const cx = (e as { counterexample?: [Input] }).counterexample;
        if (cx) minimal = materialize(t, seeds, cx[0]);
      }
      if (save) rec.saved = saveCase(reader, `crash-${hash(minimal)}`, minimal, `${k}\n${rec.message}`);
    }
  } finally {
    scratch.dispose();
  }
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
  return {
    reader,
    runs: n,
    seconds: (Date.now() - start) / 1000,
    crashes: [...kinds.values()].reduce((s, r) => s + r.count, 0),
    kinds: [...kinds].map(([kind, r]) => ({
      kind: `${kind}: ${r.message}`,
      count: r.count,
      ...(r.saved ? { saved: r.saved } : {}),
    })),
    hangs,
    slowestMs: Math.round(slowest),
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
    peakHeapMB: Math.round(peakHeap / 2 ** 20),
    seed,
  };
}

function hash(files: Files): string {
  const h = createHash('sha256');
  for (const [n, b] of Object.entries(files).sort()) h.update(n).update(b);
  return h.digest('hex').slice(0, 12);
}

function saveCase(reader: string, name: string, files: Files, why: string): string {
  const dir = join(REGRESSIONS_DIR, reader, name);
  if (!existsSync(dir)) {
    writeCase(dir, files);
    mkdirSync(join(REGRESSIONS_DIR, reader), { recursive: true });
    writeFileSync(`${dir}.txt`, `${why}\n`);
  }
  return dir;
}

const runs = Number(arg('runs') ?? (arg('seconds') ? Number.MAX_SAFE_INTEGER : 10000));
const seconds = Number(arg('seconds') ?? 1e9);
const seed = Number(arg('seed') ?? Math.floor(Math.random() * 2 ** 31));
const scratchBase = arg('scratch') ?? (existsSync('/dev/shm') ? '/dev/shm' : (process.env['TMPDIR'] ?? '/tmp'));
const save = !process.argv.includes('--no-save');

if (process.argv.includes('--child')) {
  const r = child(arg('reader')!, runs, seconds, seed, scratchBase, save);
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
} else {
  const readers = (arg('reader') ?? TARGETS.map((t) => t.name).join(',')).split(',');
  console.log(
    `fuzzing ${readers.join(', ')}: ${runs === Number.MAX_SAFE_INTEGER ? '∞' : runs} inputs or ${seconds === 1e9 ? '∞' : seconds} s per reader, seed ${seed}`,
  );
  const self = fileURLToPath(import.meta.url);
  const results: Result[] = [];
  for (const reader of readers) {
    const args = [
      '--import',
      'tsx',
      self,
      '--child',
      '--reader',
      reader,
      '--runs',
      String(runs),
      '--seconds',
      String(seconds),
      '--seed',
      String(seed),
      '--scratch',
      scratchBase,
      ...(save ? [] : ['--no-save']),
    ];
    const p = spawnSync(process.execPath, args, {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = (p.stdout ?? '').split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) {
      // the child died: out of memory or a crash outside the harness; that is a finding too
      console.log(
        `${reader}: the fuzzing process died (status ${p.status}, signal ${p.signal}; its messages are above)`,
      );
      continue;
    }
    const r = JSON.parse(line.slice(7)) as Result;
    results.push(r);
    console.log(
      `${r.reader.padEnd(14)} ${String(r.runs).padStart(9)} inputs  ${(r.runs / r.seconds).toFixed(0).padStart(6)}/s  crashes ${r.crashes}  hangs>2s ${r.hangs}  slowest ${r.slowestMs} ms  maxRSS ${r.maxRssMB} MB  heap ${r.peakHeapMB} MB`,
    );
    for (const k of r.kinds) console.log(`    ${k.count}× ${k.kind}${k.saved ? `\n       minimized: ${k.saved}` : ''}`);
  }
  const bad = results.filter((r) => r.crashes || r.hangs || r.maxRssMB > 1024);
  console.log(
    bad.length
      ? `FAIL: ${bad.map((r) => r.reader).join(', ')}`
      : `ok: ${results.length} readers, no crash, no hang over 2 s, no memory over 1 GB`,
  );
  process.exitCode = bad.length || results.length < readers.length ? 1 : 0;
}
