/** `graft train --text-column …` and `graft predict` on a text classifier folder, as a user runs them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assetPath, needs } from '../helpers/assets.js';
import { graft, graftFails } from '../helpers/cli.js';
import { writeReviewSnippets } from '../helpers/review-csv.js';
import { setfitSteps } from '../../src/text/setfit.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-text-cli-'));
const bert = assetPath('models/text/bert-mini-debian');
const skip = needs(bert, 'datasets/reviews/polarity-en-pang&lee2.csv');
// 80 real snippets (40 per class) as a CSV with a header, labels as words.
const csv = join(dir, 'reviews.csv');
if (!skip) writeReviewSnippets(csv, 0, 40);

test('graft train --text-column (features, then LoRA fine-tuning) saves a folder graft predict reads', {
  skip,
}, async () => {
  const out = join(dir, 'clf');
  const { stdout } = await graft([
    'train',
    '--model',
    bert,
    '--data',
    csv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--mode',
    'features',
    '--max-length',
    '32',
    '--out',
    out,
    '--json',
  ]);
  const rep = JSON.parse(stdout) as { test: { accuracy: number; n: number }; classes: string[] };
  assert.deepEqual(rep.classes, ['neg', 'pos']);
  assert.equal(rep.test.n, 20);
  for (const f of ['model.onnx', 'tokenizer.json', 'labels.json']) assert.ok(existsSync(join(out, f)), f);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), ['neg', 'pos']);
  const p = await graft(['predict', '--model', out, '--json', 'a wonderful film', 'dull']);
  const preds = JSON.parse(p.stdout) as { text: string; top: { label: string; probability: number }[] }[];
  assert.equal(preds.length, 2);
  assert.ok(Math.abs(preds[0]!.top.reduce((s, x) => s + x.probability, 0) - 1) < 1e-4);
  // the report records the table's columns, so an int8 copy calibrates on the training texts unasked
  const trained = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).training;
  assert.equal(trained.textColumn, 'review');
  assert.equal(trained.labelColumn, 'sentiment');
  const q = await graft(['export', '--int8', out, join(dir, 'clf-int8')]);
  assert.match(q.stdout, /calibrated on \d+ texts from /);
  assert.ok(q.stdout.includes(`texts from ${csv}`), q.stdout);
  const pq = JSON.parse((await graft(['predict', '--model', join(dir, 'clf-int8'), '--json', 'dull'])).stdout);
  assert.equal(pq[0].top.length, 2);
  const lora = join(dir, 'lora');
  const r2 = await graft([
    'train',
    '--model',
    bert,
    '--data',
    csv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--mode',
    'finetune',
    '--lora-rank',
    '4',
    '--epochs',
    '1',
    '--max-length',
    '32',
    '--out',
    lora,
    '--json',
  ]);
  const rep2 = JSON.parse(r2.stdout) as { finetune: string; steps: number };
  assert.equal(rep2.finetune, 'lora');
  assert.ok(rep2.steps >= 4);
  assert.ok(existsSync(join(lora, 'model.onnx')));
});

test('text errors name the file, row and flag', { skip }, async () => {
  const bad = join(dir, 'bad.csv');
  writeFileSync(bad, 'review,sentiment\ngood,pos\n,neg\n');
  const r = await graftFails([
    'train',
    '--model',
    bert,
    '--data',
    bad,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--mode',
    'features',
  ]);
  assert.match(r.stderr, /bad\.csv: line 3: empty text/);
  const r2 = await graftFails([
    'train',
    '--model',
    bert,
    '--data',
    csv,
    '--text-column',
    'review',
    '--label-column',
    'stars',
    '--mode',
    'features',
  ]);
  assert.match(r2.stderr, /no label column "stars".*columns: sentiment, review/);
});

test('graft predict on a text classifier refuses an empty text, naming the input', { skip }, async () => {
  const out = join(dir, 'clf');
  if (!existsSync(join(out, 'model.onnx')))
    await graft([
      'train',
      '--model',
      bert,
      '--data',
      csv,
      '--text-column',
      'review',
      '--label-column',
      'sentiment',
      '--mode',
      'features',
      '--max-length',
      '32',
      '--out',
      out,
    ]);
  const r = await graftFails(['predict', '--model', out, 'a wonderful film', '']);
  assert.match(r.stderr, /input 2 of 2 is an empty text/);
  const r2 = await graftFails(['predict', '--model', out, '   ', 'dull']);
  assert.match(r2.stderr, /input 1 of 2 is an empty text/);
});

test('--mode setfit reads --epochs (passes over the pair budget) and --batch-size (pairs per step)', {
  skip,
}, async () => {
  assert.equal(setfitSteps(4), 10);
  assert.equal(setfitSteps(4, 2, 8), 40);
  assert.equal(setfitSteps(1, 1, 100), 1);
  const base = [
    'train',
    '--model',
    bert,
    '--data',
    csv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--mode',
    'setfit',
    '--labels-per-class',
    '2',
    '--max-length',
    '16',
    '--json',
  ];
  const def = JSON.parse((await graft([...base, '--out', join(dir, 'setfit-default')])).stdout) as {
    train: number;
    epochs: number;
    pairsPerStep: number;
    steps: number;
  };
  assert.deepEqual([def.epochs, def.pairsPerStep, def.steps], [1, 16, setfitSteps(def.train)]);
  const given = JSON.parse(
    (await graft([...base, '--epochs', '2', '--batch-size', '8', '--out', join(dir, 'setfit-given')])).stdout,
  ) as { train: number; epochs: number; pairsPerStep: number; steps: number; pairBatchTexts: number };
  assert.deepEqual([given.epochs, given.pairsPerStep, given.steps], [2, 8, setfitSteps(given.train, 2, 8)]);
  assert.equal(given.steps, 4 * def.steps);
  const bad = await graftFails([...base, '--batch-size', '0', '--out', join(dir, 'setfit-bad')]);
  assert.match(bad.stderr, /--batch-size must be at least 1, got 0/);
});
