/**
 * `graft adapt`: domain adaptation from the command line: the flags, one call into adaptImages
 * (src/adapt/images.ts: feature-level, source-free and in-network methods with label-free selection),
 * the progress bar and the summary.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import {
  adaptImages,
  ADAPT_METHODS,
  SCRATCH_MODEL,
  WITH_SOURCE_METHODS,
  type AdaptMethod,
  type AdaptImagesOptions,
} from '../adapt/images.js';
import { PIXEL_SHIFTS, type PixelShift } from '../data/shifts.js';
import { int, num } from './parse.js';
import { progressBar } from '../util/progress.js';

interface AdaptFlags {
  method: AdaptMethod;
  model: string;
  target: string;
  source?: string;
  targetLabels?: string;
  sourceLabels?: string;
  out?: string;
  json?: boolean;
  node?: string;
  preprocess: 'mnist' | 'stretch';
  pixelMax: string;
  inputMax: string;
  maxExamples?: string;
  shiftTarget?: PixelShift;
  lr?: string;
  steps?: string;
  threshold?: string;
  lambda?: string;
  dims?: string;
  seed: string;
  batchSize: string;
  weight?: string;
  epochs?: string;
  select?: 'reverse-validation' | 'im';
  baseline?: boolean;
}

const list = (v: string | undefined, flag: string) =>
  v === undefined ? undefined : v.split(',').map((s) => num(s.trim(), flag));

/** The library's options from the flags (numbers parsed; which method reads which is checked by adaptImages). */
function adaptOptionsOf(o: AdaptFlags): AdaptImagesOptions {
  const given = <K extends keyof AdaptImagesOptions>(k: K, v: AdaptImagesOptions[K] | undefined) =>
    v === undefined ? {} : { [k]: v };
  return {
    method: o.method,
    ...given('source', o.source),
    ...given('sourceLabels', o.sourceLabels),
    ...given('targetLabels', o.targetLabels),
    ...given('out', o.out),
    ...given('node', o.node),
    preprocess: o.preprocess,
    pixelMax: num(o.pixelMax, '--pixel-max'),
    ...(o.model === SCRATCH_MODEL ? {} : { inputMax: num(o.inputMax, '--input-max') }),
    ...given('maxExamples', o.maxExamples === undefined ? undefined : int(o.maxExamples, '--max-examples')),
    ...given('shiftTarget', o.shiftTarget),
    // dann, mmd, deep-coral train at one learning rate; the others choose from a list
    ...given('lr', o.lr !== undefined && WITH_SOURCE_METHODS.has(o.method) ? [num(o.lr, '--lr')] : list(o.lr, '--lr')),
    ...given('steps', list(o.steps, '--steps')),
    ...given('threshold', list(o.threshold, '--threshold')),
    ...given('lambda', list(o.lambda, '--lambda')),
    ...given('dims', list(o.dims, '--dims')),
    ...given('weight', list(o.weight, '--weight')),
    seed: int(o.seed, '--seed'),
    batchSize: int(o.batchSize, '--batch-size'),
    ...given('epochs', o.epochs === undefined ? undefined : int(o.epochs, '--epochs')),
    ...given('select', o.select),
    ...given('baseline', o.baseline),
  };
}

export async function adaptCommand(o: AdaptFlags) {
  const bar = progressBar(`${o.method} |{bar}| {value} candidates | best score {best}`, { quiet: o.json });
  let best = -Infinity,
    seen = 0;
  const { report } = await adaptImages(o.model, o.target, {
    ...adaptOptionsOf(o),
    onStart: () => bar?.update(0, 0, { best: '-' }),
    onCandidate: (c) => {
      best = Math.max(best, c.score);
      seen++;
      bar?.update(seen, seen, { best: best.toFixed(3) });
    },
  });
  bar?.stop();
  if (o.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const acc = report.accuracy;
  process.stdout.write(
    `${o.method} (${report.level}-level) on ${report.targetExamples} target images in ${report.seconds.toFixed(1)} s\n` +
      (report.keptUnadapted
        ? `kept the unadapted model (${o.method} did not beat it by the no-harm margin without target labels)\n`
        : `chosen without target labels: ${JSON.stringify(report.chosen)} (${report.selection})\n`) +
      (report.noHarm ? `no-harm rule: ${report.noHarm.reason}\n` : '') +
      (acc
        ? acc.before !== undefined
          ? `target accuracy: ${acc.before.toFixed(3)} before → ${acc.after.toFixed(3)} after\n`
          : `target accuracy: ${acc.after.toFixed(3)}\n`
        : '') +
      (o.out ? `saved ${join(o.out, 'model.onnx')} and ${join(o.out, 'report.json')}\n` : ''),
  );
}

export function adaptOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--method <method>', 'adaptation method').choices([...ADAPT_METHODS]).makeOptionMandatory())
    .requiredOption(
      '--model <path>',
      `the trained classifier (.onnx, .tflite, TF.js, folder); input [batch, 1, S, S]; with dann, mmd, deep-coral also '${SCRATCH_MODEL}': a small CNN trained from scratch on the source (images scaled 0–1; --input-max does not apply)`,
    )
    .requiredOption(
      '--target <path>',
      'target images, unlabelled for the method: a CSV of grey images (label column ignored) or IDX images',
    )
    .option(
      '--source <path>',
      'feature-level methods and dann, mmd, deep-coral: labelled source images (CSV, or IDX with its labels file beside it)',
    )
    .option('--source-labels <file>', 'IDX labels file of --source (default: guessed from the images file name)')
    .option(
      '--target-labels <file|data>',
      'labels for the final report only: an IDX labels file, a text file (one class per line), or "data" (the target file\'s own labels)',
    )
    .option('--out <dir>', 'write DIR/model.onnx (the adapted model, or backbone + adapted head) and DIR/report.json')
    .option(
      '--node <name>',
      'feature-level methods: value to cut the model at; dann, mmd, deep-coral: the feature value aligned (default: the input of its final classifier)',
    )
    .option(
      '--lr <list>',
      'entropy, self-training (network): learning rates to choose from, comma-separated; dann, mmd, deep-coral: the learning rate (AdamW, default 1e-3)',
    )
    .option(
      '--steps <list>',
      'entropy: step counts to score as checkpoints, comma-separated (the largest is the run length); dann, mmd, deep-coral: epochs to score as checkpoints (default every 2nd and the last)',
    )
    .option(
      '--weight <list>',
      'dann, mmd, deep-coral: alignment weights to choose from (defaults: dann 0.3,1; mmd 1,3; deep-coral 30,300)',
    )
    .option('--epochs <n>', 'dann, mmd, deep-coral: training epochs per weight (one pass over the source each)', '6')
    .addOption(
      new Option('--select <criterion>', 'dann, mmd, deep-coral: label-free criterion for weight and checkpoint')
        .choices(['reverse-validation', 'im'])
        .default('reverse-validation'),
    )
    .option(
      '--no-baseline',
      'dann, mmd, deep-coral with --target-labels: skip the source-only training run the report compares with',
    )
    .option('--threshold <list>', 'self-training: confidence thresholds to choose from')
    .option('--lambda <list>', 'coral, coral-self-training: covariance regularizations to choose from')
    .option('--dims <list>', 'subspace: subspace dimensions to choose from')
    .addOption(
      new Option(
        '--shift-target <kind>',
        'apply a documented shift to the target images first (experiments; see docs/adaptation.md)',
      ).choices([...PIXEL_SHIFTS]),
    )
    .option('--max-examples <n>', 'use only the first N images of each dataset')
    .addOption(
      new Option('--preprocess <kind>', 'CSV images: fit into the MNIST 20/28 box or stretch')
        .choices(['mnist', 'stretch'])
        .default('mnist'),
    )
    .option('--pixel-max <x>', 'CSV images: largest pixel value in the file (8×8 digits: 16)', '16')
    .option(
      '--input-max <x>',
      'value of a full-intensity pixel for the model (mnist.onnx: 255; a model trained on 0–1 images: 1)',
      '255',
    )
    .option(
      '--batch-size <n>',
      'images per onnxruntime run; dann, mmd, deep-coral: rows per training step, half source and half target',
      '128',
    )
    .option('--seed <n>', 'random seed', '0')
    .option('--json', 'print the report as JSON');
}
