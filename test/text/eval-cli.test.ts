/** `graft eval` on a saved text classifier folder, as a user runs it: metrics equal to predictTexts' on the same rows, the report, and the errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asset, assetPath, needs } from '../helpers/assets.js';
import { graft, graftFails } from '../helpers/cli.js';
import { reviewCsv, writeReviewSnippets } from '../helpers/review-csv.js';
import { loadTextClassifier, predictTexts } from '../../src/text/saved.js';
import { evaluateTextClassifier } from '../../src/eval/text.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-text-eval-'));
const bert = assetPath('models/text/bert-mini-debian');
const skip = needs(bert, 'datasets/reviews/polarity-en-pang&lee2.csv');
// Fixed real subsets: per class, the first 100 snippets train, the next 50 are the evaluation file.
const trainCsv = join(dir, 'train.csv');
const evalCsv = join(dir, 'eval.csv');
if (!skip) writeReviewSnippets(trainCsv, 0, 100);
const evalRows = skip ? [] : writeReviewSnippets(evalCsv, 100, 150);
const clf = join(dir, 'clf');
let trained: Promise<unknown> | undefined;
const trainOnce = () =>
  (trained ??= graft([
    'train',
    '--model',
    bert,
    '--data',
    trainCsv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--mode',
    'features',
    '--max-length',
    '32',
    '--out',
    clf,
    '--json',
  ]));

interface EvalJson {
  mode: string;
  maxLength: number;
  report: string[];
  metrics: { n: number; accuracy: number; labels: string[]; confusion: number[][] };
}

test('graft eval on a text classifier: accuracy equals predictTexts on the same rows; report.html/report.json in the --report folder', {
  skip,
}, async () => {
  await trainOnce();
  const report = join(dir, 'report');
  const r = await graft([
    'eval',
    '--model',
    clf,
    '--data',
    evalCsv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--report',
    report,
    '--json',
  ]);
  const e = JSON.parse(r.stdout) as EvalJson;
  assert.equal(e.mode, 'features');
  assert.equal(e.maxLength, 32);
  assert.equal(e.metrics.n, 100);
  assert.deepEqual(e.metrics.labels, ['neg', 'pos']);
  assert.equal(
    e.metrics.confusion.flat().reduce((a, b) => a + b, 0),
    100,
  );
  assert.deepEqual(
    e.metrics.confusion.map((row) => row.reduce((a, b) => a + b, 0)),
    [50, 50],
  );
  // The same rows through predictTexts, in this process.
  const c = loadTextClassifier(clf);
  const preds = await predictTexts(
    c,
    evalRows.map(([, x]) => x),
  );
  const correct = preds.filter((p, i) => p.top[0]!.label === evalRows[i]![0]).length;
  assert.equal(e.metrics.accuracy, correct / 100);
  // Report files, and the JSON's metrics as printed.
  assert.deepEqual(e.report, [join(report, 'report.html'), join(report, 'report.json')]);
  assert.match(readFileSync(join(report, 'report.html'), 'utf8'), /<svg /);
  assert.deepEqual((JSON.parse(readFileSync(join(report, 'report.json'), 'utf8')) as EvalJson).metrics, e.metrics);
  // Long snippets are cut to the classifier's 32 tokens with the warning naming the file and rows.
  assert.match(r.stderr, /warning: eval\.csv: truncated \d+ text\(s\) to 32 tokens: row \d+ \(\d+ tokens\)/);
  // Plain output, headerless columns by index, a shorter --max-length and --max-per-class.
  const headerless = join(dir, 'headerless.csv');
  writeFileSync(headerless, reviewCsv(evalRows).split('\n').slice(1).join('\n'));
  const plain = await graft([
    'eval',
    '--model',
    clf,
    '--data',
    headerless,
    '--text-column',
    '1',
    '--label-column',
    '0',
    '--max-length',
    '16',
    '--max-per-class',
    '10',
    '--batch-size',
    '4',
  ]);
  assert.match(plain.stdout, /^eval: accuracy [\d.]+, macro-F1 [\d.]+ on 20 examples/);
  // One warning per onnxruntime batch: the first three, then a line counting them all.
  assert.match(plain.stderr, /truncated \d+ text\(s\) to 16 tokens: row \d+/);
  assert.match(
    plain.stderr,
    /headerless\.csv: truncated \d+ text\(s\) in all to 16 tokens \(\d+ more warnings not shown\)/,
  );
});

test('graft eval on a prompt classifier (zero-shot cloze) equals predictTexts on the same rows', { skip }, async () => {
  const prompt = join(dir, 'prompt');
  await graft([
    'train',
    '--model',
    bert,
    '--data',
    trainCsv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--mode',
    'prompt',
    '--label-words',
    'bad,good',
    '--epochs',
    '0',
    '--max-length',
    '32',
    '--out',
    prompt,
  ]);
  const e = JSON.parse(
    (
      await graft([
        'eval',
        '--model',
        prompt,
        '--data',
        evalCsv,
        '--text-column',
        'review',
        '--label-column',
        'sentiment',
        '--json',
      ])
    ).stdout,
  ) as EvalJson;
  assert.equal(e.mode, 'prompt');
  assert.equal(e.metrics.n, 100);
  const preds = await predictTexts(
    loadTextClassifier(prompt),
    evalRows.map(([, x]) => x),
  );
  assert.equal(e.metrics.accuracy, preds.filter((p, i) => p.top[0]!.label === evalRows[i]![0]).length / 100);
  const predicted = [0, 1].map((k) => e.metrics.confusion[0]![k]! + e.metrics.confusion[1]![k]!);
  assert.deepEqual(
    predicted,
    [0, 1].map((k) => preds.filter((p) => p.top[0]!.index === k).length),
  );
});

test('evaluateTextClassifier: progress after each batch, the same predictions as one pass', { skip }, async () => {
  await trainOnce();
  const c = loadTextClassifier(clf);
  const texts = evalRows.map(([, x]) => x),
    labels = evalRows.map(([l]) => l);
  const whole = await evaluateTextClassifier(c, texts, labels, { warn: () => {} });
  const seen: number[] = [];
  const chunked = await evaluateTextClassifier(c, texts, labels, {
    batchSize: 4,
    warn: () => {},
    onProgress: (d, n) => (assert.equal(n, 100), seen.push(d)),
  });
  assert.ok(seen.length > 2, `progress steps ${seen}`);
  assert.equal(seen.at(-1), 100);
  assert.deepEqual(
    seen,
    [...seen].sort((a, b) => a - b),
  );
  assert.deepEqual(chunked.predictions, whole.predictions);
  assert.deepEqual(
    chunked.truth,
    labels.map((l) => (l === 'pos' ? 1 : 0)),
  );
  await assert.rejects(
    evaluateTextClassifier(c, ['fine', 'dull'], ['pos', 'meh'], { source: 'x.csv', rows: [2, 3] }),
    /x\.csv: line 3: label "meh" is not one of the classifier's classes \(neg, pos\)/,
  );
});

test('graft eval errors: unknown label, empty text, missing or misplaced text flags', {
  skip: skip || needs('models/coral/mobilenet_v2_1.0_224_quant.tflite'),
}, async () => {
  await trainOnce();
  const unknown = join(dir, 'unknown.csv');
  writeFileSync(unknown, 'review,sentiment\na wonderful film,pos\nit was fine,neutral\n');
  const u = await graftFails([
    'eval',
    '--model',
    clf,
    '--data',
    unknown,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
  ]);
  assert.match(u.stderr, /unknown\.csv: line 3: label "neutral" is not one of the classifier's classes \(neg, pos\)/);
  const empty = join(dir, 'empty.csv');
  writeFileSync(empty, 'review,sentiment\na wonderful film,pos\n"  ",neg\n');
  const em = await graftFails([
    'eval',
    '--model',
    clf,
    '--data',
    empty,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
  ]);
  assert.match(em.stderr, /empty\.csv: line 3: empty text/);
  const noCol = await graftFails(['eval', '--model', clf, '--data', evalCsv]);
  assert.match(noCol.stderr, /is a text classifier: name the text column of .*eval\.csv with --text-column/);
  const badCol = await graftFails([
    'eval',
    '--model',
    clf,
    '--data',
    evalCsv,
    '--text-column',
    'review',
    '--label-column',
    'stars',
  ]);
  assert.match(badCol.stderr, /no label column "stars".*columns: sentiment, review/);
  const image = asset('models/coral/mobilenet_v2_1.0_224_quant.tflite');
  const img = await graftFails([
    'eval',
    '--model',
    image,
    '--data',
    evalCsv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
  ]);
  assert.match(
    img.stderr,
    /--text-column, --label-column apply to text classifiers, and .*mobilenet_v2_1\.0_224_quant\.tflite is not one/,
  );
  assert.ok(existsSync(join(clf, 'labels.json')));
});
