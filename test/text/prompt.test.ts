/**
 * Prompt-based classification with the pretrained masked-LM head (src/text/prompt.ts), on
 * bert-mini-debian and a few review snippets: the cloze encoding equals the tokenizer's encoding of
 * the filled-in template and truncates the text only; label-word and template errors; zero-shot
 * logits equal a direct computation from the encoder's hidden state and the safetensors head; a few
 * fine-tuning steps lower the training loss; a saved prompt classifier folder predicts what the
 * classifier it was saved from predicts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asset, assetPath, needs, unlessSkipped } from '../helpers/assets.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { Session } from '../../src/runtime/session.js';
import { textFeeds } from '../../src/text/encoder.js';
import { GraftError } from '../../src/util/errors.js';
import {
  parseTemplate,
  labelWordIds,
  encodePrompts,
  promptClassifier,
  promptLogits,
  predictPromptProba,
  finetunePrompt,
} from '../../src/text/prompt.js';
import { savePromptClassifier, loadTextClassifier, predictTexts, saveTextClassifier } from '../../src/text/saved.js';

const skip = needs('models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv');
const dir = assetPath('models/text/bert-mini-debian');
const model = unlessSkipped(skip, () => loadModelFolderSync(dir));
const tok = model?.tokenizer;
const table = unlessSkipped(skip, () => readTextTable(asset('datasets/reviews/polarity-en-pang&lee2.csv')));
const TEMPLATE = '{text} it was [MASK] .';
const quiet = () => {};

test('cloze encoding: the filled-in template through the tokenizer; only the text is truncated', { skip }, () => {
  const t = parseTemplate(tok, TEMPLATE);
  const texts = ['a moving , beautifully acted film', 'dull'];
  const enc = encodePrompts(tok, texts, t, { maxLength: 48 });
  const len = enc.inputIds.dims[1]!;
  texts.forEach((s, i) => {
    const want = tok.encode(TEMPLATE.replace('{text}', s));
    const row = Array.from((enc.inputIds.data as BigInt64Array).slice(i * len, i * len + want.length), Number);
    assert.deepEqual(row, want);
    assert.equal(enc.lengths[i], want.length);
  });
  const long = table.texts.find((s) => tok.encode(s).length > 40)!;
  const warnings: string[] = [];
  const cut = encodePrompts(tok, [long], t, {
    maxLength: 20,
    warn: (m) => warnings.push(m),
    source: 'r.csv',
    rows: [7],
  });
  const ids = Array.from(cut.inputIds.data as BigInt64Array, Number);
  assert.equal(ids.length, 20);
  assert.deepEqual(ids.slice(-5), tok.encode(' it was [MASK] .', { addSpecialTokens: false }).concat(tok.sepId!));
  assert.deepEqual(ids.slice(1, 10), tok.encode(long, { addSpecialTokens: false }).slice(0, 9));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /r\.csv.*row 7/);
  // a mask token inside the text becomes unknown, so the cloze holds exactly one mask (the template's)
  const inText = Array.from(
    encodePrompts(tok, ['a [MASK] in the text'], t, { maxLength: 48 }).inputIds.data as BigInt64Array,
    Number,
  );
  assert.ok(tok.encode('a [MASK] in the text').includes(tok.maskId!));
  assert.equal(inText.filter((v) => v === tok.maskId).length, 1);
  assert.ok(inText.includes(tok.unkId!));
});

test('label words must be single tokens; templates need {text} and one mask', { skip }, () => {
  assert.deepEqual(labelWordIds(tok, ['bad', 'good']), [tok.tokenToId('bad'), tok.tokenToId('good')]);
  assert.throws(
    () => labelWordIds(tok, ['terrible', 'good']),
    (e: unknown) => e instanceof GraftError && /"terrible".*"terr" "##ible"/.test(e.message),
  );
  assert.throws(() => labelWordIds(tok, ['good']), GraftError);
  assert.throws(() => labelWordIds(tok, ['good', 'good']), GraftError);
  // an uncased tokenizer lower-cases label words: 'Good' is the token 'good'
  assert.deepEqual(labelWordIds(tok, ['Bad', 'Good']), labelWordIds(tok, ['bad', 'good']));
  assert.throws(() => labelWordIds(tok, ['Good', 'good']), /label words "Good" and "good" are the same token "good"/);
  assert.throws(() => parseTemplate(tok, 'it was [MASK] .'), /\{text\}/);
  assert.throws(() => parseTemplate(tok, '{text} it was good .'), /mask token \[MASK\] exactly once \(found 0\)/);
  assert.throws(() => parseTemplate(tok, '{text} [MASK] [MASK]'), /found 2/);
  assert.throws(() => encodePrompts(tok, ['x'], parseTemplate(tok, TEMPLATE), { maxLength: 6 }), GraftError);
});

/** erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
function erf(x: number): number {
  const s = Math.sign(x),
    a = Math.abs(x),
    t = 1 / (1 + 0.3275911 * a);
  return (
    s *
    (1 -
      ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
        t *
        Math.exp(-a * a))
  );
}

/** The label-word logits computed directly: encoder → hidden state at the mask → dense → act → LayerNorm → · word rows + bias. */
async function directLogits(
  texts: string[],
  words: string[],
  maxLength: number,
  act: (v: number) => number,
): Promise<number[][]> {
  const enc = encodePrompts(tok, texts, parseTemplate(tok, TEMPLATE), { maxLength, warn: quiet });
  const s = await Session.fromGraph(model.graph, {}, 'encoder');
  const h = (await s.run(textFeeds(model.graph, enc)))['last_hidden_state']!;
  await s.release();
  const st = readSafetensors(`${dir}/model.safetensors`).tensors;
  const f = (k: string) => st.get(k)!.data as Float32Array;
  const W = f('cls.predictions.transform.dense.weight'),
    bd = f('cls.predictions.transform.dense.bias');
  const g = f('cls.predictions.transform.LayerNorm.weight'),
    be = f('cls.predictions.transform.LayerNorm.bias');
  const E = f('bert.embeddings.word_embeddings.weight'),
    bias = f('cls.predictions.bias');
  const [, T, H] = h.dims as [number, number, number];
  const hd = h.data as Float32Array,
    ids = enc.inputIds.data as BigInt64Array;
  return texts.map((_, i) => {
    const p = Array.from({ length: T }, (_, j) => j).find((j) => Number(ids[i * T + j]) === tok.maskId)!;
    const x = hd.subarray((i * T + p) * H, (i * T + p + 1) * H);
    const d = Array.from({ length: H }, (_, o) => {
      let v = bd[o]!;
      for (let k = 0; k < H; k++) v += W[o * H + k]! * x[k]!;
      return act(v);
    });
    const mu = d.reduce((a, b) => a + b, 0) / H;
    const varc = d.reduce((a, b) => a + (b - mu) ** 2, 0) / H;
    const y = d.map((v, o) => ((v - mu) / Math.sqrt(varc + 1e-12)) * g[o]! + be[o]!);
    return words.map((w) => {
      const id = tok.tokenToId(w)!;
      let want = bias[id]!;
      for (let o = 0; o < H; o++) want += E[id * H + o]! * y[o]!;
      return want;
    });
  });
}

const close = (got: ArrayLike<number>[], want: number[][], what: string) =>
  want.forEach((r, i) =>
    r.forEach((v, k) =>
      assert.ok(
        Math.abs(got[i]![k]! - v) < 1e-3 * Math.max(1, Math.abs(v)),
        `${what}: text ${i}, class ${k}: ${got[i]![k]} vs ${v}`,
      ),
    ),
  );

test('zero-shot logits equal the MLM head applied to the encoder state at [MASK]', { skip }, async () => {
  const words = ['bad', 'good', 'great'];
  const c = promptClassifier(model, { template: TEMPLATE, labelWords: words });
  const texts = table.texts.slice(0, 5);
  const got = await promptLogits(c, tok, texts, { maxLength: 48, warn: quiet });
  close(got, await directLogits(texts, words, 48, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), 'gelu');
  const pr = await predictPromptProba(c, tok, texts.slice(0, 2), { maxLength: 48, warn: quiet });
  pr.forEach((r) => assert.ok(Math.abs(r.reduce((a, b) => a + b, 0) - 1) < 1e-5));
});

test('the MLM head applies the activation of config.json hidden_act; an unknown one is refused', { skip }, async () => {
  const words = ['bad', 'good'];
  const texts = table.texts.slice(5, 8);
  const acts: [string, (v: number) => number][] = [
    ['relu', (v) => Math.max(v, 0)],
    ['gelu_new', (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))],
  ];
  for (const [name, act] of acts) {
    const c = promptClassifier(
      { ...model, config: { ...model.config, hidden_act: name } },
      { template: TEMPLATE, labelWords: words },
    );
    close(
      await promptLogits(c, tok, texts, { maxLength: 48, warn: quiet }),
      await directLogits(texts, words, 48, act),
      name,
    );
  }
  assert.throws(
    () =>
      promptClassifier(
        { ...model, config: { ...model.config, hidden_act: 'mish' } },
        { template: TEMPLATE, labelWords: words },
      ),
    (e: unknown) => e instanceof GraftError && /hidden_act "mish"/.test(e.message),
  );
});

test('a few fine-tuning steps lower the loss on the label words', { skip }, async () => {
  const idx = [
    ...table.y
      .map((v, i) => (v === 0 ? i : -1))
      .filter((i) => i >= 0)
      .slice(0, 8),
    ...table.y
      .map((v, i) => (v === 1 ? i : -1))
      .filter((i) => i >= 0)
      .slice(0, 8),
  ];
  const texts = idx.map((i) => table.texts[i]!),
    y = idx.map((i) => table.y[i]!);
  const r = await finetunePrompt(model, texts, y, {
    template: TEMPLATE,
    labelWords: ['bad', 'good'],
    lr: 1e-4,
    epochs: 12,
    minSteps: 0,
    batchSize: 8,
    warmup: 0,
    maxLength: 32,
    warn: quiet,
  });
  assert.equal(r.steps, 24);
  const first = (r.losses[0]! + r.losses[1]!) / 2,
    last = (r.losses.at(-1)! + r.losses.at(-2)!) / 2;
  assert.ok(last < 0.7 * first, `loss ${first} → ${last}`);
  // the tuned graph classifies its own training texts better than chance
  const pred = (await predictPromptProba(r, tok, texts, { maxLength: 32, warn: quiet })).map((p) =>
    p[1]! > p[0]! ? 1 : 0,
  );
  assert.ok(pred.filter((p, i) => p === y[i]).length >= 12);
  await assert.rejects(
    () =>
      finetunePrompt(
        model,
        texts,
        y.map(() => 2),
        { labelWords: ['bad', 'good'] },
      ),
    /label 2 has no label word/,
  );
  // no training texts: an error, not an endless loop of empty epochs
  await assert.rejects(
    () => finetunePrompt(model, [], [], { labelWords: ['bad', 'good'] }),
    (e: unknown) => e instanceof GraftError && /no training texts/.test(e.message),
  );
});

test('a saved prompt classifier loads and predicts the probabilities of predictPromptProba', { skip }, async () => {
  const idx = [0, 1].flatMap((c) =>
    table.y
      .map((v, i) => (v === c ? i : -1))
      .filter((i) => i >= 0)
      .slice(0, 8),
  );
  const texts = idx.map((i) => table.texts[i]!),
    y = idx.map((i) => table.y[i]!);
  const template = '{text} . all in all , it was [MASK] .';
  const tuned = await finetunePrompt(model, texts, y, {
    template,
    labelWords: ['bad', 'good'],
    lr: 1e-4,
    epochs: 2,
    minSteps: 0,
    batchSize: 8,
    maxLength: 32,
    warn: quiet,
  });
  const out = join(mkdtempSync(join(tmpdir(), 'graft-prompt-')), 'clf');
  savePromptClassifier(tuned, out, { from: dir, labels: ['neg', 'pos'], maxLength: 32 });
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), ['neg', 'pos']);
  const loaded = loadTextClassifier(out);
  assert.equal(loaded.settings.mode, 'prompt');
  assert.equal(loaded.settings.template, template);
  assert.deepEqual(loaded.settings.labelWords, ['bad', 'good']);
  assert.deepEqual(loaded.prompt?.labelIds, tuned.labelIds);
  const probe = [...table.texts.slice(-3), 'a wonderful , moving film'];
  const want = await predictPromptProba(tuned, tok, probe, { maxLength: 32, warn: quiet });
  const got = await predictTexts(loaded, probe);
  got.forEach((r, i) => {
    assert.equal(r.text, probe[i]);
    for (const t of r.top)
      assert.ok(
        Math.abs(t.probability - want[i]![t.index]!) < 1e-5,
        `text ${i} class ${t.index}: ${t.probability} vs ${want[i]![t.index]}`,
      );
    assert.equal(r.top[0]!.label, ['neg', 'pos'][want[i]![1]! > want[i]![0]! ? 1 : 0]);
  });
  // the folder holds the tuned weights, not the pretrained ones
  const zero = await predictPromptProba(
    promptClassifier(model, { template, labelWords: ['bad', 'good'] }),
    tok,
    probe,
    { maxLength: 32, warn: quiet },
  );
  assert.ok(
    zero.some((p, i) => Math.abs(p[0]! - want[i]![0]!) > 1e-3),
    'tuned and zero-shot probabilities should differ',
  );
  // a prompt folder must record one label word per class
  assert.throws(
    () =>
      saveTextClassifier(tuned.graph, join(out, '..', 'bad'), {
        from: dir,
        labels: ['a', 'b', 'c'],
        settings: { maxLength: 32, mode: 'prompt', template, labelWords: ['bad', 'good'] },
      }),
    /2 label words \(bad, good\) for 3 classes/,
  );
});
