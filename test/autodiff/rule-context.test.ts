/**
 * The rule context does the bookkeeping once for every rule: only the gradients the caller needs are
 * kept (nodes built for the others are removed), `broadcasting` sums a gradient given at the output's
 * shape back to each input's shape, and a gradient given as a function is built only when needed. A new
 * rule written as a formula on the context passes the finite-difference check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { buildBackward } from '../../src/autodiff/backward.js';
import { probeShapes } from '../../src/autodiff/shapes.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { RULES } from '../../src/autodiff/rules/index.js';
import { broadcasting, type GradRule } from '../../src/autodiff/rule.js';
import { opGraph } from '../helpers/op-graph.js';

/** y = Mul(x [2, 3], w [1, 3]) → L = ReduceSum(y). */
function mulGraph(): Graph {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs = [
    { name: 'x', dtype: 'float32', shape: [2, 3] },
    { name: 'w', dtype: 'float32', shape: [1, 3] },
  ];
  g.nodes = [
    { name: 'mul', opType: 'Mul', domain: '', inputs: ['x', 'w'], outputs: ['y'], attrs: {} },
    {
      name: 'sum',
      opType: 'ReduceSum',
      domain: '',
      inputs: ['y'],
      outputs: ['L'],
      attrs: { keepdims: { type: 'int', value: 0 } },
    },
  ];
  g.outputs = [{ name: 'L', dtype: 'float32', shape: [] }];
  return g;
}

test('only the gradients asked for are built, and broadcasting is undone by the context', async () => {
  const g = mulGraph();
  const shapes = await probeShapes(g);
  const before = g.nodes.length;
  const { grads } = buildBackward(g, shapes, { loss: 'L', wrt: ['w'] });
  const dw = grads.get('w')!;
  const added = g.nodes.slice(before);
  // dL/dy (Expand of the seed), dy·x, then the sum over the broadcast axis 0: no node uses w (that is dx = dy·w)
  assert.ok(
    !added.some((n) => n.inputs.includes('w')),
    `no node builds dx: ${added.map((n) => `${n.opType}(${n.inputs})`).join(' ')}`,
  );
  assert.ok(
    added.some((n) => n.opType === 'Mul' && n.inputs.includes('x')),
    'dw = Σ dy·x',
  );
  const last = added.find((n) => n.outputs.includes(dw))!;
  assert.equal(last.opType, 'ReduceSum', "the gradient at the output shape [2, 3] is summed to w's [1, 3]");
  // and the numbers: both inputs, both broadcast directions
  const r = await gradCheck(mulGraph(), { float64: true });
  assert.ok(r.passed, `worst ${r.worst}`);
});

test('a gradient given as a function is built only when its input needs one; one given eagerly is removed', async () => {
  const calls: number[] = [];
  const right = RULES['Mul']!;
  RULES['Mul'] = broadcasting(({ b, dy, x: [u, v] }) => [
    () => (calls.push(0), b.mul(dy, v)),
    () => (calls.push(1), b.mul(dy, u)),
  ]);
  try {
    const g = mulGraph();
    buildBackward(g, await probeShapes(g), { loss: 'L', wrt: ['x'] });
    assert.deepEqual(calls, [0]);
    // given eagerly, the unneeded gradient's nodes are built, then removed
    RULES['Mul'] = broadcasting(({ b, dy, x: [u, v] }) => [b.mul(dy, v), b.mul(dy, u)]);
    const h = mulGraph();
    const before = h.nodes.length;
    buildBackward(h, await probeShapes(h), { loss: 'L', wrt: ['x'] });
    assert.ok(!h.nodes.slice(before).some((n) => n.inputs.includes('x')), 'dw = dy·x was removed');
  } finally {
    RULES['Mul'] = right;
  }
});

test('a rule written as a formula on the context passes the finite-difference check (Softsign, replaced for the test)', async () => {
  const right = RULES['Softsign']!;
  // y = x / (1 + |x|): dx = dy / (1 + |x|)²
  const formula: GradRule = ({ b, dy, x: [x] }) => {
    const s = b.add(b.f32(1), b.op('Abs', [x]));
    return [b.div(dy, b.mul(s, s))];
  };
  RULES['Softsign'] = formula;
  try {
    const { graph, feeds } = opGraph({ op: 'Softsign', inputs: [{ name: 'x', dims: [3, 4] }] });
    const r = await gradCheck(graph, { feeds, float64: true });
    assert.ok(r.passed, `worst ${r.worst}`);
    // and a wrong one fails it: the context adds nothing that could hide an error
    RULES['Softsign'] = ({ b, dy, x: [x] }) => [b.div(dy, b.add(b.f32(1), b.op('Abs', [x])))];
    const bad = await gradCheck(graph, { feeds, float64: true });
    assert.equal(bad.passed, false);
  } finally {
    RULES['Softsign'] = right;
  }
});

test('no rule asks needs() or unbroadcasts by itself: the context does both', async () => {
  const { readFileSync, readdirSync } = await import('node:fs');
  const dir = new URL('../../src/autodiff/rules/', import.meta.url);
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const src = readFileSync(new URL(f, dir), 'utf8');
    assert.ok(!/\.needs\(/.test(src), `${f} calls needs()`);
    assert.ok(!/\.unbroadcast\(/.test(src), `${f} calls unbroadcast()`);
  }
});
