/**
 * `graft lm-finetune`: fine-tune a causal language model folder (GPT-2-style, ONNX + tokenizer) on a
 * text corpus, report held-out perplexity before and after, and save a model folder `graft generate` reads:
 * the flags, one call into finetuneLmFolder (src/text/lm-folder.ts), the summary.
 */
import { finetuneLmFolder } from '../text/lm-folder.js';
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
  const r = await finetuneLmFolder(o.model, o.data, o.out, {
    ...(o.textColumn !== undefined ? { textColumn: o.textColumn } : {}),
    ...(o.window !== undefined ? { window: int(o.window, '--window') } : {}),
    valFraction: num(o.valFraction, '--val-fraction'),
    epochs: int(o.epochs, '--epochs'),
    batchSize: int(o.batchSize, '--batch-size'),
    lr: num(o.lr, '--lr'),
    seed: int(o.seed, '--seed'),
    ...(o.maxSteps !== undefined ? { maxSteps: int(o.maxSteps, '--max-steps') } : {}),
    ...checkpointsOf(o),
    progress: { quiet: !!o.json },
    log: (s) => {
      if (!o.json) process.stderr.write(`${s}\n`);
    },
  });
  if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
}
