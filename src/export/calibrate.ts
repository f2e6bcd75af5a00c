/**
 * Calibration for static int8 quantization: run the float model in onnxruntime with the activations
 * to quantize exposed as extra outputs, gather each one's exact minimum and maximum and a histogram,
 * and turn those into a range [lo, hi] by one of three methods:
 *   - 'minmax':     the exact range seen (always includes 0);
 *   - 'percentile': the p-th percentile on each side of the signed histogram (drops rare outliers);
 *   - 'entropy':    the clipping threshold minimizing the KL divergence between the histogram of |x|
 *                   and its quantized form (the method of TensorRT's and onnxruntime's entropy
 *                   calibrators: outliers beyond the threshold are folded into its last bin).
 * Ranges become scales and zero points in `qparams`. Nothing here edits a graph: src/export/quantize.ts does.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile', 'entropy'];

/** Bins on each side of zero (the |x| histogram has this many; TensorRT uses 2048). */
export const HALF_BINS = 2048;

/**
 * A histogram over [-R, R] with 2·HALF_BINS bins of width R/HALF_BINS, plus the exact min and max.
 * When data beyond R arrives, R doubles (pairs of bins merge exactly) until it fits, so one pass over
 * the calibration set suffices.
 */
export class Histogram {
  readonly half: number;
  bins: Float64Array;
  /** Half-width of the covered range; 0 until the first non-zero value. */
  R = 0;
  min = Infinity;
  max = -Infinity;
  count = 0;

  constructor(half = HALF_BINS) {
    if (half < 2 || half % 2 !== 0) throw new Error('histogram half-size must be even and ≥ 2');
    this.half = half;
    this.bins = new Float64Array(2 * half);
  }

  get width(): number {
    return this.R / this.half;
  }

  add(data: ArrayLike<number>): void {
    let mn = Infinity,
      mx = -Infinity;
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    if (!(mn <= mx)) return; // empty, or NaN everywhere
    if (!Number.isFinite(mn) || !Number.isFinite(mx))
      throw new GraftError(`calibration saw a non-finite activation (${mn}…${mx})`);
    this.min = Math.min(this.min, mn);
    this.max = Math.max(this.max, mx);
    const absMax = Math.max(-mn, mx);
    if (absMax > 0 && this.R === 0) this.R = absMax;
    while (absMax > this.R) this.grow();
    const H = this.half,
      bins = this.bins;
    const inv = this.R > 0 ? H / this.R : 0;
    const last = 2 * H - 1;
    for (let i = 0; i < data.length; i++) {
      let k = Math.floor(data[i]! * inv) + H;
      if (k > last) k = last;
      else if (k < 0) k = 0;
      bins[k]!++;
    }
    this.count += data.length;
  }

  /** Double R: bins 2j, 2j+1 (counted from −R) of the old range are the new bins' middle half. */
  private grow(): void {
    const H = this.half,
      old = this.bins,
      b = new Float64Array(2 * H);
    for (let i = 0; i < 2 * H; i++) b[(H + i) >> 1]! += old[i]!;
    this.bins = b;
    this.R *= 2;
  }

  /** The |x| histogram: HALF_BINS bins of width R/HALF_BINS from 0. */
  folded(): Float64Array {
    const H = this.half,
      a = new Float64Array(H);
    for (let k = 0; k < H; k++) a[k] = this.bins[H + k]! + this.bins[H - 1 - k]!;
    return a;
  }
}

export interface Range {
  lo: number;
  hi: number;
}

export interface RangeOptions {
  method: CalibrationMethod;
  /** 'percentile': the percentile kept on each side (default 99.99). */
  percentile?: number;
  /** 'entropy': quantization levels the threshold is chosen for (default 255, i.e. 8 bits). */
  levels?: number;
}

/** The range [lo, hi] (lo ≤ 0 ≤ hi) a histogram calibrates to. */
export function rangeOf(h: Histogram, o: RangeOptions): Range {
  if (h.count === 0 || h.R === 0)
    return { lo: Math.min(0, h.min === Infinity ? 0 : h.min), hi: Math.max(0, h.max === -Infinity ? 0 : h.max) };
  const exact = { lo: Math.min(0, h.min), hi: Math.max(0, h.max) };
  if (o.method === 'minmax') return exact;
  if (o.method === 'percentile') {
    const p = o.percentile ?? 99.99;
    if (!(p > 50 && p <= 100)) throw new GraftError(`percentile must be in (50, 100], got ${p}`);
    const lo = quantileOf(h, 1 - p / 100, 'low'),
      hi = quantileOf(h, p / 100, 'high');
    return { lo: Math.max(exact.lo, Math.min(0, lo)), hi: Math.min(exact.hi, Math.max(0, hi)) };
  }
  const signed = h.min < 0;
  // Levels for the |x| side: a non-negative tensor uses all of them on [0, t]; a signed one about half.
  const levels = o.levels ?? 255;
  const t = entropyThreshold(h.folded(), signed ? Math.floor(levels / 2) + 1 : levels + 1) * h.width;
  return { lo: Math.max(exact.lo, -t), hi: Math.min(exact.hi, t) };
}

/** The value below which `q` of the mass lies ('low': the bin's lower edge; 'high': its upper edge). */
function quantileOf(h: Histogram, q: number, side: 'low' | 'high'): number {
  const target = q * h.count;
  let acc = 0;
  for (let k = 0; k < h.bins.length; k++) {
    acc += h.bins[k]!;
    if (acc >= target) return (k - h.half + (side === 'high' ? 1 : 0)) * h.width;
  }
  return h.R;
}

/**
 * The number of |x| bins to keep: argmin over i ≥ nq of KL(P_i ‖ Q_i), where P_i is the first i bins
 * with everything beyond folded into bin i−1, and Q_i is those i bins merged into nq groups and
 * spread back uniformly over each group's non-empty bins. Returns i (threshold = i · bin width).
 */
export function entropyThreshold(abs: Float64Array, nq: number): number {
  const n = abs.length;
  let last = n;
  while (last > 0 && abs[last - 1] === 0) last--;
  if (last <= nq) return Math.max(1, last);
  const suffix = new Float64Array(n + 1);
  for (let k = n - 1; k >= 0; k--) suffix[k] = suffix[k + 1]! + abs[k]!;
  let best = last,
    bestKl = Infinity;
  const q = new Float64Array(n);
  for (let i = nq; i <= last; i++) {
    // Q: merge abs[0, i) into nq groups, spread each over its non-empty bins
    const per = i / nq;
    for (let j = 0; j < nq; j++) {
      const s = Math.floor(j * per),
        e = j === nq - 1 ? i : Math.floor((j + 1) * per);
      let sum = 0,
        nz = 0;
      for (let k = s; k < e; k++)
        if (abs[k]! > 0) {
          sum += abs[k]!;
          nz++;
        }
      const v = nz ? sum / nz : 0;
      for (let k = s; k < e; k++) q[k] = abs[k]! > 0 ? v : 0;
    }
    const pTotal = suffix[0]!; // P holds all the mass (the tail is folded into bin i−1)
    const qTotal = suffix[0]! - suffix[i]!;
    let kl = 0;
    for (let k = 0; k < i; k++) {
      const pk = k === i - 1 ? abs[k]! + suffix[i]! : abs[k]!;
      if (pk === 0) continue;
      const p = pk / pTotal;
      const qk = q[k]! / qTotal;
      kl += p * Math.log(p / (qk > 0 ? qk : 1e-12));
    }
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return best;
}

export type ActivationType = 'uint8' | 'int8';

export interface QParams {
  scale: number;
  zeroPoint: number;
}

/**
 * Scale and zero point mapping [lo, hi] (lo ≤ 0 ≤ hi) onto the 256 levels of `type` (asymmetric, so a
 * non-negative range has its zero exactly at the lowest level: 0 for uint8, −128 for int8).
 */
export function qparams(r: Range, type: ActivationType): QParams {
  const lo = Math.min(0, r.lo),
    hi = Math.max(0, r.hi);
  const qmin = type === 'uint8' ? 0 : -128,
    qmax = type === 'uint8' ? 255 : 127;
  let scale = (hi - lo) / 255;
  if (!(scale > 0) || !Number.isFinite(scale)) scale = 1;
  // float32 rounding of the stored scale
  scale = Math.fround(scale);
  const zp = Math.min(qmax, Math.max(qmin, Math.round(qmin - lo / scale)));
  return { scale, zeroPoint: zp };
}

export interface CalibrationOptions extends RangeOptions {
  runtime?: RuntimeOptions;
  /** Called after each batch with the examples done so far. */
  onBatch?: (done: number) => void;
}

export interface CalibrationResult {
  ranges: Map<string, Range>;
  histograms: Map<string, Histogram>;
  /** Examples (rows of the first input) seen. */
  examples: number;
  seconds: number;
}

/**
 * Run `g` over the batches with `values` exposed as outputs, histogram each, and calibrate a range
 * per value. Values that are not float32 (or never computed) are left out of the result.
 */
export async function calibrate(
  g: Graph,
  values: readonly string[],
  batches: Iterable<Feeds> | AsyncIterable<Feeds>,
  o: CalibrationOptions,
): Promise<CalibrationResult> {
  const t0 = performance.now();
  const probe = g.clone();
  const have = new Set(probe.outputs.map((v) => v.name));
  for (const v of values) if (!have.has(v)) probe.outputs.push({ name: v });
  const session = await Session.fromGraph(probe, o.runtime ?? {}, `${g.name} (calibration)`);
  const hists = new Map<string, Histogram>();
  let examples = 0;
  try {
    for await (const feeds of batches) {
      const out = await session.run(feeds, [...values]);
      for (const v of values) {
        const t: Tensor | undefined = out[v];
        if (!t || t.dtype !== 'float32') continue;
        let h = hists.get(v);
        if (!h) hists.set(v, (h = new Histogram()));
        h.add(t.data as Float32Array);
      }
      const first = Object.values(feeds)[0];
      examples += first?.dims[0] ?? 1;
      o.onBatch?.(examples);
    }
  } finally {
    await session.release();
  }
  if (examples === 0) throw new GraftError('calibration needs at least one example');
  const ranges = new Map<string, Range>();
  for (const [v, h] of hists) ranges.set(v, rangeOf(h, o));
  return { ranges, histograms: hists, examples, seconds: (performance.now() - t0) / 1000 };
}
