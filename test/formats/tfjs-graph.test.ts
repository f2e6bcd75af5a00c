/**
 * TF.js graph-model import, checked against TF.js itself: nsfwjs's MobileNetV2Mid (a graph model: _FusedConv2D,
 * FusedDepthwiseConv2dNative, AddV2, AvgPool, Squeeze, _FusedMatMul, Softmax…) is loaded with @tensorflow/tfjs
 * (pure-JS CPU backend) through the package's own bundle modules and tf.io.fromMemory, so the reference never
 * goes through Graft's reader; both run the same random input (NHWC for tfjs, NCHW for Graft). Tolerances:
 * max |Δ| ≤ 1e-5 on the softmax output, ≤ 1e-4·max(1, max|y|) on the logits and on an inner NHWC activation.
 * A small synthetic graph model covers the ops MobileNetV2Mid does not use (Pad, Mean, ConcatV2, Reshape,
 * MaxPool, FusedBatchNormV3, Relu, MatMul with transpose_b).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { readNsfwjs } from '../../src/formats/tfjs.js';
import { importTfjsGraphModel } from '../../src/formats/tfjs-graph.js';
import { getLabels, getPreprocess } from '../../src/formats/preprocess.js';
import { checkModel } from '../../src/autodiff/check-model.js';
import { Session } from '../../src/runtime/session.js';
import type { Graph } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { GraftError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/random.js';
import { toNchw, maxAbsDiff, maxAbs } from '../helpers/compare.js';

const warn = console.warn;
console.warn = () => {};
await tf.setBackend('cpu');
await tf.ready();
tf.tensor([0]).dispose();
console.warn = warn;

function uniform(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r.uniform());
}

async function runGraft(
  g: Graph,
  nhwc: Float32Array,
  dims: number[],
  outputs = g.outputs.map((o) => o.name),
): Promise<Float32Array[]> {
  const g2 = g.clone();
  g2.outputs = outputs.map((name) => g.outputs.find((o) => o.name === name) ?? { name });
  const s = await Session.fromGraph(g2);
  const [n, h, w, c] = dims as [number, number, number, number];
  const x =
    dims.length === 4
      ? { dtype: 'float32' as const, dims: [n, c, h, w], data: toNchw(nhwc, dims) }
      : { dtype: 'float32' as const, dims, data: nhwc };
  const r = await s.run({ [g.inputs[0]!.name]: x });
  await s.release();
  return outputs.map((o) => r[o]!.data as Float32Array);
}

async function runTfjs(
  m: tf.GraphModel,
  nhwc: Float32Array,
  dims: number[],
  outputs: string[],
): Promise<{ data: Float32Array; shape: number[] }[]> {
  const x = tf.tensor(nhwc, dims);
  const y = m.execute(x, outputs);
  const ys = Array.isArray(y) ? y : [y];
  const out = await Promise.all(ys.map(async (t) => ({ data: Float32Array.from(await t.data()), shape: t.shape })));
  x.dispose();
  ys.forEach((t) => t.dispose());
  return out;
}

async function tfjsMid(): Promise<{
  model: tf.GraphModel;
  json: { modelTopology: { node: { name: string; op: string }[] } };
}> {
  const def = (await import('nsfwjs/models/mobilenet_v2_mid')).MobileNetV2MidModel;
  const json = (await def.modelJson()).default as {
    modelTopology: { node: { name: string; op: string }[] };
    format: string;
    userDefinedMetadata?: { signature?: object };
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const shards: Buffer[] = [];
  for (const load of def.weightBundles) shards.push(Buffer.from((await load()).default as string, 'base64'));
  const bin = Buffer.concat(shards);
  const model = await tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      format: json.format,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      userDefinedMetadata: json.userDefinedMetadata,
    } as tf.io.ModelArtifacts),
  );
  return { model, json };
}

let mid: Graph | undefined;
const midGraph = () => (mid ??= readNsfwjs('MobileNetV2Mid'));

test('nsfwjs MobileNetV2Mid (graph model): matches tfjs on outputs, logits and an inner activation', async () => {
  const g = midGraph();
  assert.deepEqual(
    g.inputs.map((i) => i.shape),
    [['batch', 3, 224, 224]],
  );
  assert.deepEqual(
    g.outputs.map((o) => o.shape),
    [['batch', 5]],
  );
  assert.ok(!g.nodes.some((n) => n.opType === 'Transpose'), 'a conv net held NCHW needs no Transpose');
  assert.deepEqual(getLabels(g), ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']);
  assert.equal(getPreprocess(g)?.width, 224);
  const { model, json } = await tfjsMid();
  const inner = json.modelTopology.node.find((n) => n.name.endsWith('MobilenetV2/Conv_1/Relu6'))!.name;
  const logits = 'StatefulPartitionedCall/sequential/dense/BiasAdd';
  const dims = [2, 224, 224, 3];
  const x = uniform(2 * 224 * 224 * 3, 7);
  const [ref, refLogits, refInner] = await runTfjs(model, x, dims, ['Identity', logits, inner]);
  const [got, gotLogits, gotInner] = await runGraft(g, x, dims, [g.outputs[0]!.name, logits, inner]);
  const dOut = maxAbsDiff(got!, ref!.data);
  const dLog = maxAbsDiff(gotLogits!, refLogits!.data);
  const dIn = maxAbsDiff(gotInner!, toNchw(refInner!.data, refInner!.shape));
  console.log(
    `MobileNetV2Mid: max |graft − tfjs| = ${dOut.toExponential(2)} on softmax, ${dLog.toExponential(2)} on logits ` +
      `(max |y| ${maxAbs(refLogits!.data).toFixed(3)}), ${dIn.toExponential(2)} on Conv_1/Relu6 (max |y| ${maxAbs(refInner!.data).toFixed(3)})`,
  );
  assert.ok(dOut <= 1e-5, `softmax differs by ${dOut}`);
  assert.ok(dLog <= 1e-4 * Math.max(1, maxAbs(refLogits!.data)), `logits differ by ${dLog}`);
  assert.ok(dIn <= 1e-4 * Math.max(1, maxAbs(refInner!.data)), `inner activation differs by ${dIn}`);
  model.dispose();
});

test('nsfwjs MobileNetV2Mid: every operator has a gradient rule, gradients agree with finite differences', async () => {
  const r = await checkModel(midGraph(), { params: 2, samples: 3 });
  assert.deepEqual(r.missing, [], `operators without gradient rules: ${r.missing.join(', ')}`);
  assert.ok(r.gradcheck, 'no gradient check ran');
  // as for the layers MobileNetV2 (test/formats/tfjs.test.ts): Conv runs in float32 even in the float64 check
  assert.ok(
    r.gradcheck.worst < 0.15,
    `worst relative error ${r.gradcheck.worst}: ${JSON.stringify(r.gradcheck.entries)}`,
  );
});

/* ---- a synthetic graph model for the operators MobileNetV2Mid does not use ---- */

const b64 = (s: string) => Buffer.from(s).toString('base64');
const ilist = (v: number[]) => ({ list: { i: v.map(String) } });
const F = { type: 'DT_FLOAT' };

function synthetic(): {
  json: object;
  weights: Map<string, Tensor>;
  specs: tf.io.WeightsManifestEntry[];
  data: ArrayBuffer;
} {
  const w = new Map<string, Tensor>();
  const add = (name: string, dims: number[], seed: number, lo = -1, hi = 1) => {
    const n = dims.reduce((a, b) => a * b, 1);
    w.set(name, { dtype: 'float32', dims, data: uniform(n, seed, lo, hi) });
  };
  add('k1', [3, 3, 3, 4], 1);
  add('bn_scale', [4], 2, 0.5, 1.5);
  add('bn_offset', [4], 3);
  add('bn_mean', [4], 4);
  add('bn_var', [4], 5, 0.5, 2);
  add('k2', [1, 1, 8, 6], 6);
  add('bias2', [6], 7);
  add('dense', [5, 6], 8);
  add('scale3', [8], 9);
  add('dense2', [72, 5], 10);
  const ints = (name: string, v: number[], dims: number[]) =>
    w.set(name, { dtype: 'float32', dims, data: Float32Array.from(v) });
  ints('pads', [0, 0, 1, 2, 2, 1, 0, 0], [4, 2]);
  ints('axis', [3], []);
  ints('mean_axes', [1, 2], [2]);
  ints('shape', [-1, 6], [2]);
  ints('shape72', [-1, 72], [2]);
  const C = (name: string, dtype = 'DT_FLOAT') => ({
    name,
    op: 'Const',
    attr: { dtype: { type: dtype }, value: { tensor: { dtype } } },
  });
  const nodes = [
    {
      name: 'x',
      op: 'Placeholder',
      attr: { dtype: F, shape: { shape: { dim: [{ size: '-1' }, { size: '11' }, { size: '9' }, { size: '3' }] } } },
    },
    C('k1'),
    C('bn_scale'),
    C('bn_offset'),
    C('bn_mean'),
    C('bn_var'),
    C('k2'),
    C('bias2'),
    C('dense'),
    C('scale3'),
    C('pads', 'DT_INT32'),
    C('axis', 'DT_INT32'),
    C('mean_axes', 'DT_INT32'),
    C('shape', 'DT_INT32'),
    C('dense2'),
    C('shape72', 'DT_INT32'),
    { name: 'pad', op: 'Pad', input: ['x', 'pads'], attr: { T: F } },
    {
      name: 'conv1',
      op: 'Conv2D',
      input: ['pad', 'k1'],
      attr: {
        T: F,
        strides: ilist([1, 2, 2, 1]),
        padding: { s: b64('SAME') },
        data_format: { s: b64('NHWC') },
        dilations: ilist([1, 1, 1, 1]),
      },
    },
    {
      name: 'bn',
      op: 'FusedBatchNormV3',
      input: ['conv1', 'bn_scale', 'bn_offset', 'bn_mean', 'bn_var'],
      attr: { T: F, epsilon: { f: 0.001 }, data_format: { s: b64('NHWC') } },
    },
    { name: 'relu', op: 'Relu', input: ['bn'], attr: { T: F } },
    {
      name: 'pool',
      op: 'MaxPool',
      input: ['relu'],
      attr: {
        T: F,
        ksize: ilist([1, 3, 3, 1]),
        strides: ilist([1, 2, 2, 1]),
        padding: { s: b64('SAME') },
        data_format: { s: b64('NHWC') },
      },
    },
    {
      name: 'apool',
      op: 'AvgPool',
      input: ['relu'],
      attr: {
        T: F,
        ksize: ilist([1, 3, 3, 1]),
        strides: ilist([1, 2, 2, 1]),
        padding: { s: b64('SAME') },
        data_format: { s: b64('NHWC') },
      },
    },
    { name: 'cat', op: 'ConcatV2', input: ['pool', 'apool', 'axis'], attr: { T: F, N: { i: '2' } } },
    { name: 'scaled', op: 'Mul', input: ['cat', 'scale3'], attr: { T: F } },
    {
      name: 'conv2',
      op: 'Conv2D',
      input: ['scaled', 'k2'],
      attr: {
        T: F,
        strides: ilist([1, 1, 1, 1]),
        padding: { s: b64('VALID') },
        data_format: { s: b64('NHWC') },
        dilations: ilist([1, 1, 1, 1]),
      },
    },
    { name: 'biased', op: 'BiasAdd', input: ['conv2', 'bias2'], attr: { T: F, data_format: { s: b64('NHWC') } } },
    { name: 'r6', op: 'Relu6', input: ['biased'], attr: { T: F } },
    { name: 'mean', op: 'Mean', input: ['r6', 'mean_axes'], attr: { T: F, keep_dims: { b: true } } },
    { name: 'sq', op: 'Squeeze', input: ['mean'], attr: { T: F, squeeze_dims: ilist([1, 2]) } },
    { name: 'flat', op: 'Reshape', input: ['sq', 'shape'], attr: { T: F } },
    {
      name: 'logits',
      op: 'MatMul',
      input: ['flat', 'dense'],
      attr: { T: F, transpose_a: { b: false }, transpose_b: { b: true } },
    },
    { name: 'flat2', op: 'Reshape', input: ['r6', 'shape72'], attr: { T: F } },
    {
      name: 'logits2',
      op: 'MatMul',
      input: ['flat2', 'dense2'],
      attr: { T: F, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    { name: 'sum', op: 'AddV2', input: ['logits', 'logits2'], attr: { T: F } },
    { name: 'probs', op: 'Softmax', input: ['sum'], attr: { T: F } },
  ];
  const specs: tf.io.WeightsManifestEntry[] = [];
  const parts: Buffer[] = [];
  for (const [name, t] of w) {
    const isInt = ['pads', 'axis', 'mean_axes', 'shape', 'shape72'].includes(name);
    specs.push({ name, shape: t.dims, dtype: isInt ? 'int32' : 'float32' });
    const arr = isInt ? Int32Array.from(t.data as Float32Array) : (t.data as Float32Array);
    parts.push(Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
  }
  const bin = Buffer.concat(parts);
  return {
    json: { format: 'graph-model', modelTopology: { node: nodes, versions: { producer: 175 } } },
    weights: w,
    specs,
    data: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  };
}

test('synthetic graph model (Pad, Conv2D SAME stride 2, FusedBatchNormV3, MaxPool/AvgPool SAME, ConcatV2, Mean keep_dims + Squeeze, Reshape of NHWC memory, MatMul): matches tfjs', async () => {
  const s = synthetic();
  const g = importTfjsGraphModel(s.json, s.weights, 'synthetic');
  const model = await tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: (s.json as { modelTopology: object }).modelTopology,
      weightSpecs: s.specs,
      weightData: s.data,
      format: 'graph-model',
    } as tf.io.ModelArtifacts),
  );
  const dims = [2, 11, 9, 3];
  const x = uniform(2 * 11 * 9 * 3, 11, -1, 1);
  const [ref, refCat, refL2] = await runTfjs(model, x, dims, ['probs', 'cat', 'logits2']);
  const [got, gotCat, gotL2] = await runGraft(g, x, dims, [g.outputs[0]!.name, 'cat', 'logits2']);
  const d = maxAbsDiff(got!, ref!.data),
    dc = maxAbsDiff(gotCat!, toNchw(refCat!.data, refCat!.shape)),
    dl = maxAbsDiff(gotL2!, refL2!.data);
  console.log(
    `synthetic: max |graft − tfjs| = ${d.toExponential(2)} on softmax, ${dc.toExponential(2)} on the concat, ${dl.toExponential(2)} after the NHWC reshape`,
  );
  assert.ok(d <= 1e-5 && dc <= 1e-5 && dl <= 1e-4, `${d} ${dc} ${dl}`);
  assert.equal(
    g.nodes.filter((n) => n.opType === 'Transpose').length,
    1,
    'one Transpose, before the Reshape of a rank-4 tensor',
  );
  const r = await checkModel(g, { params: 2, samples: 3 });
  assert.deepEqual(r.missing, []);
  model.dispose();
});

test('an unknown op is an error naming the op and the node', () => {
  const s = synthetic();
  const j = s.json as { modelTopology: { node: { name: string; op: string }[] } };
  j.modelTopology.node.find((n) => n.name === 'relu')!.op = 'Selu';
  assert.throws(
    () => importTfjsGraphModel(j, s.weights, 'synthetic'),
    (e: Error) => e instanceof GraftError && /'relu'/.test(e.message) && /Selu/.test(e.message),
  );
});
