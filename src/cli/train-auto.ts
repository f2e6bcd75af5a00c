/**
 * `graft train auto`: the methods compared on folds of the training split, the chosen one fitted and
 * saved with every candidate's fold scores in report.json/html. Image folders and IDX images: the
 * frozen-feature head vs fine-tuned top blocks (trainImageAuto; the fine-tuning flags configure that
 * candidate). Text (--text-column): features, TF-IDF, LP-FT and SetFit (trainTextClassifier, method auto).
 */
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { formatMetrics } from '../eval/metrics.js';
import { trainImageAuto } from '../finetune/train-images.js';
import type { AutoCandidate, AutoSelection } from '../finetune/auto.js';
import { TEXT_TRAIN_DEFAULTS } from '../text/train-text.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';
import { givenFlags, positiveInt, printSummary, flagOf, type CommonTrainFlags } from './train-common.js';
import { imageDataFlags, imageFitFlags, imageFitOptions, type ImageFitFlags } from './train-images.js';
import { textDataFlags, textDataOptions, runTextTraining, type TextDataFlags } from './train-text.js';

interface AutoFlags extends CommonTrainFlags, ImageFitFlags, TextDataFlags {
  budget?: string;
  folds?: string;
  repeats?: string;
  node?: string;
  pooling: 'mean' | 'cls';
}

/** The summary lines every auto run prints: one per candidate, then the choice and its reason. */
export function selectionLines(s: AutoSelection): string[] {
  const rep = s.repeats > 1 ? `${s.repeats} × ` : '';
  const lines = [
    `auto: ${rep}${s.folds}-fold cross-validation${s.repeats > 1 ? ' (repeated with different shuffles)' : ''} on the ${s.trainExamples} training examples (the test split is not used to choose)`,
  ];
  for (const c of s.candidates) lines.push(`  ${candidateLine(c)}`);
  lines.push(s.reason);
  return lines;
}

function candidateLine(c: AutoCandidate): string {
  return c.folds
    ? `${c.method.padEnd(9)} held-out accuracy ${c.mean!.toFixed(4)}  folds [${c.folds.map((a) => a.toFixed(3)).join(' ')}]${(c.repeats ?? 1) > 1 ? ` (${c.repeats} repeats)` : ''}  ${c.description} (${c.seconds.toFixed(1)} s)`
    : `${c.method.padEnd(9)} skipped: ${c.skipped}  (${c.description})`;
}

/** Flags of the fine-tuned image candidate: on text they would be ignored, so they are refused. */
const IMAGE_ONLY = [
  'epochs',
  'batchSize',
  'optimizer',
  'momentum',
  'weightDecay',
  'clipNorm',
  'labelSmoothing',
  'trainable',
  'valFraction',
  'schedule',
  'warmup',
  'stepEpochs',
  'gamma',
  'earlyStopping',
  'patience',
  'minDelta',
  'classWeights',
  'lrDecay',
  'layerGroups',
  'unfreezeEvery',
  'bn',
  'checkpointDir',
  'resume',
  'keepCheckpoints',
  'untie',
  'cut',
  'topBlocks',
  'full',
  'augment',
  'views',
  'loraRank',
  'loraAlpha',
  'loraMatch',
  'headLrMult',
  'tolerance',
  'labelsData',
  'maxPerClass',
  'node',
] as const;

async function runAuto(o: AutoFlags, cmd: Command): Promise<void> {
  const budgetMinutes = o.budget !== undefined ? num(o.budget, '--budget') : undefined;
  if (budgetMinutes !== undefined && !(budgetMinutes > 0))
    throw new GraftError(`--budget must be a positive number of minutes, got ${o.budget}`);
  const folds = o.folds !== undefined ? positiveInt(o.folds, '--folds') : undefined;
  const repeats = o.repeats !== undefined ? positiveInt(o.repeats, '--repeats') : undefined;
  const search = {
    ...(folds !== undefined ? { folds } : {}),
    ...(repeats !== undefined ? { repeats } : {}),
    ...(budgetMinutes !== undefined ? { budgetMinutes } : {}),
  };
  const say = (s: string) => {
    if (!o.json && process.stderr.isTTY) process.stderr.write(s + '\n');
  };
  if (o.textColumn !== undefined || o.data === 'spam-assassin') {
    const image = givenFlags(cmd, IMAGE_ONLY);
    if (image.length)
      throw new GraftError(
        `${image.join(', ')} ${image.length > 1 ? 'apply' : 'applies'} to image data, not to text (--text-column)`,
      );
    await runTextTraining(
      o,
      'auto',
      {
        ...textDataOptions(o),
        ...search,
        pooling: o.pooling,
        ...(cmd.getOptionValueSource('lr') === 'cli' ? { lr: num(o.lr, '--lr') } : {}),
        ...(o.cache ? { cacheDir: o.cache } : {}),
      },
      (r) => [...selectionLines(r.selection!), `chosen: ${String(r.report.chosen)}`],
    );
    return;
  }
  const text = givenFlags(cmd, ['labelColumn', 'maxLength', 'pooling']);
  if (text.length)
    throw new GraftError(`${text.join(', ')} ${text.length > 1 ? 'apply' : 'applies'} to text: give --text-column`);
  const { labelsData, maxPerClass, cacheDir, labelsPerClass, valFraction, testFraction, seed, ...finetune } =
    imageFitOptions(o);
  const r = await trainImageAuto(o.model, o.data, {
    ...(labelsData ? { labelsData } : {}),
    ...(maxPerClass ? { maxPerClass } : {}),
    ...(cacheDir ? { cacheDir } : {}),
    ...(labelsPerClass ? { labelsPerClass } : {}),
    ...(valFraction !== undefined ? { valFraction } : {}),
    testFraction: testFraction ?? 0.2,
    seed: seed ?? 0,
    ...search,
    ...(o.out !== undefined ? { out: o.out } : {}),
    features: { ...(o.node ? { node: o.node } : {}), batchSize: int(o.batchSize, '--batch-size') },
    finetune: { ...finetune, progress: { quiet: !!o.json, label: 'fine-tune' } },
    onCandidate: (c) => say(`candidate ${candidateLine(c)}`),
  });
  const out = r.out;
  printSummary(
    o.json,
    {
      mode: 'auto',
      chosen: r.selection.chosen,
      auto: r.selection,
      test: r.test,
      validation: r.validation,
      training: r.features?.report ?? r.finetuned?.report,
      out,
      files: ['model.onnx', 'labels.json', 'report.html', 'report.json'].map((f) => join(out, f)),
    },
    [
      ...selectionLines(r.selection),
      ...(r.test
        ? [formatMetrics(r.test, 'test').trimEnd()]
        : r.validation
          ? [formatMetrics(r.validation, 'validation').trimEnd()]
          : []),
      `saved ${join(out, 'model.onnx')} and ${join(out, 'labels.json')}; report: ${join(out, 'report.html')} and ${join(out, 'report.json')} (every candidate's fold scores)`,
    ],
  );
}

export function trainAutoCommand(): Command {
  const cmd = new Command('auto').description(
    'compare methods on folds of the training split and keep the best (image folders and IDX: frozen-feature head vs fine-tuned top blocks; text with --text-column: features, TF-IDF, LP-FT, SetFit); saves model.onnx, labels.json, report.html, report.json',
  );
  textDataFlags(cmd);
  cmd.options.find((opt) => opt.long === '--model')!.description =
    'pretrained model: an image model (.onnx, .tflite, TF.js model.json, folder) or, with --text-column, an encoder model folder';
  cmd.options.find((opt) => opt.long === '--data')!.description =
    'an image folder (one subfolder per class), IDX images, or with --text-column a CSV/TSV/JSONL file';
  cmd.options.find((opt) => opt.long === '--out')!.description =
    'folder to write (default graft-classifier; text: graft-text-classifier)';
  cmd.options.find((opt) => opt.long === '--test-fraction')!.description =
    'fraction of each class held out for testing (default 0.2; text 0.25)';
  imageDataFlags(cmd)
    .option(
      '--budget <minutes>',
      'minutes for the search; no new candidate starts once spent (the frozen-feature head always runs)',
    )
    .option('--folds <k>', 'folds of the training split (default 5, fewer when a class has fewer examples)')
    .option(
      '--repeats <r>',
      'repeats of the folds, each with its own shuffle, for a steadier estimate (default 3 when the training split has at most 200 examples, else 1; no new repeat starts once --budget is spent)',
    )
    .option(
      '--node <name>',
      'images: value the frozen-feature candidate cuts the model at (default: the input of its final classifier)',
    )
    .addOption(
      new Option('--pooling <kind>', 'text: how token states become one vector')
        .choices(['mean', 'cls'])
        .default(TEXT_TRAIN_DEFAULTS.shared.pooling),
    );
  imageFitFlags(cmd);
  cmd.options.find((opt) => opt.long === '--lr')!.description =
    `learning rate (images: of the fine-tuned candidate, default 1e-3; text: of LP-FT, default ${TEXT_TRAIN_DEFAULTS.auto.lr})`;
  cmd
    .addHelpText(
      'after',
      `\nThe other fine-tuning flags configure the fine-tuned image candidate (${IMAGE_ONLY.slice(0, 4).map(flagOf).join(', ')}, …).\n` +
        'Examples:\n  graft train auto --model mobilenet_v2.tflite --data photos/ --labels-per-class 20 --out photos-clf\n' +
        '  graft train auto --model bert-mini --data reviews.csv --text-column review --out reviews\n',
    )
    .action((o: AutoFlags, c: Command) => runAuto(o, c));
  return cmd;
}
