/**
 * Distributed feature extraction and head fit (the submitter's side): `trainFeaturesOnQueue` splits
 * a features run into shards of whole onnxruntime batches, in the order a single-process run
 * extracts them, and submits one BullMQ flow: a child `extract-shard` job per shard and a parent
 * `fit-head` job that BullMQ starts only once every child has completed. Shards write the shared
 * content-keyed cache, so a retried or duplicated shard only rewrites identical bytes and a second
 * run computes nothing; the parent is the single-process trainFeatureClassifier reading that
 * cache, so the head, metrics and saved classifier are bit for bit those of a local run.
 *
 * Progress from every worker arrives as BullMQ progress events and is summed here.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { FlowJob } from 'bullmq';
import { stratifiedSplit } from '../data/splits.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { existsSync } from 'node:fs';
import type { FeatureTrainReport } from '../features/classifier.js';
import { GraftError } from '../util/errors.js';
import { QUEUE_NAME, checkReachable, shownUrl } from './connection.js';
import { Submitter, type WatchOptions } from './watch.js';
import type {
  DataSpec,
  ExtractShardJob,
  ExtractShardResult,
  FeatureJobOptions,
  FitHeadJob,
  FitHeadResult,
  ShardProgress,
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

export interface QueueProgress {
  examples: number;
  total: number;
  computed: number;
  cached: number;
  shardsDone: number;
  shards: number;
  /** Workers that have reported progress so far. */
  workers: string[];
  /** The report that brought this update: one shard, the worker running it. */
  latest: ShardProgress;
}

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

  const run = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const sub = new Submitter(q.queue);
  const progress = new Map<string, ShardProgress>();
  const workers = new Set<string>();
  const shardOf = new Map<string, number>();
  const t0 = performance.now();
  let extractSeconds = 0;
  try {
    const children: FlowJob[] = shards.map((r, i) => ({
      name: 'extract-shard',
      queueName: QUEUE_NAME,
      data: {
        kind: 'extract-shard',
        run,
        model: modelPath,
        ...(node ? { node } : {}),
        data: abs,
        rows: r,
        cacheDir: options.cacheDir,
        batchSize,
        shard: i,
        shards: shards.length,
      } satisfies ExtractShardJob,
      opts: {
        jobId: `${run}-shard-${i}`,
        attempts,
        backoff: { type: 'exponential', delay: q.backoffMs ?? 1000 },
        failParentOnFailure: true,
        removeOnComplete: { age: 7 * 86400 },
        removeOnFail: { age: 7 * 86400 },
      },
    }));
    children.forEach((_, i) => shardOf.set(`${run}-shard-${i}`, i));
    const emit = (latest: ShardProgress) => {
      let examples = 0,
        computed = 0,
        cached = 0,
        shardsDone = 0;
      for (const p of progress.values()) {
        examples += p.examples;
        computed += p.computed;
        cached += p.cached;
        if (p.examples >= p.total) shardsDone++;
      }
      q.onProgress?.({
        examples,
        total: rows.length,
        computed,
        cached,
        shardsDone,
        shards: shards.length,
        workers: [...workers],
        latest,
      });
    };
    sub.events.on('progress', ({ jobId, data: p }) => {
      if (!shardOf.has(jobId) || typeof p !== 'object' || p === null) return;
      const sp = p as unknown as ShardProgress;
      workers.add(sp.worker);
      progress.set(jobId, sp); // a retried shard starts again from its cached part
      emit(sp);
    });
    sub.reportShardRetries(shardOf, (id) => progress.get(id)?.worker, q.onRetry);
    await sub.events.waitUntilReady();
    const parentId = `${run}-fit-head`;
    await sub.flow.add({
      name: 'fit-head',
      queueName: QUEUE_NAME,
      data: { kind: 'fit-head', run, model: modelPath, data: abs, options } satisfies FitHeadJob,
      opts: {
        jobId: parentId,
        attempts: 2,
        backoff: { type: 'exponential', delay: q.backoffMs ?? 1000 },
        removeOnComplete: { age: 7 * 86400 },
        removeOnFail: { age: 7 * 86400 },
      },
      children,
    });
    const rerunHint = `run the same command again: shards already in ${options.cacheDir} are not computed again`;
    const watch = { ...q, rerunHint };
    const ids = [...shardOf.keys()];
    const describe = (id: string) =>
      id === parentId ? 'the head fit' : `shard ${shardOf.get(id)! + 1} of ${shards.length}`;
    // the shards first (their results), then the parent; a shard failing for good fails the run here
    const shardResults = await sub.waitAll<ExtractShardResult>(ids, describe, watch);
    extractSeconds = (performance.now() - t0) / 1000;
    const head = (await sub.waitAll<FitHeadResult>([parentId], describe, watch)).get(parentId)!;
    const results = ids
      .map((id) => shardResults.get(id))
      .filter((r): r is ExtractShardResult => !!r)
      .sort((a, b) => a.shard - b.shard)
      .map(({ rows: _rows, keys: _keys, ...r }) => r); // the keys were for the head fit
    const rep = head.report;
    const sum = (k: 'examples' | 'computed' | 'cached' | 'runs') => results.reduce((a, r) => a + r[k], 0);
    // extraction as the workers did it (the parent's own pass read the cache; anything it computed is added)
    rep.extraction = {
      examples: sum('examples') || rep.extraction.examples,
      cached: sum('cached'),
      computed: sum('computed') + rep.extraction.computed,
      runs: sum('runs') + rep.extraction.runs,
      skipped: rep.extraction.skipped,
      seconds: extractSeconds,
      cacheDir: options.cacheDir,
    };
    return {
      ...rep,
      queue: {
        url: shownUrl(q.queue),
        run,
        shards: shards.length,
        shardSize: shards[0]?.length ?? 0,
        shardResults: results,
        headWorker: head.worker,
        extractSeconds,
      },
    };
  } finally {
    await sub.close();
  }
}
