/**
 * Text classification mechanics on the real bert-mini encoder and real review snippets (small
 * subsets, short max length): pooling, the feature cache, the folded logistic head, fine-tuning modes
 * (full, top layers, LoRA, top layers on cached lower-layer states), the SetFit pair sampler and loss, TF-IDF.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asset, needs, unlessSkipped } from '../helpers/assets.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import {
  TextFeatureExtractor,
  fitTextHead,
  finetuneText,
  gemmFromLogistic,
  predictTextProba,
} from '../../src/text/classify.js';
import { addClassifierHead, textFeeds } from '../../src/text/encoder.js';
import { pairBatches, cosinePairLoss, trainSetFit } from '../../src/text/setfit.js';
import { TfidfVectorizer, trainTfidfClassifier } from '../../src/text/tfidf.js';
import { TopLayerSplit, finetuneTopCached } from '../../src/text/top-layers.js';
import { openCache } from '../../src/features/cache.js';
import { Session } from '../../src/runtime/session.js';
import { Trainer } from '../../src/train/trainer.js';
import { Rng } from '../../src/util/random.js';

const skip = needs('models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv');
const model = unlessSkipped(skip, () => loadModelFolderSync(asset('models/text/bert-mini-debian')));
const reviews = unlessSkipped(skip, () => readTextTable(asset('datasets/reviews/polarity-en-pang&lee2.csv')));
/** A fixed balanced subset: the first n of each class in a seeded shuffle. */
function subset(n: number, seed = 0): { texts: string[]; y: number[] } {
  const rng = new Rng(seed);
  const idx = [0, 1].flatMap((c) =>
    rng.shuffle(reviews.y.map((v, i) => (v === c ? i : -1)).filter((i) => i >= 0)).slice(0, n),
  );
  return { texts: idx.map((i) => reviews.texts[i]!), y: idx.map((i) => reviews.y[i]!) };
}
const quiet = () => {};

test('mean pooling ignores padding; CLS pooling is position 0', { skip }, async () => {
  const texts = ['a fine film', 'an utterly tedious , overlong and joyless exercise in style over substance'];
  const ex = new TextFeatureExtractor(model, 'mean');
  const [alone] = await ex.extract([texts[0]!], { maxLength: 32 });
  const both = await ex.extract(texts, { maxLength: 32, batchSize: 2 });
  for (let j = 0; j < alone!.length; j++) assert.ok(Math.abs(alone![j]! - both[0]![j]!) < 1e-4, `dim ${j}`);
  await ex.release();
  // Manual mean of last_hidden_state over the real tokens equals the pooled vector.
  const s = await Session.fromGraph(model.graph);
  const enc = model.tokenizer.encodeBatch(texts, { maxLength: 32 });
  const h = (await s.run(textFeeds(model.graph, enc)))['last_hidden_state']!;
  const [, T, H] = h.dims as [number, number, number];
  const d = h.data as Float32Array;
  for (const j of [0, 17, 255]) {
    let sum = 0;
    for (let t = 0; t < enc.lengths[1]!; t++) sum += d[(1 * T + t) * H + j]!;
    assert.ok(Math.abs(sum / enc.lengths[1]! - both[1]![j]!) < 1e-4);
  }
  const cls = new TextFeatureExtractor(model, 'cls');
  const [c] = await cls.extract([texts[1]!], { maxLength: 32 });
  for (const j of [0, 17, 255]) assert.ok(Math.abs(c![j]! - d[(1 * T + 0) * H + j]!) < 1e-4);
  await cls.release();
  await s.release();
});

test('features are cached by model, pooling, max length and text', { skip }, async () => {
  const cache = openCache(mkdtempSync(join(tmpdir(), 'graft-tcache-')));
  const { texts } = subset(10);
  const ex = new TextFeatureExtractor(model, 'mean');
  const seen: number[] = [];
  const a = await ex.extract(texts, { maxLength: 32, cache });
  const b = await ex.extract(texts, { maxLength: 32, cache, onProgress: (p) => seen.push(p.cached ?? 0) });
  assert.equal(seen[0], 20, 'second pass: all from the cache');
  for (let j = 0; j < 256; j++) assert.ok(Math.abs(a[3]![j]! - b[3]![j]!) < 2e-3 * Math.max(1, Math.abs(a[3]![j]!)));
  const seen2: number[] = [];
  await ex.extract(texts.slice(0, 4), {
    maxLength: 16,
    cache,
    warn: quiet,
    onProgress: (p) => seen2.push(p.cached ?? 0),
  });
  assert.equal(seen2[0], 0, 'another max length is another key');
  await ex.release();
});

test('the logistic head folded into a Gemm gives the same probabilities in the exported graph', { skip }, async () => {
  const { texts, y } = subset(20);
  const ex = new TextFeatureExtractor(model, 'mean');
  const F = await ex.extract(texts, { maxLength: 32, warn: quiet });
  const head = await fitTextHead(F, y);
  const g = addClassifierHead(ex.graph, gemmFromLogistic(head), { probabilities: true });
  const P = await predictTextProba(g, model.tokenizer, texts.slice(0, 6), { maxLength: 32, warn: quiet });
  const Q = head.predictProba(F.slice(0, 6));
  P.forEach((p, i) => assert.ok(Math.abs(p[1]! - Q[i]![1]!) < 1e-3, `row ${i}: ${p[1]} vs ${Q[i]![1]}`));
  await ex.release();
});

test('fine-tuning modes: full and LoRA lower the training loss; top layers leave the rest frozen', {
  skip,
}, async () => {
  const { texts, y } = subset(16, 1);
  const base = { classes: 2, maxLength: 32, epochs: 4, batchSize: 16, warmup: 0, seed: 0, warn: quiet };
  const full = await finetuneText(model, texts, y, { ...base, mode: 'full', lr: 2e-4 });
  assert.ok(full.losses.at(-1)! < full.losses[0]! - 0.05, `full: ${full.losses[0]} → ${full.losses.at(-1)}`);
  const top = await finetuneText(model, texts, y, { ...base, mode: 'top', lr: 2e-4, epochs: 1 });
  const same = (k: string) => {
    const a = model.graph.initializers.get(k)!.data as Float32Array;
    const b = top.graph.initializers.get(k)!.data as Float32Array;
    return a.every((v, i) => v === b[i]);
  };
  assert.ok(same('encoder.layer.0.attention.self.query.weight'), 'layer 0 frozen');
  assert.ok(!same('encoder.layer.3.output.dense.weight'), 'last layer trained');
  const lora = await finetuneText(model, texts, y, { ...base, mode: 'lora', loraRank: 4, lr: 1e-3 });
  assert.ok(lora.losses.at(-1)! < lora.losses[0]! - 0.05, `lora: ${lora.losses[0]} → ${lora.losses.at(-1)}`);
  assert.ok(!lora.graph.nodes.some((n) => /lora/i.test(n.name)), 'LoRA merged into plain weights');
  assert.equal(lora.graph.inputs.length, model.graph.inputs.length);
});

test('SetFit: the pair sampler streams O(batch) pairs; the cosine loss matches its definition', { skip }, async () => {
  // 100,000 labels: n² pairs would be 10¹⁰; each batch touches at most 2·pairs texts.
  const y = Array.from({ length: 100_000 }, (_, i) => i % 3);
  let n = 0;
  for (const b of pairBatches(y, { pairs: 16, steps: 5, seed: 1 })) {
    n++;
    assert.ok(b.texts.length <= 32);
    b.a.forEach((a, k) => {
      const same = y[b.texts[a]!] === y[b.texts[b.b[k]!]!];
      assert.equal(b.sim[k], same ? 1 : 0);
    });
    assert.equal(b.sim.filter((s) => s === 1).length, 8);
  }
  assert.equal(n, 5);
  // The loss on a tiny model x → Gemm → pooled-like rows equals mean (cos − target)².
  const { Graph } = await import('../../src/graph/graph.js');
  const g = new Graph();
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 3] });
  g.initializers.set('W', {
    dtype: 'float32',
    dims: [3, 3],
    data: Float32Array.from([1, 0.5, 0, 0, 1, 0.2, 0.3, 0, 1]),
  });
  g.nodes.push({ name: 'fc', opType: 'Gemm', domain: '', inputs: ['x', 'W'], outputs: ['y'], attrs: {} });
  g.outputs = [{ name: 'y' }];
  const tr = await Trainer.create(g, {
    loss: cosinePairLoss(),
    optimizer: { kind: 'sgd', momentum: 0, weightDecay: 0 },
    lr: 0,
  });
  const x = Float32Array.from([1, 2, 0, -1, 0.5, 3, 2, 2, 2]);
  const r = await tr.step({
    x: { dtype: 'float32', dims: [3, 3], data: x },
    pair_a: { dtype: 'int64', dims: [2], data: BigInt64Array.from([0n, 1n]) },
    pair_b: { dtype: 'int64', dims: [2], data: BigInt64Array.from([2n, 2n]) },
    pair_sim: { dtype: 'float32', dims: [2], data: Float32Array.from([1, 0]) },
  });
  const W = [1, 0.5, 0, 0, 1, 0.2, 0.3, 0, 1];
  const row = (i: number) => [0, 1, 2].map((j) => [0, 1, 2].reduce((s, k) => s + x[i * 3 + k]! * W[k * 3 + j]!, 0));
  const cos = (u: number[], v: number[]) =>
    u.reduce((s, a, i) => s + a * v[i]!, 0) / Math.hypot(...u) / Math.hypot(...v);
  const want = ((cos(row(0), row(2)) - 1) ** 2 + cos(row(1), row(2)) ** 2) / 2;
  assert.ok(Math.abs(r.loss - want) < 1e-5, `${r.loss} vs ${want}`);
  await tr.release();
});

test('SetFit trains the encoder contrastively and fits a head', { skip }, async () => {
  const { texts, y } = subset(8, 2);
  const r = await trainSetFit(model, texts, y, { maxLength: 32, steps: 6, pairsPerStep: 16, lr: 1e-4 });
  assert.equal(r.losses.length, 6);
  assert.ok(r.maxBatchTexts <= 16);
  const changed = (
    r.encoder.initializers.get('encoder.layer.2.attention.self.query.weight')!.data as Float32Array
  ).some(
    (v, i) =>
      v !== (model.graph.initializers.get('encoder.layer.2.attention.self.query.weight')!.data as Float32Array)[i],
  );
  assert.ok(changed, 'the encoder weights moved');
  assert.equal(r.head.numClasses, 2);
  await r.extractor.release();
});

test('TF-IDF: vocabulary from training texts, L2-normalized rows, a working baseline', { skip }, async () => {
  const v = new TfidfVectorizer({ minDf: 1 }).fit(['good film', 'bad film', 'good good acting']);
  assert.ok(v.vocab.has('good film') && v.vocab.has('film'));
  const [row] = v.transform(['good film unseenword']);
  assert.ok(Math.abs(Math.hypot(...row!) - 1) < 1e-9);
  const train = subset(150, 3);
  const test = subset(250, 4);
  const inTrain = new Set(train.texts);
  const held = test.texts.map((t, i) => [t, test.y[i]!] as const).filter(([t]) => !inTrain.has(t));
  const clf = await trainTfidfClassifier(train.texts, train.y);
  const acc = clf.predict(held.map(([t]) => t)).filter((p, i) => p === held[i]![1]).length / held.length;
  assert.ok(acc > 0.55, `TF-IDF accuracy ${acc}`);
});

test('word dropout hides inner tokens only, about the asked fraction', { skip }, async () => {
  const { dropTokens } = await import('../../src/text/classify.js');
  const enc = model.tokenizer.encodeBatch(subset(20).texts, { maxLength: 48, warn: quiet });
  const before = [...(enc.attentionMask.data as BigInt64Array)];
  dropTokens(enc, 0.3, new Rng(5));
  const after = [...(enc.attentionMask.data as BigInt64Array)];
  const len = enc.attentionMask.dims[1]!;
  let inner = 0,
    dropped = 0;
  enc.lengths.forEach((L, i) => {
    assert.equal(after[i * len], 1n);
    assert.equal(after[i * len + L - 1], 1n);
    for (let j = 1; j < L - 1; j++) {
      inner++;
      if (after[i * len + j] === 0n) dropped++;
    }
    for (let j = L; j < len; j++) assert.equal(after[i * len + j], before[i * len + j]);
  });
  assert.ok(Math.abs(dropped / inner - 0.3) < 0.08, `${dropped}/${inner}`);
});

test('top layers on cached states: same pooled features, and the exported classifier predicts what training saw', {
  skip,
}, async () => {
  const { texts, y } = subset(12, 5);
  const split = new TopLayerSplit(model, 2);
  const states = await split.states(texts, { maxLength: 32, warn: quiet });
  const pooled = await split.pooled(states, 7);
  const ex = new TextFeatureExtractor(model, 'mean');
  const F = await ex.extract(texts, { maxLength: 32, warn: quiet });
  await ex.release();
  F.forEach((f, i) => f.forEach((v, j) => assert.ok(Math.abs(v - pooled[i]![j]!) < 1e-4, `text ${i} dim ${j}`)));
  const r = await finetuneTopCached(split, states, y, {
    classes: 2,
    lr: 5e-4,
    epochs: 4,
    batchSize: 8,
    warmup: 0,
    seed: 1,
  });
  assert.ok(r.losses.at(-1)! < r.losses[0]!, `loss ${r.losses[0]} → ${r.losses.at(-1)}`);
  const P = await r.predictProba(states);
  const Q = await predictTextProba(r.graph, model.tokenizer, texts, { maxLength: 32, warn: quiet });
  P.forEach((p, i) => assert.ok(Math.abs(p[1]! - Q[i]![1]!) < 1e-4, `text ${i}: ${p[1]} vs ${Q[i]![1]}`));
  const same = (k: string) =>
    (model.graph.initializers.get(k)!.data as Float32Array).every(
      (v, i) => v === (r.graph.initializers.get(k)!.data as Float32Array)[i],
    );
  assert.ok(same('encoder.layer.1.output.dense.weight'), 'layers below the cut frozen');
  assert.ok(
    !same('encoder.layer.2.output.dense.weight') && !same('encoder.layer.3.attention.self.query.weight'),
    'top two layers trained',
  );
  await r.release();
  await split.release();
});

test('fine-tuning with no training texts stops with an error instead of looping', { skip }, async () => {
  await assert.rejects(() => finetuneText(model, [], [], { classes: 2, maxLength: 16 }), /no training texts/);
  await assert.rejects(
    () => finetuneText(model, ['a fine film'], [1], { classes: 2, maxLength: 16, batchSize: 0 }),
    /batch size must be a whole number/,
  );
});
