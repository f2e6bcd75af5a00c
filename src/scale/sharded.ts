/**
 * The submit-and-watch loop every sharded run shares (feature extraction, top-block fine-tuning):
 * `submitShardedRun` submits one BullMQ flow (a child job per shard, retried with exponential
 * backoff, failing the parent when it fails for good; and a parent job BullMQ starts once every
 * child has completed), sums the shards' progress events over every worker, reports retried
 * shards, and waits for the shards and then the parent through the watch loop (./watch.ts).
 * What the jobs hold and do is the caller's.
 */
import { randomBytes } from 'node:crypto';
import type { FlowJob } from 'bullmq';
import { QUEUE_NAME } from './connection.js';
import { Submitter, type WatchOptions } from './watch.js';

/** Progress a shard job reports (BullMQ progress data): extraction and activation shards alike. */
export interface ShardProgress {
  shard: number;
  examples: number;
  total: number;
  computed: number;
  cached: number;
  worker: string;
}

/** Progress summed over every worker's shards. */
export interface ShardedProgress {
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

export interface ShardedRunSpec<S, A> extends WatchOptions {
  /** redis://HOST:PORT */
  queue: string;
  /** The children: their job name, and the data of shard i of `shards`. */
  shardJob: string;
  shards: number;
  shardData: (run: string, shard: number) => S;
  /** The parent: its job name, the suffix of its job id, its data, and how messages name it. */
  parentJob: string;
  parentId: string;
  parentData: (run: string) => A;
  parentName: string;
  /** Examples over all shards (the progress total). */
  total: number;
  /** Tries per shard (default 3), with exponential backoff from `backoffMs` (default 1000); the parent tries twice. */
  attempts?: number;
  backoffMs?: number;
  onProgress?: (p: ShardedProgress) => void;
  /** A shard attempt that failed or stalled (it is retried while attempts remain). */
  onRetry?: (r: { shard: number; error: string }) => void;
}

export interface ShardedRunResult<R, T> {
  run: string;
  /** The shards' return values, by shard. */
  shardResults: R[];
  /** The parent's return value. */
  parent: T;
  /** Wall-clock seconds from submission to the last shard. */
  shardSeconds: number;
}

const KEEP = { removeOnComplete: { age: 7 * 86400 }, removeOnFail: { age: 7 * 86400 } };

/** Submit a sharded run as one flow and watch it to the end; the Submitter is closed however it ends. */
export async function submitShardedRun<S, A, R extends { shard: number }, T>(
  o: ShardedRunSpec<S, A>,
): Promise<ShardedRunResult<R, T>> {
  const run = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const sub = new Submitter(o.queue);
  const progress = new Map<string, ShardProgress>();
  const workers = new Set<string>();
  const shardOf = new Map<string, number>();
  const t0 = performance.now();
  const backoff = { type: 'exponential', delay: o.backoffMs ?? 1000 };
  try {
    const children: FlowJob[] = Array.from({ length: o.shards }, (_, i) => ({
      name: o.shardJob,
      queueName: QUEUE_NAME,
      data: o.shardData(run, i),
      opts: { jobId: `${run}-shard-${i}`, attempts: o.attempts ?? 3, backoff, failParentOnFailure: true, ...KEEP },
    }));
    for (let i = 0; i < children.length; i++) shardOf.set(`${run}-shard-${i}`, i);
    sub.events.on('progress', ({ jobId, data }) => {
      if (!shardOf.has(jobId) || typeof data !== 'object' || data === null) return;
      const latest = data as unknown as ShardProgress;
      workers.add(latest.worker);
      progress.set(jobId, latest); // a retried shard starts again from its cached part
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
      o.onProgress?.({
        examples,
        total: o.total,
        computed,
        cached,
        shardsDone,
        shards: o.shards,
        workers: [...workers],
        latest,
      });
    });
    sub.reportShardRetries(shardOf, (id) => progress.get(id)?.worker, o.onRetry);
    await sub.events.waitUntilReady();
    const parentId = `${run}-${o.parentId}`;
    await sub.flow.add({
      name: o.parentJob,
      queueName: QUEUE_NAME,
      data: o.parentData(run),
      opts: { jobId: parentId, attempts: 2, backoff, ...KEEP },
      children,
    });
    const ids = [...shardOf.keys()];
    const describe = (id: string) => (id === parentId ? o.parentName : `shard ${shardOf.get(id)! + 1} of ${o.shards}`);
    // the shards first (their results), then the parent; a shard failing for good fails the run here
    const shardResults = await sub.waitAll<R>(ids, describe, o);
    const shardSeconds = (performance.now() - t0) / 1000;
    const parent = (await sub.waitAll<T>([parentId], describe, o)).get(parentId)!;
    const results = ids
      .map((id) => shardResults.get(id))
      .filter((r): r is R => !!r)
      .sort((a, b) => a.shard - b.shard);
    return { run, shardResults: results, parent, shardSeconds };
  } finally {
    await sub.close();
  }
}
