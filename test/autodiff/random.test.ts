/**
 * Finite differences over random operators: onnxruntime draws a new Dropout mask on every run (a `seed`
 * only fixes a session's sequence), so gradCheck holds the gradient run's draws fixed and checks the rule
 * against the operator with that mask, after confirming the fixed-mask function gives onnxruntime's output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { opGraph, I } from '../helpers/op-graph.js';
import { Graph } from '../../src/graph/graph.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { RULES } from '../../src/autodiff/rules/index.js';
import { Session } from '../../src/runtime/session.js';
import type { Tensor } from '../../src/graph/tensor.js';

const bool = (v: boolean): Tensor => ({ dtype: 'bool', dims: [], data: Uint8Array.from([v ? 1 : 0]) });
const f32s = (v: number): Tensor => ({ dtype: 'float32', dims: [], data: Float32Array.from([v]) });

/** Training-mode Dropout on x [4, 5]; ratio and training_mode constants, or fed (as the ONNX node tests do). */
function dropout(ratio: number, o: { seed?: number; fed?: boolean } = {}) {
  const { graph, feeds } = opGraph({
    op: 'Dropout',
    outputs: 2,
    attrs: o.seed != null ? { seed: I(o.seed) } : {},
    inputs: [
      { name: 'x', dims: [4, 5] },
      { name: 'ratio', constant: true, tensor: f32s(ratio) },
      { name: 'tm', constant: true, tensor: bool(true) },
    ],
  });
  if (o.fed) {
    for (const [k, t] of [
      ['ratio', f32s(ratio)],
      ['tm', bool(true)],
    ] as const) {
      graph.initializers.delete(k);
      graph.inputs.push({ name: k, dtype: t.dtype, shape: [] });
      feeds[k] = t;
    }
  }
  return { graph, feeds };
}

test('onnxruntime draws a new Dropout mask on later runs of one session, even with a seed (why the check holds it fixed)', async () => {
  const { graph, feeds } = dropout(0.5, { seed: 0 });
  const s = await Session.fromGraph(graph);
  const masks = new Set<string>();
  for (let k = 0; k < 6; k++) masks.add(Array.from((await s.run(feeds))['y1']!.data as Uint8Array).join(''));
  await s.release();
  assert.ok(masks.size > 1, 'six runs drew one mask');
});

test('training-mode Dropout passes the finite-difference check (seeded or not, ratio constant or fed, float32 and float64)', async () => {
  for (const [ratio, o] of [
    [0.5, { seed: 0 }],
    [0.3, {}],
    [0.75, { seed: 3, fed: true }],
  ] as const) {
    const { graph, feeds } = dropout(ratio, o);
    for (const float64 of [false, true]) {
      const r = await gradCheck(graph, { feeds, wrt: ['x'], samples: 20, float64 });
      assert.ok(r.passed, `ratio ${ratio} ${JSON.stringify(o)} float64=${float64}: ${JSON.stringify(r.entries)}`);
      assert.ok(r.entries[0]!.maxAbsGrad > 0);
      assert.ok(r.worst < (float64 ? 1e-6 : 1e-3), `worst ${r.worst}`);
    }
  }
});

test('a wrong Dropout rule is caught: the scale 1/(1 − ratio) left out, or a mask drawn apart from the forward one', async () => {
  const right = RULES['Dropout']!;
  const wrong: Record<string, (typeof RULES)[string]> = {
    'no scale': (c) => [c.b.mul(c.dy, c.b.op('Cast', [c.forwardOutput(1, 'mask')], { to: { type: 'int', value: 1 } }))],
    'own mask': (c) => {
      const [, m] = c.b.opN('Dropout', [c.x[0], c.x[1], c.x[2]], {}, 2);
      return [c.b.mul(c.dy, c.b.mul(c.b.op('Cast', [m!], { to: { type: 'int', value: 1 } }), c.b.f32(2)))];
    },
  };
  try {
    for (const [why, rule] of Object.entries(wrong)) {
      RULES['Dropout'] = rule;
      const { graph, feeds } = dropout(0.5);
      const r = await gradCheck(graph, { feeds, wrt: ['x'], samples: 20, float64: true });
      assert.ok(!r.passed && r.worst > 0.1, `${why}: worst ${r.worst}`);
    }
  } finally {
    RULES['Dropout'] = right;
  }
});

test('random generators are held fixed too: x · RandomNormalLike(x) + x', async () => {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [3, 4] });
  g.nodes.push({ name: 'rn', opType: 'RandomNormalLike', domain: '', inputs: ['x'], outputs: ['n'], attrs: {} });
  g.nodes.push({ name: 'mul', opType: 'Mul', domain: '', inputs: ['x', 'n'], outputs: ['xn'], attrs: {} });
  g.nodes.push({ name: 'add', opType: 'Add', domain: '', inputs: ['xn', 'x'], outputs: ['y'], attrs: {} });
  g.outputs = [{ name: 'y' }];
  const x: Tensor = {
    dtype: 'float32',
    dims: [3, 4],
    data: Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)),
  };
  const r = await gradCheck(g, { feeds: { x }, wrt: ['x'], samples: 12, float64: true });
  assert.ok(r.passed, JSON.stringify(r.entries));
});
