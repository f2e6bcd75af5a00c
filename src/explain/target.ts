/**
 * What an explanation differentiates: the class score of a classifier graph (the input of its final
 * Softmax when it ends in one, else its first output), the class chosen by index or label name, and
 * the gradient graph that returns that score's gradient with respect to one inner value (Grad-CAM's
 * activations, a text model's token embeddings), built by Graft's own autodiff.
 */
import type { Graph } from '../graph/graph.js';
import { buildBackward } from '../autodiff/backward.js';
import { probeShapes, type ShapeMap } from '../autodiff/shapes.js';
import { NoGradientRule } from '../autodiff/rule.js';
import type { Feeds, RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';

/** The value whose entries are the class scores, and whether the model's output is its softmax. */
export interface ScoreValue {
  /** The class scores [N, classes] that are differentiated (logits when the model ends in Softmax). */
  score: string;
  /** The model's first output (probabilities when `softmax`). */
  output: string;
  softmax: boolean;
}

/** The class score of a classifier: the input of a final Softmax (looked for through Identity/Reshape/Flatten/Squeeze), else the first output. */
export function scoreValue(g: Graph): ScoreValue {
  const output = g.outputs[0]?.name;
  if (!output) throw new GraftError(`${g.name}: the model has no outputs`);
  const prod = g.producers();
  let n = prod.get(output);
  while (n && ['Identity', 'Reshape', 'Flatten', 'Squeeze'].includes(n.opType)) n = prod.get(n.inputs[0]!);
  if (n?.opType === 'Softmax' && n.inputs[0]) return { score: n.inputs[0], output, softmax: true };
  return { score: output, output, softmax: false };
}

/**
 * A class given as an index or a label name → its index. A string of digits is a label when the
 * labels hold it, else an index.
 */
export function resolveClass(c: number | string, labels: readonly string[] | undefined, classes: number): number {
  let k: number;
  if (typeof c === 'number') k = c;
  else if (labels?.includes(c)) k = labels.indexOf(c);
  else if (/^\d+$/.test(c.trim())) k = Number(c.trim());
  else {
    const lower = labels?.findIndex((l) => l.toLowerCase() === c.toLowerCase()) ?? -1;
    if (lower >= 0) return lower;
    const sample = labels
      ?.slice(0, 8)
      .map((l) => `'${l}'`)
      .join(', ');
    throw new GraftError(
      `no class named '${c}'`,
      labels?.length
        ? `give a class index (0–${classes - 1}) or one of the ${labels.length} labels, e.g. ${sample}`
        : `the model has no class names: give an index 0–${classes - 1}`,
    );
  }
  if (!Number.isInteger(k) || k < 0 || k >= classes)
    throw new GraftError(`class ${c} is out of range: the model has ${classes} classes (0–${classes - 1})`);
  return k;
}

/** A graph computing the model's outputs, the chosen inner value and the gradient of Σ seed·score with respect to it. */
export interface ScoreGradGraph {
  graph: Graph;
  /** Name of the seed input ([N, classes] float32: a one-hot row picks the class whose score is differentiated). */
  seed: string;
  score: ScoreValue;
  /** The inner value and its gradient's name in `graph`. */
  value: string;
  grad: string;
  shapes: ShapeMap;
}

/**
 * Differentiate the class score of `model` with respect to the inner value `value`: the seed input
 * is the gradient arriving at the score, so a one-hot seed gives the gradient of that class's score.
 * `shapes` may be given when already probed.
 */
export async function scoreGradGraph(
  model: Graph,
  value: string,
  o: { shapes?: ShapeMap; feeds?: [Feeds, Feeds]; runtime?: RuntimeOptions } = {},
): Promise<ScoreGradGraph> {
  const score = scoreValue(model);
  const shapes =
    o.shapes ?? (await probeShapes(model, { ...(o.runtime ?? {}), ...(o.feeds ? { feeds: o.feeds } : {}) }));
  const s = shapes.get(score.score);
  if (!s || s.dims.length !== 2)
    throw new GraftError(
      `${model.name}: the class score '${score.score}' has shape [${s?.dims.join(', ') ?? '?'}], expected [N, classes]`,
    );
  const g = model.clone();
  const seed = g.uniqueName('graft/explain/seed');
  g.inputs.push({ name: seed, dtype: 'float32', shape: s.dims.map((d, i) => d ?? `seed_dim${i}`) });
  let grad: string | null | undefined;
  try {
    grad = buildBackward(g, shapes, { loss: score.score, wrt: [value], seed }).grads.get(value);
  } catch (e) {
    if (e instanceof NoGradientRule)
      throw new GraftError(
        `${model.name}: cannot differentiate its class score: ${e.message}`,
        'explanations need a model whose score is differentiable (a k-NN or nearest-class-mean head is not)',
      );
    throw e;
  }
  if (!grad) throw new GraftError(`${model.name}: the class score '${score.score}' does not depend on '${value}'`);
  const outs = [...new Set([score.output, score.score, value, grad])];
  g.outputs = outs.map((name) => ({ name }));
  return { graph: g, seed, score, value, grad, shapes };
}

/** A one-hot seed [1, classes] for class k. */
export function oneHot(classes: number, k: number): Feeds[string] {
  const data = new Float32Array(classes);
  if (k >= 0) data[k] = 1;
  return { dtype: 'float32', dims: [1, classes], data };
}
