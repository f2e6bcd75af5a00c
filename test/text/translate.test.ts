import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOnnx } from '../../src/formats/onnx.js';
import { Session } from '../../src/runtime/session.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import {
  buildSeq2Seq,
  reinitialize,
  seq2seqBatch,
  crossAttentionParams,
  type Seq2SeqPair,
} from '../../src/text/seq2seq.js';
import {
  trainSeq2Seq,
  seq2seqLoss,
  readParallelJsonl,
  saveTranslationFolder,
  loadTranslator,
  translateTexts,
} from '../../src/text/translate.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

const T = { start: 3, eos: 3, pad: 0 };
const skip = needs(
  'models/text/bert-mini-debian',
  'models/text/gpt2-mini-debian',
  'datasets/debian-translations/debian-descriptions-en-de.jsonl.gz',
);

async function setup() {
  const bertDir = asset('models/text/bert-mini-debian');
  const enc = readOnnx(join(bertDir, 'onnx/model.onnx'));
  const dec = readOnnx(join(asset('models/text/gpt2-mini-debian'), 'onnx/model.onnx'));
  const tok = await loadTokenizer(bertDir);
  const raw = readParallelJsonl(
    asset('datasets/debian-translations/debian-descriptions-en-de.jsonl.gz'),
    'en_short',
    'de_short',
  );
  const seen = new Set<string>();
  const pairs: Seq2SeqPair[] = [];
  for (const p of raw) {
    if (seen.has(p.source)) continue;
    seen.add(p.source);
    const source = tok.encode(p.source),
      target = tok.encode(p.target, { addSpecialTokens: false });
    if (source.length <= 16 && target.length <= 16) pairs.push({ source, target });
  }
  new Rng(7).shuffle(pairs);
  return { enc, dec, tok, pairs, bertDir };
}

test('seq2seq graph: with cross-attention output zeroed the decoder is exactly GPT-2-mini; encoder padding is masked', {
  skip,
}, async () => {
  const { enc, dec, pairs } = await setup();
  const g = buildSeq2Seq(enc, dec, { seed: 3 });
  assert.equal(crossAttentionParams(g).length, 4 * 10);
  const z = g.clone();
  for (const k of crossAttentionParams(z))
    if (/\.o\.weight$/.test(k)) {
      const t = z.initializers.get(k)!;
      z.initializers.set(k, { ...t, data: new Float32Array(t.data.length) });
    }
  const f = seq2seqBatch(pairs.slice(0, 3), T);
  const s1 = await Session.fromGraph(z);
  const a = (await s1.run(f))['logits']!.data as Float32Array;
  const s2 = await Session.fromGraph(dec);
  const b = (await s2.run({ input_ids: f['decoder_input_ids']!, attention_mask: f['decoder_attention_mask']! }))[
    'logits'
  ]!.data as Float32Array;
  assert.equal(a.length, b.length);
  assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-4));
  // the same pair with 4 extra source tokens that the attention mask hides gives the same logits
  const full = await Session.fromGraph(g);
  const one = (await full.run(seq2seqBatch([pairs[0]!], T)))['logits']!.data as Float32Array;
  const longer = seq2seqBatch([{ source: [...pairs[0]!.source, 5, 6, 7, 8], target: pairs[0]!.target }], T);
  (longer['attention_mask']!.data as BigInt64Array).fill(0n, pairs[0]!.source.length);
  const second = (await full.run(longer))['logits']!.data as Float32Array;
  assert.ok(
    one.every((v, i) => Math.abs(v - second[i]!) < 1e-3),
    'masked source positions leak into the decoder',
  );
  await s1.release();
  await s2.release();
  await full.release();
});

test('cross-attention gradients match finite differences', { skip }, async () => {
  const { enc, dec, pairs } = await setup();
  const g = buildSeq2Seq(enc, dec, { seed: 3, initStd: 0.2 });
  const f = seq2seqBatch(pairs.slice(0, 2), T);
  const feeds = {
    input_ids: f['input_ids']!,
    attention_mask: f['attention_mask']!,
    decoder_input_ids: f['decoder_input_ids']!,
    decoder_attention_mask: f['decoder_attention_mask']!,
  };
  const wrt = [
    'decoder.h.0.crossattention.k.weight',
    'decoder.h.2.crossattention.q.weight',
    'decoder.h.3.crossattention.ln.weight',
    'decoder.h.1.crossattention.o.bias',
  ];
  const r = await gradCheck(g, { feeds, wrt, samples: 4, float64: true, eps: [1e-3, 1e-5] });
  assert.ok(r.worst < 1e-4, JSON.stringify(r.entries));
});

test('warm-started encoder-decoder beats the same graph from random init after the same steps (held-out loss); folder round trip', {
  skip,
}, async () => {
  const { enc, dec, pairs, tok, bertDir } = await setup();
  const test = pairs.slice(0, 48),
    train = pairs.slice(48, 48 + 400);
  const warm = buildSeq2Seq(enc, dec, { seed: 1 });
  const losses: number[] = [];
  let trained = warm;
  for (const m of [warm, reinitialize(warm, { seed: 2 })]) {
    const tr = await trainSeq2Seq(m, train, T, { steps: 12, batchSize: 16, lr: 5e-4, seed: 1 });
    const g = tr.toGraph();
    await tr.release();
    losses.push(await seq2seqLoss(g, test, T));
    if (m === warm) trained = g;
  }
  assert.ok(losses[0]! < losses[1]! - 0.5, `warm ${losses[0]} vs random ${losses[1]}`);
  const dir = mkdtempSync(join(tmpdir(), 'graft-translate-'));
  try {
    saveTranslationFolder(trained, bertDir, dir, {
      model_type: 'graft-seq2seq',
      decoder_start_token_id: 3,
      eos_token_id: 3,
      pad_token_id: 0,
      max_source_length: 16,
      max_target_length: 8,
    });
    const t = await loadTranslator(dir);
    const out = await translateTexts(t, ['Real-time strategy game', 'documentation files'], { maxNewTokens: 8 });
    await t.decoder.release();
    assert.equal(out.length, 2);
    assert.ok(out.every((s) => typeof s === 'string' && tok.encode(s, { addSpecialTokens: false }).length <= 8));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
