/**
 * Fused activations are table entries: TFLite's fused_activation_function codes
 * (TFLITE_FUSED_ACTIVATIONS) and the ops a TF.js graph model's _FusedMatMul / _FusedConv2D applies
 * after it (TFJS_GRAPH_FUSED_OPS). One that is not registered is an error naming it; one entry adds it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tensor } from '../../src/graph/tensor.js';
import { TFLITE_FUSED_ACTIVATIONS, decodeTflite } from '../../src/formats/tflite.js';
import { TFJS_GRAPH_FUSED_OPS, importTfjsGraphModel } from '../../src/formats/tfjs-graph.js';
import { writeTflite } from '../helpers/tflite-writer.js';
import { Session } from '../../src/runtime/session.js';
import type { Graph } from '../../src/graph/graph.js';

async function run(g: Graph, x: Float32Array, dims: number[]): Promise<number[]> {
  const s = await Session.fromGraph(g, { threads: 1 });
  try {
    const r = await s.run({ [g.inputs[0]!.name]: { dtype: 'float32', dims, data: x } });
    return Array.from(r[g.outputs[0]!.name]!.data as Float32Array);
  } finally {
    await s.release();
  }
}
const X = Float32Array.from([-1.5, -0.25, 0, 0.75, 2.5, 3.999]);

/** x + x with fused activation `act` (AddOptions: fused_activation_function is field 0). */
const tfliteAdd = (act: number) =>
  writeTflite({
    tensors: [
      { name: 'x', shape: [1, 6] },
      { name: 'y', shape: [1, 6] },
    ],
    ops: [{ code: 0 /* ADD */, inputs: [0, 0], outputs: [1], options: { type: 11, fields: [['byte', 0, act]] } }],
    inputs: [0],
    outputs: [1],
  });

test('TFLite fused activations: RELU6 clips; an unknown code is named; one entry adds it', async () => {
  assert.deepEqual(
    await run(decodeTflite(tfliteAdd(3 /* RELU6 */), {}, 'relu6.tflite'), X, [1, 6]),
    [0, 0, 0, 1.5, 5, 6],
  );
  assert.throws(
    () => decodeTflite(tfliteAdd(5), {}, 'sign.tflite'),
    /fused activation 5 \(SIGN_BIT\) is not supported/,
  );
  TFLITE_FUSED_ACTIVATIONS.register('SIGN_BIT', (im, pre, out) => im.node('Sign', [pre], {}, out));
  assert.deepEqual(await run(decodeTflite(tfliteAdd(5), {}, 'sign.tflite'), X, [1, 6]), [-1, -1, 0, 1, 1, 1]);
});

test('TF.js graph fused ops: BiasAdd then an activation; an unknown one is named; one entry adds it', async () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const json = (ops: string[]) => ({
    modelTopology: {
      node: [
        {
          name: 'x',
          op: 'Placeholder',
          attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [{ size: '-1' }, { size: '6' }] } } },
        },
        { name: 'w', op: 'Const', attr: {} },
        { name: 'bias', op: 'Const', attr: {} },
        {
          name: 'y',
          op: '_FusedMatMul',
          input: ['x', 'w', 'bias'],
          attr: { fused_ops: { list: { s: ops.map(b64) } } },
        },
      ],
    },
  });
  const eye = new Float32Array(36);
  for (let i = 0; i < 6; i++) eye[i * 7] = 1;
  const weights = new Map<string, Tensor>([
    ['w', { dtype: 'float32', dims: [6, 6], data: eye }],
    ['bias', { dtype: 'float32', dims: [6], data: new Float32Array(6).fill(0.5) }],
  ]);
  const relu = await run(importTfjsGraphModel(json(['BiasAdd', 'Relu']), weights, 'm.json'), X, [1, 6]);
  assert.deepEqual(relu, [0, 0.25, 0.5, 1.25, 3, 4.499].map(Math.fround));
  assert.throws(() => importTfjsGraphModel(json(['BiasAdd', 'Floor']), weights, 'm.json'), /fused op 'Floor'/);
  TFJS_GRAPH_FUSED_OPS.register('Floor', (_im, { n, y, b }) => b.op('Floor', [y], {}, `${n.name}/Floor`));
  const floor = await run(importTfjsGraphModel(json(['BiasAdd', 'Floor']), weights, 'm.json'), X, [1, 6]);
  assert.deepEqual(floor, [-1, 0, 0, 1, 3, 4]);
});
