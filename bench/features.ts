/**
 * Feature extraction at scale, measured on Fashion-MNIST with the Coral MobileNetV2 (uint8 TFLite,
 * imported to float ONNX), cut at its default feature node (the 1280-d average pool):
 *   (a) images/s through extractFeatures (no cache) against plain onnxruntime inference of the same
 *       cut model on the same preprocessed batches, interleaved in the same run; overhead % (target ≤ 5 %);
 *       plus extractFeatures writing a cold cache, and reading a warm one;
 *   (b) logistic-regression training time and test accuracy, Graft (src/heads/logistic.ts, L-BFGS)
 *       against scikit-learn's LogisticRegression (lbfgs, C = 1/(l2·n)) on the same cached features
 *       (target: accuracy within 0.5 points; time ratio reported);
 *   (c) cache bytes per image;
 *   (d) a JPEG folder (written here: the shared Coral photos cropped, flipped and resized to 320–480 px
 *       sides, JPEG quality 85): extractFeatures over the file paths, images decoded by sharp in the
 *       bounded pipeline (--prefetch runs ahead) and decoding batch by batch (prefetch 0), against
 *       extractFeatures over the same images pre-decoded to tensors, interleaved rounds; target: the
 *       pipelined JPEG path ≥ 90 % of the tensor path's images/s.
 *
 *   npx tsx bench/features.ts                                  # full: 512 images for (a), 1000/1000 for (b)
 *   npx tsx bench/features.ts --images 64 --train 200 --test 200 --rounds 1   # quick
 *   npx tsx bench/features.ts --only jpeg --jpegs 256 --rounds 5             # (d) alone
 * Options: --images N, --batch N (32), --rounds N (3), --train N, --test N, --l2 X (0.1), --threads N
 * (onnxruntime intra-op threads; default GRAFT_THREADS, else 2), --python PATH (default /usr/bin/python3
 * or GRAFT_BENCH_PYTHON), --no-sklearn, --only jpeg, --jpegs N (256), --prefetch N (2), --decode-threads N
 * (sharp's threads per image; default 1; libuv's pool, UV_THREADPOOL_SIZE, bounds images decoded at once),
 * --no-spin (onnxruntime's threads sleep instead of spinning between parallel sections).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { loadModel } from '../src/formats/load.js';
import { encodeOnnx } from '../src/formats/onnx.js';
import { getPreprocess } from '../src/formats/preprocess.js';
import { readIdxDataset, type IdxDataset } from '../src/data/idx.js';
import { imagesToTensor, decodeBmp } from '../src/data/image.js';
import { assetPath } from '../src/data/assets.js';
import { extractFeatures, defaultFeatureNode } from '../src/features/extract.js';
import { FeatureCache } from '../src/features/cache.js';
import { fit as fitLogistic } from '../src/heads/logistic.js';
import { sessionOptions } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';
import type { Tensor } from '../src/graph/tensor.js';

const argv = process.argv.slice(2);
if (argv.includes('--help')) {
  console.log(
    'npx tsx bench/features.ts [--images 512] [--batch 32] [--rounds 3] [--train 1000] [--test 1000] [--l2 0.1] [--threads 2] [--python PATH] [--no-sklearn] [--only jpeg] [--jpegs 256] [--prefetch 2] [--decode-threads 1]',
  );
  process.exit(0);
}
const flag = (name: string, dflt: number): number => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
};
const images = flag('images', 512),
  batch = flag('batch', 32),
  rounds = flag('rounds', 3);
const nTrain = flag('train', 1000),
  nTest = flag('test', 1000),
  l2 = flag('l2', 0.1);
const threads = flag('threads', Number(process.env['GRAFT_THREADS']) || 2);
const pyIdx = argv.indexOf('--python');
const python = pyIdx >= 0 ? argv[pyIdx + 1]! : (process.env['GRAFT_BENCH_PYTHON'] ?? '/usr/bin/python3');
// --no-spin: onnxruntime's threads sleep between parallel sections instead of spinning (they then leave
// the cores to sharp's decoding threads in the pipelined JPEG path)
const noSpin = argv.includes('--no-spin');
const runtime = { threads, ...(noSpin ? { config: { 'session.intra_op.allow_spinning': '0' } } : {}) };
const jpegs = flag('jpegs', 256),
  decodeThreads = flag('decode-threads', 1);
const prefetchIdx = argv.indexOf('--prefetch');
const prefetch = prefetchIdx >= 0 ? Number(argv[prefetchIdx + 1]) : 2;
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
if (only !== undefined && only !== 'jpeg') throw new Error('--only takes: jpeg');
sharp.concurrency(decodeThreads);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fm = assetPath('datasets/fashion-mnist');
const trainSet = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
const testSet = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
const model = loadModel(assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
const node = defaultFeatureNode(model);
const pre = getPreprocess(model)!;
const png = (px: Uint8Array) =>
  sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
const pick = (d: IdxDataset, n: number, seed: number) => new Rng(seed).shuffle([...d.labels.keys()]).slice(0, n);

console.log(
  `MobileNetV2 (coral uint8 → float ONNX) cut at ${node}; ${threads} onnxruntime threads; batch ${batch}; ` +
    `sharp ${decodeThreads} thread(s) per image, libuv pool ${process.env['UV_THREADPOOL_SIZE'] ?? 4}; ${cpus().length} CPUs, load ${loadavg()
      .map((v) => v.toFixed(2))
      .join(' ')}`,
);

// ---- (d) a JPEG folder: paths through the pipeline vs the same images pre-decoded to tensors
async function jpegRow(): Promise<void> {
  const photos = [
    'hot_dog.jpg',
    'kite_and_cold.jpg',
    'cat_720p.jpg',
    'face.jpg',
    'grace_hopper.bmp',
    'bird.bmp',
    'cat.bmp',
    'dragonfly.bmp',
    'missvickie_potato_chips.bmp',
  ].map((f) => assetPath(`models/coral/${f}`));
  const dir = mkdtempSync(join(tmpdir(), 'graft-bench-jpegs-'));
  try {
    const rng = new Rng(21);
    const paths: string[] = [];
    let bytes = 0;
    for (let i = 0; i < jpegs; i++) {
      const src = photos[i % photos.length]!;
      const bmp = decodeBmp(readFileSync(src)); // libvips reads no BMP
      let img = bmp ? sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } }) : sharp(src);
      // a random crop of 60–100 % of each side, maybe mirrored, resized to a 320–480 px long side
      const m = bmp ?? (await img.metadata());
      const cw = Math.max(16, Math.floor(m.width! * (0.6 + 0.4 * rng.uniform()))),
        ch = Math.max(16, Math.floor(m.height! * (0.6 + 0.4 * rng.uniform())));
      img = img.extract({ left: rng.int(m.width! - cw + 1), top: rng.int(m.height! - ch + 1), width: cw, height: ch });
      if (rng.uniform() < 0.5) img = img.flop();
      const side = 320 + rng.int(161);
      const p = join(dir, `img${String(i).padStart(4, '0')}.jpg`);
      const info = await img.resize(side, side, { fit: 'inside' }).jpeg({ quality: 85 }).toFile(p);
      bytes += info.size;
      paths.push(p);
    }
    const pathBatches: string[][] = [];
    for (let i = 0; i < paths.length; i += batch) pathBatches.push(paths.slice(i, i + batch));
    const tensors: Tensor[] = [];
    for (const b of pathBatches) tensors.push(await imagesToTensor(b, pre));
    const timeIt = async (inputs: (Tensor | string[])[], pf: number) => {
      const t0 = performance.now();
      const f = await extractFeatures(model, undefined, inputs, { batchSize: batch, runtime, prefetch: pf });
      if (f.length !== jpegs) throw new Error('wrong count');
      return performance.now() - t0;
    };
    const modes: [string, () => Promise<number>][] = [
      ['tensor', () => timeIt(tensors, prefetch)],
      ['pipelined', () => timeIt(pathBatches, prefetch)],
      ['sequential', () => timeIt(pathBatches, 0)],
    ];
    for (const [, run] of modes) await run(); // warm-up
    const times = new Map<string, number[]>(modes.map(([k]) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < modes.length; k++) {
        const [name, run] = modes[(k + r) % modes.length]!; // rotate the order every round
        times.get(name)!.push(await run());
      }
    }
    const ips = (ms: number) => (jpegs / ms) * 1000;
    // per round ratios (the modes of one round ran back to back), then their median
    const ratio = (name: string) => median(times.get(name)!.map((t, r) => times.get('tensor')![r]! / t)) * 100;
    const f1 = (x: number) => x.toFixed(1);
    console.log(
      `\n(d) JPEG folder: ${jpegs} JPEGs (${f1(bytes / jpegs / 1024)} KiB each, 320–480 px long side) → 3×224×224, batch ${batch}, ` +
        `${threads} onnxruntime thread(s)${noSpin ? ' (not spinning)' : ''}, sharp ${decodeThreads} thread(s) per image, prefetch ${prefetch}; ${rounds} interleaved rounds, median`,
    );
    console.log('| path | images/s | vs pre-decoded tensors (median of per-round ratios) |');
    console.log('| --- | ---: | ---: |');
    console.log(`| extractFeatures, pre-decoded tensors | ${f1(ips(median(times.get('tensor')!)))} | 100 % |`);
    const pr = ratio('pipelined');
    console.log(
      `| extractFeatures, JPEG paths, pipelined (prefetch ${prefetch}) | ${f1(ips(median(times.get('pipelined')!)))} | ${f1(pr)} % ${pr >= 90 ? 'PASS' : 'FAIL'} (≥ 90 %) |`,
    );
    console.log(
      `| extractFeatures, JPEG paths, batch by batch (prefetch 0) | ${f1(ips(median(times.get('sequential')!)))} | ${f1(ratio('sequential'))} % |`,
    );
    console.log(
      `per-round ms: ${[...times].map(([k, v]) => `${k} ${v.map((t) => t.toFixed(0)).join('/')}`).join('; ')}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
if (only === 'jpeg') {
  await jpegRow();
  process.exit(0);
}

// ---- (a) throughput: the same preprocessed batches through extractFeatures and through plain onnxruntime
const idxA = pick(testSet, images, 5);
const batches: Tensor[] = [];
for (let i = 0; i < idxA.length; i += batch)
  batches.push(
    await imagesToTensor(await Promise.all(idxA.slice(i, i + batch).map((k) => png(testSet.images[k]!))), pre),
  );
const cut = model.cutBefore([node]);
const inputName = cut.dataInputs()[0]!.name;

async function plainOrt(): Promise<number> {
  const t0 = performance.now();
  const s = await ort.InferenceSession.create(encodeOnnx(cut), sessionOptions(runtime));
  for (const b of batches) {
    const r = await s.run({ [inputName]: new ort.Tensor('float32', b.data as Float32Array, b.dims) }, [node]);
    if (!r[node]) throw new Error('no output');
  }
  await s.release();
  return performance.now() - t0;
}
async function viaExtract(cache?: FeatureCache): Promise<number> {
  const t0 = performance.now();
  const f = await extractFeatures(model, undefined, batches, {
    batchSize: batch,
    runtime,
    ...(cache ? { cache } : {}),
  });
  if (f.length !== images) throw new Error('wrong count');
  return performance.now() - t0;
}
await plainOrt();
await viaExtract(); // warm-up
const tPlain: number[] = [],
  tExtract: number[] = [],
  tCold: number[] = [],
  tWarm: number[] = [];
const dirs: string[] = [];
for (let r = 0; r < rounds; r++) {
  tPlain.push(await plainOrt());
  tExtract.push(await viaExtract());
  const dir = mkdtempSync(join(tmpdir(), 'graft-bench-cache-'));
  dirs.push(dir);
  tCold.push(await viaExtract(FeatureCache.open(dir)));
  tWarm.push(await viaExtract(FeatureCache.open(dir)));
}
for (const d of dirs) rmSync(d, { recursive: true, force: true });
const ips = (ms: number) => (images / ms) * 1000;
const overhead = (median(tExtract) / median(tPlain) - 1) * 100;

// ---- (b) logistic regression on cached features, Graft vs scikit-learn; (c) cache bytes per image
const cacheDir = mkdtempSync(join(tmpdir(), 'graft-bench-features-'));
const work = mkdtempSync(join(tmpdir(), 'graft-bench-sk-'));
try {
  const cache = FeatureCache.open(cacheDir);
  const feats = async (d: IdxDataset, idx: number[]) => {
    const pngs = await Promise.all(idx.map((k) => png(d.images[k]!)));
    const bs: Buffer[][] = [];
    for (let i = 0; i < pngs.length; i += 256) bs.push(pngs.slice(i, i + 256));
    return extractFeatures(model, undefined, bs, { batchSize: batch, cache, runtime });
  };
  const idxTr = pick(trainSet, nTrain, 11),
    idxTe = pick(testSet, nTest, 12);
  const tf0 = performance.now();
  const xTr = await feats(trainSet, idxTr),
    xTe = await feats(testSet, idxTe);
  const extractS = (performance.now() - tf0) / 1000;
  const yTr = idxTr.map((k) => trainSet.labels[k]!),
    yTe = idxTe.map((k) => testSet.labels[k]!);
  const bytesPerImage = cache.bytesOnDisk / cache.size;
  const dim = xTr[0]!.length;

  const tG: number[] = [];
  let acc = 0,
    iters = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    const m = await fitLogistic(xTr, yTr, { l2, numClasses: 10, runtime });
    tG.push((performance.now() - t0) / 1000);
    acc = m.accuracy(xTe, yTe);
    iters = m.info.iterations;
  }
  const graftS = median(tG);

  let sk: { seconds: number; iterations: number; accuracy: number; C: number; sklearn: string } | undefined;
  if (!argv.includes('--no-sklearn')) {
    const flat = (xs: Float32Array[]) => {
      const o = new Float32Array(xs.length * dim);
      xs.forEach((x, i) => o.set(x, i * dim));
      return Buffer.from(o.buffer);
    };
    writeFileSync(join(work, 'x_train.f32'), flat(xTr));
    writeFileSync(join(work, 'x_test.f32'), flat(xTe));
    writeFileSync(join(work, 'y_train.i32'), Buffer.from(Int32Array.from(yTr).buffer));
    writeFileSync(join(work, 'y_test.i32'), Buffer.from(Int32Array.from(yTe).buffer));
    const r = spawnSync(
      python,
      [
        join(import.meta.dirname, 'sklearn_logistic.py'),
        '--dir',
        work,
        '--dim',
        String(dim),
        '--l2',
        String(l2),
        '--repeats',
        String(rounds),
        '--threads',
        String(threads),
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) console.log(`scikit-learn run failed (${python}): ${r.stderr || r.error}`);
    else sk = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  }

  const f1 = (x: number) => x.toFixed(1);
  console.log(
    `\n(a) extraction, ${images} Fashion-MNIST images (3×224×224 after preprocessing), ${rounds} rounds, median`,
  );
  console.log('| path | images/s | vs plain onnxruntime |');
  console.log('| --- | ---: | ---: |');
  console.log(`| plain onnxruntime (session + runs) | ${f1(ips(median(tPlain)))} | — |`);
  console.log(
    `| extractFeatures, no cache | ${f1(ips(median(tExtract)))} | ${overhead >= 0 ? '+' : ''}${f1(overhead)} % time ${overhead <= 5 ? 'PASS' : 'FAIL'} (≤ 5 %) |`,
  );
  console.log(
    `| extractFeatures, cold cache (hash + write) | ${f1(ips(median(tCold)))} | ${f1((median(tCold) / median(tPlain) - 1) * 100)} % time |`,
  );
  console.log(
    `| extractFeatures, warm cache (all hits) | ${f1(ips(median(tWarm)))} | ${f1(median(tPlain) / median(tWarm))}× faster |`,
  );

  console.log(
    `\n(b) logistic regression on ${nTrain} train / ${nTest} test cached ${dim}-d features, l2 = ${l2} (C = 1/(l2·n) = ${(1 / (l2 * nTrain)).toPrecision(3)}); features took ${f1(extractS)} s`,
  );
  console.log('| | fit time (s) | iterations | test accuracy |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(
    `| Graft fit (L-BFGS; objective + gradient in onnxruntime) | ${graftS.toFixed(2)} | ${iters} | ${(acc * 100).toFixed(1)} % |`,
  );
  if (sk) {
    console.log(
      `| scikit-learn ${sk.sklearn} LogisticRegression (lbfgs) | ${sk.seconds.toFixed(2)} | ${sk.iterations} | ${(sk.accuracy * 100).toFixed(1)} % |`,
    );
    const gap = Math.abs(acc - sk.accuracy) * 100;
    console.log(
      `accuracy gap ${gap.toFixed(2)} points ${gap <= 0.5 ? 'PASS' : 'FAIL'} (≤ 0.5); time Graft / scikit-learn = ${(graftS / sk.seconds).toFixed(2)}×`,
    );
  }
  console.log(
    `\n(c) cache: ${cache.size} vectors, ${cache.bytesOnDisk} bytes on disk = ${f1(bytesPerImage)} bytes/image (${dim} × fp16 = ${dim * 2} + key table)`,
  );
  await jpegRow();
} finally {
  rmSync(cacheDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
