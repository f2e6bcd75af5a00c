/**
 * The translation part of bench/text-generation.ts: English→German Debian package short descriptions,
 * a BERT-mini encoder + GPT-2-mini decoder joined with new cross-attention (warm start, Rothe et al.)
 * against the same graph with every weight re-initialized, trained for the same steps on the same
 * batches; held-out teacher-forced loss and corpus BLEU (sacreBLEU method) of greedy translations.
 */
import { join } from 'node:path';
import { readOnnx } from '../src/formats/onnx.js';
import { projectRoot, assetPath } from '../src/data/assets.js';
import { loadTokenizer } from '../src/text/tokenizer.js';
import { buildSeq2Seq, reinitialize, type Seq2SeqPair } from '../src/text/seq2seq.js';
import {
  trainSeq2Seq,
  seq2seqLoss,
  Seq2SeqDecoder,
  readParallelJsonl,
  saveTranslationFolder,
} from '../src/text/translate.js';
import { corpusBleu, formatBleu } from '../src/text/bleu.js';
import { Rng } from '../src/util/random.js';

export async function runTranslate(o: {
  steps: number;
  pairs: number;
  test?: number;
  batchSize?: number;
  lr?: number;
  maxLen?: number;
}) {
  const maxLen = o.maxLen ?? 32,
    bs = o.batchSize ?? 32,
    lr = o.lr ?? 5e-4,
    nTest = o.test ?? 200;
  const bertDir = assetPath('models/text/bert-mini-debian'),
    gptDir = assetPath('models/text/gpt2-mini-debian');
  const tok = await loadTokenizer(bertDir);
  const raw = readParallelJsonl(
    assetPath('datasets/debian-translations/debian-descriptions-en-de.jsonl.gz'),
    'en_short',
    'de_short',
  );
  const seen = new Set<string>();
  const all: (Seq2SeqPair & { en: string; de: string })[] = [];
  for (const p of raw) {
    if (seen.has(p.source)) continue;
    seen.add(p.source);
    const source = tok.encode(p.source),
      target = tok.encode(p.target, { addSpecialTokens: false });
    if (source.length <= maxLen && target.length <= maxLen) all.push({ source, target, en: p.source, de: p.target });
  }
  new Rng(42).shuffle(all);
  const test = all.slice(0, nTest),
    train = all.slice(nTest, nTest + o.pairs);
  const T = { start: 3, eos: 3, pad: 0 };
  const warm = buildSeq2Seq(readOnnx(join(bertDir, 'onnx/model.onnx')), readOnnx(join(gptDir, 'onnx/model.onnx')), {
    seed: 1,
  });
  const refs = test.map((p) => tok.decode(p.target, { skipSpecialTokens: true }));
  const results: Record<
    string,
    { loss: number; bleu: ReturnType<typeof corpusBleu>; seconds: number; hyps: string[]; finalTrainLoss: number }
  > = {};
  for (const [name, model] of [
    ['warm-started', warm],
    ['random init', reinitialize(warm, { seed: 5 })],
  ] as const) {
    const t0 = Date.now();
    let last = NaN;
    const tr = await trainSeq2Seq(model, train, T, {
      steps: o.steps,
      batchSize: bs,
      lr,
      seed: 1,
      onStep: (s) => {
        last = s.loss;
        if (s.step % 25 === 0)
          console.log(
            `${name} step ${s.step}/${s.steps} loss ${s.loss.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
          );
      },
    });
    const seconds = (Date.now() - t0) / 1000;
    const g = tr.toGraph();
    await tr.release();
    const loss = await seq2seqLoss(g, test, T);
    const dec = await Seq2SeqDecoder.create(g);
    const hyps = (
      await dec.greedy(
        test.map((p) => p.source),
        T,
        maxLen,
      )
    ).map((x) => tok.decode(x, { skipSpecialTokens: true }));
    await dec.release();
    const bleu = corpusBleu(hyps, [refs]);
    console.log(`${name}: held-out loss ${loss.toFixed(3)}, ${formatBleu(bleu)}`);
    results[name] = { loss, bleu, seconds, hyps, finalTrainLoss: last };
    if (name === 'warm-started')
      saveTranslationFolder(g, bertDir, join(projectRoot, '.graft-cache/text/translate-en-de'), {
        model_type: 'graft-seq2seq',
        decoder_start_token_id: 3,
        eos_token_id: 3,
        pad_token_id: 0,
        max_source_length: maxLen,
        max_target_length: maxLen,
        source_language: 'en',
        target_language: 'de',
      });
  }
  const w = results['warm-started']!,
    r = results['random init']!;
  const md: string[] = ['### English→German by warm-starting an encoder-decoder', ''];
  md.push(
    `Debian package short descriptions (\`debian-descriptions-en-de.jsonl.gz\`, \`en_short\` → \`de_short\`), de-duplicated by English text, pairs of at most ${maxLen} tokens on each side: ${train.length} for training, ${test.length} held out (seeded split; package families such as \`foo\` / \`foo (data files)\` can fall on both sides). The encoder is BERT-mini's graph, the decoder GPT-2-mini's, joined into one ONNX graph (\`buildSeq2Seq\`) with a new cross-attention block (layer norm, Q/K/V/O projections N(0, 0.02²), residual) in each of the 4 decoder layers after self-attention; token types are zeros made inside the graph. Both share the 8,192-token uncased WordPiece vocabulary, so German is cut into many pieces and loses its umlauts (ü → u): BLEU is computed against the references passed through the same tokenizer (lower-cased, accents stripped), with Graft's sacreBLEU-method corpus BLEU (13a tokenization, 4-grams, exp smoothing, brevity penalty). The baseline is the same graph with every weight re-drawn (\`reinitialize\`: LayerNorm scales 1, vectors 0, matrices N(0, 0.02²)). Both: ${o.steps} steps of batch ${bs} (teacher forcing, the masked LM loss on the target side), AdamW ${lr}, 5 % warmup then linear decay, same batches; greedy decoding up to ${maxLen} tokens.`,
    '',
  );
  md.push('| initialization | held-out loss (nats/token) | BLEU | training time |', '| --- | --- | --- | --- |');
  for (const [k, v] of Object.entries(results))
    md.push(`| ${k} | ${v.loss.toFixed(3)} | ${v.bleu.score.toFixed(2)} | ${v.seconds.toFixed(0)} s |`);
  md.push('', `warm-started: \`${formatBleu(w.bleu)}\`  `, `random init: \`${formatBleu(r.bleu)}\``, '');
  md.push(
    'Held-out samples:',
    '',
    '| English | reference (normalized) | warm-started | random init |',
    '| --- | --- | --- | --- |',
  );
  for (let i = 0; i < 6; i++)
    md.push(`| ${esc(test[i]!.en)} | ${esc(refs[i]!)} | ${esc(w.hyps[i]!)} | ${esc(r.hyps[i]!)} |`);
  md.push(
    '',
    'The warm-started model is saved to `.graft-cache/text/translate-en-de` (`graft translate --model .graft-cache/text/translate-en-de "text"`).',
  );
  return {
    steps: o.steps,
    batchSize: bs,
    lr,
    train: train.length,
    test: test.length,
    maxLen,
    warm: { loss: w.loss, bleu: w.bleu.score, seconds: w.seconds },
    random: { loss: r.loss, bleu: r.bleu.score, seconds: r.seconds },
    markdown: md,
  };
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
