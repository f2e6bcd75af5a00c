import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkOp, opGraph, i64, f32c, I, IS, S, type OpCase } from '../helpers/op-graph.js';
import { Graph, type Dim } from '../../src/graph/graph.js';
import { type Tensor, numel } from '../../src/graph/tensor.js';
import { gradCheck, weightedSumGradGraph } from '../../src/autodiff/grad-graph.js';
import { Session, type Feeds } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';

const MAX = 9223372036854775807n;
const bigI64 = (values: bigint[]): Tensor => ({
  dtype: 'int64',
  dims: [values.length],
  data: BigInt64Array.from(values),
});
const boolT = (values: number[], dims: number[]): Tensor => ({ dtype: 'bool', dims, data: Uint8Array.from(values) });
const c = (name: string, tensor: Tensor) => ({ name, constant: true as const, tensor });
const randn = (dims: number[], seed: number): Tensor => {
  const rng = new Rng(seed);
  return { dtype: 'float32', dims, data: Float32Array.from({ length: numel(dims) }, () => rng.normal()) };
};

const pick = (f: Feeds, names: string[]): Feeds => Object.fromEntries(names.map((n) => [n, f[n]!]));

/** Finite-difference check of a one-op graph where only some outputs reach the loss. */
async function checkOutputs(op: OpCase, outputs: string[]): Promise<void> {
  const { graph, feeds } = opGraph(op);
  graph.outputs = outputs.map((name) => ({ name }));
  const r = await gradCheck(graph, { feeds, samples: 24 });
  assert.ok(r.entries.length > 0 && r.worst < 2e-2, JSON.stringify(r.entries));
}

/**
 * The rule with dynamic input dims (shapes probed at two sizes) must give the same gradient as with fixed
 * dims. The loss Σ y·Rin is built in, with Rin a graph input of y's (symbolic) shape.
 */
async function checkDynamic(
  op: OpCase,
  sym: Record<string, Dim[]>,
  yDims: Dim[],
  bigger: Record<string, number[]>,
): Promise<void> {
  const { graph, feeds } = opGraph(op);
  graph.inputs.push({ name: 'Rin', dtype: 'float32', shape: yDims });
  graph.nodes.push({ name: 'm', opType: 'Mul', domain: '', inputs: ['y0', 'Rin'], outputs: ['m'], attrs: {} });
  graph.nodes.push({
    name: 'L',
    opType: 'ReduceSum',
    domain: '',
    inputs: ['m'],
    outputs: ['L'],
    attrs: { keepdims: I(0) },
  });
  graph.outputs = [{ name: 'L' }];
  const fwdGraph = opGraph(op).graph;
  for (const v of fwdGraph.inputs) if (sym[v.name]) v.shape = sym[v.name];
  const fwd = await Session.fromGraph(fwdGraph);
  const wrt = op.inputs.filter((i) => !i.constant).map((i) => i.name);
  const large: Feeds = { ...feeds };
  for (const [k, dims] of Object.entries(bigger)) large[k] = randn(dims, 5);
  const yDimsOf = async (f: Feeds) => (await fwd.run(pick(f, wrt)))['y0']!.dims;
  const small: Feeds = { ...feeds, Rin: randn(await yDimsOf(feeds), 11) };
  large['Rin'] = randn(await yDimsOf(large), 12);
  await fwd.release();
  const dyn = graph.clone();
  for (const v of dyn.inputs) if (sym[v.name]) v.shape = sym[v.name];
  const run = async (g: Graph, grads: Map<string, string | null>) => {
    const s = await Session.fromGraph(g);
    const res = await s.run({ ...small, R: { dtype: 'float32', dims: [], data: Float32Array.from([1]) } });
    await s.release();
    return wrt.map((w) => Array.from(res[grads.get(w)!]!.data as Float32Array));
  };
  const st = await weightedSumGradGraph(graph, wrt, small);
  const dy = await weightedSumGradGraph(dyn, wrt, [small, large]);
  assert.ok(
    wrt.some((w) => dy.shapes.get(w)!.dims.includes(null)),
    'an input should have a dynamic dimension',
  );
  const [a, b] = [await run(st.graph, st.grads), await run(dy.graph, dy.grads)];
  a.forEach((ga, k) =>
    ga.forEach((v, i) => assert.ok(Math.abs(v - b[k]![i]!) < 1e-5, `${wrt[k]}[${i}]: ${v} vs ${b[k]![i]}`)),
  );
  assert.ok(a.flat().some((v) => v !== 0));
}

test('Identity', () => checkOp({ op: 'Identity', inputs: [{ name: 'x', dims: [2, 3] }] }));

test('Cast / CastLike float32 → float64 → float32 carry the gradient back in each type', async () => {
  for (const like of [false, true]) {
    const g = new Graph();
    g.name = 'casts';
    g.inputs.push({ name: 'x', dtype: 'float32', shape: [2, 3] });
    g.initializers.set('dbl', { dtype: 'float64', dims: [], data: Float64Array.from([0]) });
    g.nodes.push(
      like
        ? { name: 'c1', opType: 'CastLike', domain: '', inputs: ['x', 'dbl'], outputs: ['xd'], attrs: {} }
        : { name: 'c1', opType: 'Cast', domain: '', inputs: ['x'], outputs: ['xd'], attrs: { to: I(11) } },
    );
    g.nodes.push({ name: 'e', opType: 'Exp', domain: '', inputs: ['xd'], outputs: ['ed'], attrs: {} });
    g.nodes.push({ name: 'c2', opType: 'Cast', domain: '', inputs: ['ed'], outputs: ['y'], attrs: { to: I(1) } });
    g.outputs = [{ name: 'y' }];
    // Exp's rule multiplies by y (float64) so the cast back to float64 of dy must have happened.
    const r = await gradCheck(g, { feeds: { x: randn([2, 3], 3) }, wrt: ['x'] });
    assert.ok(r.worst < 2e-2, JSON.stringify(r.entries));
  }
});

test('Flatten (axis 2 and negative axis)', async () => {
  await checkOp({ op: 'Flatten', attrs: { axis: I(2) }, inputs: [{ name: 'x', dims: [2, 3, 2, 2] }] });
  await checkOp({ op: 'Flatten', attrs: { axis: I(-1) }, inputs: [{ name: 'x', dims: [2, 3, 4] }] });
});
test('Reshape with -1 and 0', () =>
  checkOp({ op: 'Reshape', inputs: [{ name: 'x', dims: [2, 3, 4] }, c('s', i64([0, -1, 2]))] }));
test('Squeeze (opset 13 axes input, negative axis; opset 11 attribute; all unit axes)', async () => {
  await checkOp({ op: 'Squeeze', inputs: [{ name: 'x', dims: [2, 1, 3, 1] }, c('axes', i64([-1]))] });
  await checkOp({ op: 'Squeeze', opset: 11, attrs: { axes: IS([1]) }, inputs: [{ name: 'x', dims: [2, 1, 3] }] });
  await checkOp({ op: 'Squeeze', inputs: [{ name: 'x', dims: [1, 3, 1] }] });
});
test('Unsqueeze (opset 13 axes input with negative axes; opset 11 attribute)', async () => {
  await checkOp({ op: 'Unsqueeze', inputs: [{ name: 'x', dims: [2, 3] }, c('axes', i64([0, -1]))] });
  await checkOp({ op: 'Unsqueeze', opset: 11, attrs: { axes: IS([1]) }, inputs: [{ name: 'x', dims: [2, 3] }] });
});
test('Transpose (given and default perm)', async () => {
  await checkOp({ op: 'Transpose', attrs: { perm: IS([1, 2, 0]) }, inputs: [{ name: 'x', dims: [2, 3, 4] }] });
  await checkOp({ op: 'Transpose', inputs: [{ name: 'x', dims: [2, 3, 4] }] });
});
test('Expand (broadcast and new leading axes)', async () => {
  await checkOp({ op: 'Expand', inputs: [{ name: 'x', dims: [3, 1] }, c('s', i64([2, 3, 4]))] });
  await checkOp({ op: 'Expand', inputs: [{ name: 'x', dims: [1, 4] }, c('s', i64([3, 1]))] });
});

test('Concat of three along axis 1 and along a negative axis', async () => {
  await checkOp({
    op: 'Concat',
    attrs: { axis: I(1) },
    inputs: [
      { name: 'a', dims: [2, 1, 3] },
      { name: 'b', dims: [2, 4, 3] },
      { name: 'c', dims: [2, 2, 3] },
    ],
  });
  await checkOp({
    op: 'Concat',
    attrs: { axis: I(-1) },
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [2, 2] },
    ],
  });
});
test('Concat with only the middle input differentiated', () =>
  checkOp({
    op: 'Concat',
    attrs: { axis: I(0) },
    wrt: ['b'],
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [1, 3] },
      { name: 'c', dims: [3, 3] },
    ],
  }));
test('Concat along a dynamic axis matches the fixed-size gradient', () =>
  checkDynamic(
    {
      op: 'Concat',
      attrs: { axis: I(1) },
      inputs: [
        { name: 'a', dims: [2, 3, 2] },
        { name: 'b', dims: [2, 2, 2] },
        { name: 'c', dims: [2, 1, 2] },
      ],
    },
    { a: [2, 'T', 2], b: [2, 'U', 2] },
    [2, 'V', 2],
    { a: [2, 5, 2], b: [2, 4, 2] },
  ));

test('Split (opset 13 split input, negative axis)', () =>
  checkOp({
    op: 'Split',
    opset: 13,
    outputs: 2,
    attrs: { axis: I(-1) },
    inputs: [{ name: 'x', dims: [2, 5] }, c('split', i64([2, 3]))],
  }));
test('Split (opset 11 attribute, equal split of three)', async () => {
  await checkOp({
    op: 'Split',
    opset: 11,
    outputs: 2,
    attrs: { axis: I(0), split: IS([1, 3]) },
    inputs: [{ name: 'x', dims: [4, 2] }],
  });
  await checkOp({ op: 'Split', outputs: 3, attrs: { axis: I(1) }, inputs: [{ name: 'x', dims: [2, 6] }] });
});
test('Split (opset 18 num_outputs, uneven last chunk)', () =>
  checkOp({
    op: 'Split',
    opset: 18,
    outputs: 3,
    attrs: { axis: I(1), num_outputs: I(3) },
    inputs: [{ name: 'x', dims: [2, 7] }],
  }));
test('Split where only some outputs reach the loss', () =>
  checkOutputs({ op: 'Split', outputs: 3, attrs: { axis: I(0) }, inputs: [{ name: 'x', dims: [6, 2] }] }, ['y1']));

test('Slice step 1: negative start, INT64_MAX end, negative axis, out-of-range end', async () => {
  await checkOp({
    op: 'Slice',
    inputs: [{ name: 'x', dims: [3, 5, 4] }, c('s', i64([-4, 1])), c('e', bigI64([MAX, 3n])), c('a', i64([1, -1]))],
  });
  await checkOp({ op: 'Slice', inputs: [{ name: 'x', dims: [6, 2] }, c('s', i64([1])), c('e', i64([100]))] });
});
test('Slice with steps 2 and -1 (reverse to INT64_MIN) and -2', async () => {
  await checkOp({
    op: 'Slice',
    inputs: [
      { name: 'x', dims: [7, 4] },
      c('s', i64([1, -1])),
      c('e', bigI64([MAX, -MAX - 1n])),
      c('a', i64([0, 1])),
      c('st', i64([2, -1])),
    ],
  });
  await checkOp({
    op: 'Slice',
    inputs: [{ name: 'x', dims: [3, 8] }, c('s', i64([6])), c('e', i64([0])), c('a', i64([-1])), c('st', i64([-2]))],
  });
});
test('Slice (opset 9 attribute form)', () =>
  checkOp({
    op: 'Slice',
    opset: 9,
    attrs: { starts: IS([1, 0]), ends: IS([3, -1]), axes: IS([0, 2]) },
    inputs: [{ name: 'x', dims: [4, 2, 3] }],
  }));
test('Slice along a dynamic axis (CLS token, last steps) matches the fixed-size gradient', async () => {
  await checkDynamic(
    { op: 'Slice', inputs: [{ name: 'x', dims: [2, 4, 3] }, c('s', i64([0])), c('e', i64([1])), c('a', i64([1]))] },
    { x: [2, 'T', 3] },
    [2, 1, 3],
    { x: [2, 6, 3] },
  );
  await checkDynamic(
    { op: 'Slice', inputs: [{ name: 'x', dims: [2, 5] }, c('s', i64([-3])), c('e', bigI64([MAX])), c('a', i64([-1]))] },
    { x: ['N', 5] },
    ['N', 3],
    { x: [4, 5] },
  );
  await checkDynamic(
    { op: 'Slice', inputs: [{ name: 'x', dims: [2, 5] }, c('s', i64([1])), c('e', i64([-1])), c('a', i64([1]))] },
    { x: [2, 'T'] },
    [2, 'U'],
    { x: [2, 8] },
  );
});

test('Gather axis 0 (embedding) with repeated and negative int64 indices, opsets 17 and 13', async () => {
  for (const opset of [17, 13])
    await checkOp({
      op: 'Gather',
      opset,
      inputs: [{ name: 'w', dims: [5, 3] }, c('i', i64([0, 2, 0, 4, -1, 2, 0], [7]))],
    });
  await checkOp({ op: 'Gather', inputs: [{ name: 'w', dims: [5, 3] }, c('i', i64([1, 1, 3, -5], [2, 2]))] });
});
test('Gather along axis 1 and axis -1, opsets 17 and 11', async () => {
  for (const opset of [17, 11]) {
    await checkOp({
      op: 'Gather',
      opset,
      attrs: { axis: I(1) },
      inputs: [{ name: 'x', dims: [2, 4, 3] }, c('i', i64([3, 1, 3, 0], [2, 2]))],
    });
    await checkOp({
      op: 'Gather',
      opset,
      attrs: { axis: I(-1) },
      inputs: [{ name: 'x', dims: [2, 4] }, c('i', i64([-1, 0, -1], [3]))],
    });
  }
});
test('Gather with a scalar index (x[:, 2])', () =>
  checkOp({ op: 'Gather', attrs: { axis: I(1) }, inputs: [{ name: 'x', dims: [3, 4, 2] }, c('i', i64([2], []))] }));
test('Gather with a dynamic batch axis matches the fixed-size gradient', async () => {
  for (const opset of [17, 13])
    await checkDynamic(
      { op: 'Gather', opset, attrs: { axis: I(1) }, inputs: [{ name: 'x', dims: [2, 4, 3] }, c('i', i64([3, 1, 3]))] },
      { x: ['N', 4, 3] },
      ['N', 3, 3],
      { x: [5, 4, 3] },
    );
});

test('GatherElements with repeated indices (axis 1 and -2), opsets 17 and 13', async () => {
  for (const opset of [17, 13]) {
    await checkOp({
      op: 'GatherElements',
      opset,
      attrs: { axis: I(1) },
      inputs: [{ name: 'x', dims: [2, 4] }, c('i', i64([0, 0, 3, 1, 2, 2], [2, 3]))],
    });
    await checkOp({
      op: 'GatherElements',
      opset,
      attrs: { axis: I(-2) },
      inputs: [{ name: 'x', dims: [3, 2] }, c('i', i64([2, 0, 2, 0, -1, 1, 0, 0], [4, 2]))],
    });
  }
});

test('Pad constant (opset 13; negative pads crop), with a differentiable pad value', async () => {
  await checkOp({ op: 'Pad', inputs: [{ name: 'x', dims: [2, 3, 4] }, c('p', i64([0, 1, -1, 1, 2, 0]))] });
  await checkOp({
    op: 'Pad',
    inputs: [{ name: 'x', dims: [2, 3] }, c('p', i64([1, 0, 0, 2])), { name: 'v', dims: [] }],
  });
});
test('Pad constant (opset 18 axes input, opset 10 attributes)', async () => {
  await checkOp({
    op: 'Pad',
    opset: 18,
    inputs: [{ name: 'x', dims: [2, 3, 4] }, c('p', i64([1, 2, 0, 1])), c('v', f32c([0.5], [])), c('a', i64([-1, 0]))],
  });
  await checkOp({
    op: 'Pad',
    opset: 10,
    attrs: { pads: IS([1, 0, 0, 2]), mode: S('constant') },
    inputs: [{ name: 'x', dims: [2, 3] }],
  });
});
test('Pad edge and reflect', async () => {
  await checkOp({
    op: 'Pad',
    attrs: { mode: S('edge') },
    inputs: [{ name: 'x', dims: [2, 3, 4] }, c('p', i64([0, 2, 1, 0, 1, 3]))],
  });
  await checkOp({
    op: 'Pad',
    attrs: { mode: S('reflect') },
    inputs: [{ name: 'x', dims: [2, 4, 5] }, c('p', i64([0, 2, 1, 0, 3, 2]))],
  });
  await checkOp({
    op: 'Pad',
    attrs: { mode: S('reflect') },
    inputs: [{ name: 'x', dims: [1, 1, 3, 3] }, c('p', i64([0, 0, 1, 1, 0, 0, 1, 1]))],
  });
});
test('Pad wrap has no rule and says so', async () => {
  await assert.rejects(
    checkOp({
      op: 'Pad',
      opset: 19,
      attrs: { mode: S('wrap') },
      inputs: [{ name: 'x', dims: [2, 3] }, c('p', i64([0, 1, 0, 1]))],
    }),
    /Pad mode 'wrap'/,
  );
});

test('Where with broadcasting of condition and both branches', async () => {
  await checkOp({
    op: 'Where',
    inputs: [c('cond', boolT([1, 0, 1], [3])), { name: 'a', dims: [2, 3] }, { name: 'b', dims: [2, 1] }],
  });
  await checkOp({
    op: 'Where',
    inputs: [c('cond', boolT([1, 0, 0, 1, 1, 0], [2, 1, 3])), { name: 'a', dims: [] }, { name: 'b', dims: [4, 3] }],
  });
});

test('Tile', async () => {
  await checkOp({ op: 'Tile', inputs: [{ name: 'x', dims: [2, 3] }, c('r', i64([2, 3]))] });
  await checkOp({ op: 'Tile', inputs: [{ name: 'x', dims: [2, 1, 3] }, c('r', i64([1, 4, 1]))] });
});
test('Tile with a dynamic axis matches the fixed-size gradient', () =>
  checkDynamic({ op: 'Tile', inputs: [{ name: 'x', dims: [2, 3] }, c('r', i64([2, 2]))] }, { x: ['N', 3] }, ['M', 6], {
    x: [3, 3],
  }));
test('Reshape of a dynamic batch matches the fixed-size gradient', () =>
  checkDynamic(
    { op: 'Reshape', inputs: [{ name: 'x', dims: [2, 3, 4] }, c('s', i64([0, -1]))] },
    { x: ['N', 3, 4] },
    ['N', 12],
    { x: [3, 3, 4] },
  ));

test('DepthToSpace (DCR and CRD) and SpaceToDepth', async () => {
  await checkOp({ op: 'DepthToSpace', attrs: { blocksize: I(2) }, inputs: [{ name: 'x', dims: [1, 8, 2, 3] }] });
  await checkOp({
    op: 'DepthToSpace',
    attrs: { blocksize: I(2), mode: S('CRD') },
    inputs: [{ name: 'x', dims: [2, 8, 2, 3] }],
  });
  await checkOp({ op: 'SpaceToDepth', attrs: { blocksize: I(2) }, inputs: [{ name: 'x', dims: [2, 2, 4, 6] }] });
});
