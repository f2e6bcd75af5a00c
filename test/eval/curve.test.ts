/** graft curve's library: a small real curve (MNIST CNN → 8×8 digits), its table/plot files, and budget errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/formats/load.js';
import { loadPixelDataset } from '../../src/data/pixel-dataset.js';
import { dataEfficiencyCurve, writeCurve, checkCurveLists } from '../../src/eval/curve.js';
import { GraftError } from '../../src/util/errors.js';
import { asset, needs } from '../helpers/assets.js';
import { graft, graftFails } from '../helpers/cli.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { greyToBmp } from '../../src/data/labelled-images.js';

const NODE = 'Pooling160_Output_0_reshape0';

test('a data-efficiency curve on real data: every method learns, transfer beats scratch at 2 labels per class; table and SVG written', async () => {
  const model = loadModel(asset('models/onnxjs-demo/mnist.onnx'));
  const data = await loadPixelDataset(asset('datasets/digits-8x8/digits.csv.gz'), { side: 28, pixelMax: 16 });
  const r = await dataEfficiencyCurve(model, data, { budgets: [10, 2], seeds: 2, minSteps: 40 });
  assert.deepEqual(r.budgets, [2, 10]);
  assert.equal(r.points.length, 2 * 2 * 3);
  const mean = (m: string, b: number) => r.summary.find((s) => s.method === m && s.perClass === b)!.mean;
  for (const m of ['scratch', 'features', 'finetune']) assert.ok(mean(m, 10) > 0.5, `${m} at 10/class: ${mean(m, 10)}`);
  assert.ok(Math.max(mean('features', 2), mean('finetune', 2)) > mean('scratch', 2), JSON.stringify(r.summary));
  for (const s of r.summary) assert.ok(s.min <= s.mean && s.mean <= s.max);
  const dir = mkdtempSync(join(tmpdir(), 'graft-curve-'));
  writeCurve(r, dir);
  const md = readFileSync(join(dir, 'curve.md'), 'utf8');
  assert.match(md, /\| 10 \| 0\.\d{3} \[0\.\d{3}–0\.\d{3}\] \|/);
  const svg = readFileSync(join(dir, 'curve.svg'), 'utf8');
  assert.equal((svg.match(/<polyline /g) ?? []).length, 3);
  assert.equal((svg.match(/<polygon /g) ?? []).length, 3);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'curve.json'), 'utf8')).budgets, [2, 10]);
  await assert.rejects(
    () => dataEfficiencyCurve(model, data, { budgets: [500], seeds: 1, methods: ['features'], node: NODE }),
    GraftError,
  );
});

test('graft curve reads IDX files and image folders (Fashion-MNIST with the MNIST CNN): every method runs, features beat chance', {
  skip: needs('datasets/fashion-mnist'),
}, async () => {
  const imgs = asset('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');
  const args = [
    '--model',
    asset('models/onnxjs-demo/mnist.onnx'),
    '--labels-per-class',
    '2,5',
    '--seeds',
    '1',
    '--steps',
    '20',
    '--max-per-class',
    '20',
    '--json',
  ];
  const dir = mkdtempSync(join(tmpdir(), 'graft-curve-idx-'));
  const idx = JSON.parse((await graft(['curve', ...args, '--data', imgs, '--out', join(dir, 'idx')])).stdout);
  assert.equal(idx.examples, 200);
  assert.equal(idx.points.length, 2 * 3);
  const at = (r: { summary: { method: string; perClass: number; mean: number }[] }, m: string, b: number) =>
    r.summary.find((s) => s.method === m && s.perClass === b)!.mean;
  assert.ok(at(idx, 'features', 5) > 0.4, `features at 5/class on IDX: ${at(idx, 'features', 5)} (chance 0.1)`);
  // the same first 20 images per class as an image folder of BMP files (one subfolder per class)
  const d = readIdxDataset(imgs, asset('datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'));
  const folder = join(dir, 'folder');
  const count = new Array(10).fill(0);
  d.images.forEach((px, i) => {
    const c = d.labels[i]!;
    if (count[c] >= 20) return;
    mkdirSync(join(folder, String(c)), { recursive: true });
    writeFileSync(join(folder, String(c), `${String(count[c]++).padStart(3, '0')}.bmp`), greyToBmp(px, 28, 28));
  });
  const fo = JSON.parse((await graft(['curve', ...args, '--data', folder, '--out', join(dir, 'folder-out')])).stdout);
  assert.equal(fo.examples, 200);
  assert.ok(at(fo, 'features', 5) > 0.4, `features at 5/class on the folder: ${at(fo, 'features', 5)}`);
});

test('graft curve refuses a budget or a method listed twice, naming the flag (before loading anything)', async () => {
  const args = [
    'curve',
    '--model',
    asset('models/onnxjs-demo/mnist.onnx'),
    '--data',
    asset('datasets/digits-8x8/digits.csv.gz'),
    '--seeds',
    '1',
  ];
  let e = await graftFails([...args, '--labels-per-class', '5,5,10']);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /--labels-per-class lists 5 more than once/);
  e = await graftFails([...args, '--labels-per-class', '5', '--methods', 'scratch,features,scratch']);
  assert.match(e.stderr, /--methods lists scratch more than once/);
  assert.throws(() => checkCurveLists([1, 2], ['features', 'features']), GraftError);
  assert.doesNotThrow(() => checkCurveLists([1, 2, 5], ['scratch', 'features']));
});
