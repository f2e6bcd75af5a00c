import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { Trainer } from '../../src/train/trainer.js';
import type { CustomLoss } from '../../src/train/losses.js';
import { Rng } from '../../src/util/random.js';
import { GraftError } from '../../src/util/errors.js';

/** x [batch,3] → Gemm(W [3,4]) → y [batch,4]. */
function model() {
  const rng = new Rng(3);
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 3] });
  g.initializers.set('W', {
    dtype: 'float32',
    dims: [3, 4],
    data: Float32Array.from({ length: 12 }, () => rng.normal()),
  });
  g.nodes.push({ name: 'fc', opType: 'Gemm', domain: '', inputs: ['x', 'W'], outputs: ['y'], attrs: {} });
  g.outputs = [{ name: 'y' }];
  return g;
}

const x = { dtype: 'float32' as const, dims: [2, 3], data: Float32Array.from([1, -2, 0.5, 0.3, 0.1, -1]) };
const t = { dtype: 'float32' as const, dims: [2, 4], data: Float32Array.from([0, 1, 2, 3, -1, 0, 1, 0]) };

/** Mean squared error written as a custom loss, with a separately named target and an extra output. */
function customMse(scale?: number): CustomLoss {
  return {
    kind: 'custom',
    build(_g, output, b) {
      const gate = b.op('Identity', [output]);
      const d = b.sub(gate, 'want');
      const sq = b.mul(d, d);
      return {
        loss: b.reduceAll('ReduceMean', sq),
        targets: ['want'],
        outputs: [sq],
        ...(scale !== undefined ? { gradScale: new Map([[gate, scale]]) } : {}),
      };
    },
    probeFeeds: (dims) => ({
      want: { dtype: 'float32', dims, data: new Float32Array(dims.reduce((a, c) => a * c, 1)) },
    }),
  };
}

async function firstStepDelta(loss: CustomLoss | { kind: 'mse' }): Promise<Float32Array> {
  const tr = await Trainer.create(model(), { loss, optimizer: { kind: 'sgd', momentum: 0, weightDecay: 0 }, lr: 1 });
  const before = Float32Array.from(tr.params.get('W')!);
  if (loss.kind === 'custom') {
    const r = await tr.step({ x, want: t });
    assert.deepEqual(Object.keys(r.values ?? {}).length, 1, 'the extra output is reported');
  } else await tr.step({ x }, t);
  const after = tr.params.get('W')!;
  await tr.release();
  return before.map((v, i) => v - after[i]!);
}

test('a custom loss trains like the built-in loss it restates; gradient scaling flips or stops it', async () => {
  const builtin = await firstStepDelta({ kind: 'mse' });
  const custom = await firstStepDelta(customMse());
  assert.ok(builtin.some((v) => Math.abs(v) > 1e-3));
  builtin.forEach((v, i) => assert.ok(Math.abs(v - custom[i]!) < 1e-5, `W[${i}]: ${v} vs ${custom[i]}`));
  const reversed = await firstStepDelta(customMse(-0.5));
  builtin.forEach((v, i) =>
    assert.ok(Math.abs(-0.5 * v - reversed[i]!) < 1e-5, `reversed W[${i}]: ${reversed[i]} vs ${-0.5 * v}`),
  );
  await assert.rejects(() => Trainer.create(model(), { loss: customMse(0) }), GraftError);
});

test('a custom loss input that is not fed is named', async () => {
  const tr = await Trainer.create(model(), { loss: customMse() });
  await assert.rejects(() => tr.step({ x }), /missing input 'want'/);
  await tr.release();
});
