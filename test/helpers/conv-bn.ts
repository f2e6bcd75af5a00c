/** A small convolutional classifier with one BatchNormalization, for the BatchNorm-mode tests. */
import { Graph } from '../../src/graph/graph.js';
import { Rng } from '../../src/util/random.js';

/** How each BatchNormalization tensor is filled (functions may draw from the graph's seeded rng). */
export interface BnInit {
  scale: (rng: Rng) => number;
  bias: (rng: Rng) => number;
  mean: (rng: Rng) => number;
  var: (rng: Rng) => number;
}

/** x [batch,2,4,4] → Conv 3×3 (2→3) → BatchNormalization → Relu → GlobalAveragePool → Flatten → Gemm (3→2). */
export function convBn(bn: BnInit): Graph {
  const rng = new Rng(2);
  const g = new Graph();
  g.opsets = { '': 17 };
  const t = (dims: number[], f: () => number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, f),
  });
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 2, 4, 4] });
  g.initializers.set(
    'w',
    t([3, 2, 3, 3], () => rng.normal() * 0.5),
  );
  g.initializers.set(
    'bn.scale',
    t([3], () => bn.scale(rng)),
  );
  g.initializers.set(
    'bn.bias',
    t([3], () => bn.bias(rng)),
  );
  g.initializers.set(
    'bn.mean',
    t([3], () => bn.mean(rng)),
  );
  g.initializers.set(
    'bn.var',
    t([3], () => bn.var(rng)),
  );
  g.initializers.set(
    'fc.w',
    t([2, 3], () => rng.normal()),
  );
  g.initializers.set(
    'fc.b',
    t([2], () => 0),
  );
  const n = (opType: string, inputs: string[], out: string, attrs = {}) =>
    g.nodes.push({ name: out, opType, domain: '', inputs, outputs: [out], attrs });
  n('Conv', ['x', 'w'], 'c', { pads: { type: 'ints', value: [1, 1, 1, 1] } });
  n('BatchNormalization', ['c', 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'], 'bn');
  n('Relu', ['bn'], 'r');
  n('GlobalAveragePool', ['r'], 'p');
  n('Flatten', ['p'], 'f');
  n('Gemm', ['f', 'fc.w', 'fc.b'], 'logits', { transB: { type: 'int', value: 1 } });
  g.outputs.push({ name: 'logits' });
  return g;
}
