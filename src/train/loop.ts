/**
 * The one training loop of Graft. Every training (image and feature fine-tuning through fit(), text
 * classification, SetFit, language-model and translation fine-tuning, the MLP head, the adaptation
 * losses, the learning-rate range test) is a batch source plus callbacks run by `trainLoop`:
 *
 * - a **batch source** says how many epochs there are and yields each epoch's batches, drawing any
 *   randomness (shuffles, views, pairs, token dropout) from the loop's seeded generator, so the
 *   generator's state at an epoch's end — saved by a checkpoint — is all a resumed run needs;
 * - **callbacks** (src/train/callbacks.ts) are small objects in the Keras manner: schedules, early
 *   stopping, checkpoints, gradual unfreezing, progress and logging. Those with state expose a
 *   `state()`/`restore()` pair that checkpoints save and restore.
 *
 * Order of calls: `prepare` (all callbacks; a checkpoint restores the run here), `onTrainBegin`, then per
 * epoch `onEpochBegin`, per step `onStepBegin` (set ctx.lr) → Trainer.step → `onStepEnd`, then
 * `onEpochEnd` in list order (so validation comes before early stopping, which comes before the
 * checkpoint, which comes before logging), and `onTrainEnd`.
 */
import type { Feeds } from '../runtime/session.js';
import type { Tensor } from '../graph/tensor.js';
import type { Graph } from '../graph/graph.js';
import { Trainer, type StepResult } from './trainer.js';
import { Rng } from '../util/random.js';

/** One optimizer step's inputs. */
export interface Batch {
  feeds: Feeds;
  /** The built-in loss's target (labels); custom losses take theirs in `feeds`. */
  target?: Tensor;
  /** Examples in the batch (for examples/s; default 1). */
  size?: number;
}

/** Where a training run's batches come from. */
export interface BatchSource {
  /** Epochs of the run. */
  readonly epochs: number;
  /** Steps in epoch `epoch` (1-based), for schedules and progress. */
  steps(epoch: number): number;
  /** The batches of epoch `epoch`; all randomness from `rng` (the loop's generator, checkpointed). */
  batches(epoch: number, rng: Rng, ctx: LoopContext): Iterable<Batch> | AsyncIterable<Batch>;
  /** State carried from one epoch to the next beside the generator (JSON), for checkpoints. */
  state?(): unknown;
  restore?(s: unknown): void;
}

/** What a callback's state() returns: JSON and, optionally, named float tensors (weights). */
export interface CallbackState {
  json?: unknown;
  tensors?: Map<string, Float32Array>;
}

/** The log of one epoch; callbacks add to it (validation metrics, checkpoint path…). */
export interface EpochLogs {
  epoch: number;
  /** Mean training loss of the epoch's steps. */
  loss: number;
  /** The rate of the epoch's last step. */
  lr: number;
  seconds: number;
  examplesPerSecond: number;
  valAccuracy?: number;
  valLoss?: number;
  improved?: boolean;
  stopping?: boolean;
  checkpoint?: string;
  [k: string]: unknown;
}

export interface StepLogs {
  epoch: number;
  /** Global step, 1-based (after the step). */
  step: number;
  loss: number;
  lr: number;
  result: StepResult;
  batch: Batch;
  /** Training examples per second over the current epoch so far. */
  examplesPerSecond: number;
}

export interface Callback {
  /** Unique among a run's callbacks: names its state in a checkpoint. */
  readonly name: string;
  prepare?(ctx: LoopContext): void | Promise<void>;
  onTrainBegin?(ctx: LoopContext): void | Promise<void>;
  onEpochBegin?(ctx: LoopContext): void | Promise<void>;
  /** Set `ctx.lr` for the coming step (schedules). */
  onStepBegin?(ctx: LoopContext): void;
  onStepEnd?(ctx: LoopContext, s: StepLogs): void | Promise<void>;
  /** A step threw: return true to end training quietly (the range test's divergence), else it propagates. */
  onStepError?(ctx: LoopContext, e: unknown): boolean;
  onEpochEnd?(ctx: LoopContext, logs: EpochLogs): void | Promise<void>;
  onTrainEnd?(ctx: LoopContext): void | Promise<void>;
  /** Training threw (after this the trainer is released): tidy up (a progress bar). */
  onTrainError?(ctx: LoopContext, e: unknown): void;
  state?(): CallbackState;
  restore?(s: CallbackState): void;
}

/** The run as callbacks see it. */
export interface LoopContext {
  /** The trainer (callbacks may replace it: unfreezing, resume). */
  trainer: Trainer;
  /** Builds a trainer like the current one for a graph (weights from a checkpoint, a new unfreezing stage). */
  rebuild(g: Graph, ctx: LoopContext): Promise<Trainer>;
  readonly source: BatchSource;
  readonly callbacks: readonly Callback[];
  /** The loop's generator: batch sources draw from it; checkpoints save it. */
  readonly rng: Rng;
  /** Epochs completed (during an epoch: the current one, 1-based). */
  epoch: number;
  readonly epochs: number;
  readonly totalSteps: number;
  /** Base learning rate; `lr` is the rate of the coming step. */
  readonly baseLr: number;
  lr: number;
  /** Every step's loss so far (including steps before a resume). */
  losses: number[];
  /** Set by a callback to end training after the current step/epoch. */
  stop: boolean;
  /** Set by a checkpoint that resumed: the epoch it continued after. */
  resumedFrom: number;
}

export interface LoopOptions {
  /** Seed of the loop's generator (default 0). */
  seed?: number;
  /** Base learning rate (default: the trainer's). */
  lr?: number;
  callbacks?: Callback[];
  /** How a trainer is rebuilt for a graph (default: the same options as the given trainer). */
  rebuild?: (g: Graph, ctx: LoopContext) => Promise<Trainer>;
  /** Release the trainer if training throws (default true). */
  releaseOnError?: boolean;
}

export interface LoopResult {
  trainer: Trainer;
  losses: number[];
  /** Epochs completed (including those before a resume). */
  epochs: number;
  resumedFrom: number;
  /** The last epoch's logs. */
  last?: EpochLogs;
}

/** Total steps of a source. */
export function totalSteps(source: BatchSource): number {
  let t = 0;
  for (let e = 1; e <= source.epochs; e++) t += source.steps(e);
  return t;
}

/** Run `source` through `trainer` with callbacks: the one training loop (see the module header). */
export async function trainLoop(trainer: Trainer, source: BatchSource, o: LoopOptions = {}): Promise<LoopResult> {
  const callbacks = o.callbacks ?? [];
  const names = new Set<string>();
  for (const cb of callbacks) {
    if (names.has(cb.name)) throw new Error(`two training callbacks are named '${cb.name}'`);
    names.add(cb.name);
  }
  const baseLr = o.lr ?? trainer.lr;
  const ctx: LoopContext = {
    trainer,
    source,
    callbacks,
    rng: new Rng(o.seed ?? 0),
    epoch: 0,
    epochs: source.epochs,
    totalSteps: totalSteps(source),
    baseLr,
    lr: baseLr,
    losses: [],
    stop: false,
    resumedFrom: 0,
    rebuild: o.rebuild ?? ((g) => Trainer.create(g, ctx.trainer.options)),
  };
  let last: EpochLogs | undefined;
  try {
    for (const cb of callbacks) await cb.prepare?.(ctx);
    for (const cb of callbacks) await cb.onTrainBegin?.(ctx);
    while (ctx.epoch < source.epochs && !ctx.stop) {
      ctx.epoch++;
      for (const cb of callbacks) await cb.onEpochBegin?.(ctx);
      const t0 = performance.now();
      let sum = 0,
        steps = 0,
        seen = 0;
      ctx.lr = baseLr;
      for (const cb of callbacks) cb.onStepBegin?.(ctx);
      let lr = ctx.lr;
      let first = true;
      for await (const batch of source.batches(ctx.epoch, ctx.rng, ctx)) {
        if (!first) {
          ctx.lr = baseLr;
          for (const cb of callbacks) cb.onStepBegin?.(ctx);
        }
        first = false;
        lr = ctx.lr;
        let r: StepResult;
        try {
          r = await ctx.trainer.step(batch.feeds, batch.target, lr);
        } catch (e) {
          if (callbacks.some((cb) => cb.onStepError?.(ctx, e))) {
            ctx.stop = true;
            break;
          }
          throw e;
        }
        ctx.losses.push(r.loss);
        sum += r.loss;
        steps++;
        seen += batch.size ?? 1;
        const s: StepLogs = {
          epoch: ctx.epoch,
          step: ctx.trainer.steps,
          loss: r.loss,
          lr,
          result: r,
          batch,
          examplesPerSecond: (seen * 1000) / (performance.now() - t0),
        };
        for (const cb of callbacks) await cb.onStepEnd?.(ctx, s);
        if (ctx.stop) break;
      }
      const seconds = (performance.now() - t0) / 1000;
      last = { epoch: ctx.epoch, loss: sum / steps, lr, seconds, examplesPerSecond: seen / seconds };
      for (const cb of callbacks) await cb.onEpochEnd?.(ctx, last);
    }
    for (const cb of callbacks) await cb.onTrainEnd?.(ctx);
  } catch (e) {
    for (const cb of callbacks) {
      try {
        cb.onTrainError?.(ctx, e);
      } catch {
        // the original error matters more
      }
    }
    // an error (or an interrupt thrown by a callback) must not leak the trainer's onnxruntime sessions
    if (o.releaseOnError ?? true) await ctx.trainer.release().catch(() => undefined);
    throw e;
  }
  return {
    trainer: ctx.trainer,
    losses: ctx.losses,
    epochs: ctx.epoch,
    resumedFrom: ctx.resumedFrom,
    ...(last ? { last } : {}),
  };
}

/**
 * A source of shuffled mini-batches over `n` items: each epoch one seeded shuffle, then batches of
 * `batchSize` indices in that order, turned into a Batch by `make` (which may draw from the generator
 * too, after the shuffle). The pattern of every example-based loop.
 */
export function shuffledBatches(
  n: number,
  batchSize: number,
  epochs: number,
  make: (idx: number[], epoch: number, rng: Rng) => Batch,
  o: { maxSteps?: number } = {},
): BatchSource {
  const per = Math.ceil(n / batchSize);
  const cap = o.maxSteps ?? Infinity;
  const stepsIn = (e: number) => Math.max(0, Math.min(per, cap - (e - 1) * per));
  return {
    epochs: Number.isFinite(cap) ? Math.min(epochs, Math.ceil(cap / per)) : epochs,
    steps: stepsIn,
    *batches(epoch, rng) {
      const order = rng.shuffle([...Array(n).keys()]);
      const k = stepsIn(epoch);
      for (let s = 0; s < k; s++) yield make(order.slice(s * batchSize, (s + 1) * batchSize), epoch, rng);
    },
  };
}

/**
 * A source of `total` steps cut into epochs of `perEpoch` steps (the checkpoint interval of a
 * step-based run: SetFit's pairs, translation's cycled order); `next` makes step `step` (0-based).
 */
export function steppedBatches(
  total: number,
  perEpoch: number,
  next: (step: number, rng: Rng) => Batch,
  state?: Pick<BatchSource, 'state' | 'restore'>,
): BatchSource {
  const per = Math.max(1, Math.min(perEpoch, total));
  const epochs = Math.ceil(total / per);
  const stepsIn = (e: number) => Math.max(0, Math.min(per, total - (e - 1) * per));
  return {
    epochs,
    steps: stepsIn,
    *batches(epoch, rng) {
      const k = stepsIn(epoch);
      for (let s = 0; s < k; s++) yield next((epoch - 1) * per + s, rng);
    },
    ...(state?.state ? { state: state.state } : {}),
    ...(state?.restore ? { restore: state.restore } : {}),
  };
}
