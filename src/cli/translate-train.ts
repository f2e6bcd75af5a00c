/**
 * `graft translate-train`: build an encoder-decoder from a pretrained encoder folder (BERT-style) and a
 * decoder folder (GPT-2-style) with new cross-attention, fine-tune it on parallel JSONL, report
 * held-out loss and BLEU, and save a folder `graft translate` reads: the flags, one call into
 * trainTranslationFolder (src/text/translation-folder.ts), the summary.
 */
import { trainTranslationFolder } from '../text/translation-folder.js';
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
  const r = await trainTranslationFolder(o.encoder, o.decoder, o.data, o.out, {
    sourceField: o.sourceField,
    targetField: o.targetField,
    maxLength: int(o.maxLength, '--max-length'),
    seed: int(o.seed, '--seed'),
    valCount: int(o.valCount, '--val-count'),
    ...(o.maxPairs !== undefined ? { maxPairs: int(o.maxPairs, '--max-pairs') } : {}),
    ...(o.randomInit ? { randomInit: true } : {}),
    steps: int(o.steps, '--steps'),
    batchSize: int(o.batchSize, '--batch-size'),
    lr: num(o.lr, '--lr'),
    ...checkpointsOf(o),
    ...(o.checkpointEvery !== undefined ? { checkpointEvery: int(o.checkpointEvery, '--checkpoint-every') } : {}),
    progress: { quiet: !!o.json },
    warn: (l) => process.stderr.write(`${l}\n`),
    log: (l) => {
      if (!o.json) process.stderr.write(`${l}\n`);
    },
  });
  if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else process.stderr.write(`saved ${o.out} (run: graft translate --model ${o.out} "text")\n`);
}
