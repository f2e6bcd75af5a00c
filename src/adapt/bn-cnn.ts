/**
 * A small convolutional classifier with BatchNormalization, built from nothing as an ONNX Graph:
 * the model on which normalization-based adaptation (AdaBN, TENT on BN affine parameters) is
 * shown when the pretrained model at hand has no normalization layers.
 *
 *   input [N, C, S, S]
 *   → Conv 3×3 (pad 1, no bias) → BatchNormalization → Relu → MaxPool 2×2
 *   → Conv 3×3 (pad 1, no bias) → BatchNormalization → Relu → MaxPool 2×2
 *   → Flatten → Gemm → logits [N, classes]
 *
 * Train it with `batchNorm: 'batch'` (src/train/training-graph.ts) so the running statistics are
 * those of the training data.
 */
import { Graph } from '../graph/graph.js';
import { A, Builder } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export interface BnCnnOptions {
  channels: number;
  size: number;
  classes: number;
  seed?: number;
  /** Output channels of the two convolutions (default [16, 32]). */
  filters?: [number, number];
}

function he(rng: Rng, dims: number[], fanIn: number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const std = Math.sqrt(2 / fanIn);
  return { dtype: 'float32', dims, data: Float32Array.from({ length: n }, () => rng.normal() * std) };
}

const filled = (n: number, v: number): Tensor => ({ dtype: 'float32', dims: [n], data: new Float32Array(n).fill(v) });

export function smallBnCnn(o: BnCnnOptions): Graph {
  const { channels, size, classes } = o;
  const [f1, f2] = o.filters ?? [16, 32];
  for (const [k, v] of Object.entries({ channels, size, classes, f1, f2 }))
    if (!Number.isInteger(v) || v < 1) throw new GraftError(`smallBnCnn: ${k} must be a positive integer, got ${v}`);
  const pooled = Math.floor(Math.floor(size / 2) / 2);
  if (pooled < 1) throw new GraftError(`smallBnCnn: input size ${size} is too small for two 2×2 poolings`);
  const rng = new Rng(o.seed ?? 0);
  const g = new Graph();
  g.name = 'small-bn-cnn';
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'input', dtype: 'float32', shape: ['N', channels, size, size] }];
  const b = new Builder(g);
  const conv = { kernel_shape: A.is([3, 3]), pads: A.is([1, 1, 1, 1]), strides: A.is([1, 1]) };
  const pool = { kernel_shape: A.is([2, 2]), strides: A.is([2, 2]) };
  let x = 'input';
  let cin = channels;
  [f1, f2].forEach((f, i) => {
    const l = i + 1;
    g.initializers.set(`conv${l}.weight`, he(rng, [f, cin, 3, 3], cin * 9));
    for (const [k, v] of [['scale', 1], ['bias', 0], ['mean', 0], ['var', 1]] as const) g.initializers.set(`bn${l}.${k}`, filled(f, v));
    x = b.op('Conv', [x, `conv${l}.weight`], conv, `conv${l}`);
    x = b.op('BatchNormalization', [x, `bn${l}.scale`, `bn${l}.bias`, `bn${l}.mean`, `bn${l}.var`], { epsilon: A.f(1e-5) }, `bn${l}`);
    x = b.op('Relu', [x], {}, `relu${l}`);
    x = b.op('MaxPool', [x], pool, `pool${l}`);
    cin = f;
  });
  x = b.op('Flatten', [x], { axis: A.i(1) }, 'flatten');
  const feat = f2 * pooled * pooled;
  g.initializers.set('fc.weight', he(rng, [classes, feat], feat));
  g.initializers.set('fc.bias', filled(classes, 0));
  g.nodes.push({ name: 'fc_node', opType: 'Gemm', domain: '', inputs: [x, 'fc.weight', 'fc.bias'], outputs: ['logits'], attrs: { transB: A.i(1) } });
  g.outputs = [{ name: 'logits', dtype: 'float32', shape: ['N', classes] }];
  return g;
}
