/**
 * Token attributions (gradient × input on the word embeddings) for a real text classifier: the
 * bert-mini encoder with a logistic head fitted on 120 real review snippets. The attributions sum to
 * the derivative of the class score along a scaling of all word embeddings (checked by finite
 * differences), sentiment words get the sign their meaning says, and `graft explain` on the folder
 * prints them and writes attributions.json and attributions.html.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asset, lazy, needs } from '../helpers/assets.js';
import { graft } from '../helpers/cli.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import { TextFeatureExtractor, fitTextHead, gemmFromLogistic } from '../../src/text/classify.js';
import { addClassifierHead, textFeeds } from '../../src/text/encoder.js';
import { loadTextClassifier, predictTexts, saveTextClassifier } from '../../src/text/saved.js';
import { explainTexts, wordEmbeddingValue, type TextExplanation } from '../../src/explain/text.js';
import { Session } from '../../src/runtime/session.js';

const BERT = 'models/text/bert-mini-debian';
const REVIEWS = 'datasets/reviews/polarity-en-pang&lee2.csv';
const skip = needs(BERT, REVIEWS);
const POS = 'a wonderful , moving and funny film';
const NEG = 'a dull , tedious and boring mess';

/** A saved classifier folder: mean-pooled bert-mini + a logistic head on the first 60 snippets of each class. */
const classifier = lazy(async () => {
  const model = loadModelFolderSync(asset(BERT));
  const r = readTextTable(asset(REVIEWS));
  const idx = [0, 1].flatMap((c) =>
    r.y
      .map((v, i) => (v === c ? i : -1))
      .filter((i) => i >= 0)
      .slice(0, 60),
  );
  const ex = new TextFeatureExtractor(model, 'mean');
  const F = await ex.extract(
    idx.map((i) => r.texts[i]!),
    { maxLength: 48, warn: () => {} },
  );
  await ex.release();
  const head = await fitTextHead(
    F,
    idx.map((i) => r.y[i]!),
  );
  const dir = join(mkdtempSync(join(tmpdir(), 'graft-explain-text-')), 'clf');
  saveTextClassifier(addClassifierHead(ex.graph, gemmFromLogistic(head), { probabilities: true }), dir, {
    from: asset(BERT),
    labels: ['negative', 'positive'],
    settings: { maxLength: 48, pooling: 'mean', mode: 'features' },
  });
  return dir;
});

const span = (e: TextExplanation, pieces: string[]): number => {
  const at = e.tokens.findIndex((_, i) => pieces.every((p, k) => e.tokens[i + k] === p));
  assert.ok(at >= 0, `${pieces.join(' ')} in ${e.tokens.join(' ')}`);
  return pieces.reduce((s, _, k) => s + e.scores[at + k]!, 0);
};

test("token attributions: tokens and probabilities as the classifier sees them; they sum to the score's derivative along the embeddings", {
  skip,
}, async () => {
  const dir = await classifier();
  const c = loadTextClassifier(dir);
  const [pos, neg] = await explainTexts(c, [POS, NEG], { class: 'positive' });
  for (const [e, text] of [
    [pos!, POS],
    [neg!, NEG],
  ] as const) {
    assert.equal(e.class.index, 1);
    assert.equal(e.class.label, 'positive');
    assert.deepEqual(e.tokens, ['[CLS]', ...c.tokenizer.tokenize(text), '[SEP]']);
    assert.deepEqual(
      e.special,
      e.tokens.map((t) => t === '[CLS]' || t === '[SEP]'),
    );
    assert.equal(e.scores.length, e.tokens.length);
  }
  // the same probabilities as prediction
  const pred = await predictTexts(c, [POS, NEG]);
  for (const [k, e] of [pos!, neg!].entries()) {
    const p = pred[k]!.top.find((t) => t.label === 'positive')!.probability;
    assert.ok(Math.abs(p - e.class.probability) < 1e-5, `${p} vs ${e.class.probability}`);
  }
  // Σ_t attribution = d/dα logit(α·E) at α = 1, E the word embeddings: a graph with E scaled by an input α
  const g = c.graph.clone();
  const E = wordEmbeddingValue(g);
  const gather = g.nodes.find((n) => n.outputs[0] === E)!;
  gather.outputs[0] = `${E}/unscaled`;
  g.inputs.push({ name: 'alpha', dtype: 'float32', shape: [] });
  g.nodes.push({
    name: 'test/scale',
    opType: 'Mul',
    domain: '',
    inputs: [`${E}/unscaled`, 'alpha'],
    outputs: [E],
    attrs: {},
  });
  g.outputs = [{ name: 'logits' }];
  const s = await Session.fromGraph(g);
  for (const e of [pos!, neg!]) {
    const feeds = textFeeds(c.graph, c.tokenizer.encodeBatch([e.text], { maxLength: 48 }));
    const logit = async (a: number) =>
      (await s.run({ ...feeds, alpha: { dtype: 'float32', dims: [], data: Float32Array.of(a) } }))['logits']!
        .data[1] as number;
    const h = 1e-2;
    const fd = ((await logit(1 + h)) - (await logit(1 - h))) / (2 * h);
    const sum = e.scores.reduce((a, v) => a + v, 0);
    const size = e.scores.reduce((a, v) => a + Math.abs(v), 0);
    assert.ok(
      Math.abs(fd - sum) < 2e-3 * size,
      `${e.text}: Σ attributions ${sum}, finite difference ${fd} (Σ|a| ${size})`,
    );
  }
  await s.release();
});

test("token attributions have the sign of the words' sentiment, and depend on the class explained", {
  skip,
}, async () => {
  const dir = await classifier();
  const [pos, neg] = await explainTexts(dir, [POS, NEG], { class: 'positive' });
  assert.ok(span(pos!, ['wonder', '##ful']) > 0, `'wonderful' for positive: ${span(pos!, ['wonder', '##ful'])}`);
  assert.ok(span(neg!, ['te', '##d', '##ious']) < 0, `'tedious' for positive: ${span(neg!, ['te', '##d', '##ious'])}`);
  const [posAsNeg] = await explainTexts(dir, [POS], { class: 0 });
  assert.equal(posAsNeg!.class.label, 'negative');
  assert.ok(
    span(posAsNeg!, ['wonder', '##ful']) < 0,
    `'wonderful' for negative: ${span(posAsNeg!, ['wonder', '##ful'])}`,
  );
  // without a class: each text's top class
  const [top] = await explainTexts(dir, [POS]);
  assert.equal(top!.class.index, top!.probabilities[0]! > top!.probabilities[1]! ? 0 : 1);
  await assert.rejects(explainTexts(dir, ['  ']), /input 1 of 1 is an empty text/);
  await assert.rejects(explainTexts(dir, [POS], { class: 'neutral' }), /no class named 'neutral'/);
});

test('graft explain on a text classifier folder prints token scores and writes attributions.json and .html', {
  skip,
}, async () => {
  const dir = await classifier();
  const out = mkdtempSync(join(tmpdir(), 'graft-explain-text-out-'));
  const { stdout } = await graft(['explain', dir, POS, '<b>bold</b> claims', '--out', out, '--class', 'positive']);
  assert.match(
    stdout,
    /^"a wonderful , moving and funny film": positive \(0\.\d{4}\)\n {2}\[CLS\] [+-]\d\.\d{4} {2}a [+-]/,
  );
  const saved = JSON.parse(readFileSync(join(out, 'attributions.json'), 'utf8')) as TextExplanation[];
  assert.equal(saved.length, 2);
  assert.equal(saved[0]!.tokens.length, saved[0]!.scores.length);
  const html = readFileSync(join(out, 'attributions.html'), 'utf8');
  assert.ok(html.includes('&lt;b&gt;bold&lt;/b&gt; claims') && !html.includes('<b>bold</b>'), 'texts are escaped');
  assert.equal((html.match(/class="t[ "]/g) ?? []).length, saved[0]!.tokens.length + saved[1]!.tokens.length);
});
