/**
 * Scale-out overhead and speed-up: the same feature extraction (Coral MobileNetV2, 224×224, imported
 * from uint8 TFLite to float ONNX, cut at its 1280-d average pool) over N Fashion-MNIST images
 * written as PNG files, each time into a fresh (cold) activation cache:
 *   (a) in this process: extractFeatures over the file paths, batches of --batch, --threads threads;
 *   (b) through the queue with 1 `graft worker` (--threads threads): trainFeaturesOnQueue's shards;
 *   (c) through the queue with 2 workers (each --threads / 2 threads, at least 1; same total).
 * Queue times run from submission to the last shard's completion (the head fit that follows is not
 * counted). Workers are started and warmed (model loaded) before timing. Reported: seconds, images/s,
 * the per-image overhead of (b) over (a) (target ≤ 5 %), and the speed-up of (c) over (a); also the
 * CPU time of every process involved (this one, the workers: /proc/PID/stat), which a busy machine
 * disturbs far less than wall time.
 * Rounds alternate the three modes; medians and best rounds are shown, with every round's times.
 *
 *   npx tsx bench/scale.ts                          # 512 images, batch 32, shards of 128, 3 rounds
 *   npx tsx bench/scale.ts --images 128 --rounds 1  # quick
 * Options: --images N, --batch N, --shard N, --rounds N, --threads N (default GRAFT_THREADS, else 2).
 * Needs redis-server (started here on a free 127.0.0.1 port) and ../shared (GRAFT_ASSETS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { assetPath } from '../src/data/assets.js';
import { readIdxDataset } from '../src/data/idx.js';
import { loadLabelledImages } from '../src/data/labelled-images.js';
import { loadModel } from '../src/formats/load.js';
import { extractFeatures } from '../src/features/extract.js';
import { FeatureCache } from '../src/features/cache.js';
import { trainFeaturesOnQueue, extractionOrder } from '../src/scale/features.js';
import { startRedis } from '../test/helpers/redis.js';

const { values: a } = parseArgs({
  options: {
    images: { type: 'string', default: '512' },
    batch: { type: 'string', default: '32' },
    shard: { type: 'string', default: '128' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string' },
  },
});
const N = Number(a.images),
  B = Number(a.batch),
  SHARD = Number(a.shard),
  ROUNDS = Number(a.rounds);
const T = Number(a.threads ?? process.env['GRAFT_THREADS'] ?? 2);
const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const tmp = mkdtempSync(join(tmpdir(), 'graft-bench-scale-'));
const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;

async function imageFolder(root: string): Promise<void> {
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  for (let i = 0; i < N; i++) {
    const dir = join(root, String(d.labels[i]));
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, `${i}.png`),
      await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    );
  }
}

function startWorkers(url: string, n: number, threads: number): Promise<ChildProcess[]> {
  const ws = Array.from({ length: n }, () =>
    spawn(process.execPath, [...CLI, 'worker', '--queue', url, '--quiet'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GRAFT_THREADS: String(threads) },
    }),
  );
  return Promise.all(
    ws.map(
      (w) =>
        new Promise<ChildProcess>((resolve, reject) => {
          let log = '';
          w.stderr!.on('data', (d: Buffer) => {
            log += d.toString();
            if (log.includes('taking jobs')) resolve(w);
          });
          w.once('exit', () => reject(new Error(`worker exited: ${log}`)));
        }),
    ),
  );
}

async function stop(ws: ChildProcess[]): Promise<void> {
  await Promise.all(
    ws.map(
      (w) =>
        new Promise<void>((r) => {
          if (w.exitCode !== null) return r();
          w.once('exit', () => r());
          w.kill('SIGTERM');
        }),
    ),
  );
}

const data = join(tmp, 'data');
await imageFolder(data);
const labelled = loadLabelledImages(data);
const opts = { batchSize: B, seed: 0, valFraction: 0.1, testFraction: 0.2, head: 'ncm' as const }; // ncm: the queue run's head fit costs milliseconds
const rows = extractionOrder(labelled.labels, opts);
const model = loadModel(MODEL);
const redis = await startRedis();
let run = 0;

/** CPU seconds (user + system) a child process has used so far (Linux: /proc/PID/stat). */
function childCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}
const ownCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
/** CPU seconds per mode and round: on a busy machine the steadier measure of the work done. */
const cpu: Record<'local' | 'q1' | 'q2', number[]> = { local: [], q1: [], q2: [] };
let workerPids: number[] = [];

async function local(): Promise<number> {
  const cache = FeatureCache.open(join(tmp, `cache-${run++}`));
  const chunks: string[][] = [];
  for (let s = 0; s < rows.length; s += B) chunks.push(rows.slice(s, s + B).map((r) => labelled.inputs[r] as string));
  const t0 = performance.now(),
    c0 = ownCpu();
  await extractFeatures(model, undefined, chunks, { batchSize: B, cache, runtime: { threads: T } });
  cpu.local.push(ownCpu() - c0);
  return (performance.now() - t0) / 1000;
}

async function queued(mode: 'q1' | 'q2'): Promise<number> {
  const c0 = ownCpu() + workerPids.reduce((s, p) => s + childCpu(p), 0);
  const r = await trainFeaturesOnQueue(
    MODEL,
    { path: data },
    { ...opts, cacheDir: join(tmp, `cache-${run++}`) },
    { queue: redis.url, shardSize: SHARD },
  );
  if (r.extraction.computed !== rows.length)
    throw new Error(`expected ${rows.length} computed, got ${r.extraction.computed}`);
  cpu[mode].push(ownCpu() + workerPids.reduce((s, p) => s + childCpu(p), 0) - c0); // includes the head fit (small next to extraction)
  return r.queue.extractSeconds;
}

const times: Record<'local' | 'q1' | 'q2', number[]> = { local: [], q1: [], q2: [] };
try {
  await local(); // warm-up (onnxruntime session, sharp)
  cpu.local.length = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ['local', 'q1', 'q2'] as const) {
      if (mode === 'local') {
        times.local.push(await local());
        continue;
      }
      const ws = await startWorkers(
        redis.url,
        mode === 'q1' ? 1 : 2,
        mode === 'q1' ? T : Math.max(1, Math.floor(T / 2)),
      );
      try {
        await trainFeaturesOnQueue(
          MODEL,
          { path: data },
          { ...opts, labelsPerClass: 1, cacheDir: join(tmp, `warm-${run++}`) },
          { queue: redis.url, shardSize: 8 },
        ); // workers load the model
        workerPids = ws.map((w) => w.pid!);
        times[mode].push(await queued(mode));
      } finally {
        await stop(ws);
      }
    }
    process.stderr.write(
      `round ${round + 1}/${ROUNDS}: local ${times.local.at(-1)!.toFixed(2)} s, 1 worker ${times.q1.at(-1)!.toFixed(2)} s, 2 workers ${times.q2.at(-1)!.toFixed(2)} s\n`,
    );
  }
} finally {
  await redis.stop();
  rmSync(tmp, { recursive: true, force: true });
}

const n = rows.length;
// medians, and the best round of each mode (on a busy machine the least disturbed one)
for (const [stat, f] of [
  ['median', median],
  ['best', (xs: number[]) => Math.min(...xs)],
] as const) {
  const l = f(times.local),
    q1 = f(times.q1),
    q2 = f(times.q2);
  console.log(`### ${stat} of ${ROUNDS} round(s)`);
  console.log('');
  console.log('| run | seconds | images/s | ms/image | vs in-process |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  const row = (name: string, t: number) =>
    console.log(
      `| ${name} | ${t.toFixed(2)} | ${(n / t).toFixed(1)} | ${((1000 * t) / n).toFixed(2)} | ${(l / t).toFixed(2)}× |`,
    );
  row(`in-process (${T} thread${T === 1 ? '' : 's'})`, l);
  row(`queue, 1 worker (${T} thread${T === 1 ? '' : 's'})`, q1);
  row(`queue, 2 workers (${Math.max(1, Math.floor(T / 2))} thread${Math.floor(T / 2) > 1 ? 's' : ''} each)`, q2);
  console.log('');
  console.log(
    `queue overhead per image (1 worker vs in-process): ${((1000 * (q1 - l)) / n).toFixed(2)} ms = ${((100 * (q1 - l)) / l).toFixed(1)} % (target ≤ 5 %): ${(q1 - l) / l <= 0.05 ? 'met' : 'NOT met'}`,
  );
  console.log(`speed-up with 2 workers: ${(l / q2).toFixed(2)}×`);
  console.log('');
}
const cl = median(cpu.local),
  c1 = median(cpu.q1),
  c2 = median(cpu.q2);
console.log('### CPU time (user + system, every process: this one and the workers), medians');
console.log('');
console.log('| run | CPU s | CPU ms/image | vs in-process |');
console.log('| --- | ---: | ---: | ---: |');
for (const [name, c] of [
  ['in-process', cl],
  ['queue, 1 worker', c1],
  ['queue, 2 workers', c2],
] as const)
  console.log(
    `| ${name} | ${c.toFixed(2)} | ${((1000 * c) / n).toFixed(2)} | ${((100 * (c - cl)) / cl).toFixed(1)} % |`,
  );
console.log('');
console.log(
  `queue overhead in CPU per image (1 worker, including the submitter and the head fit): ${((1000 * (c1 - cl)) / n).toFixed(2)} ms = ${((100 * (c1 - cl)) / cl).toFixed(1)} % (target ≤ 5 %): ${(c1 - cl) / cl <= 0.05 ? 'met' : 'NOT met'}`,
);
console.log('');
console.log(
  `${n} images (224×224 MobileNetV2, batch ${B}, shards of ${Math.ceil(SHARD / B) * B}), ${T} onnxruntime thread(s) in all; ${cpus().length} CPUs, load ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')} at the end; rounds (wall s): ${JSON.stringify(times)}; CPU s: ${JSON.stringify(cpu)}`,
);
