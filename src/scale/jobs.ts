/**
 * The jobs Graft puts on the queue, their payloads and results, and what a worker does with each:
 *
 *   extract-shard  run the frozen backbone over some rows of a dataset, writing their activations
 *                  into the shared content-keyed fp16 cache (src/features/cache.ts); returns counts
 *                  and the unreadable images by path (they are skipped, as a single-process run skips them)
 *   fit-head       the parent of a run's shards: once they are all done, the single-process
 *                  trainFeatureClassifier over the same data with the same cache (everything is a
 *                  cache hit, so its features, head and metrics are those of a local run) — it writes
 *                  the classifier folder and returns the report
 *   activation-shard  (graft train images --queue, src/scale/finetune.ts) activations below the cut
 *                  of some (image, view) pairs into the shared cache
 *   finetune-top   their parent: the single-process trainImageClassifier reading that cache
 *   cell           one cell of a sweep (src/scale/cells.ts)
 *   curve-cell     one (seed, budget, method) of a data-efficiency curve (src/scale/curve.ts)
 *
 * Payloads carry paths and row numbers only, never images or vectors: the model, the data, the
 * cache folder and the output folder must be paths every worker can reach (a shared filesystem).
 * A failure that would repeat (a bad model or option, a missing file) fails the job at once
 * (BullMQ UnrecoverableError); a transient system error (EIO, ESTALE…) is retried with backoff up
 * to the job's attempts; a worker that dies mid-job is BullMQ's stalled-job case (maxStalledCount).
 */
import { UnrecoverableError, type Job } from 'bullmq';
import { loadModel } from '../formats/load.js';
import { extractFeatures } from '../features/extract.js';
import {
  trainFeatureClassifier,
  type FeatureTrainOptions,
  type FeatureTrainReport,
  type SkippedFile,
} from '../features/classifier.js';
import { GraftError } from '../util/errors.js';
import type { ShardProgress } from './sharded.js';
import { cacheFor, extractorFor, loadData, loadModelOnce, mustSee, WORKER_NAME, type DataSpec } from './load.js';
import { runCell, type CellJob, type CellResult } from './cells.js';
import { runCurveCellJob, type CurveCellJob } from './curve.js';
import {
  runActivationShard,
  runFinetuneTop,
  type ActivationShardJob,
  type ActivationShardResult,
  type FinetuneTopJob,
  type FinetuneTopResult,
} from './finetune.js';
import type { CurvePoint } from '../eval/curve.js';

/** What a features run needs besides model and data: FeatureTrainOptions without callbacks and runtime. */
export type FeatureJobOptions = Omit<
  FeatureTrainOptions,
  'runtime' | 'onProgress' | 'onSkip' | 'cacheDir' | 'out' | 'knownKeys'
> & { cacheDir: string; out?: string };

export interface ExtractShardJob {
  kind: 'extract-shard';
  run: string;
  model: string;
  /** The value to cut at (absent: the input of the model's final classifier, found on the worker). */
  node?: string;
  data: DataSpec;
  /** Dataset rows of this shard, in the order a single-process run extracts them. */
  rows: number[];
  cacheDir: string;
  batchSize: number;
  shard: number;
  shards: number;
}

export interface ExtractShardResult {
  shard: number;
  examples: number;
  computed: number;
  cached: number;
  runs: number;
  skipped: SkippedFile[];
  seconds: number;
  worker: string;
  attempt: number;
  /** The shard's rows and their cache keys ('' where unreadable), for the head fit: it need not read the images again. */
  rows?: number[];
  keys?: string[];
}

export interface FitHeadJob {
  kind: 'fit-head';
  run: string;
  model: string;
  data: DataSpec;
  options: FeatureJobOptions;
}

export interface FitHeadResult {
  report: FeatureTrainReport;
  worker: string;
}

export type { DataSpec };
export { WORKER_NAME };
export type GraftJob = ExtractShardJob | FitHeadJob | CellJob | CurveCellJob | ActivationShardJob | FinetuneTopJob;
export type GraftJobResult =
  | ExtractShardResult
  | FitHeadResult
  | CellResult
  | CurvePoint
  | ActivationShardResult
  | FinetuneTopResult;

async function extractShard(job: Job<ExtractShardJob>): Promise<ExtractShardResult> {
  const d = job.data;
  const t0 = performance.now();
  const model = loadModelOnce(d.model);
  const prepared = extractorFor(d.model, d.node); // one onnxruntime session per model, for every shard
  const data = loadData(d.data);
  const cache = cacheFor(d.cacheDir);
  for (const r of d.rows)
    if (!(r >= 0 && r < data.inputs.length))
      throw new GraftError(
        `shard ${d.shard}: row ${r} is not in ${d.data.path} (${data.inputs.length} examples): the data changed since the run was submitted`,
      );
  const chunks: (string | Uint8Array)[][] = [];
  for (let s = 0; s < d.rows.length; s += d.batchSize)
    chunks.push(d.rows.slice(s, s + d.batchSize).map((r) => data.inputs[r]!));
  const skipped: SkippedFile[] = [];
  let last = { examples: 0, cached: 0, computed: 0, runs: 0, skipped: 0 };
  const report = (): Promise<void> =>
    job
      .updateProgress({
        shard: d.shard,
        examples: last.examples,
        total: d.rows.length,
        computed: last.computed,
        cached: last.cached,
        worker: WORKER_NAME,
      } satisfies ShardProgress)
      .catch(() => {});
  await report();
  const keys: string[] = [];
  await extractFeatures(model, prepared.value, chunks, {
    batchSize: d.batchSize,
    cache,
    prepared,
    onKeys: (k) => {
      for (const x of k) keys.push(x);
    },
    onProgress: (p) => {
      last = p;
      void report();
    },
    onUnreadable: (f) => {
      const row = d.rows[f.index]!;
      skipped.push({ path: data.names[row] ?? `example ${row}`, error: f.error });
    },
  });
  return {
    shard: d.shard,
    examples: last.examples,
    computed: last.computed,
    cached: last.cached,
    runs: last.runs,
    skipped,
    seconds: (performance.now() - t0) / 1000,
    worker: WORKER_NAME,
    attempt: job.attemptsMade + 1,
    rows: d.rows,
    keys,
  };
}

async function fitHead(job: Job<FitHeadJob>): Promise<FitHeadResult> {
  const d = job.data;
  // a child that failed fails this parent first (failParentOnFailure), so here every shard is in the cache
  mustSee(d.model, 'the model');
  const model = loadModel(d.model); // its own copy: the export builds on the graph it is given
  const data = loadData(d.data);
  mustSee(d.options.cacheDir, 'the cache folder');
  // the shards' cache keys: the images are not read again to compute them
  const knownKeys = new Map<string, string>();
  for (const r of Object.values(await job.getChildrenValues<ExtractShardResult>())) {
    if (!r?.rows || !r.keys || r.rows.length !== r.keys.length) continue;
    r.rows.forEach((row, i) => {
      const x = data.inputs[row];
      if (typeof x === 'string' && r.keys![i]) knownKeys.set(x, r.keys![i]!);
    });
  }
  const { report } = await trainFeatureClassifier(model, data, { ...d.options, knownKeys });
  report.model = d.model;
  return { report, worker: WORKER_NAME };
}

/** System errors that may pass on a second try (a busy or flaky shared filesystem, a full process table). */
const TRANSIENT = new Set([
  'EIO',
  'EAGAIN',
  'EBUSY',
  'ESTALE',
  'EMFILE',
  'ENFILE',
  'ETIMEDOUT',
  'ECONNRESET',
  'ENOMEM',
  'EINTR',
]);

function isTransient(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && TRANSIENT.has(code);
}

/**
 * Run one Graft job (the worker's processor). A failure is retried only when it may pass (a
 * transient system error); any other (a bad model or option, a missing file) would fail the same
 * way every time, so it fails the job at once (UnrecoverableError) instead of being retried.
 */
export async function processJob(job: Job<GraftJob>): Promise<GraftJobResult> {
  try {
    switch (job.data.kind) {
      case 'extract-shard':
        return await extractShard(job as Job<ExtractShardJob>);
      case 'fit-head':
        return await fitHead(job as Job<FitHeadJob>);
      case 'cell':
        return await runCell(job as Job<CellJob>);
      case 'activation-shard':
        return await runActivationShard(job as Job<ActivationShardJob>);
      case 'finetune-top':
        return await runFinetuneTop(job as Job<FinetuneTopJob>);
      case 'curve-cell': {
        const d = (job as Job<CurveCellJob>).data;
        mustSee(d.dataFile, "the curve's run file");
        return await runCurveCellJob(d, (p) => {
          mustSee(p, 'the model');
          return loadModel(p);
        });
      }
      default:
        throw new GraftError(
          `unknown job kind '${String((job.data as { kind?: unknown }).kind)}' (job ${job.name}): is this worker older than the submitter?`,
        );
    }
  } catch (e) {
    if (isTransient(e)) throw e; // BullMQ retries it, with backoff, up to the job's attempts
    const err = e as Error;
    throw new UnrecoverableError(
      err instanceof GraftError && err.hint ? `${err.message} (${err.hint})` : (err?.message ?? String(e)),
    );
  }
}
