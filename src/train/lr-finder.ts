/**
 * The learning-rate range test (Smith 2015; fastai's lr_find): train for a few dozen steps while the
 * rate grows exponentially from minLr to maxLr, record the exponentially smoothed loss, stop when it
 * diverges, and suggest a rate. The sweep is a batch source and a callback of the one training loop. The weights, BatchNorm statistics, optimizer state and step count are
 * copied before and put back afterwards, so the trainer is exactly as it was.
 *
 * Suggestion: the rate where the smoothed loss falls fastest (the steepest negative slope of loss over
 * log-rate, searched within the two decades below the minimum-loss rate; see `suggest`). The
 * minimum-loss rate ÷ 10 is reported beside it.
 */
import { atomicWrite } from '../formats/onnx.js';
import type { Graph } from '../graph/graph.js';
import { Trainer } from './trainer.js';
import {
  exampleDims,
  labelsTensor,
  batchOf,
  sizeOf,
  trainerOptions,
  type TrainingData,
  type FitOptions,
} from './fit.js';
import { trainLoop, steppedBatches, type Callback } from './loop.js';
import { LearningRate } from './callbacks.js';
import { GraftError } from '../util/errors.js';

export interface LrFindOptions {
  minLr?: number;
  maxLr?: number;
  /** Steps of the range test (default 100). */
  steps?: number;
  /** Exponential smoothing of the loss (default 0.98, with bias correction). */
  smoothing?: number;
  /** Stop when the smoothed loss exceeds this multiple of its minimum (default 4). */
  divergeFactor?: number;
  batchSize?: number;
  seed?: number;
}

export interface LrFindResult {
  lrs: number[];
  /** Raw loss of each step. */
  losses: number[];
  /** Bias-corrected exponentially smoothed loss. */
  smoothed: number[];
  /** The suggested learning rate (steepest descent of the smoothed loss). */
  suggestion: number;
  /** How `suggestion` was chosen. */
  method: 'steepest';
  /** The rate with the lowest smoothed loss, and a tenth of it. */
  minLossLr: number;
  minLossLrDiv10: number;
  /** The test stopped early because the loss diverged. */
  diverged: boolean;
}

/** Run the range test on a trainer; the trainer's weights and optimizer state are restored afterwards. */
export async function lrFind(trainer: Trainer, data: TrainingData, o: LrFindOptions = {}): Promise<LrFindResult> {
  const minLr = o.minLr ?? 1e-7;
  const maxLr = o.maxLr ?? 10;
  const n = o.steps ?? 100;
  if (!(minLr > 0 && maxLr > minLr))
    throw new GraftError(`lr range test: need 0 < minLr < maxLr, got ${minLr}, ${maxLr}`);
  if (!(Number.isInteger(n) && n >= 5)) throw new GraftError(`lr range test: need at least 5 steps, got ${n}`);
  const beta = o.smoothing ?? 0.98;
  const bs = o.batchSize ?? 32;
  const model = trainer.tg.model;
  const dims = exampleDims(model);
  const name = model.dataInputs()[0]!.name;
  // Save everything a step changes.
  const params = new Map([...trainer.params].map(([k, v]) => [k, Float32Array.from(v)]));
  const state = new Map([...trainer.stateValues].map(([k, v]) => [k, Float32Array.from(v)]));
  const opt = trainer.optimizer.exportState();
  const steps = trainer.steps;
  // the sweep is a batch source (examples cycled in seeded shuffles) and a callback (smoothing, divergence)
  let order: number[] = [];
  const nViews = 'batch' in data ? (data.views ?? 1) : 1;
  const source = steppedBatches(n, n, (_i, rng) => {
    if (order.length < bs) order = order.concat(rng.shuffle([...Array(sizeOf(data)).keys()]));
    const idx = order.splice(0, Math.min(bs, sizeOf(data)));
    const views = nViews > 1 ? idx.map(() => rng.int(nViews)) : undefined;
    return {
      feeds: { [name]: batchOf(data, idx, dims, views) },
      target: labelsTensor(idx.map((k) => data.y[k]!)),
      size: idx.length,
    };
  });
  const lrs: number[] = [];
  const losses: number[] = [];
  const smoothed: number[] = [];
  let avg = 0;
  let best = Infinity;
  let diverged = false;
  const sweep: Callback = {
    name: 'range-test',
    onStepEnd(ctx, s) {
      const i = lrs.length;
      avg = beta * avg + (1 - beta) * s.loss;
      const sm = avg / (1 - beta ** (i + 1));
      lrs.push(s.lr);
      losses.push(s.loss);
      smoothed.push(sm);
      best = Math.min(best, sm);
      if (i > 0 && sm > (o.divergeFactor ?? 4) * best) {
        diverged = true;
        ctx.stop = true;
      }
    },
    onStepError(_ctx, e) {
      if (e instanceof GraftError && /the loss became/.test(e.message)) return (diverged = true);
      return false;
    },
  };
  try {
    await trainLoop(trainer, source, {
      seed: o.seed ?? 0,
      releaseOnError: false,
      callbacks: [new LearningRate((k) => minLr * (maxLr / minLr) ** ((k - steps) / (n - 1))), sweep],
    });
  } finally {
    for (const [k, v] of params) trainer.params.get(k)!.set(v);
    for (const [k, v] of state) trainer.stateValues.get(k)!.set(v);
    trainer.optimizer.importState(opt);
    trainer.steps = steps;
  }
  if (lrs.length < 5)
    throw new GraftError(
      `the loss diverged after ${lrs.length} steps of the range test; lower --lr-find's minimum rate`,
    );
  return { lrs, losses, smoothed, ...suggest(lrs, smoothed), diverged };
}

/**
 * Steepest descent of the smoothed loss over log-rate (slope over ±3 points), searched between the
 * rate a hundredth of the minimum-loss rate and the minimum itself: the start of the test is batch
 * noise on a flat loss, and a heavy first batch makes the smoothed loss slope down there too.
 */
export function suggest(
  lrs: number[],
  smoothed: number[],
): Pick<LrFindResult, 'suggestion' | 'method' | 'minLossLr' | 'minLossLrDiv10'> {
  let iMin = 0;
  smoothed.forEach((s, i) => {
    if (s < smoothed[iMin]!) iMin = i;
  });
  const w = 3;
  let lo = Math.floor(lrs.length / 10);
  while (lo < iMin && lrs[lo]! < lrs[iMin]! / 100) lo++;
  let iSteep = Math.min(lo, iMin);
  let steepest = Infinity;
  for (let i = lo; i <= iMin; i++) {
    const a = Math.max(0, i - w);
    const b = Math.min(lrs.length - 1, i + w);
    const slope = (smoothed[b]! - smoothed[a]!) / (Math.log(lrs[b]!) - Math.log(lrs[a]!));
    if (slope < steepest) {
      steepest = slope;
      iSteep = i;
    }
  }
  return { suggestion: lrs[iSteep]!, method: 'steepest', minLossLr: lrs[iMin]!, minLossLrDiv10: lrs[iMin]! / 10 };
}

/** The range test for a model and data, with fit()'s options (trainable, loss, class weights, optimizer…). */
export async function findLr(
  model: Graph,
  data: TrainingData,
  o: FitOptions & LrFindOptions = {},
): Promise<LrFindResult> {
  const trainer = await Trainer.create(model, trainerOptions(model, data, o));
  try {
    return await lrFind(trainer, data, o);
  } finally {
    await trainer.release();
  }
}

const fmt = (x: number) => x.toExponential(1).replace('e+', 'e');

/** The loss-vs-rate curve as an SVG document (log rate axis, suggestion marked). */
export function lrFindSvg(r: LrFindResult, title = 'learning-rate range test'): string {
  const W = 640,
    H = 400,
    L = 60,
    R = 20,
    T = 40,
    B = 50;
  const lx = r.lrs.map(Math.log10);
  const [x0, x1] = [lx[0]!, lx[lx.length - 1]!];
  const ys = r.smoothed;
  const y0 = Math.min(...ys);
  const y1 = Math.min(Math.max(...ys), y0 + 4 * (ys[0]! - y0 || 1));
  const px = (v: number) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (v: number) => T + (1 - (Math.min(v, y1) - y0) / (y1 - y0 || 1)) * (H - T - B);
  const path = lx.map((v, i) => `${i ? 'L' : 'M'}${px(v).toFixed(1)},${py(ys[i]!).toFixed(1)}`).join(' ');
  const raw = lx
    .flatMap((v, i) =>
      r.losses[i]! >= y0 && r.losses[i]! <= y1
        ? [`<circle cx="${px(v).toFixed(1)}" cy="${py(r.losses[i]!).toFixed(1)}" r="1.5" fill="#bbb"/>`]
        : [],
    )
    .join('');
  const ticks: string[] = [];
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++)
    ticks.push(
      `<line x1="${px(e)}" y1="${H - B}" x2="${px(e)}" y2="${H - B + 5}" stroke="#000"/><text x="${px(e)}" y="${H - B + 18}" font-size="11" text-anchor="middle">1e${e}</text>`,
    );
  for (let k = 0; k <= 4; k++) {
    const v = y0 + ((y1 - y0) * k) / 4;
    ticks.push(`<text x="${L - 6}" y="${py(v) + 4}" font-size="11" text-anchor="end">${v.toPrecision(3)}</text>`);
  }
  const sx = px(Math.log10(r.suggestion));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="${W / 2}" y="22" font-size="14" text-anchor="middle">${title}</text>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#000"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#000"/>
${ticks.join('\n')}
<text x="${W / 2}" y="${H - 12}" font-size="12" text-anchor="middle">learning rate (log scale)</text>
<text x="16" y="${H / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">loss (smoothed)</text>
${raw}
<path d="${path}" fill="none" stroke="#1f77b4" stroke-width="2"/>
<line x1="${sx}" y1="${T}" x2="${sx}" y2="${H - B}" stroke="#d62728" stroke-dasharray="4 3"/>
<text x="${sx + 4}" y="${T + 12}" font-size="12" fill="#d62728">suggested ${fmt(r.suggestion)} (steepest)</text>
</svg>
`;
}

/** Write the SVG plot (atomically). */
export function writeLrFindSvg(path: string, r: LrFindResult): void {
  atomicWrite(path, new TextEncoder().encode(lrFindSvg(r)));
}

/** A terminal sketch of the curve: rows of characters, log-rate across, the suggestion marked '|'. */
export function lrFindAscii(r: LrFindResult, width = 60, height = 12): string {
  const lx = r.lrs.map(Math.log10);
  const [x0, x1] = [lx[0]!, lx[lx.length - 1]!];
  const ys = r.smoothed;
  const y0 = Math.min(...ys);
  const y1 = Math.min(Math.max(...ys), y0 + 4 * (ys[0]! - y0 || 1));
  const grid = Array.from({ length: height }, () => new Array<string>(width).fill(' '));
  const col = (v: number) => Math.min(width - 1, Math.max(0, Math.round(((v - x0) / (x1 - x0 || 1)) * (width - 1))));
  const sc = col(Math.log10(r.suggestion));
  for (let y = 0; y < height; y++) grid[y]![sc] = '|';
  lx.forEach((v, i) => {
    const row = Math.round((1 - (Math.min(ys[i]!, y1) - y0) / (y1 - y0 || 1)) * (height - 1));
    grid[row]![col(v)] = '*';
  });
  const lines = grid.map(
    (row, i) =>
      `${(i === 0 ? y1.toPrecision(3) : i === height - 1 ? y0.toPrecision(3) : '').padStart(8)} ${row.join('')}`,
  );
  lines.push(`${' '.repeat(9)}${fmt(r.lrs[0]!)}${' '.repeat(Math.max(1, width - 14))}${fmt(r.lrs[r.lrs.length - 1]!)}`);
  return lines.join('\n');
}
