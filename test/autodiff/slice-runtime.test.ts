/** Slice whose bounds are computed in the graph, as torch exports chunk() (e.g. nn.MultiheadAttention's packed projection). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Rng } from '../../src/util/random.js';

function chunkGraph(k: number, dynamicBatch: boolean): Graph {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [dynamicBatch ? 'batch' : 2, 5, 12] });
  const i64 = (name: string, v: number[]) =>
    g.initializers.set(name, { dtype: 'int64', dims: [v.length], data: BigInt64Array.from(v.map(BigInt)) });
  i64('last', [-1]);
  i64('three', [3]);
  i64('k', [k]);
  i64('k1', [k + 1]);
  i64('axes', [-1]);
  const n = (op: string, inputs: string[], out: string, attrs = {}) =>
    g.nodes.push({ name: out, opType: op, domain: '', inputs, outputs: [out], attrs });
  n('Shape', ['x'], 'shape');
  n('Gather', ['shape', 'last'], 'D', { axis: { type: 'int', value: 0 } });
  n('Div', ['D', 'three'], 'part');
  n('Mul', ['part', 'k'], 'start');
  n('Mul', ['part', 'k1'], 'end');
  n('Slice', ['x', 'start', 'end', 'axes'], 'chunk');
  n('Tanh', ['chunk'], 'y');
  g.outputs.push({ name: 'y' });
  return g;
}

for (const k of [0, 1, 2])
  test(`Slice with run-time bounds (chunk ${k} of 3) differentiates`, async () => {
    const rng = new Rng(k + 1);
    const x = {
      dtype: 'float32' as const,
      dims: [2, 5, 12],
      data: Float32Array.from({ length: 120 }, () => rng.normal()),
    };
    const r = await gradCheck(chunkGraph(k, k === 1), {
      feeds: { x },
      wrt: ['x'],
      samples: 40,
      float64: true,
      eps: [1e-4],
    });
    assert.ok(r.worst < 1e-6, `worst relative error ${r.worst}`);
    assert.ok(r.entries[0]!.maxAbsGrad > 0);
  });
