/**
 * BatchNormalization in fit(): running statistics frozen by default (the pretrained ones stay, bit for
 * bit, however long it trains), updated from batch statistics with batchNorm 'batch' (CLI: --bn update).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { fit } from '../../src/train/fit.js';
import { Rng } from '../../src/util/random.js';

/** x [batch,2,4,4] → Conv 3×3 → BatchNormalization (pretrained statistics) → Relu → GlobalAveragePool → Flatten → Gemm. */
function convBn(): Graph {
  const rng = new Rng(2);
  const g = new Graph();
  g.opsets = { '': 17 };
  const t = (dims: number[], f: () => number) => ({ dtype: 'float32' as const, dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, f) });
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 2, 4, 4] });
  g.initializers.set('w', t([3, 2, 3, 3], () => rng.normal() * 0.5));
  g.initializers.set('bn.scale', t([3], () => 1));
  g.initializers.set('bn.bias', t([3], () => 0));
  g.initializers.set('bn.mean', t([3], () => 0.5));
  g.initializers.set('bn.var', t([3], () => 2));
  g.initializers.set('fc.w', t([2, 3], () => rng.normal()));
  g.initializers.set('fc.b', t([2], () => 0));
  const n = (opType: string, inputs: string[], out: string, attrs = {}) => g.nodes.push({ name: out, opType, domain: '', inputs, outputs: [out], attrs });
  n('Conv', ['x', 'w'], 'c', { pads: { type: 'ints', value: [1, 1, 1, 1] } });
  n('BatchNormalization', ['c', 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'], 'bn');
  n('Relu', ['bn'], 'r');
  n('GlobalAveragePool', ['r'], 'p');
  n('Flatten', ['p'], 'f');
  n('Gemm', ['f', 'fc.w', 'fc.b'], 'logits', { transB: { type: 'int', value: 1 } });
  g.outputs.push({ name: 'logits' });
  return g;
}

// Two classes of 4×4 two-channel patterns: class 1 is brighter in channel 0 (a shifted input distribution).
const rng = new Rng(9);
const data = { x: [] as Float32Array[], y: [] as number[] };
for (let i = 0; i < 64; i++) {
  const y = i % 2;
  data.x.push(Float32Array.from({ length: 32 }, (_, k) => 3 + (k < 16 ? y * 2 : 0) + rng.normal()));
  data.y.push(y);
}
const stats = (g: Graph) => [...(g.initializers.get('bn.mean')!.data as Float32Array), ...(g.initializers.get('bn.var')!.data as Float32Array)];

test('fit: BatchNorm running statistics frozen by default, unchanged after training; scale and shift still train', async () => {
  const r = await fit(convBn(), data, { epochs: 3, batchSize: 8, lr: 0.01 });
  const g = r.trainer.toGraph();
  assert.deepEqual(stats(g), [0.5, 0.5, 0.5, 2, 2, 2]);
  assert.ok(r.trainer.params.has('bn.scale') && [...r.trainer.params.get('bn.scale')!].some((v) => v !== 1), 'bn.scale did not train');
  await r.trainer.release();
});

test("fit: batchNorm 'batch' (--bn update) moves the running statistics toward the data's", async () => {
  const r = await fit(convBn(), data, { epochs: 3, batchSize: 8, lr: 0.01, batchNorm: 'batch' });
  const s = stats(r.trainer.toGraph());
  assert.ok(s.slice(0, 3).every((m) => Math.abs(m - 0.5) > 0.05), `running means did not move: ${s}`);
  assert.ok(s.slice(3).every((v) => Math.abs(v - 2) > 0.05), `running variances did not move: ${s}`);
  await r.trainer.release();
});
