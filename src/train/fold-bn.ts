/**
 * Frozen BatchNormalization folded into the Conv before it, inside the training graph.
 *
 * With running statistics (batchNorm 'frozen'), Conv(x, W, b) → BatchNormalization(scale, bias, mean,
 * var) is the single Conv(x, W·s, (b − mean)·s + bias) with s = scale/√(var + eps) per output channel.
 * The fold writes s, W·s and the new bias as small per-channel nodes on the weights (which may be
 * trainable graph inputs), so the big activation tensor gets one pass fewer in the forward and the
 * BatchNorm's full-size gradient work (dy·a, Σ dy·x, Σ dy) disappears from the backward: W, b, scale
 * and bias still get their gradients, through those small nodes, by the ordinary Mul/Add/Reshape rules.
 *
 * It applies only where it is exact: an inference-mode BatchNormalization whose input is the output 0
 * of a Conv that nothing else reads (and that is no graph output or kept value), with constant
 * statistics and per-channel tensors of the Conv's output-channel count.
 */
import { attrFloat, attrInt, type Graph, type Node } from '../graph/graph.js';
import { Builder } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';

export interface FoldBatchNormOptions {
  /** Values that must stay in the graph as they are (e.g. values a loss scales the gradient of). */
  keep?: Iterable<string>;
  /** Names that must not be treated as constant statistics (trainable parameters). */
  params?: Iterable<string>;
}

/** A float32 initializer of `n` elements, or undefined. */
function vector(g: Graph, name: string | undefined, n: number): Tensor | undefined {
  const t = name ? g.initializers.get(name) : undefined;
  return t && t.dtype === 'float32' && t.dims.length === 1 && t.dims[0] === n ? t : undefined;
}

/**
 * Fold every eligible Conv → BatchNormalization pair in `g` (in place); returns the number folded.
 * Every node's inputs and outputs keep their names except the Conv's output, which becomes the
 * BatchNormalization's.
 */
export function foldFrozenBatchNorm(g: Graph, opts: FoldBatchNormOptions = {}): number {
  const keep = new Set([...(opts.keep ?? []), ...g.outputs.map((o) => o.name)]);
  const params = new Set(opts.params ?? []);
  const producers = g.producers();
  const consumers = g.consumers();
  const b = new Builder(g, 'bn-fold/');
  const removed = new Set<Node>();
  let folded = 0;
  for (const bn of [...g.nodes]) {
    if (bn.opType !== 'BatchNormalization' || bn.domain !== '') continue;
    if (attrInt(bn, 'training_mode', 0) !== 0 || attrInt(bn, 'spatial', 1) !== 1) continue;
    if (bn.outputs.slice(1).some((o) => o && (consumers.has(o) || keep.has(o)))) continue;
    const [x, scale, bias, mean, variance] = bn.inputs;
    const conv = x ? producers.get(x) : undefined;
    if (!conv || conv.opType !== 'Conv' || conv.domain !== '' || conv.outputs[0] !== x) continue;
    if (keep.has(x!) || (consumers.get(x!) ?? []).length !== 1) continue;
    const w = g.initializers.get(conv.inputs[1]!);
    if (!w || w.dtype !== 'float32' || w.dims.length < 3) continue;
    const C = w.dims[0]!;
    const convBias = conv.inputs[2] || undefined;
    if (convBias && !vector(g, convBias, C)) continue;
    if (!vector(g, scale, C) || !vector(g, bias, C)) continue;
    const m = vector(g, mean, C);
    const v = vector(g, variance, C);
    if (!m || !v || params.has(mean!) || params.has(variance!)) continue;

    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const vd = v.data as Float32Array;
    const rstd = b.constant(
      { dtype: 'float32', dims: [C], data: Float32Array.from(vd, (q) => 1 / Math.sqrt(q + eps)) },
      'rstd',
    );
    const start = b.emitted.length;
    const s = b.mul(scale!, rstd);
    const w2 = b.mul(conv.inputs[1]!, b.reshape(s, [C, ...Array<number>(w.dims.length - 1).fill(1)]));
    const shifted = convBias
      ? b.sub(convBias, mean!)
      : b.constant(
          { dtype: 'float32', dims: [C], data: Float32Array.from(m.data as Float32Array, (q) => -q) },
          'neg_mean',
        );
    const b2 = b.add(b.mul(shifted, s), bias!);
    // The new nodes go right before the Conv, so the node list stays in topological order.
    const added = b.emitted.slice(start);
    g.nodes.splice(g.nodes.length - added.length, added.length);
    g.nodes.splice(g.nodes.indexOf(conv), 0, ...added);
    conv.inputs = [conv.inputs[0]!, w2, b2];
    conv.outputs = [bn.outputs[0]!];
    removed.add(bn);
    folded++;
  }
  g.nodes = g.nodes.filter((n) => !removed.has(n));
  return folded;
}
