import { test } from 'node:test';
import type { Attr } from '../../src/graph/graph.js';
import { sameGradsWithDynamicBatch } from '../helpers/dynamic-batch.js';
import { checkOp, I, IS, S, type InputSpec } from '../helpers/op-graph.js';

/** A Conv case: x [N, C, ...sp], W [M, C/G, ...k], optional bias. */
function conv(x: number[], w: number[], attrs: Record<string, Attr> = {}, bias = false) {
  const inputs: InputSpec[] = [
    { name: 'x', dims: x },
    { name: 'w', dims: w },
  ];
  if (bias) inputs.push({ name: 'b', dims: [w[0]!] });
  return checkOp({ op: 'Conv', inputs, attrs });
}

/** A ConvTranspose case: x [N, C, ...sp], W [C, M/G, ...k]. */
function convT(x: number[], w: number[], attrs: Record<string, Attr> = {}, bias = 0) {
  const inputs: InputSpec[] = [
    { name: 'x', dims: x },
    { name: 'w', dims: w },
  ];
  if (bias) inputs.push({ name: 'b', dims: [bias] });
  return checkOp({ op: 'ConvTranspose', inputs, attrs });
}

test('Conv 2-D 3x3, bias', () => conv([2, 3, 5, 5], [4, 3, 3, 3], {}, true));
test('Conv 2-D pads 1, stride 1', () => conv([2, 2, 5, 4], [3, 2, 3, 3], { pads: IS([1, 1, 1, 1]) }));
test('Conv 2-D stride 2, asymmetric pads, remainder rows', () =>
  conv([3, 2, 8, 7], [3, 2, 3, 3], { strides: IS([2, 2]), pads: IS([1, 0, 0, 1]) }, true));
test('Conv 2-D stride 3 with rows the kernel never reaches', () =>
  conv([2, 2, 8, 9], [2, 2, 2, 2], { strides: IS([3, 3]) }));
test('Conv 2-D dilation 2, pads 2', () =>
  conv([2, 2, 7, 7], [3, 2, 3, 3], { dilations: IS([2, 2]), pads: IS([2, 2, 2, 2]) }));
test('Conv 2-D dilation and stride together', () =>
  conv([2, 2, 9, 8], [2, 2, 3, 2], { dilations: IS([2, 3]), strides: IS([2, 1]), pads: IS([1, 0, 2, 1]) }));
test('Conv 2-D rectangular kernel and strides', () =>
  conv([2, 3, 7, 6], [2, 3, 3, 1], { strides: IS([2, 1]), pads: IS([1, 0, 1, 0]) }));
test('Conv 2-D 1x1', () => conv([3, 4, 3, 3], [5, 4, 1, 1], {}, true));
test('Conv 2-D 1x1 on a plane larger than 784 (per-image GEMM path)', () =>
  conv([2, 3, 30, 30], [4, 3, 1, 1], {}, true));
test('Conv 2-D grouped (G=2)', () => conv([2, 4, 5, 5], [6, 2, 3, 3], { group: I(2), pads: IS([1, 1, 1, 1]) }, true));
test('Conv 2-D grouped (G=3) strided', () =>
  conv([2, 6, 7, 7], [3, 2, 3, 3], { group: I(3), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) }));
test('Conv 2-D depthwise', () => conv([2, 3, 6, 6], [3, 1, 3, 3], { group: I(3), pads: IS([1, 1, 1, 1]) }, true));
test('Conv 2-D depthwise stride 2', () =>
  conv([3, 4, 7, 7], [4, 1, 3, 3], { group: I(4), strides: IS([2, 2]), pads: IS([1, 1, 1, 1]) }));
test('Conv 2-D depthwise with channel multiplier 2, dilation', () =>
  conv([2, 3, 7, 7], [6, 1, 3, 3], { group: I(3), dilations: IS([2, 2]), pads: IS([2, 2, 2, 2]) }, true));
test('Conv 2-D auto_pad SAME_UPPER stride 2 (odd total pad)', () =>
  conv([2, 2, 6, 7], [3, 2, 3, 3], { auto_pad: S('SAME_UPPER'), strides: IS([2, 2]) }));
test('Conv 2-D auto_pad SAME_LOWER stride 2 (odd total pad)', () =>
  conv([2, 2, 6, 7], [3, 2, 3, 3], { auto_pad: S('SAME_LOWER'), strides: IS([2, 2]) }));
test('Conv 2-D auto_pad SAME_UPPER even kernel', () => conv([2, 2, 5, 5], [2, 2, 2, 2], { auto_pad: S('SAME_UPPER') }));
test('Conv 2-D auto_pad VALID stride 2', () =>
  conv([2, 2, 7, 6], [3, 2, 3, 3], { auto_pad: S('VALID'), strides: IS([2, 2]) }, true));
test('Conv 1-D', () => conv([2, 3, 9], [4, 3, 3], { pads: IS([1, 2]), strides: IS([2]) }, true));
test('Conv 1-D grouped, dilated', () => conv([3, 4, 11], [4, 2, 3], { group: I(2), dilations: IS([2]) }));
test('Conv 3-D', () =>
  conv([2, 2, 4, 5, 4], [3, 2, 2, 3, 2], { pads: IS([1, 1, 0, 0, 1, 1]), strides: IS([1, 2, 1]) }, true));
test('Conv 3-D depthwise strided', () =>
  conv([2, 2, 5, 5, 5], [2, 1, 3, 3, 3], { group: I(2), strides: IS([2, 2, 2]), pads: IS([1, 1, 1, 1, 1, 1]) }));
test('Conv at opset 9 (Slice/Pad as attributes)', () =>
  checkOp({
    op: 'Conv',
    opset: 9,
    inputs: [
      { name: 'x', dims: [2, 2, 8, 9] },
      { name: 'w', dims: [2, 2, 2, 2] },
    ],
    attrs: { strides: IS([3, 3]) },
  }));

test('ConvTranspose 2-D, bias', () => convT([2, 3, 4, 4], [3, 2, 3, 3], {}, 2));
test('ConvTranspose 2-D stride 2, pads', () =>
  convT([2, 2, 4, 3], [2, 3, 3, 3], { strides: IS([2, 2]), pads: IS([1, 0, 1, 1]) }, 3));
test('ConvTranspose 2-D stride 2, output_padding', () =>
  convT([2, 2, 3, 4], [2, 2, 3, 3], { strides: IS([2, 2]), pads: IS([1, 1, 1, 1]), output_padding: IS([1, 0]) }));
test('ConvTranspose 2-D dilation', () =>
  convT([2, 2, 4, 4], [2, 2, 3, 2], { dilations: IS([2, 2]), strides: IS([1, 2]) }));
test('ConvTranspose 2-D grouped', () =>
  convT([2, 4, 3, 3], [4, 3, 3, 3], { group: I(2), strides: IS([2, 2]), pads: IS([1, 1, 0, 0]) }, 6));
test('ConvTranspose 2-D depthwise', () => convT([2, 3, 4, 4], [3, 1, 3, 3], { group: I(3), strides: IS([2, 2]) }));
test('ConvTranspose 2-D output_shape', () =>
  convT([2, 2, 3, 3], [2, 2, 4, 4], { strides: IS([3, 3]), output_shape: IS([9, 10]) }));
test('ConvTranspose 2-D SAME_UPPER', () =>
  convT([2, 2, 3, 4], [2, 2, 3, 3], { strides: IS([2, 2]), auto_pad: S('SAME_UPPER') }));
test('ConvTranspose 2-D SAME_LOWER', () =>
  convT([2, 2, 3, 4], [2, 2, 3, 3], { strides: IS([2, 2]), auto_pad: S('SAME_LOWER') }));
test('ConvTranspose 2-D VALID', () => convT([2, 2, 3, 3], [2, 2, 3, 3], { strides: IS([2, 2]), auto_pad: S('VALID') }));
test('ConvTranspose 1-D', () => convT([3, 2, 5], [2, 3, 4], { strides: IS([3]), pads: IS([1, 2]) }, 3));
test('ConvTranspose 3-D', () =>
  convT([2, 2, 3, 3, 2], [2, 2, 2, 2, 3], { strides: IS([2, 1, 2]), pads: IS([0, 1, 1, 1, 0, 0]) }));

test('Conv 2-D with 16 input channels (im2col weight gradient), stride 2, asymmetric pads', () =>
  conv([2, 16, 6, 7], [3, 16, 3, 3], { strides: IS([2, 2]), pads: IS([1, 0, 0, 1]) }, true));
test('Conv 2-D with 16 input channels (im2col), dilation 2', () =>
  conv([3, 16, 7, 6], [2, 16, 3, 2], { dilations: IS([2, 2]), pads: IS([1, 1, 2, 0]) }));
test('Conv 2-D 1x1 stride 2 with 16 channels (im2col of a strided 1x1)', () =>
  conv([2, 16, 5, 5], [4, 16, 1, 1], { strides: IS([2, 2]) }));
test('Conv 1-D with 16 channels (im2col)', () => conv([2, 16, 9], [3, 16, 3], { strides: IS([2]), pads: IS([1, 1]) }));
test('ConvTranspose 2-D with 16 output channels (im2col weight gradient)', () =>
  convT([2, 3, 3, 4], [3, 16, 3, 3], { strides: IS([2, 2]), pads: IS([1, 0, 1, 1]) }));
test('ConvTranspose 2-D 1x1', () => convT([2, 5, 3, 3], [5, 4, 1, 1], {}, 4));

test('Conv at opset 9 with 16 channels (im2col, flipped kernel, attribute Pad/Slice)', () =>
  checkOp({
    op: 'Conv',
    opset: 9,
    inputs: [
      { name: 'x', dims: [2, 16, 5, 6] },
      { name: 'w', dims: [3, 16, 3, 3] },
    ],
    attrs: { pads: IS([1, 0, 2, 1]) },
  }));
test('ConvTranspose at opset 9', () =>
  checkOp({
    op: 'ConvTranspose',
    opset: 9,
    inputs: [
      { name: 'x', dims: [2, 2, 3, 3] },
      { name: 'w', dims: [2, 3, 3, 3] },
    ],
    attrs: { strides: IS([2, 2]), pads: IS([1, 1, 0, 0]), output_padding: IS([1, 1]) },
  }));

test('Conv with a dynamic batch: grouped', () =>
  sameGradsWithDynamicBatch(
    'Conv',
    [4, 5, 5],
    [
      ['w', [6, 2, 3, 3]],
      ['b', [6]],
    ],
    { group: I(2), pads: IS([1, 1, 1, 1]), strides: IS([2, 1]) },
  ));
test('Conv with a dynamic batch: depthwise with multiplier (grouped correlation)', () =>
  sameGradsWithDynamicBatch('Conv', [3, 6, 6], [['w', [6, 1, 3, 3]]], {
    group: I(3),
    pads: IS([1, 1, 1, 1]),
    strides: IS([2, 2]),
  }));
test('Conv with a dynamic batch: im2col and flipped-kernel paths', () =>
  sameGradsWithDynamicBatch('Conv', [16, 5, 5], [['w', [3, 16, 3, 3]]], { pads: IS([1, 1, 1, 1]) }));
test('Conv with a dynamic batch: 1x1', () => sameGradsWithDynamicBatch('Conv', [6, 4, 4], [['w', [5, 6, 1, 1]]], {}));
test('ConvTranspose with a dynamic batch', () =>
  sameGradsWithDynamicBatch('ConvTranspose', [4, 3, 3], [['w', [4, 3, 3, 3]]], {
    group: I(2),
    strides: IS([2, 2]),
    pads: IS([1, 1, 0, 0]),
  }));

test('Conv 2-D depthwise 30x29, 3x5 kernel, dilation, asymmetric pads', () =>
  conv([2, 2, 30, 29], [2, 1, 3, 5], { group: I(2), dilations: IS([2, 1]), pads: IS([2, 0, 1, 3]) }));
