/**
 * Learning-rate schedules: the learning rate as a pure function of the global step (0-based), the
 * base rate and the run's length, so a resumed run recomputes exactly the rate it would have used.
 * constant, linear warmup then cosine decay, linear warmup then linear decay to 0 (the text
 * fine-tuning schedule of BERT and Hugging Face's get_linear_schedule_with_warmup), one-cycle (as
 * torch.optim.lr_scheduler.OneCycleLR with cosine annealing) and step decay. The one schedule module.
 */
import { GraftError } from '../util/errors.js';

export type ScheduleSpec =
  | { kind: 'constant' /** Linear warmup over this many steps (default 0). */; warmupSteps?: number }
  | {
      kind: 'cosine';
      /** Linear warmup from 0 over this many steps (default: warmupFraction of the run). */
      warmupSteps?: number;
      /** Warmup as a fraction of all steps when warmupSteps is not given (default 0.05). */
      warmupFraction?: number;
      /** The rate at the end, as a fraction of the base rate (default 0). */
      finalFraction?: number;
    }
  | {
      kind: 'one-cycle';
      /** Fraction of the run spent rising (default 0.3). */
      pctStart?: number;
      /** Start at base/divFactor (default 25). */
      divFactor?: number;
      /** End at base/(divFactor·finalDivFactor) (default 1e4). */
      finalDivFactor?: number;
    }
  | {
      kind: 'linear';
      /** Linear warmup over this fraction of all steps (at least one step; default 0.1), then linear decay to 0. */
      warmupFraction?: number;
    }
  | {
      kind: 'step' /** Multiply the rate by gamma every stepEpochs epochs (default 0.1 every 10). */;
      stepEpochs?: number;
      gamma?: number;
    };

export interface ScheduleContext {
  /** Total optimizer steps of the run. */
  totalSteps: number;
  /** Steps per epoch (for step decay). */
  stepsPerEpoch: number;
}

export type Schedule = (step: number) => number;

/** The schedule as a function of the 0-based global step. */
export function makeSchedule(spec: ScheduleSpec | undefined, baseLr: number, ctx: ScheduleContext): Schedule {
  const s = spec ?? { kind: 'constant' };
  const total = Math.max(1, ctx.totalSteps);
  const warm = (n: number, step: number) => (n > 0 && step < n ? (step + 1) / n : 1);
  switch (s.kind) {
    case 'constant': {
      const w = nonNeg(s.warmupSteps ?? 0, 'warmupSteps');
      return (step) => baseLr * warm(w, step);
    }
    case 'cosine': {
      const frac = s.warmupFraction ?? 0.05;
      if (frac < 0 || frac >= 1) throw new GraftError(`cosine schedule: warmupFraction must be in [0, 1), got ${frac}`);
      const w = s.warmupSteps !== undefined ? nonNeg(s.warmupSteps, 'warmupSteps') : Math.round(frac * total);
      const end = baseLr * (s.finalFraction ?? 0);
      return (step) => {
        if (step < w) return baseLr * warm(w, step);
        const t = Math.min(1, (step - w) / Math.max(1, total - w));
        return end + (baseLr - end) * 0.5 * (1 + Math.cos(Math.PI * t));
      };
    }
    case 'one-cycle': {
      const pct = s.pctStart ?? 0.3;
      if (pct <= 0 || pct >= 1) throw new GraftError(`one-cycle schedule: pctStart must be in (0, 1), got ${pct}`);
      const start = baseLr / (s.divFactor ?? 25);
      const end = start / (s.finalDivFactor ?? 1e4);
      const up = Math.max(1, pct * total - 1);
      const down = Math.max(1, total - 1 - up);
      const cos = (a: number, b: number, t: number) => b + (a - b) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, t)));
      return (step) => (step <= up ? cos(start, baseLr, step / up) : cos(baseLr, end, (step - up) / down));
    }
    case 'linear': {
      const frac = s.warmupFraction ?? 0.1;
      if (!(frac >= 0 && frac < 1))
        throw new GraftError(`linear schedule: warmupFraction must be in [0, 1), got ${frac}`);
      return (step) => linearSchedule(baseLr, step, total, frac);
    }
    case 'step': {
      const every = s.stepEpochs ?? 10;
      if (!(every > 0)) throw new GraftError(`step schedule: stepEpochs must be positive, got ${every}`);
      const gamma = s.gamma ?? 0.1;
      return (step) => baseLr * gamma ** Math.floor(Math.floor(step / Math.max(1, ctx.stepsPerEpoch)) / every);
    }
    default:
      throw new GraftError(
        `unknown schedule '${(s as { kind: string }).kind}' (constant, cosine, linear, one-cycle, step)`,
      );
  }
}

/** Rate at step k (0-based) of n: linear warmup over the first warmup·n steps (at least one), then linear decay to 0. */
export function linearSchedule(lr: number, k: number, n: number, warmup: number): number {
  const w = Math.max(1, Math.round(warmup * n));
  if (k < w) return (lr * (k + 1)) / w;
  return lr * Math.max(0, (n - k) / Math.max(1, n - w));
}

function nonNeg(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0) throw new GraftError(`${what} must be a non-negative integer, got ${n}`);
  return n;
}

/** The kinds the CLI offers (every kind above). */
export const SCHEDULES = ['constant', 'cosine', 'linear', 'one-cycle', 'step'] as const;
