/**
 * int8 export (src/export/quantize.ts), measured in one run against the float classifier it came from:
 *   - accuracy on held-out test examples (fp32 vs int8, and their top-1 agreement),
 *   - model.onnx size,
 *   - CPU inference time per batch in onnxruntime-node (same threads, repetitions interleaved, medians).
 * Models: a Fashion-MNIST classifier on the Coral MobileNetV2 (`graft train --mode features`, IDX
 * data) and a bert-mini-debian review classifier (`graft train --text-column …`), both trained here
 * into a temporary folder first.
 *
 * With --profile, also onnxruntime's per-operator kernel time (session profiling) of both models: which
 * kernels the int8 graph runs after onnxruntime's QDQ fusion (QLinearConv, QLinearAdd, MatMulIntegerToFloat…)
 * and where the time goes.
 *
 *   npx tsx bench/int8.ts [--threads 2] [--rounds 7] [--test 500] [--per-class 60] [--method minmax] [--only image|text] [--profile]
 *                         [--thread-counts 1,2]
 *
 * Prints the table of bench/README.md's int8 section; with --thread-counts, also the speed table by
 * thread count (wall and CPU time, fp32 and int8 taking turns, one session alive at a time).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { assetPath } from '../src/data/assets.js';
import { readIdxDataset } from '../src/data/idx.js';
import { greyToBmp } from '../src/data/labelled-images.js';
import { imagesToTensor } from '../src/data/image.js';
import { readTextTable } from '../src/data/text-table.js';
import { stratifiedSplit } from '../src/data/splits.js';
import { readOnnx } from '../src/formats/onnx.js';
import { getPreprocess } from '../src/formats/preprocess.js';
import { exportInt8 } from '../src/export/quantize.js';
import type { CalibrationMethod } from '../src/export/calibrate.js';
import { sessionOptions } from '../src/runtime/session.js';
import { loadTextClassifier, textClassifierProba } from '../src/text/saved.js';
import { textFeeds } from '../src/text/encoder.js';
import { Rng } from '../src/util/random.js';
import type { Feeds } from '../src/runtime/session.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : d;
};
const threads = Number(flag('threads', process.env['GRAFT_THREADS'] ?? '2'));
const rounds = Number(flag('rounds', '7'));
const nTest = Number(flag('test', '500'));
const perClass = flag('per-class', '60');
const method = flag('method', 'minmax') as CalibrationMethod;
const only = flag('only', '');
const profile = argv.includes('--profile');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const tmp = mkdtempSync(join(tmpdir(), 'graft-bench-int8-'));
const cli = (args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
const rows: string[][] = [];
const speedRows: string[][] = [];
// --thread-counts 1,2: a second table, speed with each thread count (default: just --threads)
const threadCounts = flag('thread-counts', '')
  .split(',')
  .filter((x) => x)
  .map(Number);

/** CPU time of this process (all threads), ms. */
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * Median ms per run of each model on the same feeds: wall time, and CPU time of the process (all threads;
 * less distorted by other jobs on a loaded machine). Only one session is alive at a time: each round
 * opens the model's session, warms it up, times `perRound` runs and releases it, the two models taking
 * turns (order alternating by round); the figure is the median over rounds of each round's median.
 * (Two sessions alive side by side distort the comparison: the idle one's onnxruntime worker threads
 * spin after their run and take a core from the other. On this 2-core machine that added ~25–45 ms to
 * every run of both models, a fixed cost that lowered the int8/fp32 ratio; see bench/README.md.)
 */
async function timeBoth(
  fp: string,
  q: string,
  feeds: Feeds,
  nThreads = threads,
): Promise<{ wall: [number, number]; cpu: [number, number] }> {
  const perRound = 5;
  const f: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(feeds))
    f[k] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
  const wall: [number[], number[]] = [[], []],
    cpu: [number[], number[]] = [[], []];
  for (let r = 0; r < rounds; r++)
    for (const k of r % 2 ? [1, 0] : [0, 1]) {
      const s = await ort.InferenceSession.create(k ? q : fp, sessionOptions({ threads: nThreads }));
      await s.run(f); // warm-up
      const w: number[] = [],
        c: number[] = [];
      for (let i = 0; i < perRound; i++) {
        const c0 = cpuMs(),
          t0 = performance.now();
        await s.run(f);
        w.push(performance.now() - t0);
        c.push(cpuMs() - c0);
      }
      await s.release();
      wall[k]!.push(median(w));
      cpu[k]!.push(median(c));
    }
  return { wall: [median(wall[0]), median(wall[1])], cpu: [median(cpu[0]), median(cpu[1])] };
}

/** Speed at each of --thread-counts (fp32 and int8 interleaved per count), one row each. */
async function threadRows(name: string, fp: string, q: string, feeds: Feeds) {
  for (const n of threadCounts) {
    const t = await timeBoth(fp, q, feeds, n);
    speedRows.push([
      name,
      String(n),
      t.wall[0].toFixed(1),
      t.wall[1].toFixed(1),
      (t.wall[0] / t.wall[1]).toFixed(2),
      t.cpu[0].toFixed(1),
      t.cpu[1].toFixed(1),
      (t.cpu[0] / t.cpu[1]).toFixed(2),
    ]);
  }
}

/**
 * Milliseconds per run by operator type (onnxruntime's profiler, mean of 4 runs, the first included); Conv/QLinearConv
 * split into depthwise and dense by node name (MobileNet's names say 'depthwise').
 */
async function opProfile(path: string, feeds: Feeds): Promise<string> {
  const prefix = join(tmp, `profile-${Math.random().toString(36).slice(2)}`);
  const s = await ort.InferenceSession.create(path, {
    ...sessionOptions({ threads }),
    enableProfiling: true,
    profileFilePrefix: prefix,
  });
  const f: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(feeds))
    f[k] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
  const runs = 3;
  for (let i = 0; i <= runs; i++) await s.run(f);
  s.endProfiling();
  await s.release();
  const file = readdirSync(tmp)
    .map((n) => join(tmp, n))
    .find((p) => p.startsWith(prefix))!;
  const events = JSON.parse(readFileSync(file, 'utf8')) as {
    cat: string;
    name: string;
    dur: number;
    args: { op_name?: string };
  }[];
  const by = new Map<string, number>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args.op_name) continue;
    const op =
      e.args.op_name + (/Conv$/.test(e.args.op_name) ? (/depthwise/i.test(e.name) ? ' (depthwise)' : ' (dense)') : '');
    by.set(op, (by.get(op) ?? 0) + e.dur / 1000 / (runs + 1));
    total += e.dur / 1000 / (runs + 1);
  }
  return (
    `${total.toFixed(1)} ms/run in kernels: ` +
    [...by]
      .sort((a, b) => b[1] - a[1])
      .filter(([, v]) => v >= 0.05)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ')
  );
}

function report(
  name: string,
  accF: number,
  accQ: number,
  agree: number,
  n: number,
  dir: string,
  qdir: string,
  ms: [number, number],
  batch: number,
) {
  const sf = statSync(join(dir, 'model.onnx')).size,
    sq = statSync(join(qdir, 'model.onnx')).size;
  rows.push([
    name,
    String(n),
    accF.toFixed(4),
    accQ.toFixed(4),
    ((accQ - accF) * 100).toFixed(2),
    agree.toFixed(4),
    (sf / 1e6).toFixed(2),
    (sq / 1e6).toFixed(2),
    (sf / sq).toFixed(2),
    `${batch}`,
    ms[0].toFixed(1),
    ms[1].toFixed(1),
    (ms[0] / ms[1]).toFixed(2),
  ]);
}

try {
  if (only !== 'text') {
    const fm = assetPath('datasets/fashion-mnist');
    const dir = join(tmp, 'fm'),
      qdir = join(tmp, 'fm-int8');
    cli([
      'train',
      '--mode',
      'features',
      '--model',
      assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite'),
      '--data',
      join(fm, 'train-images-idx3-ubyte.gz'),
      '--max-per-class',
      perClass,
      '--out',
      dir,
    ]);
    const train = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
    const test = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
    const calib = new Rng(7)
      .shuffle([...train.labels.keys()])
      .slice(0, 200)
      .map((k) => greyToBmp(train.images[k]!, 28, 28));
    const r = await exportInt8(dir, qdir, { images: calib }, { method });
    const g = readOnnx(join(dir, 'model.onnx')),
      pre = getPreprocess(g)!;
    const idx = new Rng(11).shuffle([...test.labels.keys()]).slice(0, nTest);
    const a = await ort.InferenceSession.create(join(dir, 'model.onnx'), sessionOptions({ threads }));
    const b = await ort.InferenceSession.create(join(qdir, 'model.onnx'), sessionOptions({ threads }));
    let okF = 0,
      okQ = 0,
      agree = 0;
    const argmax = (d: Float32Array, r0: number, K: number) => {
      let m = 0;
      for (let k = 1; k < K; k++) if (d[r0 * K + k]! > d[r0 * K + m]!) m = k;
      return m;
    };
    for (let s = 0; s < idx.length; s += 32) {
      const ids = idx.slice(s, s + 32);
      const x = await imagesToTensor(
        ids.map((k) => greyToBmp(test.images[k]!, 28, 28)),
        pre,
      );
      const t = new ort.Tensor('float32', x.data as Float32Array, x.dims);
      const pf = (await a.run({ input: t }))[g.outputs[0]!.name]!.data as Float32Array,
        pq = (await b.run({ input: t }))[g.outputs[0]!.name]!.data as Float32Array;
      ids.forEach((k, i) => {
        const y = test.labels[k]!,
          f = argmax(pf, i, 10),
          q = argmax(pq, i, 10);
        okF += +(f === y);
        okQ += +(q === y);
        agree += +(f === q);
      });
    }
    await a.release();
    await b.release();
    const x = await imagesToTensor(
      idx.slice(0, 16).map((k) => greyToBmp(test.images[k]!, 28, 28)),
      pre,
    );
    const ms = (await timeBoth(join(dir, 'model.onnx'), join(qdir, 'model.onnx'), { input: x })).wall;
    await threadRows('Fashion-MNIST MobileNetV2', join(dir, 'model.onnx'), join(qdir, 'model.onnx'), { input: x });
    if (profile)
      for (const [k, p] of [
        ['fp32', dir],
        ['int8', qdir],
      ])
        console.error(`image ${k}: ${await opProfile(join(p!, 'model.onnx'), { input: x })}`);
    report(
      `Fashion-MNIST MobileNetV2 (${r.method})`,
      okF / idx.length,
      okQ / idx.length,
      agree / idx.length,
      idx.length,
      dir,
      qdir,
      ms,
      16,
    );
    console.error(
      `image: quantized ${JSON.stringify(r.summary.quantized)}, weights on a uint8 grid ${r.summary.exactGrids} (channels stored exactly ${r.summary.exactChannels}/${r.summary.gridChannels}), float: ${r.summary.float.map((f) => f.node).join(', ')}`,
    );
  }
  if (only !== 'image') {
    const data = assetPath('datasets/reviews/polarity-en-pang&lee2.csv');
    const dir = join(tmp, 'txt'),
      qdir = join(tmp, 'txt-int8');
    cli([
      'train',
      'text',
      '--text-column',
      '1',
      '--label-column',
      '0',
      '--model',
      assetPath('models/text/bert-mini-debian'),
      '--data',
      data,
      '--labels-per-class',
      '200',
      '--max-length',
      '64',
      '--test-fraction',
      '0.25',
      '--out',
      dir,
    ]);
    const table = readTextTable(data, { textColumn: 1, labelColumn: 0 });
    const split = stratifiedSplit(table.y, { testFraction: 0.25, perClass: 200, seed: 0 });
    const trainTexts = split.train.map((i) => table.texts[i]!);
    const testIdx = new Rng(3).shuffle([...split.test]).slice(0, nTest);
    const r = await exportInt8(dir, qdir, { texts: trainTexts }, { method });
    const cf = loadTextClassifier(dir),
      cq = loadTextClassifier(qdir);
    const texts = testIdx.map((i) => table.texts[i]!),
      y = testIdx.map((i) => table.y[i]!);
    const am = (p: Float32Array) => p.indexOf(Math.max(...p));
    const pf = (await textClassifierProba(cf, texts)).map(am),
      pq = (await textClassifierProba(cq, texts)).map(am);
    const acc = (p: number[]) => p.filter((v, i) => v === y[i]).length / y.length;
    const feeds = textFeeds(cf.graph, cf.tokenizer.encodeBatch(texts.slice(0, 16), { maxLength: 64 }));
    const ms = (await timeBoth(join(dir, 'model.onnx'), join(qdir, 'model.onnx'), feeds)).wall;
    await threadRows('reviews bert-mini-debian', join(dir, 'model.onnx'), join(qdir, 'model.onnx'), feeds);
    if (profile)
      for (const [k, p] of [
        ['fp32', dir],
        ['int8', qdir],
      ])
        console.error(`text ${k}: ${await opProfile(join(p!, 'model.onnx'), feeds)}`);
    report(
      `reviews bert-mini-debian (${r.method})`,
      acc(pf),
      acc(pq),
      pf.filter((v, i) => v === pq[i]).length / y.length,
      y.length,
      dir,
      qdir,
      ms,
      16,
    );
    console.error(
      `text: quantized ${JSON.stringify(r.summary.quantized)}, embeddings ${r.summary.embeddings}, float: ${r.summary.float.map((f) => `${f.op} ${f.node}`).join(', ')}`,
    );
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(
  `int8 export vs fp32, onnxruntime-node CPU, ${threads} threads, ${rounds} rounds, one session alive at a time, models taking turns (medians of per-round medians of 5 runs)`,
);
const head = [
  'model',
  'test n',
  'acc fp32',
  'acc int8',
  'Δ points',
  'agreement',
  'MB fp32',
  'MB int8',
  'size ×',
  'batch',
  'ms fp32',
  'ms int8',
  'speed ×',
];
console.log('| ' + head.join(' | ') + ' |\n|' + head.map(() => ' --- ').join('|') + '|');
for (const r of rows) console.log('| ' + r.join(' | ') + ' |');
if (speedRows.length) {
  console.log(
    `\nspeed by thread count, batch 16, ${rounds} rounds, one session at a time, models taking turns (medians; CPU = this process's CPU time, all threads)`,
  );
  const h2 = ['model', 'threads', 'ms fp32', 'ms int8', 'speed ×', 'CPU ms fp32', 'CPU ms int8', 'CPU speed ×'];
  console.log('| ' + h2.join(' | ') + ' |\n|' + h2.map((_, i) => (i < 1 ? ' --- ' : ' ---: ')).join('|') + '|');
  for (const r of speedRows) console.log('| ' + r.join(' | ') + ' |');
}
console.log('targets: |Δ| ≤ 0.5 points, size ≥ 3.5×, speed ≥ 1.8×');
