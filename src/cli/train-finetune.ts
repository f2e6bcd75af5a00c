/** `graft train --mode finetune`: train the network itself on a labelled dataset. */
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { finetuneImageCsv, lrFindImageCsv, type FinetuneOptions } from '../finetune/classifier.js';
import { lrFindAscii, writeLrFindSvg } from '../train/lr-finder.js';
import { SCHEDULES, type ScheduleSpec } from '../train/schedule.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';
import { parseTrainable, type TrainFlags } from './train.js';
import { finetuneImageOptions, finetuneImagesCommand, wantsImageFinetune } from './train-finetune-images.js';

/** The flags this mode reads beside the shared ones (registered in finetuneOptions). */
interface FinetuneFlags {
  schedule?: string; warmup?: string; stepEpochs?: string; gamma?: string;
  lrFind?: boolean; lrFindPlot?: string; lrFindSteps?: string;
  earlyStopping?: string; patience?: string; minDelta?: string;
  classWeights?: string; lrDecay?: string; layerGroups?: string; unfreezeEvery?: string; bn?: string;
  checkpointDir?: string; resume?: boolean; keepCheckpoints?: string; newHead?: boolean; untie?: boolean;
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

function scheduleOf(f: FinetuneFlags): ScheduleSpec | undefined {
  const kind = f.schedule ?? 'constant';
  const warmup = f.warmup !== undefined ? int(f.warmup, '--warmup') : undefined;
  if (warmup !== undefined && warmup < 0) throw new GraftError(`--warmup must be a non-negative number of steps, got ${warmup}`);
  if (kind === 'constant') return warmup ? { kind, warmupSteps: warmup } : undefined;
  if (kind === 'cosine') return { kind, ...(warmup !== undefined ? { warmupSteps: warmup } : {}) };
  if (kind === 'one-cycle') return { kind };
  if (kind === 'step') return { kind, stepEpochs: int(f.stepEpochs ?? '10', '--step-epochs'), gamma: num(f.gamma ?? '0.1', '--gamma') };
  throw new GraftError(`--schedule must be one of ${SCHEDULES.join(', ')}, got '${kind}'`);
}

function classWeightsOf(s: string | undefined): 'balanced' | number[] | undefined {
  if (s === undefined) return undefined;
  if (s === 'balanced') return 'balanced';
  return s.split(',').map((w, i) => {
    const n = Number(w);
    if (w.trim() === '' || !Number.isFinite(n) || n < 0) throw new GraftError(`--class-weights: weight ${i + 1} ('${w}') is not a non-negative number; give 'balanced' or one weight per class, comma-separated`);
    return n;
  });
}

/** Library options from the command line's flags. */
export function finetuneOptionsFrom(o: TrainFlags): FinetuneOptions {
  const f = o as TrainFlags & FinetuneFlags;
  const wd = num(o.weightDecay, '--weight-decay');
  const schedule = scheduleOf(f);
  const classWeights = classWeightsOf(str(f.classWeights));
  if (f.resume && !f.checkpointDir) throw new GraftError('--resume needs --checkpoint-dir (the folder holding the checkpoints)');
  const positive = (v: string | undefined, flag: string) => {
    if (v !== undefined && int(v, flag) < 1) throw new GraftError(`${flag} must be at least 1, got ${v}`);
  };
  positive(f.patience, '--patience');
  positive(f.keepCheckpoints, '--keep-checkpoints');
  const bn = f.bn ?? 'frozen';
  if (bn !== 'frozen' && bn !== 'update') throw new GraftError(`--bn must be frozen or update, got '${bn}'`);
  return {
    epochs: int(o.epochs, '--epochs'),
    batchSize: int(o.batchSize, '--batch-size'),
    lr: num(o.lr, '--lr'),
    optimizer: o.optimizer === 'sgd' ? { kind: 'sgd', momentum: num(o.momentum, '--momentum'), weightDecay: wd } : { kind: 'adamw', weightDecay: wd },
    ...(o.clipNorm ? { clipNorm: num(o.clipNorm, '--clip-norm') } : {}),
    loss: { kind: 'cross-entropy', labelSmoothing: num(o.labelSmoothing, '--label-smoothing') },
    trainable: parseTrainable(o.trainable),
    ...(o.labelsPerClass ? { labelsPerClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    testFraction: num(o.testFraction ?? '0.3', '--test-fraction'),
    preprocess: o.preprocess,
    pixelMax: num(o.pixelMax, '--pixel-max'),
    seed: int(o.seed, '--seed'),
    ...(schedule ? { schedule } : {}),
    ...(classWeights ? { classWeights } : {}),
    batchNorm: bn === 'update' ? 'batch' : 'frozen',
    ...(f.earlyStopping
      ? {
          earlyStopping: { monitor: f.earlyStopping === 'loss' ? 'loss' : 'accuracy', patience: int(f.patience ?? '3', '--patience'), minDelta: num(f.minDelta ?? '0', '--min-delta') },
          valFraction: num(o.valFraction, '--val-fraction'),
        }
      : {}),
    ...(f.lrDecay !== undefined ? { lrDecay: num(f.lrDecay, '--lr-decay') } : {}),
    ...(f.layerGroups !== undefined ? { layerGroups: int(f.layerGroups, '--layer-groups') } : {}),
    ...(f.unfreezeEvery !== undefined ? { unfreezeEvery: int(f.unfreezeEvery, '--unfreeze-every') } : {}),
    ...(f.untie ? { untie: true } : {}),
    ...(f.checkpointDir
      ? { checkpoint: { dir: f.checkpointDir, resume: !!f.resume, ...(f.keepCheckpoints ? { keep: int(f.keepCheckpoints, '--keep-checkpoints') } : {}) } }
      : {}),
  };
}

async function lrFindCommand(o: TrainFlags, opts: FinetuneOptions) {
  const f = o as TrainFlags & FinetuneFlags;
  const plot = f.lrFindPlot ?? 'lr-find.svg';
  const r = await lrFindImageCsv(o.model, o.data, { ...opts, steps: int(f.lrFindSteps ?? '100', '--lr-find-steps') });
  writeLrFindSvg(plot, r);
  if (o.json) {
    process.stdout.write(JSON.stringify({ suggestion: r.suggestion, method: r.method, minLossLr: r.minLossLr, minLossLrDiv10: r.minLossLrDiv10, steps: r.lrs.length, diverged: r.diverged, plot }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `${lrFindAscii(r)}\n` +
      `suggested learning rate: ${r.suggestion.toExponential(2)} (steepest descent of the smoothed loss); ` +
      `minimum-loss rate / 10: ${r.minLossLrDiv10.toExponential(2)}\n` +
      `${r.lrs.length} steps${r.diverged ? ' (stopped: the loss diverged)' : ''}; plot saved to ${plot}\n`,
  );
}

export async function finetuneCommand(o: TrainFlags) {
  if (wantsImageFinetune(o)) return finetuneImagesCommand(o);
  const opts = finetuneOptionsFrom(o);
  if ((o as FinetuneFlags).lrFind) return lrFindCommand(o, opts);
  const bar = o.json || !process.stderr.isTTY ? null : new cliProgress.SingleBar(
    { format: 'epoch {epoch}/{epochs} |{bar}| {value}/{total} steps | loss {loss} | {speed} ex/s | lr {lr}', stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  const say = (s: string) => { if (!o.json) process.stderr.write(s + '\n'); };
  const report = await finetuneImageCsv(o.model, o.data, {
    ...opts,
    out: o.out ?? 'graft-model.onnx',
    ...((o as FinetuneFlags).newHead !== undefined ? { newHead: (o as FinetuneFlags).newHead! } : {}),
    onNewHead: ({ node, previousOutputs, classes, forced }) =>
      process.stderr.write(`${forced ? '--new-head' : `the model has ${previousOutputs} outputs but the data has ${classes} classes`}: ` +
        `training a new ${classes}-class head on its features ('${node}') instead of the old output\n`),
    onStart: ({ totalSteps, startStep, resumedEpoch }) => {
      if (resumedEpoch !== undefined) say(`resumed from the checkpoint of epoch ${resumedEpoch} (step ${startStep})`);
      else if (opts.checkpoint?.resume) say(`no checkpoint in ${opts.checkpoint.dir} yet: starting from the beginning`);
      bar?.start(totalSteps, startStep, { epoch: (resumedEpoch ?? 0) + 1, epochs: opts.epochs, loss: '-', speed: '-', lr: '-' });
    },
    onStage: ({ epoch, stage, trainable }) => { if (opts.unfreezeEvery) say(`epoch ${epoch}: unfreezing stage ${stage + 1}, ${trainable.length} parameters train`); },
    onStep: ({ epoch, step, loss, lr, examplesPerSecond }) =>
      bar?.update(step, { epoch, epochs: opts.epochs, loss: loss.toFixed(4), speed: examplesPerSecond.toFixed(0), lr: lr.toExponential(2) }),
    onEpoch: ({ epoch, loss, valAccuracy, valLoss, examplesPerSecond, improved, stopping, checkpoint }) => {
      if (bar) return;
      say(
        `epoch ${epoch}: mean loss ${loss.toFixed(4)}, ${examplesPerSecond.toFixed(0)} examples/s` +
          (valAccuracy !== undefined ? `, validation accuracy ${valAccuracy.toFixed(4)}, loss ${valLoss!.toFixed(4)}` : '') +
          (improved ? ' (best so far)' : '') + (stopping ? ' — early stopping' : '') + (checkpoint ? `; checkpoint ${checkpoint}` : ''),
      );
    },
  });
  bar?.stop();
  if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else
    process.stdout.write(
      `trained on ${report.trainExamples} examples in ${report.seconds.toFixed(1)} s (${report.steps} steps, ${report.epochs} epochs` +
        `${report.resumedFrom ? `, resumed after epoch ${report.resumedFrom}` : ''})\n` +
        (report.bestEpoch !== undefined ? `early stopping kept the weights of epoch ${report.bestEpoch} (validation accuracy ${report.valAccuracy?.toFixed(4)} on ${report.validationExamples})\n` : '') +
        `test accuracy: ${report.testAccuracy.toFixed(4)} (before fine-tuning: ${report.zeroShotAccuracy.toFixed(4)}${report.newHead ? ', untrained new head' : ''}) on ${report.testExamples} held-out examples\n` +
        `saved ${report.out}\n`,
    );
}

/** Flags only `--mode finetune` reads. */
export function finetuneOptions(cmd: Command): Command {
  return finetuneImageOptions(cmd)
    .addOption(new Option('--schedule <kind>', 'finetune: learning-rate schedule over steps (--lr is the base/peak rate; default constant, on image data cosine)').choices([...SCHEDULES]))
    .option('--warmup <steps>', 'finetune: linear warmup steps (constant and cosine schedules; cosine default: 5% of the steps)')
    .option('--step-epochs <n>', 'finetune, step schedule: multiply the rate by --gamma every N epochs', '10')
    .option('--gamma <x>', 'finetune, step schedule: the factor', '0.1')
    .option('--lr-find', 'finetune: run the learning-rate range test on the training split, print a suggestion and a plot, and exit')
    .option('--lr-find-plot <file.svg>', 'finetune: where --lr-find writes its plot', 'lr-find.svg')
    .option('--lr-find-steps <n>', 'finetune: steps of the range test', '100')
    .addOption(new Option('--early-stopping <metric>', 'finetune: stop when the validation metric stops improving and keep the best weights (validation: --val-fraction of each class)').choices(['accuracy', 'loss']))
    .option('--patience <n>', 'finetune: epochs without improvement before early stopping', '3')
    .option('--min-delta <x>', 'finetune: smallest change that counts as an improvement', '0')
    .option('--class-weights <spec>', "finetune: cross-entropy class weights: 'balanced' or one weight per class, comma-separated")
    .option('--lr-decay <x>', 'finetune: discriminative learning rates: each earlier layer group trains at x times the rate of the next')
    .option('--layer-groups <n>', 'finetune: split the trainable layers into N groups for --lr-decay and --unfreeze-every (default: one per weight layer)')
    .option('--unfreeze-every <epochs>', 'finetune: gradual unfreezing: train the last layer group first, then one more group every N epochs')
    .addOption(new Option('--bn <mode>', 'finetune: BatchNormalization running statistics: frozen (use the pretrained ones) or update (batch statistics while training)').choices(['frozen', 'update']).default('frozen'))
    .option('--checkpoint-dir <dir>', 'finetune: write a checkpoint per epoch into this folder')
    .option('--resume', 'finetune: continue from the newest checkpoint in --checkpoint-dir')
    .option('--keep-checkpoints <n>', 'finetune: keep only the newest N checkpoints')
    .option('--untie', 'finetune: give each parameter its own copy where the exporter tied several to one initializer through Identity nodes (torch.onnx merges equal-valued initializers, e.g. the zero biases of a fresh model); without it they train as one, with a warning')
    .option('--new-head', 'finetune (CSV data): put a new head on the model\'s features even when its output size matches the classes (a new task); by default a new head replaces the old output only when the sizes differ')
    .option('--no-new-head', 'finetune (CSV data): never replace the head (fail when the sizes differ)');
}
