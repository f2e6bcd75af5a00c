/**
 * A Graft worker: one BullMQ Worker on the `graft` queue running src/scale/jobs.ts processJob, with
 * the lock and stalled-job settings that decide how fast a dead worker's job goes to another one.
 */
import { Worker, type Job } from 'bullmq';
import { QUEUE_NAME, checkReachable, connect, shownUrl } from './connection.js';
import { processJob, WORKER_NAME, type GraftJob, type GraftJobResult } from './jobs.js';

export interface WorkerOptions {
  /** Jobs run at once in this process (default 1: onnxruntime already uses the cores). */
  concurrency?: number;
  /** How long a job's lock lasts without renewal (ms, default 30000); the worker renews it at half that. */
  lockDuration?: number;
  /** How often stalled jobs (whose worker died) are looked for (ms, default 30000). */
  stalledInterval?: number;
  /** Times a job may stall (its worker die) before it fails (default 2). */
  maxStalledCount?: number;
  /** Lines about jobs started, finished and failed (default: none). */
  log?: (line: string) => void;
}

export interface RunningWorker {
  name: string;
  /** Finish the jobs in hand, then stop. */
  close(): Promise<void>;
}

/** Start taking Graft jobs from Redis at `url`. */
export async function startWorker(url: string, o: WorkerOptions = {}): Promise<RunningWorker> {
  await checkReachable(url);
  const log = o.log ?? (() => {});
  let lastError = '';
  const conn = connect(url, {
    onError: (e) => {
      if (e.message !== lastError) log(`redis: ${(lastError = e.message)} (reconnecting)`);
    },
  });
  conn.on('ready', () => {
    if (lastError) {
      log(`redis: connected again to ${shownUrl(url)}`);
      lastError = '';
    }
  });
  const what = (j: Job<GraftJob>) => {
    const d = j.data;
    if (d.kind === 'activation-shard')
      return `activation shard ${d.shard + 1}/${d.shards} (${d.rows.length} images × ${d.views} view${d.views === 1 ? '' : 's'})`;
    if (d.kind === 'finetune-top') return 'top-block training';
    return d.kind === 'extract-shard'
      ? `shard ${d.shard + 1}/${d.shards} (${d.rows.length} examples)`
      : d.kind === 'fit-head'
        ? 'head fit'
        : d.kind === 'curve-cell'
          ? `curve cell ${d.index + 1}/${d.cells} (${d.cell.method}, ${d.cell.perClass}/class, seed ${d.cell.seed})`
          : `sweep cell ${d.index + 1}/${d.cells}`;
  };
  const w = new Worker<GraftJob, GraftJobResult>(
    QUEUE_NAME,
    async (job) => {
      log(`${job.id}: ${what(job)} started (attempt ${job.attemptsMade + 1})`);
      const t0 = performance.now();
      const r = await processJob(job);
      log(`${job.id}: ${what(job)} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      return r;
    },
    {
      connection: conn,
      name: WORKER_NAME,
      concurrency: o.concurrency ?? 1,
      lockDuration: o.lockDuration ?? 30_000,
      stalledInterval: o.stalledInterval ?? 30_000,
      maxStalledCount: o.maxStalledCount ?? 2,
    },
  );
  w.on('failed', (job, err) => {
    if (job) log(`${job.id}: ${what(job)} failed: ${err.message}`);
  });
  w.on('error', (e) => {
    if (e.message !== lastError) log(`worker: ${(lastError = e.message)}`);
  });
  await w.waitUntilReady();
  return {
    name: WORKER_NAME,
    close: async () => {
      await w.close();
      conn.disconnect();
    },
  };
}
