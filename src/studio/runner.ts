/**
 * Studio's training queue: runs wait in the database (status 'queued'), at most `concurrency` (default 1)
 * train at once, each in its own child process (src/studio/worker.ts) so the server keeps answering.
 * Progress, epochs and the final evaluation go to the database and to listeners (the SSE stream).
 * On start-up, runs that were 'running' when the process died become 'interrupted'; resuming one
 * continues from its newest checkpoint where the method writes them (image fine-tuning), else restarts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StudioDb, RunRow } from './db.js';
import type { BlobStore } from './blobs.js';
import { checkpointDir, type JobSpec, type JobEvaluation, type JobSettings } from './job.js';
import type { WorkerMessage } from './worker.js';
import { listCheckpoints } from '../train/checkpoint.js';

/** What a run trains on, fixed when it is created (so a resume sees the same examples). */
export interface RunSnapshot {
  kind: 'image' | 'text';
  /** The backbone's resolved path (model file or folder). */
  backbonePath: string;
  classes: string[];
  examples: { id: string; label: number; sha256?: string; text?: string }[];
}

export interface RunEvent {
  run: string;
  event: 'run' | 'progress' | 'epoch' | 'log';
  data: unknown;
}

export interface RunnerOptions {
  dataDir: string;
  concurrency?: number;
  /** Called when a run finished and its classifier folder is ready. */
  onFinished?: (run: RunRow) => void;
}

const here = fileURLToPath(import.meta.url);
const workerFile = join(dirname(here), here.endsWith('.ts') ? 'worker.ts' : 'worker.js');

export class Runner extends EventEmitter {
  private active = new Map<
    string,
    {
      child: ChildProcess;
      started: number;
      startFraction: number;
      lastWrite: number;
      lastEmit: number;
      cancelled: boolean;
    }
  >();
  readonly concurrency: number;
  private stopping = false;

  constructor(
    readonly db: StudioDb,
    readonly blobs: BlobStore,
    readonly o: RunnerOptions,
  ) {
    super();
    this.setMaxListeners(0);
    this.concurrency = o.concurrency ?? 1;
  }

  runDir(id: string): string {
    return join(this.o.dataDir, 'runs', id);
  }

  /** How a stopped run would resume: from a checkpoint when its folder has one. */
  resumability(run: RunRow): 'checkpoint' | 'restart' {
    const dir = checkpointDir(this.runDir(run.id));
    return existsSync(dir) && listCheckpoints(dir).length > 0 ? 'checkpoint' : 'restart';
  }

  /** Start-up: runs left 'running' by a dead process become 'interrupted'; queued ones start. */
  recover(): void {
    for (const r of this.db.runsWithStatus('running'))
      this.db.updateRun(r.id, {
        status: 'interrupted',
        resumable: this.resumability(r),
        eta_seconds: null,
        error: 'the server stopped while this run was training',
      });
    this.pump();
  }

  queue(): { running: string[]; queued: string[] } {
    return { running: [...this.active.keys()], queued: this.db.runsWithStatus('queued').map((r) => r.id) };
  }

  queuePosition(id: string): number | null {
    const i = this.db.runsWithStatus('queued').findIndex((r) => r.id === id);
    return i < 0 ? null : i;
  }

  private publish(run: string, event: RunEvent['event'], data: unknown): void {
    this.emit('event', { run, event, data } satisfies RunEvent);
  }

  private publishRun(id: string): void {
    this.publish(id, 'run', { id });
    for (const q of this.db.runsWithStatus('queued')) if (q.id !== id) this.publish(q.id, 'run', { id: q.id });
  }

  /** Put a run (new, or being resumed) in the queue. */
  enqueue(id: string): void {
    this.db.updateRun(id, {
      status: 'queued',
      phase: 'queued',
      queued_at: new Date().toISOString(),
      error: null,
      eta_seconds: null,
    });
    this.publishRun(id);
    this.pump();
  }

  cancel(id: string): boolean {
    const run = this.db.run(id);
    if (!run) return false;
    const a = this.active.get(id);
    if (a) {
      a.cancelled = true;
      a.child.kill('SIGTERM');
      return true;
    }
    if (run.status === 'queued') {
      this.db.updateRun(id, {
        status: 'cancelled',
        phase: 'queued',
        finished_at: new Date().toISOString(),
        resumable: this.resumability(run),
      });
      this.publishRun(id);
      return true;
    }
    return false;
  }

  isActive(id: string): boolean {
    return this.active.has(id);
  }

  /** Stop every training (the server is closing): the runs become 'interrupted'. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const waits: Promise<unknown>[] = [];
    for (const [, a] of this.active) {
      waits.push(new Promise((res) => a.child.once('exit', res)));
      a.child.kill('SIGTERM');
    }
    await Promise.all(waits);
  }

  private pump(): void {
    while (!this.stopping && this.active.size < this.concurrency) {
      const next = this.db.runsWithStatus('queued')[0];
      if (!next) return;
      this.start(next);
    }
  }

  private start(run: RunRow): void {
    const resume = run.resumable === 'checkpoint' && this.resumability(run) === 'checkpoint';
    let spec: JobSpec;
    try {
      const snap = JSON.parse(run.snapshot ?? 'null') as RunSnapshot | null;
      if (!snap) throw new Error('the run has no examples snapshot');
      spec = {
        runId: run.id,
        kind: snap.kind,
        method: run.method,
        backbone: snap.backbonePath,
        settings: JSON.parse(run.settings) as JobSettings,
        classes: snap.classes,
        examples: snap.examples.map((e) => ({
          id: e.id,
          label: e.label,
          ...(e.sha256 ? { file: this.blobs.path(e.sha256) } : {}),
          ...(e.text !== undefined ? { text: e.text } : {}),
        })),
        runDir: this.runDir(run.id),
        cacheDir: join(this.o.dataDir, 'cache'),
        resume,
      };
    } catch (e) {
      this.db.updateRun(run.id, {
        status: 'failed',
        error: (e as Error).message,
        finished_at: new Date().toISOString(),
      });
      this.publishRun(run.id);
      return;
    }
    if (!resume) {
      this.db.clearMetrics(run.id);
      rmSync(join(this.runDir(run.id), 'classifier'), { recursive: true, force: true });
    }
    const child = fork(workerFile, [], {
      // from the TypeScript sources: tsx, found from here (not from the working directory)
      execArgv: workerFile.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const started = Date.now();
    const a = { child, started, startFraction: 0, lastWrite: 0, lastEmit: 0, cancelled: false };
    this.active.set(run.id, a);
    this.db.updateRun(run.id, {
      status: 'running',
      phase: 'preparing',
      started_at: run.started_at ?? new Date(started).toISOString(),
      finished_at: null,
      error: null,
      evaluation: null,
      resumable: null,
      ...(resume ? {} : { fraction: 0 }),
    });
    this.publishRun(run.id);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let outcome: { evaluation?: JobEvaluation; error?: string } | undefined;
    child.on('message', (m: WorkerMessage) => {
      if (m.type === 'progress') this.progress(run.id, a, m.phase, m.fraction, m.message);
      else if (m.type === 'epoch') {
        this.db.addMetric({
          run_id: run.id,
          epoch: m.epoch,
          loss: m.loss,
          accuracy: m.accuracy,
          val_accuracy: m.valAccuracy,
        });
        this.publish(run.id, 'epoch', {
          epoch: m.epoch,
          loss: m.loss,
          accuracy: m.accuracy,
          valAccuracy: m.valAccuracy,
        });
      } else if (m.type === 'resumed') {
        this.db.clearMetrics(run.id, m.fromEpoch);
        this.publish(run.id, 'log', { message: `resumed after epoch ${m.fromEpoch} from its checkpoint` });
      } else if (m.type === 'log') this.publish(run.id, 'log', { message: m.message });
      else if (m.type === 'done') outcome = { evaluation: m.evaluation as JobEvaluation };
      else if (m.type === 'error') outcome = { error: m.message };
    });
    child.on('error', (e) => {
      outcome ??= { error: `the training process failed: ${e.message}` };
    });
    child.send(spec);
    child.on('exit', (code, signal) => {
      this.active.delete(run.id);
      const t = new Date().toISOString();
      if (outcome?.evaluation) {
        this.db.updateRun(run.id, {
          status: 'done',
          phase: 'done',
          fraction: 1,
          eta_seconds: 0,
          finished_at: t,
          evaluation: JSON.stringify(outcome.evaluation),
        });
        const done = this.db.run(run.id);
        if (done) this.o.onFinished?.(done);
      } else if (a.cancelled) {
        const r = this.db.run(run.id);
        this.db.updateRun(run.id, {
          status: 'cancelled',
          eta_seconds: null,
          finished_at: t,
          resumable: r ? this.resumability(r) : 'restart',
        });
      } else if (outcome?.error) {
        this.db.updateRun(run.id, {
          status: 'failed',
          eta_seconds: null,
          finished_at: t,
          error: outcome.error,
          resumable: 'restart',
        });
      } else {
        const r = this.db.run(run.id);
        this.db.updateRun(run.id, {
          status: 'interrupted',
          eta_seconds: null,
          finished_at: t,
          resumable: r ? this.resumability(r) : 'restart',
          error: `the training process ended (${signal ?? `exit code ${code}`})${stderr ? `: ${stderr.trim().split('\n').slice(-3).join(' ')}` : ''}`,
        });
      }
      this.publishRun(run.id);
      this.pump();
    });
  }

  private progress(
    id: string,
    a: { started: number; startFraction: number; lastWrite: number; lastEmit: number },
    phase: string,
    fraction: number,
    message?: string,
  ): void {
    const nowMs = Date.now();
    const elapsed = (nowMs - a.started) / 1000;
    const gained = fraction - a.startFraction;
    const eta = gained > 0.02 && elapsed > 1 ? Math.max(0, (elapsed * (1 - fraction)) / gained) : null;
    if (nowMs - a.lastWrite > 1000 || fraction >= 1) {
      a.lastWrite = nowMs;
      this.db.updateRun(id, { phase, fraction, eta_seconds: eta });
    }
    if (nowMs - a.lastEmit > 200 || fraction >= 1) {
      a.lastEmit = nowMs;
      this.publish(id, 'progress', { phase, fraction, etaSeconds: eta, ...(message ? { message } : {}) });
    }
  }
}
