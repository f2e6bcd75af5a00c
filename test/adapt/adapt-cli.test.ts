/**
 * `graft adapt` as a user runs it: a source-free method on the 8×8 digits with mnist.onnx (labels
 * only for the report), a feature-level method on Fashion-MNIST features with a shifted target,
 * whose saved backbone + head file must reproduce the reported accuracy in plain onnxruntime, and
 * the errors a user can cause.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, graftFailsAll } from '../helpers/cli.js';
import { assetPath, needs } from '../helpers/assets.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { fashionMnist } from '../../src/adapt/experiments.js';
import { shiftImages } from '../../src/data/shifts.js';
import { evaluateModel } from '../../src/finetune/classifier.js';
import { makeBatchDynamic } from '../../src/graph/rewrites.js';

const model = assetPath('models/onnxjs-demo/mnist.onnx');
const digits = assetPath('datasets/digits-8x8/digits.csv.gz');
const fTrain = assetPath('datasets/fashion-mnist/train-images-idx3-ubyte.gz');
const fTest = assetPath('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');
const NODE = 'Pooling160_Output_0_reshape0';

test('graft adapt --method entropy: source-free, labels only for the report, model and report saved', {
  skip: needs(model, digits),
}, async () => {
  const out = mkdtempSync(join(tmpdir(), 'graft-adapt-'));
  const { stdout } = await graft([
    'adapt',
    '--method',
    'entropy',
    '--model',
    model,
    '--target',
    digits,
    '--target-labels',
    'data',
    '--lr',
    '3e-3',
    '--steps',
    '25,50',
    '--out',
    out,
    '--json',
  ]);
  const r = JSON.parse(stdout);
  assert.equal(r.level, 'network');
  assert.equal(r.candidates.length, 2);
  assert.ok(r.accuracy.after > r.accuracy.before + 0.03, JSON.stringify(r.accuracy));
  const saved = makeBatchDynamic(readOnnx(join(out, 'model.onnx')));
  assert.ok(saved.metadata['graft.adapted']?.startsWith('entropy'));
});

test('graft adapt --method coral: the saved backbone + head reproduces the reported target accuracy', {
  skip: needs(model, 'datasets/fashion-mnist'),
}, async () => {
  const out = mkdtempSync(join(tmpdir(), 'graft-adapt-'));
  const { stdout } = await graft([
    'adapt',
    '--method',
    'coral',
    '--model',
    model,
    '--node',
    NODE,
    '--source',
    fTrain,
    '--target',
    fTest,
    '--shift-target',
    'dim-noisy',
    '--max-examples',
    '800',
    '--lambda',
    '0.1',
    '--target-labels',
    'data',
    '--out',
    out,
    '--json',
  ]);
  const r = JSON.parse(stdout);
  assert.equal(r.level, 'features');
  assert.ok(r.accuracy.after > r.accuracy.before + 0.1, JSON.stringify(r.accuracy));
  const { test: te } = fashionMnist();
  const x = shiftImages(
    te.images.slice(0, 800).map((u) => Float32Array.from(u, (v) => v / 255)),
    'dim-noisy',
    0,
  ).map((v) => v.map((p) => p * 255));
  const acc = await evaluateModel(makeBatchDynamic(readOnnx(join(out, 'model.onnx'))), {
    x,
    y: te.labels.slice(0, 800),
  });
  assert.ok(Math.abs(acc - r.accuracy.after) < 0.005, `saved model ${acc} vs reported ${r.accuracy.after}`);
});

test('graft adapt: errors name the flag', { skip: needs(model, digits) }, async () => {
  const cases: [string[], RegExp][] = [
    [['adapt', '--method', 'coral', '--model', model, '--target', digits], /--method coral needs --source/],
    [['adapt', '--method', 'adabn', '--model', model, '--target', digits], /no BatchNormalization/],
    [['adapt', '--method', 'entropy', '--model', model, '--target', digits, '--source', digits], /source-free/],
    [['adapt', '--method', 'entropy', '--model', model, '--target', 'nope.csv'], /dataset not found: nope\.csv/],
    // a tuning flag the method does not read, or a count below 1, is refused with the flag's name
    [
      ['adapt', '--method', 'entropy', '--model', model, '--target', digits, '--lambda', '0.1'],
      /--lambda does not apply to --method entropy/,
    ],
    [
      ['adapt', '--method', 'entropy', '--model', model, '--target', digits, '--max-examples', '-5'],
      /--max-examples must be at least 1/,
    ],
  ];
  const results = await graftFailsAll(cases.map(([args]) => args));
  assert.equal(results[0]!.code, 2);
  cases.forEach(([args, re], i) => assert.match(results[i]!.stderr, re, `${args.join(' ')}: ${results[i]!.stderr}`));
});
