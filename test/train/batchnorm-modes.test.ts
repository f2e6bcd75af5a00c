import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Trainer } from '../../src/train/trainer.js';
import { Rng } from '../../src/util/random.js';
import { convBn as convBnGraph } from '../helpers/conv-bn.js';

/** The test network, its BatchNorm filled as below. */
const convBn = () =>
  convBnGraph({ scale: (r) => 1 + r.normal() * 0.1, bias: (r) => r.normal() * 0.1, mean: () => 0, var: () => 1 });

const rng = new Rng(9);
const x = {
  dtype: 'float32' as const,
  dims: [8, 2, 4, 4],
  data: Float32Array.from({ length: 256 }, () => 3 + rng.normal() * 2),
};
const labels = { dtype: 'int64' as const, dims: [8], data: BigInt64Array.from([0n, 1n, 0n, 1n, 0n, 1n, 1n, 0n]) };

test('BatchNorm frozen by default: running statistics never change, scale and bias train', async () => {
  const t = await Trainer.create(convBn(), { lr: 0.01 });
  assert.ok(t.params.has('bn.scale') && t.params.has('bn.bias'));
  assert.ok(!t.params.has('bn.mean') && !t.params.has('bn.var'), 'statistics are not parameters');
  for (let i = 0; i < 3; i++) await t.step({ x }, labels);
  const g = t.toGraph();
  assert.deepEqual(Array.from(g.initializers.get('bn.mean')!.data as Float32Array), [0, 0, 0]);
  assert.deepEqual(Array.from(g.initializers.get('bn.var')!.data as Float32Array), [1, 1, 1]);
});

test('BatchNorm with batch statistics updates the running statistics with the given momentum', async () => {
  const t = await Trainer.create(convBn(), { lr: 0, batchNorm: 'batch', bnMomentum: 0.9 });
  await t.step({ x }, labels);
  // expected: running = 0.9·old + 0.1·batch statistic of the conv output (weights unchanged: lr 0)
  const conv = convBn();
  conv.outputs = [{ name: 'c' }];
  conv.prune();
  const { Session } = await import('../../src/runtime/session.js');
  const c = (await (await Session.fromGraph(conv)).run({ x }))['c']!.data as Float32Array;
  const mean = [0, 0, 0];
  const sq = [0, 0, 0];
  for (let n = 0; n < 8; n++)
    for (let ch = 0; ch < 3; ch++)
      for (let k = 0; k < 16; k++) {
        const v = c[(n * 3 + ch) * 16 + k]!;
        mean[ch]! += v / 128;
        sq[ch]! += (v * v) / 128;
      }
  const got = t.toGraph();
  const rm = got.initializers.get('bn.mean')!.data as Float32Array;
  const rv = got.initializers.get('bn.var')!.data as Float32Array;
  for (let ch = 0; ch < 3; ch++) {
    const varPop = sq[ch]! - mean[ch]! ** 2;
    assert.ok(Math.abs(rm[ch]! - 0.1 * mean[ch]!) < 1e-4, `mean ${rm[ch]} vs ${0.1 * mean[ch]!}`);
    // onnxruntime updates the running variance with the population or the unbiased batch variance
    const unbiased = (varPop * 128) / 127;
    const ok = [varPop, unbiased].some((v) => Math.abs(rv[ch]! - (0.9 + 0.1 * v)) < 1e-3);
    assert.ok(ok, `var ${rv[ch]} vs ${0.9 + 0.1 * varPop} / ${0.9 + 0.1 * unbiased}`);
  }
});

test('training with batch statistics lowers the loss', async () => {
  const t = await Trainer.create(convBn(), { lr: 0.05, batchNorm: 'batch' });
  const first = (await t.step({ x }, labels)).loss;
  let last = first;
  for (let i = 0; i < 40; i++) last = (await t.step({ x }, labels)).loss;
  assert.ok(last < first * 0.5, `${first} → ${last}`);
});
