/**
 * Distributed feature extraction on a real Redis (test/helpers/redis.ts) with real `graft worker`
 * child processes, on 60 Fashion-MNIST images (3 classes × 20, PNG files) and the Coral MobileNetV2:
 * the result equals the single-process run bit for bit (saved model.onnx, head, metrics, cached
 * features); a second run computes nothing; a worker SIGKILLed in the middle of a shard has the
 * shard taken over (stalled-job recovery) with the same final result; Redis restarted empty during
 * a run fails it with a clear message and the rerun finishes from the cache with the same result;
 * an unreadable image is reported by path and its shard is not retried; a shard that can never
 * succeed fails the run after one attempt, naming the shard.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync, cpSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath, needs } from '../helpers/assets.js';
import { GRAFT_CLI } from '../helpers/cli.js';
import { needsRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { loadLabelledImages } from '../../src/data/labelled-images.js';
import { trainFeatureClassifier, type FeatureTrainReport } from '../../src/features/classifier.js';
import { trainFeaturesOnQueue, type QueueFeatureReport } from '../../src/scale/features.js';

const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const skip = needsRedis() || needs(MODEL, FM);
const tmp = mkdtempSync(join(tmpdir(), 'graft-scale-'));
let redis: TestRedis | undefined;
const workers: ChildProcess[] = [];
const logs = new Map<ChildProcess, string>();

/** A `graft worker` child process with short lock/stall settings (a dead worker's shard moves on within seconds). */
function startWorker(url: string): ChildProcess {
  const w = spawn(
    process.execPath,
    [...GRAFT_CLI, 'worker', '--queue', url, '--lock-duration', '4000', '--stalled-interval', '1500'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GRAFT_THREADS: '1' },
    },
  );
  logs.set(w, '');
  w.stderr!.on('data', (d: Buffer) => logs.set(w, logs.get(w)! + d.toString()));
  workers.push(w);
  return w;
}

async function waitForWorkers(ws: ChildProcess[]): Promise<void> {
  const t0 = Date.now();
  while (!ws.every((w) => logs.get(w)!.includes('taking jobs'))) {
    assert.ok(Date.now() - t0 < 60_000, `workers did not start: ${ws.map((w) => logs.get(w)).join('\n')}`);
    for (const w of ws) assert.equal(w.exitCode, null, `a worker exited: ${logs.get(w)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** 3 classes × 20 Fashion-MNIST test images as PNG files in class folders. */
async function imageFolder(root: string): Promise<string> {
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  const names: Record<number, string> = { 0: 'tshirt', 1: 'trouser', 7: 'sneaker' };
  const count: Record<number, number> = {};
  for (let i = 0; i < d.labels.length; i++) {
    const y = d.labels[i]!;
    const name = names[y];
    if (!name || (count[y] ?? 0) >= 20) continue;
    count[y] = (count[y] ?? 0) + 1;
    mkdirSync(join(root, name), { recursive: true });
    writeFileSync(
      join(root, name, `${i}.png`),
      await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    );
  }
  return root;
}

const OPTS = { batchSize: 8, seed: 3, labelsPerClass: 12 };
let data = '';
let local: { report: FeatureTrainReport; features: Float32Array[]; out: string } | undefined;

before(async () => {
  if (skip) return;
  redis = await startRedis();
  data = await imageFolder(join(tmp, 'data'));
  startWorker(redis.url);
  startWorker(redis.url);
  // the single-process reference (cold cache), meanwhile
  const out = join(tmp, 'local');
  const r = await trainFeatureClassifier(MODEL, loadLabelledImages(data), {
    ...OPTS,
    cacheDir: join(tmp, 'cache-local'),
    out,
  });
  local = { report: r.report, features: r.features, out };
  await waitForWorkers(workers);
});

after(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Everything of the result that must not depend on where it was computed. */
function sameResult(q: QueueFeatureReport, out: string): void {
  const l = local!.report;
  assert.deepEqual(
    {
      model: q.model,
      node: q.featureNode,
      dim: q.featureDim,
      classes: q.classes,
      examples: q.examples,
      summary: q.head.summary,
      cv: q.head.cv,
      l2: q.head.l2,
      validation: q.validation,
      test: q.test,
      skipped: q.skipped,
    },
    {
      model: l.model,
      node: l.featureNode,
      dim: l.featureDim,
      classes: l.classes,
      examples: l.examples,
      summary: l.head.summary,
      cv: l.head.cv,
      l2: l.head.l2,
      validation: l.validation,
      test: l.test,
      skipped: l.skipped,
    },
  );
  assert.ok(
    readFileSync(join(out, 'model.onnx')).equals(readFileSync(join(local!.out, 'model.onnx'))),
    'the saved classifier is byte for byte the local one',
  );
  assert.ok(readFileSync(join(out, 'labels.json')).equals(readFileSync(join(local!.out, 'labels.json'))));
}

test('sharded extraction on two workers: bit for bit the single-process result; a second run computes nothing', {
  skip,
}, async () => {
  const cacheDir = join(tmp, 'cache-q'),
    out = join(tmp, 'q');
  const seen: number[] = [];
  const q = await trainFeaturesOnQueue(
    MODEL,
    { path: data },
    { ...OPTS, cacheDir, out },
    { queue: redis!.url, shardSize: 16, onProgress: (p) => seen.push(p.examples) },
  );
  sameResult(q, out);
  assert.equal(q.queue.shards, 4); // 12 train + 2 val + 4 test per class = 54 examples, shards of 16
  assert.deepEqual([q.extraction.examples, q.extraction.computed, q.extraction.cached], [54, 54, 0]);
  assert.equal(seen.at(-1), 54, 'progress summed over the workers reaches every example');
  // the cache the workers filled holds exactly the local features (fp16 values, bit for bit)
  const again = await trainFeatureClassifier(MODEL, loadLabelledImages(data), { ...OPTS, cacheDir });
  assert.equal(again.report.extraction.computed, 0);
  assert.deepEqual(again.features, local!.features);
  // a second queue run computes nothing
  const q2 = await trainFeaturesOnQueue(
    MODEL,
    { path: data },
    { ...OPTS, cacheDir, out: join(tmp, 'q2') },
    { queue: redis!.url, shardSize: 16 },
  );
  assert.deepEqual(
    [q2.extraction.computed, q2.extraction.cached],
    [0, 54],
    JSON.stringify(q2.queue.shardResults.map(({ skipped: _s, ...r }) => r)),
  );
  sameResult(q2, join(tmp, 'q2'));
});

test('a worker SIGKILLed in the middle of a shard: another worker takes the shard over, same result', {
  skip,
}, async () => {
  const cacheDir = join(tmp, 'cache-kill'),
    out = join(tmp, 'kill');
  let killed: string | undefined,
    killedShard = -1;
  const notes: string[] = [];
  const q = await trainFeaturesOnQueue(
    MODEL,
    { path: data },
    { ...OPTS, cacheDir, out },
    {
      queue: redis!.url,
      shardSize: 32, // 2 shards of 4 batches
      onRetry: (r) => notes.push(`shard ${r.shard}: ${r.error}`),
      onProgress: ({ latest }) => {
        if (killed || latest.examples === 0 || latest.examples >= latest.total) return;
        const w = workers.find((c) => `${hostname()}:${c.pid}` === latest.worker && c.exitCode === null);
        if (!w) return;
        killed = latest.worker;
        killedShard = latest.shard;
        w.kill('SIGKILL');
      },
    },
  );
  assert.ok(killed, 'a worker was killed mid-shard');
  sameResult(q, out);
  const taken = q.queue.shardResults.find((s) => s.shard === killedShard)!;
  assert.notEqual(taken.worker, killed, 'the killed shard was finished by another worker');
  assert.ok(
    taken.cached > 0 && taken.computed < taken.examples,
    `the batches the dead worker finished came from the cache (${JSON.stringify(taken)})`,
  );
  assert.ok(
    notes.some((n) => n.includes('stopped answering')),
    notes.join('\n'),
  );
  // a replacement for the dead worker, for the tests below
  const w = startWorker(redis!.url);
  await waitForWorkers([w]);
});

test('Redis restarted empty mid-run: the run fails naming the cause; the rerun finishes from the cache, same result', {
  skip,
}, async () => {
  const cacheDir = join(tmp, 'cache-restart'),
    out = join(tmp, 'restart');
  let restarted: Promise<void> | undefined;
  await assert.rejects(
    trainFeaturesOnQueue(
      MODEL,
      { path: data },
      { ...OPTS, cacheDir, out },
      {
        queue: redis!.url,
        shardSize: 8,
        lostAfterMs: 20_000,
        onProgress: (p) => {
          if (!restarted && p.examples >= 16) restarted = redis!.restart();
        },
      },
    ),
    (e: Error) => /no longer holds this run's jobs|lost the connection to Redis/.test(e.message),
  );
  assert.ok(restarted, 'Redis was restarted during the run');
  await restarted;
  assert.ok(!existsSync(join(out, 'model.onnx')), 'no classifier written by the lost run');
  const q = await trainFeaturesOnQueue(
    MODEL,
    { path: data },
    { ...OPTS, cacheDir, out },
    { queue: redis!.url, shardSize: 8 },
  );
  sameResult(q, out);
  assert.ok(
    q.extraction.cached >= 16 && q.extraction.computed <= 38,
    `the shards done before the restart are not computed again (${q.extraction.computed} computed)`,
  );
});

test('an unreadable image is reported by path, its shard not retried; a shard that cannot succeed fails the run after one attempt', {
  skip,
}, async () => {
  const bad = join(tmp, 'data-bad');
  cpSync(data, bad, { recursive: true });
  const broken = join(bad, 'trouser', 'broken.png');
  writeFileSync(broken, 'not a png\n');
  const all = { batchSize: 8, seed: 3 }; // every image used, the broken one too
  const q = await trainFeaturesOnQueue(
    MODEL,
    { path: bad },
    { ...all, cacheDir: join(tmp, 'cache-bad'), out: join(tmp, 'bad') },
    { queue: redis!.url, shardSize: 16 },
  );
  assert.deepEqual(
    q.skipped.map((s) => s.path),
    [broken],
  );
  assert.ok(
    q.queue.shardResults.every((s) => s.attempt === 1),
    'no shard was retried',
  );
  assert.equal(q.queue.shardResults.flatMap((s) => s.skipped).length, 1);
  const single = await trainFeatureClassifier(MODEL, loadLabelledImages(bad), {
    ...all,
    cacheDir: join(tmp, 'cache-bad-local'),
  });
  assert.deepEqual([q.test, q.skipped], [single.report.test, single.report.skipped]);

  const t0 = Date.now();
  await assert.rejects(
    trainFeaturesOnQueue(
      MODEL,
      { path: data },
      { ...OPTS, node: 'no/such/value', cacheDir: join(tmp, 'cache-poison') },
      { queue: redis!.url, shardSize: 16, attempts: 5, backoffMs: 2000 },
    ),
    (e: Error) => /shard \d of 4 .*failed after 1 attempt.*no\/such\/value/s.test(e.message) || assert.fail(e.message),
  );
  assert.ok(Date.now() - t0 < 30_000, 'failed at once, not after retries');
});
