/**
 * `ThreadedSession`: an onnxruntime session that computes on a worker thread (src/server/session-worker.ts),
 * with Session's `run(feeds, outputs)` and `release()`. The server's main thread stays free for HTTP,
 * image decoding and forming the next batch while a batch runs. An input array that owns its whole
 * buffer is transferred to the worker (the caller must not reuse it), others are copied; errors come
 * back as GraftErrors naming the model.
 */
import { Worker } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Graph } from '../graph/graph.js';
import type { Tensor, DType, TypedArray } from '../graph/tensor.js';
import { encodeOnnx } from '../formats/onnx.js';
import { resolvedSessionOptions, cleanOrtMessage, type RuntimeOptions, type Feeds } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import type { WireTensor, WorkerReply, WorkerRequest } from './session-worker.js';

/** The model failed to run, or its thread stopped: the server's fault, not the request's (HTTP 500). */
export class ModelRunError extends GraftError {
  readonly statusCode = 500;
  constructor(message: string) {
    super(message);
    this.name = 'ModelRunError';
  }
}

/** The worker script beside this file (.ts under tsx, .js once built). */
const WORKER = new URL(`./session-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

export class ThreadedSession {
  private next = 1;
  private pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: unknown) => void }>();
  private dead: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly label: string,
  ) {
    worker.on('message', (m: WorkerReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      p.resolve(m);
    });
    const fail = (e: Error) => {
      this.dead = e;
      for (const p of this.pending.values())
        p.reject(new ModelRunError(`${label}: the onnxruntime thread stopped: ${e.message}`));
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  /** Start the worker and create the session there; resolves once it is loaded. */
  static async fromGraph(g: Graph, opts: RuntimeOptions = {}, label = g.name): Promise<ThreadedSession> {
    const options = await resolvedSessionOptions(opts);
    const bytes = encodeOnnx(g);
    // from the TypeScript sources (tsx), the worker registers tsx's loader first (found from here, not
    // from the working directory): a worker thread does not inherit the --import of its process
    const worker = WORKER.pathname.endsWith('.ts')
      ? new Worker(
          `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((t) => { t.register(); return import(${JSON.stringify(WORKER.href)}); })`,
          { eval: true, workerData: { bytes, options } },
        )
      : new Worker(WORKER, { workerData: { bytes, options } });
    const s = new ThreadedSession(worker, label);
    const ready = await s
      .call({ id: 0 } as never, [])
      .catch((e: unknown) => ({ id: 0, error: (e as Error).message }) as WorkerReply);
    if (ready.error) {
      await worker.terminate();
      throw new GraftError(`onnxruntime could not load ${label}: ${cleanOrtMessage(new Error(ready.error))}`);
    }
    return s;
  }

  /** Register a reply slot for `m.id` and send `m` (id 0: only wait for the worker's ready message). */
  private call(m: WorkerRequest, transfer: ArrayBuffer[]): Promise<WorkerReply> {
    if (this.dead)
      return Promise.reject(new ModelRunError(`${this.label}: the onnxruntime thread stopped: ${this.dead.message}`));
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(m.id, { resolve, reject });
      if (m.id !== 0) this.worker.postMessage(m, transfer);
    });
  }

  /** Run the model; the feeds' buffers are transferred to the worker. */
  async run(feeds: Feeds, outputs?: string[]): Promise<Record<string, Tensor>> {
    const wire: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [k, t] of Object.entries(feeds)) {
      if (t.dtype === 'string') throw new GraftError(`${this.label}: string inputs are not supported here`);
      const data = t.data as TypedArray;
      wire[k] = { type: t.dtype as WireTensor['type'], dims: [...t.dims], data: data as never };
      // moved, not copied, when the array owns its whole buffer (never a slice of a shared pool)
      const owns = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
      if (owns && data.buffer instanceof ArrayBuffer && !transfer.includes(data.buffer)) transfer.push(data.buffer);
    }
    const id = this.next++;
    const r = await this.call({ id, feeds: wire, ...(outputs ? { outputs } : {}) }, transfer);
    if (r.error) throw new ModelRunError(`${this.label}: onnxruntime failed: ${cleanOrtMessage(new Error(r.error))}`);
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(r.outputs ?? {}))
      out[k] = { dtype: v.type as DType, dims: v.dims, data: v.data as TypedArray };
    return out;
  }

  /** Release the session and stop the thread. */
  async release(): Promise<void> {
    if (!this.dead) {
      const id = this.next++;
      await this.call({ id, release: true }, []).catch(() => undefined);
    }
    await this.worker.terminate();
  }
}

/**
 * `instances` ThreadedSessions of one model (each on its own thread), with the same `run` and `release`:
 * a run takes a free instance, or waits for one. The model's batcher runs at most `instances` batches at
 * once, so that batches run side by side, each on its own onnxruntime threads, instead of one batch
 * spread over all of them (on small models, fewer threads per run spend less time synchronising).
 */
export class SessionPool {
  private readonly free: ThreadedSession[];
  private readonly waiting: ((s: ThreadedSession) => void)[] = [];

  private constructor(readonly sessions: ThreadedSession[]) {
    this.free = [...sessions];
  }

  static async fromGraph(g: Graph, opts: RuntimeOptions = {}, label = g.name, instances = 1): Promise<SessionPool> {
    if (!Number.isInteger(instances) || instances < 1)
      throw new GraftError(`instances must be a positive integer, got ${instances}`);
    const sessions: ThreadedSession[] = [];
    try {
      for (let i = 0; i < instances; i++) sessions.push(await ThreadedSession.fromGraph(g, opts, label));
    } catch (e) {
      await Promise.all(sessions.map((s) => s.release()));
      throw e;
    }
    return new SessionPool(sessions);
  }

  get size(): number {
    return this.sessions.length;
  }

  async run(feeds: Feeds, outputs?: string[]): Promise<Record<string, Tensor>> {
    const s = this.free.pop() ?? (await new Promise<ThreadedSession>((r) => this.waiting.push(r)));
    try {
      return await s.run(feeds, outputs);
    } finally {
      const next = this.waiting.shift();
      if (next) next(s);
      else this.free.push(s);
    }
  }

  async release(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.release()));
  }
}
