/**
 * BatchNormalization in fit(): running statistics frozen by default (the pretrained ones stay, bit for
 * bit, however long it trains), updated from batch statistics with batchNorm 'batch' (CLI: --bn update).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Graph } from '../../src/graph/graph.js';
import { fit } from '../../src/train/fit.js';
import { Rng } from '../../src/util/random.js';
import { convBn as convBnGraph } from '../helpers/conv-bn.js';

/** The test network, its BatchNorm pretrained statistics filled as below. */
const convBn = () => convBnGraph({ scale: () => 1, bias: () => 0, mean: () => 0.5, var: () => 2 });

// Two classes of 4×4 two-channel patterns: class 1 is brighter in channel 0 (a shifted input distribution).
const rng = new Rng(9);
const data = { x: [] as Float32Array[], y: [] as number[] };
for (let i = 0; i < 64; i++) {
  const y = i % 2;
  data.x.push(Float32Array.from({ length: 32 }, (_, k) => 3 + (k < 16 ? y * 2 : 0) + rng.normal()));
  data.y.push(y);
}
const stats = (g: Graph) => [
  ...(g.initializers.get('bn.mean')!.data as Float32Array),
  ...(g.initializers.get('bn.var')!.data as Float32Array),
];

test('fit: BatchNorm running statistics frozen by default, unchanged after training; scale and shift still train', async () => {
  const r = await fit(convBn(), data, { epochs: 3, batchSize: 8, lr: 0.01 });
  const g = r.trainer.toGraph();
  assert.deepEqual(stats(g), [0.5, 0.5, 0.5, 2, 2, 2]);
  assert.ok(
    r.trainer.params.has('bn.scale') && [...r.trainer.params.get('bn.scale')!].some((v) => v !== 1),
    'bn.scale did not train',
  );
  await r.trainer.release();
});

test("fit: batchNorm 'batch' (--bn update) moves the running statistics toward the data's", async () => {
  const r = await fit(convBn(), data, { epochs: 3, batchSize: 8, lr: 0.01, batchNorm: 'batch' });
  const s = stats(r.trainer.toGraph());
  assert.ok(
    s.slice(0, 3).every((m) => Math.abs(m - 0.5) > 0.05),
    `running means did not move: ${s}`,
  );
  assert.ok(
    s.slice(3).every((v) => Math.abs(v - 2) > 0.05),
    `running variances did not move: ${s}`,
  );
  await r.trainer.release();
});
