/**
 * `graft adapt`: domain adaptation from the command line. Feature-level methods (coral, subspace, coral-self-training,
 * self-training with --source) fit a logistic head on the model's features of the labelled source
 * and the unlabelled target; source-free methods (adabn, entropy, self-training without --source)
 * adapt the network itself to the target images; in-network methods with labelled source data (dann,
 * mmd, deep-coral) train the network on source + target batches (src/adapt/with-source.ts).
 * Hyperparameters and checkpoints are chosen without target labels (reverse validation, or
 * information maximization); --target-labels is read only for the report.
 *
 * Datasets: a CSV of square grey images (pixel columns then a label, optionally .gz) or IDX images
 * (labels file guessed from the name); the model takes [batch, 1, S, S] grey images.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { Graph } from '../graph/graph.js';
import { loadModel } from '../formats/load.js';
import { atomicWrite, writeOnnx } from '../formats/onnx.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { loadPixelDataset } from '../data/pixel-dataset.js';
import { readIdx, parseIdx } from '../data/idx.js';
import { extractFeatures, defaultFeatureNode } from '../features/extract.js';
import { exportFeatureClassifier } from '../features/classifier.js';
import { getLabels } from '../formats/preprocess.js';
import { exampleDims, stack } from '../train/fit.js';
import { adaptFeatures, type FeatureMethod } from '../adapt/features.js';
import { sourceOnly } from '../adapt/feature-head.js';
import { adaptNetwork, type NetworkMethod } from '../adapt/source-free.js';
import { predictClassProba } from '../adapt/predict.js';
import { adaptWithSource, type SourceNetworkMethod } from '../adapt/with-source.js';
import { shiftImages, PIXEL_SHIFTS, type PixelShift } from '../data/shifts.js';
import { smallCnn } from '../heads/scratch-cnn.js';
import { int, num } from './parse.js';
import { progressBar } from '../util/progress.js';
import { GraftError } from '../util/errors.js';
import { classCount } from '../heads/head.js';
import { argmax, accuracy } from '../util/vectors.js';

export const ADAPT_METHODS = [
  'coral',
  'subspace',
  'self-training',
  'coral-self-training',
  'entropy',
  'adabn',
  'dann',
  'mmd',
  'deep-coral',
] as const;
const WITH_SOURCE = new Set<string>(['dann', 'mmd', 'deep-coral']);

interface AdaptFlags {
  method: (typeof ADAPT_METHODS)[number];
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

interface Images {
  x: Float32Array[];
  y?: number[];
}

/** --model small-cnn: the small CNN of src/heads/scratch-cnn.ts, trained from scratch on the source (inputs 0–1). */
const SCRATCH = 'small-cnn';
const inputMaxOf = (o: AdaptFlags) => (o.model === SCRATCH ? 1 : num(o.inputMax, '--input-max'));

/** A flag that must be a whole number ≥ 1. */
function positive(v: string, flag: string): number {
  const n = int(v, flag);
  if (n < 1) throw new GraftError(`${flag} must be at least 1, got ${n}`);
  return n;
}

const list = (v: string | undefined, flag: string) =>
  v === undefined ? undefined : v.split(',').map((s) => num(s.trim(), flag));

/** Grey images scaled so a full-intensity pixel is `inputMax`, at the model's side. */
async function loadImages(path: string, side: number, o: AdaptFlags, labelsFile?: string): Promise<Images> {
  if (!existsSync(path)) throw new GraftError(`dataset not found: ${path}`);
  const inputMax = inputMaxOf(o);
  let data: Images;
  if (/\.csv(\.gz)?$/i.test(path)) {
    const d = await loadPixelDataset(path, {
      side,
      preprocess: o.preprocess,
      pixelMax: num(o.pixelMax, '--pixel-max'),
      outMax: inputMax,
    });
    data = { x: d.x, y: d.y };
  } else {
    const im = readIdx(path);
    if (im.dims.length !== 3 || im.dims[1] !== side || im.dims[2] !== side)
      throw new GraftError(
        `${path}: IDX images of [${im.dims.slice(1).join('×')}], the model takes ${side}×${side}`,
        'resize the images, or use a CSV dataset (resized with --preprocess)',
      );
    const per = side * side;
    const x = Array.from({ length: im.dims[0]! }, (_, i) =>
      Float32Array.from(im.data.subarray(i * per, (i + 1) * per), (v) => (v / 255) * inputMax),
    );
    const guess = join(dirname(path), basename(path).replace('images-idx3', 'labels-idx1'));
    const lab = labelsFile ?? (guess !== path && existsSync(guess) ? guess : undefined);
    data = { x, ...(lab ? { y: Array.from(readIdx(lab).data) } : {}) };
    if (data.y && data.y.length !== x.length)
      throw new GraftError(`${path} has ${x.length} images but ${lab} has ${data.y.length} labels`);
  }
  if (o.maxExamples) {
    const m = positive(o.maxExamples, '--max-examples');
    data = { x: data.x.slice(0, m), ...(data.y ? { y: data.y.slice(0, m) } : {}) };
  }
  return data;
}

/** Labels for the report: 'data' (the target's own labels) or a file (IDX labels, or one integer per line). */
function reportLabels(spec: string | undefined, target: Images, o: AdaptFlags): number[] | undefined {
  if (!spec) return undefined;
  let y: number[];
  if (spec === 'data') {
    if (!target.y) throw new GraftError(`--target-labels data: ${o.target} has no labels`);
    y = target.y;
  } else {
    if (!existsSync(spec)) throw new GraftError(`--target-labels: file not found: ${spec}`);
    const bytes = readFileSync(spec);
    y =
      bytes[0] === 0x1f || bytes[0] === 0
        ? Array.from(parseIdx(bytes, spec).data)
        : bytes
            .toString('utf8')
            .split(/\r?\n/)
            .filter((l) => l.trim() !== '')
            .map((l, i) => {
              const v = Number(l.trim());
              if (!Number.isInteger(v) || v < 0) throw new GraftError(`${spec}:${i + 1}: not a class index: '${l}'`);
              return v;
            });
    if (o.maxExamples) y = y.slice(0, positive(o.maxExamples, '--max-examples'));
  }
  if (y.length !== target.x.length)
    throw new GraftError(`--target-labels: ${y.length} labels for ${target.x.length} target images`);
  return y;
}

export async function adaptCommand(o: AdaptFlags) {
  const scratch = o.model === SCRATCH;
  if (scratch && !WITH_SOURCE.has(o.method))
    throw new GraftError(
      `--model ${SCRATCH} (a network trained from scratch on the source) works only with --method dann, mmd or deep-coral`,
    );
  if (scratch && !existsSync(o.target)) throw new GraftError(`dataset not found: ${o.target}`);
  // small-cnn: sized to the target images (IDX: their side; CSV: 28, as --preprocess makes them); classes set from the source below
  const model = scratch
    ? smallCnn({ channels: 1, size: /\.csv(\.gz)?$/i.test(o.target) ? 28 : readIdx(o.target).dims[1]!, classes: 2 })
    : makeBatchDynamic(loadModel(o.model));
  const dims = exampleDims(model);
  if (dims.length !== 3 || dims[0] !== 1 || dims[1] !== dims[2])
    throw new GraftError(
      `--model: graft adapt takes grey square images; the model's input is [batch, ${dims}] (expected [batch, 1, S, S])`,
    );
  const side = dims[1]!;
  const withSource = WITH_SOURCE.has(o.method);
  const featureLevel =
    o.method === 'coral' ||
    o.method === 'subspace' ||
    o.method === 'coral-self-training' ||
    (o.method === 'self-training' && o.source !== undefined);
  if ((featureLevel || withSource) && !o.source)
    throw new GraftError(`--method ${o.method} needs --source (labelled source images)`);
  if (!featureLevel && !withSource && o.source)
    throw new GraftError(`--method ${o.method} is source-free: it reads only --model and --target (drop --source)`);
  // a tuning flag the chosen method does not read is an error, not silently ignored
  const level = withSource ? 'with-source' : featureLevel ? 'features' : 'source-free';
  const reads: [keyof AdaptFlags, string, (m: string) => boolean][] = [
    ['lambda', '--lambda', (m) => m === 'coral' || m === 'coral-self-training'],
    ['dims', '--dims', (m) => m === 'subspace'],
    ['threshold', '--threshold', (m) => m === 'self-training' || m === 'coral-self-training'],
    ['weight', '--weight', () => level === 'with-source'],
    ['lr', '--lr', (m) => level === 'with-source' || (level === 'source-free' && m !== 'adabn')],
    ['steps', '--steps', (m) => level === 'with-source' || m === 'entropy'],
    ['node', '--node', () => level !== 'source-free'],
    ['sourceLabels', '--source-labels', () => o.source !== undefined],
  ];
  for (const [key, flag, ok] of reads)
    if (o[key] !== undefined && !ok(o.method))
      throw new GraftError(
        `${flag} does not apply to --method ${o.method}${o.method === 'self-training' ? (featureLevel ? ' with --source' : ' without --source') : ''}`,
      );
  const target = await loadImages(o.target, side, o);
  if (o.shiftTarget)
    target.x = shiftImages(
      target.x.map((x) => x.map((v) => v / inputMaxOf(o))),
      o.shiftTarget,
      int(o.seed, '--seed'),
    ).map((x) => x.map((v) => v * inputMaxOf(o)));
  const labels = reportLabels(o.targetLabels, target, o);
  const bar = progressBar(`${o.method} |{bar}| {value} candidates | best score {best}`, { quiet: o.json });
  let best = -Infinity,
    seen = 0;
  bar?.update(0, 0, { best: '-' });
  const onCandidate = (c: { score: number }) => {
    best = Math.max(best, c.score);
    seen++;
    bar?.update(seen, seen, { best: best.toFixed(3) });
  };
  const seed = int(o.seed, '--seed');
  const report: Record<string, unknown> = {
    method: o.method,
    level: featureLevel ? 'features' : 'network',
    model: o.model,
    target: o.target,
    targetExamples: target.x.length,
  };
  let outModel: Graph;
  const t0 = performance.now();
  if (withSource) {
    const source = await loadImages(o.source!, side, o, o.sourceLabels);
    if (!source.y)
      throw new GraftError(
        `--source ${o.source}: no labels found`,
        'give IDX images with their labels file beside them (or --source-labels), or a CSV with a label column',
      );
    const epochs = o.epochs ? positive(o.epochs, '--epochs') : 6;
    const common = {
      epochs,
      seed,
      batchSize: positive(o.batchSize, '--batch-size'),
      ...(o.lr ? { lr: num(o.lr, '--lr') } : {}),
      ...(o.node ? { feature: o.node } : {}),
      select: o.select ?? 'reverse-validation',
      ...(o.steps ? { checkpoints: list(o.steps, '--steps')! } : {}),
    } as const;
    const weights = list(o.weight, '--weight');
    const start = () => (scratch ? smallCnn({ channels: 1, size: side, classes: classCount(source.y!), seed }) : model);
    const r = await adaptWithSource(o.method as SourceNetworkMethod, start(), { x: source.x, y: source.y }, target.x, {
      ...common,
      onCandidate,
      ...(weights ? { weights } : {}),
    });
    Object.assign(report, {
      sourceExamples: source.x.length,
      sourceTrainExamples: r.sourceTrainExamples,
      featureNode: r.feature,
      featureDim: r.featureDim,
      newHead: r.newHead,
      epochs,
      chosen: r.chosen,
      selection: r.selection,
      candidates: r.candidates,
      ...(r.unadapted
        ? {
            keptUnadapted: r.unadapted.kept,
            noHarm: { unadaptedScore: r.unadapted.score, margin: r.unadapted.margin, reason: r.unadapted.reason },
          }
        : {}),
    });
    if (labels) {
      const after = accuracy((await predictClassProba(r.model, target.x)).map(argmax), labels);
      const acc: Record<string, unknown> = { after, note: 'measured on the target images adapted on' };
      if (o.baseline !== false) {
        // the no-harm rule already trained source-only with the same settings: reuse it
        const baseModel =
          r.unadapted?.model ??
          (
            await adaptWithSource('source-only', start(), { x: source.x, y: source.y }, target.x, {
              ...common,
              checkpoints: [epochs],
            })
          ).model;
        acc['sourceOnly'] = accuracy((await predictClassProba(baseModel, target.x)).map(argmax), labels);
        acc['before'] = acc['sourceOnly'];
        acc['note'] =
          `before: source-only training with the same settings (${epochs} epochs, same source split); measured on the target images adapted on`;
      }
      report['accuracy'] = acc;
    }
    outModel = r.model;
    outModel.metadata['graft.features'] = r.feature; // where a later `graft train --model DIR` puts a new head
  } else if (featureLevel) {
    const source = await loadImages(o.source!, side, o, o.sourceLabels);
    if (!source.y)
      throw new GraftError(
        `--source ${o.source}: no labels found`,
        'give IDX images with their labels file beside them (or --source-labels), or a CSV with a label column',
      );
    const node = o.node ?? defaultFeatureNode(model);
    const feats = async (xs: Float32Array[]) => {
      const batches = [];
      const bs = positive(o.batchSize, '--batch-size');
      for (let i = 0; i < xs.length; i += bs) batches.push(stack(xs.slice(i, i + bs), dims));
      return extractFeatures(model, node, batches, { batchSize: bs });
    };
    const S = { x: await feats(source.x), y: source.y },
      T = await feats(target.x);
    const grid =
      o.method === 'coral'
        ? list(o.lambda, '--lambda')?.map((lambda) => ({ lambda }))
        : o.method === 'subspace'
          ? list(o.dims, '--dims')?.map((d) => ({ dims: d }))
          : o.method === 'coral-self-training'
            ? o.lambda || o.threshold
              ? (list(o.lambda, '--lambda') ?? [1]).flatMap((lambda) =>
                  (list(o.threshold, '--threshold') ?? [0.7, 0.9]).map((threshold) => ({ lambda, threshold })),
                )
              : undefined
            : list(o.threshold, '--threshold')?.map((threshold) => ({ threshold }));
    const r = await adaptFeatures(o.method as FeatureMethod, S, T, { seed, onCandidate, ...(grid ? { grid } : {}) });
    Object.assign(report, {
      sourceExamples: S.x.length,
      featureNode: node,
      featureDim: S.x[0]!.length,
      chosen: r.chosen,
      selection: 'reverse validation on held-out source labels',
      candidates: r.candidates,
      info: r.info,
      ...(r.unadapted
        ? {
            keptUnadapted: r.unadapted.kept,
            noHarm: {
              unadaptedScore: r.unadapted.reverseValidation,
              margin: r.unadapted.margin,
              reason: r.unadapted.reason,
            },
          }
        : {}),
    });
    if (labels) {
      const base = await sourceOnly(S, T);
      report['accuracy'] = {
        before: accuracy(base.targetProba.map(argmax), labels),
        after: accuracy(r.targetProba.map(argmax), labels),
        note: 'before: source-only head; measured on the target images adapted on',
      };
    }
    // backbone cut at `node` (pooled if 4-D) + the adapted head, ending in probabilities (src/features/classifier.ts)
    const K = r.head.numClasses,
      names = getLabels(model);
    outModel = await exportFeatureClassifier(model, node, r.head, {
      labels: names?.length === K ? names : Array.from({ length: K }, (_, k) => String(k)),
    });
    outModel.name = `${model.name} (adapted head)`;
    outModel.metadata['graft.features'] = node; // where a later `graft train --model DIR` puts a new head
  } else {
    const lr = list(o.lr, '--lr'),
      th = list(o.threshold, '--threshold'),
      steps = list(o.steps, '--steps');
    let grid: Record<string, number>[] | undefined;
    if (o.method === 'entropy' && (lr || steps))
      grid = (lr ?? [3e-4, 1e-3, 3e-3, 1e-2]).map((l) => ({
        lr: l,
        diversity: 1,
        ...(steps ? { steps: Math.max(...steps) } : {}),
      }));
    if (o.method === 'self-training' && (lr || th))
      grid = (lr ?? [1e-3]).flatMap((l) => (th ?? [0.8]).map((t) => ({ lr: l, threshold: t })));
    const r = await adaptNetwork(o.method as NetworkMethod, model, target.x, {
      seed,
      onCandidate,
      ...(grid ? { grid } : {}),
      ...(steps && o.method === 'entropy' ? { checkpoints: steps } : {}),
    });
    Object.assign(report, {
      chosen: r.chosen,
      selection: 'information maximization on the target (no labels)',
      temperature: r.temperature,
      scoreBefore: r.before,
      candidates: r.candidates,
      keptUnadapted: r.keptUnadapted,
      ...(r.noHarm ? { noHarm: r.noHarm } : {}),
    });
    if (labels)
      report['accuracy'] = {
        before: accuracy((await predictClassProba(model, target.x)).map(argmax), labels),
        after: accuracy((await predictClassProba(r.model, target.x)).map(argmax), labels),
        note: 'measured on the target images adapted on',
      };
    outModel = r.model;
  }
  bar?.stop();
  report['seconds'] = (performance.now() - t0) / 1000;
  if (o.out) {
    mkdirSync(o.out, { recursive: true });
    outModel.metadata['graft.adapted'] = `${o.method} to ${o.target}`;
    writeOnnx(outModel, join(o.out, 'model.onnx'));
    atomicWrite(join(o.out, 'report.json'), Buffer.from(JSON.stringify(report, null, 2) + '\n'));
    report['out'] = o.out;
  }
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const acc = report['accuracy'] as { before?: number; after: number } | undefined;
  process.stdout.write(
    `${o.method} (${report['level']}-level) on ${target.x.length} target images in ${(report['seconds'] as number).toFixed(1)} s\n` +
      (report['keptUnadapted']
        ? `kept the unadapted model (${o.method} did not beat it by the no-harm margin without target labels)\n`
        : `chosen without target labels: ${JSON.stringify(report['chosen'])} (${report['selection']})\n`) +
      (report['noHarm'] ? `no-harm rule: ${(report['noHarm'] as { reason: string }).reason}\n` : '') +
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
      `the trained classifier (.onnx, .tflite, TF.js, folder); input [batch, 1, S, S]; with dann, mmd, deep-coral also '${SCRATCH}': a small CNN trained from scratch on the source (images scaled 0–1; --input-max does not apply)`,
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
