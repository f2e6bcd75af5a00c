/**
 * Frozen BatchNorm folded into the Conv before it (src/train/fold-bn.ts): the folded graph computes
 * the same outputs, its gradients match finite differences, and a training graph compiled with the
 * fold gives the same loss and the same gradient for every parameter (BatchNorm scale and bias
 * included) as one compiled without it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, type Attr } from '../../src/graph/graph.js';
import { Session, type Feeds } from '../../src/runtime/session.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { compileTraining } from '../../src/train/training-graph.js';
import { foldFrozenBatchNorm } from '../../src/train/fold-bn.js';
import { Trainer } from '../../src/train/trainer.js';
import { Rng } from '../../src/util/random.js';

const ints = (v: number[]): Attr => ({ type: 'ints', value: v });
const int = (v: number): Attr => ({ type: 'int', value: v });

/**
 * x [batch,3,6,6] → Conv 3×3 (3→8, bias) → BN → ReLU6 → depthwise 3×3 (no bias) → BN → ReLU6
 * → Conv 1×1 (8→8, no bias) → BN → Add(first ReLU6) → Conv 1×1 (8→4, bias) → BN → Relu → GAP → Gemm (4→3).
 * The last Conv's output is also read by a ReduceMean added to the logits, so its BN must not fold.
 */
function net(): Graph {
  const rng = new Rng(5);
  const g = new Graph();
  g.name = 'conv-bn-relu6';
  g.opsets = { '': 17 };
  const t = (dims: number[], f: () => number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, f),
  });
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 3, 6, 6] });
  const n = (opType: string, inputs: string[], out: string, attrs: Record<string, Attr> = {}) =>
    g.nodes.push({ name: `${out}_node`, opType, domain: '', inputs, outputs: [out], attrs });
  const bn = (x: string, c: number, out: string) => {
    g.initializers.set(
      `${out}.scale`,
      t([c], () => 1 + 0.3 * rng.normal()),
    );
    g.initializers.set(
      `${out}.bias`,
      t([c], () => 0.5 + 0.3 * rng.normal()),
    );
    g.initializers.set(
      `${out}.mean`,
      t([c], () => 0.3 * rng.normal()),
    );
    g.initializers.set(
      `${out}.var`,
      t([c], () => 0.5 + rng.uniform()),
    );
    n('BatchNormalization', [x, `${out}.scale`, `${out}.bias`, `${out}.mean`, `${out}.var`], out, {
      epsilon: { type: 'float', value: 1e-3 },
    });
  };
  g.initializers.set(
    'lo',
    t([], () => 0),
  );
  g.initializers.set(
    'hi',
    t([], () => 6),
  );
  g.initializers.set(
    'w1',
    t([8, 3, 3, 3], () => 0.4 * rng.normal()),
  );
  g.initializers.set(
    'b1',
    t([8], () => 0.1 * rng.normal()),
  );
  n('Conv', ['x', 'w1', 'b1'], 'c1', { pads: ints([1, 1, 1, 1]) });
  bn('c1', 8, 'bn1');
  n('Clip', ['bn1', 'lo', 'hi'], 'r1');
  g.initializers.set(
    'w2',
    t([8, 1, 3, 3], () => 0.5 * rng.normal()),
  );
  n('Conv', ['r1', 'w2'], 'c2', { pads: ints([1, 1, 1, 1]), group: int(8) });
  bn('c2', 8, 'bn2');
  n('Clip', ['bn2', 'lo', 'hi'], 'r2');
  g.initializers.set(
    'w3',
    t([8, 8, 1, 1], () => 0.4 * rng.normal()),
  );
  n('Conv', ['r2', 'w3'], 'c3');
  bn('c3', 8, 'bn3');
  n('Add', ['bn3', 'r1'], 'res');
  g.initializers.set(
    'w4',
    t([4, 8, 1, 1], () => 0.4 * rng.normal()),
  );
  g.initializers.set(
    'b4',
    t([4], () => 0.1 * rng.normal()),
  );
  n('Conv', ['res', 'w4', 'b4'], 'c4');
  bn('c4', 4, 'bn4');
  n('Relu', ['bn4'], 'r4');
  n('GlobalAveragePool', ['r4'], 'p');
  n('Flatten', ['p'], 'f');
  g.initializers.set(
    'fc.w',
    t([3, 4], () => rng.normal()),
  );
  g.initializers.set(
    'fc.b',
    t([3], () => 0),
  );
  n('Gemm', ['f', 'fc.w', 'fc.b'], 'fc', { transB: int(1) });
  n('ReduceMean', ['c4'], 'side', { keepdims: int(0) });
  n('Add', ['fc', 'side'], 'logits');
  g.outputs.push({ name: 'logits' });
  return g;
}

const rng = new Rng(11);
const x = {
  dtype: 'float32' as const,
  dims: [4, 3, 6, 6],
  data: Float32Array.from({ length: 4 * 3 * 36 }, () => rng.normal()),
};
const labels = { dtype: 'int64' as const, dims: [4], data: BigInt64Array.from([0n, 2n, 1n, 2n]) };

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    s += b[i]! ** 2;
  }
  return Math.sqrt(d / Math.max(s, 1e-30));
};

test('fold: the three Conv → BN pairs whose Conv output nothing else reads fold; outputs unchanged', async () => {
  const g = net();
  const f = g.clone();
  assert.equal(foldFrozenBatchNorm(f), 3);
  assert.deepEqual(
    f.nodes.filter((n) => n.opType === 'BatchNormalization').map((n) => n.outputs[0]),
    ['bn4'],
    'c4 is also read by ReduceMean',
  );
  assert.ok(!f.allNames().has('c1') && f.nodes.some((n) => n.opType === 'Conv' && n.outputs[0] === 'bn1'));
  f.topoSort(); // still a valid graph
  const run = async (m: Graph) =>
    (await (await Session.fromGraph(m, { optimization: 'disabled' })).run({ x }))['logits']!.data as Float32Array;
  const [a, b] = [await run(g), await run(f)];
  assert.ok(relL2(b, a) < 1e-5, `folded logits differ: ${relL2(b, a)}`);
  // batch statistics (training_mode 1) and statistics that train are never folded
  const batch = net();
  for (const n of batch.nodes) if (n.opType === 'BatchNormalization') n.attrs['training_mode'] = int(1);
  assert.equal(foldFrozenBatchNorm(batch), 0);
  assert.equal(foldFrozenBatchNorm(net(), { params: ['bn1.mean', 'bn2.var'] }), 1);
  assert.equal(foldFrozenBatchNorm(net(), { keep: ['c2'] }), 2);
});

test('fold: gradients of the folded graph match finite differences (x, conv weights and biases, BN scale and bias)', async () => {
  const f = net();
  foldFrozenBatchNorm(f);
  const wrt = [
    'x',
    'w1',
    'b1',
    'w2',
    'w3',
    'bn1.scale',
    'bn1.bias',
    'bn2.scale',
    'bn2.bias',
    'bn3.scale',
    'bn3.bias',
    'bn4.scale',
  ];
  const r = await gradCheck(f, { feeds: { x } as Feeds, wrt, samples: 16, eps: [1e-2, 1e-3, 1e-4] });
  assert.ok(
    r.entries.every((e) => e.maxAbsGrad > 0),
    JSON.stringify(r.entries),
  );
  assert.ok(r.worst < 2e-2, JSON.stringify(r.entries));
});

test('fold: training graphs with and without the fold give the same loss and gradients', async () => {
  const feeds = async (fold: boolean) => {
    const tg = await compileTraining(net(), { foldBatchNorm: fold });
    const s = await Session.fromGraph(tg.graph, {}, 'training');
    const out = await s.run({ x, [tg.target]: labels, ...Object.fromEntries(tg.initial) });
    await s.release();
    return { tg, out };
  };
  const [on, off] = [await feeds(true), await feeds(false)];
  assert.equal(on.tg.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 1);
  assert.equal(off.tg.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 4);
  assert.deepEqual(on.tg.params, off.tg.params);
  for (const p of ['bn1.scale', 'bn1.bias', 'bn3.scale', 'w1', 'b1']) assert.ok(on.tg.params.includes(p), p);
  const loss = (r: typeof on) => Number(r.out[r.tg.loss]!.data[0]);
  assert.ok(Math.abs(loss(on) - loss(off)) < 1e-5 * Math.abs(loss(off)), `${loss(on)} vs ${loss(off)}`);
  for (const p of on.tg.params) {
    const [a, b] = [
      on.out[on.tg.grads.get(p)!]!.data as Float32Array,
      off.out[off.tg.grads.get(p)!]!.data as Float32Array,
    ];
    assert.ok(
      b.some((v) => v !== 0),
      `${p}: zero gradient`,
    );
    assert.ok(relL2(a, b) < 1e-4, `${p}: relative L2 ${relL2(a, b)}`);
  }
});

test('fold: a Trainer with the fold follows the unfolded one step for step, and exports the unfolded model', async () => {
  const [a, b] = [
    await Trainer.create(net(), { lr: 0.01 }),
    await Trainer.create(net(), { lr: 0.01, foldBatchNorm: false }),
  ];
  for (let i = 0; i < 5; i++) {
    const [la, lb] = [(await a.step({ x }, labels)).loss, (await b.step({ x }, labels)).loss];
    assert.ok(Math.abs(la - lb) < 1e-4 * Math.abs(lb), `step ${i}: ${la} vs ${lb}`);
  }
  for (const [k, v] of b.params) assert.ok(relL2(a.params.get(k)!, v) < 1e-4, k);
  const g = a.toGraph();
  assert.equal(g.nodes.filter((n) => n.opType === 'BatchNormalization').length, 4);
  assert.notDeepEqual(
    Array.from(g.initializers.get('bn1.scale')!.data as Float32Array),
    Array.from(net().initializers.get('bn1.scale')!.data as Float32Array),
  );
  await Promise.all([a.release(), b.release()]);
});

/**
 * Edge cases: one weight shared by two grouped Convs without bias, one BatchNorm scale and bias shared
 * by their two BatchNorms, in 1-D and 3-D: both pairs fold, and loss and gradients equal the unfolded graph's.
 */
function sharedNet(spatial: number[]): Graph {
  const rng = new Rng(3);
  const g = new Graph();
  g.name = 'shared-conv-bn';
  g.opsets = { '': 17 };
  const t = (dims: number[], f: () => number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, f),
  });
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 4, ...spatial] });
  const n = (opType: string, inputs: string[], out: string, attrs: Record<string, Attr> = {}) =>
    g.nodes.push({ name: `${out}_node`, opType, domain: '', inputs, outputs: [out], attrs });
  const conv = { pads: ints([...spatial.map(() => 1), ...spatial.map(() => 1)]), group: int(2) };
  g.initializers.set(
    'W',
    t([4, 2, ...spatial.map(() => 3)], () => 0.4 * rng.normal()),
  );
  g.initializers.set(
    's',
    t([4], () => 1 + 0.3 * rng.normal()),
  );
  g.initializers.set(
    'b',
    t([4], () => 0.3 * rng.normal()),
  );
  for (const i of [1, 2]) {
    g.initializers.set(
      `m${i}`,
      t([4], () => 0.3 * rng.normal()),
    );
    g.initializers.set(
      `v${i}`,
      t([4], () => 0.5 + rng.uniform()),
    );
  }
  n('Conv', ['x', 'W'], 'c1', conv);
  n('BatchNormalization', ['c1', 's', 'b', 'm1', 'v1'], 'bn1');
  n('Relu', ['bn1'], 'r1');
  n('Conv', ['r1', 'W'], 'c2', conv);
  n('BatchNormalization', ['c2', 's', 'b', 'm2', 'v2'], 'bn2');
  n('ReduceMean', ['bn2'], 'p', { axes: ints(spatial.map((_, i) => i + 2)), keepdims: int(0) });
  g.initializers.set(
    'fc',
    t([4, 3], () => rng.normal()),
  );
  n('MatMul', ['p', 'fc'], 'logits');
  g.outputs.push({ name: 'logits' });
  return g;
}

test('fold: a weight shared by two grouped Convs without bias and shared BatchNorm parameters, 1-D and 3-D', async () => {
  for (const spatial of [[7], [3, 4, 4]]) {
    const r = new Rng(1);
    const xs = {
      dtype: 'float32' as const,
      dims: [3, 4, ...spatial],
      data: Float32Array.from({ length: 12 * spatial.reduce((a, b) => a * b, 1) }, () => r.normal()),
    };
    const y = { dtype: 'int64' as const, dims: [3], data: BigInt64Array.from([0n, 1n, 2n]) };
    const f = sharedNet(spatial);
    assert.equal(foldFrozenBatchNorm(f), 2, `${spatial.length}-D`);
    assert.equal(f.initializers.get('W')!.dims.length, spatial.length + 2, 'the shared weight itself is left as it is');
    const run = async (fold: boolean) => {
      const tg = await compileTraining(sharedNet(spatial), { foldBatchNorm: fold });
      const s = await Session.fromGraph(tg.graph, {}, 'training');
      const out = await s.run({ x: xs, [tg.target]: y, ...Object.fromEntries(tg.initial) });
      await s.release();
      return { tg, out };
    };
    const [on, off] = [await run(true), await run(false)];
    assert.equal(on.tg.graph.nodes.filter((q) => q.opType === 'BatchNormalization').length, 0);
    const loss = (q: typeof on) => Number(q.out[q.tg.loss]!.data[0]);
    assert.ok(
      Math.abs(loss(on) - loss(off)) < 1e-5 * Math.abs(loss(off)),
      `${spatial.length}-D: ${loss(on)} vs ${loss(off)}`,
    );
    assert.deepEqual(on.tg.params, ['W', 's', 'b', 'fc']);
    for (const p of on.tg.params) {
      const [a, b] = [
        on.out[on.tg.grads.get(p)!]!.data as Float32Array,
        off.out[off.tg.grads.get(p)!]!.data as Float32Array,
      ];
      assert.ok(b.some((v) => v !== 0) && relL2(a, b) < 1e-4, `${spatial.length}-D ${p}: relative L2 ${relL2(a, b)}`);
    }
  }
});
