import { test } from 'node:test';
import type { Attr } from '../../src/graph/graph.js';
import { sameGradsWithDynamicBatch } from '../helpers/dynamic-batch.js';
import { Rng } from '../../src/util/random.js';
import { checkOp, I, IS, S } from '../helpers/op-graph.js';

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
const avgPool = (dims: number[], attrs: Record<string, Attr>, opset = 17) =>
  checkOp({ op: 'AveragePool', opset, inputs: [{ name: 'x', dims }], attrs });

for (const opset of [17, 11]) {
  const tag = opset >= 16 ? 'scatter-add' : 'one-hot ConvTranspose';
  test(`MaxPool 2x2 stride 2 (${tag})`, () =>
    maxPool([2, 2, 5, 5], { kernel_shape: IS([2, 2]), strides: IS([2, 2]) }, opset));
  test(`MaxPool 3x3 stride 2 pad 1, overlapping (${tag})`, () =>
    maxPool([2, 1, 7, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) }, opset));
  test(`MaxPool 3x3 stride 1 pad 1, heavy overlap (${tag})`, () =>
    maxPool([3, 1, 5, 6], { kernel_shape: IS([3, 3]), pads: IS([1, 1, 1, 1]) }, opset));
  test(`MaxPool asymmetric pads and kernel (${tag})`, () =>
    maxPool([2, 2, 5, 4], { kernel_shape: IS([2, 3]), strides: IS([1, 2]), pads: IS([0, 1, 1, 0]) }, opset));
  test(`MaxPool dilation 2 (${tag})`, () =>
    maxPool([2, 1, 7, 7], { kernel_shape: IS([2, 2]), dilations: IS([2, 2]), strides: IS([2, 1]) }, opset));
  test(`MaxPool ceil_mode (${tag})`, () =>
    maxPool([2, 1, 6, 8], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), ceil_mode: I(1) }, opset));
  test(`MaxPool ceil_mode with pads (${tag})`, () =>
    maxPool(
      [2, 1, 7, 7],
      { kernel_shape: IS([3, 2]), strides: IS([2, 2]), pads: IS([1, 0, 1, 1]), ceil_mode: I(1) },
      opset,
    ));
  test(`MaxPool SAME_UPPER (${tag})`, () =>
    maxPool([2, 1, 6, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('SAME_UPPER') }, opset));
  test(`MaxPool SAME_LOWER (${tag})`, () =>
    maxPool([2, 1, 6, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('SAME_LOWER') }, opset));
  test(`MaxPool VALID (${tag})`, () =>
    maxPool([2, 1, 7, 7], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('VALID') }, opset));
  test(`MaxPool storage_order 1 (${tag})`, () =>
    maxPool(
      [2, 1, 6, 5],
      { kernel_shape: IS([3, 2]), strides: IS([1, 2]), pads: IS([1, 0, 1, 1]), storage_order: I(1) },
      opset,
    ));
  test(`MaxPool 1-D (${tag})`, () =>
    maxPool([3, 2, 9], { kernel_shape: IS([3]), strides: IS([2]), pads: IS([1, 1]) }, opset));
  test(`MaxPool 3-D (${tag})`, () =>
    maxPool(
      [1, 2, 4, 4, 3],
      { kernel_shape: IS([2, 2, 2]), strides: IS([1, 2, 1]), pads: IS([0, 1, 0, 1, 0, 1]) },
      opset,
    ));
}
test('MaxPool at opset 8 (first with Indices)', () =>
  maxPool([2, 1, 6, 6], { kernel_shape: IS([3, 3]), strides: IS([2, 2]) }, 8));

for (const cip of [0, 1]) {
  const tag = `count_include_pad=${cip}`;
  const A = (a: Record<string, Attr>) => ({ ...a, count_include_pad: I(cip) });
  test(`AveragePool 3x3 stride 2 pad 1 (${tag})`, () =>
    avgPool([2, 2, 7, 7], A({ kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) })));
  test(`AveragePool asymmetric pads, stride 1 (${tag})`, () =>
    avgPool([3, 2, 5, 6], A({ kernel_shape: IS([3, 2]), pads: IS([1, 0, 2, 1]) })));
  test(`AveragePool ceil_mode with pads (${tag})`, () =>
    avgPool(
      [2, 2, 6, 7],
      A({ kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 0]), ceil_mode: I(1) }),
    ));
  test(`AveragePool SAME_UPPER (${tag})`, () =>
    avgPool([2, 2, 6, 7], A({ kernel_shape: IS([3, 3]), strides: IS([2, 2]), auto_pad: S('SAME_UPPER') })));
  test(`AveragePool SAME_LOWER (${tag})`, () =>
    avgPool([2, 2, 6, 7], A({ kernel_shape: IS([3, 2]), strides: IS([2, 2]), auto_pad: S('SAME_LOWER') })));
  test(`AveragePool dilations (opset 19, ${tag})`, () =>
    avgPool(
      [2, 1, 8, 8],
      A({ kernel_shape: IS([2, 3]), dilations: IS([2, 2]), strides: IS([2, 1]), pads: IS([1, 1, 1, 1]) }),
      19,
    ));
  test(`AveragePool 1-D (${tag})`, () =>
    avgPool([3, 2, 9], A({ kernel_shape: IS([3]), strides: IS([2]), pads: IS([1, 1]) })));
  test(`AveragePool 3-D (${tag})`, () =>
    avgPool([2, 2, 4, 5, 4], A({ kernel_shape: IS([2, 3, 2]), strides: IS([2, 1, 2]), pads: IS([1, 1, 0, 0, 1, 1]) })));
}
test('AveragePool 2x2 stride 2', () => avgPool([2, 3, 6, 6], { kernel_shape: IS([2, 2]), strides: IS([2, 2]) }));
test('AveragePool VALID, rows left over', () =>
  avgPool([2, 2, 7, 8], { kernel_shape: IS([3, 3]), strides: IS([3, 3]), auto_pad: S('VALID') }));
test('AveragePool ceil_mode without pads', () =>
  avgPool([2, 2, 6, 6], { kernel_shape: IS([3, 3]), strides: IS([2, 2]), ceil_mode: I(1) }));
test('AveragePool at opset 9 (attribute Slice/Pad)', () =>
  avgPool([2, 2, 8, 8], { kernel_shape: IS([2, 2]), strides: IS([3, 3]) }, 9));

test('GlobalAveragePool 2-D', () => checkOp({ op: 'GlobalAveragePool', inputs: [{ name: 'x', dims: [2, 3, 4, 5] }] }));
test('GlobalAveragePool 1-D', () => checkOp({ op: 'GlobalAveragePool', inputs: [{ name: 'x', dims: [3, 2, 5] }] }));
test('GlobalAveragePool 3-D', () =>
  checkOp({ op: 'GlobalAveragePool', inputs: [{ name: 'x', dims: [2, 2, 3, 2, 4] }] }));
test('GlobalMaxPool 2-D', () =>
  checkOp({ op: 'GlobalMaxPool', inputs: [{ name: 'x', dims: [2, 3, 4, 4], init: distinct(96) }] }));
test('GlobalMaxPool 1-D', () =>
  checkOp({ op: 'GlobalMaxPool', inputs: [{ name: 'x', dims: [3, 2, 7], init: distinct(42) }] }));

const mp = { kernel_shape: IS([3, 3]), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) };
test('MaxPool with a dynamic batch (scatter-add)', () => sameGradsWithDynamicBatch('MaxPool', [2, 7, 7], [], mp));
test('MaxPool with a dynamic batch (one-hot ConvTranspose, opset 11)', () =>
  sameGradsWithDynamicBatch('MaxPool', [2, 7, 7], [], mp, 11));
test('MaxPool with a dynamic batch (storage_order 1)', () =>
  sameGradsWithDynamicBatch('MaxPool', [2, 7, 7], [], { ...mp, storage_order: I(1) }));
test('AveragePool with a dynamic batch', () =>
  sameGradsWithDynamicBatch('AveragePool', [2, 7, 7], [], { ...mp, count_include_pad: I(1) }));
test('GlobalAveragePool with a dynamic batch', () => sameGradsWithDynamicBatch('GlobalAveragePool', [3, 4, 4], [], {}));
test('GlobalMaxPool with a dynamic batch', () => sameGradsWithDynamicBatch('GlobalMaxPool', [3, 4, 4], [], {}));
test('GlobalAveragePool with dynamic spatial sizes', () =>
  sameGradsWithDynamicBatch('GlobalAveragePool', [3, 'N', 4], [], {}));
