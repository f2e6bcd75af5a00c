/**
 * Finite-difference checks of the rules for operators common in exported models that had none:
 * Resize, ReduceProd/L1/LogSum, CumSum, Trilu, TopK, trigonometric functions, Mod, PRelu, Selu, Celu,
 * Softsign, ThresholdedRelu, Einsum, GroupNormalization, SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkOp, opGraph, awayFromZero, positive, F, I, S, i64, f32c } from '../helpers/op-graph.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { parseEinsum } from '../../src/autodiff/rules/einsum.js';
import type { Rng } from '../../src/util/random.js';

const distinct = (r: Rng, i: number) => (i % 7) * 0.37 - 1 + r.uniform() * 0.05 + i * 0.011;
const unit = (r: Rng) => r.uniform() * 1.6 - 0.8;

for (const [mode, ctm] of [
  ['nearest', 'asymmetric'],
  ['nearest', 'half_pixel'],
  ['linear', 'half_pixel'],
  ['linear', 'align_corners'],
  ['linear', 'pytorch_half_pixel'],
  ['cubic', 'half_pixel'],
] as const) {
  test(`Resize ${mode} ${ctm}: up by scales, down by sizes`, async () => {
    const attrs = {
      mode: S(mode),
      coordinate_transformation_mode: S(ctm),
      ...(mode === 'nearest' ? { nearest_mode: S('floor') } : {}),
    };
    await checkOp({
      op: 'Resize',
      opset: 13,
      attrs,
      inputs: [
        { name: 'x', dims: [2, 3, 4, 5] },
        { name: 'roi', constant: true, tensor: f32c([]) },
        { name: 'scales', constant: true, tensor: f32c([1, 1, 2, 1.5]) },
      ],
    });
    await checkOp({
      op: 'Resize',
      opset: 13,
      attrs,
      inputs: [
        { name: 'x', dims: [1, 2, 6, 7] },
        { name: 'roi', constant: true, tensor: f32c([]) },
        { name: 'scales', constant: true, tensor: f32c([]) },
        { name: 'sizes', constant: true, tensor: i64([1, 2, 4, 3]) },
      ],
    });
  });
}
test('Resize with the axes attribute (opset 18) and antialiased linear downsampling', () =>
  checkOp({
    op: 'Resize',
    opset: 18,
    attrs: { mode: S('linear'), antialias: I(1), axes: { type: 'ints', value: [2, 3] } },
    inputs: [
      { name: 'x', dims: [1, 2, 8, 6] },
      { name: 'roi', constant: true, tensor: f32c([]) },
      { name: 'scales', constant: true, tensor: f32c([0.5, 0.75]) },
    ],
  }));
test('Resize at opset 10 (x, scales)', () =>
  checkOp({
    op: 'Resize',
    opset: 10,
    attrs: { mode: S('nearest') },
    inputs: [
      { name: 'x', dims: [1, 1, 3, 3] },
      { name: 'scales', constant: true, tensor: f32c([1, 1, 2, 2]) },
    ],
  }));

test('ReduceProd, with and without zero factors', async () => {
  await checkOp({
    op: 'ReduceProd',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [1] }, keepdims: I(0) },
    inputs: [{ name: 'x', dims: [3, 4], init: positive }],
  });
  await checkOp({
    op: 'ReduceProd',
    opset: 18,
    inputs: [
      { name: 'x', dims: [2, 3, 4], init: awayFromZero },
      { name: 'axes', constant: true, tensor: i64([0, 2]) },
    ],
  });
  // one exact zero in a row: only it gets a gradient there (offKinks off keeps the zero)
  const { graph, feeds } = opGraph({
    op: 'ReduceProd',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [1] } },
    inputs: [{ name: 'x', dims: [2, 3], init: positive }],
  });
  (feeds['x']!.data as Float32Array)[1] = 0;
  const r = await gradCheck(graph, { feeds, wrt: ['x'], float64: true, offKinks: false, eps: [1e-3, 1e-4] });
  assert.ok(r.passed, JSON.stringify(r.entries));
});
test('ReduceL1', () =>
  checkOp({
    op: 'ReduceL1',
    opset: 13,
    attrs: { axes: { type: 'ints', value: [0] } },
    inputs: [{ name: 'x', dims: [3, 4], init: awayFromZero }],
  }));
test('ReduceLogSum', () =>
  checkOp({
    op: 'ReduceLogSum',
    opset: 13,
    attrs: { keepdims: I(0) },
    inputs: [{ name: 'x', dims: [3, 4], init: positive }],
  }));

for (const [exclusive, reverse] of [
  [0, 0],
  [1, 0],
  [0, 1],
  [1, 1],
] as const)
  test(`CumSum exclusive=${exclusive} reverse=${reverse}`, () =>
    checkOp({
      op: 'CumSum',
      attrs: { exclusive: I(exclusive), reverse: I(reverse) },
      inputs: [
        { name: 'x', dims: [3, 5] },
        { name: 'axis', constant: true, tensor: i64([1], []) },
      ],
    }));
test('Trilu lower with k = -1, upper default', async () => {
  await checkOp({
    op: 'Trilu',
    attrs: { upper: I(0) },
    inputs: [
      { name: 'x', dims: [2, 4, 4] },
      { name: 'k', constant: true, tensor: i64([-1], []) },
    ],
  });
  await checkOp({ op: 'Trilu', inputs: [{ name: 'x', dims: [3, 5] }] });
});
test('TopK values (smallest, along axis 0)', () =>
  checkOp({
    op: 'TopK',
    outputs: 2,
    attrs: { axis: I(0), largest: I(0) },
    inputs: [
      { name: 'x', dims: [5, 3], init: distinct },
      { name: 'k', constant: true, tensor: i64([2]) },
    ],
  }));

test('Sin, Cos (rotary embeddings), Tan, Sinh, Cosh, Asin, Acos, Atan, Asinh, Acosh, Atanh', async () => {
  for (const op of ['Sin', 'Cos', 'Tan', 'Sinh', 'Cosh', 'Atan', 'Asinh'])
    await checkOp({ op, inputs: [{ name: 'x', dims: [8], init: unit }] });
  for (const op of ['Asin', 'Acos', 'Atanh']) await checkOp({ op, inputs: [{ name: 'x', dims: [8], init: unit }] });
  await checkOp({ op: 'Acosh', inputs: [{ name: 'x', dims: [8], init: (r) => 1.5 + r.uniform() }] });
});
test('Mod on floats (fmod=1), both operands', () =>
  checkOp({
    op: 'Mod',
    attrs: { fmod: I(1) },
    inputs: [
      { name: 'a', dims: [6], init: (r) => (r.uniform() - 0.5) * 10 + 0.3 },
      { name: 'b', dims: [6], init: (r) => 1.3 + r.uniform() },
    ],
  }));
test('PRelu with a per-channel slope', () =>
  checkOp({
    op: 'PRelu',
    inputs: [
      { name: 'x', dims: [2, 3, 4], init: awayFromZero },
      { name: 'slope', dims: [3, 1], init: (r) => 0.1 + r.uniform() * 0.3 },
    ],
  }));
test('Selu, Celu, Softsign, ThresholdedRelu', async () => {
  await checkOp({ op: 'Selu', inputs: [{ name: 'x', dims: [10], init: awayFromZero }] });
  await checkOp({
    op: 'Selu',
    attrs: { alpha: F(2), gamma: F(3) },
    inputs: [{ name: 'x', dims: [10], init: awayFromZero }],
  });
  await checkOp({ op: 'Celu', attrs: { alpha: F(2) }, inputs: [{ name: 'x', dims: [10], init: awayFromZero }] });
  await checkOp({ op: 'Softsign', inputs: [{ name: 'x', dims: [10] }] });
  await checkOp({
    op: 'ThresholdedRelu',
    attrs: { alpha: F(0.5) },
    inputs: [{ name: 'x', dims: [10], init: (r) => (r.uniform() < 0.5 ? 0.1 : 1) + r.uniform() * 0.3 }],
  });
});

test('Einsum equations parse with ellipses and implicit outputs', () => {
  assert.deepEqual(parseEinsum('...ij,...jk->...ik', [3, 3]), { ins: ['Aij', 'Ajk'], out: 'Aik' });
  assert.deepEqual(parseEinsum('ij,jk', [2, 2]), { ins: ['ij', 'jk'], out: 'ik' });
});
for (const [eq, dims] of [
  [
    'bqhd,bkhd->bhqk',
    [
      [2, 3, 2, 4],
      [2, 5, 2, 4],
    ],
  ],
  [
    'bhqk,bkhd->bqhd',
    [
      [2, 2, 3, 5],
      [2, 5, 2, 4],
    ],
  ],
  [
    'ij,jk->ik',
    [
      [3, 4],
      [4, 2],
    ],
  ],
  [
    '...ij,...jk->...ik',
    [
      [2, 3, 4],
      [2, 4, 5],
    ],
  ],
  ['ij->', [[3, 4]]],
  ['ij,j->i', [[3, 4], [4]]],
  [
    'bij,bjk',
    [
      [2, 3, 4],
      [2, 4, 2],
    ],
  ],
  ['ijk->ki', [[2, 3, 4]]],
] as const)
  test(`Einsum '${eq}'`, () =>
    checkOp({
      op: 'Einsum',
      attrs: { equation: S(eq) },
      inputs: dims.map((d, k) => ({ name: `x${k}`, dims: [...d] })),
    }));

for (const opset of [18, 21])
  test(`GroupNormalization (opset ${opset}: scale and bias per ${opset === 18 ? 'group' : 'channel'})`, () =>
    checkOp({
      op: 'GroupNormalization',
      opset,
      attrs: { num_groups: I(2), epsilon: F(1e-5) },
      inputs: [
        { name: 'x', dims: [2, 4, 3, 2], init: (r) => r.uniform() * 4 - 2 },
        { name: 'scale', dims: [opset === 18 ? 2 : 4], init: positive },
        { name: 'bias', dims: [opset === 18 ? 2 : 4] },
      ],
    }));

const labels = (v: number[], dims = [v.length]) => i64(v, dims);
for (const reduction of ['mean', 'sum', 'none'])
  for (const weighted of [false, true])
    for (const ignore of [false, true])
      test(`SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss: ${reduction}, ${weighted ? 'weighted' : 'unweighted'}${ignore ? ', ignore_index' : ''}`, async () => {
        const attrs = { reduction: S(reduction), ...(ignore ? { ignore_index: I(2) } : {}) };
        const lab = labels([0, 2, 1, 3, 2, 1], [3, 2]);
        const w = weighted ? [{ name: 'w', dims: [4], init: positive }] : [];
        await checkOp({
          op: 'SoftmaxCrossEntropyLoss',
          opset: 13,
          attrs,
          outputs: 2,
          inputs: [{ name: 'x', dims: [3, 4, 2] }, { name: 'labels', constant: true, tensor: lab }, ...w],
        });
        await checkOp({
          op: 'NegativeLogLikelihoodLoss',
          opset: 13,
          attrs,
          inputs: [{ name: 'x', dims: [3, 4, 2] }, { name: 'labels', constant: true, tensor: lab }, ...w],
        });
      });
