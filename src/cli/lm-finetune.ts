/**
 * `graft lm-finetune`: fine-tune a causal language model folder (GPT-2-style, ONNX + tokenizer) on a
 * text corpus, report held-out perplexity before and after, and save a model folder `graft generate` reads.
 */
import { join } from 'node:path';
import { loadModelFolder } from '../text/model-folder.js';
import { readCorpus } from '../text/lm-corpus.js';
import { makeWindows, perplexity, finetuneLm, saveTextModelFolder } from '../text/lm.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';
import { checkpointsOf } from './train-common.js';

export interface LmFinetuneFlags {
  model: string;
  data: string;
  out: string;
  textColumn?: string;
  epochs: string;
  batchSize: string;
  lr: string;
  window?: string;
  valFraction: string;
  maxSteps?: string;
  seed: string;
  json?: boolean;
  checkpointDir?: string;
  resume?: boolean;
  keepCheckpoints?: string;
}

export async function lmFinetuneCommand(o: LmFinetuneFlags) {
  const m = await loadModelFolder(o.model);
  const tok = m.tokenizer;
  const eos = tok.eosId;
  if (eos === undefined)
    throw new GraftError(`${o.model}: the tokenizer has no end-of-text token (eos_token in tokenizer_config.json)`);
  const window = o.window !== undefined ? int(o.window, '--window') : (m.maxPositions ?? 128);
  if (m.maxPositions && window > m.maxPositions)
    throw new GraftError(`--window ${window} is longer than the model's ${m.maxPositions} positions`);
  const docs = readCorpus(o.data, o.textColumn !== undefined ? { textColumn: o.textColumn } : {});
  const vf = num(o.valFraction, '--val-fraction');
  if (!(vf >= 0 && vf < 1)) throw new GraftError(`--val-fraction must be in [0, 1), got ${vf}`);
  const order = new Rng(int(o.seed, '--seed')).shuffle([...docs.keys()]);
  const nVal = docs.length > 1 ? Math.round(docs.length * vf) : 0;
  const enc = (ix: number[]) => ix.map((i) => tok.encode(docs[i]!, { addSpecialTokens: false }));
  const valW = nVal ? makeWindows(enc(order.slice(0, nVal)), { window, eos }) : [];
  const trainW = makeWindows(enc(order.slice(nVal)), { window, eos });
  const log = (s: string) => {
    if (!o.json) process.stderr.write(s + '\n');
  };
  log(
    `${docs.length} documents: ${docs.length - nVal} for training (${trainW.length} windows of ${window} tokens), ${nVal} held out`,
  );
  const before = valW.length ? await perplexity(m.graph, valW, { pad: tok.padId }) : undefined;
  if (before) log(`held-out perplexity before: ${before.perplexity.toFixed(2)}`);
  const checkpoints = checkpointsOf(o);
  const tr = await finetuneLm(m.graph, trainW, {
    epochs: int(o.epochs, '--epochs'),
    batchSize: int(o.batchSize, '--batch-size'),
    lr: num(o.lr, '--lr'),
    seed: int(o.seed, '--seed'),
    pad: tok.padId,
    ...(o.maxSteps !== undefined ? { maxSteps: int(o.maxSteps, '--max-steps') } : {}),
    ...checkpoints,
    progress: { quiet: !!o.json },
  });
  const trained = tr.toGraph();
  await tr.release();
  const after = valW.length ? await perplexity(trained, valW, { pad: tok.padId }) : undefined;
  if (after) log(`held-out perplexity after: ${after.perplexity.toFixed(2)}`);
  saveTextModelFolder(trained, m.dir, o.out, {
    task: 'causal-lm',
    corpus: o.data,
    window,
    perplexityBefore: before?.perplexity,
    perplexityAfter: after?.perplexity,
  });
  log(`saved ${join(o.out, 'onnx', 'model.onnx')} (run: graft generate --model ${o.out} --prompt "...")`);
  if (o.json)
    process.stdout.write(
      JSON.stringify(
        {
          out: o.out,
          documents: docs.length,
          heldOut: nVal,
          trainWindows: trainW.length,
          perplexityBefore: before?.perplexity,
          perplexityAfter: after?.perplexity,
        },
        null,
        2,
      ) + '\n',
    );
}
