/**
 * `graft adapt --method dann|mmd|deep-coral` as a user runs it: labelled Fashion-MNIST source, the
 * noisy-shifted test images as unlabelled target, weight and checkpoint chosen by reverse validation
 * (no target labels); the report compares with source-only training, and the saved model reproduces
 * the reported target accuracy in plain onnxruntime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, graftFails } from '../helpers/cli.js';
import { assetPath, needs } from '../helpers/assets.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { fashionMnist } from '../../src/adapt/experiments.js';
import { shiftImages } from '../../src/data/shifts.js';
import { evaluateModel } from '../../src/finetune/classifier.js';
import { makeBatchDynamic } from '../../src/graph/rewrites.js';

const fTrain = assetPath('datasets/fashion-mnist/train-images-idx3-ubyte.gz');
const fTest = assetPath('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');
const skip = needs('datasets/fashion-mnist');

test('graft adapt --method dann: beats source-only on the shifted target, selection label-free, saved model reproduces the report', {
  skip,
}, async () => {
  const out = mkdtempSync(join(tmpdir(), 'graft-dann-'));
  const { stdout } = await graft([
    'adapt',
    '--method',
    'dann',
    '--model',
    'small-cnn',
    '--source',
    fTrain,
    '--target',
    fTest,
    '--shift-target',
    'noise',
    '--max-examples',
    '1000',
    '--epochs',
    '6',
    '--lr',
    '2e-3',
    '--target-labels',
    'data',
    '--out',
    out,
    '--json',
  ]);
  const r = JSON.parse(stdout);
  assert.equal(r.level, 'network');
  assert.equal(r.candidates.length, 2 * 3, 'two weights × checkpoints at epochs 2, 4, 6');
  const best = r.candidates.reduce((a: { score: number }, c: { score: number }) => (c.score > a.score ? c : a));
  assert.deepEqual(r.chosen, best.params, 'the chosen candidate is the one with the best label-free score');
  assert.match(r.selection, /reverse validation/);
  console.log(
    `dann: target ${r.accuracy.after.toFixed(3)} vs source-only ${r.accuracy.sourceOnly.toFixed(3)} (chosen ${JSON.stringify(r.chosen)}, ${r.seconds.toFixed(1)} s)`,
  );
  assert.ok(r.accuracy.after > r.accuracy.sourceOnly + 0.1, JSON.stringify(r.accuracy));
  const { test: te } = fashionMnist();
  const x = shiftImages(
    te.images.slice(0, 1000).map((u) => Float32Array.from(u, (v) => v / 255)),
    'noise',
    0,
  );
  const acc = await evaluateModel(makeBatchDynamic(readOnnx(join(out, 'model.onnx'))), {
    x,
    y: te.labels.slice(0, 1000),
  });
  assert.ok(Math.abs(acc - r.accuracy.after) < 0.005, `saved model ${acc} vs reported ${r.accuracy.after}`);
});

test('graft adapt --method mmd / deep-coral run end to end; errors name the flag', { skip }, async () => {
  for (const method of ['mmd', 'deep-coral']) {
    const { stdout } = await graft([
      'adapt',
      '--method',
      method,
      '--model',
      'small-cnn',
      '--source',
      fTrain,
      '--target',
      fTest,
      '--shift-target',
      'noise',
      '--max-examples',
      '300',
      '--epochs',
      '2',
      '--weight',
      '1',
      '--select',
      'im',
      '--no-baseline',
      '--target-labels',
      'data',
      '--json',
    ]);
    const r = JSON.parse(stdout);
    assert.equal(r.candidates.length, 1);
    assert.match(r.selection, /information maximization/);
    assert.ok(r.accuracy.after > 0.2, `${method}: ${r.accuracy.after} (chance 0.1)`);
  }
  let e = await graftFails(['adapt', '--method', 'dann', '--model', 'small-cnn', '--target', fTest]);
  assert.match(e.stderr, /--method dann needs --source/);
  e = await graftFails(['adapt', '--method', 'entropy', '--model', 'small-cnn', '--target', fTest]);
  assert.match(e.stderr, /small-cnn .* works only with --method dann/);
});
