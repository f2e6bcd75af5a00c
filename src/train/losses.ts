/**
 * Losses, written as ordinary ONNX nodes appended to the model so the autodiff differentiates them
 * like any other part of the graph.
 */
import type { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';

export type LossSpec =
  | {
      kind: 'cross-entropy';
      /** Mix the one-hot target with a uniform distribution: q = (1 − ε)·onehot + ε/C. */
      labelSmoothing?: number;
      /** Per-class weights; the loss is Σ w[y]·ℓ / Σ w[y] (PyTorch's convention). */
      classWeights?: number[];
    }
  | { kind: 'mse' }
  | CustomLoss;

/**
 * Any loss built from ONNX nodes: language-model cross-entropy over [batch, seq, vocab], entropy on
 * unlabelled data, a domain classifier behind gradient reversal, MMD terms… `build` appends nodes to
 * the graph (reading `output`, or any other value of the model), declares the extra inputs it reads
 * (targets, masks, domain labels) and may add parameters of its own, which then train too.
 */
export interface CustomLoss {
  kind: 'custom';
  build(g: Graph, output: string, b: Builder): CustomLossNodes;
  /** Feeds for the inputs `build` declared, sized for a probe batch whose model output has `outputDims`. */
  probeFeeds(outputDims: number[]): Record<string, Tensor>;
}

export interface CustomLossNodes {
  /** The scalar loss value. */
  loss: string;
  /** Inputs the loss reads (fed at each step beside the model's; declared from probeFeeds unless build added them to g.inputs). */
  targets: string[];
  /** New float initializers (added to g.initializers by build) that train with the model. */
  params?: string[];
  /** Values reported by each step beside the loss (for example the parts of a sum of losses). */
  outputs?: string[];
  /** Gradient scaling at values: 0 stops the gradient, −λ reverses it (see BackwardOptions.gradScale). */
  gradScale?: Map<string, number>;
}

export interface LossNodes {
  loss: string;
  /** The target input the loss adds: int64 `labels` [N] or float `targets` (output's shape). */
  target: string;
}

/**
 * Append the loss of `output` (logits [N, C] for cross-entropy; any shape for MSE) to the graph.
 * `classes` is C, needed for cross-entropy.
 */
export function addLoss(
  g: Graph,
  output: string,
  spec: Exclude<LossSpec, CustomLoss>,
  classes?: number,
  batchDim: string | number = 'batch',
): LossNodes {
  const b = new Builder(g, 'loss/');
  if (spec.kind === 'mse') {
    const target = 'targets';
    const vi = g.valueInfoOf(output);
    g.inputs.push({ name: target, dtype: 'float32', ...(vi?.shape ? { shape: vi.shape } : {}) });
    const d = b.sub(output, target);
    const loss = b.reduceAll('ReduceMean', b.mul(d, d));
    return { loss: rename(g, loss, 'loss'), target };
  }
  if (!classes || classes < 2) throw new GraftError(`cross-entropy needs at least 2 classes at output '${output}'`);
  const eps = spec.labelSmoothing ?? 0;
  if (eps < 0 || eps >= 1) throw new GraftError(`label smoothing must be in [0, 1), got ${eps}`);
  const target = 'labels';
  g.inputs.push({ name: target, dtype: 'int64', shape: [batchDim] });
  const logp = b.op('LogSoftmax', [output], { axis: A.i(-1) });
  const onehot = b.op('OneHot', [target, b.i64([classes], [1]), b.f32([0, 1])], { axis: A.i(-1) });
  const q = eps ? b.add(b.mul(onehot, b.f32(1 - eps)), b.f32(eps / classes)) : onehot;
  const perExample = b.neg(b.reduce('ReduceSum', b.mul(q, logp), [1], false));
  let loss: string;
  if (spec.classWeights) {
    if (spec.classWeights.length !== classes)
      throw new GraftError(`${spec.classWeights.length} class weights given for ${classes} classes`);
    const w = b.op('Gather', [b.f32(spec.classWeights), target], { axis: A.i(0) });
    loss = b.div(b.reduce('ReduceSum', b.mul(w, perExample), [0], false), b.reduce('ReduceSum', w, [0], false));
  } else loss = b.reduce('ReduceMean', perExample, [0], false);
  return { loss: rename(g, loss, 'loss'), target };
}

/** Give a produced value a friendlier name. */
export function rename(g: Graph, value: string, name: string): string {
  if (g.allNames().has(name)) return value;
  for (const n of g.nodes) n.outputs = n.outputs.map((o) => (o === value ? name : o));
  g.replaceUses(value, name);
  return name;
}
