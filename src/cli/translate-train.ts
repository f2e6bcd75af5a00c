/**
 * `graft translate-train`: build an encoder-decoder from a pretrained encoder folder (BERT-style) and a
 * decoder folder (GPT-2-style) with new cross-attention, fine-tune it on parallel JSONL, report
 * held-out loss and BLEU, and save a folder `graft translate` reads.
 */
import { loadModelFolder } from '../text/model-folder.js';
import { buildSeq2Seq, reinitialize, type Seq2SeqPair } from '../text/seq2seq.js';
import {
  trainSeq2Seq,
  seq2seqLoss,
  Seq2SeqDecoder,
  readParallelJsonl,
  saveTranslationFolder,
} from '../text/translate.js';
import { corpusBleu, formatBleu } from '../text/bleu.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';
import { checkpointsOf } from './train-common.js';

export interface TranslateTrainFlags {
  encoder: string;
  decoder: string;
  data: string;
  sourceField: string;
  targetField: string;
  out: string;
  steps: string;
  batchSize: string;
  lr: string;
  maxLength: string;
  maxPairs?: string;
  valCount: string;
  seed: string;
  randomInit?: boolean;
  json?: boolean;
  checkpointDir?: string;
  resume?: boolean;
  keepCheckpoints?: string;
  checkpointEvery?: string;
}

export async function translateTrainCommand(o: TranslateTrainFlags) {
  const enc = await loadModelFolder(o.encoder);
  const dec = await loadModelFolder(o.decoder);
  const tok = enc.tokenizer;
  const probe = 'a probe text, 123'; // one vocabulary: same size, same pieces
  if (
    tok.vocabSize !== dec.tokenizer.vocabSize ||
    tok.encode(probe, { addSpecialTokens: false }).join() !==
      dec.tokenizer.encode(probe, { addSpecialTokens: false }).join()
  )
    throw new GraftError(
      `${o.encoder} and ${o.decoder} do not share a vocabulary`,
      'warm-starting needs one tokenizer for both sides',
    );
  const eos = dec.tokenizer.eosId ?? tok.sepId;
  if (eos === undefined) throw new GraftError(`${o.decoder}: the tokenizer has no end-of-text token`);
  const maxLen = int(o.maxLength, '--max-length');
  const seed = int(o.seed, '--seed');
  const raw = readParallelJsonl(o.data, o.sourceField, o.targetField);
  const pairs: Seq2SeqPair[] = [];
  let skipped = 0,
    duplicates = 0;
  const seen = new Set<string>(); // one pair per source text, so no held-out source is also trained on
  for (const p of raw) {
    if (seen.has(p.source)) {
      duplicates++;
      continue;
    }
    seen.add(p.source);
    const source = tok.encode(p.source),
      target = tok.encode(p.target, { addSpecialTokens: false });
    if (source.length <= maxLen && target.length <= maxLen) pairs.push({ source, target });
    else skipped++;
  }
  if (duplicates)
    process.stderr.write(`${o.data}: kept the first of each repeated source text (${duplicates} repeat(s) dropped)\n`);
  if (skipped)
    process.stderr.write(`warning: ${o.data}: skipped ${skipped} pair(s) longer than --max-length ${maxLen} tokens\n`);
  new Rng(seed).shuffle(pairs);
  const nVal = int(o.valCount, '--val-count');
  const val = pairs.slice(0, nVal);
  const train = pairs.slice(nVal, o.maxPairs !== undefined ? nVal + int(o.maxPairs, '--max-pairs') : undefined);
  if (!train.length) throw new GraftError(`${o.data}: no training pairs left after holding out ${nVal}`);
  const T = { start: eos, eos, pad: tok.padId };
  let model = buildSeq2Seq(enc.graph, dec.graph, { seed });
  if (o.randomInit) model = reinitialize(model, { seed: seed + 1 });
  const steps = int(o.steps, '--steps');
  const tr = await trainSeq2Seq(model, train, T, {
    steps,
    batchSize: int(o.batchSize, '--batch-size'),
    lr: num(o.lr, '--lr'),
    seed,
    ...checkpointsOf(o),
    ...(o.checkpointEvery !== undefined ? { checkpointEvery: int(o.checkpointEvery, '--checkpoint-every') } : {}),
    progress: { quiet: !!o.json },
  });
  const g = tr.toGraph();
  await tr.release();
  let summary: Record<string, unknown> = { out: o.out, train: train.length, heldOut: val.length };
  if (val.length) {
    const loss = await seq2seqLoss(g, val, T);
    const d = await Seq2SeqDecoder.create(g);
    const hyps = (
      await d.greedy(
        val.map((p) => p.source),
        T,
        maxLen,
      )
    ).map((x) => tok.decode(x, { skipSpecialTokens: true }));
    await d.release();
    const bleu = corpusBleu(hyps, [val.map((p) => tok.decode(p.target, { skipSpecialTokens: true }))]);
    summary = { ...summary, heldOutLoss: loss, bleu: bleu.score, bleuDetail: formatBleu(bleu) };
    if (!o.json)
      process.stderr.write(
        `held-out loss ${loss.toFixed(3)} nats/token; ${formatBleu(bleu)} (references normalized by the tokenizer)\n`,
      );
  }
  saveTranslationFolder(g, o.encoder, o.out, {
    model_type: 'graft-seq2seq',
    decoder_start_token_id: eos,
    eos_token_id: eos,
    pad_token_id: tok.padId,
    max_source_length: maxLen,
    max_target_length: maxLen,
    ...(dec.maxPositions ? { decoder_positions: dec.maxPositions } : {}),
  });
  if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  else process.stderr.write(`saved ${o.out} (run: graft translate --model ${o.out} "text")\n`);
}
