/**
 * The submitter's side of a run: BullMQ objects on their own connections, and a watch loop that
 * polls the jobs it is waiting for until each completes, turning every way a run can go wrong into
 * a clear GraftError instead of a hang or a wrong result:
 *
 *   a job failed for good (unrecoverable, or out of attempts)  → its reason, naming the job
 *   Redis unreachable for longer than `lostAfterMs`             → "lost the connection to Redis"
 *   Redis back but without the run's jobs (restarted without    → "Redis no longer holds this run's
 *   persistence, or flushed)                                       jobs"; the cache keeps finished work
 */
import { FlowProducer, Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { GraftError } from '../util/errors.js';
import { QUEUE_NAME, connect, shownUrl } from './connection.js';

export interface WatchOptions {
  /** Poll interval (default 500 ms). */
  pollMs?: number;
  /** Fail after Redis has been unreachable this long (default 60 s). */
  lostAfterMs?: number;
  /** What to tell the user to do after a lost run (e.g. "run the same command again: …"). */
  rerunHint?: string;
}

/** Queue, FlowProducer and QueueEvents on one address; close() ends them all. */
export class Submitter {
  readonly queue: Queue;
  readonly events: QueueEvents;
  private flowProducer?: FlowProducer;
  private readonly conns: Redis[] = [];
  lastError = '';

  constructor(readonly url: string) {
    const onError = (e: Error) => (this.lastError = e.message);
    const c1 = connect(url, { onError, failFast: true });
    const c2 = connect(url, { onError });
    this.conns.push(c1, c2);
    this.queue = new Queue(QUEUE_NAME, { connection: c1 });
    this.events = new QueueEvents(QUEUE_NAME, { connection: c2 });
    this.queue.on('error', onError);
    this.events.on('error', onError);
  }

  get flow(): FlowProducer {
    if (!this.flowProducer) {
      const c = connect(this.url, { onError: (e) => (this.lastError = e.message), failFast: true });
      this.conns.push(c);
      this.flowProducer = new FlowProducer({ connection: c });
      this.flowProducer.on('error', (e: Error) => (this.lastError = e.message));
    }
    return this.flowProducer;
  }

  /**
   * Tells `onRetry` when a shard job of this run is retried: its worker stopped answering (BullMQ's
   * stalled-job check gives it to another worker) or an attempt failed. `shardOf` maps job ids to shard
   * numbers; `workerOf` names the worker last seen running a job.
   */
  reportShardRetries(
    shardOf: ReadonlyMap<string, number>,
    workerOf: (jobId: string) => string | undefined,
    onRetry: ((r: { shard: number; error: string }) => void) | undefined,
  ): void {
    this.events.on('stalled', ({ jobId }) => {
      const shard = shardOf.get(jobId);
      if (shard !== undefined)
        onRetry?.({
          shard,
          error: `the worker running it stopped answering (${workerOf(jobId) ?? 'unknown'}); it goes to another worker`,
        });
    });
    this.events.on('failed', ({ jobId, failedReason }) => {
      const shard = shardOf.get(jobId);
      if (shard !== undefined) onRetry?.({ shard, error: failedReason });
    });
  }

  async close(): Promise<void> {
    const quiet = async (p: Promise<unknown> | undefined) => {
      try {
        await p;
      } catch {
        /* closing anyway */
      }
    };
    await Promise.all([quiet(this.events.close()), quiet(this.queue.close()), quiet(this.flowProducer?.close())]);
    for (const c of this.conns) c.disconnect();
  }

  /**
   * Wait until every job in `ids` has completed; their return values, by id. A failed job, a lost
   * Redis or lost jobs reject with a GraftError. `describe` names a job in messages.
   */
  async waitAll<T>(ids: string[], describe: (id: string) => string, o: WatchOptions = {}): Promise<Map<string, T>> {
    const pollMs = o.pollMs ?? 500,
      lostAfter = o.lostAfterMs ?? 60_000;
    const done = new Map<string, T>();
    let downSince: number | undefined;
    const hint = o.rerunHint ?? 'run the same command again';
    for (;;) {
      const pending = ids.filter((id) => !done.has(id));
      if (pending.length === 0) return done;
      let jobs: (Job | undefined)[];
      let states: string[];
      try {
        // the state first, then the job: a job read before its state could be a finished job without its return value
        states = await Promise.all(pending.map((id) => this.queue.getJobState(id)));
        jobs = await Promise.all(
          pending.map((id, i) =>
            states[i] === 'completed' || states[i] === 'failed'
              ? Job.fromId(this.queue, id)
              : Promise.resolve(undefined),
          ),
        );
        downSince = undefined;
      } catch (e) {
        downSince ??= Date.now();
        if (Date.now() - downSince > lostAfter)
          throw new GraftError(
            `lost the connection to Redis at ${shownUrl(this.url)} for more than ${Math.round(lostAfter / 1000)} s (${this.lastError || (e as Error).message})`,
            hint,
          );
        await sleep(pollMs);
        continue;
      }
      for (let i = 0; i < pending.length; i++) {
        const id = pending[i]!,
          j = jobs[i],
          s = states[i]!;
        if (s === 'unknown' || ((s === 'completed' || s === 'failed') && !j))
          throw new GraftError(
            `Redis at ${shownUrl(this.url)} no longer holds this run's jobs (${describe(id)} is gone): was it restarted without persistence, or flushed?`,
            hint,
          );
        if (s === 'completed') done.set(id, j!.returnvalue as T);
        else if (s === 'failed' && j)
          throw new GraftError(
            `${describe(id)} failed after ${j.attemptsMade} attempt${j.attemptsMade === 1 ? '' : 's'}: ${await this.failureOf(j)}`,
          );
      }
      if (done.size < ids.length) await sleep(pollMs);
    }
  }

  /** Why a job failed; for a parent failed by a child, the child's reason (named). */
  private async failureOf(j: Job): Promise<string> {
    const reason = j.failedReason || 'no reason recorded';
    const m = /child (\S+) failed/.exec(reason);
    if (!m) return reason;
    const childId = m[1]!.split(':').pop()!;
    const child = await Job.fromId(this.queue, childId).catch(() => undefined);
    if (!child) return reason;
    return `${child.name} ${describeData(child.data)} failed after ${child.attemptsMade} attempt${child.attemptsMade === 1 ? '' : 's'}: ${child.failedReason}`;
  }
}

function describeData(d: unknown): string {
  const x = d as { shard?: number; shards?: number; index?: number };
  if (x && typeof x.shard === 'number') return `(shard ${x.shard + 1} of ${x.shards})`;
  if (x && typeof x.index === 'number') return `(cell ${x.index + 1})`;
  return '';
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
