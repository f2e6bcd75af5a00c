/**
 * `graft check` / `graft grad` as library calls: the probe loss takes only differentiable floating-point
 * outputs, the finite-difference check raises no alarm on correct rules at kinks and in float32-only
 * operators, and it does catch a deliberately wrong rule.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Graph, type Node } from '../../src/graph/graph.js';
import { checkModel, modelGradients } from '../../src/autodiff/check-model.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { RULES } from '../../src/autodiff/rules/index.js';
import { Rng } from '../../src/util/random.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { opGraph, F, I } from '../helpers/op-graph.js';

const rng = new Rng(5);
const randn = (dims: number[]): Tensor => ({
  dtype: 'float32',
  dims,
  data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.normal()),
});
const node = (opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}): Node => ({
  name: `${outputs[0]}_node`,
  opType,
  domain: '',
  inputs,
  outputs,
  attrs,
});

/** x → MatMul(W) → logits (float32), ArgMax ids (int64), Cast to float16 and to float64 heads, and a bool mask. */
function mixedOutputs(): Graph {
  const g = new Graph();
  g.name = 'mixed';
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'x', dtype: 'float32', shape: [2, 3] }];
  g.initializers.set('W', randn([3, 4]));
  g.nodes = [
    node('MatMul', ['x', 'W'], ['logits']),
    node('ArgMax', ['logits'], ['ids'], { axis: I(1) }),
    node('Cast', ['logits'], ['half'], { to: I(10) }),
    node('Cast', ['logits'], ['double'], { to: I(11) }),
    node('Greater', ['logits', 'x_zero'], ['mask']),
  ];
  g.initializers.set('x_zero', { dtype: 'float32', dims: [], data: new Float32Array(1) });
  g.outputs = [{ name: 'ids' }, { name: 'half' }, { name: 'logits' }, { name: 'mask' }, { name: 'double' }];
  return g;
}

test('check builds its probe from the float outputs only, casting float16/float64 ones, and names what it skipped', async () => {
  const r = await checkModel(mixedOutputs(), { params: 1 });
  assert.deepEqual(
    r.outputs.used.map((u) => `${u.name}:${u.dtype}`),
    ['half:float16', 'logits:float32', 'double:float64'],
  );
  assert.deepEqual(
    r.outputs.skipped.map((s) => `${s.name}:${s.reason}`),
    ['ids:integer values', 'mask:boolean values'],
  );
  assert.ok(r.gradcheck, 'the finite-difference check ran');
  assert.ok(r.gradcheck.passed, `worst ${r.gradcheck.worst} ≥ ${r.gradcheck.tolerance}`);
  assert.deepEqual(
    r.gradcheck.outputs.used.map((u) => u.name),
    ['half', 'logits', 'double'],
  );
});

test('grad uses the first differentiable float output when the first output is integer', async () => {
  const g = mixedOutputs();
  const R: Tensor = { dtype: 'float32', dims: [2, 4], data: Float32Array.from([1, 0, 0, 0, 0, 0, 0, 2]) };
  const x = randn([2, 3]);
  const r = await modelGradients(g, { x, R }, 'weighted-sum');
  assert.deepEqual(
    r.outputs.used.map((u) => u.name),
    ['half'],
  );
  assert.ok(r.outputs.skipped.some((s) => s.name === 'ids' && s.reason === 'integer values'));
  // dL/dW[i][j] = Σ_b x[b][i]·R[b][j] (the float16 head is the logits rounded: its gradient passes through)
  const gw = r.grads.get('W')!.data as Float32Array;
  const xd = x.data as Float32Array;
  for (let i = 0; i < 3; i++) {
    assert.ok(Math.abs(gw[i * 4]! - xd[i]!) < 1e-6, `W[${i}][0]`);
    assert.ok(Math.abs(gw[i * 4 + 3]! - 2 * xd[3 + i]!) < 1e-6, `W[${i}][3]`);
  }
});

test('no false alarm: LeakyRelu and Elu with inputs exactly at the kink', async () => {
  for (const op of ['LeakyRelu', 'Elu', 'Relu']) {
    const { graph, feeds } = opGraph({
      op,
      inputs: [{ name: 'x', dims: [3, 4], init: (r, i) => (i % 3 === 0 ? 0 : r.normal()) }],
      attrs: op === 'Relu' ? {} : { alpha: F(0.1) },
    });
    const r = await gradCheck(graph, { feeds, wrt: ['x'], samples: 12 });
    assert.ok(r.passed, `${op}: worst ${r.worst}`);
  }
});

test('no false alarm: LayerNormalization with its Mean and InvStdDev outputs, and a saturated Softmax, in float32 and float64', async () => {
  const ln = opGraph({
    op: 'LayerNormalization',
    outputs: 3,
    inputs: [
      { name: 'x', dims: [2, 3, 5] },
      { name: 'w', dims: [5] },
      { name: 'b', dims: [5] },
    ],
  });
  const sm = opGraph({
    op: 'Softmax',
    inputs: [{ name: 'x', dims: [2, 4], init: (_r, i) => (i % 4) * 12 - (i > 3 ? 20 : 0) }],
  });
  for (const float64 of [false, true]) {
    for (const { graph, feeds } of [ln, sm]) {
      const r = await gradCheck(graph, { feeds, wrt: Object.keys(feeds), samples: 8, float64 });
      assert.ok(
        r.passed,
        `${graph.name} (${float64 ? 'float64' : 'float32'}): worst ${r.worst} ≥ ${r.tolerance}: ${JSON.stringify(r.entries)}`,
      );
    }
  }
});

test('a deliberately wrong rule is caught: Sigmoid with dy·y instead of dy·y·(1 − y)', async () => {
  const { graph, feeds } = opGraph({ op: 'Sigmoid', inputs: [{ name: 'x', dims: [3, 4] }] });
  const right = RULES['Sigmoid']!;
  assert.ok((await gradCheck(graph, { feeds, wrt: ['x'], float64: true })).passed, 'the real rule passes');
  RULES['Sigmoid'] = (c) => [c.b.mul(c.dy, c.y[0])];
  try {
    for (const float64 of [false, true]) {
      const r = await gradCheck(graph, { feeds, wrt: ['x'], float64 });
      assert.equal(r.passed, false, `the wrong rule passed in ${float64 ? 'float64' : 'float32'} (worst ${r.worst})`);
    }
    // and through checkModel, as `graft check` runs it
    const g = graph.clone();
    g.initializers.set('x', feeds['x']!);
    g.inputs = [];
    const m = await checkModel(g, { wrt: ['x'] });
    assert.equal(m.gradcheck?.passed, false);
  } finally {
    RULES['Sigmoid'] = right;
  }
});

test('a wrong rule that errs on one element only is still caught (a sampled element or a dense direction sees it)', async () => {
  const { graph, feeds } = opGraph({ op: 'Tanh', inputs: [{ name: 'x', dims: [4] }] });
  const right = RULES['Tanh']!;
  // correct except element 2 gets twice its gradient
  RULES['Tanh'] = (c) => {
    const [dx] = right(c);
    return [c.b.mul(dx as string, c.b.f32([1, 1, 2, 1]))];
  };
  try {
    const r = await gradCheck(graph, { feeds, wrt: ['x'], float64: true, samples: 1 });
    assert.equal(r.passed, false, `worst ${r.worst}`);
  } finally {
    RULES['Tanh'] = right;
  }
});
