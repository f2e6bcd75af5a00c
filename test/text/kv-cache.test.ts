import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOnnx, writeOnnx } from '../../src/formats/onnx.js';
import { Graph } from '../../src/graph/graph.js';
import { CausalLm, generateText } from '../../src/text/generate.js';
import {
  kvRewrite,
  loadShippedDecoder,
  shippedDecoder,
  specializeStep,
  KvDecoder,
  SEQ2SEQ_INPUTS,
  type KvRewrite,
} from '../../src/text/kv-cache.js';
import { Session, type Feeds } from '../../src/runtime/session.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { buildSeq2Seq, type Seq2SeqPair } from '../../src/text/seq2seq.js';
import { trainSeq2Seq, readParallelJsonl, Seq2SeqDecoder } from '../../src/text/translate.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

const GPT2 = 'models/text/gpt2-mini-debian';
const gpt2 = () => readOnnx(join(asset(GPT2), 'onnx/model.onnx'));
const PROMPTS = [
  [3, 100, 200, 300],
  [3, 55],
  [3, 1000, 20, 30, 40, 50, 60, 70, 80],
];

test('GPT-2-mini: the rewrite takes past_key_values and returns present per layer, one position per step', {
  skip: needs(GPT2),
}, () => {
  const r = kvRewrite(gpt2()) as KvRewrite;
  assert.ok(!('reason' in r), 'reason' in r ? String(r.reason) : '');
  assert.equal(r.layers, 4);
  const ins = r.step.inputs.map((v) => v.name);
  for (let i = 0; i < 4; i++) {
    assert.ok(ins.includes(`past_key_values.${i}.key`) && ins.includes(`past_key_values.${i}.value`));
    assert.ok(
      r.step.outputs.some((o) => o.name === `present.${i}.key`) &&
        r.prefill.outputs.some((o) => o.name === `present.${i}.value`),
    );
  }
  assert.ok(ins.includes('position_ids'));
  // the past is concatenated along the sequence axis, once per key and value of every layer
  const concats = r.step.nodes.filter((n) => n.opType === 'Concat' && n.inputs[0]!.startsWith('past_key_values.'));
  assert.equal(concats.length, 8);
  assert.ok(concats.every((n) => n.attrs['axis']?.value === 2));
});

test('GPT-2-mini: cached greedy and sampled tokens equal the uncached ones; cached is faster', {
  skip: needs(GPT2),
}, async () => {
  const g = gpt2();
  const cached = await CausalLm.create(g, { maxPositions: 128 });
  const plain = await CausalLm.create(g, { maxPositions: 128, cache: false });
  assert.equal(cached.cached, true);
  assert.equal(plain.cached, false);
  const t0 = performance.now();
  const a = await cached.generate(PROMPTS, { maxNewTokens: 48 });
  const t1 = performance.now();
  const b = await plain.generate(PROMPTS, { maxNewTokens: 48 });
  const t2 = performance.now();
  assert.deepEqual(a, b);
  assert.ok(a.every((r) => r.length === 48));
  assert.ok(t1 - t0 < t2 - t1, `cached ${(t1 - t0).toFixed(0)} ms vs uncached ${(t2 - t1).toFixed(0)} ms`);
  for (const o of [
    { temperature: 0.8, topP: 0.9, seed: 4 },
    { topK: 20, seed: 7 },
    { temperature: 1.3, seed: 2 },
  ]) {
    const x = await cached.generate(PROMPTS, { maxNewTokens: 32, ...o });
    const y = await plain.generate(PROMPTS, { maxNewTokens: 32, ...o });
    assert.deepEqual(x, y, JSON.stringify(o));
  }
  // end-of-text drops a row from the cached batch; the others go on unchanged
  const eos = a[1]![3]!;
  const stop = await cached.generate(PROMPTS, { maxNewTokens: 48, eos });
  assert.deepEqual(stop, await plain.generate(PROMPTS, { maxNewTokens: 48, eos }));
  assert.ok(stop[1]!.length < 48);
  await cached.release();
  await plain.release();
});

test('GPT-2-mini: the step graph is specialized to one token (no shape arithmetic, no causal mask) and equals the rewritten one at sizes the probes did not use', {
  skip: needs(GPT2),
}, async () => {
  const r = kvRewrite(gpt2()) as KvRewrite;
  const prefill = await Session.fromGraph(r.prefill);
  const spec = await specializeStep(r, await KvDecoder.stepProbes(prefill, r));
  const ops = new Set(spec.graph.nodes.map((n) => n.opType));
  for (const op of ['Shape', 'Range', 'LessOrEqual', 'And', 'Slice', 'Squeeze'])
    assert.ok(!ops.has(op), `${op} left in the step graph`);
  assert.ok(r.step.nodes.some((n) => n.opType === 'Shape') && r.step.nodes.some((n) => n.opType === 'Range'));
  assert.ok(spec.nodesAfter < spec.nodesBefore / 3, `${spec.nodesBefore} → ${spec.nodesAfter}`);
  assert.ok(spec.transposes >= 12, String(spec.transposes));
  // batch 5, 21 cached positions (rows padded differently): the specialized graph gives the rewritten graph's values
  const probe = (await KvDecoder.stepProbes(prefill, r))[2]!;
  const rng = new Rng(3);
  const batch = 5,
    past = 21;
  const feeds: Feeds = {
    input_ids: {
      dtype: 'int64',
      dims: [batch, 1],
      data: BigInt64Array.from({ length: batch }, () => BigInt(rng.int(8000))),
    },
    attention_mask: {
      dtype: 'int64',
      dims: [batch, past + 1],
      data: BigInt64Array.from({ length: batch * (past + 1) }, (_, k) =>
        k % (past + 1) < past - Math.floor(k / (past + 1)) * 3 || k % (past + 1) === past ? 1n : 0n,
      ),
    },
    position_ids: {
      dtype: 'int64',
      dims: [batch, 1],
      data: BigInt64Array.from({ length: batch }, (_, i) => BigInt(past - i * 3)),
    },
    last_position: { dtype: 'int64', dims: [batch, 1], data: new BigInt64Array(batch) },
  };
  for (const [name, t] of Object.entries(probe))
    if (name.startsWith('past_key_values.'))
      feeds[name] = {
        dtype: 'float32',
        dims: [batch, t.dims[1]!, past, t.dims[3]!],
        data: Float32Array.from({ length: batch * t.dims[1]! * past * t.dims[3]! }, () => rng.normal()),
      };
  const a = await Session.fromGraph(spec.graph),
    b = await Session.fromGraph(r.step);
  const ya = await a.run(feeds),
    yb = await b.run(feeds);
  assert.deepEqual(Object.keys(ya).sort(), Object.keys(yb).sort());
  for (const k of Object.keys(yb)) {
    assert.deepEqual(ya[k]!.dims, yb[k]!.dims, k);
    const x = ya[k]!.data as Float32Array,
      y = yb[k]!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    assert.ok(worst < 1e-4, `${k}: ${worst}`);
  }
  await Promise.all([a.release(), b.release(), prefill.release()]);
  const dec = await KvDecoder.fromGraph(gpt2());
  assert.ok(dec instanceof KvDecoder);
  assert.match(dec.source, /specialized to one token: \d+ → \d+ nodes/);
  await dec.release();
});

test('GPT-2-mini: past the context the window slides as without the cache (same tokens)', {
  skip: needs(GPT2),
}, async () => {
  const g = gpt2();
  const cached = await CausalLm.create(g, { maxPositions: 8 });
  const plain = await CausalLm.create(g, { maxPositions: 8, cache: false });
  const w1: string[] = [],
    w2: string[] = [];
  const a = await cached.generate(PROMPTS, { maxNewTokens: 10, warn: (m) => w1.push(m) });
  const b = await plain.generate(PROMPTS, { maxNewTokens: 10, warn: (m) => w2.push(m) });
  assert.deepEqual(a, b);
  assert.deepEqual(w1, w2);
  await cached.release();
  await plain.release();
});

test('a graph the rewrite does not recognize falls back to the uncached path with one warning naming why', async () => {
  // a bigram "LM": embedding lookup then a projection to the vocabulary, no attention at all
  const g = new Graph();
  g.name = 'bigram';
  const V = 7,
    D = 3,
    rng = new Rng(1);
  g.initializers.set('emb', {
    dtype: 'float32',
    dims: [V, D],
    data: Float32Array.from({ length: V * D }, () => rng.normal()),
  });
  g.initializers.set('out', {
    dtype: 'float32',
    dims: [D, V],
    data: Float32Array.from({ length: V * D }, () => rng.normal()),
  });
  g.inputs = [
    { name: 'input_ids', dtype: 'int64', shape: ['b', 's'] },
    { name: 'attention_mask', dtype: 'int64', shape: ['b', 's'] },
  ];
  g.nodes = [
    { name: 'e', opType: 'Gather', domain: '', inputs: ['emb', 'input_ids'], outputs: ['h'], attrs: {} },
    { name: 'p', opType: 'MatMul', domain: '', inputs: ['h', 'out'], outputs: ['logits'], attrs: {} },
  ];
  g.outputs = [{ name: 'logits', dtype: 'float32', shape: ['b', 's', V] }];
  const warnings: string[] = [];
  const lm = await CausalLm.create(g, { maxPositions: 16, warn: (m) => warnings.push(m) });
  assert.equal(lm.cached, false);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /no key\/value cache for bigram: no self-attention block/);
  const out = await lm.generate([[1, 2], [3]], { maxNewTokens: 4 });
  assert.ok(out.every((r) => r.length === 4));
  await lm.release();
});

test('translation: cached greedy decoding equals uncached on a briefly trained encoder-decoder; the step graph holds no encoder', {
  skip: needs('models/text/bert-mini-debian', GPT2, 'datasets/debian-translations/debian-descriptions-en-de.jsonl.gz'),
}, async () => {
  const bertDir = asset('models/text/bert-mini-debian');
  const tok = await loadTokenizer(bertDir);
  const raw = readParallelJsonl(
    asset('datasets/debian-translations/debian-descriptions-en-de.jsonl.gz'),
    'en_short',
    'de_short',
  );
  const pairs: Seq2SeqPair[] = [];
  for (const p of raw.slice(0, 600)) {
    const source = tok.encode(p.source),
      target = tok.encode(p.target, { addSpecialTokens: false });
    if (source.length <= 16 && target.length <= 16) pairs.push({ source, target });
  }
  new Rng(7).shuffle(pairs);
  const T = { start: 3, eos: 3, pad: 0 };
  const g0 = buildSeq2Seq(readOnnx(join(bertDir, 'onnx/model.onnx')), gpt2(), { seed: 1 });
  const tr = await trainSeq2Seq(g0, pairs.slice(16), T, { steps: 10, batchSize: 16, lr: 5e-4, seed: 1 });
  const g = tr.toGraph();
  await tr.release();
  const r = kvRewrite(g, SEQ2SEQ_INPUTS) as KvRewrite;
  assert.ok(!('reason' in r), 'reason' in r ? String(r.reason) : '');
  assert.equal(r.layers, 4);
  assert.ok(r.encoderValues.length >= 4, r.encoderValues.join(', '));
  assert.ok(!r.step.nodes.some((n) => n.name.startsWith('encoder/')), 'the step graph re-runs the encoder');
  assert.ok(!r.step.inputs.some((v) => v.name === 'input_ids'));
  const dec = await KvDecoder.fromGraph(g, SEQ2SEQ_INPUTS);
  assert.ok(dec instanceof KvDecoder);
  assert.match(dec.source, /specialized to one token/, dec.source);
  await dec.release();
  const cached = await Seq2SeqDecoder.create(g);
  const plain = await Seq2SeqDecoder.create(g, { cache: false });
  assert.equal(cached.cached, true);
  const sources = pairs.slice(0, 16).map((p) => p.source);
  const a = await cached.greedy(sources, T, 20, 6);
  const b = await plain.greedy(sources, T, 20, 6);
  assert.deepEqual(a, b);
  assert.ok(a.some((x) => x.length > 0));
  await cached.release();
  await plain.release();
});

test('a folder in the Optimum layout (onnx/decoder_with_past_model.onnx) is used as it is, by the API and graft generate', {
  skip: needs(GPT2),
}, async () => {
  const src = asset(GPT2);
  const r = kvRewrite(gpt2()) as KvRewrite;
  // an Optimum-style decoder_with_past graph from the rewrite: logits [batch, new, vocab] and present.*
  const d = r.step.clone();
  d.nodes = d.nodes.filter((n) => n.opType !== 'GatherND' || !n.outputs.includes('next_logits'));
  d.inputs = d.inputs.filter((v) => v.name !== 'last_position');
  d.outputs = [{ name: 'logits', dtype: 'float32', shape: ['batch', 'sequence', 8192] }, ...d.outputs.slice(1)];
  for (const v of d.inputs) if (v.name.startsWith('past_key_values.')) v.shape = ['batch', 4, 'past_sequence', 64];
  d.prune();
  const dir = mkdtempSync(join(tmpdir(), 'graft-kv-'));
  try {
    mkdirSync(join(dir, 'onnx'));
    writeOnnx(d, join(dir, 'onnx', 'decoder_with_past_model.onnx'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'])
      copyFileSync(join(src, f), join(dir, f));
    assert.deepEqual(shippedDecoder(dir), {
      path: join(dir, 'onnx', 'decoder_with_past_model.onnx'),
      kind: 'with-past',
    });
    const kv = (await loadShippedDecoder(dir))!;
    assert.match(kv.source, /^shipped .*decoder_with_past_model\.onnx$/);
    const shipped = await CausalLm.create(undefined, { cached: kv, maxPositions: 128 });
    const plain = await CausalLm.create(gpt2(), { maxPositions: 128, cache: false });
    assert.deepEqual(
      await shipped.generate(PROMPTS, { maxNewTokens: 20 }),
      await plain.generate(PROMPTS, { maxNewTokens: 20 }),
    );
    const tok = await loadTokenizer(src);
    const want = (await generateText(plain, tok, ['this package provides'], { maxNewTokens: 8 }))[0]!.text;
    await shipped.release();
    await plain.release();
    // no onnx/model.onnx in the folder: only the shipped decoder can answer
    for (const extra of [[], ['--no-cache']]) {
      const out = execFileSync(
        process.execPath,
        [
          '--import',
          'tsx',
          'src/cli/main.ts',
          'generate',
          '--model',
          dir,
          '--prompt',
          'this package provides',
          '--max-new-tokens',
          '8',
          '--json',
          ...extra,
        ],
        { encoding: 'utf8' },
      );
      assert.equal((JSON.parse(out) as { results: { text: string }[] }).results[0]!.text, want);
    }
    writeFileSync(join(dir, 'onnx', 'decoder_with_past_model.onnx'), 'not onnx');
    assert.throws(
      () =>
        execFileSync(
          process.execPath,
          ['--import', 'tsx', 'src/cli/main.ts', 'generate', '--model', dir, '--prompt', 'x'],
          { encoding: 'utf8', stdio: 'pipe' },
        ),
      /decoder_with_past_model\.onnx/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
