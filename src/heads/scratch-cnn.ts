/**
 * A small convolutional classifier built from nothing, as an ONNX Graph: the "train from scratch"
 * baseline that transfer learning is compared against.
 *
 *   input [N, C, S, S]
 *   → Conv 3×3 (pad 1) → Relu → MaxPool 2×2
 *   → Conv 3×3 (pad 1) → Relu → MaxPool 2×2
 *   → Flatten → Gemm → logits [N, classes]
 *
 * With `batchNorm`, each convolution has no bias and is followed by BatchNormalization (scale 1,
 * bias 0, mean 0, var 1): the network on which normalization-based adaptation is shown.
 *
 * Weights are He-initialized (normal, std √(2 / fan_in)) from the seeded Rng, biases are zero; the
 * batch axis is symbolic, so the graph trains through src/train/fit.ts and runs at any batch size.
 */
import { Graph } from '../graph/graph.js';
import { A, Builder } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export interface SmallCnnOptions {
  /** Input channels (1 for grey). */
  channels: number;
  /** Input height and width (square). */
  size: number;
  classes: number;
  seed?: number;
  /** Output channels of the two convolutions (default [16, 32]). */
  filters?: [number, number];
  /** Graph name (default 'small-cnn'). */
  name?: string;
  /** BatchNormalization after each convolution (which then has no bias). */
  batchNorm?: boolean;
}

function he(rng: Rng, dims: number[], fanIn: number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const std = Math.sqrt(2 / fanIn);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
  return { dtype: 'float32', dims, data };
}

function filled(n: number, v = 0): Tensor {
  return { dtype: 'float32', dims: [n], data: new Float32Array(n).fill(v) };
}

/** The small CNN described above. Input 'input' [N, channels, size, size], output 'logits' [N, classes]. */
export function smallCnn(o: SmallCnnOptions): Graph {
  const { channels, size, classes } = o;
  const [f1, f2] = o.filters ?? [16, 32];
  for (const [k, v] of Object.entries({ channels, size, classes, f1, f2 }))
    if (!Number.isInteger(v) || v < 1) throw new GraftError(`smallCnn: ${k} must be a positive integer, got ${v}`);
  const pooled = Math.floor(Math.floor(size / 2) / 2);
  if (pooled < 1) throw new GraftError(`smallCnn: input size ${size} is too small for two 2×2 poolings`);
  const rng = new Rng(o.seed ?? 0);
  const g = new Graph();
  g.name = o.name ?? 'small-cnn';
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'input', dtype: 'float32', shape: ['N', channels, size, size] }];
  const b = new Builder(g);
  const param = (name: string, t: Tensor): string => {
    g.initializers.set(name, t);
    return name;
  };
  const conv = { kernel_shape: A.is([3, 3]), pads: A.is([1, 1, 1, 1]), strides: A.is([1, 1]) };
  const pool = { kernel_shape: A.is([2, 2]), strides: A.is([2, 2]) };

  let x = 'input';
  let cin = channels;
  [f1, f2].forEach((f, i) => {
    const l = i + 1;
    const w = param(`conv${l}.weight`, he(rng, [f, cin, 3, 3], cin * 9));
    if (o.batchNorm) {
      for (const [k, v] of [
        ['scale', 1],
        ['bias', 0],
        ['mean', 0],
        ['var', 1],
      ] as const)
        param(`bn${l}.${k}`, filled(f, v));
      x = b.op('Conv', [x, w], conv, `conv${l}`);
      x = b.op(
        'BatchNormalization',
        [x, `bn${l}.scale`, `bn${l}.bias`, `bn${l}.mean`, `bn${l}.var`],
        { epsilon: A.f(1e-5) },
        `bn${l}`,
      );
    } else x = b.op('Conv', [x, w, param(`conv${l}.bias`, filled(f))], conv, `conv${l}`);
    x = b.op('Relu', [x], {}, `relu${l}`);
    x = b.op('MaxPool', [x], pool, `pool${l}`);
    cin = f;
  });
  x = b.op('Flatten', [x], { axis: A.i(1) }, 'flatten');

  const feat = f2 * pooled * pooled;
  const w3 = param('fc.weight', he(rng, [classes, feat], feat));
  const b3 = param('fc.bias', filled(classes));
  g.nodes.push({
    name: 'fc_node',
    opType: 'Gemm',
    domain: '',
    inputs: [x, w3, b3],
    outputs: ['logits'],
    attrs: { transB: A.i(1) },
  });
  g.outputs = [{ name: 'logits', dtype: 'float32', shape: ['N', classes] }];
  return g;
}
