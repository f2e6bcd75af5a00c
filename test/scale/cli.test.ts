/**
 * The scale-out commands as a user runs them: `graft worker` processes on a real Redis,
 * `graft train features --queue` and `graft train images --queue` giving the local command's
 * classifier byte for byte, `graft sweep`
 * writing the same table here and on the queue; and the messages for an unreachable Redis and a bad
 * grid file.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath, needs } from '../helpers/assets.js';
import { GRAFT_CLI, graft, graftFails } from '../helpers/cli.js';
import { freePort, needsRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { readIdxDataset } from '../../src/data/idx.js';

const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const skip = needsRedis() || needs(MODEL, FM);
const tmp = mkdtempSync(join(tmpdir(), 'graft-scale-cli-'));
let redis: TestRedis | undefined;
const workers: ChildProcess[] = [];
let data = '';

before(async () => {
  if (skip) return;
  redis = await startRedis();
  const logs: string[] = [];
  for (let k = 0; k < 2; k++) {
    const w = spawn(process.execPath, [...GRAFT_CLI, 'worker', '--queue', redis.url], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GRAFT_THREADS: '1' },
    });
    logs.push('');
    w.stderr!.on('data', (d: Buffer) => (logs[k] += d.toString()));
    workers.push(w);
  }
  // 3 Fashion-MNIST classes × 10 images as PNG files
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  const names: Record<number, string> = { 0: 'tshirt', 1: 'trouser', 7: 'sneaker' };
  const count: Record<number, number> = {};
  data = join(tmp, 'data');
  for (let i = 0; i < d.labels.length; i++) {
    const name = names[d.labels[i]!];
    if (!name || (count[d.labels[i]!] ?? 0) >= 10) continue;
    count[d.labels[i]!] = (count[d.labels[i]!] ?? 0) + 1;
    mkdirSync(join(data, name), { recursive: true });
    writeFileSync(
      join(data, name, `${i}.png`),
      await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    );
  }
  const t0 = Date.now();
  while (!logs.every((l) => l.includes('taking jobs'))) {
    assert.ok(
      Date.now() - t0 < 60_000 && workers.every((w) => w.exitCode === null),
      `workers did not start: ${logs.join('\n')}`,
    );
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  for (const w of workers) w.kill('SIGTERM');
  await Promise.all(workers.map((w) => (w.exitCode === null ? new Promise((r) => w.once('exit', r)) : undefined)));
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test("graft train features --queue: the local command's classifier, byte for byte", { skip }, async () => {
  const args = (name: string) => [
    'train',
    'features',
    '--model',
    MODEL,
    '--data',
    data,
    '--labels-per-class',
    '5',
    '--seed',
    '1',
    '--batch-size',
    '4',
    '--cache',
    join(tmp, `cache-${name}`),
    '--out',
    join(tmp, name),
    '--json',
  ];
  const here = JSON.parse((await graft(args('here'))).stdout);
  const queued = JSON.parse((await graft([...args('queued'), '--queue', redis!.url, '--shard-size', '8'])).stdout);
  assert.equal(queued.queue.shards, 3); // 5 train + 1 val + 2 test per class = 24 images, shards of 8
  assert.deepEqual([queued.extraction.examples, queued.extraction.computed], [24, 24]);
  assert.deepEqual(
    [queued.head.summary, queued.validation, queued.test],
    [here.head.summary, here.validation, here.test],
  );
  assert.ok(readFileSync(join(tmp, 'queued', 'model.onnx')).equals(readFileSync(join(tmp, 'here', 'model.onnx'))));
});

test("graft train images --queue: the top block fine-tuned on the workers' cached activations, the local classifier byte for byte", {
  skip,
}, async () => {
  const args = (name: string) => [
    'train',
    'images',
    '--model',
    MODEL,
    '--data',
    data,
    '--top-blocks',
    '1',
    '--epochs',
    '1',
    '--batch-size',
    '8',
    '--seed',
    '1',
    '--cache',
    join(tmp, `cache-${name}`),
    '--out',
    join(tmp, name),
    '--json',
  ];
  const here = JSON.parse((await graft(args('ft-here'))).stdout);
  const queued = JSON.parse((await graft([...args('ft-queued'), '--queue', redis!.url, '--shard-size', '32'])).stdout);
  assert.equal(queued.queue.shards, 3); // 7 train + 1 val + 2 test per class: one shard per part
  assert.deepEqual(
    [queued.cache.computed, queued.cache.cached],
    [30, 0],
    'the shards computed every activation, the training job none',
  );
  assert.deepEqual([queued.finalLoss, queued.validation, queued.test], [here.finalLoss, here.validation, here.test]);
  assert.ok(
    readFileSync(join(tmp, 'ft-queued', 'model.onnx')).equals(readFileSync(join(tmp, 'ft-here', 'model.onnx'))),
  );
});

test('graft sweep: the same table here and on the queue', { skip }, async () => {
  const grid = join(tmp, 'grid.json');
  writeFileSync(
    grid,
    JSON.stringify({
      model: MODEL,
      data: 'data',
      mode: 'features',
      base: { cacheDir: 'sweep-cache', batchSize: 8, labelsPerClass: 4 },
      grid: { head: ['logistic', 'ncm'], seed: [0, 1] },
    }),
  );
  const dry = await graft(['sweep', grid, '--dry-run']);
  assert.equal(dry.stdout.trim().split('\n').length, 4);
  const here = JSON.parse((await graft(['sweep', grid, '--out', join(tmp, 'sweep-here'), '--json'])).stdout);
  const queued = JSON.parse(
    (await graft(['sweep', grid, '--out', join(tmp, 'sweep-queued'), '--queue', redis!.url, '--json'])).stdout,
  );
  const table = (r: { cells: { params: unknown; validation: unknown; test: unknown }[]; best: number }) => ({
    cells: r.cells.map((c) => [c.params, c.validation, c.test]),
    best: r.best,
  });
  assert.deepEqual(table(queued), table(here));
  assert.deepEqual(
    here.cells.map((c: { params: unknown }) => c.params),
    [
      { head: 'logistic', seed: 0 },
      { head: 'logistic', seed: 1 },
      { head: 'ncm', seed: 0 },
      { head: 'ncm', seed: 1 },
    ],
  );
  assert.notDeepEqual(here.cells[0].test, here.cells[1].test, 'seeds give different splits');
  const md = readFileSync(join(tmp, 'sweep-queued', 'sweep.md'), 'utf8');
  assert.match(md, /\| head \| seed \| val accuracy/);
  assert.equal(md.split('\n').filter((l) => /^\| (\*\*)?(logistic|ncm)/.test(l)).length, 4);
});

test("graft curve --queue: each cell a job; curve.json (but seconds), curve.svg and the table are the local run's", {
  skip,
}, async () => {
  const args = [
    '--threads',
    '1',
    'curve',
    '--model',
    'examples/assets/models/onnxjs-demo/mnist.onnx',
    '--data',
    'examples/assets/datasets/digits-8x8/digits.csv.gz',
    '--labels-per-class',
    '2,5',
    '--seeds',
    '1',
    '--steps',
    '10',
    '--json',
  ];
  const here = JSON.parse((await graft([...args, '--out', join(tmp, 'curve-here')])).stdout);
  const queued = JSON.parse((await graft([...args, '--out', join(tmp, 'curve-queued'), '--queue', redis!.url])).stdout);
  const noTime = (r: { points: { seconds?: number }[]; summary: { seconds?: number }[] }) => ({
    points: r.points.map(({ seconds: _s, ...p }) => p),
    summary: r.summary.map(({ seconds: _s, ...p }) => p),
  });
  assert.equal(queued.points.length, 2 * 3);
  assert.deepEqual(noTime(queued), noTime(here));
  assert.equal(
    readFileSync(join(tmp, 'curve-queued', 'curve.svg'), 'utf8'),
    readFileSync(join(tmp, 'curve-here', 'curve.svg'), 'utf8'),
  );
  const table = (d: string) =>
    readFileSync(join(tmp, d, 'curve.md'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .join('\n');
  assert.equal(table('curve-queued'), table('curve-here'));
  assert.deepEqual(
    readdirSync(join(tmp, 'curve-queued')).sort(),
    ['curve.json', 'curve.md', 'curve.svg'],
    'the run file is removed',
  );
});

test('graft worker with no Redis there, and a bad grid file: clear messages', async () => {
  const port = await freePort();
  const w = await graftFails(['worker', '--queue', `redis://127.0.0.1:${port}`]);
  assert.match(w.stderr, new RegExp(`cannot reach Redis at redis://127.0.0.1:${port}`));
  const bad = join(tmp, 'bad.json');
  writeFileSync(bad, JSON.stringify({ model: 'm.onnx', data: 'd', grid: { lr: [] } }));
  assert.match((await graftFails(['sweep', bad])).stderr, /grid 'lr' must be a non-empty list/);
  writeFileSync(bad, JSON.stringify({ model: 'm.onnx', data: 'd', grid: { out: ['x'] } }));
  assert.match((await graftFails(['sweep', bad])).stderr, /'out' cannot be set per sweep cell/);
});
