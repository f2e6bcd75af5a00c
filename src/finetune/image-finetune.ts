/**
 * Fine-tune an image classifier on a labelled image dataset (image folder or IDX), end to end:
 * split (stratified, seeded, few labels per class if asked), cache the frozen bottom's activations
 * at the cut (K views per training image, augmented), linear-probe the new head, train the top
 * blocks (or LoRA adapters on them) on the cache, score validation and test, and export one
 * standalone ONNX classifier folder with a parity check (src/export/export.ts).
 *
 * Full fine-tuning is the same path with the cut at the data input: the "cache" then holds the
 * prepared (and augmented) images and every epoch runs the whole network.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { loadModel } from '../formats/load.js';
import { assertTrainableWeights } from '../formats/hf-folder.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import type { LabelledImages } from '../data/labelled-images.js';
import { stratifiedSplit } from '../data/splits.js';
import type { AugmentOptions } from '../data/augment.js';
import { imagesToTensor } from '../data/image.js';
import { FeatureCache } from '../features/cache.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { exportFinetuned } from '../export/export.js';
import type { LrFindOptions, LrFindResult } from '../train/lr-finder.js';
import {
  splitTopBlocks,
  cacheActivations,
  trainTopBlocks,
  predictStore,
  assembleTopBlocks,
  lrFindTopBlocks,
  type TopBlocksModel,
  type CacheProgress,
  type ActivationStore,
  type TopBlocksTrainOptions,
} from './top-blocks.js';
import { GraftError } from '../util/errors.js';

/**
 * Everything trainTopBlocks (and so fit()) takes — schedule, early stopping, class weights, lrDecay,
 * unfreezeEvery, batchNorm, checkpoint, loss, optimizer, headLrMult, LoRA… — plus the data and cut.
 */
export interface ImageFinetuneOptions extends Omit<TopBlocksTrainOptions, 'validation'> {
  /** Value or node to cut at (the data input's name: full fine-tuning). */
  cut?: string;
  /** Train the top N blocks (default 2 when no cut is given). */
  topBlocks?: number;
  /** Views per training image (default 1; with augment, 4). */
  views?: number;
  /** Augment views ≥ 1 (true: default settings). */
  augment?: AugmentOptions | boolean;
  cacheDir?: string;
  labelsPerClass?: number;
  testFraction?: number;
  valFraction?: number;
  /** Folder for model.onnx + labels.json. */
  out?: string;
  /** Export parity tolerance (default 1e-4; see FinetuneExportOptions.tolerance). */
  tolerance?: number;
  onCacheProgress?: (p: CacheProgress) => void;
}

export interface ImageFinetuneReport {
  mode: 'finetune';
  model: string;
  cut: string;
  cutDims: number[];
  classes: string[];
  examples: { train: number; val: number; test: number };
  views: number;
  cache: { seconds: number; computed: number; cached: number; megabytes: number; dir?: string };
  probe?: { l2: number; trainAccuracy: number; valAccuracy?: number };
  lora?: { params: number };
  /** Epochs trained (early stopping may stop sooner); resumedFrom: the checkpoint epoch a resumed run continued after (0: none). */
  epochs: number;
  resumedFrom: number;
  bestEpoch?: number;
  steps: number;
  trainSeconds: number;
  finalLoss: number;
  validation?: Metrics;
  test?: Metrics;
  export?: {
    path: string;
    labels: string;
    maxAbsDiff: number;
    allowed: number;
    compared: string;
    tolerance: number;
    checked: number;
  };
  seconds: number;
}

export interface ImageFinetuneResult {
  report: ImageFinetuneReport;
  /** The assembled fine-tuned network (logits output, LoRA not yet merged). */
  graph: Graph;
  split: TopBlocksModel;
}

interface PreparedImages {
  g: Graph;
  m: TopBlocksModel;
  split: { train: number[]; val: number[]; test: number[] };
  stores: [ActivationStore, ActivationStore, ActivationStore];
  labels: [number[], number[], number[]];
  views: number;
  augment?: AugmentOptions;
  cache: { seconds: number; computed: number; cached: number };
}

/** Split, cut, and cache the activations of train (K views), validation and test images. */
async function prepareImages(
  model: Graph | string,
  data: LabelledImages,
  o: ImageFinetuneOptions,
): Promise<PreparedImages> {
  const g = makeBatchDynamic(typeof model === 'string' ? loadModel(model) : model);
  assertTrainableWeights(g); // before caching activations: quantized-only weights cannot be fine-tuned
  const K = data.classes.length;
  if (K < 2) throw new GraftError(`the dataset has ${K} class; at least two are needed`);
  const seed = o.seed ?? 0;
  const split = stratifiedSplit(data.labels, {
    testFraction: o.testFraction ?? 0.2,
    valFraction: o.valFraction ?? 0.1,
    seed,
    ...(o.labelsPerClass ? { perClass: o.labelsPerClass } : {}),
  });
  const m = await splitTopBlocks(g, K, {
    ...(o.cut !== undefined ? { cut: o.cut } : { topBlocks: o.topBlocks ?? 2 }),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
  const augment = o.augment === true ? {} : o.augment === false ? undefined : o.augment;
  const views = o.views ?? (augment ? 4 : 1);
  if (views > 1 && !augment)
    throw new GraftError('--views above 1 needs --augment (the extra views are augmented copies)');
  const cache = o.cacheDir ? FeatureCache.open(o.cacheDir) : undefined;
  const pick = (idx: number[]) => idx.map((i) => data.inputs[i]!);
  const tc = performance.now();
  const total = split.train.length * views + split.val.length + split.test.length;
  let done = 0,
    computed = 0,
    cached = 0;
  const progress = (p: CacheProgress) =>
    o.onCacheProgress?.({ done: done + p.done, total, cached: cached + p.cached, computed: computed + p.computed });
  const stores: ActivationStore[] = [];
  for (const [idx, v] of [
    [split.train, views],
    [split.val, 1],
    [split.test, 1],
  ] as const) {
    let last: CacheProgress = { done: 0, total: 0, cached: 0, computed: 0 };
    stores.push(
      await cacheActivations(m, pick(idx), {
        views: v,
        seed,
        ...(augment ? { augment } : {}),
        ...(cache ? { cache } : {}),
        ...(o.runtime ? { runtime: o.runtime } : {}),
        onProgress: (p) => {
          last = p;
          progress(p);
        },
      }),
    );
    done += last.done;
    computed += last.computed;
    cached += last.cached;
  }
  const ys = (idx: number[]) => idx.map((i) => data.labels[i]!);
  return {
    g,
    m,
    split,
    stores: stores as PreparedImages['stores'],
    labels: [ys(split.train), ys(split.val), ys(split.test)],
    views,
    ...(augment ? { augment } : {}),
    cache: { seconds: (performance.now() - tc) / 1000, computed, cached },
  };
}

/** Options of trainTopBlocks from the image options (the data/cut/export ones dropped). */
function trainOptions(o: ImageFinetuneOptions): TopBlocksTrainOptions {
  const {
    cut: _c,
    topBlocks: _t,
    views: _v,
    augment: _a,
    cacheDir: _d,
    labelsPerClass: _l,
    testFraction: _tf,
    valFraction: _vf,
    out: _o,
    tolerance: _tol,
    onCacheProgress: _p,
    ...rest
  } = o;
  return { ...rest, epochs: o.epochs ?? 5, batchSize: o.batchSize ?? 32, seed: o.seed ?? 0 };
}

export async function finetuneImages(
  model: Graph | string,
  data: LabelledImages,
  o: ImageFinetuneOptions = {},
): Promise<ImageFinetuneResult> {
  const t0 = performance.now();
  const {
    g,
    m,
    split,
    stores: [trS, vaS, teS],
    labels: [yTr, yVa, yTe],
    views,
    augment,
    cache,
  } = await prepareImages(model, data, o);
  const pick = (idx: number[]) => idx.map((i) => data.inputs[i]!);
  const cacheSeconds = cache.seconds;
  const { computed, cached } = cache;
  const to = trainOptions(o);
  const epochs = to.epochs!;
  if (o.earlyStopping && !vaS.size)
    throw new GraftError('early stopping needs validation images: set --val-fraction above 0');
  const r = await trainTopBlocks(m, trS, yTr, {
    ...to,
    ...(vaS.size ? { validation: { store: vaS, labels: yVa } } : {}),
  });
  // the trainer's onnxruntime sessions are released even when scoring or the export's parity check fails
  let validation: Metrics | undefined, test: Metrics | undefined, graph: Graph, exported: ImageFinetuneReport['export'];
  try {
    const score = async (store: typeof trS, y: number[]) =>
      store.size ? classificationMetrics(y, await predictStore(r.trainer, m, store), data.classes) : undefined;
    validation = await score(vaS, yVa);
    test = await score(teS, yTe);
    graph = assembleTopBlocks(m, r.trainer.toGraph());
    if (o.out) {
      const checkIdx = (split.test.length ? split.test : split.train).slice(0, 8);
      const x = await imagesToTensor(pick(checkIdx), m.preprocess);
      const e = await exportFinetuned(graph, {
        out: o.out,
        labels: data.classes,
        preprocess: m.preprocess,
        checkInputs: x,
        reference: (inp) => topBlocksForward(m, r.trainer, inp, o.runtime),
        ...(o.tolerance !== undefined ? { tolerance: o.tolerance } : {}),
        ...(o.runtime ? { runtime: o.runtime } : {}),
        metadata: {
          'graft.finetune': JSON.stringify({
            cut: m.cut,
            views,
            augment: augment ?? false,
            epochs,
            lora: o.lora ? { rank: o.lora.rank, alpha: o.lora.alpha ?? o.lora.rank } : undefined,
          }),
          ...(test ? { 'graft.test_accuracy': test.accuracy.toFixed(4) } : {}),
        },
      });
      exported = {
        path: e.path,
        labels: e.labelsPath,
        maxAbsDiff: e.maxAbsDiff,
        allowed: e.allowed,
        compared: e.compared,
        tolerance: e.tolerance,
        checked: e.checked,
      };
    }
  } finally {
    await r.trainer.release();
  }
  const report: ImageFinetuneReport = {
    mode: 'finetune',
    model: typeof model === 'string' ? model : g.name,
    cut: m.cut,
    cutDims: m.cutDims,
    classes: data.classes,
    examples: { train: split.train.length, val: split.val.length, test: split.test.length },
    views,
    cache: {
      seconds: cacheSeconds,
      computed,
      cached,
      megabytes: (trS.bytes + vaS.bytes + teS.bytes) / 2 ** 20,
      ...(o.cacheDir ? { dir: o.cacheDir } : {}),
    },
    ...(r.probe ? { probe: r.probe } : {}),
    ...(r.loraParams ? { lora: { params: r.loraParams.length } } : {}),
    epochs: r.epochs,
    resumedFrom: r.resumedFrom,
    ...(r.bestEpoch !== undefined ? { bestEpoch: r.bestEpoch } : {}),
    steps: r.losses.length,
    trainSeconds: r.seconds,
    finalLoss: r.losses.at(-1) ?? NaN,
    ...(validation ? { validation } : {}),
    ...(test ? { test } : {}),
    ...(exported ? { export: exported } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
  return { report, graph, split: m };
}

/** The learning-rate range test on the training images' cached activations, with the options finetuneImages would train with. */
export async function lrFindImages(
  model: Graph | string,
  data: LabelledImages,
  o: ImageFinetuneOptions & LrFindOptions = {},
): Promise<LrFindResult> {
  const {
    m,
    stores: [trS],
    labels: [yTr],
  } = await prepareImages(model, data, { ...o, valFraction: o.valFraction ?? 0.1 });
  return lrFindTopBlocks(m, trS, yTr, trainOptions(o));
}

/** The training graph's forward on model inputs: the bottom in fp32 (no cache), then Trainer.predict on the tail. */
export async function topBlocksForward(
  m: TopBlocksModel,
  trainer: { predict(f: Record<string, Tensor>): Promise<Tensor> },
  x: Tensor,
  runtime?: RuntimeOptions,
): Promise<Tensor> {
  const input = m.model.dataInputs()[0]!.name;
  if (m.cut === input) return trainer.predict({ [m.cut]: x });
  const s = await Session.fromGraph(m.bottom, runtime, `${m.model.name} (bottom)`);
  try {
    const act = (await s.run({ [input]: x }, [m.cut]))[m.cut]!;
    return await trainer.predict({ [m.cut]: act });
  } finally {
    await s.release();
  }
}
