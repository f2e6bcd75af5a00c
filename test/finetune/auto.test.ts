/**
 * `--mode auto` (src/finetune/auto.ts, src/cli/train-auto.ts): the fold rule keeps the simpler
 * method unless another wins by more than the folds' noise; the folds are stratified; the text search
 * runs and reports its candidates; a TF-IDF classifier over token ids exports to ONNX and predicts
 * as the TypeScript vectorizer does, saved as a text classifier folder; and `graft train` with no
 * --mode runs auto on an image folder, reports every candidate and saves a folder predict reads.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath, needs } from '../helpers/assets.js';
import { graft, graftFails } from '../helpers/cli.js';
import {
  chooseByFolds,
  switchBar,
  stratifiedFolds,
  repeatedFolds,
  defaultRepeats,
  pairedDifference,
  foldCount,
  trainTextAuto,
  type AutoCandidate,
} from '../../src/finetune/auto.js';
import { trainTfidfClassifier, tfidfClassifierGraph, TfidfVectorizer } from '../../src/text/tfidf.js';
import { predictTextProba } from '../../src/text/classify.js';
import { saveTextClassifier, loadTextClassifier, textClassifierProba } from '../../src/text/saved.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { argmax } from '../../src/util/vectors.js';

const BERT = assetPath('models/text/bert-mini-debian');
const SNIPPETS = assetPath('datasets/reviews/polarity-en-pang&lee2.csv');
const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FM = assetPath('datasets/fashion-mnist');
const tmp = mkdtempSync(join(tmpdir(), 'graft-auto-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const cand = (method: string, folds: number[]): AutoCandidate => ({
  method,
  description: method,
  folds,
  mean: folds.reduce((a, b) => a + b, 0) / folds.length,
  seconds: 0,
});

test("chooseByFolds keeps the simpler method within the folds' noise and switches on a clear win", () => {
  // a challenger ahead on average but with noisy paired differences stays out
  const noisy = chooseByFolds([
    cand('features', [0.7, 0.6, 0.8, 0.7, 0.6]),
    cand('finetune', [0.9, 0.5, 0.7, 0.8, 0.65]),
  ]);
  assert.equal(noisy.chosen, 'features');
  assert.ok(noisy.comparisons[0]!.meanDiff > 0 && !noisy.comparisons[0]!.switched);
  assert.match(noisy.reason, /kept features/);
  // a consistent win switches
  const clear = chooseByFolds([
    cand('features', [0.7, 0.6, 0.8, 0.7, 0.6]),
    cand('finetune', [0.8, 0.7, 0.85, 0.8, 0.7]),
  ]);
  assert.equal(clear.chosen, 'finetune');
  assert.match(clear.reason, /chose finetune/);
  // later challengers compare against the new incumbent; a skipped one is ignored
  const three = chooseByFolds([
    cand('features', [0.5, 0.5, 0.5]),
    cand('tfidf', [0.7, 0.72, 0.69]),
    { method: 'setfit', description: 'setfit', seconds: 0, skipped: 'budget' },
    cand('finetune', [0.71, 0.7, 0.7]),
  ]);
  assert.equal(three.chosen, 'tfidf');
  assert.deepEqual(
    three.comparisons.map((c) => c.incumbent),
    ['features', 'tfidf'],
  );
  // equal scores: the simplest stays
  assert.equal(chooseByFolds([cand('features', [0.6, 0.6]), cand('finetune', [0.6, 0.6])]).chosen, 'features');
});

test('chooseByFolds holds several challengers to a higher bar, so the best of three noisy ones does not displace the simplest', () => {
  // one standard error for one challenger; Bonferroni over m challengers at the same one-sided chance
  assert.equal(switchBar(1), 1);
  assert.ok(Math.abs(switchBar(2) - 1.4096) < 1e-3, String(switchBar(2)));
  assert.ok(Math.abs(switchBar(3) - 1.6175) < 1e-3, String(switchBar(3)));
  assert.ok(switchBar(4) > switchBar(3));
  // a challenger 1.26 standard errors ahead (paired fold differences 0.3, −0.1, 0.25, −0.1, 0.2: mean
  // 0.11, standard error 0.087): it switches when it is the only challenger, not as one of three
  const base = cand('features', [0.5, 0.5, 0.5, 0.5, 0.5]);
  const ahead = cand('tfidf', [0.8, 0.4, 0.75, 0.4, 0.7]);
  const alone = chooseByFolds([base, ahead]);
  const d = alone.comparisons[0]!;
  assert.ok(d.meanDiff > d.standardError && d.meanDiff < 1.4 * d.standardError, `${d.meanDiff} ± ${d.standardError}`);
  assert.equal(alone.chosen, 'tfidf');
  assert.equal(d.bar, 1);
  const behind = (m: string) => cand(m, [0.45, 0.5, 0.45, 0.5, 0.45]);
  const three = chooseByFolds([base, ahead, behind('finetune'), behind('setfit')]);
  assert.equal(three.chosen, 'features');
  assert.ok(three.comparisons.every((c) => Math.abs(c.bar - switchBar(3)) < 1e-12 && !c.switched));
  assert.match(three.reason, /1\.62 standard errors .*the bar for 3 challengers/);
});

/** Per-example correctness (R repeats × n examples) from a pattern of 1/0 strings, one per repeat. */
const rows = (...rs: string[]) => rs.map((r) => Uint8Array.from(r, (ch) => (ch === '1' ? 1 : 0)));
/** n examples: `both` right for both, `only` right for the challenger only, `lost` right for the incumbent only. */
function pair(both: number, only: number, lost: number, neither: number): [string, string] {
  return [
    '1'.repeat(both + only) + '0'.repeat(lost + neither),
    '1'.repeat(both) + '0'.repeat(only) + '1'.repeat(lost) + '0'.repeat(neither),
  ];
}

test('chooseByFolds with per-example held-out correctness: the noise is the standard error of the paired example differences', () => {
  // +0.1 from 10 examples only the challenger gets right, none lost: consistent, switches
  const [c1, i1] = pair(60, 10, 0, 30);
  const clear = chooseByFolds(
    [cand('features', [0.6]), cand('finetune', [0.7])],
    new Map([
      ['features', rows(i1)],
      ['finetune', rows(c1)],
    ]),
  );
  const cmp = clear.comparisons[0]!;
  assert.equal(cmp.statistic, 'examples');
  assert.equal(cmp.pairs, 100);
  assert.ok(Math.abs(cmp.meanDiff - 0.1) < 1e-12);
  // sd of 10 ones and 90 zeros, over √100
  assert.ok(Math.abs(cmp.standardError - Math.sqrt((0.1 * 0.9 * 100) / 99) / 10) < 1e-12);
  assert.equal(clear.chosen, 'finetune');
  assert.match(clear.reason, /over 100 held-out examples/);
  // the same +0.1 on 40 examples from 14 won and 10 lost: within the noise, the simpler one stays
  const [c2, i2] = pair(10, 14, 10, 6);
  const noisy = chooseByFolds(
    [cand('features', [0.5]), cand('finetune', [0.6])],
    new Map([
      ['features', rows(i2)],
      ['finetune', rows(c2)],
    ]),
  );
  assert.ok(Math.abs(noisy.comparisons[0]!.meanDiff - 0.1) < 1e-12);
  assert.ok(noisy.comparisons[0]!.standardError > 0.1);
  assert.equal(noisy.chosen, 'features');
  // repeats are averaged per example before the spread is taken: a win that flips between repeats cancels
  const flip = pairedDifference(
    cand('b', [0, 0]),
    cand('a', [0, 0]),
    new Map([
      ['a', rows('0101', '1010')],
      ['b', rows('1010', '0101')],
    ]),
  );
  assert.equal(flip.meanDiff, 0);
  assert.equal(flip.standardError, 0);
  assert.equal(flip.repeats, 2);
  const steady = pairedDifference(
    cand('b', [0, 0]),
    cand('a', [0, 0]),
    new Map([
      ['a', rows('0000', '0000')],
      ['b', rows('1100', '1100')],
    ]),
  );
  assert.equal(steady.meanDiff, 0.5);
  assert.ok(Math.abs(steady.standardError - Math.sqrt(1 / 3) / 2) < 1e-12);
  // only the repeats both scored are compared (the challenger's budget ran out after one)
  const short = pairedDifference(
    cand('b', [1, 1]),
    cand('a', [0, 0, 1, 1]),
    new Map([
      ['a', rows('0000', '1111')],
      ['b', rows('1111')],
    ]),
  );
  assert.equal(short.repeats, 1);
  assert.equal(short.meanDiff, 1);
  // without per-example data: the paired fold accuracies
  const folds = pairedDifference(cand('b', [0.7, 0.8, 0.9]), cand('a', [0.6, 0.6, 0.6]));
  assert.equal(folds.statistic, 'folds');
  assert.equal(folds.pairs, 3);
  assert.ok(Math.abs(folds.meanDiff - 0.2) < 1e-12 && Math.abs(folds.standardError - 0.1 / Math.sqrt(3)) < 1e-12);
});

test('repeatedFolds: repeat 0 is the plain stratified folds, later repeats reshuffle and stay stratified; defaultRepeats', () => {
  const y = [...Array(12).fill(0), ...Array(9).fill(1)];
  const f = repeatedFolds(y, 3, 3, 5);
  assert.equal(f.length, 3);
  assert.deepEqual(f[0], stratifiedFolds(y, 3, 5));
  assert.notDeepEqual(f[1], f[0]);
  assert.notDeepEqual(f[2], f[1]);
  for (const r of f)
    for (const c of [0, 1]) {
      const per = [0, 1, 2].map((k) => r.filter((v, i) => v === k && y[i] === c).length);
      assert.ok(Math.max(...per) - Math.min(...per) <= 1, `class ${c}: ${per}`);
    }
  assert.equal(defaultRepeats(16), 3);
  assert.equal(defaultRepeats(200), 3);
  assert.equal(defaultRepeats(201), 1);
});

test('stratifiedFolds spreads every class over the folds; foldCount follows the smallest class', () => {
  const y = [...Array(10).fill(0), ...Array(7).fill(1), ...Array(4).fill(2)];
  const f = stratifiedFolds(y, 4, 3);
  for (const c of [0, 1, 2]) {
    const per = [0, 1, 2, 3].map((k) => f.filter((v, i) => v === k && y[i] === c).length);
    assert.ok(Math.max(...per) - Math.min(...per) <= 1, `class ${c}: ${per}`);
  }
  assert.equal(foldCount(y), 4);
  assert.equal(foldCount(y, 3), 3);
  assert.equal(foldCount([0, 0, 1]), 0);
});

test('a TF-IDF classifier over token ids: the ONNX graph reproduces the vectorizer + head, saved and reloaded as a text classifier', {
  skip: needs(BERT, SNIPPETS),
}, async () => {
  const m = loadModelFolderSync(BERT);
  const t = readTextTable(SNIPPETS);
  const idx = [0, 1].flatMap((c) =>
    t.y
      .map((v, i) => (v === c ? i : -1))
      .filter((i) => i >= 0)
      .slice(0, 40),
  );
  const texts = idx.map((i) => t.texts[i]!),
    y = idx.map((i) => t.y[i]!);
  // train on 30 + 30, hold out the last 10 of each class
  const trainAt = [...Array(30).keys(), ...Array.from({ length: 30 }, (_, k) => 40 + k)];
  const heldAt = [...Array.from({ length: 10 }, (_, k) => 30 + k), ...Array.from({ length: 10 }, (_, k) => 70 + k)];
  const c = await trainTfidfClassifier(
    trainAt.map((i) => texts[i]!),
    trainAt.map((i) => y[i]!),
    { tokenizer: m.tokenizer, maxLength: 48, seed: 0 },
  );
  const held = heldAt.map((i) => texts[i]!);
  const g = tfidfClassifierGraph(c);
  assert.ok(g.nodes.some((n) => n.opType === 'TfIdfVectorizer'));
  const P = await predictTextProba(g, m.tokenizer, held, { maxLength: 48, warn: () => {} });
  const want = c.head.predictProba(c.vectorizer.transform(held));
  for (let i = 0; i < held.length; i++)
    for (let k = 0; k < 2; k++)
      assert.ok(Math.abs(P[i]![k]! - want[i]![k]!) < 1e-4, `text ${i} class ${k}: ${P[i]![k]} vs ${want[i]![k]}`);
  assert.deepEqual(P.map(argmax), c.predict(held));
  const dir = join(tmp, 'tfidf');
  saveTextClassifier(g, dir, { from: BERT, labels: t.classes, settings: { maxLength: 48, mode: 'tfidf' } });
  const loaded = loadTextClassifier(dir);
  assert.equal(loaded.settings.mode, 'tfidf');
  const P2 = await textClassifierProba(loaded, held, { warn: () => {} });
  assert.ok(P2.every((p, i) => Math.abs(p[0]! - P[i]![0]!) < 1e-6));
  // a word-level vectorizer has no ONNX form
  const words = new TfidfVectorizer().fit(texts);
  assert.throws(() => tfidfClassifierGraph({ vectorizer: words, head: c.head, predict: () => [] }), /over token ids/);
});

test('trainTextAuto scores every candidate on folds of the training texts and returns the chosen classifier', {
  skip: needs(BERT, SNIPPETS),
}, async () => {
  const m = loadModelFolderSync(BERT);
  const t = readTextTable(SNIPPETS);
  const idx = [0, 1].flatMap((c) =>
    t.y
      .map((v, i) => (v === c ? i : -1))
      .filter((i) => i >= 0)
      .slice(0, 12),
  );
  const seen: string[] = [];
  const r = await trainTextAuto(
    m,
    idx.map((i) => t.texts[i]!),
    idx.map((i) => t.y[i]!),
    {
      classes: 2,
      maxLength: 32,
      folds: 3,
      exclude: ['finetune', 'setfit'],
      onCandidate: (c) => seen.push(c.method),
    },
  );
  assert.deepEqual(seen, ['features', 'tfidf', 'finetune', 'setfit']);
  const s = r.selection;
  assert.equal(s.folds, 3);
  // 24 training texts: 3 repeats of the 3 folds by default
  assert.equal(s.repeats, 3);
  assert.equal(s.trainExamples, 24);
  assert.equal(s.candidates[0]!.folds!.length, 9);
  assert.equal(s.candidates[0]!.repeats, 3);
  assert.equal(s.candidates[2]!.skipped, 'left out by the caller');
  assert.ok(['features', 'tfidf'].includes(s.chosen));
  assert.equal(r.mode, s.chosen);
  assert.equal(s.comparisons.length, 1);
  assert.equal(s.comparisons[0]!.statistic, 'examples');
  assert.equal(s.comparisons[0]!.pairs, 24);
  assert.equal(s.comparisons[0]!.repeats, 3);
  const P = await predictTextProba(r.classifier, m.tokenizer, ['a wonderful film'], { maxLength: 32 });
  assert.ok(Math.abs(P[0]![0]! + P[0]![1]! - 1) < 1e-5);
});

/** 3 Fashion-MNIST classes × 8 test images as PNG files in class folders. */
async function imageFolder(): Promise<string> {
  const root = join(tmp, 'images');
  const d = readIdxDataset(join(FM, 't10k-images-idx3-ubyte.gz'), join(FM, 't10k-labels-idx1-ubyte.gz'));
  const names: Record<number, string> = { 0: 'tshirt', 1: 'trouser', 7: 'sneaker' };
  const count: Record<number, number> = {};
  for (let i = 0; i < d.labels.length; i++) {
    const name = names[d.labels[i]!];
    if (!name || (count[d.labels[i]!] ?? 0) >= 8) continue;
    count[d.labels[i]!] = (count[d.labels[i]!] ?? 0) + 1;
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

test("graft train with no --mode runs auto on an image folder: every candidate's fold scores, the choice and why, a folder predict reads", {
  skip: needs(MODEL, FM),
}, async () => {
  const data = await imageFolder();
  const out = join(tmp, 'auto-clf');
  const r = JSON.parse(
    (
      await graft([
        'train',
        '--model',
        MODEL,
        '--data',
        data,
        '--labels-per-class',
        '5',
        '--folds',
        '2',
        '--epochs',
        '1',
        '--out',
        out,
        '--json',
      ])
    ).stdout,
  );
  assert.equal(r.mode, 'auto');
  assert.deepEqual(
    r.auto.candidates.map((c: AutoCandidate) => c.method),
    ['features', 'finetune'],
  );
  // 15 training images: 3 repeats of the 2 folds by default
  assert.equal(r.auto.repeats, 3);
  for (const c of r.auto.candidates) assert.equal(c.folds.length, 6);
  assert.equal(r.auto.comparisons[0].pairs, 15);
  assert.equal(r.auto.trainExamples, 15);
  assert.ok(['features', 'finetune'].includes(r.chosen));
  assert.equal(r.chosen, r.auto.chosen);
  assert.equal(typeof r.auto.reason, 'string');
  assert.equal(r.test.n, 6);
  const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  assert.equal(rep.auto.chosen, r.chosen);
  assert.ok(existsSync(join(out, 'report.html')));
  const p = await graft([
    'predict',
    '--model',
    out,
    '--json',
    join(data, 'trouser', readdirFirst(join(data, 'trouser'))),
  ]);
  assert.ok(p.stdout.includes('trouser'));
  // --budget 0.0001: the frozen head always runs; the fine-tuned candidate is skipped and says why
  const b = JSON.parse(
    (
      await graft([
        'train',
        '--model',
        MODEL,
        '--data',
        data,
        '--labels-per-class',
        '5',
        '--folds',
        '2',
        '--budget',
        '0.0001',
        '--repeats',
        '4',
        '--out',
        join(tmp, 'b'),
        '--json',
      ])
    ).stdout,
  );
  assert.match(b.auto.candidates[1].skipped, /budget of 0.0001 min spent/);
  // 4 repeats asked for; the budget let the frozen head finish only its first
  assert.equal(b.auto.repeats, 4);
  assert.equal(b.auto.candidates[0].repeats, 1);
  assert.equal(b.auto.candidates[0].folds.length, 2);
  assert.equal(b.chosen, 'features');
  assert.match(
    (await graftFails(['train', 'auto', '--model', MODEL, '--data', data, '--repeats', '0'])).stderr,
    /--repeats/,
  );
  // auto's flags with another mode are refused
  const e = await graftFails(['train', '--mode', 'features', '--model', MODEL, '--data', data, '--budget', '2']);
  assert.match(e.stderr, /graft train features has no --budget option; --budget belongs to graft train auto/);
});

function readdirFirst(dir: string): string {
  return readdirSync(dir)[0]!;
}
