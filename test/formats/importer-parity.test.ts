/**
 * Importer parity: every real model Graft imports (the Coral TFLite files, ml5's TF.js layers models,
 * nsfwjs's bundled layers and graph models, the ONNX MNIST net) is converted and run by onnxruntime on a
 * fixed deterministic input; the outputs must equal those the converter gave when
 * test/fixtures/importer-parity.json was recorded (before the importers were rebuilt on one core),
 * within 1e-6 (relative where values exceed 1). The operator histogram of each graph must be the same.
 *
 * Rewrite the fixture (only when a change of results is intended and understood):
 *   GRAFT_WRITE_PARITY=1 GRAFT_THREADS=1 node --import tsx --test test/formats/importer-parity.test.ts
 * GRAFT_PARITY_STRICT=1 also requires the encoded ONNX bytes to be identical (sha256).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assetPath, needs } from '../helpers/assets.js';
import { loadModel } from '../../src/formats/load.js';
import { readNsfwjs } from '../../src/formats/tfjs.js';
import { encodeOnnx } from '../../src/formats/onnx.js';
import { Session } from '../../src/runtime/session.js';
import type { Graph } from '../../src/graph/graph.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'importer-parity.json');
const WRITE = process.env['GRAFT_WRITE_PARITY'] === '1';
const STRICT = process.env['GRAFT_PARITY_STRICT'] === '1';

interface Fingerprint {
  inputShape: number[];
  outputs: { name: string; shape: number[]; first: number[]; sum: number; sumSq: number }[];
  ops: Record<string, number>;
  onnxSha256: string;
}

/** The models, by key: a path under GRAFT_ASSETS, or an nsfwjs model name. */
const MODELS: { key: string; asset?: string; nsfwjs?: 'MobileNetV2' | 'InceptionV3' | 'MobileNetV2Mid' }[] = [
  ...[
    'mobilenet_v1_0.25_128_quant',
    'mobilenet_v1_1.0_224_quant_embedding_extractor',
    'mobilenet_v2_1.0_224_inat_bird_quant',
    'mobilenet_v2_1.0_224_inat_insect_quant',
    'mobilenet_v2_1.0_224_quant',
    'tf2_mobilenet_v2_1.0_224_ptq',
  ].map((f) => ({ key: `coral/${f}`, asset: `models/coral/${f}.tflite` })),
  { key: 'ml5/darknettiny', asset: 'models/ml5/darknettiny' },
  { key: 'ml5/doodlenet', asset: 'models/ml5/doodlenet' },
  { key: 'onnxjs-demo/mnist', asset: 'models/onnxjs-demo/mnist.onnx' },
  { key: 'nsfwjs/MobileNetV2', nsfwjs: 'MobileNetV2' },
  { key: 'nsfwjs/InceptionV3', nsfwjs: 'InceptionV3' },
  { key: 'nsfwjs/MobileNetV2Mid', nsfwjs: 'MobileNetV2Mid' },
];

/** A fixed input in [-1, 1): no randomness, no dependence on the platform's Math.random. */
function input(n: number): Float32Array {
  const x = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s >>> 8) / 2 ** 23 - 1;
  }
  return x;
}

async function fingerprint(g: Graph): Promise<Fingerprint> {
  const ins = g.dataInputs();
  assert.equal(ins.length, 1, `${g.name}: one data input expected`);
  const dims = ins[0]!.shape!.map((d, i) => (i === 0 ? 1 : typeof d === 'number' ? d : NaN));
  assert.ok(dims.every(Number.isInteger), `${g.name}: input shape [${ins[0]!.shape}] is not static`);
  const n = dims.reduce((a, b) => a * b, 1);
  const ops: Record<string, number> = {};
  for (const node of g.nodes) ops[node.opType] = (ops[node.opType] ?? 0) + 1;
  const sorted = Object.fromEntries(Object.entries(ops).sort(([a], [b]) => (a < b ? -1 : 1)));
  const onnxSha256 = createHash('sha256').update(encodeOnnx(g)).digest('hex');
  const s = await Session.fromGraph(g, { threads: 1 });
  try {
    const res = await s.run({ [ins[0]!.name]: { dtype: 'float32', dims, data: input(n) } });
    const outputs = g.outputs.map((o) => {
      const t = res[o.name]!;
      const d = t.data as Float32Array;
      let sum = 0,
        sumSq = 0;
      for (const v of d) {
        sum += v;
        sumSq += v * v;
      }
      return { name: o.name, shape: [...t.dims], first: Array.from(d.subarray(0, 32)), sum, sumSq };
    });
    return { inputShape: dims, outputs, ops: sorted, onnxSha256 };
  } finally {
    await s.release();
  }
}

const close = (got: number, want: number, scale: number) => Math.abs(got - want) <= 1e-6 * Math.max(1, Math.abs(scale));

const fixture: Record<string, Fingerprint> =
  WRITE || !existsSync(FIXTURE) ? {} : JSON.parse(readFileSync(FIXTURE, 'utf8'));
const written: Record<string, Fingerprint> = {};

for (const m of MODELS) {
  const skip = m.asset ? needs(m.asset) : false;
  test(`importer parity: ${m.key}`, { skip }, async (t) => {
    const g = m.nsfwjs ? readNsfwjs(m.nsfwjs) : loadModel(assetPath(m.asset!));
    const got = await fingerprint(g);
    if (WRITE) {
      written[m.key] = got;
      return;
    }
    const want = fixture[m.key];
    assert.ok(want, `${m.key} is not in ${FIXTURE}`);
    assert.deepEqual(got.inputShape, want.inputShape);
    assert.deepEqual(got.ops, want.ops, 'operator histogram');
    assert.equal(got.outputs.length, want.outputs.length);
    got.outputs.forEach((o, k) => {
      const w = want.outputs[k]!;
      assert.deepEqual(o.shape, w.shape, `output ${k} shape`);
      o.first.forEach((v, i) =>
        assert.ok(close(v, w.first[i]!, w.first[i]!), `output ${k}[${i}]: ${v} vs ${w.first[i]}`),
      );
      const n = o.shape.reduce((a, b) => a * b, 1);
      assert.ok(close(o.sum, w.sum, Math.sqrt(w.sumSq * n)), `output ${k} sum: ${o.sum} vs ${w.sum}`);
      assert.ok(close(o.sumSq, w.sumSq, w.sumSq), `output ${k} sum of squares: ${o.sumSq} vs ${w.sumSq}`);
    });
    const same = got.onnxSha256 === want.onnxSha256;
    t.diagnostic(`encoded ONNX ${same ? 'identical' : 'differs (names or order)'}`);
    if (STRICT) assert.ok(same, 'encoded ONNX bytes differ');
  });
}

if (WRITE) {
  test('write the parity fixture', () => {
    const keys = Object.keys(written);
    assert.equal(
      keys.length,
      MODELS.length,
      `only ${keys.length} of ${MODELS.length} models converted: all assets are needed to write the fixture`,
    );
    // number lists on one line each: a readable diff when a value changes
    const text = JSON.stringify(written, null, 1).replace(
      /\[\s+([-\d.e+,\s]+?)\s+\]/g,
      (_, xs: string) => `[${xs.split(/,\s+/).join(', ')}]`,
    );
    writeFileSync(FIXTURE, `${text}\n`);
  });
}
