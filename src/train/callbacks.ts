/**
 * The callbacks of the training loop (src/train/loop.ts), each a small object with its own state:
 * LearningRate (a schedule from src/train/schedule.ts), EarlyStopping (with best-weight restore),
 * Checkpoint (one per epoch; with `resume`, continues bit for bit from the newest), Unfreezing
 * (gradual, by layer group), Progress (one cli-progress bar on stderr for every long run) and Logger
 * (plain functions called per step and epoch). State that must survive a crash goes through
 * `state()`/`restore()` into the checkpoint.
 */
import type { Graph } from '../graph/graph.js';
import type { Trainer } from './trainer.js';
import { GraftError } from '../util/errors.js';
import { ProgressBar, showsProgress } from '../util/progress.js';
import { makeSchedule, type Schedule, type ScheduleSpec } from './schedule.js';
import { writeCheckpoint, readLatestCheckpoint, configMismatch, type EarlyStoppingState } from './checkpoint.js';
import type { Callback, CallbackState, EpochLogs, LoopContext, StepLogs } from './loop.js';

/** Current values of the named weights: trained ones from the trainer, frozen ones from its graph. */
export function snapshotWeights(trainer: Trainer, names: Iterable<string>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const k of names) {
    const v =
      trainer.params.get(k) ??
      trainer.stateValues.get(k) ??
      (trainer.tg.model.initializers.get(k)?.data as Float32Array | undefined);
    if (v) out.set(k, Float32Array.from(v));
  }
  return out;
}

/** Write saved weights back into the trainer (the ones it trains or updates; the others are frozen). */
export function restoreWeights(trainer: Trainer, w: Map<string, Float32Array>): void {
  for (const [k, v] of w) (trainer.params.get(k) ?? trainer.stateValues.get(k))?.set(v);
}

/** The model with some initializers replaced (weights from a checkpoint). */
export function withWeights(model: Graph, w: Map<string, Float32Array>): Graph {
  const g = model.clone();
  for (const [k, v] of w) {
    const t = g.initializers.get(k);
    if (!t || t.dtype !== 'float32' || (t.data as Float32Array).length !== v.length)
      throw new GraftError(
        `checkpoint weight '${k}' does not fit the model (${t ? `${t.dtype}[${t.dims}]` : 'no such initializer'})`,
      );
    g.initializers.set(k, { dtype: 'float32', dims: [...t.dims], data: Float32Array.from(v) });
  }
  return g;
}

/** The learning rate of every step from a schedule: a pure function of the global step, so resume needs no state. */
export class LearningRate implements Callback {
  readonly name = 'lr';
  constructor(readonly at: Schedule) {}

  /** From a schedule spec (constant, cosine, one-cycle, step, linear) over the loop's steps. */
  static of(
    spec: ScheduleSpec | undefined,
    baseLr: number,
    ctx: { totalSteps: number; stepsPerEpoch: number },
  ): LearningRate {
    return new LearningRate(makeSchedule(spec, baseLr, ctx));
  }

  onStepBegin(ctx: LoopContext): void {
    ctx.lr = this.at(ctx.trainer.steps);
  }
}

export interface EarlyStoppingOptions {
  /** The epoch-log value watched (e.g. 'valAccuracy', 'valLoss'). */
  monitor: string;
  /** 'max': higher is better; 'min': lower is better. */
  mode: 'max' | 'min';
  /** Stop after this many epochs without improvement (default 3). */
  patience?: number;
  /** Smallest change that counts as an improvement (default 0). */
  minDelta?: number;
  /** Put back the best epoch's weights at the end (default true). */
  restoreBest?: boolean;
  /** The weights to keep for the best epoch (default: everything the trainer trains or updates). */
  weights?: string[];
}

/** Stop when an epoch-log value stops improving; keeps (and by default restores) the best epoch's weights. */
export class EarlyStoppingCallback implements Callback {
  readonly name = 'early-stopping';
  s: EarlyStoppingState = { best: null, bestEpoch: 0, bad: 0, stopped: false };
  best?: Map<string, Float32Array>;
  /** Set at the end when the best weights were put back. */
  restoredEpoch?: number;

  constructor(readonly o: EarlyStoppingOptions) {
    const p = o.patience;
    if (p !== undefined && !(Number.isInteger(p) && p >= 1))
      throw new GraftError(`early stopping patience must be a positive number of epochs, got ${p}`);
  }

  private names(t: Trainer): string[] {
    return this.o.weights ?? [...new Set([...t.params.keys(), ...t.stateValues.keys()])];
  }

  onTrainBegin(ctx: LoopContext): void {
    if (this.s.stopped) ctx.stop = true;
  }

  onEpochEnd(ctx: LoopContext, logs: EpochLogs): void {
    const v = logs[this.o.monitor];
    if (typeof v !== 'number')
      throw new GraftError(`early stopping watches '${this.o.monitor}', which no callback computed`);
    const d = this.o.minDelta ?? 0;
    const improved = this.s.best === null || (this.o.mode === 'min' ? v < this.s.best - d : v > this.s.best + d);
    if (improved) {
      this.s = { ...this.s, best: v, bestEpoch: ctx.epoch, bad: 0 };
      this.best = snapshotWeights(ctx.trainer, this.names(ctx.trainer));
    } else this.s = { ...this.s, bad: this.s.bad + 1 };
    if (this.s.bad >= (this.o.patience ?? 3)) this.s.stopped = true;
    logs.improved = improved;
    logs.stopping = this.s.stopped;
    if (this.s.stopped) ctx.stop = true;
  }

  onTrainEnd(ctx: LoopContext): void {
    if (this.best && (this.o.restoreBest ?? true)) {
      restoreWeights(ctx.trainer, this.best);
      this.restoredEpoch = this.s.bestEpoch;
    }
  }

  /** JSON: the bookkeeping; tensors: the best weights when they are not the current epoch's. */
  state(): CallbackState {
    return { json: this.s, ...(this.best ? { tensors: this.best } : {}) };
  }

  restore(st: CallbackState): void {
    if (st.json) this.s = { ...(st.json as EarlyStoppingState) };
    if (st.tensors) this.best = st.tensors;
  }
}

export interface CheckpointOptions {
  dir: string;
  /** Continue from the newest checkpoint in `dir` (none: start afresh). */
  resume?: boolean;
  /** Keep only the newest this many checkpoints. */
  keep?: number;
  /** The run's settings: a resume with other settings is refused, naming them. */
  config: Record<string, unknown>;
  /** Weights to save (default: everything the trainer trains or updates at the start). */
  weights?: string[];
  /** The graph that checkpoint weights are put into when the trainer must be rebuilt (default: the trainer's graph). */
  model?: Graph;
}

/**
 * One checkpoint per epoch: weights, optimizer, the generator, losses, the global step, and the state
 * of the batch source and of every callback that has one. With `resume`, `prepare` puts all of it back.
 * Put it after the callbacks whose epoch-end state it must save (validation, early stopping).
 */
export class Checkpoint implements Callback {
  readonly name = 'checkpoint';
  private weights: string[] = [];

  constructor(readonly o: CheckpointOptions) {
    if (o.keep !== undefined && !(Number.isInteger(o.keep) && o.keep >= 1))
      throw new GraftError(`the number of checkpoints to keep must be a positive integer, got ${o.keep}`);
  }

  async prepare(ctx: LoopContext): Promise<void> {
    const saved = this.o.resume ? readLatestCheckpoint(this.o.dir) : undefined;
    if (saved) {
      const diff = configMismatch(saved.config, this.o.config);
      if (diff.length)
        throw new GraftError(
          `the checkpoint in ${this.o.dir} was written by a run with other settings (${diff.join(', ')}); resume with the same settings or use another --checkpoint-dir`,
        );
      ctx.epoch = saved.epoch;
      ctx.resumedFrom = saved.epoch;
      ctx.rng.state = saved.rng;
      ctx.losses = saved.losses;
      const t = ctx.trainer;
      if ([...saved.weights.keys()].every((k) => t.params.has(k) || t.stateValues.has(k)))
        restoreWeights(t, saved.weights);
      else {
        const g = withWeights(this.o.model ?? t.toGraph(), saved.weights);
        await t.release();
        ctx.trainer = await ctx.rebuild(g, ctx);
      }
      ctx.trainer.optimizer.importState(saved.optimizer);
      ctx.trainer.steps = saved.step;
      const st = saved.callbacks ?? {};
      if (ctx.source.restore && 'source' in st) ctx.source.restore(st['source']);
      for (const cb of ctx.callbacks) {
        if (!cb.restore) continue;
        if (cb instanceof EarlyStoppingCallback) {
          // version-1 fields: `early` and the best weights (absent when the best epoch is the saved one)
          if (saved.early) cb.restore({ json: saved.early, tensors: saved.bestWeights ?? saved.weights });
        } else if (cb.name in st || saved.callbackTensors?.has(cb.name)) {
          const tensors = saved.callbackTensors?.get(cb.name);
          cb.restore({ json: st[cb.name], ...(tensors ? { tensors } : {}) });
        }
      }
    }
    const t = ctx.trainer;
    this.weights = this.o.weights ?? [...new Set([...t.params.keys(), ...t.stateValues.keys()])];
  }

  onEpochEnd(ctx: LoopContext, logs: EpochLogs): void {
    const callbacks: Record<string, unknown> = {};
    const callbackTensors = new Map<string, Map<string, Float32Array>>();
    let early: EarlyStoppingState | undefined;
    let bestWeights: Map<string, Float32Array> | undefined;
    const src = ctx.source.state?.();
    if (src !== undefined) callbacks['source'] = src;
    for (const cb of ctx.callbacks) {
      const st = cb.state?.();
      if (!st) continue;
      if (cb instanceof EarlyStoppingCallback) {
        early = st.json as EarlyStoppingState;
        if (st.tensors && early.bestEpoch !== ctx.epoch) bestWeights = st.tensors;
        continue;
      }
      if (st.json !== undefined) callbacks[cb.name] = st.json;
      if (st.tensors) callbackTensors.set(cb.name, st.tensors);
    }
    logs.checkpoint = writeCheckpoint(
      this.o.dir,
      {
        epoch: ctx.epoch,
        step: ctx.trainer.steps,
        rng: ctx.rng.state,
        losses: ctx.losses,
        weights: snapshotWeights(ctx.trainer, this.weights),
        optimizer: ctx.trainer.optimizer.exportState(),
        ...(early ? { early } : {}),
        ...(bestWeights ? { bestWeights } : {}),
        config: this.o.config,
        ...(Object.keys(callbacks).length ? { callbacks } : {}),
        ...(callbackTensors.size ? { callbackTensors } : {}),
      },
      this.o.keep,
    );
  }
}

/**
 * Gradual unfreezing: the last layer group trains first, one more group every `every` epochs. A new
 * stage rebuilds the trainer (the optimizer state and step count carry over). Stateless: the stage is a
 * function of the epoch, so a resumed run rebuilds the right one.
 */
export class Unfreezing implements Callback {
  readonly name = 'unfreezing';
  stage = 0;

  constructor(
    readonly groups: string[][],
    readonly every: number,
    readonly build: (g: Graph, stage: number) => Promise<Trainer>,
    readonly onStage?: (info: { epoch: number; stage: number; trainable: string[] }) => void,
  ) {
    if (!(Number.isInteger(every) && every >= 1))
      throw new GraftError(`unfreezeEvery must be a positive number of epochs, got ${every}`);
  }

  stageOf(epoch: number): number {
    return Math.min(this.groups.length - 1, Math.floor((Math.max(1, epoch) - 1) / this.every));
  }

  namesOf(stage: number): string[] {
    return this.groups.slice(this.groups.length - 1 - stage).flat();
  }

  onTrainBegin(ctx: LoopContext): void {
    this.stage = this.stageOf(Math.min(ctx.epochs, ctx.epoch + 1));
    if (ctx.epoch < ctx.epochs && !ctx.stop)
      this.onStage?.({ epoch: ctx.epoch + 1, stage: this.stage, trainable: this.namesOf(this.stage) });
  }

  async onEpochBegin(ctx: LoopContext): Promise<void> {
    const stage = this.stageOf(ctx.epoch);
    if (stage === this.stage) return;
    this.stage = stage;
    const old = ctx.trainer;
    const opt = old.optimizer.exportState();
    const steps = old.steps;
    const g = old.toGraph();
    await old.release();
    ctx.trainer = await this.build(g, stage);
    ctx.trainer.optimizer.importState(opt);
    ctx.trainer.steps = steps;
    this.onStage?.({ epoch: ctx.epoch, stage, trainable: this.namesOf(stage) });
  }
}

export interface ProgressOptions {
  /** Text before the bar (default 'training'). */
  label?: string;
  /** Never draw (e.g. --json). */
  quiet?: boolean;
  /** Where to draw (default process.stderr); nothing is drawn unless it is a terminal. */
  stream?: NodeJS.WriteStream;
}

/** One progress bar for every long run: steps done of all, loss, rate; on stderr, only on a terminal. */
export class Progress implements Callback {
  readonly name = 'progress';
  private bar?: ProgressBar;

  constructor(readonly o: ProgressOptions = {}) {}

  /** Would the bar be drawn? */
  get active(): boolean {
    return showsProgress(this.o.quiet, this.o.stream ?? process.stderr);
  }

  onTrainBegin(ctx: LoopContext): void {
    if (!this.active) return;
    this.bar = new ProgressBar(
      `${this.o.label ?? 'training'} [{bar}] {value}/{total} steps | epoch {epoch}/{epochs} | loss {loss} | eta {eta_formatted}`,
      this.o.stream ?? process.stderr,
    );
    this.bar.update(ctx.trainer.steps, ctx.totalSteps, { loss: '-', epoch: ctx.epoch, epochs: ctx.epochs });
  }

  onStepEnd(ctx: LoopContext, s: StepLogs): void {
    this.bar?.update(s.step, ctx.totalSteps, { loss: s.loss.toFixed(4), epoch: s.epoch, epochs: ctx.epochs });
  }

  onTrainEnd(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  onTrainError(): void {
    this.onTrainEnd();
  }
}

/** Plain functions called at the start, per step and per epoch (the loops' onStep/onEpoch options). */
export class Logger implements Callback {
  readonly name: string;
  constructor(
    readonly fns: {
      onStart?: (ctx: LoopContext) => void;
      onStep?: (ctx: LoopContext, s: StepLogs) => void | Promise<void>;
      onEpoch?: (ctx: LoopContext, logs: EpochLogs) => void | Promise<void>;
    },
    name = 'logger',
  ) {
    this.name = name;
  }

  onTrainBegin(ctx: LoopContext): void {
    this.fns.onStart?.(ctx);
  }

  async onStepEnd(ctx: LoopContext, s: StepLogs): Promise<void> {
    await this.fns.onStep?.(ctx, s);
  }

  async onEpochEnd(ctx: LoopContext, logs: EpochLogs): Promise<void> {
    await this.fns.onEpoch?.(ctx, logs);
  }
}

/** End training after `steps` global steps (a step budget inside epochs). */
export class StopAfter implements Callback {
  readonly name = 'stop-after';
  constructor(readonly steps: number) {}
  onStepEnd(ctx: LoopContext): void {
    if (ctx.trainer.steps >= this.steps) ctx.stop = true;
  }
}

/** What every training function of Graft accepts beside its own options: checkpoints, resume, progress, more callbacks. */
export interface RunOptions {
  /** Write a checkpoint per epoch into this folder. */
  checkpointDir?: string;
  /** Continue from the newest checkpoint in checkpointDir (bit for bit as if never interrupted). */
  resume?: boolean;
  /** Keep only the newest this many checkpoints. */
  keepCheckpoints?: number;
  /** Draw the progress bar on stderr (only on a terminal). */
  progress?: boolean | ProgressOptions;
  /** More callbacks, run after the loop's own (before checkpointing). */
  callbacks?: Callback[];
}

/**
 * The callbacks RunOptions ask for, in loop order: the caller's, then the checkpoint (with `config`,
 * the settings a resume must match), then the progress bar. `resume` without a folder is refused.
 */
export function runCallbacks(o: RunOptions, config: Record<string, unknown>, label?: string): Callback[] {
  if (o.resume && !o.checkpointDir)
    throw new GraftError('resume needs a checkpoint folder (checkpointDir / --checkpoint-dir)');
  const out: Callback[] = [...(o.callbacks ?? [])];
  if (o.checkpointDir)
    out.push(
      new Checkpoint({
        dir: o.checkpointDir,
        config,
        ...(o.resume ? { resume: true } : {}),
        ...(o.keepCheckpoints !== undefined ? { keep: o.keepCheckpoints } : {}),
      }),
    );
  if (o.progress)
    out.push(new Progress({ ...(label ? { label } : {}), ...(typeof o.progress === 'object' ? o.progress : {}) }));
  return out;
}
