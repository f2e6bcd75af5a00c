/**
 * `graft train images`: fine-tune a pretrained image network on a labelled dataset (a CSV of square
 * grey pixel rows, an image folder, or IDX files) and save the classifier: one call into
 * trainImageClassifier (src/finetune/train-images.ts; with --queue, on `graft worker`s:
 * src/scale/finetune.ts), or lrFindImageData with --lr-find. The
 * fine-tuning flags are declared here once (imageFitFlags) and also configure `graft train auto`'s
 * fine-tuned candidate.
 */
import { Command, Option } from 'commander';
import { formatMetrics } from '../eval/metrics.js';
import { lrFindImageData, IMAGE_TRAIN_DEFAULTS, type TrainImagesOptions } from '../finetune/train-images.js';
import { lrFindAscii, writeLrFindSvg } from '../train/lr-finder.js';
import { SCHEDULES, type ScheduleSpec } from '../train/schedule.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';
import { imagesHereOrOnQueue, queueOptions, type QueueFlags } from './worker.js';
import {
  commonTrainFlags,
  checkpointFlags,
  splitOf,
  fraction,
  positiveInt,
  parseTrainable,
  printSummary,
  type CommonTrainFlags,
} from './train-common.js';
import { progressBar, showsProgress } from '../util/progress.js';

/** The fine-tuning flags (images and auto). */
export interface ImageFitFlags {
  epochs: string;
  batchSize: string;
  lr: string;
  optimizer: 'adamw' | 'sgd';
  momentum: string;
  weightDecay: string;
  clipNorm?: string;
  labelSmoothing: string;
  trainable: string;
  valFraction: string;
  schedule?: (typeof SCHEDULES)[number];
  warmup?: string;
  warmupFraction?: string;
  stepEpochs: string;
  gamma: string;
  earlyStopping?: 'accuracy' | 'loss';
  patience: string;
  minDelta: string;
  classWeights?: string;
  lrDecay?: string;
  layerGroups?: string;
  unfreezeEvery?: string;
  bn: 'frozen' | 'update';
  checkpointDir?: string;
  resume?: boolean;
  keepCheckpoints?: string;
  untie?: boolean;
  cut?: string;
  topBlocks?: string;
  full?: boolean;
  augment?: boolean;
  views?: string;
  loraRank?: string;
  loraAlpha?: string;
  loraMatch?: string;
  headLrMult: string;
  tolerance: string;
  labelsData?: string;
  maxPerClass?: string;
  cache?: string;
}

interface ImagesFlags extends CommonTrainFlags, ImageFitFlags, QueueFlags {
  preprocess: 'mnist' | 'stretch';
  pixelMax: string;
  newHead?: boolean;
  lrFind?: boolean;
  lrFindPlot: string;
  lrFindSteps: string;
}

/** Image data flags (images, features, auto). */
export function imageDataFlags(cmd: Command): Command {
  return cmd
    .option('--labels-data <file>', 'IDX data: the labels file (default: guessed from the images file name)')
    .option('--max-per-class <n>', 'image data: use only the first N examples of each class of the dataset')
    .option('--cache <dir>', 'activation/feature cache folder (a second run over the same images computes nothing)');
}

/** The fine-tuning flags with their defaults, declared once. */
export function imageFitFlags(cmd: Command): Command {
  cmd
    .option('--epochs <n>', 'passes over the training data', '10')
    .option('--batch-size <n>', 'examples per step', '32')
    .option('--lr <x>', 'learning rate (the base/peak rate of --schedule)', '1e-3')
    .addOption(new Option('--optimizer <kind>', 'optimizer').choices(['adamw', 'sgd']).default('adamw'))
    .option('--momentum <x>', 'SGD momentum', '0.9')
    .option('--weight-decay <x>', 'weight decay', '0.01')
    .option('--clip-norm <x>', 'clip the global gradient norm')
    .option('--label-smoothing <x>', 'label smoothing for cross-entropy', '0')
    .option(
      '--trainable <spec>',
      'what trains: all, a regular expression over parameter names, or after:<node or value>',
      'all',
    )
    .option(
      '--val-fraction <x>',
      'fraction of each class held out for validation (CSV data: only with --early-stopping)',
      '0.1',
    )
    .addOption(
      new Option(
        '--schedule <kind>',
        'learning-rate schedule over steps (default constant, on image data cosine)',
      ).choices([...SCHEDULES]),
    )
    .option('--warmup <steps>', 'linear warmup steps (constant and cosine schedules; cosine default: 5% of the steps)')
    .option(
      '--warmup-fraction <x>',
      'linear schedule: warm up over this fraction of all steps, then decay linearly to 0 (default 0.1)',
    )
    .option('--step-epochs <n>', 'step schedule: multiply the rate by --gamma every N epochs', '10')
    .option('--gamma <x>', 'step schedule: the factor', '0.1')
    .addOption(
      new Option(
        '--early-stopping <metric>',
        'stop when the validation metric stops improving and keep the best weights',
      ).choices(['accuracy', 'loss']),
    )
    .option('--patience <n>', 'epochs without improvement before early stopping', '3')
    .option('--min-delta <x>', 'smallest change that counts as an improvement', '0')
    .option(
      '--class-weights <spec>',
      "cross-entropy class weights: 'balanced' or one weight per class, comma-separated",
    )
    .option(
      '--lr-decay <x>',
      'discriminative learning rates: each earlier layer group trains at x times the rate of the next',
    )
    .option(
      '--layer-groups <n>',
      'split the trainable layers into N groups for --lr-decay and --unfreeze-every (default: one per weight layer)',
    )
    .option(
      '--unfreeze-every <epochs>',
      'gradual unfreezing: train the last layer group first, then one more group every N epochs',
    )
    .addOption(
      new Option(
        '--bn <mode>',
        'BatchNormalization running statistics: frozen (the pretrained ones) or update (batch statistics while training)',
      )
        .choices(['frozen', 'update'])
        .default('frozen'),
    );
  checkpointFlags(cmd);
  return cmd
    .option(
      '--untie',
      'give each parameter its own copy where the exporter tied several to one initializer through Identity nodes; without it they train as one, with a warning',
    )
    .option(
      '--cut <node>',
      'image data: cut at this node or value; the frozen part below runs once per image into the activation cache and only the part above trains',
    )
    .option('--top-blocks <n>', 'image data: train the top N blocks (the cut is placed before them; default 2)')
    .option(
      '--full',
      'image data: train the whole network (the prepared images are cached, every epoch runs all of it)',
    )
    .option(
      '--augment',
      'image data: augmented views (random resized crop, horizontal flip, colour jitter), precomputed once below the cut',
    )
    .option(
      '--views <k>',
      'image data: views per training image (view 0 is the plain image; default 4 with --augment, else 1)',
    )
    .option(
      '--lora-rank <r>',
      "image data: LoRA adapters of this rank on the trainable part's MatMul/Gemm/1×1 conv weights (base frozen), merged at export",
    )
    .option('--lora-alpha <a>', 'LoRA scale numerator (delta = alpha/r · A·B; default r)')
    .option('--lora-match <regex>', 'LoRA: adapt only weights whose name (or node name) matches')
    .option('--head-lr-mult <x>', "image data: the new head's learning rate relative to --lr", '1')
    .option(
      '--tolerance <x>',
      'image data: export parity tolerance: max |Δ| of the logits ≤ x · max(1, max |logit|)',
      '1e-4',
    );
}

/** The library schedule of the --schedule/--warmup/--warmup-fraction/--step-epochs/--gamma flags. */
export function scheduleOf(
  f: Pick<ImageFitFlags, 'schedule' | 'warmup' | 'warmupFraction' | 'stepEpochs' | 'gamma'>,
): ScheduleSpec | undefined {
  const kind = f.schedule ?? 'constant';
  const warmup = f.warmup !== undefined ? int(f.warmup, '--warmup') : undefined;
  if (warmup !== undefined && warmup < 0)
    throw new GraftError(`--warmup must be a non-negative number of steps, got ${warmup}`);
  if (f.warmupFraction !== undefined && kind !== 'linear')
    throw new GraftError(
      `--warmup-fraction is for --schedule linear (got --schedule ${kind})`,
      'for the constant and cosine schedules give --warmup <steps>',
    );
  if (kind === 'linear') {
    if (warmup !== undefined)
      throw new GraftError(
        '--schedule linear warms up over a fraction of the steps: give --warmup-fraction, not --warmup',
      );
    const frac = f.warmupFraction !== undefined ? num(f.warmupFraction, '--warmup-fraction') : undefined;
    if (frac !== undefined && !(frac >= 0 && frac < 1))
      throw new GraftError(`--warmup-fraction must be in [0, 1), got ${frac}`);
    return { kind, ...(frac !== undefined ? { warmupFraction: frac } : {}) };
  }
  if (kind === 'constant') return warmup ? { kind, warmupSteps: warmup } : undefined;
  if (kind === 'cosine') return { kind, ...(warmup !== undefined ? { warmupSteps: warmup } : {}) };
  if (kind === 'one-cycle') return { kind };
  return { kind: 'step', stepEpochs: int(f.stepEpochs, '--step-epochs'), gamma: num(f.gamma, '--gamma') };
}

function classWeightsOf(s: string | undefined): 'balanced' | number[] | undefined {
  if (s === undefined) return undefined;
  if (s === 'balanced') return 'balanced';
  return s.split(',').map((w, i) => {
    const n = Number(w);
    if (w.trim() === '' || !Number.isFinite(n) || n < 0)
      throw new GraftError(
        `--class-weights: weight ${i + 1} ('${w}') is not a non-negative number; give 'balanced' or one weight per class, comma-separated`,
      );
    return n;
  });
}

/** Library options from the fine-tuning flags (images and auto). */
export function imageFitOptions(f: ImageFitFlags & CommonTrainFlags): TrainImagesOptions {
  const wd = num(f.weightDecay, '--weight-decay');
  const schedule = scheduleOf(f);
  const classWeights = classWeightsOf(f.classWeights);
  if (f.resume && !f.checkpointDir)
    throw new GraftError('--resume needs --checkpoint-dir (the folder holding the checkpoints)');
  const given = [
    f.cut !== undefined && '--cut',
    f.topBlocks !== undefined && '--top-blocks',
    f.full && '--full',
  ].filter(Boolean);
  if (given.length > 1)
    throw new GraftError(`give only one of --cut, --top-blocks and --full (got ${given.join(', ')})`);
  const earlyStopping = f.earlyStopping
    ? {
        monitor: f.earlyStopping,
        patience: positiveInt(f.patience, '--patience'),
        minDelta: num(f.minDelta, '--min-delta'),
      }
    : undefined;
  return {
    ...splitOf(f),
    epochs: int(f.epochs, '--epochs'),
    batchSize: positiveInt(f.batchSize, '--batch-size'),
    lr: num(f.lr, '--lr'),
    optimizer:
      f.optimizer === 'sgd'
        ? { kind: 'sgd', momentum: num(f.momentum, '--momentum'), weightDecay: wd }
        : { kind: 'adamw', weightDecay: wd },
    ...(f.clipNorm ? { clipNorm: num(f.clipNorm, '--clip-norm') } : {}),
    loss: { kind: 'cross-entropy', labelSmoothing: num(f.labelSmoothing, '--label-smoothing') },
    trainable: parseTrainable(f.trainable),
    valFraction: fraction(f.valFraction, '--val-fraction'),
    ...(schedule ? { schedule } : {}),
    ...(classWeights ? { classWeights } : {}),
    batchNorm: f.bn === 'update' ? 'batch' : 'frozen',
    ...(earlyStopping ? { earlyStopping } : {}),
    ...(f.lrDecay !== undefined ? { lrDecay: num(f.lrDecay, '--lr-decay') } : {}),
    ...(f.layerGroups !== undefined ? { layerGroups: int(f.layerGroups, '--layer-groups') } : {}),
    ...(f.unfreezeEvery !== undefined ? { unfreezeEvery: int(f.unfreezeEvery, '--unfreeze-every') } : {}),
    ...(f.untie ? { untie: true } : {}),
    ...(f.checkpointDir
      ? {
          checkpoint: {
            dir: f.checkpointDir,
            resume: !!f.resume,
            ...(f.keepCheckpoints ? { keep: positiveInt(f.keepCheckpoints, '--keep-checkpoints') } : {}),
          },
        }
      : {}),
    ...(f.cut !== undefined ? { cut: f.cut } : {}),
    ...(f.topBlocks !== undefined ? { topBlocks: int(f.topBlocks, '--top-blocks') } : {}),
    ...(f.full ? { full: true } : {}),
    ...(f.augment ? { augment: true } : {}),
    ...(f.views !== undefined ? { views: positiveInt(f.views, '--views') } : {}),
    ...(f.loraRank !== undefined
      ? {
          lora: {
            rank: int(f.loraRank, '--lora-rank'),
            ...(f.loraAlpha !== undefined ? { alpha: num(f.loraAlpha, '--lora-alpha') } : {}),
            ...(f.loraMatch !== undefined ? { match: f.loraMatch } : {}),
          },
        }
      : {}),
    headLrMult: num(f.headLrMult, '--head-lr-mult'),
    tolerance: num(f.tolerance, '--tolerance'),
    ...(f.labelsData ? { labelsData: f.labelsData } : {}),
    ...(f.maxPerClass ? { maxPerClass: positiveInt(f.maxPerClass, '--max-per-class') } : {}),
    ...(f.cache ? { cacheDir: f.cache } : {}),
  };
}

async function lrFind(o: ImagesFlags, opts: TrainImagesOptions): Promise<void> {
  const r = await lrFindImageData(o.model, o.data, { ...opts, steps: positiveInt(o.lrFindSteps, '--lr-find-steps') });
  writeLrFindSvg(o.lrFindPlot, r);
  printSummary(
    o.json,
    {
      suggestion: r.suggestion,
      method: r.method,
      minLossLr: r.minLossLr,
      minLossLrDiv10: r.minLossLrDiv10,
      steps: r.lrs.length,
      diverged: r.diverged,
      plot: o.lrFindPlot,
    },
    [
      lrFindAscii(r),
      `suggested learning rate: ${r.suggestion.toExponential(2)} (steepest descent of the smoothed loss); minimum-loss rate / 10: ${r.minLossLrDiv10.toExponential(2)}`,
      `${r.lrs.length} steps${r.data === 'images' ? ' on the cached activations' : ''}${r.diverged ? ' (stopped: the loss diverged)' : ''}; plot saved to ${o.lrFindPlot}`,
    ],
  );
}

async function trainImages(o: ImagesFlags): Promise<void> {
  const opts: TrainImagesOptions = {
    ...imageFitOptions(o),
    preprocess: o.preprocess,
    pixelMax: num(o.pixelMax, '--pixel-max'),
    ...(o.newHead !== undefined ? { newHead: o.newHead } : {}),
  };
  if (o.lrFind && o.queue) throw new GraftError('--lr-find runs here, not on the queue: leave out --queue');
  if (o.lrFind) return lrFind(o, opts);
  // the cache bar here; the training bar is the loop's Progress callback (one bar for every training)
  const cacheBar = progressBar('cache |{bar}| {value}/{total} views | {cached} cached', { quiet: o.json });
  const trainBar = showsProgress(o.json);
  const say = (s: string) => {
    if (!o.json) process.stderr.write(s + '\n');
  };
  const r = await imagesHereOrOnQueue(o, {
    ...opts,
    ...(o.out !== undefined ? { out: o.out } : {}),
    progress: { quiet: !!o.json, label: 'train' },
    onNewHead: ({ node, previousOutputs, classes, forced }) =>
      process.stderr.write(
        `${forced ? '--new-head' : `the model has ${previousOutputs} outputs but the data has ${classes} classes`}: ` +
          `training a new ${classes}-class head on its features ('${node}') instead of the old output\n`,
      ),
    onCacheProgress: (p) => cacheBar?.update(p.done, p.total, { cached: p.cached }),
    onStart: ({ startStep, resumedEpoch }) => {
      cacheBar?.stop();
      if (resumedEpoch !== undefined) say(`resumed from the checkpoint of epoch ${resumedEpoch} (step ${startStep})`);
      else if (opts.checkpoint?.resume) say(`no checkpoint in ${opts.checkpoint.dir} yet: starting from the beginning`);
    },
    onStage: ({ epoch, stage, trainable }) => {
      if (opts.unfreezeEvery)
        say(`epoch ${epoch}: unfreezing stage ${stage + 1}, ${trainable.length} parameters train`);
    },
    onEpoch: ({ epoch, loss, valAccuracy, valLoss, seconds, improved, stopping, checkpoint }) => {
      if (trainBar) return;
      say(
        `epoch ${epoch}: mean loss ${loss.toFixed(4)}` +
          (valAccuracy !== undefined
            ? `, validation accuracy ${valAccuracy.toFixed(4)}, loss ${valLoss!.toFixed(4)}`
            : '') +
          ` (${seconds.toFixed(1)} s)` +
          (improved ? ' (best so far)' : '') +
          (stopping ? ' — early stopping' : '') +
          (checkpoint ? `; checkpoint ${checkpoint}` : ''),
      );
    },
  });
  cacheBar?.stop();
  const saved = `saved ${r.files.join(', ')}`;
  if (r.data === 'csv') {
    const t = r.report;
    printSummary(o.json, { ...t, files: r.files }, [
      `trained on ${t.trainExamples} examples in ${t.seconds.toFixed(1)} s (${t.steps} steps, ${t.epochs} epochs${t.resumedFrom ? `, resumed after epoch ${t.resumedFrom}` : ''})`,
      ...(t.bestEpoch !== undefined
        ? [
            `early stopping kept the weights of epoch ${t.bestEpoch} (validation accuracy ${t.valAccuracy?.toFixed(4)} on ${t.validationExamples})`,
          ]
        : []),
      `test accuracy: ${t.testAccuracy.toFixed(4)} (before fine-tuning: ${t.zeroShotAccuracy.toFixed(4)}${t.newHead ? ', untrained new head' : ''}) on ${t.testExamples} held-out examples`,
      saved,
    ]);
    return;
  }
  const t = r.report;
  const lines = [
    `cut at ${t.cut} [${t.cutDims.join('×')}]: cached ${t.cache.computed + t.cache.cached} activations (${t.cache.cached} from the cache, ${t.cache.megabytes.toFixed(1)} MiB fp16) in ${t.cache.seconds.toFixed(1)} s`,
    `trained on ${t.examples.train} images × ${t.views} view(s): ${t.epochs} epochs, ${t.steps} steps in ${t.trainSeconds.toFixed(1)} s` +
      (t.resumedFrom ? ` (resumed after epoch ${t.resumedFrom})` : '') +
      (t.lora ? ` (LoRA: ${t.lora.params} adapter tensors + head)` : ''),
  ];
  if (t.bestEpoch !== undefined) lines.push(`early stopping kept the weights of epoch ${t.bestEpoch}`);
  if (t.probe)
    lines.push(
      `linear-probe head: train accuracy ${t.probe.trainAccuracy.toFixed(4)}${t.probe.valAccuracy !== undefined ? `, validation ${t.probe.valAccuracy.toFixed(4)}` : ''} (l2 ${t.probe.l2})`,
    );
  if (t.validation)
    lines.push(
      `validation accuracy after fine-tuning: ${t.validation.accuracy.toFixed(4)} on ${t.examples.val} images`,
    );
  if (t.test) lines.push(`test (${t.examples.test} images):`, formatMetrics(t.test).trimEnd());
  if (t.export)
    lines.push(
      `parity with the training graph on ${t.export.checked} images: max |Δ ${t.export.compared}| ${t.export.maxAbsDiff.toExponential(2)} ≤ ${t.export.allowed.toExponential(2)}`,
    );
  lines.push(saved);
  printSummary(o.json, { ...t, files: r.files }, lines);
}

export function trainImagesCommand(): Command {
  const cmd = new Command('images').description(
    'fine-tune a pretrained image network on labelled images and save the classifier (model.onnx, labels.json, report.html, report.json)',
  );
  commonTrainFlags(cmd, {
    model: 'pretrained model: an .onnx or .tflite file, a TF.js model.json, or a model folder',
    data: 'a CSV (optionally .gz) of square grey images, one row of pixels then the label; an image folder (one subfolder per class); or IDX images',
    out: `folder to write (default ${IMAGE_TRAIN_DEFAULTS.out}); CSV data: a path ending in .onnx writes that model file only`,
    testFraction: `${IMAGE_TRAIN_DEFAULTS.imageTestFraction}; CSV data ${IMAGE_TRAIN_DEFAULTS.csvTestFraction}`,
  });
  queueOptions(imageDataFlags(cmd));
  imageFitFlags(cmd)
    .addOption(
      new Option('--preprocess <kind>', 'CSV data: input preparation').choices(['mnist', 'stretch']).default('mnist'),
    )
    .option('--pixel-max <x>', 'CSV data: largest pixel value in the data (8×8 digits: 16)', '16')
    .option(
      '--new-head',
      "CSV data: put a new head on the model's features even when its output size matches the classes (a new task); by default a new head replaces the old output only when the sizes differ",
    )
    .option('--no-new-head', 'CSV data: never replace the head (fail when the sizes differ)')
    .option(
      '--lr-find',
      'run the learning-rate range test on the training split, print a suggestion and a plot, and exit',
    )
    .option('--lr-find-plot <file.svg>', 'where --lr-find writes its plot', 'lr-find.svg')
    .option('--lr-find-steps <n>', 'steps of the range test', '100')
    .addHelpText(
      'after',
      '\nExample:\n  graft train images --model examples/assets/models/onnxjs-demo/mnist.onnx \\\n' +
        '    --data examples/assets/datasets/digits-8x8/digits.csv.gz --pixel-max 16 --labels-per-class 50 --epochs 30 --out out/digits\n',
    )
    .action(trainImages);
  return cmd;
}
