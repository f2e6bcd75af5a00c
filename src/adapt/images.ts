/**
 * One call from a classifier and image files to an adapted model and its report (`graft adapt`):
 * `adaptImages` reads the target (and source) images, checks which settings the method reads, runs
 * one method and saves DIR/model.onnx and DIR/report.json. Feature-level methods (coral, subspace,
 * coral-self-training, self-training with a source) fit a logistic head on the model's features of
 * the labelled source and the unlabelled target (./features.ts); source-free methods (adabn,
 * entropy, self-training without a source) adapt the network itself to the target images
 * (./source-free.ts); in-network methods with labelled source data (dann, mmd, deep-coral) train the
 * network on source + target batches (./with-source.ts). Hyperparameters and checkpoints are chosen
 * without target labels (reverse validation, or information maximization); `targetLabels` is read
 * only for the report.
 *
 * Datasets: a CSV of square grey images (pixel columns then a label, optionally .gz) or IDX images
 * (labels file guessed from the name); the model takes [batch, 1, S, S] grey images. Errors name the
 * `graft adapt` flag of a setting.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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
import { shiftImages, type PixelShift } from '../data/shifts.js';
import { smallCnn } from '../heads/scratch-cnn.js';
import { classCount } from '../heads/head.js';
import { GraftError } from '../util/errors.js';
import { argmax, accuracy } from '../util/vectors.js';
import { adaptFeatures, type FeatureMethod } from './features.js';
import { sourceOnly } from './feature-head.js';
import { adaptNetwork, type NetworkMethod } from './source-free.js';
import { predictClassProba } from './predict.js';
import { adaptWithSource, SOURCE_NETWORK_METHODS, type SourceNetworkMethod } from './with-source.js';

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
export type AdaptMethod = (typeof ADAPT_METHODS)[number];

/** The methods that train the network on labelled source and unlabelled target batches (dann, mmd, deep-coral). */
export const WITH_SOURCE_METHODS: ReadonlySet<string> = new Set<string>(
  SOURCE_NETWORK_METHODS.filter((m) => m !== 'source-only'),
);

/** `model: 'small-cnn'`: the small CNN of src/heads/scratch-cnn.ts, trained from scratch on the source (inputs 0–1). */
export const SCRATCH_MODEL = 'small-cnn';

export interface AdaptImagesOptions {
  method: AdaptMethod;
  /** Labelled source images (feature-level methods, dann, mmd, deep-coral), and their IDX labels file. */
  source?: string;
  sourceLabels?: string;
  /** Labels for the report only: 'data' (the target's own), an IDX labels file or one class per line. */
  targetLabels?: string;
  /** Write DIR/model.onnx and DIR/report.json. */
  out?: string;
  /** The feature value (feature-level: where the model is cut; dann, mmd, deep-coral: the value aligned). */
  node?: string;
  /** CSV images: fit into the MNIST 20/28 box or stretch (default mnist); largest pixel in the file (default 16). */
  preprocess?: 'mnist' | 'stretch';
  pixelMax?: number;
  /** Value of a full-intensity pixel for the model (default 255; 1 for 'small-cnn'). */
  inputMax?: number;
  /** Use only the first N images of each dataset. */
  maxExamples?: number;
  /** Apply a documented shift to the target images first (experiments). */
  shiftTarget?: PixelShift;
  /** Lists to choose from (each read by some methods only: a list a method does not read is an error). */
  lr?: number[];
  steps?: number[];
  threshold?: number[];
  lambda?: number[];
  dims?: number[];
  weight?: number[];
  /** Default 0. */
  seed?: number;
  /** Images per onnxruntime run; dann, mmd, deep-coral: rows per training step (default 128). */
  batchSize?: number;
  /** dann, mmd, deep-coral: epochs per weight (default 6), the selection criterion, the source-only baseline (default true). */
  epochs?: number;
  select?: 'reverse-validation' | 'im';
  baseline?: boolean;
  /** The data is read; candidates are scored next. */
  onStart?: () => void;
  /** Each scored candidate. */
  onCandidate?: (c: { score: number }) => void;
}

/** What `graft adapt --json` prints (and DIR/report.json holds, without `out`). */
export type AdaptReport = Record<string, unknown> & {
  method: AdaptMethod;
  level: 'features' | 'network';
  targetExamples: number;
  seconds: number;
  keptUnadapted?: boolean;
  chosen?: unknown;
  selection?: string;
  noHarm?: { reason: string };
  accuracy?: { before?: number; after: number; note: string };
  out?: string;
};

export interface AdaptImagesResult {
  report: AdaptReport;
  /** The adapted model (or backbone + adapted head). */
  model: Graph;
  /** The files written (with `out`). */
  files: string[];
}

interface Images {
  x: Float32Array[];
  y?: number[];
}

/** A setting that must be a whole number ≥ 1. */
function positive(n: number, flag: string): number {
  if (!(Number.isInteger(n) && n >= 1)) throw new GraftError(`${flag} must be at least 1, got ${n}`);
  return n;
}

const inputMaxOf = (model: string, o: AdaptImagesOptions) => (model === SCRATCH_MODEL ? 1 : (o.inputMax ?? 255));

/** Grey images scaled so a full-intensity pixel is the input max, at the model's side. */
async function loadImages(
  path: string,
  side: number,
  inputMax: number,
  o: AdaptImagesOptions,
  labelsFile?: string,
): Promise<Images> {
  if (!existsSync(path)) throw new GraftError(`dataset not found: ${path}`);
  let data: Images;
  if (/\.csv(\.gz)?$/i.test(path)) {
    const d = await loadPixelDataset(path, {
      side,
      preprocess: o.preprocess ?? 'mnist',
      pixelMax: o.pixelMax ?? 16,
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
  if (o.maxExamples !== undefined) {
    const m = positive(o.maxExamples, '--max-examples');
    data = { x: data.x.slice(0, m), ...(data.y ? { y: data.y.slice(0, m) } : {}) };
  }
  return data;
}

/** Labels for the report: 'data' (the target's own labels) or a file (IDX labels, or one integer per line). */
function reportLabels(target: Images, targetPath: string, o: AdaptImagesOptions): number[] | undefined {
  const spec = o.targetLabels;
  if (!spec) return undefined;
  let y: number[];
  if (spec === 'data') {
    if (!target.y) throw new GraftError(`--target-labels data: ${targetPath} has no labels`);
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
    if (o.maxExamples !== undefined) y = y.slice(0, positive(o.maxExamples, '--max-examples'));
  }
  if (y.length !== target.x.length)
    throw new GraftError(`--target-labels: ${y.length} labels for ${target.x.length} target images`);
  return y;
}

/** Labelled source images, or an error saying where the labels are looked for. */
async function loadSource(o: AdaptImagesOptions, side: number, inputMax: number): Promise<Required<Images>> {
  const source = await loadImages(o.source!, side, inputMax, o, o.sourceLabels);
  if (!source.y)
    throw new GraftError(
      `--source ${o.source}: no labels found`,
      'give IDX images with their labels file beside them (or --source-labels), or a CSV with a label column',
    );
  return { x: source.x, y: source.y };
}

/**
 * Adapt the classifier `model` (a model path, or 'small-cnn' with dann, mmd and deep-coral) to the
 * `target` images by one method; the report says what was chosen (without target labels) and, with
 * `targetLabels`, the accuracy before and after.
 */
export async function adaptImages(model: string, target: string, o: AdaptImagesOptions): Promise<AdaptImagesResult> {
  const scratch = model === SCRATCH_MODEL;
  if (scratch && !WITH_SOURCE_METHODS.has(o.method))
    throw new GraftError(
      `--model ${SCRATCH_MODEL} (a network trained from scratch on the source) works only with --method dann, mmd or deep-coral`,
    );
  if (scratch && !existsSync(target)) throw new GraftError(`dataset not found: ${target}`);
  // small-cnn: sized to the target images (IDX: their side; CSV: 28, as --preprocess makes them); classes set from the source below
  const g = scratch
    ? smallCnn({ channels: 1, size: /\.csv(\.gz)?$/i.test(target) ? 28 : readIdx(target).dims[1]!, classes: 2 })
    : makeBatchDynamic(loadModel(model));
  const dims = exampleDims(g);
  if (dims.length !== 3 || dims[0] !== 1 || dims[1] !== dims[2])
    throw new GraftError(
      `--model: graft adapt takes grey square images; the model's input is [batch, ${dims}] (expected [batch, 1, S, S])`,
    );
  const side = dims[1]!;
  const withSource = WITH_SOURCE_METHODS.has(o.method);
  const featureLevel =
    o.method === 'coral' ||
    o.method === 'subspace' ||
    o.method === 'coral-self-training' ||
    (o.method === 'self-training' && o.source !== undefined);
  if ((featureLevel || withSource) && !o.source)
    throw new GraftError(`--method ${o.method} needs --source (labelled source images)`);
  if (!featureLevel && !withSource && o.source)
    throw new GraftError(`--method ${o.method} is source-free: it reads only --model and --target (drop --source)`);
  // a setting the chosen method does not read is an error, not silently ignored
  const level = withSource ? 'with-source' : featureLevel ? 'features' : 'source-free';
  const reads: [keyof AdaptImagesOptions, string, (m: string) => boolean][] = [
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
  const inputMax = inputMaxOf(model, o);
  const seed = o.seed ?? 0;
  const T = await loadImages(target, side, inputMax, o);
  if (o.shiftTarget)
    T.x = shiftImages(
      T.x.map((x) => x.map((v) => v / inputMax)),
      o.shiftTarget,
      seed,
    ).map((x) => x.map((v) => v * inputMax));
  const labels = reportLabels(T, target, o);
  o.onStart?.();
  const onCandidate = (c: { score: number }) => o.onCandidate?.(c);
  // keys in the order the JSON report shows them; `seconds` (and `out`) last
  const report: Record<string, unknown> = {
    method: o.method,
    level: featureLevel ? 'features' : 'network',
    model,
    target,
    targetExamples: T.x.length,
  };
  let outModel: Graph;
  const t0 = performance.now();
  const batchSize = () => positive(o.batchSize ?? 128, '--batch-size');
  if (withSource) {
    const source = await loadSource(o, side, inputMax);
    const epochs = o.epochs !== undefined ? positive(o.epochs, '--epochs') : 6;
    const common = {
      epochs,
      seed,
      batchSize: batchSize(),
      ...(o.lr ? { lr: o.lr[0]! } : {}),
      ...(o.node ? { feature: o.node } : {}),
      select: o.select ?? 'reverse-validation',
      ...(o.steps ? { checkpoints: o.steps } : {}),
    } as const;
    const start = () => (scratch ? smallCnn({ channels: 1, size: side, classes: classCount(source.y), seed }) : g);
    const r = await adaptWithSource(o.method as SourceNetworkMethod, start(), source, T.x, {
      ...common,
      onCandidate,
      ...(o.weight ? { weights: o.weight } : {}),
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
      const after = accuracy((await predictClassProba(r.model, T.x)).map(argmax), labels);
      const acc: Record<string, unknown> = { after, note: 'measured on the target images adapted on' };
      if (o.baseline !== false) {
        // the no-harm rule already trained source-only with the same settings: reuse it
        const baseModel =
          r.unadapted?.model ??
          (await adaptWithSource('source-only', start(), source, T.x, { ...common, checkpoints: [epochs] })).model;
        acc['sourceOnly'] = accuracy((await predictClassProba(baseModel, T.x)).map(argmax), labels);
        acc['before'] = acc['sourceOnly'];
        acc['note'] =
          `before: source-only training with the same settings (${epochs} epochs, same source split); measured on the target images adapted on`;
      }
      report['accuracy'] = acc;
    }
    outModel = r.model;
    outModel.metadata['graft.features'] = r.feature; // where a later `graft train --model DIR` puts a new head
  } else if (featureLevel) {
    const source = await loadSource(o, side, inputMax);
    const node = o.node ?? defaultFeatureNode(g);
    const feats = async (xs: Float32Array[]) => {
      const batches = [];
      const bs = batchSize();
      for (let i = 0; i < xs.length; i += bs) batches.push(stack(xs.slice(i, i + bs), dims));
      return extractFeatures(g, node, batches, { batchSize: bs });
    };
    const S = { x: await feats(source.x), y: source.y },
      TF = await feats(T.x);
    const grid =
      o.method === 'coral'
        ? o.lambda?.map((lambda) => ({ lambda }))
        : o.method === 'subspace'
          ? o.dims?.map((d) => ({ dims: d }))
          : o.method === 'coral-self-training'
            ? o.lambda || o.threshold
              ? (o.lambda ?? [1]).flatMap((lambda) =>
                  (o.threshold ?? [0.7, 0.9]).map((threshold) => ({ lambda, threshold })),
                )
              : undefined
            : o.threshold?.map((threshold) => ({ threshold }));
    const r = await adaptFeatures(o.method as FeatureMethod, S, TF, { seed, onCandidate, ...(grid ? { grid } : {}) });
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
      const base = await sourceOnly(S, TF);
      report['accuracy'] = {
        before: accuracy(base.targetProba.map(argmax), labels),
        after: accuracy(r.targetProba.map(argmax), labels),
        note: 'before: source-only head; measured on the target images adapted on',
      };
    }
    // backbone cut at `node` (pooled if 4-D) + the adapted head, ending in probabilities (src/features/classifier.ts)
    const K = r.head.numClasses,
      names = getLabels(g);
    outModel = await exportFeatureClassifier(g, node, r.head, {
      labels: names?.length === K ? names : Array.from({ length: K }, (_, k) => String(k)),
    });
    outModel.name = `${g.name} (adapted head)`;
    outModel.metadata['graft.features'] = node; // where a later `graft train --model DIR` puts a new head
  } else {
    const { lr, threshold: th, steps } = o;
    let grid: Record<string, number>[] | undefined;
    if (o.method === 'entropy' && (lr || steps))
      grid = (lr ?? [3e-4, 1e-3, 3e-3, 1e-2]).map((l) => ({
        lr: l,
        diversity: 1,
        ...(steps ? { steps: Math.max(...steps) } : {}),
      }));
    if (o.method === 'self-training' && (lr || th))
      grid = (lr ?? [1e-3]).flatMap((l) => (th ?? [0.8]).map((t) => ({ lr: l, threshold: t })));
    const r = await adaptNetwork(o.method as NetworkMethod, g, T.x, {
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
        before: accuracy((await predictClassProba(g, T.x)).map(argmax), labels),
        after: accuracy((await predictClassProba(r.model, T.x)).map(argmax), labels),
        note: 'measured on the target images adapted on',
      };
    outModel = r.model;
  }
  report['seconds'] = (performance.now() - t0) / 1000;
  const files: string[] = [];
  if (o.out) {
    mkdirSync(o.out, { recursive: true });
    outModel.metadata['graft.adapted'] = `${o.method} to ${target}`;
    files.push(join(o.out, 'model.onnx'), join(o.out, 'report.json'));
    writeOnnx(outModel, files[0]!);
    atomicWrite(files[1]!, Buffer.from(`${JSON.stringify(report, null, 2)}\n`));
    report['out'] = o.out;
  }
  return { report: report as AdaptReport, model: outModel, files };
}
