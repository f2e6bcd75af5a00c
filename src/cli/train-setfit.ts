/**
 * `graft train setfit`: SetFit text classification (the encoder tuned on contrastive pairs of the
 * training texts, then a logistic head on its features), for a few labels per class; one call into
 * trainTextClassifier (src/text/train-text.ts).
 */
import { Command, Option } from 'commander';
import { TEXT_TRAIN_DEFAULTS } from '../text/train-text.js';
import { int, num } from './parse.js';
import { textDataFlags, textDataOptions, runTextTraining, type TextDataFlags } from './train-text.js';
import { checkpointFlags, checkpointsOf, type CheckpointFlags } from './train-common.js';

const D = TEXT_TRAIN_DEFAULTS;

interface SetFitFlags extends TextDataFlags, CheckpointFlags {
  pooling: 'mean' | 'cls';
  epochs: string;
  batchSize: string;
  lr: string;
  int8?: boolean;
}

async function trainSetFit(o: SetFitFlags): Promise<void> {
  await runTextTraining(
    o,
    'setfit',
    {
      ...textDataOptions(o),
      pooling: o.pooling,
      epochs: int(o.epochs, '--epochs'),
      batchSize: int(o.batchSize, '--batch-size'),
      lr: num(o.lr, '--lr'),
      ...checkpointsOf(o),
    },
    ({ report: t }) => [
      `text setfit: ${t.train} training texts, ${t.test?.n ?? 0} test texts, ${String(t['steps'])} contrastive steps of ${String(t['pairsPerStep'])} pairs, max length ${t.maxLength}, ${t.pooling} pooling`,
    ],
  );
}

export function trainSetFitCommand(): Command {
  const cmd = new Command('setfit').description(
    'SetFit text classification for few labels: contrastive pairs tune the encoder, then a logistic head; saves model.onnx, the tokenizer, labels.json, report.html, report.json',
  );
  textDataFlags(cmd)
    .addOption(
      new Option('--pooling <kind>', 'how token states become one vector')
        .choices(['mean', 'cls'])
        .default(D.shared.pooling),
    )
    .option(
      '--epochs <n>',
      "passes over SetFit's pair budget (20 iterations · 2 pairs per training text)",
      String(D.setfit.epochs),
    )
    .option('--batch-size <n>', 'pairs per step', String(D.setfit.batchSize))
    .option('--lr <x>', 'learning rate of the contrastive phase', String(D.setfit.lr));
  checkpointFlags(cmd, 'pass over the pair budget')
    .option('--int8', 'also write an int8 (QDQ) copy of the saved folder to OUT-int8, calibrated on 200 training texts')
    .addHelpText(
      'after',
      '\nExample:\n  graft train setfit --model bert-mini --data reviews.csv --text-column review --labels-per-class 8 --out reviews-setfit\n',
    )
    .action(trainSetFit);
  return cmd;
}
