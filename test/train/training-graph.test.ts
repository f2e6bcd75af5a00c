import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { compileTraining, selectTrainable } from '../../src/train/training-graph.js';
import { Trainer } from '../../src/train/trainer.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { modelGradients } from '../../src/autodiff/check-model.js';

/** x [batch, 4] → fc1 (Gemm 4→8) → Relu → fc2 (Gemm 8→3) → logits */
function mlp(seed = 1): Graph {
  const rng = new Rng(seed);
  const g = new Graph();
  g.name = 'mlp';
  g.opsets = { '': 17 };
  const w = (dims: number[], s: number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => rng.normal() * s),
  });
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 4] });
  g.initializers.set('fc1.weight', w([8, 4], 0.5));
  g.initializers.set('fc1.bias', w([8], 0.1));
  g.initializers.set('fc2.weight', w([3, 8], 0.5));
  g.initializers.set('fc2.bias', w([3], 0.1));
  g.nodes.push(
    {
      name: 'fc1',
      opType: 'Gemm',
      domain: '',
      inputs: ['x', 'fc1.weight', 'fc1.bias'],
      outputs: ['h'],
      attrs: { transB: { type: 'int', value: 1 } },
    },
    { name: 'relu', opType: 'Relu', domain: '', inputs: ['h'], outputs: ['a'], attrs: {} },
    {
      name: 'fc2',
      opType: 'Gemm',
      domain: '',
      inputs: ['a', 'fc2.weight', 'fc2.bias'],
      outputs: ['logits'],
      attrs: { transB: { type: 'int', value: 1 } },
    },
  );
  g.outputs.push({ name: 'logits', dtype: 'float32', shape: ['batch', 3] });
  return g;
}

test('what trains: all, a name pattern, or everything after a cut', () => {
  const g = mlp();
  assert.deepEqual(selectTrainable(g, 'all').sort(), ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']);
  assert.deepEqual(selectTrainable(g, { pattern: 'weight$' }).sort(), ['fc1.weight', 'fc2.weight']);
  assert.deepEqual(selectTrainable(g, { after: 'relu' }).sort(), ['fc2.bias', 'fc2.weight']);
  assert.deepEqual(selectTrainable(g, { after: 'a' }).sort(), ['fc2.bias', 'fc2.weight']);
  assert.throws(() => selectTrainable(g, { pattern: 'nothing' }), /no parameter name matches/);
  assert.throws(() => selectTrainable(g, { after: 'nope' }), /no node or value named 'nope'/);
});

test('frozen layers get no gradient work', async () => {
  const full = await compileTraining(mlp(), {});
  const top = await compileTraining(mlp(), { trainable: { after: 'relu' } });
  const gradNodes = (g: Graph) => g.nodes.filter((n) => n.name.startsWith('grad/')).length;
  assert.ok(gradNodes(top.graph) < gradNodes(full.graph), `${gradNodes(top.graph)} vs ${gradNodes(full.graph)}`);
  // nothing in the backward of the top-only graph reads fc1's weight or the Relu input
  for (const n of top.graph.nodes.filter((n) => n.name.startsWith('grad/')))
    assert.ok(!n.inputs.includes('fc1.weight') && !n.inputs.includes('h'), `${n.name} touches the frozen layer`);
  assert.deepEqual([...top.grads.keys()].sort(), ['fc2.bias', 'fc2.weight']);
  assert.ok(top.graph.initializers.has('fc1.weight'), 'frozen weights stay constants');
});

test('training a small MLP drives the loss down and learns a separable task', async () => {
  const rng = new Rng(5);
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < 64; i++) {
    const y = i % 3;
    ys.push(y);
    for (let k = 0; k < 4; k++) xs.push((k === y ? 2 : 0) + rng.normal() * 0.3);
  }
  const x = { dtype: 'float32' as const, dims: [64, 4], data: Float32Array.from(xs) };
  const labels = { dtype: 'int64' as const, dims: [64], data: BigInt64Array.from(ys.map(BigInt)) };
  const t = await Trainer.create(mlp(), { lr: 0.05, optimizer: { kind: 'sgd', momentum: 0.9 } });
  const first = (await t.step({ x }, labels)).loss;
  let last = first;
  for (let i = 0; i < 60; i++) last = (await t.step({ x }, labels)).loss;
  assert.ok(last < first * 0.2, `loss ${first} → ${last}`);
  // the exported graph computes the same logits as the trainer's predictions
  const s = await Session.fromGraph(t.toGraph());
  const a = (await s.run({ x }))['logits']!.data as Float32Array;
  const b = (await t.predict({ x })).data as Float32Array;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-5);
  let correct = 0;
  for (let r = 0; r < 64; r++) {
    const row = Array.from(a.subarray(r * 3, r * 3 + 3));
    if (row.indexOf(Math.max(...row)) === ys[r]) correct++;
  }
  assert.ok(correct >= 60, `${correct}/64 correct`);
});

test('gradients for a feed agree between the weighted-sum and cross-entropy paths where they must', async () => {
  const g = mlp();
  const x = { dtype: 'float32' as const, dims: [2, 4], data: Float32Array.from([1, -1, 0.5, 2, 0.3, 0.2, -0.7, 1]) };
  // cross-entropy gradient of the output bias = mean over rows of softmax − onehot
  const labels = { dtype: 'int64' as const, dims: [2], data: BigInt64Array.from([2n, 0n]) };
  const ce = await modelGradients(g, { x, labels }, 'cross-entropy');
  const s = await Session.fromGraph(g);
  const logits = (await s.run({ x }))['logits']!.data as Float32Array;
  const expected = [0, 0, 0];
  for (let r = 0; r < 2; r++) {
    const row = Array.from(logits.subarray(r * 3, r * 3 + 3));
    const m = Math.max(...row);
    const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
    row.forEach((v, k) => (expected[k]! += (Math.exp(v - m) / z - (k === [2, 0][r] ? 1 : 0)) / 2));
  }
  const gb = ce.grads.get('fc2.bias')!.data as Float32Array;
  expected.forEach((e, k) => assert.ok(Math.abs(gb[k]! - e) < 1e-6, `${gb[k]} vs ${e}`));
  // weighted-sum: with R = 1 everywhere the output-bias gradient is the batch size
  const R = { dtype: 'float32' as const, dims: [2, 3], data: new Float32Array(6).fill(1) };
  const ws = await modelGradients(g, { x, R }, 'weighted-sum');
  assert.deepEqual(Array.from(ws.grads.get('fc2.bias')!.data as Float32Array), [2, 2, 2]);
});

test('bad feeds get errors that name the input', async () => {
  const g = mlp();
  const x = { dtype: 'float32' as const, dims: [2, 5], data: new Float32Array(10) };
  await assert.rejects(
    modelGradients(g, { x, R: x }, 'weighted-sum'),
    /feed 'x' has shape \[2,5\], the model expects \[batch,4\]/,
  );
  await assert.rejects(modelGradients(g, { R: x }, 'weighted-sum'), /no tensor 'x'/);
  const xi = { dtype: 'int32' as const, dims: [2, 4], data: new Int32Array(8) };
  await assert.rejects(
    modelGradients(g, { x: xi, R: x }, 'weighted-sum'),
    /feed 'x' is int32, the model expects float32/,
  );
});

test('a classifier that ends in Softmax is trained on its logits, not softmax applied twice', async () => {
  const g = mlp();
  g.nodes.push({
    name: 'softmax',
    opType: 'Softmax',
    domain: '',
    inputs: ['logits'],
    outputs: ['probs'],
    attrs: { axis: { type: 'int', value: -1 } },
  });
  g.outputs = [{ name: 'probs', dtype: 'float32', shape: ['batch', 3] }];
  const x = { dtype: 'float32' as const, dims: [2, 4], data: Float32Array.from([1, -1, 0.5, 2, 0.3, 0.2, -0.7, 1]) };
  const labels = { dtype: 'int64' as const, dims: [2], data: BigInt64Array.from([2n, 0n]) };
  const t = await Trainer.create(g, { lr: 0 });
  const { loss } = await t.step({ x }, labels);
  const p = (await t.predict({ x })).data as Float32Array;
  const expected = -(Math.log(p[2]!) + Math.log(p[3]!)) / 2;
  assert.ok(Math.abs(loss - expected) < 1e-5, `loss ${loss} vs −mean log p ${expected}`);
});
