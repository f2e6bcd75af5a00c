import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { addLoss } from '../../src/train/losses.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Session } from '../../src/runtime/session.js';
import { AdamW, SGD, clipGradNorm } from '../../src/optim/optimizer.js';
import { Rng } from '../../src/util/random.js';
import type { LossSpec } from '../../src/train/losses.js';

/** x [4,3] → Gemm(W [3,5], b [5]) → logits [4,5] → loss, with fixed labels. */
function lossGraph(spec: LossSpec, labels = [0, 3, 3, 1]) {
  const rng = new Rng(11);
  const g = new Graph();
  g.opsets = { '': 17 };
  const rnd = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [4, 3] });
  g.initializers.set('W', { dtype: 'float32', dims: [3, 5], data: rnd(15) });
  g.initializers.set('b', { dtype: 'float32', dims: [5], data: rnd(5) });
  g.nodes.push({ name: 'fc', opType: 'Gemm', domain: '', inputs: ['x', 'W', 'b'], outputs: ['logits'], attrs: {} });
  const { loss, target } = addLoss(g, 'logits', spec as Exclude<LossSpec, { kind: 'custom' }>, 5);
  if (spec.kind === 'cross-entropy') {
    g.inputs = g.inputs.filter((i) => i.name !== target);
    g.initializers.set(target, { dtype: 'int64', dims: [4], data: BigInt64Array.from(labels.map(BigInt)) });
  }
  g.outputs = [{ name: loss }, { name: 'logits' }];
  const x = { dtype: 'float32' as const, dims: [4, 3], data: rnd(12) };
  return { g, x, loss, labels };
}

/** Reference softmax cross-entropy with label smoothing and class weights, in float64. */
function referenceCE(logits: Float32Array, labels: number[], C: number, eps: number, w?: number[]) {
  let num = 0;
  let den = 0;
  labels.forEach((y, r) => {
    const row = Array.from(logits.subarray(r * C, r * C + C));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    let l = 0;
    for (let k = 0; k < C; k++) l -= ((k === y ? 1 - eps : 0) + eps / C) * (row[k]! - lse);
    const wy = w ? w[y]! : 1;
    num += wy * l;
    den += wy;
  });
  return num / den;
}

for (const spec of [
  { kind: 'cross-entropy' as const },
  { kind: 'cross-entropy' as const, labelSmoothing: 0.1 },
  { kind: 'cross-entropy' as const, labelSmoothing: 0.2, classWeights: [1, 2, 0.5, 3, 1] },
]) {
  test(`cross-entropy ${JSON.stringify(spec)}: value matches a float64 reference and gradients match finite differences`, async () => {
    const { g, x, loss, labels } = lossGraph(spec);
    const s = await Session.fromGraph(g);
    const r = await s.run({ x });
    const ref = referenceCE(r['logits']!.data as Float32Array, labels, 5, spec.labelSmoothing ?? 0, spec.classWeights);
    assert.ok(Math.abs(Number(r[loss]!.data[0]) - ref) < 1e-5, `loss ${r[loss]!.data[0]} vs reference ${ref}`);
    const gl = g.clone();
    gl.outputs = [{ name: loss }];
    const c = await gradCheck(gl, { feeds: { x }, wrt: ['x', 'W', 'b'], samples: 15 });
    assert.ok(c.worst < 1e-2, `worst relative error ${c.worst}`);
  });
}

test('mean squared error: value and gradients', async () => {
  const { g, x, loss } = lossGraph({ kind: 'mse' });
  const targets = {
    dtype: 'float32' as const,
    dims: [4, 5],
    data: Float32Array.from({ length: 20 }, (_, i) => Math.sin(i)),
  };
  const s = await Session.fromGraph(g);
  const r = await s.run({ x, targets });
  const lg = r['logits']!.data as Float32Array;
  let ref = 0;
  for (let i = 0; i < 20; i++) ref += (lg[i]! - targets.data[i]!) ** 2 / 20;
  assert.ok(Math.abs(Number(r[loss]!.data[0]) - ref) < 1e-5);
  const gl = g.clone();
  gl.outputs = [{ name: loss }];
  const c = await gradCheck(gl, { feeds: { x, targets }, wrt: ['W', 'b'], samples: 15 });
  assert.ok(c.worst < 1e-2, `worst relative error ${c.worst}`);
});

test('AdamW follows torch.optim.AdamW (decoupled decay)', () => {
  const opt = new AdamW({ weightDecay: 0.01 });
  const p = new Map([['w', Float32Array.from([1])]]);
  const g = new Map([['w', Float32Array.from([0.5])]]);
  opt.step(p, g, 0.1);
  assert.ok(Math.abs(p.get('w')![0]! - 0.899) < 1e-6, String(p.get('w')![0]));
  opt.step(p, g, 0.1);
  // m̂/√v̂ = 1 for a constant gradient: p ← p·(1 − lr·wd) − lr
  assert.ok(Math.abs(p.get('w')![0]! - (0.899 * 0.999 - 0.1)) < 1e-6, String(p.get('w')![0]));
  const saved = opt.state();
  const again = new AdamW({ weightDecay: 0.01 });
  again.loadState(JSON.parse(JSON.stringify(saved)));
  const p2 = new Map([['w', Float32Array.from(p.get('w')!)]]);
  opt.step(p, g, 0.1);
  again.step(p2, g, 0.1);
  assert.equal(p.get('w')![0], p2.get('w')![0], 'restored state continues identically');
});

test('SGD with momentum, nesterov and weight decay follows torch.optim.SGD', () => {
  const p = new Map([['w', Float32Array.from([1])]]);
  const g = new Map([['w', Float32Array.from([0.5])]]);
  const sgd = new SGD({ momentum: 0.9 });
  sgd.step(p, g, 0.1);
  sgd.step(p, g, 0.1);
  assert.ok(Math.abs(p.get('w')![0]! - 0.855) < 1e-6);
  const q = new Map([['w', Float32Array.from([1])]]);
  const nes = new SGD({ momentum: 0.9, nesterov: true, weightDecay: 0.1 });
  nes.step(q, g, 0.1);
  // d = 0.5 + 0.1·1 = 0.6; buf = 0.6; update = d + 0.9·buf = 1.14
  assert.ok(Math.abs(q.get('w')![0]! - (1 - 0.114)) < 1e-6, String(q.get('w')![0]));
});

test('gradient clipping scales to the maximum global norm', () => {
  const g = new Map([
    ['a', Float32Array.from([3, 0])],
    ['b', Float32Array.from([4])],
  ]);
  const n = clipGradNorm(g, 1);
  assert.ok(Math.abs(n - 5) < 1e-9);
  const after = Math.hypot(...g.get('a')!, ...g.get('b')!);
  assert.ok(Math.abs(after - 1) < 1e-5);
});
