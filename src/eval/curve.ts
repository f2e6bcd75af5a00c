/**
 * Data-efficiency curves: test accuracy against the number of labels per class, for three ways of
 * getting a classifier, over several seeds:
 *
 *   scratch    the small CNN of src/heads/scratch-cnn.ts, trained from random weights through the
 *              engine (inputs scaled to 0–1);
 *   features   the pretrained model cut at its feature value (cached once for all examples) and a
 *              logistic-regression head (L2 by cross-validation; a fixed l2 = 1 at 1 label/class);
 *   finetune   the whole pretrained model trained end to end (src/train/fit.ts).
 *
 * Per seed the dataset is split once (stratified, `testFraction` held out); the budgets' training
 * sets are nested prefixes of one seeded per-class order, so a larger budget adds labels to a
 * smaller one. Every method at a budget trains for at least `minSteps` optimizer steps.
 *
 * writeCurve saves curve.json, curve.md (table: mean [min–max] per method and budget) and curve.svg
 * (accuracy vs labels per class on a log axis; mean line and min–max band per method), atomically.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { fit, predictLabels, exampleDims, type Examples } from '../train/fit.js';
import { smallCnn } from '../heads/scratch-cnn.js';
import { fit as fitLogistic, fitCV } from '../heads/logistic.js';
import { extractFeatures, defaultFeatureNode } from '../features/extract.js';
import { stratifiedSplit, shuffledByClass } from '../data/splits.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { classCount } from '../heads/head.js';
import { atomicWrite } from '../formats/onnx.js';
import { accuracy } from '../util/vectors.js';

export type CurveMethod = 'scratch' | 'features' | 'finetune';
export const CURVE_METHODS: readonly CurveMethod[] = ['scratch', 'features', 'finetune'];

export interface CurveOptions {
  /** Labels per class at each point (e.g. [1, 2, 5, 10, 20, 50]). */
  budgets: number[];
  /** Number of seeds (0 … seeds − 1) per budget (default 3). */
  seeds?: number;
  methods?: CurveMethod[];
  /** Fraction of each class held out for testing (default 0.3). */
  testFraction?: number;
  /** Feature value for the 'features' method (default: the classifier's input). */
  node?: string;
  /** Minimum optimizer steps of each trained network (default 100), batches of `batchSize` (default 32). */
  minSteps?: number;
  batchSize?: number;
  /** Learning rates (AdamW): scratch (default 2e-3) and fine-tuning (default 1e-3). */
  scratchLr?: number;
  finetuneLr?: number;
  onProgress?: (p: {
    done: number;
    total: number;
    method: CurveMethod;
    perClass: number;
    seed: number;
    accuracy: number;
  }) => void;
}

export interface CurvePoint {
  method: CurveMethod;
  perClass: number;
  seed: number;
  accuracy: number;
  seconds: number;
  trainExamples: number;
}
export interface CurveSummary {
  method: CurveMethod;
  perClass: number;
  mean: number;
  min: number;
  max: number;
  seeds: number;
  seconds: number;
}
export interface CurveResult {
  model: string;
  classes: number;
  examples: number;
  testFraction: number;
  budgets: number[];
  methods: CurveMethod[];
  points: CurvePoint[];
  summary: CurveSummary[];
  /** One-time cost of the features method: extracting every example's features. */
  featureSeconds?: number;
}

/** Refuse a budget or a method listed twice (it would give duplicate rows and points). */
export function checkCurveLists(budgets: readonly number[], methods: readonly string[]): void {
  const twice = <T>(xs: readonly T[]) => xs.filter((x, i) => xs.indexOf(x) !== i);
  const b = twice(budgets),
    m = twice(methods);
  if (b.length)
    throw new GraftError(
      `--labels-per-class lists ${[...new Set(b)].join(', ')} more than once (${budgets.join(',')})`,
      'give each budget once',
    );
  if (m.length)
    throw new GraftError(
      `--methods lists ${[...new Set(m)].join(', ')} more than once (${methods.join(',')})`,
      'give each method once',
    );
}

/** What a curve run fixes before its cells run: checked options and what every cell shares. */
export interface CurvePlan {
  budgets: number[];
  seeds: number;
  methods: CurveMethod[];
  testFraction: number;
  classes: number;
  dims: number[];
  minSteps: number;
  batchSize: number;
  scratchLr: number;
  finetuneLr: number;
}

/** One run of the curve: a method trained at a budget on a seed's split. */
export interface CurveCell {
  seed: number;
  perClass: number;
  method: CurveMethod;
}

/** Check the options against the model and data; every error a curve can raise is raised here, before any training. */
export function planCurve(model: Graph, data: Examples, o: CurveOptions): CurvePlan {
  const budgets = [...o.budgets].sort((a, b) => a - b);
  if (!budgets.length || budgets.some((b) => !Number.isInteger(b) || b < 1))
    throw new GraftError(`--labels-per-class must be positive integers, got ${o.budgets.join(',')}`);
  const seeds = o.seeds ?? 3;
  if (!(seeds >= 1)) throw new GraftError(`--seeds must be at least 1, got ${seeds}`);
  const methods = o.methods ?? [...CURVE_METHODS];
  checkCurveLists(o.budgets, methods);
  const testFraction = o.testFraction ?? 0.3;
  const K = classCount(data.y);
  const dims = exampleDims(makeBatchDynamic(model));
  const minSteps = o.minSteps ?? 100,
    bs = o.batchSize ?? 32;
  if (!Number.isInteger(bs) || bs < 1) throw new GraftError(`--batch-size must be a whole number ≥ 1, got ${bs}`);
  if (!Number.isInteger(minSteps) || minSteps < 1)
    throw new GraftError(`--steps must be a whole number ≥ 1, got ${minSteps}`);
  if (!(testFraction > 0 && testFraction < 1))
    throw new GraftError(`--test-fraction must be between 0 and 1, got ${testFraction}`);
  if (methods.includes('scratch') && (dims.length !== 3 || dims[1] !== dims[2]))
    throw new GraftError(
      `the scratch method builds a small CNN for square images [C, S, S]; this model takes [${dims}]`,
      'leave scratch out of --methods',
    );
  for (let seed = 0; seed < seeds; seed++) {
    const { smallest } = seedPool(data, testFraction, seed);
    const over = budgets.find((b) => b > smallest);
    if (over !== undefined)
      throw new GraftError(
        `${over} labels per class asked, but a class has only ${smallest} training examples after holding out ${testFraction} for testing`,
      );
  }
  return {
    budgets,
    seeds,
    methods,
    testFraction,
    classes: K,
    dims,
    minSteps,
    batchSize: bs,
    scratchLr: o.scratchLr ?? 2e-3,
    finetuneLr: o.finetuneLr ?? 1e-3,
  };
}

/** The cells in the order a local run trains them (seed, then budget, then method). */
export function curveCells(p: CurvePlan): CurveCell[] {
  const out: CurveCell[] = [];
  for (let seed = 0; seed < p.seeds; seed++)
    for (const perClass of p.budgets) for (const method of p.methods) out.push({ seed, perClass, method });
  return out;
}

/** A seed's split and its per-class training pools (seeded order; budgets take prefixes). */
function seedPool(data: Examples, testFraction: number, seed: number) {
  const split = stratifiedSplit(data.y, { testFraction, seed });
  const pool = shuffledByClass(
    split.train.map((i) => data.y[i]!),
    new Rng(seed + 1),
  ).map(([, idx]) => idx.map((j) => split.train[j]!));
  return { split, pool, smallest: Math.min(...pool.map((q) => q.length)) };
}

/** Every example's features for the 'features' method (extracted once per curve). */
export async function curveFeatures(
  model: Graph,
  data: Examples,
  o: Pick<CurveOptions, 'node'>,
): Promise<Float32Array[]> {
  const dims = exampleDims(makeBatchDynamic(model));
  const batches: Tensor[] = [];
  for (let i = 0; i < data.x.length; i += 128) {
    const xs = data.x.slice(i, i + 128);
    const t = new Float32Array(xs.length * xs[0]!.length);
    xs.forEach((x, k) => t.set(x, k * x.length));
    batches.push({ dtype: 'float32', dims: [xs.length, ...dims], data: t });
  }
  return extractFeatures(makeBatchDynamic(model), o.node ?? defaultFeatureNode(model), batches, { batchSize: 128 });
}

/** Inputs scaled to 0–1 by the data's largest value (the scratch method's input). */
function scaledInputs(data: Examples): Float32Array[] {
  let maxIn = 0;
  for (const x of data.x) for (const v of x) if (v > maxIn) maxIn = v;
  return data.x.map((x) => x.map((v) => v / (maxIn || 1)));
}

/**
 * Train and score one cell. Its result depends only on the model, the data, the plan and the cell
 * (not on the cells run before it), so cells can run anywhere, in any order. `feats`: every
 * example's features (curveFeatures), for the 'features' method.
 */
export async function runCurveCell(
  model: Graph,
  data: Examples,
  p: CurvePlan,
  cell: CurveCell,
  feats?: Float32Array[],
  scaled?: Float32Array[],
): Promise<CurvePoint> {
  const { seed, perClass, method } = cell;
  const { split, pool } = seedPool(data, p.testFraction, seed);
  const train = new Rng(seed + 2).shuffle(pool.flatMap((q) => q.slice(0, perClass)));
  const bs = p.batchSize;
  const epochs = Math.max(1, Math.ceil(p.minSteps / Math.ceil(train.length / bs)));
  const t0 = performance.now();
  let acc: number;
  if (method === 'features') {
    if (!feats) throw new Error('runCurveCell: the features method needs the features');
    const X = train.map((i) => feats[i]!),
      y = train.map((i) => data.y[i]!);
    const head =
      perClass >= 2
        ? (await fitCV(X, y, { numClasses: p.classes, seed })).model
        : await fitLogistic(X, y, { numClasses: p.classes, l2: 1 });
    acc = head.accuracy(
      split.test.map((i) => feats[i]!),
      split.test.map((i) => data.y[i]!),
    );
  } else {
    const xs = method === 'scratch' ? (scaled ?? scaledInputs(data)) : data.x;
    const net =
      method === 'scratch'
        ? smallCnn({ channels: p.dims[0]!, size: p.dims[1]!, classes: p.classes, seed })
        : makeBatchDynamic(model);
    const r = await fit(
      net,
      { x: train.map((i) => xs[i]!), y: train.map((i) => data.y[i]!) },
      {
        epochs,
        batchSize: bs,
        seed,
        lr: method === 'scratch' ? p.scratchLr : p.finetuneLr,
      },
    );
    try {
      acc = accuracy(
        await predictLabels(
          r.trainer,
          r.trainer.tg.model,
          split.test.map((i) => xs[i]!),
        ),
        split.test.map((i) => data.y[i]!),
      );
    } finally {
      await r.trainer.release();
    }
  }
  return {
    method,
    perClass,
    seed,
    accuracy: acc,
    seconds: (performance.now() - t0) / 1000,
    trainExamples: train.length,
  };
}

/** The result from every cell's point (in any order: they are put in the local run's order). */
export function summarizeCurve(
  modelName: string,
  examples: number,
  p: CurvePlan,
  points: CurvePoint[],
  featureSeconds?: number,
): CurveResult {
  const order = curveCells(p);
  const key = (c: CurveCell) => `${c.seed}/${c.perClass}/${c.method}`;
  const at = new Map(points.map((q) => [key(q), q]));
  const sorted = order.map((c) => {
    const q = at.get(key(c));
    if (!q) throw new GraftError(`curve: no result for ${c.method} at ${c.perClass}/class, seed ${c.seed}`);
    return q;
  });
  const summary: CurveSummary[] = [];
  for (const method of p.methods)
    for (const perClass of p.budgets) {
      const ps = sorted.filter((q) => q.method === method && q.perClass === perClass);
      const a = ps.map((q) => q.accuracy);
      summary.push({
        method,
        perClass,
        mean: a.reduce((s, v) => s + v, 0) / a.length,
        min: Math.min(...a),
        max: Math.max(...a),
        seeds: a.length,
        seconds: ps.reduce((s, q) => s + q.seconds, 0) / ps.length,
      });
    }
  return {
    model: modelName,
    classes: p.classes,
    examples,
    testFraction: p.testFraction,
    budgets: p.budgets,
    methods: p.methods,
    points: sorted,
    summary,
    ...(featureSeconds !== undefined ? { featureSeconds } : {}),
  };
}

/** The curve for `model` (a classifier with one [N, …] input) on in-memory examples (in the model's input scale). */
export async function dataEfficiencyCurve(model: Graph, data: Examples, o: CurveOptions): Promise<CurveResult> {
  const p = planCurve(model, data, o);
  let feats: Float32Array[] | undefined;
  let featureSeconds: number | undefined;
  if (p.methods.includes('features')) {
    const t0 = performance.now();
    feats = await curveFeatures(model, data, o);
    featureSeconds = (performance.now() - t0) / 1000;
  }
  const scaled = p.methods.includes('scratch') ? scaledInputs(data) : undefined;
  const cells = curveCells(p);
  const points: CurvePoint[] = [];
  for (const cell of cells) {
    const q = await runCurveCell(model, data, p, cell, feats, scaled);
    points.push(q);
    o.onProgress?.({
      done: points.length,
      total: cells.length,
      method: q.method,
      perClass: q.perClass,
      seed: q.seed,
      accuracy: q.accuracy,
    });
  }
  return summarizeCurve(model.name, data.x.length, p, points, featureSeconds);
}

/** Markdown table: one row per budget, one column per method, "mean [min–max]". */
export function curveMarkdown(r: CurveResult): string {
  const cell = (m: CurveMethod, b: number) => {
    const s = r.summary.find((x) => x.method === m && x.perClass === b)!;
    return `${s.mean.toFixed(3)} [${s.min.toFixed(3)}–${s.max.toFixed(3)}]`;
  };
  const seeds = r.summary[0]?.seeds ?? 0;
  return [
    `Test accuracy, mean [min–max] over ${seeds} seed${seeds === 1 ? '' : 's'} (${r.examples} examples, ${r.classes} classes, ${Math.round(r.testFraction * 100)} % of each class held out per seed).`,
    '',
    `| labels per class | ${r.methods.join(' | ')} |`,
    `| ---: | ${r.methods.map(() => '---:').join(' | ')} |`,
    ...r.budgets.map((b) => `| ${b} | ${r.methods.map((m) => cell(m, b)).join(' | ')} |`),
    '',
    `Mean seconds per run: ${r.methods.map((m) => `${m} ${(r.summary.filter((s) => s.method === m).reduce((a, s) => a + s.seconds, 0) / r.budgets.length).toFixed(1)}`).join(', ')}` +
      (r.featureSeconds !== undefined
        ? ` (features: plus ${r.featureSeconds.toFixed(1)} s once to extract every example's features)`
        : '') +
      '.',
    '',
  ].join('\n');
}

const COLORS: Record<CurveMethod, string> = { scratch: '#d62728', features: '#1f77b4', finetune: '#2ca02c' };

/** SVG plot: accuracy (0–1) vs labels per class on a log axis; mean line and min–max band per method. */
export function curveSvg(r: CurveResult, title = `Data efficiency: ${r.model}`): string {
  const W = 640,
    H = 400,
    L = 60,
    R = 150,
    T = 40,
    B = 50;
  const lo = Math.log(Math.min(...r.budgets)),
    hi = Math.log(Math.max(...r.budgets));
  const x = (b: number) => L + (hi > lo ? (Math.log(b) - lo) / (hi - lo) : 0.5) * (W - L - R);
  const y = (a: number) => T + (1 - a) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="22" font-size="14">${esc(title)}</text>`,
  ];
  for (let a = 0; a <= 1.0001; a += 0.2) {
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(a)}" y2="${y(a)}" stroke="#ddd"/>`,
      `<text x="${L - 8}" y="${y(a) + 4}" text-anchor="end">${a.toFixed(1)}</text>`,
    );
  }
  for (const b of r.budgets)
    parts.push(
      `<line x1="${x(b)}" x2="${x(b)}" y1="${T}" y2="${H - B}" stroke="#eee"/>`,
      `<text x="${x(b)}" y="${H - B + 16}" text-anchor="middle">${b}</text>`,
    );
  parts.push(
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#444"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">labels per class (log scale)</text>`,
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">test accuracy</text>`,
  );
  r.methods.forEach((m, i) => {
    const s = r.budgets.map((b) => r.summary.find((q) => q.method === m && q.perClass === b)!);
    const band = [
      ...s.map((q) => `${x(q.perClass)},${y(q.max)}`),
      ...[...s].reverse().map((q) => `${x(q.perClass)},${y(q.min)}`),
    ].join(' ');
    parts.push(
      `<polygon points="${band}" fill="${COLORS[m]}" fill-opacity="0.18" stroke="none"/>`,
      `<polyline points="${s.map((q) => `${x(q.perClass)},${y(q.mean)}`).join(' ')}" fill="none" stroke="${COLORS[m]}" stroke-width="2"/>`,
      ...s.map((q) => `<circle cx="${x(q.perClass)}" cy="${y(q.mean)}" r="3" fill="${COLORS[m]}"/>`),
      `<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${T + 20 + 20 * i}" y2="${T + 20 + 20 * i}" stroke="${COLORS[m]}" stroke-width="2"/>`,
      `<text x="${W - R + 46}" y="${T + 24 + 20 * i}">${m}</text>`,
    );
  });
  parts.push(
    `<text x="${W - R + 15}" y="${T + 24 + 20 * r.methods.length}" fill="#666">band: min–max</text>`,
    '</svg>',
  );
  return parts.join('\n') + '\n';
}

function writeAtomic(path: string, text: string): void {
  atomicWrite(path, Buffer.from(text));
}

/** curve.json, curve.md and curve.svg in `dir`. Returns their paths. */
export function writeCurve(r: CurveResult, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, 'curve.json'), join(dir, 'curve.md'), join(dir, 'curve.svg')];
  writeAtomic(files[0]!, JSON.stringify(r, null, 2) + '\n');
  writeAtomic(files[1]!, curveMarkdown(r));
  writeAtomic(files[2]!, curveSvg(r));
  return files;
}
