/**
 * Inductive transfer through `graft train --mode finetune`: a classifier trained on one task (the
 * MNIST network fine-tuned on 8×8 digits 0–4, which already needs a new 5-class head) is the start of
 * a second task with different classes (all ten digits): the CLI cuts it at the features recorded in
 * its metadata and trains a new 10-class head, which must beat the untrained new head by far.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, graftFails } from '../helpers/cli.js';
import { asset } from '../helpers/assets.js';
import { readOnnx } from '../../src/formats/onnx.js';

const mnist = asset('models/onnxjs-demo/mnist.onnx');
const digits = asset('datasets/digits-8x8/digits.csv.gz');
const common = [
  '--mode',
  'finetune',
  '--pixel-max',
  '16',
  '--labels-per-class',
  '20',
  '--epochs',
  '8',
  '--lr',
  '3e-3',
  '--json',
];

test('graft train --mode finetune from a saved classifier of another task: a new head, trained, beats the untrained head', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-newhead-'));
  const rows = gunzipSync(readFileSync(digits))
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const first = join(dir, 'digits-0-4.csv');
  writeFileSync(first, rows.filter((l) => Number(l.slice(l.lastIndexOf(',') + 1)) < 5).join('\n') + '\n');
  const task1 = join(dir, 'task1.onnx'),
    task2 = join(dir, 'task2.onnx');

  const a = await graft(['train', ...common, '--model', mnist, '--data', first, '--out', task1]);
  const r1 = JSON.parse(a.stdout);
  assert.deepEqual({ prev: r1.newHead.previousOutputs, classes: r1.newHead.classes }, { prev: 10, classes: 5 });
  assert.match(a.stderr, /10 outputs but the data has 5 classes/);
  assert.ok(r1.testAccuracy > 0.9, `task 1 (digits 0–4): ${r1.testAccuracy}`);
  assert.equal(
    readOnnx(task1).metadata['graft.features'],
    r1.newHead.node,
    'the saved classifier records its feature value',
  );

  const b = await graft(['train', ...common, '--model', task1, '--data', digits, '--out', task2]);
  const r2 = JSON.parse(b.stdout);
  assert.deepEqual(
    { prev: r2.newHead.previousOutputs, classes: r2.newHead.classes, node: r2.newHead.node },
    { prev: 5, classes: 10, node: r1.newHead.node },
  );
  console.log(
    `task 2 (all digits) from the task-1 classifier: untrained head ${r2.zeroShotAccuracy.toFixed(3)} → ${r2.testAccuracy.toFixed(3)} after ${r2.epochs} epochs on ${r2.trainExamples} examples`,
  );
  assert.ok(
    r2.testAccuracy > r2.zeroShotAccuracy + 0.4,
    JSON.stringify({ before: r2.zeroShotAccuracy, after: r2.testAccuracy }),
  );
  assert.ok(r2.testAccuracy > 0.85, `task 2: ${r2.testAccuracy}`);

  const e = await graftFails([
    'train',
    ...common,
    '--no-new-head',
    '--model',
    task1,
    '--data',
    digits,
    '--out',
    join(dir, 'x.onnx'),
  ]);
  assert.match(e.stderr, /has 5 outputs but .* has 10 classes/);
});
