/**
 * `graft train --mode prompt` and `graft predict` on the saved prompt classifier, as a user runs
 * them, on 40 real review snippets with bert-mini-debian: the flags' errors, a few fine-tuning steps,
 * and a zero-shot (--epochs 0) folder whose predictions equal the library's zero-shot prompt
 * classifier with the same template and label words.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assetPath, needs } from '../helpers/assets.js';
import { graft, graftFailsAll } from '../helpers/cli.js';
import { writeReviewSnippets } from '../helpers/review-csv.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { promptClassifier, predictPromptProba } from '../../src/text/prompt.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-prompt-cli-'));
const bert = assetPath('models/text/bert-mini-debian');
const skip = needs(bert, 'datasets/reviews/polarity-en-pang&lee2.csv');
// 40 real snippets (20 per class) as a CSV with a header; labels neg/pos (classes in alphabetical order).
const csv = join(dir, 'reviews.csv');
if (!skip) writeReviewSnippets(csv, 0, 20);
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
  'prompt',
  '--max-length',
  '32',
];
const probe = ['a wonderful , moving film', 'dull , tedious and far too long'];

interface Pred {
  text: string;
  top: { label: string; index: number; probability: number }[];
}
const probs = (preds: Pred[]) => preds.map((p) => [0, 1].map((k) => p.top.find((x) => x.index === k)!.probability));

test('graft train --mode prompt fine-tunes and saves a folder graft predict reads', { skip }, async () => {
  const out = join(dir, 'tuned');
  const { stdout } = await graft([
    ...base,
    '--label-words',
    'bad,good',
    '--epochs',
    '2',
    '--batch-size',
    '8',
    '--lr',
    '1e-4',
    '--out',
    out,
    '--json',
  ]);
  const rep = JSON.parse(stdout) as {
    mode: string;
    classes: string[];
    train: number;
    steps: number;
    labelWords: string[];
    template: string;
    finalLoss: number;
    test: { n: number; accuracy: number };
  };
  assert.equal(rep.mode, 'prompt');
  assert.deepEqual(rep.classes, ['neg', 'pos']);
  assert.deepEqual(rep.labelWords, ['bad', 'good']);
  assert.equal(rep.template, '{text} it was [MASK] .');
  assert.equal(rep.train, 30);
  assert.equal(rep.steps, 2 * Math.ceil(30 / 8));
  assert.ok(Number.isFinite(rep.finalLoss));
  assert.equal(rep.test.n, 10);
  for (const f of ['model.onnx', 'tokenizer.json', 'labels.json']) assert.ok(existsSync(join(out, f)), f);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), ['neg', 'pos']);
  const preds = JSON.parse((await graft(['predict', '--model', out, '--json', ...probe])).stdout) as Pred[];
  assert.deepEqual(
    preds.map((p) => p.text),
    probe,
  );
  for (const p of preds) {
    assert.deepEqual(p.top.map((x) => x.label).sort(), ['neg', 'pos']);
    assert.ok(Math.abs(p.top.reduce((s, x) => s + x.probability, 0) - 1) < 1e-4);
  }
  const plain = (await graft(['predict', '--model', out, '--top', '1', probe[0]!])).stdout;
  assert.match(plain, /^"a wonderful , moving film": (neg|pos) 0\.\d{4}\n$/);
});

test('--epochs 0 saves the zero-shot prompt classifier with the given template', { skip }, async () => {
  const out = join(dir, 'zero');
  const template = '{text} . all in all , it was [MASK] .';
  const { stdout } = await graft([
    ...base,
    '--label-words',
    'bad,good',
    '--template',
    template,
    '--epochs',
    '0',
    '--out',
    out,
  ]);
  assert.match(
    stdout,
    /text prompt \(zero-shot\): 30 training texts, 10 test texts.*label words bad → neg, good → pos/,
  );
  const preds = JSON.parse((await graft(['predict', '--model', out, '--json', ...probe])).stdout) as Pred[];
  const want = await predictPromptProba(
    promptClassifier(loadModelFolderSync(bert), { template, labelWords: ['bad', 'good'] }),
    loadModelFolderSync(bert).tokenizer,
    probe,
    { maxLength: 32 },
  );
  probs(preds).forEach((p, i) =>
    p.forEach((v, k) => assert.ok(Math.abs(v - want[i]![k]!) < 1e-5, `text ${i} class ${k}: ${v} vs ${want[i]![k]}`)),
  );
  // and they differ from the fine-tuned folder's
  const tuned = probs(
    JSON.parse((await graft(['predict', '--model', join(dir, 'tuned'), '--json', ...probe])).stdout) as Pred[],
  );
  assert.ok(tuned.some((p, i) => Math.abs(p[0]! - want[i]![0]!) > 1e-3));
});

test('bad prompt flags stop with errors naming the flag', { skip }, async () => {
  const out = ['--epochs', '0', '--out', join(dir, 'bad')];
  const cases: [string[], RegExp][] = [
    [
      [...base, '--label-words', 'terrible,good', ...out],
      /--label-words: label word "terrible" is not one token of the vocabulary \(it splits into "terr" "##ible"\)/,
    ],
    [
      [...base, '--label-words', 'bad,good,great', ...out],
      /--label-words gives 3 words \(bad, good, great\) for 2 classes: give one per class, in the order of the class names.*: neg, pos/,
    ],
    [
      [...base, '--label-words', 'bad,good', '--template', '{text} it was good .', ...out],
      /--template: prompt template "\{text\} it was good \." must hold the mask token \[MASK\] exactly once \(found 0\)/,
    ],
    [
      [...base, '--label-words', 'bad,good', '--template', 'it was [MASK] .', ...out],
      /--template: .*must hold \{text\} exactly once/,
    ],
    [
      [...base, ...out],
      /prompt classification needs --label-words: one word per class, in the order of the class names.*: neg, pos/,
    ],
    [
      [...base, '--label-words', 'bad,good', '--lora-rank', '4', ...out],
      /graft train prompt has no --lora-rank option; --lora-rank belongs to graft train images, graft train text, graft train auto/,
    ],
    [
      [...base, '--label-words', 'bad,good', '--trainable', 'layer\\.3\\.', ...out],
      /graft train prompt has no --trainable option/,
    ],
    [
      [...base, '--label-words', 'bad,good', '--pooling', 'cls', '--init', 'random', ...out],
      /graft train prompt has no --pooling option; --pooling belongs to graft train text, graft train setfit, graft train auto/,
    ],
    [
      [
        ...base,
        '--label-words',
        'bad,good',
        '--template',
        `{text} ${'very '.repeat(40)}[MASK] .`,
        '--epochs',
        '2',
        '--out',
        join(dir, 'bad'),
      ],
      /--template: max length 32 leaves no room for text after the prompt template's \d+ tokens/,
    ],
    [
      [
        ...base.map((a) => (a === 'prompt' ? 'features' : a)),
        '--label-words',
        'bad,good',
        '--template',
        '{text} [MASK]',
        ...out,
      ],
      /graft train text has no --label-words option; --label-words belongs to graft train prompt/,
    ],
    [
      ['train', '--model', bert, '--data', csv, '--mode', 'prompt', '--label-words', 'bad,good'],
      /--mode prompt is for text classification: give --text-column/,
    ],
  ];
  const results = await graftFailsAll(cases.map(([args]) => args));
  cases.forEach(([args, re], i) => assert.match(results[i]!.stderr, re, `${args.join(' ')}: ${results[i]!.stderr}`));
  assert.ok(!existsSync(join(dir, 'bad')));
});
