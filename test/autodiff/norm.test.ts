import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkOp, opGraph, f32c, F, I, type InputSpec } from '../helpers/op-graph.js';
import { Graph } from '../../src/graph/graph.js';
import { gradCheck, weightedSumGradGraph } from '../../src/autodiff/grad-graph.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { type Tensor, numel } from '../../src/graph/tensor.js';

const bool = (v: boolean): Tensor => ({ dtype: 'bool', dims: [], data: Uint8Array.from([v ? 1 : 0]) });
/**
 * Normalizations are invariant to affine changes of x, and the probe weights R of gradCheck repeat the
 * normal draws that make the first input, which makes dL/dx vanish; uniform draws avoid that.
 */
const u = (r: Rng) => r.uniform() * 4 - 2;
const f32s = (v: number): Tensor => ({ dtype: 'float32', dims: [], data: Float32Array.from([v]) });

/** BatchNormalization inputs for x of `dims`, with running mean/var fixed (not differentiated). */
function bnInputs(dims: number[]): InputSpec[] {
  const C = dims[1]!;
  return [
    { name: 'x', dims, init: u },
    { name: 'scale', dims: [C] },
    { name: 'B', dims: [C] },
    { name: 'mean', constant: true, tensor: f32c(Array.from({ length: C }, (_, i) => 0.1 * i - 0.2)) },
    { name: 'var', constant: true, tensor: f32c(Array.from({ length: C }, (_, i) => 0.5 + 0.3 * i)) },
  ];
}

const wrt = ['x', 'scale', 'B'];
test('BatchNormalization (frozen statistics) rank 2', () =>
  checkOp({ op: 'BatchNormalization', attrs: { epsilon: F(1e-3) }, inputs: bnInputs([4, 3]), wrt }));
test('BatchNormalization (frozen statistics) rank 3', () =>
  checkOp({ op: 'BatchNormalization', inputs: bnInputs([2, 3, 5]), wrt }));
test('BatchNormalization (frozen statistics) rank 4', () =>
  checkOp({ op: 'BatchNormalization', inputs: bnInputs([2, 3, 2, 2]), wrt }));
test('BatchNormalization (frozen statistics) at opset 9', () =>
  checkOp({ op: 'BatchNormalization', opset: 9, inputs: bnInputs([2, 3, 2, 2]), wrt }));

/** BatchNormalization with training_mode=1 (three outputs, as the schema requires); the loss sees only Y. */
async function checkTrainingBN(dims: number[], opset: number, eps: number, momentum?: number): Promise<void> {
  const attrs = { training_mode: I(1), epsilon: F(eps), ...(momentum !== undefined ? { momentum: F(momentum) } : {}) };
  const { graph, feeds } = opGraph({ op: 'BatchNormalization', opset, outputs: 3, attrs, inputs: bnInputs(dims) });
  graph.outputs = [{ name: 'y0' }];
  const r = await gradCheck(graph, { feeds, samples: 24, wrt });
  assert.equal(r.entries.length, 3);
  assert.ok(r.entries.every((e) => e.maxAbsGrad > 0) && r.worst < 2e-2, JSON.stringify(r.entries));
}
test('BatchNormalization training_mode=1 (batch statistics) rank 4', () => checkTrainingBN([3, 2, 2, 2], 15, 1e-5));
test('BatchNormalization training_mode=1 rank 2', () => checkTrainingBN([5, 3], 14, 1e-2));
test('BatchNormalization training_mode=1 rank 3', () => checkTrainingBN([2, 3, 4], 15, 1e-5));
// momentum 0: outputs 1 and 2 are the batch statistics, which the rule reuses instead of recomputing
test('BatchNormalization training_mode=1, momentum 0 (batch statistics taken from outputs 1, 2) rank 4', () =>
  checkTrainingBN([3, 2, 2, 2], 15, 1e-5, 0));
test('BatchNormalization training_mode=1, momentum 0, rank 2', () => checkTrainingBN([5, 3], 14, 1e-2, 0));

test('LayerNormalization over the last axis with bias', () =>
  checkOp({
    op: 'LayerNormalization',
    inputs: [
      { name: 'x', dims: [2, 3, 5], init: u },
      { name: 'scale', dims: [5] },
      { name: 'bias', dims: [5] },
    ],
  }));
test('LayerNormalization over the last two axes (axis=-2), no bias', () =>
  checkOp({
    op: 'LayerNormalization',
    attrs: { axis: I(-2), epsilon: F(1e-3) },
    inputs: [
      { name: 'x', dims: [2, 3, 4], init: u },
      { name: 'scale', dims: [3, 4] },
    ],
  }));
test('LayerNormalization axis=1 on rank 2', () =>
  checkOp({
    op: 'LayerNormalization',
    attrs: { axis: I(1) },
    inputs: [
      { name: 'x', dims: [3, 6], init: u },
      { name: 'scale', dims: [6] },
      { name: 'bias', dims: [6] },
    ],
  }));

test('InstanceNormalization rank 4', () =>
  checkOp({
    op: 'InstanceNormalization',
    inputs: [
      { name: 'x', dims: [2, 3, 2, 3], init: u },
      { name: 'scale', dims: [3] },
      { name: 'B', dims: [3] },
    ],
  }));
test('InstanceNormalization rank 3', () =>
  checkOp({
    op: 'InstanceNormalization',
    attrs: { epsilon: F(1e-3) },
    inputs: [
      { name: 'x', dims: [2, 2, 5], init: u },
      { name: 'scale', dims: [2] },
      { name: 'B', dims: [2] },
    ],
  }));

test('decomposed LayerNorm (older PyTorch export) differentiates through the elementwise rules', async () => {
  for (const opset of [11, 17]) {
    const g = new Graph();
    g.name = 'decomposed-layernorm';
    g.opsets = { '': opset };
    const rng = new Rng(5);
    const init = (dims: number[], f: () => number): Tensor => ({
      dtype: 'float32',
      dims,
      data: Float32Array.from({ length: numel(dims) }, f),
    });
    g.inputs.push({ name: 'x', dtype: 'float32', shape: [2, 3, 4] });
    // gamma/beta as graph inputs: gradCheck feeds only graph inputs to its shape probe
    g.inputs.push({ name: 'gamma', dtype: 'float32', shape: [4] }, { name: 'beta', dtype: 'float32', shape: [4] });
    g.initializers.set('two', f32s(2));
    g.initializers.set('eps', f32s(1e-5));
    const axesAttr = opset < 18 ? { axes: { type: 'ints' as const, value: [-1] } } : {};
    const n = (name: string, opType: string, inputs: string[], attrs = {}) =>
      g.nodes.push({ name, opType, domain: '', inputs, outputs: [name], attrs });
    n('mu', 'ReduceMean', ['x'], axesAttr);
    n('d', 'Sub', ['x', 'mu']);
    n('sq', 'Pow', ['d', 'two']);
    n('var', 'ReduceMean', ['sq'], axesAttr);
    n('ve', 'Add', ['var', 'eps']);
    n('sd', 'Sqrt', ['ve']);
    n('xh', 'Div', ['d', 'sd']);
    n('sc', 'Mul', ['xh', 'gamma']);
    n('y', 'Add', ['sc', 'beta']);
    g.outputs = [{ name: 'y' }];
    const feeds = {
      x: init([2, 3, 4], () => rng.uniform() * 4 - 2),
      gamma: init([4], () => 0.5 + rng.uniform()),
      beta: init([4], () => rng.normal()),
    };
    const r = await gradCheck(g, { feeds, samples: 24, wrt: ['x', 'gamma', 'beta'] });
    assert.equal(r.entries.length, 3);
    assert.ok(r.worst < 2e-2, `opset ${opset}: ${JSON.stringify(r.entries)}`);
  }
});

test('Dropout in inference form is the identity (no training_mode, training_mode=false, opset 11)', async () => {
  await checkOp({ op: 'Dropout', inputs: [{ name: 'x', dims: [3, 4] }] });
  await checkOp({
    op: 'Dropout',
    wrt: ['x'],
    inputs: [
      { name: 'x', dims: [3, 4] },
      { name: 'ratio', constant: true, tensor: f32s(0.3) },
      { name: 'tm', constant: true, tensor: bool(false) },
    ],
  });
  await checkOp({ op: 'Dropout', opset: 11, attrs: { ratio: F(0.5) }, inputs: [{ name: 'x', dims: [6] }] });
});

test('Dropout in training mode with ratio 0 is the identity', () =>
  checkOp({
    op: 'Dropout',
    wrt: ['x'],
    inputs: [
      { name: 'x', dims: [3, 4] },
      { name: 'ratio', constant: true, tensor: f32s(0) },
      { name: 'tm', constant: true, tensor: bool(true) },
    ],
  }));

test('Dropout in training mode: the gradient is 0 where the mask is false and dy/(1 − ratio) elsewhere', async () => {
  for (const [ratio, dynamic] of [
    [0.5, false],
    [0.25, true],
  ] as const) {
    const inputs: InputSpec[] = [
      { name: 'x', dims: [64] },
      { name: 'ratio', constant: true, tensor: f32s(ratio) },
      { name: 'tm', constant: true, tensor: bool(true) },
    ];
    const { graph, feeds } = opGraph({ op: 'Dropout', inputs });
    if (dynamic) {
      // training_mode fed at run time
      graph.initializers.delete('tm');
      graph.inputs.push({ name: 'tm', dtype: 'bool', shape: [] });
      feeds['tm'] = bool(true);
    }
    const gg = await weightedSumGradGraph(graph, ['x'], feeds);
    const node = gg.graph.nodes.find((nd) => nd.opType === 'Dropout')!;
    const mask = node.outputs[1]!;
    assert.ok(mask, 'the rule asked for the mask output');
    gg.graph.outputs.push({ name: mask });
    const dx = gg.grads.get('x')!;
    const R = Float32Array.from({ length: 64 }, (_, i) => 1 + (i % 7));
    const s = await Session.fromGraph(gg.graph);
    const res = await s.run({ ...feeds, R: { dtype: 'float32', dims: [64], data: R } });
    await s.release();
    const m = res[mask]!.data as Uint8Array;
    const g = res[dx]!.data as Float32Array;
    const kept = m.reduce((a, v) => a + (v ? 1 : 0), 0);
    assert.ok(kept > 0 && kept < 64, `mask kept ${kept} of 64`);
    for (let i = 0; i < 64; i++)
      assert.ok(Math.abs(g[i]! - (m[i] ? R[i]! / (1 - ratio) : 0)) < 1e-5, `element ${i}: ${g[i]} with mask ${m[i]}`);
    // Dynamic training_mode=false gives the identity.
    if (dynamic) {
      const s2 = await Session.fromGraph(gg.graph);
      const res2 = await s2.run({ ...feeds, tm: bool(false), R: { dtype: 'float32', dims: [64], data: R } });
      await s2.release();
      assert.deepEqual(Array.from(res2[dx]!.data as Float32Array), Array.from(R));
    }
  }
});

test('BatchNormalization training_mode=1 with a dynamic batch gives the same gradients as with a static one', async () => {
  const dims = [3, 2, 2, 2];
  const { graph, feeds } = opGraph({
    op: 'BatchNormalization',
    opset: 15,
    outputs: 3,
    attrs: { training_mode: I(1) },
    inputs: bnInputs(dims),
  });
  graph.outputs = [{ name: 'y0' }];
  const R: Tensor = {
    dtype: 'float32',
    dims,
    data: Float32Array.from({ length: numel(dims) }, (_, i) => Math.sin(i + 1)),
  };
  const grads = async (dynamic: boolean) => {
    const g = graph.clone();
    const other: typeof feeds = { ...feeds };
    if (dynamic) {
      g.inputs = g.inputs.map((v) => (v.name === 'x' ? { ...v, shape: ['N', ...dims.slice(1)] } : v));
      const d5 = [5, ...dims.slice(1)];
      other['x'] = {
        dtype: 'float32',
        dims: d5,
        data: Float32Array.from({ length: numel(d5) }, (_, i) => Math.cos(i)),
      };
    }
    const gg = await weightedSumGradGraph(g, wrt, dynamic ? [feeds, other] : feeds);
    const s = await Session.fromGraph(gg.graph);
    const res = await s.run({ ...feeds, R });
    await s.release();
    return {
      sizeOp: gg.graph.nodes.some((n) => n.opType === 'Size'),
      values: wrt.map((w) => Array.from(res[gg.grads.get(w)!]!.data as Float32Array)),
    };
  };
  const [fixed, dyn] = [await grads(false), await grads(true)];
  assert.ok(dyn.sizeOp && !fixed.sizeOp, 'the dynamic graph counts elements at run time, the static one does not');
  fixed.values.forEach((v, i) =>
    v.forEach((a, j) =>
      assert.ok(Math.abs(a - dyn.values[i]![j]!) < 1e-5, `${wrt[i]}[${j}]: ${a} vs ${dyn.values[i]![j]}`),
    ),
  );
});

test('training-mode BatchNormalization with its running statistics fed and differentiated: the check does not let onnxruntime overwrite the fed buffers', async () => {
  const { graph, feeds } = opGraph({
    op: 'BatchNormalization',
    opset: 15,
    outputs: 3,
    attrs: { training_mode: I(1), momentum: F(0.8) },
    inputs: [
      { name: 'x', dims: [2, 3, 4], init: u },
      { name: 's', dims: [3], init: u },
      { name: 'b', dims: [3] },
      { name: 'mean', dims: [3] },
      { name: 'var', dims: [3], init: (r) => 0.5 + r.uniform() },
    ],
  });
  const before = Array.from(feeds['mean']!.data as Float32Array);
  for (const float64 of [false, true]) {
    const r = await gradCheck(graph, { feeds, samples: 12, float64 });
    assert.ok(r.passed, `float64=${float64}: ${JSON.stringify(r.entries)}`);
    assert.equal(r.entries.length, 5);
  }
  assert.deepEqual(Array.from(feeds['mean']!.data as Float32Array), before);
});
