/**
 * The numbers of docs/text.md "## Generation and translation", produced by running the library:
 *
 *   lm:        GPT-2-mini fine-tuned as a causal LM on the full movie reviews (Pang & Lee, 1,350
 *              train / 150 held-out, seeded split), held-out perplexity before and after, generation
 *              samples before and after (greedy, and top-p with a seed); the model folder is saved
 *              to .graft-cache/text/gpt2-reviews for `graft generate`.
 *   translate: BERT-mini encoder + GPT-2-mini decoder with new cross-attention, warm-started vs the same
 *              architecture from random initialization, same steps; held-out loss and sacreBLEU-style BLEU.
 *
 * Each part writes .graft-cache/text/<part>.json; the docs section is rendered from both files (between
 * markers in docs/text.md, created when absent).
 *
 *   GRAFT_THREADS=2 npx tsx bench/text-generation.ts lm [--epochs 1] [--train-docs 1350]
 *   GRAFT_THREADS=2 npx tsx bench/text-generation.ts translate [--steps 600] [--pairs 3000]
 *   npx tsx bench/text-generation.ts render
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite, readOnnx } from '../src/formats/onnx.js';
import { projectRoot, assetPath } from '../src/data/assets.js';
import { loadTokenizer } from '../src/text/tokenizer.js';
import { loadReviewTexts } from '../src/text/lm-corpus.js';
import { makeWindows, perplexity, finetuneLm, saveTextModelFolder } from '../src/text/lm.js';
import { CausalLm, generateText } from '../src/text/generate.js';
import { Rng } from '../src/util/random.js';

const CACHE = join(projectRoot, '.graft-cache/text');
const DOC = join(projectRoot, 'docs/text.md');
const BEGIN = '<!-- generation-translation: begin (written by bench/text-generation.ts) -->';
const END = '<!-- generation-translation: end -->';
const PLACEHOLDER = '## Language model fine-tuning (perplexity) and translation (BLEU)';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

const PROMPTS = ['the movie', 'this film is a', 'the acting'];

async function samples(model: ReturnType<typeof readOnnx>, dir: string) {
  const tok = await loadTokenizer(dir);
  const lm = await CausalLm.create(model, { maxPositions: 128 });
  const greedy = await generateText(lm, tok, PROMPTS, { maxNewTokens: 30 });
  const nucleus = await generateText(lm, tok, PROMPTS, { maxNewTokens: 30, topP: 0.9, temperature: 0.8, seed: 7 });
  await lm.release();
  return { greedy: greedy.map((g) => g.text), nucleus: nucleus.map((g) => g.text) };
}

async function runLm() {
  const epochs = arg('epochs', 1);
  const trainDocs = arg('train-docs', 1350);
  const dir = assetPath('models/text/gpt2-mini-debian');
  const tok = await loadTokenizer(dir);
  const texts = loadReviewTexts(assetPath('datasets/reviews/polarity-en-pang&lee1.csv'));
  const order = new Rng(42).shuffle([...texts.keys()]);
  const test = order.slice(0, 150).map((i) => texts[i]!);
  const train = order.slice(150, 150 + trainDocs).map((i) => texts[i]!);
  const enc = (xs: string[]) => xs.map((t) => tok.encode(t, { addSpecialTokens: false }));
  const trainW = makeWindows(enc(train), { window: 128, eos: tok.eosId! });
  const testW = makeWindows(enc(test), { window: 128, eos: tok.eosId! });
  const model = readOnnx(join(dir, 'onnx/model.onnx'));
  const before = await perplexity(model, testW, { batchSize: 8 });
  console.log(`held-out perplexity before: ${before.perplexity.toFixed(1)} over ${before.tokens} tokens`);
  const sBefore = await samples(model, dir);
  const t0 = Date.now();
  const tr = await finetuneLm(model, trainW, {
    epochs, batchSize: 8, lr: 3e-4, warmup: 0.05, seed: 1,
    onStep: (s) => { if (s.step % 50 === 0 || s.step === s.steps) console.log(`step ${s.step}/${s.steps} loss ${s.loss.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`); },
  });
  const seconds = (Date.now() - t0) / 1000;
  const trained = tr.toGraph();
  await tr.release();
  const after = await perplexity(trained, testW, { batchSize: 8 });
  console.log(`held-out perplexity after: ${after.perplexity.toFixed(1)}`);
  const out = join(CACHE, 'gpt2-reviews');
  saveTextModelFolder(trained, dir, out, { task: 'causal-lm', corpus: 'polarity-en-pang&lee1.csv', epochs });
  const sAfter = await samples(trained, dir);
  const trainTokens = trainW.reduce((a, w) => a + w.length - 1, 0);
  save('lm', {
    trainDocs: train.length, testDocs: test.length, trainWindows: trainW.length, trainTokens, testTokens: before.tokens,
    epochs, batchSize: 8, lr: 3e-4, window: 128, steps: Math.ceil(trainW.length / 8) * epochs, seconds,
    tokensPerSecond: (trainTokens * epochs) / seconds,
    before: before.perplexity, after: after.perplexity, samplesBefore: sBefore, samplesAfter: sAfter, modelFolder: '.graft-cache/text/gpt2-reviews',
    threads: process.env['GRAFT_THREADS'] ?? 'default',
  });
}

function save(part: string, r: unknown) {
  mkdirSync(CACHE, { recursive: true });
  atomicWrite(join(CACHE, `${part}.json`), new TextEncoder().encode(JSON.stringify(r, null, 1) + '\n'));
  render();
}

function load(part: string): Record<string, unknown> | undefined {
  const f = join(CACHE, `${part}.json`);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>) : undefined;
}

const f1 = (x: unknown) => Number(x).toFixed(1);

function render() {
  const lm = load('lm');
  const tr = load('translate');
  const L: string[] = [BEGIN, '## Generation and translation', ''];
  L.push('Numbers in this section are written by `bench/text-generation.ts` (run it to reproduce; `render` rewrites the section from the saved results). Times are wall-clock on a shared 2-core machine that other jobs loaded heavily during these runs (load average 10–20), so they overstate what a quiet machine needs. Fine-tuning runs without dropout: the ONNX exports have none.', '');
  if (lm) {
    const sb = lm['samplesBefore'] as { greedy: string[]; nucleus: string[] };
    const sa = lm['samplesAfter'] as { greedy: string[]; nucleus: string[] };
    L.push('### GPT-2-mini fine-tuned on movie reviews (causal LM)', '');
    L.push(`Full movie reviews (\`polarity-en-pang&lee1.csv\`), seeded split: ${lm['trainDocs']} reviews for training (${lm['trainWindows']} windows of 128 tokens, ${lm['trainTokens']} tokens), ${lm['testDocs']} held out (${lm['testTokens']} tokens). Each review is followed by \`[SEP]\` (end of text); the stream is cut into 128-token windows. Masked next-token cross-entropy (\`lmLoss()\`, a CustomLoss), AdamW ${lm['lr']}, linear warmup (5 %) and decay, batch ${lm['batchSize']}, gradient norm clipped at 1, ${lm['epochs']} epoch(s) = ${lm['steps']} steps in ${f1(lm['seconds'])} s on this machine (${Math.round(Number(lm['tokensPerSecond']))} tokens/s, GRAFT_THREADS=${lm['threads']}).`, '');
    L.push('| | held-out perplexity |', '| --- | --- |');
    L.push(`| pretrained (Debian text only) | ${f1(lm['before'])} |`, `| fine-tuned, ${lm['epochs']} epoch(s) | ${f1(lm['after'])} |`, '');
    L.push('Reference from `../shared/README.md` (PyTorch on the same weights, 1,350 training reviews, AdamW 3e-4, 128-token windows): 141 before, 66 after **3** epochs.', '');
    L.push('Samples (`graft generate`-equivalent calls, 30 new tokens; greedy, then top-p 0.9 at temperature 0.8 with seed 7):', '');
    L.push('| prompt | pretrained, greedy | fine-tuned, greedy | fine-tuned, top-p 0.9 |', '| --- | --- | --- | --- |');
    PROMPTS.forEach((p, i) => L.push(`| ${p} | ${esc(sb.greedy[i]!)} | ${esc(sa.greedy[i]!)} | ${esc(sa.nucleus[i]!)} |`));
    L.push('');
  }
  if (tr) L.push(...(tr['markdown'] as string[]), '');
  L.push(END);
  const section = L.join('\n');
  let doc = existsSync(DOC) ? readFileSync(DOC, 'utf8') : '# Text\n';
  // drop the placeholder the classification work left for this section, if still there
  const ph = doc.indexOf(PLACEHOLDER);
  if (ph >= 0) {
    const cands = [doc.indexOf('\n## ', ph + 1), doc.indexOf(BEGIN, ph)].filter((x) => x >= 0);
    const next = cands.length ? Math.min(...cands) : doc.length;
    doc = doc.slice(0, ph) + doc.slice(next).replace(/^\n/, '');
  }
  const a = doc.indexOf(BEGIN), b = doc.indexOf(END);
  doc = a >= 0 && b > a ? doc.slice(0, a) + section + doc.slice(b + END.length) : doc.replace(/\s*$/, '\n\n') + section + '\n';
  atomicWrite(DOC, new TextEncoder().encode(doc));
  console.log(`wrote ${DOC}`);
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

const part = process.argv[2] ?? 'render';
if (part === 'lm') await runLm();
else if (part === 'translate') {
  const { runTranslate } = await import('./text-translate.js');
  save('translate', await runTranslate({ steps: arg('steps', 600), pairs: arg('pairs', 3000) }));
} else render();
