/**
 * `graft train features`: a head (logistic regression, a small MLP, nearest class mean or k nearest
 * neighbours) fitted on the frozen backbone's cached features of an image folder or IDX images; one
 * call into trainFeatureClassifier (src/features/classifier.ts), then --int8 optionally.
 */
import { Command, Option } from 'commander';
import { int, num } from './parse.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { formatMetrics } from '../eval/metrics.js';
import { HEAD_KINDS, type HeadKind } from '../heads/head.js';
import { GraftError } from '../util/errors.js';
import { int8PostStep } from './export.js';
import {
  commonTrainFlags,
  splitOf,
  fraction,
  positiveInt,
  printSummary,
  type CommonTrainFlags,
} from './train-common.js';
import { progressBar } from '../util/progress.js';
import { imageDataFlags } from './train-images.js';
import { queueOptions, trainFeaturesHereOrOnQueue, type QueueFlags } from './worker.js';

export interface FeaturesFlags extends CommonTrainFlags, QueueFlags {
  labelsData?: string;
  maxPerClass?: string;
  cache?: string;
  node?: string;
  valFraction: string;
  batchSize: string;
  head: HeadKind;
  headGrid?: string;
  hidden?: string;
  int8?: boolean;
}

/** `--head-grid a,b,c`: the values cross-validation tries for the head's hyperparameter. */
function headGrid(v: string | undefined, head: HeadKind): number[] | undefined {
  if (v === undefined) return undefined;
  const xs = v.split(',').map((t) => num(t.trim(), '--head-grid'));
  if (xs.some((x) => (head === 'mlp' ? !(x >= 0) : !(x > 0))))
    throw new GraftError(`--head-grid: values must be ${head === 'mlp' ? '≥ 0' : 'positive'}, got '${v}'`);
  if (head === 'knn' && xs.some((x) => !Number.isInteger(x)))
    throw new GraftError(`--head-grid: k must be whole numbers for --head knn, got '${v}'`);
  return xs;
}

const HEAD_PARAM: Record<HeadKind, string> = { logistic: 'l2', mlp: 'weight decay', ncm: 'temperature', knn: 'k' };

export async function featuresCommand(o: FeaturesFlags): Promise<void> {
  const data = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: positiveInt(o.maxPerClass, '--max-per-class') } : {}),
  });
  const bar = progressBar('features |{bar}| {value}/{total} images | {cached} cached', { quiet: o.json });
  const out = o.out ?? 'graft-classifier';
  const head = o.head;
  const grid = headGrid(o.headGrid, head);
  if (o.hidden !== undefined) {
    if (head !== 'mlp') throw new GraftError(`--hidden applies only to --head mlp (the head is '${head}')`);
    positiveInt(o.hidden, '--hidden');
  }
  const skippedNow: string[] = [];
  const split = splitOf(o);
  const { report } = await trainFeaturesHereOrOnQueue(o, data, {
    head,
    ...(grid && head === 'logistic' ? { grid } : {}),
    ...(head === 'mlp'
      ? {
          mlp: {
            ...(grid ? { weightDecays: grid } : {}),
            ...(o.hidden !== undefined ? { hidden: int(o.hidden, '--hidden') } : {}),
          },
        }
      : {}),
    ...(grid && head === 'knn' ? { knn: { ks: grid } } : {}),
    ...(grid && head === 'ncm' ? { ncm: { temperatures: grid } } : {}),
    onSkip: (f) => skippedNow.push(`skipped ${f.path}: ${f.error}`),
    ...(o.node ? { node: o.node } : {}),
    ...(split.labelsPerClass ? { labelsPerClass: split.labelsPerClass } : {}),
    valFraction: fraction(o.valFraction, '--val-fraction'),
    testFraction: split.testFraction ?? 0.2,
    seed: split.seed,
    batchSize: positiveInt(o.batchSize, '--batch-size'),
    ...(o.cache ? { cacheDir: o.cache } : {}),
    out,
    onProgress: (p) => bar?.update(p.examples, p.total, { cached: p.cached }),
  });
  bar?.stop();
  // --int8: the saved folder quantized too, calibrated on the training images, into OUT-int8
  const int8 = o.int8 ? await int8PostStep(out, { images: data.inputs }, true) : undefined;
  const x = report.extraction;
  const h = report.head;
  const name: Record<HeadKind, string> = {
    logistic: 'logistic regression',
    mlp: `MLP (${h.summary['hidden']} hidden units, ${h.summary['epochs']} epochs)`,
    ncm: 'nearest class mean',
    knn: 'k nearest neighbours',
  };
  const value =
    h.kind === 'logistic'
      ? h.summary['l2']
      : h.kind === 'mlp'
        ? h.summary['weightDecay']
        : h.kind === 'ncm'
          ? h.summary['temperature']
          : h.summary['k'];
  const how =
    h.cv.length === 0
      ? 'given'
      : h.kind === 'knn'
        ? 'chosen by leave-one-out cross-validation'
        : `chosen by ${h.folds}-fold cross-validation`;
  printSummary(o.json, int8 ? { ...report, int8 } : report, [
    ...skippedNow,
    `features: ${report.featureDim}-d at '${report.featureNode}' for ${x.examples} images (${x.computed} computed, ${x.cached} from the cache${x.skipped ? `, ${x.skipped} unreadable skipped` : ''}) in ${x.seconds.toFixed(1)} s`,
    `head: ${name[h.kind]} on ${report.examples.train} examples, ${HEAD_PARAM[h.kind]} ${value} ${how} in ${h.seconds.toFixed(1)} s`,
    ...(report.validation ? [formatMetrics(report.validation, 'validation').trimEnd()] : []),
    ...(report.test ? [formatMetrics(report.test, 'test').trimEnd()] : []),
    `saved ${out}/model.onnx and ${out}/labels.json`,
    ...(report.files ? [`report: ${out}/report.html (confusion matrix, per-class bars) and ${out}/report.json`] : []),
    ...(int8
      ? [
          `int8: saved ${int8.path} (${int8.bytes.ratio.toFixed(2)}× smaller; ${int8.method} calibration on ${int8.calibrationExamples} training examples)`,
        ]
      : []),
  ]);
}

export function trainFeaturesCommand(): Command {
  const cmd = new Command('features').description(
    "fit a head on the frozen backbone's features of labelled images and save the classifier (model.onnx, labels.json, report.html, report.json)",
  );
  commonTrainFlags(cmd, {
    model: 'pretrained model: an .onnx or .tflite file, a TF.js model.json, or a model folder',
    data: 'an image folder (one subfolder per class) or IDX images',
    out: 'folder to write (default graft-classifier)',
    testFraction: 0.2,
  });
  queueOptions(imageDataFlags(cmd))
    .option('--node <name>', 'value to cut the model at (default: the input of its final classifier)')
    .option('--val-fraction <x>', 'fraction of each class held out for validation', '0.1')
    .option('--batch-size <n>', 'images per onnxruntime run', '32')
    .addOption(
      new Option(
        '--head <kind>',
        'the head: logistic regression, a small MLP trained through the engine, nearest class mean, or k nearest neighbours (for very few labels)',
      )
        .choices([...HEAD_KINDS])
        .default('logistic'),
    )
    .option(
      '--head-grid <values>',
      "comma-separated values cross-validation tries for the head's hyperparameter (logistic: l2; mlp: weight decay; ncm: softmax temperature; knn: k)",
    )
    .option('--hidden <n>', '--head mlp: hidden units (default 128)')
    .option(
      '--int8',
      'also write an int8 (QDQ) copy of the saved folder to OUT-int8, calibrated on 200 training examples (as graft export --int8)',
    )
    .addHelpText(
      'after',
      '\nExample:\n  graft train features --model mobilenet_v2.tflite --data photos/ --labels-per-class 20 --out my-classifier\n',
    )
    .action(featuresCommand);
  return cmd;
}
