/**
 * `graft train --mode finetune` training-loop flags: errors a user can cause name the flag, and a run
 * with the loop's flags together trains the digits task to the accuracy of the plain recipe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, graftFails, graftFailsAll } from '../helpers/cli.js';
import { mnistPath, digitsPath } from '../train/digits-task.js';

const base = () => [
  'train',
  '--model',
  mnistPath(),
  '--data',
  digitsPath(),
  '--pixel-max',
  '16',
  '--labels-per-class',
  '50',
];

test('bad training-loop flags fail with a message naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['--class-weights', '1,x'], /--class-weights: weight 2 \('x'\)/],
    [['--class-weights', '1,2'], /2 class weights given for a model with 10 classes/],
    [['--resume'], /--resume needs --checkpoint-dir/],
    [['--schedule', 'triangle'], /--schedule/],
    [['--schedule', 'linear', '--warmup', '3'], /--warmup-fraction/],
    [['--lr-decay', '2'], /decay per layer group must be in \(0, 1\]/],
    [['--unfreeze-every', '0'], /unfreezeEvery must be a positive number of epochs/],
    [['--early-stopping', 'loss', '--patience', '0'], /--patience must be at least 1/],
    [
      ['--checkpoint-dir', join(tmpdir(), 'graft-unused'), '--keep-checkpoints', '0'],
      /--keep-checkpoints must be at least 1/,
    ],
  ];
  const results = await graftFailsAll(cases.map(([flags]) => [...base(), '--epochs', '1', ...flags]));
  cases.forEach(([flags, re], i) => assert.match(results[i]!.stderr, re, `${flags.join(' ')}: ${results[i]!.stderr}`));
});

test('the loop flags together (cosine, early stopping, balanced weights, discriminative rates, unfreezing) reach ≥ 0.95 test accuracy', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-flags-'));
  const { stdout } = await graft([
    ...base(),
    '--epochs',
    '20',
    '--lr',
    '3e-3',
    '--schedule',
    'cosine',
    '--early-stopping',
    'loss',
    '--patience',
    '4',
    '--class-weights',
    'balanced',
    '--lr-decay',
    '0.5',
    '--unfreeze-every',
    '2',
    '--json',
    '--out',
    join(dir, 'm.onnx'),
  ]);
  const r = JSON.parse(stdout) as {
    testAccuracy: number;
    zeroShotAccuracy: number;
    validationExamples: number;
    epochs: number;
    bestEpoch?: number;
  };
  assert.ok(r.validationExamples > 100);
  assert.ok(r.bestEpoch !== undefined && r.bestEpoch <= r.epochs);
  assert.ok(r.testAccuracy >= 0.95, `test accuracy ${r.testAccuracy} (zero-shot ${r.zeroShotAccuracy})`);
});

test('finetune-only flags given to features or text mode are refused, not silently ignored', async () => {
  const r = await graftFails([
    'train',
    '--mode',
    'features',
    '--model',
    mnistPath(),
    '--data',
    digitsPath(),
    '--checkpoint-dir',
    join(tmpdir(), 'graft-unused'),
    '--early-stopping',
    'loss',
  ]);
  assert.match(r.stderr, /`graft train --mode features` is now `graft train features`/);
  assert.match(
    r.stderr,
    /graft train features has no --checkpoint-dir option; --checkpoint-dir belongs to graft train images, /,
  );
  const t = await graftFails([
    'train',
    '--model',
    mnistPath(),
    '--data',
    digitsPath(),
    '--text-column',
    'text',
    '--schedule',
    'cosine',
  ]);
  assert.match(t.stderr, /--schedule applies to image data, not to text \(--text-column\)/);
});
