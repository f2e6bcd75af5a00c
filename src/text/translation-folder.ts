/**
 * One call from an encoder folder (BERT-style), a decoder folder (GPT-2-style) and parallel JSONL to a
 * saved translation folder (`graft translate-train`): `trainTranslationFolder` checks that both share
 * one vocabulary, reads and tokenizes the pairs (one per source text; pairs over `maxLength` tokens
 * skipped, with a warning), holds out a seeded `valCount`, builds the encoder-decoder with new
 * cross-attention (./seq2seq.ts), trains it on the one loop (./translate.ts trainSeq2Seq: checkpoints,
 * resume and progress as RunOptions), reports held-out loss and BLEU, and saves a folder
 * `graft translate` reads. Errors name the flag.
 */
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { loadModelFolder } from './model-folder.js';
import { buildSeq2Seq, reinitialize, type Seq2SeqPair } from './seq2seq.js';
import {
  trainSeq2Seq,
  seq2seqLoss,
  Seq2SeqDecoder,
  readParallelJsonl,
  saveTranslationFolder,
  type Seq2SeqTrainOptions,
} from './translate.js';
import { corpusBleu, formatBleu } from './bleu.js';

export interface TranslationFolderOptions extends Omit<Seq2SeqTrainOptions, 'seed'> {
  /** The JSONL fields of the source and target texts. */
  sourceField: string;
  targetField: string;
  /** Longest source or target in tokens (default 64); also the longest translation of the BLEU check. */
  maxLength?: number;
  /** Pairs held out for loss and BLEU (default 0), training pairs used at most (default all). */
  valCount?: number;
  maxPairs?: number;
  seed?: number;
  /** Start from random weights instead of the pretrained ones (a baseline). */
  randomInit?: boolean;
  /** Repeated and skipped pairs (default: stderr). */
  warn?: (line: string) => void;
  /** The held-out scores, as a line. */
  log?: (line: string) => void;
}

export interface TranslationFolderReport {
  out: string;
  train: number;
  heldOut: number;
  heldOutLoss?: number;
  bleu?: number;
  bleuDetail?: string;
}

/** Train an encoder-decoder from `encoder` and `decoder` on the parallel JSONL `data`; saved in `out`. */
export async function trainTranslationFolder(
  encoder: string,
  decoder: string,
  data: string,
  out: string,
  o: TranslationFolderOptions,
): Promise<TranslationFolderReport> {
  const {
    sourceField,
    targetField,
    maxLength,
    valCount,
    maxPairs,
    seed: seedOpt,
    randomInit,
    warn = (l: string) => void process.stderr.write(`${l}\n`),
    log = () => {},
    ...train
  } = o;
  const enc = await loadModelFolder(encoder);
  const dec = await loadModelFolder(decoder);
  const tok = enc.tokenizer;
  const probe = 'a probe text, 123'; // one vocabulary: same size, same pieces
  if (
    tok.vocabSize !== dec.tokenizer.vocabSize ||
    tok.encode(probe, { addSpecialTokens: false }).join() !==
      dec.tokenizer.encode(probe, { addSpecialTokens: false }).join()
  )
    throw new GraftError(
      `${encoder} and ${decoder} do not share a vocabulary`,
      'warm-starting needs one tokenizer for both sides',
    );
  const eos = dec.tokenizer.eosId ?? tok.sepId;
  if (eos === undefined) throw new GraftError(`${decoder}: the tokenizer has no end-of-text token`);
  const maxLen = maxLength ?? 64;
  const seed = seedOpt ?? 0;
  const raw = readParallelJsonl(data, sourceField, targetField);
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
  if (duplicates) warn(`${data}: kept the first of each repeated source text (${duplicates} repeat(s) dropped)`);
  if (skipped) warn(`warning: ${data}: skipped ${skipped} pair(s) longer than --max-length ${maxLen} tokens`);
  new Rng(seed).shuffle(pairs);
  const nVal = valCount ?? 0;
  const val = pairs.slice(0, nVal);
  const trainPairs = pairs.slice(nVal, maxPairs !== undefined ? nVal + maxPairs : undefined);
  if (!trainPairs.length) throw new GraftError(`${data}: no training pairs left after holding out ${nVal}`);
  const T = { start: eos, eos, pad: tok.padId };
  let model = buildSeq2Seq(enc.graph, dec.graph, { seed });
  if (randomInit) model = reinitialize(model, { seed: seed + 1 });
  const tr = await trainSeq2Seq(model, trainPairs, T, { ...train, seed });
  const g = tr.toGraph();
  await tr.release();
  let report: TranslationFolderReport = { out, train: trainPairs.length, heldOut: val.length };
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
    report = { ...report, heldOutLoss: loss, bleu: bleu.score, bleuDetail: formatBleu(bleu) };
    log(`held-out loss ${loss.toFixed(3)} nats/token; ${formatBleu(bleu)} (references normalized by the tokenizer)`);
  }
  saveTranslationFolder(g, encoder, out, {
    model_type: 'graft-seq2seq',
    decoder_start_token_id: eos,
    eos_token_id: eos,
    pad_token_id: tok.padId,
    max_source_length: maxLen,
    max_target_length: maxLen,
    ...(dec.maxPositions ? { decoder_positions: dec.maxPositions } : {}),
  });
  return report;
}
