/**
 * `graft train --mode finetune` on image data (an image folder or IDX files), or with --cut,
 * --top-blocks, --full or --lora-rank: the top blocks (or the whole network, or LoRA adapters)
 * trained on activations cached at the cut, then exported as a classifier folder with a parity check.
 */
import { existsSync, statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { int, num } from './parse.js';
import type { TrainFlags } from './train.js';
import { loadLabelledImages, type LabelledImages } from '../data/labelled-images.js';
import { finetuneImages, lrFindImages, type ImageFinetuneOptions } from '../finetune/image-finetune.js';
import { finetuneOptionsFrom } from './train-finetune.js';
import { lrFindAscii, writeLrFindSvg } from '../train/lr-finder.js';
import { formatMetrics } from '../eval/metrics.js';
import { loadModel } from '../formats/load.js';
import { GraftError } from '../util/errors.js';

interface ImageFlags {
  cut?: string; topBlocks?: string; full?: boolean; augment?: boolean; views?: string;
  loraRank?: string; loraAlpha?: string; loraMatch?: string; headLrMult?: string; tolerance?: string;
}

/** Whether `graft train --mode finetune` should take the image path for these flags. */
export function wantsImageFinetune(o: TrainFlags): boolean {
  const f = o as TrainFlags & ImageFlags;
  if (f.cut !== undefined || f.topBlocks !== undefined || f.full || f.loraRank !== undefined || f.augment || f.views !== undefined) return true;
  if (o.labelsData) return true;
  if (existsSync(o.data) && statSync(o.data).isDirectory()) return true;
  return /idx\d-ubyte(\.gz)?$/.test(o.data);
}

/** Library options from the flags: everything of `--mode finetune` (schedule, early stopping, checkpoints…) plus the image ones. */
export function imageFinetuneOptionsFrom(o: TrainFlags): ImageFinetuneOptions {
  const f = o as TrainFlags & ImageFlags;
  const given = [f.cut !== undefined && '--cut', f.topBlocks !== undefined && '--top-blocks', f.full && '--full'].filter(Boolean);
  if (given.length > 1) throw new GraftError(`give only one of --cut, --top-blocks and --full (got ${given.join(', ')})`);
  const views = f.views !== undefined ? int(f.views, '--views') : undefined;
  if (views !== undefined && views < 1) throw new GraftError(`--views must be at least 1, got ${views}`);
  // the shared loop's options; the CSV-only ones (pixel preprocessing, its split fractions) dropped
  const { preprocess: _p, pixelMax: _m, testFraction: _t, valFraction: _v, labelsPerClass: _l, ...fitOpts } = finetuneOptionsFrom(o);
  return {
    ...fitOpts,
    ...(f.cut !== undefined ? { cut: f.cut } : {}),
    ...(f.topBlocks !== undefined ? { topBlocks: int(f.topBlocks, '--top-blocks') } : {}),
    ...(f.augment ? { augment: true } : {}),
    ...(views !== undefined ? { views } : {}),
    ...(o.cache ? { cacheDir: o.cache } : {}),
    ...(o.labelsPerClass ? { labelsPerClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    testFraction: num(o.testFraction ?? '0.2', '--test-fraction'),
    valFraction: num(o.valFraction, '--val-fraction'),
    ...(f.headLrMult !== undefined ? { headLrMult: num(f.headLrMult, '--head-lr-mult') } : {}),
    ...(f.loraRank !== undefined
      ? { lora: { rank: int(f.loraRank, '--lora-rank'), ...(f.loraAlpha !== undefined ? { alpha: num(f.loraAlpha, '--lora-alpha') } : {}), ...(f.loraMatch !== undefined ? { match: f.loraMatch } : {}) } }
      : {}),
    ...(f.tolerance !== undefined ? { tolerance: num(f.tolerance, '--tolerance') } : {}),
  };
}

async function lrFindImagesCommand(o: TrainFlags, opts: ImageFinetuneOptions, data: LabelledImages) {
  const f = o as TrainFlags & { lrFindPlot?: string; lrFindSteps?: string };
  const plot = f.lrFindPlot ?? 'lr-find.svg';
  const r = await lrFindImages(o.model, data, { ...opts, steps: int(f.lrFindSteps ?? '100', '--lr-find-steps') });
  writeLrFindSvg(plot, r);
  if (o.json) {
    process.stdout.write(JSON.stringify({ suggestion: r.suggestion, method: r.method, minLossLr: r.minLossLr, minLossLrDiv10: r.minLossLrDiv10, steps: r.lrs.length, diverged: r.diverged, plot }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `${lrFindAscii(r)}\nsuggested learning rate: ${r.suggestion.toExponential(2)} (steepest descent of the smoothed loss); minimum-loss rate / 10: ${r.minLossLrDiv10.toExponential(2)}\n` +
      `${r.lrs.length} steps on the cached activations${r.diverged ? ' (stopped: the loss diverged)' : ''}; plot saved to ${plot}\n`,
  );
}

export async function finetuneImagesCommand(o: TrainFlags) {
  const f = o as TrainFlags & ImageFlags & { lrFind?: boolean };
  const data = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
  });
  const opts = imageFinetuneOptionsFrom(o);
  const model = loadModel(o.model);
  if (f.full) opts.cut = model.dataInputs()[0]?.name;
  if (f.lrFind) return lrFindImagesCommand(o, opts, data);
  const out = o.out ?? 'graft-finetuned';
  if (/\.onnx$/i.test(out)) throw new GraftError(`--out ${out}: image fine-tuning saves a classifier folder (model.onnx and labels.json inside); give a folder name`);
  const tty = !o.json && process.stderr.isTTY;
  const cacheBar = tty ? new cliProgress.SingleBar({ format: 'cache |{bar}| {value}/{total} views | {cached} cached', stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
  const trainBar = tty ? new cliProgress.SingleBar({ format: 'train |{bar}| {value}/{total} steps | epoch {epoch} | loss {loss} | {speed} ex/s | lr {lr}', stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
  let cacheStarted = false;
  const say = (s: string) => { if (!o.json) process.stderr.write(s + '\n'); };
  const { report } = await finetuneImages(model, data, {
    ...opts,
    out,
    onCacheProgress: (p) => {
      if (!cacheBar) return;
      if (!cacheStarted) { cacheBar.start(p.total, 0, { cached: 0 }); cacheStarted = true; }
      cacheBar.update(p.done, { cached: p.cached });
    },
    onStart: ({ totalSteps, startStep, resumedEpoch }) => {
      cacheBar?.stop();
      if (resumedEpoch !== undefined) say(`resumed from the checkpoint of epoch ${resumedEpoch} (step ${startStep})`);
      else if (opts.checkpoint?.resume) say(`no checkpoint in ${opts.checkpoint.dir} yet: starting from the beginning`);
      trainBar?.start(totalSteps, startStep, { epoch: (resumedEpoch ?? 0) + 1, loss: '-', speed: '-', lr: '-' });
    },
    onStage: ({ epoch, stage, trainable }) => { if (opts.unfreezeEvery) say(`epoch ${epoch}: unfreezing stage ${stage + 1}, ${trainable.length} parameters train`); },
    onStep: ({ epoch, step, loss, lr, examplesPerSecond }) => trainBar?.update(step, { epoch, loss: loss.toFixed(4), speed: examplesPerSecond.toFixed(0), lr: lr.toExponential(2) }),
    onEpoch: ({ epoch, loss, valAccuracy, valLoss, seconds, improved, stopping, checkpoint }) => {
      if (trainBar) return;
      say(
        `epoch ${epoch}: mean loss ${loss.toFixed(4)}` + (valAccuracy !== undefined ? `, validation accuracy ${valAccuracy.toFixed(4)}, loss ${valLoss!.toFixed(4)}` : '') +
          ` (${seconds.toFixed(1)} s)` + (improved ? ' (best so far)' : '') + (stopping ? ' — early stopping' : '') + (checkpoint ? `; checkpoint ${checkpoint}` : ''),
      );
    },
  });
  trainBar?.stop();
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const lines = [
    `cut at ${report.cut} [${report.cutDims.join('×')}]: cached ${report.cache.computed + report.cache.cached} activations (${report.cache.cached} from the cache, ${report.cache.megabytes.toFixed(1)} MiB fp16) in ${report.cache.seconds.toFixed(1)} s`,
    `trained on ${report.examples.train} images × ${report.views} view(s): ${report.epochs} epochs, ${report.steps} steps in ${report.trainSeconds.toFixed(1)} s` +
      (report.resumedFrom ? ` (resumed after epoch ${report.resumedFrom})` : '') + (report.lora ? ` (LoRA: ${report.lora.params} adapter tensors + head)` : ''),
  ];
  if (report.bestEpoch !== undefined) lines.push(`early stopping kept the weights of epoch ${report.bestEpoch}`);
  if (report.probe) lines.push(`linear-probe head: train accuracy ${report.probe.trainAccuracy.toFixed(4)}${report.probe.valAccuracy !== undefined ? `, validation ${report.probe.valAccuracy.toFixed(4)}` : ''} (l2 ${report.probe.l2})`);
  if (report.validation) lines.push(`validation accuracy after fine-tuning: ${report.validation.accuracy.toFixed(4)} on ${report.examples.val} images`);
  if (report.test) lines.push(`test (${report.examples.test} images):`, formatMetrics(report.test));
  if (report.export) lines.push(`saved ${report.export.path} and ${report.export.labels} (parity with the training graph on ${report.export.checked} images: max |Δ ${report.export.compared}| ${report.export.maxAbsDiff.toExponential(2)} ≤ ${report.export.allowed.toExponential(2)})`);
  process.stdout.write(lines.join('\n') + '\n');
}

/**
 * Flags of image fine-tuning (registered from finetuneOptions in train-finetune.ts). `--lora-rank`
 * is registered once by the text mode (train-text.ts) and read here too: on image data it puts LoRA
 * adapters on the trainable part's MatMul/Gemm/1×1 conv weights (base frozen), merged at export.
 */
export function finetuneImageOptions(cmd: Command): Command {
  return cmd
    .option('--cut <node>', 'finetune, image data: cut at this node or value; the frozen part below runs once per image into the activation cache and only the part above trains')
    .option('--top-blocks <n>', 'finetune, image data: train the top N blocks (the cut is placed before them; default 2)')
    .option('--full', 'finetune, image data: train the whole network (the prepared images are cached, every epoch runs all of it)')
    .option('--augment', 'finetune, image data: augmented views (random resized crop, horizontal flip, colour jitter), precomputed once below the cut')
    .option('--views <k>', 'finetune, image data: views per training image (view 0 is the plain image; default 4 with --augment, else 1)')
    .option('--lora-alpha <a>', 'finetune: LoRA scale numerator (delta = alpha/r · A·B; default r)')
    .option('--lora-match <regex>', 'finetune: adapt only weights whose name (or node name) matches')
    .option('--head-lr-mult <x>', 'finetune, image data: the new head\'s learning rate relative to --lr', '1')
    .option('--tolerance <x>', 'finetune, image data: export parity tolerance: max |Δ| of the logits ≤ x · max(1, max |logit|)', '1e-4');
}
