/**
 * int8 export in onnxruntime-web: the model.onnx that `exportInt8` writes (QDQ form) loads in
 * onnxruntime-web's WASM backend (single-threaded, in Node) and gives the same outputs as
 * onnxruntime-node (|Δ| < 1e-3 on the outputs; measured: 1e-6 or less) with the same top-1 class. A small convolutional classifier
 * (no assets needed) and the Coral MobileNet v1 (an imported uint8 TFLite model) on the Coral photos.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ortWeb from 'onnxruntime-web';
import { Graph } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { exportInt8 } from '../../src/export/quantize.js';
import { readOnnx, writeOnnx } from '../../src/formats/onnx.js';
import { getPreprocess, setLabels, setPreprocess, type ImagePreprocess } from '../../src/formats/preprocess.js';
import { loadModel } from '../../src/formats/load.js';
import { imagesToTensor } from '../../src/data/image.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';
import { node } from '../helpers/op-graph.js';

ortWeb.env.wasm.numThreads = 1;
const tmp = mkdtempSync(join(tmpdir(), 'graft-int8-web-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Outputs of model.onnx in onnxruntime-web (WASM) and in onnxruntime-node, on the same feeds. */
async function bothRuntimes(
  path: string,
  feeds: Record<string, Tensor>,
): Promise<{ web: Record<string, Float32Array>; node: Record<string, Float32Array>; ops: string[] }> {
  const web = await ortWeb.InferenceSession.create(readFileSync(path), {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const wf: Record<string, ortWeb.Tensor> = {};
  for (const [k, t] of Object.entries(feeds)) wf[k] = new ortWeb.Tensor('float32', t.data as Float32Array, t.dims);
  const wo = await web.run(wf);
  const w: Record<string, Float32Array> = {};
  for (const name of web.outputNames) w[name] = wo[name]!.data as Float32Array;
  await web.release();
  const s = await Session.fromBytes(readFileSync(path), { threads: 1 }, 'int8 model');
  const g = readOnnx(path);
  const no = await s.run(
    feeds,
    g.outputs.map((o) => o.name),
  );
  await s.release();
  const n: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(no)) n[k] = t.data as Float32Array;
  return { web: w, node: n, ops: g.nodes.map((x) => x.opType) };
}

function compare(a: Float32Array, b: Float32Array, K: number): { maxAbs: number; topAgree: number; rows: number } {
  assert.equal(a.length, b.length);
  let maxAbs = 0,
    topAgree = 0;
  const top = (d: Float32Array, r: number) => {
    let m = 0;
    for (let k = 1; k < K; k++) if (d[r * K + k]! > d[r * K + m]!) m = k;
    return m;
  };
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]!) && Number.isFinite(b[i]!), `non-finite output at ${i}`);
    maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
  }
  const rows = a.length / K;
  for (let r = 0; r < rows; r++) topAgree += +(top(a, r) === top(b, r));
  return { maxAbs, topAgree, rows };
}

const PRE: ImagePreprocess = {
  layout: 'NCHW',
  width: 16,
  height: 16,
  channels: 3,
  channelOrder: 'RGB',
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  resize: 'stretch',
  source: 'flag',
};

/** x [batch,3,16,16] → Conv 3×3 (16) → Relu → depthwise Conv 3×3 → Clip → Conv 1×1 (16) → Add → GlobalAveragePool → Flatten → MatMul → Gemm → Softmax */
function net(): Graph {
  const rng = new Rng(8);
  const w = (dims: number[], s: number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => rng.normal() * s),
  });
  const g = new Graph();
  g.name = 'int8-web-net';
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 3, 16, 16] });
  g.outputs.push({ name: 'probabilities', dtype: 'float32', shape: ['batch', 5] });
  for (const [k, t] of Object.entries({
    'c1.w': w([16, 3, 3, 3], 0.3),
    'c1.b': w([16], 0.1),
    'dw.w': w([16, 1, 3, 3], 0.4),
    'dw.b': w([16], 0.1),
    'c2.w': w([16, 16, 1, 1], 0.25),
    'c2.b': w([16], 0.1),
    'mm.w': w([16, 12], 0.3),
    'fc.w': w([5, 12], 0.5),
    'fc.b': w([5], 0.1),
  }))
    g.initializers.set(k, t);
  g.initializers.set('lo', { dtype: 'float32', dims: [], data: Float32Array.from([0]) });
  g.initializers.set('hi', { dtype: 'float32', dims: [], data: Float32Array.from([6]) });
  g.nodes.push(
    node('c1', 'Conv', ['x', 'c1.w', 'c1.b'], ['h1'], { pads: { type: 'ints', value: [1, 1, 1, 1] } }),
    node('r1', 'Relu', ['h1'], ['a1']),
    node('dw', 'Conv', ['a1', 'dw.w', 'dw.b'], ['h2'], {
      pads: { type: 'ints', value: [1, 1, 1, 1] },
      group: { type: 'int', value: 16 },
    }),
    node('r2', 'Clip', ['h2', 'lo', 'hi'], ['a2']),
    node('c2', 'Conv', ['a2', 'c2.w', 'c2.b'], ['h3']),
    node('add', 'Add', ['h3', 'a1'], ['s']),
    node('gap', 'GlobalAveragePool', ['s'], ['p']),
    node('flat', 'Flatten', ['p'], ['f']),
    node('mm', 'MatMul', ['f', 'mm.w'], ['m']),
    node('fc', 'Gemm', ['m', 'fc.w', 'fc.b'], ['logits'], { transB: { type: 'int', value: 1 } }),
    node('sm', 'Softmax', ['logits'], ['probabilities'], { axis: { type: 'int', value: 1 } }),
  );
  setPreprocess(g, PRE);
  setLabels(g, ['a', 'b', 'c', 'd', 'e']);
  return g;
}

async function images(n: number, seed: number): Promise<Uint8Array[]> {
  const rng = new Rng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++)
    out.push(
      await sharp(Buffer.from(Uint8Array.from({ length: 16 * 16 * 3 }, () => rng.int(256))), {
        raw: { width: 16, height: 16, channels: 3 },
      })
        .png()
        .toBuffer(),
    );
  return out;
}

test('onnxruntime-web (WASM) runs an exported int8 classifier like onnxruntime-node', async () => {
  const dir = join(tmp, 'clf'),
    out = join(tmp, 'clf-int8');
  mkdirSync(dir, { recursive: true });
  writeOnnx(net(), join(dir, 'model.onnx'));
  writeFileSync(join(dir, 'labels.json'), JSON.stringify(['a', 'b', 'c', 'd', 'e']));
  const r = await exportInt8(dir, out, { images: await images(24, 1) }, { method: 'minmax' });
  assert.deepEqual(r.summary.quantized, { Conv: 3, MatMul: 1 });
  const x = await imagesToTensor(await images(12, 2), PRE);
  const { web, node, ops } = await bothRuntimes(r.path, { x });
  assert.ok(ops.includes('QuantizeLinear') && ops.includes('DequantizeLinear'), 'the model is in QDQ form');
  const c = compare(web['probabilities']!, node['probabilities']!, 5);
  assert.equal(c.topAgree, c.rows, `top-1 differs: ${c.rows - c.topAgree} of ${c.rows}`);
  assert.ok(c.maxAbs < 1e-3, `max |Δp| between onnxruntime-web and onnxruntime-node: ${c.maxAbs}`);
});

const V1 = 'models/coral/mobilenet_v1_0.25_128_quant.tflite';
const PHOTOS = [
  'hot_dog.jpg',
  'cat_720p.jpg',
  'kite_and_cold.jpg',
  'grace_hopper.bmp',
  'bird.bmp',
  'dragonfly.bmp',
  'face.jpg',
  'missvickie_potato_chips.bmp',
];
test('real data: the int8 Coral MobileNet v1 gives the same classes in onnxruntime-web as in onnxruntime-node', {
  skip: needs(V1, ...PHOTOS.map((f) => `models/coral/${f}`)),
}, async () => {
  const dir = join(tmp, 'v1'),
    out = join(tmp, 'v1-int8');
  mkdirSync(dir, { recursive: true });
  const g = loadModel(asset(V1));
  writeOnnx(g, join(dir, 'model.onnx'));
  const photos = PHOTOS.map((f) => asset(`models/coral/${f}`));
  const r = await exportInt8(dir, out, { images: photos }, { method: 'minmax' });
  assert.ok((r.summary.quantized['Conv'] ?? 0) > 10);
  const x = await imagesToTensor(photos, getPreprocess(g)!);
  const input = g.dataInputs()[0]!.name,
    name = g.outputs[0]!.name;
  const { web, node } = await bothRuntimes(r.path, { [input]: x });
  const K = node[name]!.length / photos.length;
  const c = compare(web[name]!, node[name]!, K);
  assert.equal(c.topAgree, c.rows, `top-1 differs on ${c.rows - c.topAgree} of ${c.rows} photos`);
  assert.ok(c.maxAbs < 1e-3, `max |Δ| of '${name}' between onnxruntime-web and onnxruntime-node: ${c.maxAbs}`);
});
