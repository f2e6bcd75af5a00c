/**
 * TF.js layers import, checked against TF.js itself: every model is loaded with @tensorflow/tfjs
 * (pure-JS CPU backend, from the files through tf.io.fromMemory; nsfwjs's models through the package's
 * own bundle modules, so the reference never goes through Graft's reader), run on the same random input
 * (NHWC for tfjs, NCHW for Graft), and the outputs compared. Tolerances: max |Δ| ≤ 1e-5 on softmax
 * outputs (DoodleNet, nsfwjs, the synthetic model), ≤ 1e-4·max(1, max|y|) on Tiny Darknet's logits.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync as mkdtemp, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { readTfjs, readNsfwjs } from '../../src/formats/tfjs.js';
import { nsfwjsPackageDir, readModelBundle } from '../../src/formats/tfjs-nsfwjs.js';
import { getLabels, getPreprocess } from '../../src/formats/preprocess.js';
import { checkModel, modelGradients } from '../../src/autodiff/check-model.js';
import { Session } from '../../src/runtime/session.js';
import type { Graph } from '../../src/graph/graph.js';
import { GraftError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';
import { toNchw, maxAbsDiff, maxAbs } from '../helpers/compare.js';

// the pure-JS backend greets Node users with advice to install tfjs-node: keep the test output clean
const warn = console.warn;
console.warn = () => {};
await tf.setBackend('cpu');
await tf.ready();
tf.tensor([0]).dispose(); // the greeting comes with the first tensor written
console.warn = warn;

const temps: string[] = [];
const mkdtempSync = (prefix: string): string => {
  const d = mkdtemp(prefix);
  temps.push(d);
  return d;
};
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/* ---------------------------------------------------------------------------------------------- */

function uniform(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.uniform());
}

async function runGraft(g: Graph, nhwc: Float32Array, dims: number[]): Promise<Float32Array[]> {
  const s = await Session.fromGraph(g);
  const [n, h, w, c] = dims as [number, number, number, number];
  const r = await s.run({ [g.inputs[0]!.name]: { dtype: 'float32', dims: [n, c, h, w], data: toNchw(nhwc, dims) } });
  await s.release();
  return g.outputs.map((o) => r[o.name]!.data as Float32Array);
}

async function runTfjs(m: tf.LayersModel, nhwc: Float32Array, dims: number[]): Promise<Float32Array[]> {
  const x = tf.tensor(nhwc, dims);
  const y = m.predict(x);
  const ys = Array.isArray(y) ? y : [y as tf.Tensor];
  const out = await Promise.all(ys.map(async (t) => Float32Array.from(await t.data())));
  x.dispose();
  ys.forEach((t) => t.dispose());
  return out;
}

/** The reference: tfjs reads model.json and the shards itself (concatenated, as its HTTP loader does). */
/** tfjs complains (console.warn) about oddities of old files, e.g. a batch_input_shape on DoodleNet's second layer. */
async function quietly<T>(f: () => Promise<T>): Promise<T> {
  const w = console.warn;
  console.warn = () => {};
  try {
    return await f();
  } finally {
    console.warn = w;
  }
}

async function tfjsFromDir(dir: string): Promise<tf.LayersModel> {
  const j = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  const groups = j.weightsManifest as { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  const bin = Buffer.concat(groups.flatMap((g) => g.paths.map((p) => readFileSync(join(dir, p)))));
  return quietly(() =>
    tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: j.modelTopology,
        weightSpecs: groups.flatMap((g) => g.weights),
        weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      }),
    ),
  );
}

/** nsfwjs's own model modules (Node executes the bundles) → tfjs, as nsfwjs's JSONHandler does. */
async function tfjsFromNsfwjs(which: 'MobileNetV2' | 'InceptionV3'): Promise<tf.LayersModel> {
  const def =
    which === 'MobileNetV2'
      ? (await import('nsfwjs/models/mobilenet_v2')).MobileNetV2Model
      : (await import('nsfwjs/models/inception_v3')).InceptionV3Model;
  const json = (await def.modelJson()).default as {
    modelTopology: object;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const shards: Buffer[] = [];
  for (const load of def.weightBundles) shards.push(Buffer.from((await load()).default as string, 'base64'));
  const bin = Buffer.concat(shards);
  return quietly(() =>
    tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
        weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      }),
    ),
  );
}

/**
 * Run tfjs and Graft on one input; compare the model output and an inner layer's output (named after the
 * Keras layer in both: Graft names each layer's result after the layer), which catches differences a
 * saturated softmax would hide. Returns max |Δ| and max |y| of each.
 */
async function compareWithTfjs(g: Graph, m: tf.LayersModel, inner: string, x: Float32Array, dims: number[]) {
  const probe = tf.model({ inputs: m.inputs, outputs: [m.outputs[0]!, m.getLayer(inner).output as tf.SymbolicTensor] });
  const [refOut, refInner] = await runTfjs(probe, x, dims);
  const g2 = g.clone();
  g2.outputs = [...g.outputs, { name: inner }];
  const [gotOut, gotInner] = await runGraft(g2, x, dims);
  const innerShape = (probe.outputs[1]!.shape as number[]).map((d, i) => (i === 0 ? dims[0]! : d));
  const refIn = innerShape.length === 4 ? toNchw(refInner!, innerShape) : refInner!;
  return {
    out: maxAbsDiff(gotOut!, refOut!),
    outMax: maxAbs(refOut!),
    inner: maxAbsDiff(gotInner!, refIn),
    innerMax: maxAbs(refIn),
  };
}

function report(name: string, inner: string, r: Awaited<ReturnType<typeof compareWithTfjs>>) {
  console.log(
    `${name}: max |graft − tfjs| = ${r.out.toExponential(2)} on the output (max |y| ${r.outMax.toFixed(3)}), ` +
      `${r.inner.toExponential(2)} on '${inner}' (max |y| ${r.innerMax.toFixed(3)})`,
  );
}

const DARKNET = () => asset('models/ml5/darknettiny');
const DOODLE = () => asset('models/ml5/doodlenet');
const needsDarknet = needs('models/ml5/darknettiny'),
  needsDoodle = needs('models/ml5/doodlenet');

const cache = new Map<string, Graph>();
function graph(key: string): Graph {
  let g = cache.get(key);
  if (!g) {
    g =
      key === 'darknet'
        ? readTfjs(DARKNET())
        : key === 'doodle'
          ? readTfjs(join(DOODLE(), 'model.json'))
          : readNsfwjs(key === 'mnv2' ? 'MobileNetV2' : 'InceptionV3');
    cache.set(key, g);
  }
  return g;
}

/** Graft's checkModel on the imported graph: no operator without a gradient rule, gradients agree with finite differences. */
async function assertTrainable(g: Graph, tol: number) {
  const r = await checkModel(g, { params: 2, samples: 3 });
  assert.deepEqual(r.missing, [], `operators without gradient rules: ${r.missing.join(', ')}`);
  assert.ok(r.gradcheck, 'no gradient check ran');
  assert.ok(
    r.gradcheck.entries.every((e) => e.maxAbsGrad > 0),
    JSON.stringify(r.gradcheck.entries),
  );
  // Graft runs Conv in float32 even in its float64 check, so differences through deep conv stacks carry float32 noise
  assert.ok(
    r.gradcheck.worst < tol,
    `worst relative error ${r.gradcheck.worst} (${r.precision}): ${JSON.stringify(r.gradcheck.entries)}`,
  );
}

/* ---------------------------------------------------------------------------------------------- */
/* the four target models                                                                          */

test('Tiny Darknet (ml5): matches tfjs, NCHW input, labels and preprocessing recorded, trainable', {
  skip: needsDarknet,
}, async () => {
  const g = graph('darknet');
  assert.deepEqual(
    g.inputs.map((i) => i.shape),
    [['batch', 3, 224, 224]],
  );
  assert.deepEqual(
    g.outputs.map((o) => o.shape),
    [['batch', 1000]],
  );
  assert.ok(!g.nodes.some((n) => n.opType === 'Transpose'), 'a fully convolutional net needs no Transpose');
  const labels = getLabels(g)!;
  assert.equal(labels.length, 1000);
  assert.equal(labels[0], 'kit fox');
  assert.deepEqual(getPreprocess(g), {
    layout: 'NCHW',
    width: 224,
    height: 224,
    channels: 3,
    channelOrder: 'RGB',
    mean: [0, 0, 0],
    std: [1, 1, 1],
    resize: 'stretch',
    source: 'default',
  });
  assert.equal(getPreprocess(readTfjs(DARKNET(), { preprocess: { mean: [0], std: [1] } }))!.source, 'flag');

  const dims = [2, 224, 224, 3];
  const x = uniform(2 * 224 * 224 * 3, 11);
  const r = await compareWithTfjs(g, await tfjsFromDir(DARKNET()), 'leaky_re_lu_15', x, dims);
  report('Tiny Darknet', 'leaky_re_lu_15', r);
  assert.ok(r.out <= 1e-4 * Math.max(1, r.outMax), `logits: max abs diff ${r.out}`);
  assert.ok(r.inner <= 1e-4 * Math.max(1, r.innerMax), `features: max abs diff ${r.inner}`);
  await assertTrainable(g, 0.15);
});

test('DoodleNet (ml5, Sequential): matches tfjs with one Transpose before Flatten, trainable', {
  skip: needsDoodle,
}, async () => {
  const g = graph('doodle');
  assert.deepEqual(
    g.inputs.map((i) => i.shape),
    [['batch', 1, 28, 28]],
  );
  assert.equal(g.nodes.filter((n) => n.opType === 'Transpose').length, 1);
  assert.equal(getLabels(g)!.length, 345);
  assert.equal(getLabels(g)![0], 'flashlight');
  const p = getPreprocess(g)!;
  assert.equal(p.channels, 1);
  assert.equal(p.channelOrder, 'GRAY');
  assert.equal(p.width, 28);

  const dims = [4, 28, 28, 1];
  const x = uniform(4 * 28 * 28, 12);
  const m = await tfjsFromDir(DOODLE());
  const r = await compareWithTfjs(g, m, 'dense', x, dims);
  report('DoodleNet', 'dense', r);
  assert.ok(r.out <= 1e-5, `softmax: max abs diff ${r.out}`);
  assert.ok(r.inner <= 1e-4 * Math.max(1, r.innerMax), `features: max abs diff ${r.inner}`);
  await assertTrainable(g, 0.1);

  // and the gradients of every weight equal tfjs's (L = Σ y·R), in Graft's layouts
  const R = Float32Array.from(uniform(4 * 345, 15), (v) => v - 0.5);
  const vars = m.trainableWeights;
  const { grads } = tf.variableGrads(
    () => tf.sum(tf.mul(m.predict(tf.tensor(x, dims)) as tf.Tensor, tf.tensor(R, [4, 345]))) as tf.Scalar,
    vars.map((v) => (v as unknown as { val: tf.Variable }).val),
  );
  const mine = await modelGradients(
    g,
    {
      [g.inputs[0]!.name]: { dtype: 'float32', dims: [4, 1, 28, 28], data: toNchw(x, dims) },
      R: { dtype: 'float32', dims: [4, 345], data: R },
    },
    'weighted-sum',
  );
  let worst = 0;
  for (const v of vars) {
    const ref = grads[v.name]!;
    const refData = ref.rank === 4 ? await tf.transpose(ref, [3, 2, 0, 1]).data() : await ref.data(); // HWIO → OIHW
    const got = mine.grads.get(v.originalName);
    assert.ok(got, `no Graft gradient for ${v.originalName}`);
    worst = Math.max(worst, maxAbsDiff(got.data as Float32Array, refData) / Math.max(1e-6, maxAbs(refData)));
  }
  console.log(`DoodleNet gradients (${vars.length} weights): max |graft − tfjs| / max |g| = ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-4, `relative gradient difference ${worst}`);
});

test('nsfwjs MobileNetV2 (uint8-quantized, in .min.js bundles): matches tfjs, trainable', async () => {
  const g = graph('mnv2');
  assert.deepEqual(
    g.inputs.map((i) => i.shape),
    [['batch', 3, 224, 224]],
  );
  assert.deepEqual(getLabels(g), ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']);
  assert.equal(getPreprocess(g)!.source, 'default');
  assert.ok(!g.nodes.some((n) => n.opType === 'Transpose'), 'Flatten of a 1×1 map needs no Transpose');
  const dims = [2, 224, 224, 3];
  const x = uniform(2 * 224 * 224 * 3, 13);
  const r = await compareWithTfjs(g, await tfjsFromNsfwjs('MobileNetV2'), 'flatten_1', x, dims);
  report('nsfwjs MobileNetV2', 'flatten_1', r);
  assert.ok(r.out <= 1e-5, `softmax: max abs diff ${r.out}`);
  assert.ok(r.inner <= 1e-4 * Math.max(1, r.innerMax), `features: max abs diff ${r.inner}`);
  await assertTrainable(g, 0.15);
});

test('nsfwjs InceptionV3 (299×299, batch 1): matches tfjs, trainable', async () => {
  const g = graph('incv3');
  assert.deepEqual(
    g.inputs.map((i) => i.shape),
    [['batch', 3, 299, 299]],
  );
  const p = getPreprocess(g)!;
  assert.equal(p.width, 299);
  const dims = [1, 299, 299, 3];
  const x = uniform(299 * 299 * 3, 14);
  const r = await compareWithTfjs(g, await tfjsFromNsfwjs('InceptionV3'), 'flatten_1', x, dims);
  report('nsfwjs InceptionV3', 'flatten_1', r);
  assert.ok(r.out <= 1e-5, `softmax: max abs diff ${r.out}`);
  assert.ok(r.inner <= 1e-4 * Math.max(1, r.innerMax), `features: max abs diff ${r.inner}`);
  await assertTrainable(g, 0.15);
});

test('Tiny Darknet puts a cat class in its top 5 for the cat photo', {
  skip: needs('models/ml5/darknettiny', 'models/coral/cat_720p.jpg'),
}, async () => {
  const g = graph('darknet');
  const p = getPreprocess(g)!;
  const { data, info } = await sharp(asset('models/coral/cat_720p.jpg'))
    .removeAlpha()
    .resize(p.width, p.height, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  const x = Float32Array.from(data, (v, i) => (v / 255 - p.mean[i % 3]!) / p.std[i % 3]!);
  const [logits] = await runGraft(g, x, [1, p.height, p.width, 3]);
  const labels = getLabels(g)!;
  const top5 = [...logits!.keys()]
    .sort((a, b) => logits![b]! - logits![a]!)
    .slice(0, 5)
    .map((i) => labels[i]!);
  console.log(`Tiny Darknet top 5 for cat_720p.jpg: ${top5.join(', ')}`);
  const cats = ['tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat', 'lynx', 'cougar'];
  assert.ok(
    top5.some((l) => cats.includes(l)),
    `top 5: ${top5.join(', ')}`,
  );
});

/* ---------------------------------------------------------------------------------------------- */
/* the layers the targets do not use: a functional model built and saved by tfjs itself            */

type Artifacts = { modelTopology: object; weightSpecs: tf.io.WeightsManifestEntry[]; weightData: ArrayBuffer };

async function saveArtifacts(m: tf.LayersModel): Promise<Artifacts> {
  let out: Artifacts | undefined;
  await m.save(
    tf.io.withSaveHandler(async (a) => {
      out = {
        modelTopology: a.modelTopology as object,
        weightSpecs: a.weightSpecs!,
        weightData: a.weightData as ArrayBuffer,
      };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return out!;
}

function writeModelDir(a: Artifacts, specs = a.weightSpecs, data = new Uint8Array(a.weightData)): string {
  const dir = mkdtempSync(join(tmpdir(), 'graft-tfjs-'));
  writeFileSync(
    join(dir, 'model.json'),
    JSON.stringify({ modelTopology: a.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: specs }] }),
  );
  writeFileSync(join(dir, 'weights.bin'), data);
  return dir;
}

function syntheticModel(): tf.LayersModel {
  const L = tf.layers;
  const inp = tf.input({ shape: [17, 13, 3], name: 'image' });
  const x0 = L.rescaling({ scale: 2, offset: -1 }).apply(inp) as tf.SymbolicTensor;
  const c1 = L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6' }).apply(
    x0,
  ) as tf.SymbolicTensor; // 9×7
  // (tfjs's DepthwiseConv2D ignores dilation_rate, Keras and Graft apply it: no dilated depthwise here)
  const d1 = L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'selu' }).apply(
    c1,
  ) as tf.SymbolicTensor;
  const dl = L.conv2d({
    filters: 6,
    kernelSize: 3,
    dilationRate: 2,
    padding: 'same',
    activation: 'gelu' as 'relu',
  }).apply(d1) as tf.SymbolicTensor;
  const s1 = L.separableConv2d({
    filters: 12,
    kernelSize: [3, 2],
    strides: 2,
    padding: 'same',
    activation: 'swish',
  }).apply(dl) as tf.SymbolicTensor; // 5×4
  const bn = L.batchNormalization({ center: false, scale: false, epsilon: 0.01 }).apply(s1) as tf.SymbolicTensor;
  const e = L.leakyReLU({ alpha: 0.2 }).apply(bn) as tf.SymbolicTensor;
  const z = L.zeroPadding2d({
    padding: [
      [1, 0],
      [2, 1],
    ],
  }).apply(e) as tf.SymbolicTensor; // 6×7
  const cr = L.cropping2D({
    cropping: [
      [0, 1],
      [1, 1],
    ],
  }).apply(z) as tf.SymbolicTensor; // 5×5
  const mp = L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(cr) as tf.SymbolicTensor; // 3×3×12
  const ap = L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(cr) as tf.SymbolicTensor;
  const shared = L.conv2d({ filters: 6, kernelSize: 1, activation: 'elu' });
  const sa = shared.apply(mp) as tf.SymbolicTensor;
  const sb = shared.apply(ap) as tf.SymbolicTensor;
  const sum = L.add().apply([sa, sb]) as tf.SymbolicTensor;
  const mx = L.maximum().apply([
    L.multiply().apply([sa, sb]) as tf.SymbolicTensor,
    L.average().apply([sa, sb]) as tf.SymbolicTensor,
    L.minimum().apply([sa, sb]) as tf.SymbolicTensor,
  ]) as tf.SymbolicTensor;
  const cat = L.concatenate({ axis: -1 }).apply([mp, ap, sum, mx]) as tf.SymbolicTensor; // 3×3×36
  // a nested functional model and a nested Sequential
  const subIn = tf.input({ shape: [3, 3, 36] });
  const sub = tf.model({
    name: 'sub',
    inputs: subIn,
    outputs: L.conv2d({ filters: 5, kernelSize: 2, activation: 'tanh' }).apply(subIn) as tf.SymbolicTensor,
  });
  const seq = tf.sequential({
    name: 'seq',
    layers: [
      L.permute({ inputShape: [2, 2, 5], dims: [2, 1, 3] }),
      L.flatten(),
      L.dense({ units: 9, activation: 'softsign' }),
      L.dropout({ rate: 0.5 }),
    ],
  });
  const branch = seq.apply(sub.apply(cat)) as tf.SymbolicTensor;
  const gap = L.globalAveragePooling2d({}).apply(cat) as tf.SymbolicTensor;
  const r1 = L.reshape({ targetShape: [1, 1, 36] }).apply(gap) as tf.SymbolicTensor;
  const dn = L.dense({ units: 4, activation: 'hardSigmoid' }).apply(r1) as tf.SymbolicTensor; // Dense on a rank-4 tensor
  const f1 = L.flatten().apply(dn) as tf.SymbolicTensor;
  const gm = L.globalMaxPooling2d({}).apply(cat) as tf.SymbolicTensor;
  const head = L.concatenate().apply([branch, f1, gm]) as tf.SymbolicTensor;
  const out1 = L.dense({ units: 7, activation: 'softmax', name: 'probs' }).apply(head) as tf.SymbolicTensor;
  const r2 = L.reshape({ targetShape: [4, 9, 9] }).apply(cat) as tf.SymbolicTensor; // an image output, reordered
  const out2 = L.softmax({ axis: -1 }).apply(
    L.reLU({ maxValue: 3 }).apply(r2) as tf.SymbolicTensor,
  ) as tf.SymbolicTensor;
  const m = tf.model({ inputs: inp, outputs: [out1, out2] });
  const rng = new Rng(5);
  m.setWeights(
    m.weights.map((w) => {
      const shape = w.shape as number[];
      const n = shape.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: n }, () =>
        w.name.includes('variance') ? 0.5 + rng.uniform() : rng.normal() * 0.4,
      );
      return tf.tensor(v, shape);
    }),
  );
  return m;
}

async function compareSynthetic(m: tf.LayersModel, g: Graph, seed: number): Promise<number> {
  const dims = [3, 17, 13, 3];
  const x = Float32Array.from(uniform(3 * 17 * 13 * 3, seed), (v) => v * 255);
  const ref = await runTfjs(m, x, dims);
  const got = await runGraft(g, x, dims);
  // output 2 is an image tensor: Graft holds it NCHW, tfjs NHWC
  const d1 = maxAbsDiff(got[0]!, ref[0]!);
  const d2 = maxAbsDiff(got[1]!, toNchw(ref[1]!, [3, 4, 9, 9]));
  return Math.max(d1, d2);
}

test('synthetic functional model (tfjs-built): separable/depthwise/dilated convs, pads, crops, pools, merges, nested models, shared layer, reshape/permute', async () => {
  const m = syntheticModel();
  const a = await saveArtifacts(m);
  const dir = writeModelDir(a);
  const g = readTfjs(dir);
  assert.deepEqual(
    g.inputs.map((i) => i.shape),
    [['batch', 3, 17, 13]],
  );
  assert.deepEqual(
    g.outputs.map((o) => o.shape),
    [
      ['batch', 7],
      ['batch', 9, 4, 9],
    ],
  );
  assert.equal(g.outputs[0]!.name, 'probs');
  // a Rescaling right at the input says what the model takes: raw 0–255 pixels
  const p = getPreprocess(g)!;
  assert.equal(p.source, 'file');
  assert.ok(Math.abs(p.std[0]! - 1 / 255) < 1e-12 && p.mean[0] === 0);
  const d = await compareSynthetic(m, g, 21);
  console.log(`synthetic model: max |graft − tfjs| = ${d.toExponential(2)}`);
  assert.ok(d <= 1e-5, `max abs diff ${d}`);
  const r = await checkModel(g, { params: 3, samples: 3 });
  assert.deepEqual(r.missing, []);
});

test('quantized weights (uint8, uint16, float16) are dequantized as tfjs does', async () => {
  const m = syntheticModel();
  const a = await saveArtifacts(m);
  const src = new Float32Array(a.weightData);
  const specs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  let off = 0;
  a.weightSpecs.forEach((s, k) => {
    const n = s.shape.reduce((x, y) => x * y, 1);
    const v = src.subarray(off, off + n);
    off += n;
    const kind = (['uint8', 'uint16', 'float16'] as const)[k % 3]!;
    if (kind === 'float16') {
      const h = new Uint16Array(n);
      const f = new Float32Array(1),
        u = new Uint32Array(f.buffer);
      // round-toward-zero float16 (normal range): what matters is that both readers decode the same bits
      for (let i = 0; i < n; i++) {
        f[0] = v[i]!;
        const x = u[0]!;
        h[i] = ((x >>> 16) & 0x8000) | ((((x >>> 23) & 0xff) - 112) << 10) | ((x >>> 13) & 0x3ff);
      }
      specs.push({ ...s, quantization: { dtype: 'float16' } });
      parts.push(new Uint8Array(h.buffer));
      return;
    }
    const levels = kind === 'uint8' ? 255 : 65535;
    let lo = Math.min(...v),
      hi = Math.max(...v);
    if (hi === lo) hi = lo + 1;
    const scale = (hi - lo) / levels;
    const q = kind === 'uint8' ? new Uint8Array(n) : new Uint16Array(n);
    for (let i = 0; i < n; i++) q[i] = Math.round((v[i]! - lo) / scale);
    specs.push({ ...s, quantization: { dtype: kind, scale, min: lo } });
    parts.push(new Uint8Array(q.buffer));
  });
  const bin = Buffer.concat(parts);
  const dir = writeModelDir(a, specs, bin);
  const ref = await tfjsFromDir(dir);
  const g = readTfjs(dir);
  const d = await compareSynthetic(ref, g, 22);
  assert.ok(d <= 1e-5, `max abs diff ${d}`);
});

/* ---------------------------------------------------------------------------------------------- */
/* errors                                                                                          */

function doodleCopy(
  edit?: (json: { modelTopology: { model_config: { config: { layers: { class_name: string }[] } } } }) => void,
  cut = 0,
): string {
  const dir = mkdtempSync(join(tmpdir(), 'graft-tfjs-'));
  const json = JSON.parse(readFileSync(join(DOODLE(), 'model.json'), 'utf8'));
  edit?.(json);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  const bin = readFileSync(join(DOODLE(), 'group1-shard1of1.bin'));
  writeFileSync(join(dir, 'group1-shard1of1.bin'), bin.subarray(0, bin.length - cut));
  return dir;
}

test('an unknown layer is an error naming its class and name', { skip: needsDoodle }, () => {
  const dir = doodleCopy((j) => {
    j.modelTopology.model_config.config.layers[9]!.class_name = 'MysteryNoise';
  });
  assert.throws(
    () => readTfjs(dir),
    (e: Error) => e instanceof GraftError && /MysteryNoise/.test(e.message) && /'dropout'/.test(e.message),
  );
});

test('a truncated or missing weight shard is an error naming the file', { skip: needsDoodle }, () => {
  const dir = doodleCopy(undefined, 1000);
  assert.throws(
    () => readTfjs(dir),
    (e: Error) =>
      e instanceof GraftError && e.message.includes(join(dir, 'group1-shard1of1.bin')) && /truncated/.test(e.message),
  );
  const dir2 = doodleCopy((j) => {
    (j as unknown as { weightsManifest: { paths: string[] }[] }).weightsManifest[0]!.paths = ['nope.bin'];
  });
  assert.throws(
    () => readTfjs(dir2),
    (e: Error) => e instanceof GraftError && e.message.includes(join(dir2, 'nope.bin')),
  );
});

test('nsfwjs-style bundles: the literal is parsed without running it; a truncated shard bundle is named', () => {
  const src = join(nsfwjsPackageDir(), 'dist', 'models');
  const mj = readModelBundle(join(src, 'mobilenet_v2', 'model.min.js')) as {
    modelTopology: { model_config: { class_name: string } };
  };
  assert.equal(mj.modelTopology.model_config.class_name, 'Model');
  const dir = mkdtempSync(join(tmpdir(), 'graft-tfjs-'));
  copyFileSync(join(src, 'mobilenet_v2', 'model.min.js'), join(dir, 'model.min.js'));
  const shard = readFileSync(join(src, 'mobilenet_v2', 'group1-shard1of1.min.js'), 'utf8');
  writeFileSync(join(dir, 'group1-shard1of1.min.js'), shard.slice(0, shard.length / 2));
  assert.throws(
    () => readTfjs(dir),
    (e: Error) => e instanceof GraftError && e.message.includes(join(dir, 'group1-shard1of1.min.js')),
  );
});
