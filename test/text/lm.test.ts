import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { Builder } from '../../src/graph/builder.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Session } from '../../src/runtime/session.js';
import {
  buildLmLoss,
  makeWindows,
  lmBatch,
  lmEvalGraph,
  perplexity,
  finetuneLm,
  linearSchedule,
  LM_LABELS,
  LM_MASK,
} from '../../src/text/lm.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';
import { loadReviewTexts } from '../../src/text/lm-corpus.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';

const [B, S, H, V] = [2, 3, 4, 5];

/** h [B,S,H] → MatMul(W [H,V]) → logits → masked LM loss. */
function tinyLm(): Graph {
  const rng = new Rng(5);
  const g = new Graph();
  g.inputs.push({ name: 'h', dtype: 'float32', shape: [B, S, H] });
  g.inputs.push({ name: LM_LABELS, dtype: 'int64', shape: [B, S] });
  g.inputs.push({ name: LM_MASK, dtype: 'float32', shape: [B, S] });
  g.initializers.set('W', {
    dtype: 'float32',
    dims: [H, V],
    data: Float32Array.from({ length: H * V }, () => rng.normal()),
  });
  const b = new Builder(g);
  const logits = b.op('MatMul', ['h', 'W']);
  const { loss } = buildLmLoss(b, logits);
  g.outputs = [{ name: loss }];
  return g;
}

const labels = [1, 4, 0, 2, 3, 3];
const mask = [1, 1, 0, 1, 1, 1];
function feeds(lab = labels) {
  const rng = new Rng(9);
  return {
    h: {
      dtype: 'float32' as const,
      dims: [B, S, H],
      data: Float32Array.from({ length: B * S * H }, () => rng.normal()),
    },
    [LM_LABELS]: { dtype: 'int64' as const, dims: [B, S], data: BigInt64Array.from(lab.map(BigInt)) },
    [LM_MASK]: { dtype: 'float32' as const, dims: [B, S], data: Float32Array.from(mask) },
  };
}

test('LM loss equals the masked mean next-token NLL and ignores masked labels', async () => {
  const g = tinyLm();
  const s = await Session.fromGraph(g);
  const f = feeds();
  const loss = Number((await s.run(f))[g.outputs[0]!.name]!.data[0]);
  // reference in JS
  const W = g.initializers.get('W')!.data as Float32Array;
  const h = f.h.data;
  let nll = 0,
    n = 0;
  for (let p = 0; p < B * S; p++) {
    const z = Array.from({ length: V }, (_, v) => {
      let a = 0;
      for (let k = 0; k < H; k++) a += h[p * H + k]! * W[k * V + v]!;
      return a;
    });
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
    if (mask[p]) {
      nll += lse - z[labels[p]!]!;
      n++;
    }
  }
  assert.ok(Math.abs(loss - nll / n) < 1e-5, `${loss} vs ${nll / n}`);
  const other = labels.slice();
  other[2] = 4; // a masked position
  const loss2 = Number((await s.run(feeds(other)))[g.outputs[0]!.name]!.data[0]);
  assert.equal(loss2, loss);
  other[0] = 2; // a counted one
  const loss3 = Number((await s.run(feeds(other)))[g.outputs[0]!.name]!.data[0]);
  assert.notEqual(loss3, loss);
  await s.release();
});

test('LM loss gradient matches finite differences (float64)', async () => {
  const r = await gradCheck(tinyLm(), {
    feeds: feeds(),
    wrt: ['W', 'h'],
    float64: true,
    samples: 20,
    eps: [1e-3, 1e-5],
  });
  assert.ok(r.worst < 1e-5, JSON.stringify(r.entries));
});

test('windows overlap by one token and cover every token once as a label', () => {
  const docs = [
    [10, 11, 12],
    [20, 21],
    [30, 31, 32, 33],
  ];
  const w = makeWindows(docs, { window: 4, eos: 3 });
  assert.deepEqual(w, [
    [10, 11, 12, 3, 20],
    [20, 21, 3, 30, 31],
    [31, 32, 33, 3],
  ]);
  const f = lmBatch(w, 0);
  assert.deepEqual(f['input_ids']!.dims, [3, 4]);
  assert.deepEqual(Array.from(f[LM_MASK]!.data as Float32Array).slice(8), [1, 1, 1, 0]);
  assert.deepEqual(Array.from(f[LM_LABELS]!.data as BigInt64Array, Number).slice(0, 4), [11, 12, 3, 20]);
  assert.ok(
    Math.abs(linearSchedule(1, 0, 10, 0.2) - 0.5) < 1e-12 &&
      linearSchedule(1, 9, 10, 0.2) > 0 &&
      linearSchedule(1, 9, 10, 0.2) < 0.2,
  );
});

test('GPT-2-mini: perplexity on real reviews is finite and falls after a few fine-tuning steps on them', {
  skip: needs('models/text/gpt2-mini-debian', 'datasets/reviews/polarity-en-pang&lee1.csv'),
}, async () => {
  const dir = asset('models/text/gpt2-mini-debian');
  const tok = await loadTokenizer(dir);
  const texts = loadReviewTexts(asset('datasets/reviews/polarity-en-pang&lee1.csv')).slice(0, 4);
  const windows = makeWindows(
    texts.map((t) => tok.encode(t, { addSpecialTokens: false })),
    { window: 64, eos: tok.eosId! },
  ).slice(0, 8);
  const model = readOnnx(`${dir}/onnx/model.onnx`);
  const before = await perplexity(model, windows, { batchSize: 8 });
  assert.ok(before.perplexity > 10 && before.perplexity < 2000, `pretrained perplexity ${before.perplexity}`);
  assert.equal(
    before.tokens,
    windows.reduce((a, w) => a + w.length - 1, 0),
  );
  const tr = await finetuneLm(model, windows, { epochs: 4, batchSize: 8, lr: 1e-3, warmup: 0 });
  const after = await perplexity(tr.toGraph(), windows, { batchSize: 8 });
  await tr.release();
  assert.ok(after.perplexity < before.perplexity * 0.8, `${before.perplexity} → ${after.perplexity}`);
  assert.ok(lmEvalGraph(model).outputs.length === 2);
});

test('corpus files: text, CSV and JSONL documents; empty texts and invalid UTF-8 are named', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { readCorpus } = await import('../../src/text/lm-corpus.js');
  const { GraftError } = await import('../../src/util/errors.js');
  const dir = mkdtempSync(join(tmpdir(), 'graft-corpus-'));
  try {
    writeFileSync(join(dir, 'a.txt'), 'first doc\nstill first\n\n\nsecond doc\n');
    assert.deepEqual(readCorpus(join(dir, 'a.txt')), ['first doc\nstill first', 'second doc']);
    writeFileSync(join(dir, 'b.csv'), 'label,text\n1,"a long text, with a comma"\n0,short one\n');
    assert.deepEqual(readCorpus(join(dir, 'b.csv'), { textColumn: 'text' }), [
      'a long text, with a comma',
      'short one',
    ]);
    writeFileSync(join(dir, 'c.jsonl'), '{"text":"one"}\n{"text":""}\n');
    assert.throws(() => readCorpus(join(dir, 'c.jsonl')), /c\.jsonl: row 2 has an empty text/);
    writeFileSync(join(dir, 'd.txt'), Buffer.from([0x61, 0x0a, 0x62, 0xff, 0x0a]));
    assert.throws(() => readCorpus(join(dir, 'd.txt')), /d\.txt: line 2 is not valid UTF-8/);
    assert.throws(() => readCorpus(join(dir, 'b.csv'), { textColumn: 'body' }), /no column named 'body'/);
    writeFileSync(join(dir, 'e.jsonl'), '{"text":"one"}\nnull\n');
    assert.throws(
      () => readCorpus(join(dir, 'e.jsonl')),
      (e: unknown) => e instanceof GraftError && /e\.jsonl: line 2 is not a JSON object/.test(e.message),
    );
    writeFileSync(join(dir, 'f.txt.gz'), 'not gzip');
    assert.throws(
      () => readCorpus(join(dir, 'f.txt.gz')),
      (e: unknown) => e instanceof GraftError && /f\.txt\.gz: not a valid gzip file/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('graft lm-finetune trains on a corpus and writes a folder graft generate reads', {
  skip: needs('datasets/reviews/polarity-en-pang&lee1.csv', 'models/text/gpt2-mini-debian'),
}, async () => {
  const { mkdtempSync, writeFileSync, rmSync, existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { execFileSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'graft-lm-cli-'));
  try {
    const texts = loadReviewTexts(asset('datasets/reviews/polarity-en-pang&lee1.csv')).slice(0, 6);
    writeFileSync(join(dir, 'corpus.txt'), texts.map((t) => t.replace(/\n\s*\n/g, '\n')).join('\n\n'));
    const cli = (...a: string[]) =>
      execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...a], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const r = JSON.parse(
      cli(
        'lm-finetune',
        '--model',
        asset('models/text/gpt2-mini-debian'),
        '--data',
        join(dir, 'corpus.txt'),
        '--out',
        join(dir, 'out'),
        '--window',
        '64',
        '--max-steps',
        '3',
        '--val-fraction',
        '0.34',
        '--json',
      ),
    ) as { perplexityBefore: number; perplexityAfter: number; heldOut: number };
    assert.equal(r.heldOut, 2);
    assert.ok(Number.isFinite(r.perplexityBefore) && Number.isFinite(r.perplexityAfter));
    assert.ok(existsSync(join(dir, 'out', 'onnx', 'model.onnx')) && existsSync(join(dir, 'out', 'tokenizer.json')));
    const g = JSON.parse(
      cli('generate', '--model', join(dir, 'out'), '--prompt', 'the movie', '--max-new-tokens', '4', '--json'),
    ) as { results: { tokens: number }[] };
    assert.ok(g.results[0]!.tokens >= 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
