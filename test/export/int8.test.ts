/**
 * int8 export (src/export/quantize.ts, calibrate.ts): calibration methods on known histograms, the
 * QDQ graph structure, a small network quantized and compared with its float self, a classifier
 * folder through `graft export --int8` and `graft predict` with its metadata kept, and a real
 * quantized MobileNet (Coral TFLite) whose int8 copy agrees with the float one on real photos.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { Graph, type Node } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { Histogram, rangeOf, qparams, entropyThreshold } from '../../src/export/calibrate.js';
import { exportInt8, foldConstants, quantizeStatic, quantizeWeight, weightGrid } from '../../src/export/quantize.js';
import { readOnnx, writeOnnx } from '../../src/formats/onnx.js';
import {
  getLabels,
  getPreprocess,
  setLabels,
  setPreprocess,
  type ImagePreprocess,
} from '../../src/formats/preprocess.js';
import { loadModel } from '../../src/formats/load.js';
import { imagesToTensor } from '../../src/data/image.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { GraftError } from '../../src/util/errors.js';
import { injectWriteFailure } from '../../src/util/atomic.js';
import { graft } from '../helpers/cli.js';
import { asset, needs } from '../helpers/assets.js';
import { node } from '../helpers/op-graph.js';

const tmp = mkdtempSync(join(tmpdir(), 'graft-int8-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('histogram: min-max is exact, growth keeps every count, percentile drops outliers, entropy clips a long tail', () => {
  const rng = new Rng(1);
  const h = new Histogram();
  const xs = Float32Array.from({ length: 20000 }, () => rng.normal());
  h.add(xs.subarray(0, 100)); // small first batch: the range doubles later
  h.add(xs.subarray(100));
  h.add(Float32Array.from([40, -3])); // two outliers
  assert.equal(h.count, 20002);
  assert.equal(
    h.bins.reduce((a, b) => a + b, 0),
    20002,
  );
  const mm = rangeOf(h, { method: 'minmax' });
  assert.equal(mm.hi, 40);
  assert.equal(mm.lo, Math.min(-3, Math.min(...xs)));
  const p = rangeOf(h, { method: 'percentile', percentile: 99.9 });
  assert.ok(p.hi < 4 && p.hi > 2.5, `percentile hi ${p.hi}`);
  assert.ok(p.lo > -4 && p.lo < -2.5, `percentile lo ${p.lo}`);
  const e = rangeOf(h, { method: 'entropy' });
  assert.ok(e.hi < 40 && e.hi > 1.5, `entropy threshold ${e.hi}`);
  // non-negative data: the range starts at 0 and the zero point is exactly the lowest level
  const r = new Histogram();
  r.add(Float32Array.from({ length: 1000 }, (_, i) => (i % 7) * 0.5));
  assert.deepEqual(rangeOf(r, { method: 'minmax' }), { lo: 0, hi: 3 });
  assert.deepEqual(qparams({ lo: 0, hi: 6 }, 'uint8'), { scale: Math.fround(6 / 255), zeroPoint: 0 });
  assert.equal(qparams({ lo: 0, hi: 6 }, 'int8').zeroPoint, -128);
  assert.ok(Math.abs(qparams({ lo: -1, hi: 1 }, 'uint8').zeroPoint - 127.5) <= 0.5);
});

test('entropy threshold: a flat histogram keeps everything, a long tail is cut', () => {
  const flat = new Float64Array(2048).fill(0);
  for (let i = 0; i < 512; i++) flat[i] = 100;
  assert.equal(entropyThreshold(flat, 128), 512);
  const tail = new Float64Array(2048);
  for (let i = 0; i < 2048; i++) tail[i] = Math.round(1e6 * Math.exp(-i / 40)) + (i === 2047 ? 1 : 0);
  const t = entropyThreshold(tail, 128);
  assert.ok(t < 2047 && t >= 128, `threshold ${t}`);
});

test('weights: per-channel symmetric int8 along the axis; a uint8 grid is found and kept exactly', () => {
  const w: Tensor = { dtype: 'float32', dims: [2, 3], data: Float32Array.from([1, -0.5, 0.25, 100, 50, -100]) };
  const { q, scales } = quantizeWeight(w, 0);
  assert.equal(scales.length, 2);
  for (let i = 0; i < 6; i++)
    assert.ok(Math.abs(q[i]! * scales[Math.floor(i / 3)]! - (w.data as Float32Array)[i]!) < 1e-6);
  const c = quantizeWeight(w, 1);
  assert.equal(c.scales.length, 3);
  const grid: Tensor = {
    dtype: 'float32',
    dims: [16, 16],
    data: Float32Array.from({ length: 256 }, (_, i) => Math.fround(0.0123 * (((i * 37) % 200) - 60))),
  };
  const gq = weightGrid(grid)!;
  assert.ok(gq, 'grid not found');
  assert.equal(gq.zeroPoint, 60);
  const rng = new Rng(2);
  assert.equal(
    weightGrid({ dtype: 'float32', dims: [300], data: Float32Array.from({ length: 300 }, () => rng.normal()) }),
    undefined,
  );
  // with the grid's step: channels whose steps fit −128…127 keep it exactly, the others are rounded
  const s = 0.0123;
  const k = [
    [-60, 0, 127, 5],
    [-128, 3, 9, -1],
    [-60, 135, 2, 0],
  ]; // channel 2 reaches 135 steps: not int8
  const wg: Tensor = { dtype: 'float32', dims: [3, 4], data: Float32Array.from(k.flat(), (v) => Math.fround(v * s)) };
  const r = quantizeWeight(wg, 0, false, Math.fround(s));
  assert.equal(r.exactChannels, 2);
  assert.deepEqual([...r.scales.slice(0, 2)], [Math.fround(s), Math.fround(s)]);
  assert.deepEqual([...r.q.slice(0, 8)], k.slice(0, 2).flat());
  assert.notEqual(r.scales[2], Math.fround(s));
  assert.ok(Math.max(...r.q.slice(8)) <= 127);
});

const PRE: ImagePreprocess = {
  layout: 'NCHW',
  width: 8,
  height: 8,
  channels: 3,
  channelOrder: 'RGB',
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  resize: 'stretch',
  source: 'flag',
};

/** x [batch,3,8,8] → Conv 3×3 (8) → Relu → Conv 1×1 (8) → Add residual → GlobalAveragePool → Flatten → MatMul(Transpose(W)) → Gemm → Softmax */
function net(): Graph {
  const rng = new Rng(5);
  const w = (dims: number[], s: number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => rng.normal() * s),
  });
  const g = new Graph();
  g.name = 'int8-net';
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 3, 8, 8] });
  g.outputs.push({ name: 'probabilities', dtype: 'float32', shape: ['batch', 4] });
  for (const [k, t] of Object.entries({
    'c1.w': w([8, 3, 3, 3], 0.3),
    'c1.b': w([8], 0.1),
    'c2.w': w([8, 8, 1, 1], 0.3),
    'c2.b': w([8], 0.1),
    wt: w([8, 8], 0.4),
    'fc.w': w([4, 8], 0.5),
    'fc.b': w([4], 0.1),
  }))
    g.initializers.set(k, t);
  g.nodes.push(
    node('c1', 'Conv', ['x', 'c1.w', 'c1.b'], ['h1'], { pads: { type: 'ints', value: [1, 1, 1, 1] } }),
    node('r1', 'Relu', ['h1'], ['a1']),
    node('c2', 'Conv', ['a1', 'c2.w', 'c2.b'], ['h2']),
    node('add', 'Add', ['h2', 'a1'], ['s']),
    node('gap', 'GlobalAveragePool', ['s'], ['p']),
    node('flat', 'Flatten', ['p'], ['f']),
    node('tr', 'Transpose', ['wt'], ['wtT'], { perm: { type: 'ints', value: [1, 0] } }),
    node('mm', 'MatMul', ['f', 'wtT'], ['m']),
    node('fc', 'Gemm', ['m', 'fc.w', 'fc.b'], ['logits'], { transB: { type: 'int', value: 1 } }),
    node('sm', 'Softmax', ['logits'], ['probabilities'], { axis: { type: 'int', value: 1 } }),
  );
  setPreprocess(g, PRE);
  setLabels(g, ['a', 'b', 'c', 'd']);
  return g;
}

function batch(seed: number, n: number): Tensor {
  const rng = new Rng(seed);
  return {
    dtype: 'float32',
    dims: [n, 3, 8, 8],
    data: Float32Array.from({ length: n * 192 }, () => Math.max(-1, Math.min(1, rng.normal() * 0.5))),
  };
}

test('QDQ structure: int8 per-channel weights behind DequantizeLinear, int32 biases, Q/DQ on activations, float head, metadata kept; close to float', async () => {
  const g = net();
  const r = await quantizeStatic(g, [{ x: batch(1, 16) }, { x: batch(2, 16) }], { method: 'minmax' });
  const q = r.graph;
  assert.deepEqual(r.summary.quantized, { Conv: 2, MatMul: 1 });
  assert.deepEqual(
    r.summary.float.map((f) => f.node),
    ['fc'],
  ); // the output layer stays float
  assert.ok(!q.nodes.some((n) => n.opType === 'Transpose'), 'Transpose of a weight is folded');
  const prod = q.producers();
  for (const name of ['c1', 'c2', 'mm']) {
    const node = q.nodes.find((n) => n.name === name)!;
    const kinds = node.inputs.map((i) => prod.get(i)?.opType);
    assert.ok(
      kinds.every((k) => k === 'DequantizeLinear'),
      `${name} inputs from ${kinds.join(',')}`,
    );
    const wdq = prod.get(node.inputs[1]!)!;
    const wq = q.initializers.get(wdq.inputs[0]!)!;
    assert.equal(wq.dtype, 'int8');
    assert.equal(wdq.inputs.length, 2, 'symmetric weights: no zero point input');
    const axis = wdq.attrs['axis'];
    assert.deepEqual(axis, { type: 'int', value: name === 'mm' ? 1 : 0 });
    assert.equal(q.initializers.get(wdq.inputs[1]!)!.dims[0], 8);
    const xdq = prod.get(node.inputs[0]!)!;
    assert.equal(prod.get(xdq.inputs[0]!)!.opType, 'QuantizeLinear');
    assert.equal(q.initializers.get(xdq.inputs[2]!)!.dtype, 'uint8');
  }
  const c1 = q.nodes.find((n) => n.name === 'c1')!;
  assert.equal(q.initializers.get(prod.get(c1.inputs[2]!)!.inputs[0]!)!.dtype, 'int32');
  // c1's output is quantized after its Relu (its only consumer), not before
  assert.ok(q.nodes.some((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === 'a1'));
  assert.ok(!q.nodes.some((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === 'h1'));
  assert.deepEqual(getPreprocess(q), PRE);
  assert.deepEqual(getLabels(q), ['a', 'b', 'c', 'd']);
  assert.equal(JSON.parse(q.metadata['graft.quantization']!).method, 'minmax');
  // numerically close to the float network on unseen inputs
  const x = batch(9, 32);
  const a = (await (await Session.fromGraph(g)).run({ x }))['probabilities']!.data as Float32Array;
  const b = (await (await Session.fromGraph(q)).run({ x }))['probabilities']!.data as Float32Array;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  assert.ok(m < 0.05, `max |Δp| ${m}`);
  assert.ok(m > 0, 'the int8 graph computes exactly the float result: nothing was quantized');
});

test('onnxruntime fuses the QDQ graph into integer kernels (QLinearConv, no float Conv left)', async () => {
  const r = await quantizeStatic(net(), [{ x: batch(1, 16) }], { method: 'minmax' });
  const src = join(tmp, 'fuse.onnx'),
    opt = join(tmp, 'fuse-optimized.onnx');
  writeOnnx(r.graph, src);
  const s = await ort.InferenceSession.create(src, {
    graphOptimizationLevel: 'all',
    optimizedModelFilePath: opt,
    logSeverityLevel: 3,
  });
  await s.release();
  const ops = readOnnx(opt).nodes.map((n) => n.opType);
  assert.equal(ops.filter((o) => o === 'QLinearConv').length, 2, ops.join(','));
  assert.ok(!ops.includes('Conv'), `a float Conv is left: ${ops.join(',')}`);
  assert.ok(
    ops.includes('MatMulIntegerToFloat') || ops.includes('QLinearMatMul'),
    `the MatMul is not fused: ${ops.join(',')}`,
  );
});

test('foldConstants turns Constant nodes into initializers', () => {
  const g = net();
  g.nodes.unshift({
    name: 'k',
    opType: 'Constant',
    domain: '',
    inputs: [],
    outputs: ['kk'],
    attrs: { value: { type: 'tensor', value: { dtype: 'float32', dims: [8, 8], data: new Float32Array(64) } } },
  });
  g.nodes.find((n) => n.name === 'tr')!.inputs[0] = 'kk';
  const f = foldConstants(g);
  assert.ok(!f.nodes.some((n) => n.opType === 'Constant' || n.opType === 'Transpose'));
  assert.deepEqual(f.initializers.get('wtT')!.dims, [8, 8]);
});

test('graft export --int8 writes a folder that graft predict reads, labels and preprocessing kept', async () => {
  const dir = join(tmp, 'clf'),
    data = join(tmp, 'imgs'),
    out = join(tmp, 'clf-int8');
  mkdirSync(dir, { recursive: true });
  writeOnnx(net(), join(dir, 'model.onnx'));
  writeFileSync(join(dir, 'labels.json'), JSON.stringify(['a', 'b', 'c', 'd']));
  const rng = new Rng(4);
  for (const cls of ['a', 'b']) {
    mkdirSync(join(data, cls), { recursive: true });
    for (let i = 0; i < 6; i++)
      await sharp(Buffer.from(Uint8Array.from({ length: 8 * 8 * 3 }, () => rng.int(256))), {
        raw: { width: 8, height: 8, channels: 3 },
      })
        .png()
        .toFile(join(data, cls, `${i}.png`));
  }
  const r = JSON.parse(
    (await graft(['export', '--int8', dir, out, '--calibration', data, '--method', 'percentile', '--json'])).stdout,
  );
  assert.equal(r.method, 'percentile');
  assert.equal(r.calibrationExamples, 12);
  assert.ok(existsSync(join(out, 'quantization.json')));
  const q = readOnnx(join(out, 'model.onnx'));
  assert.deepEqual(getLabels(q), ['a', 'b', 'c', 'd']);
  assert.deepEqual(getPreprocess(q), PRE);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), ['a', 'b', 'c', 'd']);
  const img = join(data, 'a', '0.png');
  const pq = JSON.parse((await graft(['predict', '--model', out, img, '--json'])).stdout);
  const pf = JSON.parse((await graft(['predict', '--model', dir, img, '--json'])).stdout);
  assert.equal(pq[0].top.length, 3);
  assert.equal(pq[0].top[0].label, pf[0].top[0].label);
  const exp = await exportInt8(dir, join(tmp, 'x'), { texts: ['a'] }).catch((e: Error) => e);
  assert.match(String(exp), /image classifier: calibrate it on images/);
});

/**
 * x [batch,4,8] → LayerNorm → h; h → MatMul(W1) + b1 → m; Add(h, m) (residual) → y (Reshape to Shape(h));
 * y → MatMul(W2) → z; Add(h, y) → p (an Add of two quantized values).
 */
function block(): Graph {
  const rng = new Rng(8);
  const w = (dims: number[], s: number) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => rng.normal() * s),
  });
  const g = new Graph();
  g.name = 'int8-block';
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 4, 8] });
  g.outputs.push(
    { name: 'y', dtype: 'float32', shape: ['batch', 4, 8] },
    { name: 'z', dtype: 'float32' },
    { name: 'p', dtype: 'float32' },
  );
  for (const [k, t] of Object.entries({
    gamma: w([8], 0.5),
    beta: w([8], 0.1),
    w1: w([8, 8], 0.4),
    b1: w([8], 0.1),
    w2: w([8, 8], 0.4),
  }))
    g.initializers.set(k, t);
  g.nodes.push(
    node('ln', 'LayerNormalization', ['x', 'gamma', 'beta'], ['h'], { axis: { type: 'int', value: -1 } }),
    node('mm1', 'MatMul', ['h', 'w1'], ['m0']),
    node('bias', 'Add', ['m0', 'b1'], ['m']),
    node('res', 'Add', ['h', 'm'], ['s']),
    node('shape', 'Shape', ['h'], ['hs']),
    node('rs', 'Reshape', ['s', 'hs'], ['y']),
    node('mm2', 'MatMul', ['y', 'w2'], ['z']),
    node('pair', 'Add', ['h', 'y'], ['p']),
  );
  return g;
}

test("only quantized consumers read a MatMul input's dequantized copy; a residual Add and a Shape keep the float value; Conv outputs stay quantized for every consumer", async () => {
  const rng = new Rng(3);
  const x = () => ({
    x: { dtype: 'float32' as const, dims: [6, 4, 8], data: Float32Array.from({ length: 192 }, () => rng.normal()) },
  });
  const cal = [x(), x()];
  const r = await quantizeStatic(block(), cal, { method: 'minmax', keepOutputLayer: false });
  const q = r.graph;
  assert.deepEqual(r.summary.quantized, { MatMul: 2 });
  const prod = q.producers();
  const node = (name: string) => q.nodes.find((v) => v.name === name)!;
  assert.equal(prod.get(node('mm1').inputs[0]!)!.opType, 'DequantizeLinear');
  assert.equal(prod.get(node('mm2').inputs[0]!)!.opType, 'DequantizeLinear');
  assert.deepEqual(node('res').inputs, ['h', 'm'], 'the residual Add reads the float LayerNorm output');
  assert.deepEqual(node('shape').inputs, ['h']);
  // an Add of two quantized values reads both dequantized (it can fuse into QLinearAdd)
  assert.deepEqual(
    node('pair').inputs.map((i) => prod.get(i)?.opType),
    ['DequantizeLinear', 'DequantizeLinear'],
  );
  // the Q/DQ pair of h is read by the MatMul alone
  const dqOfH = q.nodes.filter((v) => v.opType === 'DequantizeLinear' && prod.get(v.inputs[0]!)?.inputs[0] === 'h');
  assert.equal(dqOfH.length, 1);
  assert.deepEqual(
    q.nodes
      .filter((v) => v.inputs.includes(dqOfH[0]!.outputs[0]!))
      .map((v) => v.name)
      .sort(),
    ['mm1', 'pair'],
  );
  // close to the float block on a calibration batch (no clipping)
  const a = await Session.fromGraph(block()),
    b = await Session.fromGraph(q);
  const f = cal[0]!;
  const ya = (await a.run(f))['y']!.data as Float32Array,
    yb = (await b.run(f))['y']!.data as Float32Array;
  let m = 0;
  for (let i = 0; i < ya.length; i++) m = Math.max(m, Math.abs(ya[i]! - yb[i]!));
  assert.ok(m > 0 && m < 0.1, `max |Δy| ${m}`);
  await a.release();
  await b.release();
  // the image network: the residual Add of two Conv outputs reads both dequantized (it fuses into QLinearAdd)
  const qi = (await quantizeStatic(net(), [{ x: batch(1, 16) }], { method: 'minmax' })).graph;
  const pi = qi.producers();
  const add = qi.nodes.find((v) => v.name === 'add')!;
  assert.deepEqual(
    add.inputs.map((i) => pi.get(i)?.opType),
    ['DequantizeLinear', 'DequantizeLinear'],
  );
});

test('a constant scale after a product of two activations (attention Q·Kᵀ/√d) moves into the first input’s dequantization scale', async () => {
  const g = new Graph();
  g.name = 'scores';
  g.opsets = { '': 17 };
  g.inputs.push(
    { name: 'q', dtype: 'float32', shape: ['batch', 4, 8] },
    { name: 'kt', dtype: 'float32', shape: ['batch', 8, 4] },
  );
  g.outputs.push({ name: 'p', dtype: 'float32' });
  g.initializers.set('alpha', { dtype: 'float32', dims: [], data: Float32Array.from([0.125]) });
  g.nodes.push(
    node('qk', 'MatMul', ['q', 'kt'], ['s']),
    node('scale', 'Mul', ['s', 'alpha'], ['s2']),
    node('sm', 'Softmax', ['s2'], ['p'], { axis: { type: 'int', value: -1 } }),
  );
  const rng = new Rng(12);
  const feeds = () => ({
    q: { dtype: 'float32' as const, dims: [3, 4, 8], data: Float32Array.from({ length: 96 }, () => rng.normal() * 2) },
    kt: { dtype: 'float32' as const, dims: [3, 8, 4], data: Float32Array.from({ length: 96 }, () => rng.normal() * 2) },
  });
  const cal = [feeds(), feeds()];
  const r = await quantizeStatic(g, cal, { method: 'minmax', keepOutputLayer: false });
  const q = r.graph;
  assert.equal(r.summary.scalesFolded, 1);
  assert.ok(!q.nodes.some((v) => v.opType === 'Mul'), 'the scale Mul is gone');
  const prod = q.producers();
  const qk = q.nodes.find((v) => v.name === 'qk')!;
  const [d0, d1] = qk.inputs.map((i) => prod.get(i)!);
  assert.equal(d0!.opType, 'DequantizeLinear');
  assert.equal(d1!.opType, 'DequantizeLinear');
  const scale = (v: Node) => (q.initializers.get(v.inputs[1]!)!.data as Float32Array)[0]!;
  const quant = prod.get(d0!.inputs[0]!)!; // q's QuantizeLinear, with q's own scale
  assert.equal(quant.opType, 'QuantizeLinear');
  assert.equal(scale(d0!), Math.fround(0.125 * scale(quant)));
  assert.equal(q.nodes.find((v) => v.name === 'sm')!.inputs[0], 's');
  const a = await Session.fromGraph(g),
    b = await Session.fromGraph(q);
  const pa = (await a.run(cal[0]!))['p']!.data as Float32Array,
    pb = (await b.run(cal[0]!))['p']!.data as Float32Array;
  let m = 0;
  for (let i = 0; i < pa.length; i++) m = Math.max(m, Math.abs(pa[i]! - pb[i]!));
  assert.ok(m > 0 && m < 0.05, `max |Δp| ${m}`);
  await a.release();
  await b.release();
});

test('an int8 export that fails part-way (full disk) leaves the previous export folder as it was', async () => {
  const dir = join(tmp, 'clf-disk'),
    out = join(tmp, 'clf-disk-int8');
  mkdirSync(dir, { recursive: true });
  writeOnnx(net(), join(dir, 'model.onnx'));
  writeFileSync(join(dir, 'labels.json'), JSON.stringify(['a', 'b', 'c', 'd']));
  writeFileSync(join(dir, 'notes.txt'), 'copied');
  const rng = new Rng(6);
  const images: Uint8Array[] = [];
  for (let i = 0; i < 8; i++)
    images.push(
      await sharp(Buffer.from(Uint8Array.from({ length: 8 * 8 * 3 }, () => rng.int(256))), {
        raw: { width: 8, height: 8, channels: 3 },
      })
        .png()
        .toBuffer(),
    );
  const first = await exportInt8(dir, out, { images }, { method: 'minmax' });
  assert.deepEqual(
    first.files.map((f) => f.slice(out.length + 1)),
    ['model.onnx', 'labels.json', 'notes.txt', 'quantization.json'],
  );
  const before = new Map(readdirSync(out).map((f) => [f, readFileSync(join(out, f))]));
  const leftovers = () => readdirSync(tmp).filter((f) => f.includes('.tmp-') || f.includes('.old-'));
  // the model written, then the report fails; then the model itself fails
  for (const match of [/quantization\.json$/, /model\.onnx$/]) {
    injectWriteFailure({ afterBytes: 5, match });
    try {
      await assert.rejects(
        exportInt8(dir, out, { images }, { method: 'percentile' }),
        (e: unknown) => e instanceof GraftError && e.message.includes(out) && /no space left/.test(e.message),
      );
    } finally {
      injectWriteFailure(undefined);
    }
    assert.deepEqual(new Map(readdirSync(out).map((f) => [f, readFileSync(join(out, f))])), before);
    assert.deepEqual(leftovers(), []);
  }
  assert.equal(JSON.parse(readFileSync(join(out, 'quantization.json'), 'utf8')).method, 'minmax');
  // a later export that succeeds replaces the folder's files together
  await exportInt8(dir, out, { images }, { method: 'percentile' });
  assert.equal(JSON.parse(readFileSync(join(out, 'quantization.json'), 'utf8')).method, 'percentile');
  assert.equal(JSON.parse(readOnnx(join(out, 'model.onnx')).metadata['graft.quantization']!).method, 'percentile');
});

const V1 = 'models/coral/mobilenet_v1_0.25_128_quant.tflite';
test('real data: the Coral MobileNet v1 (uint8 TFLite) quantized back to int8 agrees with its float import on the Coral photos', {
  skip: needs(V1, 'models/coral/hot_dog.jpg'),
}, async () => {
  const g = loadModel(asset(V1));
  const photos = [
    'hot_dog.jpg',
    'cat_720p.jpg',
    'kite_and_cold.jpg',
    'grace_hopper.bmp',
    'bird.bmp',
    'dragonfly.bmp',
    'face.jpg',
    'missvickie_potato_chips.bmp',
  ].map((f) => asset(`models/coral/${f}`));
  const pre = getPreprocess(g)!;
  const x = await imagesToTensor(photos, pre);
  const input = g.dataInputs()[0]!.name;
  const r = await quantizeStatic(g, [{ [input]: x }], { method: 'minmax' });
  assert.ok(r.summary.exactGrids > 10, `weights on their uint8 grid: ${r.summary.exactGrids}`);
  assert.ok(
    r.summary.exactChannels > 0.95 * r.summary.gridChannels,
    `channels kept exactly: ${r.summary.exactChannels} of ${r.summary.gridChannels}`,
  );
  const prod = r.graph.producers();
  const weights = r.graph.nodes
    .filter((n) => n.opType === 'Conv' && prod.has(n.inputs[1]!))
    .map((n) => r.graph.initializers.get(prod.get(n.inputs[1]!)!.inputs[0]!)!.dtype);
  assert.equal(weights.length, r.summary.quantized['Conv']);
  assert.ok(
    weights.every((t) => t === 'int8'),
    `weight types: ${[...new Set(weights)].join(',')}`,
  );
  const name = g.outputs[0]!.name;
  const a = (await (await Session.fromGraph(g)).run({ [input]: x }))[name]!,
    b = (await (await Session.fromGraph(r.graph)).run({ [input]: x }))[name]!;
  const K = a.dims[1]!;
  const top = (t: Tensor, i: number) => {
    const d = t.data as Float32Array;
    let m = 0;
    for (let k = 1; k < K; k++) if (d[i * K + k]! > d[i * K + m]!) m = k;
    return m;
  };
  const agree = photos.filter((_, i) => top(a, i) === top(b, i)).length;
  assert.ok(agree >= 7, `top-1 agreement ${agree}/8`);
});
