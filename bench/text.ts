/**
 * Text throughput, Graft against PyTorch on the same machine in the same run:
 *
 *   encoder fine-tuning  BERT-mini + a linear head on the [CLS] state, batch 16 × 64 tokens (review
 *                        snippets), cross-entropy, AdamW: one training step = forward, backward, update.
 *   generation           GPT-2-mini, greedy, 8 prompts × 32 new tokens, the full prefix re-run each step
 *                        (no key/value cache on either side).
 *
 * PyTorch runs bench/text_torch.py (hand-written BERT / GPT-2 modules loading the same
 * model.safetensors; the same head initialization and inputs), started once and driven over JSON lines
 * so its runs interleave with Graft's round by round. Parity is checked along the way: the first
 * step's loss and the greedy tokens must agree. Tokens per second are medians over rounds.
 *
 *   GRAFT_THREADS=1 npx tsx bench/text.ts [--rounds 5] [--steps 3] [--python /usr/bin/python3]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { readOnnx } from '../src/formats/onnx.js';
import { projectRoot, assetPath } from '../src/data/assets.js';
import { Builder, A } from '../src/graph/builder.js';
import type { Graph } from '../src/graph/graph.js';
import { Trainer } from '../src/train/trainer.js';
import { loadTokenizer } from '../src/text/tokenizer.js';
import { readCorpus } from '../src/text/lm-corpus.js';
import { parseCsvRecords, readTextFile } from '../src/data/text-table.js';
import { CausalLm } from '../src/text/generate.js';
import { Rng } from '../src/util/random.js';

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1]! : d;
};
const ROUNDS = Number(opt('rounds', '5')),
  STEPS = Number(opt('steps', '3'));
const PY = opt('python', process.env['GRAFT_BENCH_PYTHON'] ?? '/usr/bin/python3');
const threads = Number(process.env['GRAFT_THREADS'] ?? '2');
if (!process.env['GRAFT_THREADS']) process.env['GRAFT_THREADS'] = String(threads);
const [B, S, NP, NEW] = [16, 64, 8, 32];

/** BERT encoder → [CLS] hidden state → Gemm head (2 classes). */
function bertClassifier(bert: Graph, w: Float32Array, bias: Float32Array): Graph {
  const g = bert.clone();
  const h = g.outputs[0]!.name;
  const b = new Builder(g, 'head/');
  g.initializers.set('head.weight', { dtype: 'float32', dims: [256, 2], data: w });
  g.initializers.set('head.bias', { dtype: 'float32', dims: [2], data: bias });
  const cls = b.op('Gather', [h, b.i64(0)], { axis: A.i(1) });
  const logits = b.op('Gemm', [cls, 'head.weight', 'head.bias'], {}, 'logits');
  g.outputs = [{ name: logits }];
  return g.prune();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main() {
  const bertDir = assetPath('models/text/bert-mini-debian'),
    gptDir = assetPath('models/text/gpt2-mini-debian');
  const tok = await loadTokenizer(bertDir);
  const file = assetPath('datasets/reviews/polarity-en-pang&lee2.csv');
  const rows = parseCsvRecords(readTextFile(file), ',', file).map((r) => r.fields);
  const pick = new Rng(3)
    .shuffle([...rows.keys()])
    .slice(0, B)
    .map((i) => rows[i]!);
  const enc = tok.encodeBatch(
    pick.map((r) => r[1]!),
    { maxLength: S, padding: 'max_length', warn: () => {} },
  );
  const labels = pick.map((r) => (Number(r[0]!.replace(/^\uFEFF/, '')) > 0 ? 1 : 0));
  const rng = new Rng(5);
  const w = Float32Array.from({ length: 512 }, () => rng.normal() * 0.02),
    bias = new Float32Array(2);
  const lr = 1e-4;
  // Generation prompts: the first 8–12 tokens of other reviews, after the start token.
  const docs = readCorpus(assetPath('datasets/reviews/polarity-en-pang&lee1.csv'), { textColumn: 1 });
  const prompts = docs
    .slice(0, NP)
    .map((d, i) => [3, ...tok.encode(d, { addSpecialTokens: false }).slice(0, 8 + (i % 5))]);
  const ids2d = (t: typeof enc.inputIds) =>
    Array.from({ length: B }, (_, i) => Array.from((t.data as BigInt64Array).subarray(i * S, (i + 1) * S), Number));
  const work = join(projectRoot, '.graft-cache/bench');
  mkdirSync(work, { recursive: true });
  const inputsFile = join(work, 'text-inputs.json');
  const Wt = Array.from({ length: 2 }, (_, o) => Array.from({ length: 256 }, (_, i) => w[i * 2 + o]!));
  writeFileSync(
    inputsFile,
    JSON.stringify({
      encoder: { ids: ids2d(enc.inputIds), mask: ids2d(enc.attentionMask), labels, head: { weight: Wt, bias: [0, 0] } },
      generate: { prompts, new_tokens: NEW },
      lr,
    }),
  );

  // PyTorch child
  const py = spawn(
    PY,
    [
      join(projectRoot, 'bench/text_torch.py'),
      '--serve',
      '--inputs',
      inputsFile,
      '--models',
      join(assetPath('models'), 'text'),
      '--threads',
      String(threads),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: py.stdout! })[Symbol.asyncIterator]();
  const ask = async (req: object): Promise<Record<string, unknown>> => {
    py.stdin!.write(JSON.stringify(req) + '\n');
    const r = await lines.next();
    if (r.done) throw new Error('the PyTorch helper exited');
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  const ready = JSON.parse((await lines.next()).value as string) as Record<string, unknown>;

  // Graft
  const trainer = await Trainer.create(bertClassifier(readOnnx(join(bertDir, 'onnx/model.onnx')), w, bias), {
    loss: { kind: 'cross-entropy' },
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    lr,
  });
  const feeds = { input_ids: enc.inputIds, attention_mask: enc.attentionMask, token_type_ids: enc.tokenTypeIds };
  const target = { dtype: 'int64' as const, dims: [B], data: BigInt64Array.from(labels.map(BigInt)) };
  // the uncached algorithm, as text_torch.py's greedy (the cached one: bench/text-generation.ts speed)
  const lm = await CausalLm.create(readOnnx(join(gptDir, 'onnx/model.onnx')), { maxPositions: 128, cache: false });

  // parity: first step's loss; greedy tokens
  const g0 = (await trainer.step(feeds, target)).loss;
  const t0 = (await ask({ task: 'encoder', iters: 1 }))['loss'] as number;
  const gTok = await lm.generate(prompts, { maxNewTokens: NEW });
  const tTok = (await ask({ task: 'generate', iters: 1 }))['tokens'] as number[][];
  const sameTokens = gTok.reduce((a, r, i) => a + r.filter((t, j) => t === tTok[i]![j]).length, 0);
  console.log(
    `parity: first-step loss Graft ${g0.toFixed(6)} vs PyTorch ${t0.toFixed(6)}; greedy tokens identical: ${sameTokens}/${NP * NEW}`,
  );

  const time = async (f: () => Promise<unknown>) => {
    const s = performance.now();
    await f();
    return performance.now() - s;
  };
  const res = { gEnc: [] as number[], tEnc: [] as number[], gGen: [] as number[], tGen: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? ['t', 'g'] : ['g', 't'];
    for (const who of order) {
      if (who === 'g') {
        for (let k = 0; k < STEPS; k++) res.gEnc.push(await time(() => trainer.step(feeds, target)));
        res.gGen.push(await time(() => lm.generate(prompts, { maxNewTokens: NEW })));
      } else {
        res.tEnc.push(...((await ask({ task: 'encoder', iters: STEPS }))['ms'] as number[]));
        res.tGen.push(...((await ask({ task: 'generate', iters: 1 }))['ms'] as number[]));
      }
    }
    console.log(`round ${r + 1}/${ROUNDS}`);
  }
  await ask({ quit: true }).catch(() => undefined);
  await trainer.release();
  await lm.release();
  const encTok = B * S,
    genTok = NP * NEW;
  const tps = (tok: number, ms: number[]) => (tok * 1000) / median(ms);
  const rowsOut = [
    ['encoder fine-tuning (BERT-mini + head, 16 × 64, AdamW)', tps(encTok, res.gEnc), tps(encTok, res.tEnc)],
    ['generation (GPT-2-mini, greedy, 8 × 32 new tokens)', tps(genTok, res.gGen), tps(genTok, res.tGen)],
  ] as const;
  console.log(`\nthreads ${threads} (onnxruntime and torch ${String(ready['torch'])}), ${ROUNDS} rounds, medians\n`);
  console.log('| task | Graft tokens/s | PyTorch tokens/s | Graft / PyTorch |');
  console.log('| --- | --- | --- | --- |');
  for (const [name, g, t] of rowsOut)
    console.log(`| ${name} | ${g.toFixed(0)} | ${t.toFixed(0)} | ${(g / t).toFixed(2)} |`);
  const out = join(work, `text-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    out,
    JSON.stringify(
      {
        threads,
        rounds: ROUNDS,
        steps: STEPS,
        parity: { graftLoss: g0, torchLoss: t0, sameTokens, tokens: NP * NEW },
        ms: res,
      },
      null,
      1,
    ),
  );
  console.log(`\nraw timings: ${out}`);
}

await main();
