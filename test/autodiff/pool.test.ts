import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkOp, I, IS, S } from '../helpers/op-graph.js';
import { Graph, type Attr } from '../../src/graph/graph.js';
import { weightedSumGradGraph } from '../../src/autodiff/grad-graph.js';
import { Session, type Feeds } from '../../src/runtime/session.js';
import { numel, type Tensor } from '../../src/graph/tensor.js';
import { Rng } from '../../src/util/random.js';

/**
 * Distinct inputs in [-1, 1] in shuffled order, spaced 2/n apart: with at most ~100 elements the gap
 * between a window's maximum and its runner-up exceeds the finite-difference step (0.01).
 */
function distinct(n: number, seed = 5): (rng: Rng, i: number) => number {
  const r = new Rng(seed);
  const v = Array.from({ length: n }, (_, i) => -1 + (2 * i) / (n - 1));
  for (let i = n - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return (_rng, i) => v[i]!;
}

function maxPool(dims: number[], attrs: Record<string, Attr>, opset = 17) {
  const n = dims.reduce((p, q) => p * q, 1);
  return checkOp({ op: 'MaxPool', opset, inputs: [{ name: 'x', dims, init: distinct(n) }], attrs });
}
const avgPool = (dims: number[], attrs: Record<string, Attr>, opset = 17) => checkOp({ op: 'AveragePool', opset, inputs: [{ name: 'x', dims }], attrs });

for (const opset of [17, 11]) {
  const tag = opset >= 16 ? 'scatter-add' : 'one-hot ConvTranspose';
  test(`MaxPool 2x2 stride 2 (${tag})`, () => maxPool([2, 2, 5, 5], { kernel_shape: IS([2, 2]), strides: IS([2, 2]) }, opset));
  test(`MaxPool 3x3 stride 2 pad 1, overlapping (${tag})`, () => maxPool([2, 1, 7, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) }, opset));
  test(`MaxPool 3x3 stride 1 pad 1, heavy overlap (${tag})`, () => maxPool([3, 1, 5, 6], { kernel_shape: IS([3, 3]), pads: IS([1, 1, 1, 1]) }, opset));
  test(`MaxPool asymmetric pads and kernel (${tag})`, () => maxPool([2, 2, 5, 4], { kernel_shape: IS([2, 3]), strides: IS([1, 2]), pads: IS([0, 1, 1, 0]) }, opset));
  test(`MaxPool dilation 2 (${tag})`, () => maxPool([2, 1, 7, 7], { kernel_shape: IS([2, 2]), dilations: IS([2, 2]), strides: IS([2, 1]) }, opset));
  test(`MaxPool ceil_mode (${tag})`, () => maxPool([2, 1, 6, 8], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), ceil_mode: I(1) }, opset));
  test(`MaxPool ceil_mode with pads (${tag})`, () => maxPool([2, 1, 7, 7], { kernel_shape: IS([3, 2]), strides: IS([2, 2]), pads: IS([1, 0, 1, 1]), ceil_mode: I(1) }, opset));
  test(`MaxPool SAME_UPPER (${tag})`, () => maxPool([2, 1, 6, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('SAME_UPPER') }, opset));
  test(`MaxPool SAME_LOWER (${tag})`, () => maxPool([2, 1, 6, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('SAME_LOWER') }, opset));
  test(`MaxPool VALID (${tag})`, () => maxPool([2, 1, 7, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('VALID') }, opset));
  test(`MaxPool storage_order 1 (${tag})`, () => maxPool([2, 1, 6, 5], { kernel_shape: IS([3, 2]), strides: IS([1, 2]), pads: IS([1, 0, 1, 1]), storage_order: I(1) }, opset));
  test(`MaxPool 1-D (${tag})`, () => maxPool([3, 2, 9], { kernel_shape: IS([3]), strides: IS([2]), pads: IS([1, 1]) }, opset));
  test(`MaxPool 3-D (${tag})`, () => maxPool([1, 2, 4, 4, 3], { kernel_shape: IS([2, 2, 2]), strides: IS([1, 2, 1]), pads: IS([0, 1, 0, 1, 0, 1]) }, opset));
}
test('MaxPool at opset 8 (first with Indices)', () => maxPool([2, 1, 6, 6], { kernel_shape: IS([3, 3]), strides: IS([2, 2]) }, 8));

for (const cip of [0, 1]) {
  const tag = `count_include_pad=${cip}`;
  const A = (a: Record<string, Attr>) => ({ ...a, count_include_pad: I(cip) });
  test(`AveragePool 3x3 stride 2 pad 1 (${tag})`, () => avgPool([2, 2, 7, 7], A({ kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) })));
  test(`AveragePool asymmetric pads, stride 1 (${tag})`, () => avgPool([3, 2, 5, 6], A({ kernel_shape: IS([3, 2]), pads: IS([1, 0, 2, 1]) })));
  test(`AveragePool ceil_mode with pads (${tag})`, () => avgPool([2, 2, 6, 7], A({ kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 0]), ceil_mode: I(1) })));
  test(`AveragePool SAME_UPPER (${tag})`, () => avgPool([2, 2, 6, 7], A({ kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('SAME_UPPER') })));
  test(`AveragePool SAME_LOWER (${tag})`, () => avgPool([2, 2, 6, 7], A({ kernel_shape: IS([3, 2]), strides: IS([2, 2]), auto_pad: S('SAME_LOWER') })));
  test(`AveragePool dilations (opset 19, ${tag})`, () => avgPool([2, 1, 8, 8], A({ kernel_shape: IS([2, 3]), dilations: IS([2, 2]), strides: IS([2, 1]), pads: IS([1, 1, 1, 1]) }), 19));
  test(`AveragePool 1-D (${tag})`, () => avgPool([3, 2, 9], A({ kernel_shape: IS([3]), strides: IS([2]), pads: IS([1, 1]) })));
  test(`AveragePool 3-D (${tag})`, () => avgPool([2, 2, 4, 5, 4], A({ kernel_shape: IS([2, 3, 2]), strides: IS([2, 1, 2]), pads: IS([1, 1, 0, 0, 1, 1]) })));
}
test('AveragePool 2x2 stride 2', () => avgPool([2, 3, 6, 6], { kernel_shape: IS([2, 2]), strides: IS([2, 2]) }));
test('AveragePool VALID, rows left over', () => avgPool([2, 2, 7, 8], { kernel_shape: IS([3, 3]), strides: IS([3, 3]), auto_pad: S('VALID') }));
test('AveragePool ceil_mode without pads', () => avgPool([2, 2, 6, 6], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), ceil_mode: I(1) }));
test('AveragePool at opset 9 (attribute Slice/Pad)', () => avgPool([2, 2, 8, 8], { kernel_shape: IS([2, 2]), strides: IS([3, 3]) }, 9));

test('GlobalAveragePool 2-D', () => checkOp({ op: 'GlobalAveragePool', inputs: [{ name: 'x', dims: [2, 3, 4, 5] }] }));
test('GlobalAveragePool 1-D', () => checkOp({ op: 'GlobalAveragePool', inputs: [{ name: 'x', dims: [3, 2, 5] }] }));
test('GlobalAveragePool 3-D', () => checkOp({ op: 'GlobalAveragePool', inputs: [{ name: 'x', dims: [2, 2, 3, 2, 4] }] }));
test('GlobalMaxPool 2-D', () => checkOp({ op: 'GlobalMaxPool', inputs: [{ name: 'x', dims: [2, 3, 4, 4], init: distinct(96) }] }));
test('GlobalMaxPool 1-D', () => checkOp({ op: 'GlobalMaxPool', inputs: [{ name: 'x', dims: [3, 2, 7], init: distinct(42) }] }));

/**
 * Build the gradient graph once with a symbolic batch (shapes probed at batch 2 and 3, so the rules see
 * N = null and must emit batch-agnostic Reshapes) and once at a fixed batch of 2; both must give the
 * same gradients at batch 2, and the dynamic one must also run at batch 3.
 */
async function sameGradsWithDynamicBatch(op: string, xRest: (number | 'N')[], params: [string, number[]][], attrs: Record<string, Attr>, opset = 17): Promise<void> {
  const rng = new Rng(11);
  const rand = (dims: number[]): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from({ length: numel(dims) }, () => rng.normal()) });
  const g = new Graph();
  g.opsets = { '': opset };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['N', ...xRest] });
  for (const [name, dims] of params) g.initializers.set(name, rand(dims));
  g.nodes.push({ name: 'n', opType: op, domain: '', inputs: ['x', ...params.map(([p]) => p)], outputs: ['y'], attrs });
  g.outputs.push({ name: 'y' });
  const wrt = ['x', ...params.map(([p]) => p)];
  const xAt = (n: number) => [n, ...xRest.map((d) => (d === 'N' ? n : d))];
  const [f2, f3] = [{ x: rand(xAt(2)) }, { x: rand(xAt(3)) }];
  const dyn = await weightedSumGradGraph(g, wrt, [f2, f3]);
  const fix = await weightedSumGradGraph(g, wrt, f2);
  assert.equal(dyn.shapes.get('x')!.dims[0], null, 'the batch should be dynamic');
  const run = async (gg: typeof dyn, feeds: Feeds) => {
    const s = await Session.fromGraph(gg.graph);
    const out = await s.run(feeds);
    await s.release();
    return wrt.map((w) => out[gg.grads.get(w)!]!);
  };
  const base: Feeds = { ...f2, ...Object.fromEntries(params.map(([p]) => [p, g.initializers.get(p)!])), R: rand(fix.shapes.get('R')!.dims as number[]) };
  const [a, b] = [await run(dyn, base), await run(fix, base)];
  wrt.forEach((w, i) => {
    const [da, db] = [a[i]!.data as Float32Array, b[i]!.data as Float32Array];
    assert.deepEqual(a[i]!.dims, b[i]!.dims, w);
    const scale = Math.max(...Array.from(db, Math.abs));
    for (let k = 0; k < da.length; k++) assert.ok(Math.abs(da[k]! - db[k]!) <= 1e-4 * scale, `${w}[${k}]: ${da[k]} vs ${db[k]}`);
  });
  const r3 = rand((await weightedSumGradGraph(g, wrt, f3)).shapes.get('R')!.dims as number[]);
  const at3 = await run(dyn, { ...base, ...f3, R: r3 });
  assert.equal(at3[0]!.dims[0], 3);
}

const mp = { kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) };
test('MaxPool with a dynamic batch (scatter-add)', () => sameGradsWithDynamicBatch('MaxPool', [2, 7, 7], [], mp));
test('MaxPool with a dynamic batch (one-hot ConvTranspose, opset 11)', () => sameGradsWithDynamicBatch('MaxPool', [2, 7, 7], [], mp, 11));
test('MaxPool with a dynamic batch (storage_order 1)', () => sameGradsWithDynamicBatch('MaxPool', [2, 7, 7], [], { ...mp, storage_order: I(1) }));
test('AveragePool with a dynamic batch', () => sameGradsWithDynamicBatch('AveragePool', [2, 7, 7], [], { ...mp, count_include_pad: I(1) }));
test('GlobalAveragePool with a dynamic batch', () => sameGradsWithDynamicBatch('GlobalAveragePool', [3, 4, 4], [], {}));
test('GlobalMaxPool with a dynamic batch', () => sameGradsWithDynamicBatch('GlobalMaxPool', [3, 4, 4], [], {}));
test('GlobalAveragePool with dynamic spatial sizes', () => sameGradsWithDynamicBatch('GlobalAveragePool', [3, 'N', 4], [], {}));
