import { test } from 'node:test';
import { checkOp, awayFromZero, positive, F, I, S, i64, f32c } from '../helpers/op-graph.js';
import { Graph } from '../../src/graph/graph.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Rng } from '../../src/util/random.js';
import assert from 'node:assert/strict';

const distinct = (r: Rng, i: number) => (i % 7) * 0.37 - 1 + r.uniform() * 0.05 + i * 0.011;

test('ReduceSum over axes given as an input, keepdims 0', () =>
  checkOp({
    op: 'ReduceSum',
    attrs: { keepdims: I(0) },
    inputs: [
      { name: 'x', dims: [2, 3, 4] },
      { name: 'axes', constant: true, tensor: i64([1, -1]) },
    ],
  }));
test('ReduceSum over all axes', () => checkOp({ op: 'ReduceSum', inputs: [{ name: 'x', dims: [2, 3] }] }));
test('ReduceMean with axes attribute (opset 13)', () =>
  checkOp({
    op: 'ReduceMean',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [0, 2] }, keepdims: I(1) },
    inputs: [{ name: 'x', dims: [2, 3, 4] }],
  }));
test('ReduceMean with axes input (opset 18), keepdims 0', () =>
  checkOp({
    op: 'ReduceMean',
    opset: 18,
    attrs: { keepdims: I(0) },
    inputs: [
      { name: 'x', dims: [2, 3, 4] },
      { name: 'axes', constant: true, tensor: i64([-1]) },
    ],
  }));
test('ReduceSumSquare', () =>
  checkOp({
    op: 'ReduceSumSquare',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [1] } },
    inputs: [{ name: 'x', dims: [3, 4] }],
  }));
test('ReduceL2', () =>
  checkOp({
    op: 'ReduceL2',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [1] }, keepdims: I(0) },
    inputs: [{ name: 'x', dims: [3, 4] }],
  }));
test('ReduceLogSumExp', () =>
  checkOp({
    op: 'ReduceLogSumExp',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [0] } },
    inputs: [{ name: 'x', dims: [3, 4] }],
  }));
test('ReduceMax routes the gradient to the maximum', () =>
  checkOp({
    op: 'ReduceMax',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [1] }, keepdims: I(0) },
    inputs: [{ name: 'x', dims: [3, 5], init: distinct }],
  }));
test('Min of two', () =>
  checkOp({
    op: 'Min',
    inputs: [
      { name: 'a', dims: [6], init: distinct },
      { name: 'b', dims: [6] },
    ],
  }));
test('Mean of two with broadcast', () =>
  checkOp({
    op: 'Mean',
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [3] },
    ],
  }));
test('Clip as ReLU6 (min/max inputs)', () =>
  checkOp({
    op: 'Clip',
    inputs: [
      { name: 'x', dims: [16], init: (r) => r.normal() * 4 + 0.011 },
      { name: 'lo', constant: true, tensor: f32c([0], []) },
      { name: 'hi', constant: true, tensor: f32c([6], []) },
    ],
  }));
test('Clip with min/max attributes (opset 10)', () =>
  checkOp({
    op: 'Clip',
    opset: 10,
    attrs: { min: F(-1), max: F(1) },
    inputs: [{ name: 'x', dims: [16], init: (r) => r.normal() * 2 + 0.013 }],
  }));
test('Gelu (tanh approximation)', () =>
  checkOp({ op: 'Gelu', opset: 20, attrs: { approximate: S('tanh') }, inputs: [{ name: 'x', dims: [10] }] }));
test('Softplus', () => checkOp({ op: 'Softplus', inputs: [{ name: 'x', dims: [10] }] }));
test('Elu', () =>
  checkOp({ op: 'Elu', attrs: { alpha: F(0.7) }, inputs: [{ name: 'x', dims: [10], init: awayFromZero }] }));
test('Pow with a constant exponent (as in decomposed LayerNorm)', () =>
  checkOp({
    op: 'Pow',
    inputs: [
      { name: 'x', dims: [6], init: positive },
      { name: 'p', constant: true, tensor: f32c([2], []) },
    ],
  }));

/** GELU as exporters write it without a Gelu op: erf form and tanh form, each several nodes. */
function geluGraph(form: 'erf' | 'tanh'): Graph {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [3, 4] });
  const c = (name: string, v: number) =>
    g.initializers.set(name, { dtype: 'float32', dims: [], data: Float32Array.from([v]) });
  const n = (op: string, inputs: string[], out: string) =>
    g.nodes.push({ name: out, opType: op, domain: '', inputs, outputs: [out], attrs: {} });
  c('half', 0.5);
  c('one', 1);
  if (form === 'erf') {
    c('sqrt2', Math.SQRT2);
    n('Div', ['x', 'sqrt2'], 'u');
    n('Erf', ['u'], 'e');
    n('Add', ['e', 'one'], 'p');
  } else {
    c('k', Math.sqrt(2 / Math.PI));
    c('c', 0.044715);
    c('three', 3);
    n('Pow', ['x', 'three'], 'x3');
    n('Mul', ['x3', 'c'], 'cx3');
    n('Add', ['x', 'cx3'], 'in');
    n('Mul', ['in', 'k'], 'u');
    n('Tanh', ['u'], 't');
    n('Add', ['t', 'one'], 'p');
  }
  n('Mul', ['x', 'p'], 'xp');
  n('Mul', ['xp', 'half'], 'y');
  g.outputs.push({ name: 'y' });
  return g;
}

for (const form of ['erf', 'tanh'] as const)
  test(`decomposed GELU (${form} form) differentiates through its parts`, async () => {
    const rng = new Rng(4);
    const x = {
      dtype: 'float32' as const,
      dims: [3, 4],
      data: Float32Array.from({ length: 12 }, () => rng.normal() * 2),
    };
    const r = await gradCheck(geluGraph(form), { feeds: { x }, wrt: ['x'], samples: 12 });
    assert.ok(r.worst < 1e-2, `worst ${r.worst}`);
  });
