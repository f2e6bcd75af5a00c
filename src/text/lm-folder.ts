/**
 * One call from a causal language model folder and a text corpus to a fine-tuned model folder
 * (`graft lm-finetune`): `finetuneLmFolder` reads the corpus, holds out a seeded fraction of its
 * documents, cuts both parts into windows, measures held-out perplexity before and after
 * fine-tuning on the one loop (./lm.ts finetuneLm: checkpoints, resume and progress as RunOptions)
 * and saves a folder `graft generate` reads. Steps are told through `log`. Errors name the flag.
 */
import { join } from 'node:path';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { loadModelFolder } from './model-folder.js';
import { readCorpus } from './lm-corpus.js';
import { makeWindows, perplexity, finetuneLm, saveTextModelFolder, type LmFinetuneOptions } from './lm.js';

export interface LmFolderOptions extends Omit<LmFinetuneOptions, 'pad'> {
  /** JSONL/CSV corpora: the text column or field. */
  textColumn?: string;
  /** Tokens per window (default: the model's positions, else 128). */
  window?: number;
  /** Fraction of the documents held out for perplexity (default 0.1). */
  valFraction?: number;
  /** Each step of the run, as a line (e.g. to stderr). */
  log?: (line: string) => void;
}

export interface LmFolderReport {
  out: string;
  documents: number;
  heldOut: number;
  trainWindows: number;
  perplexityBefore: number | undefined;
  perplexityAfter: number | undefined;
}

/** Fine-tune the causal LM folder `model` on the corpus `data`; the folder is saved in `out`. */
export async function finetuneLmFolder(
  model: string,
  data: string,
  out: string,
  o: LmFolderOptions = {},
): Promise<LmFolderReport> {
  const { textColumn, window: win, valFraction, log = () => {}, ...train } = o;
  const m = await loadModelFolder(model);
  const tok = m.tokenizer;
  const eos = tok.eosId;
  if (eos === undefined)
    throw new GraftError(`${model}: the tokenizer has no end-of-text token (eos_token in tokenizer_config.json)`);
  const window = win ?? m.maxPositions ?? 128;
  if (m.maxPositions && window > m.maxPositions)
    throw new GraftError(`--window ${window} is longer than the model's ${m.maxPositions} positions`);
  const docs = readCorpus(data, textColumn !== undefined ? { textColumn } : {});
  const vf = valFraction ?? 0.1;
  if (!(vf >= 0 && vf < 1)) throw new GraftError(`--val-fraction must be in [0, 1), got ${vf}`);
  const order = new Rng(o.seed ?? 0).shuffle([...docs.keys()]);
  const nVal = docs.length > 1 ? Math.round(docs.length * vf) : 0;
  const enc = (ix: number[]) => ix.map((i) => tok.encode(docs[i]!, { addSpecialTokens: false }));
  const valW = nVal ? makeWindows(enc(order.slice(0, nVal)), { window, eos }) : [];
  const trainW = makeWindows(enc(order.slice(nVal)), { window, eos });
  log(
    `${docs.length} documents: ${docs.length - nVal} for training (${trainW.length} windows of ${window} tokens), ${nVal} held out`,
  );
  const before = valW.length ? await perplexity(m.graph, valW, { pad: tok.padId }) : undefined;
  if (before) log(`held-out perplexity before: ${before.perplexity.toFixed(2)}`);
  const tr = await finetuneLm(m.graph, trainW, { ...train, pad: tok.padId });
  const trained = tr.toGraph();
  await tr.release();
  const after = valW.length ? await perplexity(trained, valW, { pad: tok.padId }) : undefined;
  if (after) log(`held-out perplexity after: ${after.perplexity.toFixed(2)}`);
  saveTextModelFolder(trained, m.dir, out, {
    task: 'causal-lm',
    corpus: data,
    window,
    perplexityBefore: before?.perplexity,
    perplexityAfter: after?.perplexity,
  });
  log(`saved ${join(out, 'onnx', 'model.onnx')} (run: graft generate --model ${out} --prompt "...")`);
  return {
    out,
    documents: docs.length,
    heldOut: nVal,
    trainWindows: trainW.length,
    perplexityBefore: before?.perplexity,
    perplexityAfter: after?.perplexity,
  };
}
