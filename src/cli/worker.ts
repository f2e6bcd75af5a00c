/**
 * `graft worker --queue redis://HOST:PORT`: a process that runs Graft jobs (feature-extraction and
 * activation shards, head fits, top-block training, sweep and curve cells) from BullMQ on Redis (src/scale); and the `--queue` flags the
 * submitting commands add (`queueOptions`, `featuresOnQueue` for the features path of graft train,
 * `imagesHereOrOnQueue` for graft train images).
 */
import { Command, Option } from 'commander';
import { trainFeatureClassifier, type FeatureTrainOptions, type FeatureTrainReport } from '../features/classifier.js';
import type { LabelledImages } from '../data/labelled-images.js';
import { startWorker } from '../scale/worker.js';
import { trainFeaturesOnQueue, type QueueFeatureReport } from '../scale/features.js';
import { finetuneImagesOnQueue } from '../scale/finetune.js';
import { trainImageClassifier, type TrainImagesOptions, type TrainImagesResult } from '../finetune/train-images.js';
import type { DataSpec } from '../scale/jobs.js';
import { GraftError } from '../util/errors.js';
import { int } from './parse.js';

function positive(v: string, flag: string): number {
  const n = int(v, flag);
  if (n < 1) throw new GraftError(`${flag} must be at least 1, got ${v}`);
  return n;
}

interface WorkerFlags {
  queue: string;
  concurrency: string;
  lockDuration: string;
  stalledInterval: string;
  maxStalled: string;
  quiet?: boolean;
}

export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'run Graft jobs (feature-extraction and activation shards, head fits, top-block training, sweep and curve cells) from a Redis queue until stopped (Ctrl-C / SIGTERM finish the jobs in hand)',
    )
    .requiredOption(
      '--queue <url>',
      'the Redis holding the queue: redis://HOST:PORT (or redis://[USER:PASSWORD@]HOST:PORT/DB)',
    )
    .option(
      '--concurrency <n>',
      'jobs run at once in this process (onnxruntime already uses several cores per job)',
      '1',
    )
    .option(
      '--lock-duration <ms>',
      "a job's lock lasts this long unless renewed (renewed every half); a dead worker's job is taken over after about this plus --stalled-interval",
      '30000',
    )
    .option('--stalled-interval <ms>', 'how often this worker looks for jobs whose worker died', '30000')
    .option('--max-stalled <n>', 'times a job may lose its worker before it fails', '2')
    .option('--quiet', 'no line per job on stderr')
    .action(async (o: WorkerFlags) => {
      const log = o.quiet
        ? undefined
        : (l: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${l}\n`);
      const w = await startWorker(o.queue, {
        concurrency: positive(o.concurrency, '--concurrency'),
        lockDuration: positive(o.lockDuration, '--lock-duration'),
        stalledInterval: positive(o.stalledInterval, '--stalled-interval'),
        maxStalledCount: int(o.maxStalled, '--max-stalled'),
        ...(log ? { log } : {}),
      });
      process.stderr.write(
        `graft worker ${w.name} taking jobs from ${o.queue.replace(/:[^:@/]*@/, ':***@')} (concurrency ${o.concurrency})\n`,
      );
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) process.exit(130); // a second signal: now
          stopping = true;
          process.stderr.write(`${sig}: finishing the jobs in hand, then stopping (again to stop now)\n`);
          void w.close().then(resolve);
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
      });
    });
}

/** The flags a command adds to run on the queue. */
export interface QueueFlags {
  queue?: string;
  shardSize?: string;
  attempts?: string;
  json?: boolean;
}

/** Add --queue (and its shard and retry settings) to a submitting command. */
export function queueOptions(cmd: Command): Command {
  return cmd
    .option(
      '--queue <url>',
      'run on `graft worker` processes through the Redis at redis://HOST:PORT (the model, data, --cache and --out must be on paths every worker can reach)',
    )
    .option('--shard-size <n>', 'with --queue: examples per extraction job (rounded up to whole batches)', '512')
    .addOption(new Option('--attempts <n>', 'with --queue: tries per job before the run fails').default('3'));
}

/**
 * The features path of `graft train` on the queue: the same report trainFeatureClassifier gives (plus
 * `queue`), with progress summed over every worker on stderr. Callbacks in `opts` other than onSkip
 * are not used (progress comes from the workers).
 */
export async function featuresOnQueue(
  model: string,
  data: DataSpec,
  opts: FeatureTrainOptions,
  q: QueueFlags,
): Promise<QueueFeatureReport> {
  if (!q.queue) throw new GraftError('featuresOnQueue needs --queue');
  const { onProgress: _p, onSkip, runtime: _r, cacheDir, ...rest } = opts;
  if (!cacheDir)
    throw new GraftError(
      '--queue needs --cache DIR: a folder every worker can reach, where the shards write their activations',
    );
  const tty = !q.json && process.stderr.isTTY;
  let lastLine = 0;
  const report: QueueFeatureReport = await trainFeaturesOnQueue(
    model,
    data,
    { ...rest, cacheDir },
    {
      queue: q.queue,
      shardSize: positive(q.shardSize ?? '512', '--shard-size'),
      attempts: positive(q.attempts ?? '3', '--attempts'),
      onProgress: (p) => {
        const now = Date.now();
        if (q.json || (!tty && now - lastLine < 2000 && p.examples < p.total)) return;
        lastLine = now;
        const line = `features on the queue: ${p.examples}/${p.total} images (${p.computed} computed, ${p.cached} cached), ${p.shardsDone}/${p.shards} shards, ${p.workers.length} worker${p.workers.length === 1 ? '' : 's'}`;
        process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
      },
      onRetry: (r) => process.stderr.write(`${tty ? '\n' : ''}shard ${r.shard + 1}: ${r.error}\n`),
    },
  );
  if (tty) process.stderr.write('\n');
  for (const s of report.skipped) onSkip?.(s);
  return report;
}

/**
 * The features path of `graft train` with or without --queue: trainFeatureClassifier here, or
 * featuresOnQueue with the dataset given by its flags (--data, --labels-data, --max-per-class).
 */
export async function trainFeaturesHereOrOnQueue(
  flags: QueueFlags & { model: string; data: string; labelsData?: string; maxPerClass?: string },
  data: LabelledImages,
  opts: FeatureTrainOptions,
): Promise<{ report: FeatureTrainReport | QueueFeatureReport }> {
  if (!flags.queue) return trainFeatureClassifier(flags.model, data, opts);
  const spec: DataSpec = {
    path: flags.data,
    ...(flags.labelsData ? { labelsData: flags.labelsData } : {}),
    ...(flags.maxPerClass ? { maxPerClass: positive(flags.maxPerClass, '--max-per-class') } : {}),
  };
  return { report: await featuresOnQueue(flags.model, spec, opts, flags) };
}

/**
 * `graft train images` with or without --queue: trainImageClassifier here, or on the queue
 * (image folders and IDX data): the activations cached by shards on the workers, shown through
 * opts.onCacheProgress; the training on one worker (its progress is on that worker).
 */
export async function imagesHereOrOnQueue(
  flags: QueueFlags & { model: string; data: string },
  opts: TrainImagesOptions,
): Promise<TrainImagesResult> {
  if (!flags.queue) return trainImageClassifier(flags.model, flags.data, opts);
  let told = false;
  const { report, files, images } = await finetuneImagesOnQueue(flags.model, flags.data, opts, {
    queue: flags.queue,
    shardSize: positive(flags.shardSize ?? '512', '--shard-size'),
    attempts: positive(flags.attempts ?? '3', '--attempts'),
    onProgress: (p) => {
      opts.onCacheProgress?.({ done: p.examples, total: p.total, cached: p.cached, computed: p.computed });
      if (!told && p.shardsDone === p.shards && !flags.json) {
        told = true;
        process.stderr.write(
          `\nactivations cached by ${p.workers.length} worker${p.workers.length === 1 ? '' : 's'}; the training runs on one worker (its progress is in that worker's log)\n`,
        );
      }
    },
    onRetry: (r) => process.stderr.write(`\nshard ${r.shard + 1}: ${r.error}\n`),
  });
  return { data: 'images', report, files, images };
}
