/**
 * Dynamic batching for one served model: inputs from concurrent requests wait in a bounded queue and
 * run together as one onnxruntime batch. A batch starts as soon as `maxBatch` inputs are waiting, or
 * `maxDelayMs` after the oldest waiting input arrived, whichever comes first, and only while fewer than
 * `maxConcurrent` batches are running (default 1: the next batch forms while the current one runs).
 * With `maxBatch` 1 every input runs alone. The queue holds at most `maxQueue` inputs, counted from the
 * moment a request is admitted (before its images are decoded), so memory stays bounded: a request
 * that does not fit is refused at once with a QueueFullError (HTTP 503), never queued.
 */
import { GraftError } from '../util/errors.js';

export interface BatcherOptions {
  /** Most inputs per onnxruntime run (default 32; 1 turns batching off). */
  maxBatch?: number;
  /** Longest wait, after the oldest waiting input arrived, before a partial batch runs (default 5 ms). */
  maxDelayMs?: number;
  /** Most inputs admitted and not yet running (default 256). */
  maxQueue?: number;
  /** Most batches running at once for this model (default 1). */
  maxConcurrent?: number;
}

/** The queue is full: the request was refused without being queued (HTTP 503). */
export class QueueFullError extends GraftError {
  readonly statusCode = 503;
  constructor(
    what: string,
    readonly maxQueue: number,
  ) {
    super(
      `${what}: the request queue is full (${maxQueue} inputs waiting); try again shortly`,
      'raise --max-queue, or send fewer requests at once',
    );
    this.name = 'QueueFullError';
  }
}

/** The model was removed (or the server is stopping) before the input could run. */
export class BatcherClosedError extends GraftError {
  readonly statusCode = 503;
  constructor(what: string) {
    super(`${what}: the model is being unloaded`);
    this.name = 'BatcherClosedError';
  }
}

export interface BatcherStats {
  /** Batches run (one onnxruntime run each). */
  runs: number;
  /** Inputs run. */
  inputs: number;
  /** Largest batch run. */
  largestBatch: number;
  /** Inputs admitted and not yet running. */
  waiting: number;
  /** Batches running now. */
  running: number;
  /** Most batches that ran at the same time (at most maxConcurrent). */
  mostRunning: number;
  /** Requests refused because the queue was full. */
  refused: number;
}

interface Item<I, O> {
  input: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
  at: number;
}

/** A slot reservation for `n` inputs: submit them once prepared, or release it if preparation fails. */
export interface Admission<I, O> {
  submit(inputs: I[]): Promise<O[]>;
  release(): void;
}

export class Batcher<I, O> {
  readonly maxBatch: number;
  readonly maxDelayMs: number;
  readonly maxQueue: number;
  readonly maxConcurrent: number;
  private queue: Item<I, O>[] = [];
  /** Inputs admitted but not yet submitted (being decoded). */
  private reserved = 0;
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private idle: (() => void)[] = [];
  private readonly counts = { runs: 0, inputs: 0, largestBatch: 0, refused: 0, mostRunning: 0 };

  /** `run` maps a batch of inputs to one output per input, in order. */
  constructor(
    private readonly run: (inputs: I[]) => Promise<O[]>,
    o: BatcherOptions = {},
    readonly label = 'model',
  ) {
    this.maxBatch = positiveInt(o.maxBatch ?? 32, 'maxBatch');
    this.maxDelayMs = o.maxDelayMs ?? 5;
    if (!(this.maxDelayMs >= 0) || !Number.isFinite(this.maxDelayMs))
      throw new GraftError(`maxDelayMs must be a non-negative number, got ${o.maxDelayMs}`);
    this.maxQueue = positiveInt(o.maxQueue ?? 256, 'maxQueue');
    this.maxConcurrent = positiveInt(o.maxConcurrent ?? 1, 'maxConcurrent');
  }

  stats(): BatcherStats {
    return { ...this.counts, waiting: this.reserved + this.queue.length, running: this.running };
  }

  /**
   * Reserve room for `n` inputs now (synchronously), or throw QueueFullError. The reservation counts
   * against maxQueue until its inputs start running.
   */
  admit(n: number): Admission<I, O> {
    if (this.closed) throw new BatcherClosedError(this.label);
    if (this.reserved + this.queue.length + n > this.maxQueue) {
      this.counts.refused++;
      throw new QueueFullError(this.label, this.maxQueue);
    }
    this.reserved += n;
    let open = true;
    return {
      release: () => {
        if (!open) return;
        open = false;
        this.reserved -= n;
        this.checkIdle();
      },
      submit: (inputs: I[]) => {
        if (!open) return Promise.reject(new Error('admission already used'));
        if (inputs.length > n) return Promise.reject(new Error(`admitted ${n} inputs, submitted ${inputs.length}`));
        open = false;
        this.reserved -= n; // now queued instead (no idle moment in between)
        return this.enqueue(inputs);
      },
    };
  }

  /** admit + submit in one step, for inputs that need no preparation. */
  submit(inputs: I[]): Promise<O[]> {
    return this.admit(inputs.length).submit(inputs);
  }

  /** Inputs of an admission (made before any close: close waits for them). */
  private enqueue(inputs: I[]): Promise<O[]> {
    const at = performance.now();
    const done = Promise.all(
      inputs.map((input) => new Promise<O>((resolve, reject) => this.queue.push({ input, resolve, reject, at }))),
    );
    this.schedule();
    return done;
  }

  /** Start what may start now; otherwise arm a timer for the oldest waiting input's deadline. */
  private schedule(): void {
    while (this.queue.length && this.running < this.maxConcurrent) {
      const wait = this.queue[0]!.at + this.maxDelayMs - performance.now();
      if (this.queue.length < this.maxBatch && wait > 0 && !this.closed) {
        if (!this.timer)
          this.timer = setTimeout(() => {
            this.timer = undefined;
            this.schedule();
          }, Math.ceil(wait));
        return;
      }
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      void this.runBatch(this.queue.splice(0, this.maxBatch));
    }
  }

  private async runBatch(batch: Item<I, O>[]): Promise<void> {
    this.running++;
    this.counts.mostRunning = Math.max(this.counts.mostRunning, this.running);
    this.counts.runs++;
    this.counts.inputs += batch.length;
    this.counts.largestBatch = Math.max(this.counts.largestBatch, batch.length);
    try {
      const out = await this.run(batch.map((b) => b.input));
      if (out.length !== batch.length)
        throw new Error(`${this.label}: ${out.length} outputs for a batch of ${batch.length}`);
      batch.forEach((b, i) => b.resolve(out[i]!));
    } catch (e) {
      for (const b of batch) b.reject(e);
    } finally {
      this.running--;
      this.schedule();
      this.checkIdle();
    }
  }

  private checkIdle(): void {
    if (this.running || this.queue.length || this.reserved) return;
    for (const f of this.idle.splice(0)) f();
  }

  /**
   * Stop admitting; what is already queued still runs (without waiting for the delay), and the promise
   * settles when nothing is queued or running (admissions not yet submitted included: they still run).
   */
  async close(): Promise<void> {
    this.closed = true;
    this.schedule();
    if (!this.running && !this.queue.length && !this.reserved) return;
    await new Promise<void>((r) => this.idle.push(r));
  }
}

function positiveInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1) throw new GraftError(`${what} must be a positive integer, got ${v}`);
  return v;
}
