/**
 * Distributed feature extraction and head fit (the submitter's side): `trainFeaturesOnQueue` splits
 * a features run into shards of whole onnxruntime batches, in the order a single-process run
 * extracts them, and submits one BullMQ flow: a child `extract-shard` job per shard and a parent
 * `fit-head` job that BullMQ starts only once every child has completed. Shards write the shared
 * content-keyed cache, so a retried or duplicated shard only rewrites identical bytes and a second
 * run computes nothing; the parent is the single-process trainFeatureClassifier reading that
 * cache, so the head, metrics and saved classifier are bit for bit those of a local run.
 *
 * The flow is submitted and watched by submitShardedRun (./sharded.ts), which sums every worker's progress.
 */
import { resolve } from 'node:path';
import { stratifiedSplit } from '../data/splits.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { existsSync } from 'node:fs';
import type { FeatureTrainReport } from '../features/classifier.js';
import { GraftError } from '../util/errors.js';
import { checkReachable, shownUrl } from './connection.js';
import type { WatchOptions } from './watch.js';
import { submitShardedRun, type ShardedProgress } from './sharded.js';
import type {
  DataSpec,
  ExtractShardJob,
  ExtractShardResult,
  FeatureJobOptions,
  FitHeadJob,
  FitHeadResult,
} from './jobs.js';

export interface QueueRunOptions extends WatchOptions {
  /** redis://HOST:PORT */
  queue: string;
  /** Examples per shard (rounded up to whole batches; default 512). */
  shardSize?: number;
  /** Tries per shard before the run fails (default 3), with exponential backoff from `backoffMs` (default 1000). */
  attempts?: number;
  backoffMs?: number;
  /** Progress summed over every worker's shards. */
  onProgress?: (p: QueueProgress) => void;
  /** A shard attempt that failed or stalled (it is retried while attempts remain). */
  onRetry?: (r: { shard: number; error: string }) => void;
}

/** Progress summed over every worker's shards. */
export type QueueProgress = ShardedProgress;

export interface QueueFeatureReport extends FeatureTrainReport {
  queue: {
    url: string;
    run: string;
    shards: number;
    shardSize: number;
    /** Per shard: the worker that finished it, its attempt, counts. */
    shardResults: ExtractShardResult[];
    /** The worker that fitted the head. */
    headWorker: string;
    /** Wall-clock seconds from submission to the last shard. */
    extractSeconds: number;
  };
}

/** The rows of a features run in extraction order (train, then val, then test), as trainFeatureClassifier orders them. */
export function extractionOrder(
  labels: number[],
  o: Pick<FeatureJobOptions, 'labelsPerClass' | 'valFraction' | 'testFraction' | 'seed'>,
): number[] {
  const s = stratifiedSplit(labels, {
    valFraction: o.valFraction ?? 0.1,
    testFraction: o.testFraction ?? 0.2,
    ...(o.labelsPerClass !== undefined ? { perClass: o.labelsPerClass } : {}),
    seed: o.seed ?? 0,
  });
  return [...s.train, ...s.val, ...s.test];
}

/** Shards of whole batches: the onnxruntime runs are the same batches a single-process run makes. */
export function shardRows(rows: number[], batchSize: number, shardSize: number): number[][] {
  const per = Math.max(1, Math.ceil(shardSize / batchSize)) * batchSize;
  const out: number[][] = [];
  for (let s = 0; s < rows.length; s += per) out.push(rows.slice(s, s + per));
  return out;
}

/**
 * trainFeatureClassifier spread over `graft worker` processes. `model`, `data`, `o.cacheDir` and
 * `o.out` must be paths every worker can reach; relative paths are made absolute here.
 */
export async function trainFeaturesOnQueue(
  model: string,
  data: DataSpec,
  o: FeatureJobOptions,
  q: QueueRunOptions,
): Promise<QueueFeatureReport> {
  if (!o.cacheDir)
    throw new GraftError(
      '--queue needs --cache DIR: a folder every worker can reach, where the shards write their activations',
    );
  const batchSize = o.batchSize ?? 32;
  if (!(Number.isInteger(batchSize) && batchSize >= 1))
    throw new GraftError(`--batch-size must be a whole number ≥ 1, got ${batchSize}`);
  const shardSize = q.shardSize ?? 512;
  if (!(Number.isInteger(shardSize) && shardSize >= 1))
    throw new GraftError(`--shard-size must be a whole number ≥ 1, got ${shardSize}`);
  const attempts = q.attempts ?? 3;
  const abs: DataSpec = {
    ...data,
    path: resolve(data.path),
    ...(data.labelsData ? { labelsData: resolve(data.labelsData) } : {}),
  };
  const modelPath = resolve(model);
  const options: FeatureJobOptions = {
    ...o,
    batchSize,
    cacheDir: resolve(o.cacheDir),
    ...(o.out ? { out: resolve(o.out) } : {}),
  };
  // what the shards need, checked here first: the model file (loaded by the workers only: they find
  // the default feature node) and the split
  if (!existsSync(modelPath)) throw new GraftError(`the model ${modelPath} does not exist`);
  const node = o.node;
  const d = loadLabelledImages(abs.path, {
    ...(abs.labelsData ? { labelsData: abs.labelsData } : {}),
    ...(abs.maxPerClass ? { maxPerClass: abs.maxPerClass } : {}),
  });
  const rows = extractionOrder(d.labels, options);
  const shards = shardRows(rows, batchSize, shardSize);
  await checkReachable(q.queue);

  const r = await submitShardedRun<ExtractShardJob, FitHeadJob, ExtractShardResult, FitHeadResult>({
    ...q,
    rerunHint: `run the same command again: shards already in ${options.cacheDir} are not computed again`,
    shardJob: 'extract-shard',
    shards: shards.length,
    shardData: (run, i) => ({
      kind: 'extract-shard',
      run,
      model: modelPath,
      ...(node ? { node } : {}),
      data: abs,
      rows: shards[i]!,
      cacheDir: options.cacheDir,
      batchSize,
      shard: i,
      shards: shards.length,
    }),
    parentJob: 'fit-head',
    parentId: 'fit-head',
    parentData: (run) => ({ kind: 'fit-head', run, model: modelPath, data: abs, options }),
    parentName: 'the head fit',
    total: rows.length,
    attempts,
  });
  const results = r.shardResults.map(({ rows: _rows, keys: _keys, ...x }) => x); // the keys were for the head fit
  const rep = r.parent.report;
  const sum = (k: 'examples' | 'computed' | 'cached' | 'runs') => results.reduce((a, x) => a + x[k], 0);
  // extraction as the workers did it (the parent's own pass read the cache; anything it computed is added)
  rep.extraction = {
    examples: sum('examples') || rep.extraction.examples,
    cached: sum('cached'),
    computed: sum('computed') + rep.extraction.computed,
    runs: sum('runs') + rep.extraction.runs,
    skipped: rep.extraction.skipped,
    seconds: r.shardSeconds,
    cacheDir: options.cacheDir,
  };
  return {
    ...rep,
    queue: {
      url: shownUrl(q.queue),
      run: r.run,
      shards: shards.length,
      shardSize: shards[0]?.length ?? 0,
      shardResults: results,
      headWorker: r.parent.worker,
      extractSeconds: r.shardSeconds,
    },
  };
}
