/**
 * Shared pieces of the network-level adaptation methods: class probabilities of a model over
 * in-memory examples (batched through onnxruntime), confidence/entropy summaries of them, and
 * the batches a target set is cut into.
 */
import type { Graph } from '../graph/graph.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { exampleDims, stack } from '../train/fit.js';
import { logitsOf } from '../train/training-graph.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { GraftError } from '../util/errors.js';
import type { Rng } from '../util/random.js';
import { softmax } from '../util/vectors.js';

/**
 * Logits of a classifier for each example: the model's output read before a final Softmax when it
 * has one (so a temperature can be applied and probabilities computed here, in float64).
 */
export async function predictLogits(
  model: Graph,
  xs: Float32Array[],
  o: { batchSize?: number; runtime?: RuntimeOptions } = {},
): Promise<Float32Array[]> {
  if (xs.length === 0) return [];
  const g = upgradeOpset(model).clone();
  const out = g.outputs[0]?.name;
  if (!out) throw new GraftError(`${model.name}: the model has no outputs`);
  const logits = logitsOf(g, out);
  g.outputs = [{ name: logits }];
  g.prune();
  const dims = exampleDims(g);
  const name = g.dataInputs()[0]!.name;
  const s = await Session.fromGraph(g, o.runtime, `${model.name} (predict)`);
  const bs = o.batchSize ?? 128;
  const res: Float32Array[] = [];
  try {
    for (let i = 0; i < xs.length; i += bs) {
      const t = (await s.run({ [name]: stack(xs.slice(i, i + bs), dims) }, [logits]))[logits]!;
      const c = t.dims[t.dims.length - 1]!;
      const d = t.data as Float32Array;
      for (let r = 0; r < t.dims[0]!; r++) res.push(d.slice(r * c, (r + 1) * c));
    }
  } finally {
    await s.release();
  }
  return res;
}

/** Softmax(logits / temperature) per example. */
export function probabilities(logits: ArrayLike<number>[], temperature = 1): Float64Array[] {
  return logits.map((z) => softmax(Array.from(z, (v) => v / temperature)));
}

/** Class probabilities of a classifier for each example (softmax of its logits / temperature). */
export async function predictClassProba(
  model: Graph,
  xs: Float32Array[],
  o: { batchSize?: number; runtime?: RuntimeOptions; temperature?: number } = {},
): Promise<Float64Array[]> {
  return probabilities(await predictLogits(model, xs, o), o.temperature ?? 1);
}

/**
 * The temperature at which the mean prediction entropy over `logits` equals `fraction`·ln(K)
 * (bisection on log T). Overconfident models (entropy ≈ 0 at T = 1) give entropy losses and
 * label-free scores no signal; this puts their predictions on a scale where both work.
 */
export function calibrateTemperature(logits: ArrayLike<number>[], fraction = 0.25): number {
  if (logits.length === 0) return 1;
  const K = logits[0]!.length;
  const goal = fraction * Math.log(K);
  const meanH = (T: number) => probabilities(logits, T).reduce((a, p) => a + entropyOf(p), 0) / logits.length;
  let lo = Math.log(1e-3),
    hi = Math.log(1e4);
  for (let it = 0; it < 40; it++) {
    const mid = (lo + hi) / 2;
    if (meanH(Math.exp(mid)) < goal) lo = mid;
    else hi = mid;
  }
  return Math.exp((lo + hi) / 2);
}

/** Shannon entropy (nats) of one distribution. */
export function entropyOf(p: ArrayLike<number>): number {
  let h = 0;
  for (let k = 0; k < p.length; k++) if (p[k]! > 0) h -= p[k]! * Math.log(p[k]!);
  return h;
}

/** Seeded mini-batches of indices 0..n−1 for `epochs` passes. */
export function batchesOf(n: number, batchSize: number, epochs: number, rng: Rng): number[][] {
  const out: number[][] = [];
  for (let e = 0; e < epochs; e++) {
    const order = rng.shuffle([...Array(n).keys()]);
    for (let i = 0; i < n; i += batchSize) out.push(order.slice(i, i + batchSize));
  }
  return out;
}
