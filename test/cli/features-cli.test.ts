/**
 * `graft train --mode features`, `graft predict` and `graft eval`, run as a user would, with the Coral
 * MobileNetV2 on a small fixed subset of Fashion-MNIST (3 classes × 8 images, as PNG files in an
 * image folder; and the IDX files directly). Also checks, in-process, that the saved ONNX file
 * (backbone + folded head) reproduces the head's probabilities.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  mkdirSync,
  writeFileSync,
  readFileSync,
  existsSync,
  rmSync,
  readdirSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { assetPath, needs } from '../helpers/assets.js';
import { graft, graftFails } from '../helpers/cli.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { loadLabelledImages } from '../../src/data/labelled-images.js';
import { trainFeatureClassifier, FEATURES, PROBABILITIES } from '../../src/features/classifier.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { getLabels, getPreprocess } from '../../src/formats/preprocess.js';
import { imagesToTensor } from '../../src/data/image.js';
import { Session } from '../../src/runtime/session.js';

const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const skip = needs(MODEL, FM);
const tmp = mkdtempSync(join(tmpdir(), 'graft-features-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** 3 Fashion-MNIST classes × 8 test images (the first of each class), as PNG files in class folders. */
async function imageFolder(): Promise<string> {
  const root = join(tmp, 'data');
  if (existsSync(root)) return root;
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  const names: Record<number, string> = { 0: 'tshirt', 1: 'trouser', 7: 'sneaker' };
  const count: Record<number, number> = {};
  for (let i = 0; i < d.labels.length; i++) {
    const y = d.labels[i]!;
    const name = names[y];
    if (!name || (count[y] ?? 0) >= 8) continue;
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

test('graft train --mode features saves a classifier folder; a second run with the same cache computes nothing; predict and eval use it', {
  skip,
}, async () => {
  const data = await imageFolder();
  const cache = join(tmp, 'cache');
  const out = join(tmp, 'clf');
  const args = [
    'train',
    '--mode',
    'features',
    '--model',
    MODEL,
    '--data',
    data,
    '--cache',
    cache,
    '--labels-per-class',
    '5',
    '--out',
    out,
  ];
  const r1 = JSON.parse((await graft([...args, '--json'])).stdout);
  assert.equal(r1.mode, 'features');
  assert.equal(r1.featureNode, 'MobilenetV2/Logits/AvgPool');
  assert.equal(r1.featureDim, 1280);
  assert.deepEqual(r1.classes, ['sneaker', 'trouser', 'tshirt']);
  assert.deepEqual(r1.examples, { train: 15, val: 3, test: 6 }); // 8 per class: 2 test, 1 val, 5 train
  assert.deepEqual([r1.extraction.examples, r1.extraction.computed, r1.extraction.cached], [24, 24, 0]);
  assert.equal(r1.test.n, 6);
  assert.ok(r1.test.accuracy >= 5 / 6, `test accuracy ${r1.test.accuracy}`); // these three classes are easy
  assert.equal(r1.test.confusion.length, 3);
  assert.ok(existsSync(join(out, 'model.onnx')));
  assert.deepEqual(
    r1.files.map((f: string) => f.slice(out.length + 1)),
    ['model.onnx', 'labels.json', 'report.html', 'report.json'],
  );
  assert.equal(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).metrics.n, 6);
  assert.deepEqual(r1.skipped, []);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), ['sneaker', 'trouser', 'tshirt']);
  const g = readOnnx(join(out, 'model.onnx'));
  assert.deepEqual(getLabels(g), ['sneaker', 'trouser', 'tshirt']);
  assert.equal(getPreprocess(g)!.width, 224);
  assert.deepEqual(
    g.outputs.map((o) => o.name),
    [PROBABILITIES],
  );
  assert.deepEqual(
    g.nodes.slice(-4).map((n) => n.opType),
    ['GlobalAveragePool', 'Flatten', 'Gemm', 'Softmax'],
  );

  // same data, same cache: every feature comes from the cache, same head and metrics
  const { stdout } = await graft([...args, '--out', join(tmp, 'clf2')]);
  assert.match(stdout, /for 24 images \(0 computed, 24 from the cache\)/);
  assert.match(stdout, /^test: accuracy [\d.]+, macro-F1 [\d.]+ on 6 examples$/m);
  assert.match(stdout, /^validation: accuracy/m);
  assert.match(stdout, /^report: .*clf2\/report\.html \(confusion matrix, per-class bars\) and .*clf2\/report\.json$/m);
  const r2 = JSON.parse((await graft([...args, '--out', join(tmp, 'clf2'), '--json'])).stdout);
  assert.deepEqual([r2.extraction.computed, r2.extraction.cached, r2.extraction.runs], [0, 24, 0]);
  assert.equal(r2.head.l2, r1.head.l2);

  // predict: top classes per image, labelled with the class names
  const p = JSON.parse(
    (
      await graft([
        'predict',
        '--model',
        out,
        join(data, 'trouser', '2.png'),
        join(data, 'sneaker', '9.png'),
        '--top',
        '2',
        '--json',
      ])
    ).stdout,
  );
  assert.equal(p.length, 2);
  assert.equal(p[0].top.length, 2);
  assert.equal(p[0].top[0].label, 'trouser');
  assert.equal(p[1].top[0].label, 'sneaker');
  assert.match(
    (await graft(['predict', '--model', out, join(data, 'trouser', '2.png')])).stdout,
    /2\.png: trouser [\d.]+, /,
  );

  // eval on the whole folder, with an HTML + JSON report
  const report = join(tmp, 'report', 'eval.html');
  const e = JSON.parse((await graft(['eval', '--model', out, '--data', data, '--report', report, '--json'])).stdout);
  assert.equal(e.metrics.n, 24);
  assert.ok(e.metrics.accuracy >= 22 / 24, `eval accuracy ${e.metrics.accuracy}`);
  assert.equal(
    e.metrics.confusion.flat().reduce((a: number, b: number) => a + b, 0),
    24,
  );
  assert.match(readFileSync(report, 'utf8'), /<svg /);
  assert.deepEqual(
    JSON.parse(readFileSync(join(tmp, 'report', 'eval.json'), 'utf8')).metrics.confusion,
    e.metrics.confusion,
  );
  assert.match(
    (await graft(['eval', '--model', out, '--data', data])).stdout,
    /^eval: accuracy [\d.]+, macro-F1 [\d.]+ on 24 examples/,
  );
});

test('graft train --mode features reads IDX files (grey expanded to RGB, resized by the model) and eval reads them too', {
  skip,
}, async () => {
  const out = join(tmp, 'clf-idx');
  const images = join(FM, 't10k-images-idx3-ubyte.gz');
  const r = JSON.parse(
    (
      await graft([
        'train',
        '--mode',
        'features',
        '--model',
        MODEL,
        '--data',
        images,
        '--labels-data',
        join(FM, 't10k-labels-idx1-ubyte.gz'),
        '--max-per-class',
        '6',
        '--labels-per-class',
        '4',
        '--val-fraction',
        '0',
        '--test-fraction',
        '0.34',
        '--out',
        out,
        '--json',
      ])
    ).stdout,
  );
  assert.equal(r.classes.length, 10);
  assert.deepEqual(r.examples, { train: 40, val: 0, test: 20 });
  assert.equal(r.validation, undefined);
  assert.ok(r.test.accuracy > 0.3, `test accuracy ${r.test.accuracy} on 20 images of 10 classes`);
  // labels file guessed from the images file name
  const e = JSON.parse(
    (await graft(['eval', '--model', out, '--data', images, '--max-per-class', '2', '--json'])).stdout,
  );
  assert.equal(e.metrics.n, 20);
  const bad = await graftFails(['eval', '--model', out, '--data', await imageFolder()]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /dataset class 'sneaker' is not one of the model's classes/);
  const bad2 = await graftFails(['train', '--mode', 'features', '--model', MODEL, '--data', join(FM, 'COPYRIGHT')]);
  assert.match(bad2.stderr, /IDX images with a labels file/);
});

test('the saved ONNX file reproduces the head: probabilities within 1e-4 from images and from cached features', {
  skip,
}, async () => {
  const data = loadLabelledImages(await imageFolder());
  const cacheDir = join(tmp, 'cache-lib');
  const out = join(tmp, 'clf-lib');
  const opts = { labelsPerClass: 5, cacheDir, out };
  const first = await trainFeatureClassifier(MODEL, data, opts);
  const inputs = first.rows.map((i) => data.inputs[i]!);

  // plain onnxruntime on the saved file, fed the images prepared as its metadata says
  const g = readOnnx(join(out, 'model.onnx'));
  const x = await imagesToTensor(inputs as string[], getPreprocess(g)!);
  const s = await ort.InferenceSession.create(join(out, 'model.onnx'));
  const y = (await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x.data as Float32Array, x.dims) }))[
    PROBABILITIES
  ]!;
  await s.release();
  const P = y.data as Float32Array;
  const want = first.head.predictProba(first.features); // features computed in this run (float32)
  let maxDiff = 0;
  want.forEach((row, n) => row.forEach((v, k) => (maxDiff = Math.max(maxDiff, Math.abs(v - P[n * 3 + k]!)))));
  assert.ok(maxDiff < 1e-4, `images → saved model vs head: max |Δp| = ${maxDiff}`);
  if (process.env['GRAFT_VERBOSE']) console.log(`images → saved model vs head: max |Δp| = ${maxDiff}`);

  // second run: features from the fp16 cache; the saved head (graph after the pooled features) on them
  const second = await trainFeatureClassifier(MODEL, data, { ...opts, out: join(tmp, 'clf-lib2') });
  const headOnly = readOnnx(join(tmp, 'clf-lib2', 'model.onnx')).cutAfter([`head/${FEATURES}`]);
  const sess = await Session.fromGraph(headOnly);
  const D = second.head.dim,
    N = second.features.length;
  const feed = new Float32Array(N * D);
  second.features.forEach((f, i) => feed.set(f, i * D));
  const out2 = (await sess.run({ [`head/${FEATURES}`]: { dtype: 'float32', dims: [N, D], data: feed } }))[
    PROBABILITIES
  ]!;
  await sess.release();
  const Q = out2.data as Float32Array;
  const want2 = second.head.predictProba(second.features);
  maxDiff = 0;
  want2.forEach((row, n) => row.forEach((v, k) => (maxDiff = Math.max(maxDiff, Math.abs(v - Q[n * 3 + k]!)))));
  assert.ok(maxDiff < 1e-4, `cached features → saved head vs predictProba: max |Δp| = ${maxDiff}`);
  if (process.env['GRAFT_VERBOSE']) console.log(`cached features → saved head vs predictProba: max |Δp| = ${maxDiff}`);
  assert.equal(second.report.extraction.computed, 0);
});

test('unreadable images (a truncated JPEG, a text file named .png) are reported by path and skipped by train, eval and predict; train writes report.html/json; --head ncm and knn', {
  skip,
}, async () => {
  const src = await imageFolder();
  const root = join(tmp, 'data-bad');
  for (const c of ['sneaker', 'trouser', 'tshirt']) {
    mkdirSync(join(root, c), { recursive: true });
    for (const f of readdirSync(join(src, c))) copyFileSync(join(src, c, f), join(root, c, f));
  }
  const jpeg = await sharp(readFileSync(join(src, 'trouser', '2.png')))
    .resize(200, 200)
    .jpeg()
    .toBuffer();
  const truncated = join(root, 'trouser', 'truncated.jpg');
  writeFileSync(truncated, jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  const text = join(root, 'sneaker', 'readme.png');
  writeFileSync(text, 'not a picture\n');

  const out = join(tmp, 'clf-bad');
  const r = JSON.parse(
    (
      await graft([
        'train',
        '--mode',
        'features',
        '--model',
        MODEL,
        '--data',
        root,
        '--head',
        'ncm',
        '--val-fraction',
        '0',
        '--test-fraction',
        '0.25',
        '--out',
        out,
        '--json',
      ])
    ).stdout,
  );
  assert.deepEqual(r.skipped.map((f: { path: string }) => f.path).sort(), [text, truncated].sort());
  assert.equal(r.extraction.skipped, 2);
  assert.equal(r.examples.train + r.examples.val + r.examples.test, 24); // 26 files, 2 unreadable
  assert.equal(r.head.kind, 'ncm');
  assert.ok(r.test.accuracy >= 5 / 6, `ncm test accuracy ${r.test.accuracy}`);
  // the evaluation report, written into the output folder
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  assert.match(html, /<svg /);
  assert.ok(html.includes('truncated.jpg') && html.includes('readme.png'));
  const rj = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  assert.deepEqual(rj.metrics.confusion, r.test.confusion);
  assert.equal(rj.training.head.kind, 'ncm');
  assert.equal(rj.skipped.length, 2);

  const { stdout } = await graft([
    'train',
    '--mode',
    'features',
    '--model',
    MODEL,
    '--data',
    root,
    '--head',
    'knn',
    '--head-grid',
    '1,3',
    '--out',
    join(tmp, 'clf-knn'),
  ]);
  assert.ok(stdout.includes(`skipped ${truncated}: `) && stdout.includes(`skipped ${text}: `), stdout);
  assert.match(stdout, /^head: k nearest neighbours on \d+ examples, k [13] chosen by leave-one-out cross-validation/m);
  assert.match(stdout, /^report: .*report\.html .* and .*report\.json$/m);
  assert.match(stdout, /^test: accuracy/m);

  const e = JSON.parse((await graft(['eval', '--model', join(tmp, 'clf-knn'), '--data', root, '--json'])).stdout);
  assert.equal(e.metrics.n, 24);
  assert.deepEqual(e.skipped.map((f: { path: string }) => f.path).sort(), [text, truncated].sort());
  assert.match(
    (await graft(['eval', '--model', out, '--data', root])).stdout,
    new RegExp(`^skipped ${truncated.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `, 'm'),
  );

  const p = JSON.parse(
    (
      await graft([
        'predict',
        '--model',
        join(tmp, 'clf-knn'),
        join(root, 'trouser', '2.png'),
        truncated,
        text,
        '--json',
      ])
    ).stdout,
  );
  assert.equal(p.length, 3);
  assert.equal(p[0].top[0].label, 'trouser');
  assert.ok(
    Math.abs(p[0].top.reduce((a: number, t: { probability: number }) => a + t.probability, 0) - 1) < 1e-5,
    'k-NN vote shares are probabilities',
  );
  assert.deepEqual([p[1].top, p[2].top], [[], []]);
  assert.ok(p[1].error.includes('truncated.jpg') && p[2].error.includes('readme.png'));
  const m = JSON.parse(
    (
      await graft([
        'train',
        '--mode',
        'features',
        '--model',
        MODEL,
        '--data',
        root,
        '--head',
        'mlp',
        '--head-grid',
        '0.01',
        '--hidden',
        '16',
        '--out',
        join(tmp, 'clf-mlp'),
        '--json',
      ])
    ).stdout,
  );
  assert.deepEqual(
    [m.head.kind, m.head.summary.hidden, m.head.summary.weightDecay, m.head.cv.length],
    ['mlp', 16, 0.01, 0],
  );
  assert.ok(m.test.accuracy >= 4 / 6, `mlp test accuracy ${m.test.accuracy}`);
  assert.deepEqual(
    readOnnx(join(tmp, 'clf-mlp', 'model.onnx'))
      .nodes.slice(-4)
      .map((n) => n.opType),
    ['Gemm', 'Relu', 'Gemm', 'Softmax'],
  );
  const plain = await graft(['predict', '--model', out, truncated, join(root, 'sneaker', '9.png')]);
  assert.match(plain.stdout, /truncated\.jpg: skipped \(/);
  assert.match(plain.stdout, /9\.png: sneaker /);
  assert.match(plain.stderr, /skipped 1 unreadable image/);
});
