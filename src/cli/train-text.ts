/**
 * `graft train text`: a text classifier on an encoder model folder (Hugging Face layout:
 * config.json, tokenizer.json, onnx/model.onnx) from a CSV/TSV/JSONL file: a logistic head on the
 * pooled frozen features, or with --finetune the encoder fine-tuned (all of it, the layers matching
 * --trainable, or LoRA adapters with --lora-rank). One call into trainTextClassifier
 * (src/text/train-text.ts). Also the text flags and the run/summary that `graft train setfit`,
 * `graft train prompt` and `graft train auto` share.
 */
import { Command, Option } from 'commander';
import { formatMetrics } from '../eval/metrics.js';
import {
  trainTextClassifier,
  TEXT_TRAIN_DEFAULTS,
  type TextMethod,
  type TrainTextOptions,
  type TrainTextResult,
} from '../text/train-text.js';
import { GraftError } from '../util/errors.js';
import { int8PostStep } from './export.js';
import { column, num } from './parse.js';
import {
  commonTrainFlags,
  checkpointFlags,
  checkpointsOf,
  splitOf,
  positiveInt,
  givenFlags,
  printSummary,
  type CheckpointFlags,
  type CommonTrainFlags,
} from './train-common.js';
import { progressBar } from '../util/progress.js';

const D = TEXT_TRAIN_DEFAULTS;

/** The flags of every text subcommand. */
export interface TextDataFlags extends CommonTrainFlags {
  textColumn?: string;
  labelColumn?: string;
  maxLength?: string;
}

/** --model/--data/--out/split flags and the text table's columns (text, setfit, prompt). */
export function textDataFlags(cmd: Command): Command {
  commonTrainFlags(cmd, {
    model: 'an encoder model folder (config.json, tokenizer.json, onnx/model.onnx), e.g. a BERT',
    data: 'a CSV/TSV/JSONL file (optionally .gz) with a text and a label column, or spam-assassin (the built-in SpamAssassin corpus)',
    out: `folder to write (default ${D.shared.out})`,
    testFraction: D.shared.testFraction,
  });
  return cmd
    .option(
      '--text-column <name>',
      'the column (CSV header name, 0-based index for headerless files, or JSONL field) holding the text',
    )
    .option('--label-column <name>', 'the column holding the label (default: label, or guessed for headerless files)')
    .option(
      '--max-length <n>',
      "longest input in tokens (longer texts are truncated with a warning; default min(128, the model's))",
    );
}

/** Options every text method reads, from the flags. */
export function textDataOptions(o: TextDataFlags): TrainTextOptions {
  if (o.textColumn === undefined && o.data !== 'spam-assassin')
    throw new GraftError(`--text-column is needed: the column of ${o.data} that holds the text`);
  return {
    ...splitOf(o),
    ...(o.textColumn !== undefined ? { textColumn: column(o.textColumn) } : {}),
    ...(o.labelColumn !== undefined ? { labelColumn: column(o.labelColumn) } : {}),
    ...(o.maxLength !== undefined ? { maxLength: positiveInt(o.maxLength, '--max-length') } : {}),
    ...(o.out !== undefined ? { out: o.out } : {}),
  };
}

/** Train with `method`, showing progress on stderr, then print the summary (after the run) and the int8 copy. */
export async function runTextTraining(
  o: TextDataFlags & { int8?: boolean },
  method: TextMethod,
  opts: TrainTextOptions,
  describe: (r: TrainTextResult) => string[],
): Promise<void> {
  // training steps: the loop's Progress callback; the other long work (feature extraction): the same bar here
  const bar = progressBar('{task} |{bar}| {value}/{total} {unit}', { quiet: o.json });
  let task = '';
  const r = await trainTextClassifier(o.model, o.data, {
    ...opts,
    method,
    progress: { quiet: !!o.json },
    warn: (m) => process.stderr.write(m + '\n'),
    onProgress: (p) => {
      if (!bar || p.unit === 'steps') return;
      if (p.task !== task) {
        bar.stop();
        task = p.task;
      }
      bar.update(p.done, p.total, { task: p.task, unit: p.unit });
      if (p.done >= p.total) {
        bar.stop();
        task = '';
      }
    },
    ...(method === 'auto' && !o.json && process.stderr.isTTY
      ? {
          onCandidate: (c) =>
            process.stderr.write(
              `candidate ${c.method}: ${c.mean !== undefined ? `held-out accuracy ${c.mean.toFixed(4)}` : `skipped: ${c.skipped}`}\n`,
            ),
        }
      : {}),
  });
  bar?.stop();
  // --int8: the saved folder quantized too, calibrated on the training texts, into OUT-int8
  const int8 = o.int8 ? await int8PostStep(r.report.out, { texts: r.trainTexts }, true) : undefined;
  const t = r.report;
  printSummary(o.json, int8 ? { ...t, int8 } : t, [
    ...describe(r),
    ...(t.test ? [formatMetrics(t.test, 'test').trimEnd()] : []),
    `saved ${t.out}/model.onnx with its tokenizer and labels.json` +
      (t.files.length > 2 ? `; report: ${t.out}/report.html and ${t.out}/report.json` : ''),
    ...(int8
      ? [
          `int8: saved ${int8.path} (${int8.bytes.ratio.toFixed(2)}× smaller; ${int8.method} calibration on ${int8.calibrationExamples} training examples)`,
        ]
      : []),
  ]);
}

interface TextFlags extends TextDataFlags, CheckpointFlags {
  pooling: 'mean' | 'cls';
  cache?: string;
  int8?: boolean;
  finetune?: boolean;
  loraRank?: string;
  trainable?: string;
  init: 'probe' | 'random';
  epochs: string;
  batchSize: string;
  lr: string;
  weightDecay: string;
  clipNorm?: string;
}

const FINETUNE_KEYS = [
  'loraRank',
  'trainable',
  'init',
  'epochs',
  'batchSize',
  'lr',
  'weightDecay',
  'clipNorm',
  'checkpointDir',
  'resume',
  'keepCheckpoints',
] as const;

async function trainText(o: TextFlags, cmd: Command): Promise<void> {
  const tuneOnly = givenFlags(cmd, FINETUNE_KEYS);
  if (!o.finetune && tuneOnly.length)
    throw new GraftError(
      `${tuneOnly.join(', ')} ${tuneOnly.length > 1 ? 'configure' : 'configures'} fine-tuning: add --finetune (without it a logistic head is fitted on the frozen features)`,
    );
  const method = o.finetune ? 'finetune' : 'features';
  const opts: TrainTextOptions = {
    ...textDataOptions(o),
    pooling: o.pooling,
    ...(o.cache ? { cacheDir: o.cache } : {}),
    ...(o.finetune
      ? {
          init: o.init,
          epochs: positiveInt(o.epochs, '--epochs'),
          batchSize: positiveInt(o.batchSize, '--batch-size'),
          lr: num(o.lr, '--lr'),
          weightDecay: num(o.weightDecay, '--weight-decay'),
          ...(o.clipNorm !== undefined ? { clipNorm: num(o.clipNorm, '--clip-norm') } : {}),
          ...(o.loraRank !== undefined ? { loraRank: positiveInt(o.loraRank, '--lora-rank') } : {}),
          ...(o.trainable !== undefined ? { trainable: o.trainable } : {}),
          ...checkpointsOf(o),
        }
      : {}),
  };
  await runTextTraining(o, method, opts, ({ report: t }) => [
    `text ${method}${t['finetune'] ? ` (${String(t['finetune'])})` : ''}${t['resumedFrom'] ? `, resumed after epoch ${String(t['resumedFrom'])}` : ''}: ${t.train} training texts, ${t.test?.n ?? 0} test texts, max length ${t.maxLength}, ${t.pooling} pooling`,
  ]);
}

export function trainTextCommand(): Command {
  const cmd = new Command('text').description(
    'train a text classifier on an encoder model folder: a logistic head on the frozen features, or --finetune the encoder; saves model.onnx, the tokenizer, labels.json, report.html, report.json',
  );
  textDataFlags(cmd)
    .addOption(
      new Option('--pooling <kind>', 'how token states become one vector')
        .choices(['mean', 'cls'])
        .default(D.shared.pooling),
    )
    .option('--cache <dir>', 'feature cache folder (a second run over the same texts computes nothing)')
    .option('--finetune', 'fine-tune the encoder: a linear probe first, then the encoder and head train together')
    .option(
      '--lora-rank <r>',
      '--finetune: LoRA adapters of this rank on the attention and feed-forward matrices instead of the weights (at 5× --lr, alpha = 2·rank)',
    )
    .option('--trainable <regex>', '--finetune: train only the parameters matching this pattern (and the head)')
    .addOption(
      new Option('--init <head>', '--finetune: start the head from the fitted logistic probe or at random')
        .choices(['probe', 'random'])
        .default(D.finetune.init),
    )
    .option('--epochs <n>', '--finetune: passes over the training texts', String(D.finetune.epochs))
    .option('--batch-size <n>', '--finetune: texts per step', String(D.finetune.batchSize))
    .option('--lr <x>', '--finetune: peak learning rate (linear warmup and decay)', String(D.finetune.lr))
    .option('--weight-decay <x>', '--finetune: AdamW weight decay', String(D.shared.weightDecay))
    .option('--clip-norm <x>', '--finetune: clip the global gradient norm');
  checkpointFlags(cmd)
    .option('--int8', 'also write an int8 (QDQ) copy of the saved folder to OUT-int8, calibrated on 200 training texts')
    .addHelpText(
      'after',
      '\nExamples:\n  graft train text --model bert-mini --data reviews.csv --text-column review --label-column sentiment --out reviews\n' +
        '  graft train text --model bert-mini --data reviews.csv --text-column review --finetune --lora-rank 4 --epochs 3 --out reviews-lora\n',
    )
    .action((o: TextFlags, c: Command) => trainText(o, c));
  return cmd;
}
