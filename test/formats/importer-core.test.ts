/**
 * The importer core (src/formats/importer/core.ts): handler tables, layout helpers, TF padding,
 * dequantization, kernel layouts, naming; and the promise it makes to contributors: adding an operator
 * to TFLite, TF.js layers or TF.js graph models is one `register` entry (each checked here by adding
 * a Floor operator the importers do not have, converting a tiny model that uses it, and running it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Handlers,
  Emitter,
  NCHW,
  channelsFirst,
  invertPerm,
  keepsMemoryOrder,
  windowPads,
  samePadding,
  dequantizeAffine,
  dequantizeMinScale,
  float16ToFloat32,
  hwioToOihw,
  ohwiToOihw,
  depthwiseToOihw,
  tfliteDepthwiseToOihw,
  toSourceOrder,
  fromSourceOrder,
} from '../../src/formats/importer/core.js';
import { TFLITE_HANDLERS, TFLITE_OPERATORS, decodeTflite } from '../../src/formats/tflite.js';
import { TFJS_LAYERS, readTfjs } from '../../src/formats/tfjs.js';
import { TFJS_GRAPH_OPS, importTfjsGraphModel } from '../../src/formats/tfjs-graph.js';
import { writeTflite } from '../helpers/tflite-writer.js';
import { Session } from '../../src/runtime/session.js';
import type { Graph } from '../../src/graph/graph.js';
import { GraftError } from '../../src/util/errors.js';

test('Handlers: one entry per name (several names may share one), sorted names, a second registration refused', () => {
  const h = new Handlers<number>('demo').register('B', 1).register(['A', 'C'], 2);
  assert.deepEqual(h.names(), ['A', 'B', 'C']);
  assert.equal(h.get('C'), 2);
  assert.equal(h.get('D'), undefined);
  assert.throws(() => h.register('A', 3), /demo: operator 'A' is registered twice/);
  // the formats' tables are what the importers dispatch on
  assert.deepEqual(TFLITE_OPERATORS, TFLITE_HANDLERS.names());
  for (const op of ['CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED', 'SOFTMAX'])
    assert.ok(TFLITE_HANDLERS.has(op), op);
  for (const l of ['Conv2D', 'Dense', 'Dropout', 'MaxPooling2D', 'MaxPool2D', 'Rescaling'])
    assert.ok(TFJS_LAYERS.has(l), l);
  for (const op of ['_FusedConv2D', 'FusedBatchNormV3', 'ConcatV2', 'Placeholder'])
    assert.ok(TFJS_GRAPH_OPS.has(op), op);
});

test('layout: NCHW and channels-first orders, their inverse, memory order kept only when size-1 axes move', () => {
  assert.deepEqual(channelsFirst(4), NCHW);
  assert.deepEqual(channelsFirst(3), [0, 2, 1]);
  assert.deepEqual(channelsFirst(2), [0, 1]);
  assert.deepEqual(invertPerm(NCHW), [0, 2, 3, 1]);
  assert.ok(keepsMemoryOrder([1, 1, 1, 8], NCHW), 'a 1×1 map: NHWC and NCHW hold the same order');
  assert.ok(!keepsMemoryOrder([1, 2, 2, 8], NCHW));
  assert.ok(keepsMemoryOrder([1, 1, 1, 8], [3, 0, 1, 2]));
  assert.ok(!keepsMemoryOrder([null, 1, 1, 8], [3, 0, 1, 2]), 'an unknown size counts as moving');
  const e = new Emitter();
  e.g.inputs.push({ name: 'x', dtype: 'float32', shape: [1, 8, 1, 1] });
  assert.equal(toSourceOrder(e.b, 'x', NCHW, [1, 1, 1, 8]), 'x');
  assert.equal(e.g.nodes.length, 0);
  const t = toSourceOrder(e.b, 'x', NCHW, [1, 2, 2, 8], 'to_nhwc');
  const f = fromSourceOrder(e.b, t, NCHW, [1, 2, 2, 8]);
  assert.deepEqual(
    e.g.nodes.map((n) => [n.opType, n.attrs['perm']]),
    [
      ['Transpose', { type: 'ints', value: [0, 2, 3, 1] }],
      ['Transpose', { type: 'ints', value: NCHW }],
    ],
  );
  assert.equal(e.g.nodes[0]!.outputs[0], 'to_nhwc');
  assert.equal(e.g.nodes[1]!.outputs[0], f);
});

test('TF padding: SAME puts the odd pixel at the end, VALID refuses a window larger than the input, unknown sizes leave SAME to auto_pad', () => {
  assert.deepEqual(samePadding(224, 3, 2), [0, 1]);
  assert.deepEqual(samePadding(8, 3, 1, 2), [2, 2]);
  assert.deepEqual(windowPads([224, 225], [3, 3], [2, 2], [1, 1], 'same', 'w'), {
    pads: [0, 1, 1, 1],
    out: [112, 113],
  });
  assert.deepEqual(windowPads([7, 7], [3, 3], [2, 2], [1, 1], 'valid', 'w'), { pads: [0, 0, 0, 0], out: [3, 3] });
  assert.deepEqual(windowPads([5, 5], [3, 3], [1, 1], [1, 1], 'explicit', 'w', [0, 0, 1, 2, 0, 1, 0, 0]), {
    pads: [1, 0, 2, 1],
    out: [6, 4],
  });
  assert.deepEqual(windowPads([null, 9], [3, 3], [1, 1], [1, 1], 'same', 'w'), { pads: null, out: [null, 9] });
  assert.throws(
    () => windowPads([2, 2], [3, 3], [1, 1], [1, 1], 'valid', 'layer x'),
    (e: unknown) => e instanceof GraftError && /layer x: a 3×3 window does not fit/.test(e.message),
  );
});

test('dequantization: affine per tensor and per axis, TF.js min/scale (rounded for int weights), float16', () => {
  assert.deepEqual(
    Array.from(dequantizeAffine([0, 128, 255], { scale: [0.5], zeroPoint: [128], axis: 0 }, [3])),
    [-64, 0, 63.5],
  );
  // [2, 3] with one scale per column (axis 1) and per-column zero points
  const q = dequantizeAffine([1, 2, 3, 4, 5, 6], { scale: [1, 10, 100], zeroPoint: [0, 1, 2], axis: 1 }, [2, 3]);
  assert.deepEqual(Array.from(q), [1, 10, 100, 4, 40, 400]);
  assert.deepEqual(Array.from(dequantizeMinScale([0, 1, 255], 0.5, -1)), [-1, -0.5, 126.5]);
  assert.deepEqual(Array.from(dequantizeMinScale([1, 2], 0.4, 0.1, true)), [1, 1]);
  assert.deepEqual(Array.from(float16ToFloat32([0x3c00, 0xc000, 0x3555])), [1, -2, Math.fround(0.333251953125)]);
});

test('kernel layouts: HWIO, OHWI and both depthwise forms become OIHW', () => {
  // a kernel whose value encodes its indices: 1000·a + 100·b + 10·c + d
  const enc = (dims: number[]) => {
    const d = new Float32Array(dims.reduce((x, y) => x * y, 1));
    let i = 0;
    for (let a = 0; a < dims[0]!; a++)
      for (let b = 0; b < dims[1]!; b++)
        for (let c = 0; c < dims[2]!; c++) for (let e = 0; e < dims[3]!; e++) d[i++] = 1000 * a + 100 * b + 10 * c + e;
    return d;
  };
  const at = (t: { data: Float32Array; dims: number[] }, [a, b, c, d]: number[]) =>
    t.data[((a! * t.dims[1]! + b!) * t.dims[2]! + c!) * t.dims[3]! + d!];
  const hwio = hwioToOihw(enc([2, 3, 4, 5]), [2, 3, 4, 5]); // [kh, kw, cin, cout]
  assert.deepEqual(hwio.dims, [5, 4, 2, 3]);
  assert.equal(at(hwio, [4, 3, 1, 2]), 1000 * 1 + 100 * 2 + 10 * 3 + 4);
  const ohwi = ohwiToOihw(enc([5, 2, 3, 4]), [5, 2, 3, 4]); // [cout, kh, kw, cin]
  assert.deepEqual(ohwi.dims, [5, 4, 2, 3]);
  assert.equal(at(ohwi, [4, 3, 1, 2]), 1000 * 4 + 100 * 1 + 10 * 2 + 3);
  const dw = depthwiseToOihw(enc([2, 3, 4, 2]), [2, 3, 4, 2]); // [kh, kw, C, M] → [C·M, 1, kh, kw], channel c·M + m
  assert.deepEqual(dw.dims, [8, 1, 2, 3]);
  assert.equal(at(dw, [3 * 2 + 1, 0, 1, 2]), 1000 * 1 + 100 * 2 + 10 * 3 + 1);
  const tdw = tfliteDepthwiseToOihw(enc([1, 2, 3, 8]), [1, 2, 3, 8]); // [1, kh, kw, C·M]
  assert.deepEqual(tdw.dims, [8, 1, 2, 3]);
  assert.equal(at(tdw, [7, 0, 1, 2]), 100 * 1 + 10 * 2 + 7);
});

test('Emitter: initializers cached by key, results renamed after their source, graph outputs distinct and never an input', () => {
  const e = new Emitter();
  e.g.inputs.push({ name: 'x', dtype: 'float32', shape: [2] });
  const make = () => ({ dtype: 'float32' as const, dims: [2], data: Float32Array.from([1, 2]) });
  const w = e.cachedInitializer('k', 'layer/w', make);
  assert.equal(e.cachedInitializer('k', 'other', make), w);
  assert.equal(w, 'layer/w');
  const mark = e.mark();
  const y = e.b.op('Relu', [e.b.op('Add', ['x', w])]);
  const named = e.nameResult(mark, y, 'block1');
  assert.equal(named, 'block1');
  assert.equal(e.nameResult(e.mark(), 'x', 'never'), 'x', 'a value no fresh node computes keeps its name');
  e.setOutputs(
    [
      { name: named, shape: [2] },
      { name: named, shape: [2] },
      { name: 'x', shape: [2] },
    ],
    (n, k) => `${n}/out${k}`,
  );
  assert.deepEqual(
    e.g.outputs.map((o) => o.name),
    ['block1', 'block1/out1', 'x/out2'],
  );
});

/* ---------------------------------------------------------------------------------------------- */
/* adding an operator is one entry                                                                 */

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
const FLOOR = [-2, -1, 0, 0, 2, 3];

test('TFLite: one entry adds an operator (FLOOR), which then converts and runs', async () => {
  const bytes = writeTflite({
    tensors: [
      { name: 'x', shape: [1, 6] },
      { name: 'y', shape: [1, 6] },
    ],
    ops: [{ code: 8 /* FLOOR */, inputs: [0], outputs: [1] }],
    inputs: [0],
    outputs: [1],
  });
  assert.throws(() => decodeTflite(bytes, {}, 'floor.tflite'), /unsupported operator FLOOR/);
  TFLITE_HANDLERS.register('FLOOR', (im, op) => im.unary(op, (x, o) => im.node('Floor', [x], {}, o)));
  assert.deepEqual(await run(decodeTflite(bytes, {}, 'floor.tflite'), X, [1, 6]), FLOOR);
});

test('TF.js layers: one entry adds a layer class, which then converts and runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-core-'));
  writeFileSync(
    join(dir, 'model.json'),
    JSON.stringify({
      modelTopology: {
        model_config: {
          class_name: 'Sequential',
          config: {
            name: 'floor',
            layers: [
              { class_name: 'InputLayer', config: { name: 'x', batch_input_shape: [null, 6], dtype: 'float32' } },
              { class_name: 'Floor', config: { name: 'floor1' } },
            ],
          },
        },
      },
      weightsManifest: [],
    }),
  );
  assert.throws(
    () => readTfjs(dir, { labels: false }),
    /layer 'floor1' is a Floor, which the TF.js importer does not support/,
  );
  TFJS_LAYERS.register('Floor', (_, { b, lname, one }) => [
    { name: b.op('Floor', [one().name], {}, `${lname}/Floor`), shape: [...one().shape] },
  ]);
  const g = readTfjs(dir, { labels: false });
  assert.equal(g.outputs[0]!.name, 'floor1', 'the result is named after the layer');
  assert.deepEqual(await run(g, X, [1, 6]), FLOOR);
});

test('TF.js graph models: one entry adds an op, which then converts and runs', async () => {
  const json = {
    modelTopology: {
      node: [
        {
          name: 'x',
          op: 'Placeholder',
          attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [{ size: '-1' }, { size: '6' }] } } },
        },
        { name: 'y', op: 'Floor', input: ['x'], attr: {} },
      ],
    },
  };
  assert.throws(
    () => importTfjsGraphModel(json, new Map(), 'floor.json'),
    /node 'y' is a Floor, which the TF.js graph-model importer does not support/,
  );
  TFJS_GRAPH_OPS.register('Floor', (_, { unary }) => unary('Floor'));
  assert.deepEqual(await run(importTfjsGraphModel(json, new Map(), 'floor.json'), X, [1, 6]), FLOOR);
});
