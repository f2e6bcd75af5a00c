/**
 * `graft train images --queue`: fine-tuning the top blocks of an image network on activations
 * cached below the cut, spread over `graft worker` processes. The submitter plans what a local run
 * (finetuneImages) caches, in its order: the split, then the training images × views, the
 * validation images, the test images. It cuts each part into shards of whole cacheActivations
 * batches (32 (image, view) pairs, so every onnxruntime run holds what it holds in a local run) and
 * submits one BullMQ flow (submitShardedRun, ./sharded.ts): an `activation-shard` child per shard, filling the shared content-keyed
 * cache, and a `finetune-top` parent that runs the single-process trainImageClassifier over the same
 * data and cache. Every activation is then a cache hit, so the training, the metrics and the saved
 * classifier are those of a local run.
 *
 * A worker keeps the split model (bottom, tail) and one onnxruntime session of its bottom per model
 * file and cut, for every shard it runs.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Job } from 'bullmq';
import type { AugmentOptions } from '../data/augment.js';
import { stratifiedSplit } from '../data/splits.js';
import { loadLabelledImages, type LabelledImages } from '../data/labelled-images.js';
import { loadModel } from '../formats/load.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { Session } from '../runtime/session.js';
import { cacheActivations, splitTopBlocks, type TopBlocksModel } from '../finetune/top-blocks.js';
import type { ImageFinetuneReport } from '../finetune/image-finetune.js';
import {
  IMAGE_TRAIN_DEFAULTS,
  isImageData,
  trainImageClassifier,
  type TrainImagesOptions,
} from '../finetune/train-images.js';
import { GraftError } from '../util/errors.js';
import { checkReachable, shownUrl } from './connection.js';
import { cacheFor, loadData, mustSee, WORKER_NAME, type DataSpec } from './load.js';
import type { WatchOptions } from './watch.js';
import { submitShardedRun, type ShardedProgress, type ShardProgress } from './sharded.js';

/** (image, view) pairs per onnxruntime run in cacheActivations (its default, which finetuneImages uses). */
const CACHE_BATCH = 32;

/** TrainImagesOptions that travel in a job: no callbacks, no runtime; the paths made absolute. */
export type FinetuneJobOptions = Omit<
  TrainImagesOptions,
  'runtime' | 'onCacheProgress' | 'onStep' | 'onEpoch' | 'onStart' | 'onStage' | 'onNewHead' | 'augment'
> & {
  augment?: AugmentOptions | boolean;
  cacheDir: string;
  out: string;
};

export interface ActivationShardJob {
  kind: 'activation-shard';
  run: string;
  model: string;
  data: DataSpec;
  classes: number;
  cut?: string;
  topBlocks?: number;
  full?: boolean;
  /** Dataset rows of this shard (images), each with `views` views. */
  rows: number[];
  views: number;
  augment?: AugmentOptions;
  seed: number;
  cacheDir: string;
  shard: number;
  shards: number;
}

export interface ActivationShardResult {
  shard: number;
  /** (image, view) pairs of the shard. */
  examples: number;
  computed: number;
  cached: number;
  seconds: number;
  worker: string;
  attempt: number;
}

export interface FinetuneTopJob {
  kind: 'finetune-top';
  run: string;
  model: string;
  data: string;
  options: FinetuneJobOptions;
}

export interface FinetuneTopResult {
  report: ImageFinetuneReport;
  files: string[];
  worker: string;
}

export interface FinetuneQueueOptions extends WatchOptions {
  queue: string;
  /** (image, view) pairs per shard (rounded up to whole batches of 32; default 512). */
  shardSize?: number;
  attempts?: number;
  backoffMs?: number;
  onProgress?: (p: ShardedProgress) => void;
  onRetry?: (r: { shard: number; error: string }) => void;
}

export interface QueueFinetuneReport extends ImageFinetuneReport {
  queue: {
    url: string;
    run: string;
    shards: number;
    shardResults: ActivationShardResult[];
    trainWorker: string;
    cacheSeconds: number;
  };
}

function gcd(a: number, b: number): number {
  return b ? gcd(b, a % b) : a;
}

/** Shards of one part (images with V views each): whole batches of CACHE_BATCH pairs, about `shardSize` pairs each. */
export function activationShards(rows: number[], views: number, shardSize: number): number[][] {
  const unit = CACHE_BATCH / gcd(CACHE_BATCH, views); // images whose pairs fill whole batches
  const per = Math.max(1, Math.ceil(shardSize / views / unit)) * unit;
  const out: number[][] = [];
  for (let s = 0; s < rows.length; s += per) out.push(rows.slice(s, s + per));
  return out;
}

/** What travels in a job: the options without callbacks or runtime. */
function jobOptions(o: TrainImagesOptions): Omit<FinetuneJobOptions, 'cacheDir' | 'out'> {
  return Object.fromEntries(
    Object.entries(o).filter(
      ([k, v]) => typeof v !== 'function' && v !== undefined && k !== 'runtime' && k !== 'progress',
    ),
  ) as Omit<FinetuneJobOptions, 'cacheDir' | 'out'>;
}

/**
 * trainImageClassifier (image folders and IDX data) spread over `graft worker` processes: the
 * activations cached by shards, the training by one job. `model`, `data`, `o.cacheDir`, `o.out` and
 * any checkpoint folder must be paths every worker can reach; relative paths are made absolute.
 */
export async function finetuneImagesOnQueue(
  model: string,
  data: string,
  o: TrainImagesOptions,
  q: FinetuneQueueOptions,
): Promise<{ report: QueueFinetuneReport; files: string[]; images: LabelledImages }> {
  if (!o.cacheDir)
    throw new GraftError(
      '--queue needs --cache DIR: a folder every worker can reach, where the shards write their activations',
    );
  if (!isImageData(data, o.labelsData))
    throw new GraftError(
      `--queue fine-tunes on image folders and IDX data; ${data} is a CSV of pixel rows (train it without --queue)`,
    );
  const shardSize = q.shardSize ?? 512;
  if (!(Number.isInteger(shardSize) && shardSize >= 1))
    throw new GraftError(`--shard-size must be a whole number ≥ 1, got ${shardSize}`);
  const modelPath = resolve(model);
  if (!existsSync(modelPath)) throw new GraftError(`the model ${modelPath} does not exist`);
  const spec: DataSpec = {
    path: resolve(data),
    ...(o.labelsData ? { labelsData: resolve(o.labelsData) } : {}),
    ...(o.maxPerClass ? { maxPerClass: o.maxPerClass } : {}),
  };
  const options: FinetuneJobOptions = {
    ...jobOptions(o),
    ...(spec.labelsData ? { labelsData: spec.labelsData } : {}),
    cacheDir: resolve(o.cacheDir),
    out: resolve(o.out ?? IMAGE_TRAIN_DEFAULTS.out),
    ...(o.checkpoint ? { checkpoint: { ...o.checkpoint, dir: resolve(o.checkpoint.dir) } } : {}),
  };
  if (/\.onnx$/i.test(options.out))
    throw new GraftError(
      `--out ${o.out}: image fine-tuning saves a classifier folder (model.onnx and labels.json inside); give a folder name`,
    );
  // what finetuneImages caches, in its order (see prepareImages there)
  const images = loadLabelledImages(spec.path, {
    ...(spec.labelsData ? { labelsData: spec.labelsData } : {}),
    ...(spec.maxPerClass ? { maxPerClass: spec.maxPerClass } : {}),
  });
  const K = images.classes.length;
  if (K < 2) throw new GraftError(`the dataset has ${K} class; at least two are needed`);
  const seed = o.seed ?? 0;
  const split = stratifiedSplit(images.labels, {
    testFraction: o.testFraction ?? IMAGE_TRAIN_DEFAULTS.imageTestFraction,
    valFraction: o.valFraction ?? 0.1,
    seed,
    ...(o.labelsPerClass ? { perClass: o.labelsPerClass } : {}),
  });
  const augment = o.augment === true ? {} : o.augment === false ? undefined : o.augment;
  const views = o.views ?? (augment ? 4 : 1);
  if (views > 1 && !augment)
    throw new GraftError('--views above 1 needs --augment (the extra views are augmented copies)');
  const parts: { rows: number[]; views: number }[] = [];
  for (const [idx, v] of [
    [split.train, views],
    [split.val, 1],
    [split.test, 1],
  ] as const)
    for (const rows of activationShards(idx, v, shardSize)) parts.push({ rows, views: v });
  const total = parts.reduce((a, p) => a + p.rows.length * p.views, 0);
  await checkReachable(q.queue);

  const r = await submitShardedRun<ActivationShardJob, FinetuneTopJob, ActivationShardResult, FinetuneTopResult>({
    ...q,
    rerunHint: `run the same command again: activations already in ${options.cacheDir} are not computed again`,
    shardJob: 'activation-shard',
    shards: parts.length,
    shardData: (run, i) => ({
      kind: 'activation-shard',
      run,
      model: modelPath,
      data: spec,
      classes: K,
      ...(o.cut !== undefined ? { cut: o.cut } : {}),
      ...(o.topBlocks !== undefined ? { topBlocks: o.topBlocks } : {}),
      ...(o.full ? { full: true } : {}),
      rows: parts[i]!.rows,
      views: parts[i]!.views,
      ...(augment && parts[i]!.views > 1 ? { augment } : {}),
      seed,
      cacheDir: options.cacheDir,
      shard: i,
      shards: parts.length,
    }),
    parentJob: 'finetune-top',
    parentId: 'finetune',
    parentData: (run) => ({ kind: 'finetune-top', run, model: modelPath, data: spec.path, options }),
    parentName: 'the training',
    total,
  });
  const rep = r.parent.report;
  // the cache as the workers filled it (the training job's own pass read it; anything it computed is added)
  rep.cache = {
    ...rep.cache,
    seconds: r.shardSeconds,
    computed: r.shardResults.reduce((a, x) => a + x.computed, 0) + rep.cache.computed,
    cached: r.shardResults.reduce((a, x) => a + x.cached, 0),
  };
  return {
    report: {
      ...rep,
      queue: {
        url: shownUrl(q.queue),
        run: r.run,
        shards: parts.length,
        shardResults: r.shardResults,
        trainWorker: r.parent.worker,
        cacheSeconds: r.shardSeconds,
      },
    },
    files: r.parent.files,
    images,
  };
}

/* ------------------------------------------------------------------ the worker's side */

// per model file, cut and class count: the split model and a session of its bottom, for every shard
const splits = new Map<string, { m: Promise<TopBlocksModel>; session?: Promise<Session> }>();

function splitFor(d: ActivationShardJob): { m: Promise<TopBlocksModel>; session?: Promise<Session> } {
  mustSee(d.model, 'the model');
  const key = JSON.stringify([
    d.model,
    statSync(d.model).mtimeMs,
    d.cut ?? null,
    d.topBlocks ?? null,
    !!d.full,
    d.classes,
  ]);
  let e = splits.get(key);
  if (!e) {
    const g = makeBatchDynamic(loadModel(d.model));
    const cut = d.full ? (g.dataInputs()[0]?.name ?? '') : d.cut;
    const m = splitTopBlocks(g, d.classes, cut !== undefined ? { cut } : { topBlocks: d.topBlocks ?? 2 });
    e = { m };
    splits.set(key, e);
    m.catch(() => splits.delete(key));
    while (splits.size > 2) {
      const k = splits.keys().next().value!;
      void splits.get(k)!.session?.then(
        (s) => s.release(),
        () => {},
      );
      splits.delete(k);
    }
  }
  return e;
}

/** One shard: its (image, view) activations into the shared cache. */
export async function runActivationShard(job: Job<ActivationShardJob>): Promise<ActivationShardResult> {
  const d = job.data;
  const t0 = performance.now();
  const e = splitFor(d);
  const m = await e.m;
  const input = m.model.dataInputs()[0]!.name;
  if (m.cut !== input)
    e.session ??= Session.fromGraph(m.bottom, undefined, `${m.model.name} (bottom, cut at ${m.cut})`);
  const session = await e.session;
  const data = loadData(d.data);
  for (const r of d.rows)
    if (!(r >= 0 && r < data.inputs.length))
      throw new GraftError(
        `shard ${d.shard}: row ${r} is not in ${d.data.path} (${data.inputs.length} examples): the data changed since the run was submitted`,
      );
  const total = d.rows.length * d.views;
  let last = { done: 0, total, cached: 0, computed: 0 };
  const report = (): Promise<void> =>
    job
      .updateProgress({
        shard: d.shard,
        examples: last.done,
        total,
        computed: last.computed,
        cached: last.cached,
        worker: WORKER_NAME,
      } satisfies ShardProgress)
      .catch(() => {});
  await report();
  await cacheActivations(
    m,
    d.rows.map((r) => data.inputs[r]!),
    {
      views: d.views,
      seed: d.seed,
      ...(d.augment ? { augment: d.augment } : {}),
      cache: cacheFor(d.cacheDir),
      ...(session ? { session } : {}),
      onProgress: (p) => {
        last = p;
        void report();
      },
    },
  );
  return {
    shard: d.shard,
    examples: total,
    computed: last.computed,
    cached: last.cached,
    seconds: (performance.now() - t0) / 1000,
    worker: WORKER_NAME,
    attempt: job.attemptsMade + 1,
  };
}

/** The parent: the single-process trainImageClassifier over the cache the shards filled. */
export async function runFinetuneTop(job: Job<FinetuneTopJob>): Promise<FinetuneTopResult> {
  const d = job.data;
  mustSee(d.model, 'the model');
  mustSee(d.data, 'the data');
  mustSee(d.options.cacheDir, 'the cache folder');
  const r = await trainImageClassifier(d.model, d.data, d.options);
  if (r.data !== 'images') throw new GraftError(`${d.data}: not image data`);
  return { report: r.report, files: r.files, worker: WORKER_NAME };
}
