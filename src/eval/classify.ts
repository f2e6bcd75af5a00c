/**
 * Classify images with a model: prepare them as the model's recorded preprocessing says, run the
 * model, and report the top-k classes with probabilities. A model that already ends in Softmax is
 * read as probabilities; logits get a softmax first.
 */
import type { Graph } from '../graph/graph.js';
import { getLabels, getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { decodeImages } from '../data/image.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import { softmax } from '../util/vectors.js';

export interface ClassScore {
  index: number;
  label?: string;
  probability: number;
}

export interface Classification {
  image: string;
  /** Empty when the image could not be read. */
  top: ClassScore[];
  /** Why the image was skipped (it could not be read or decoded). */
  error?: string;
}

export interface ClassifyOptions extends RuntimeOptions {
  /** How many classes to report per image (default 5). */
  top?: number;
  /** Class names (default: the labels the model carries). */
  labels?: string[];
  /** Preprocessing (default: the model's recorded one). */
  preprocess?: ImagePreprocess;
  /** Images per onnxruntime run (default 8). */
  batchSize?: number;
  /** Report an unreadable image in its entry's `error` (with no classes) instead of failing (default false). */
  skipUnreadable?: boolean;
}

/**
 * Whether the model's first output is already a probability distribution: it ends in Softmax, or it
 * is the `probabilities` output of a classifier saved by Graft (whose k-NN head ends in vote shares).
 */
export function outputsProbabilities(g: Graph): boolean {
  const out = g.outputs[0]?.name;
  if (out === 'probabilities' && g.metadata['graft.head']) return true;
  const prod = g.producers();
  let n = out ? prod.get(out) : undefined;
  // look through value-preserving nodes (Identity, Reshape, Flatten, Squeeze) to the last computation
  while (n && ['Identity', 'Reshape', 'Flatten', 'Squeeze'].includes(n.opType)) n = prod.get(n.inputs[0]!);
  return n?.opType === 'Softmax';
}

/** The k largest entries, largest first (ties: lower index first). */
export function topK(p: ArrayLike<number>, k: number, labels?: string[]): ClassScore[] {
  const idx = Array.from({ length: p.length }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
  return idx
    .slice(0, Math.max(0, k))
    .map((i) => ({ index: i, ...(labels?.[i] != null ? { label: labels[i] } : {}), probability: p[i]! }));
}

export async function classifyImages(
  model: Graph,
  images: string[],
  o: ClassifyOptions = {},
): Promise<Classification[]> {
  const pre = o.preprocess ?? getPreprocess(model);
  if (!pre)
    throw new GraftError(
      `${model.name}: the model records no image preprocessing`,
      'convert it with `graft convert MODEL OUT.onnx --size WxH --mean a,b,c --std a,b,c` to record one',
    );
  const inputs = model.dataInputs();
  if (inputs.length !== 1)
    throw new GraftError(`${model.name}: expected one image input, the model has ${inputs.length}`);
  const labels = o.labels ?? getLabels(model);
  const probs = outputsProbabilities(model);
  const session = await Session.fromGraph(model, o, model.name);
  const out: Classification[] = [];
  const bs = o.batchSize ?? 8;
  try {
    for (let s = 0; s < images.length; s += bs) {
      const all = images.slice(s, s + bs);
      const d = await decodeImages(all, pre);
      if (d.failed.length && !o.skipUnreadable) throw new GraftError(d.failed[0]!.error);
      const failed = new Map(d.failed.map((f) => [f.index, f.error]));
      const batch = d.ok.map((k) => all[k]!);
      const res = batch.length ? await session.run({ [inputs[0]!.name]: d.tensor }) : undefined;
      const results = new Map<number, Classification>();
      for (const [k, error] of failed) results.set(k, { image: all[k]!, top: [], error });
      if (!res) {
        all.forEach((_, k) => out.push(results.get(k)!));
        continue;
      }
      const y = res[model.outputs[0]!.name]!;
      const classes = y.dims[y.dims.length - 1]!;
      const data = y.data as Float32Array;
      if (data.length !== batch.length * classes)
        throw new GraftError(`${model.name}: output of shape [${y.dims}] is not one score vector per image`);
      if (labels && labels.length !== classes)
        process.emitWarning(`${labels.length} labels for ${classes} classes`, { code: 'GRAFT_LABELS' });
      batch.forEach((image, n) => {
        const row = data.subarray(n * classes, (n + 1) * classes);
        results.set(d.ok[n]!, { image, top: topK(probs ? row : softmax(row), o.top ?? 5, labels) });
      });
      all.forEach((_, k) => out.push(results.get(k)!));
    }
  } finally {
    await session.release();
  }
  return out;
}
