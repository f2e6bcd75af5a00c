/** The `graft` command line, run as a user would (a child process), on real models and data. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asset } from '../helpers/assets.js';
import { graft, graftFails as fail } from '../helpers/cli.js';
import { writeSafetensors, readSafetensors } from '../../src/formats/safetensors.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { Rng } from '../../src/util/random.js';

const mnist = asset('models/onnxjs-demo/mnist.onnx');
const tmp = mkdtempSync(join(tmpdir(), 'graft-cli-'));

test("graft --version prints package.json's version", async () => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  assert.match(version, /^\d+\.\d+\.\d+/);
  for (const flag of ['--version', '-V']) assert.equal((await graft([flag])).stdout.trim(), version);
});

test('graft check lists operators, finds no missing rule in the MNIST model, and reports a small finite-difference error', async () => {
  const { stdout } = await graft(['check', mnist, '--json']);
  const r = JSON.parse(stdout);
  assert.deepEqual(r.missing, []);
  assert.ok(r.ops.some((o: { op: string; status: string }) => o.op === 'Conv' && o.status === 'gradient rule'));
  assert.ok(r.gradcheck.entries.length >= 3);
  assert.ok(r.gradcheck.worst < 0.05, `worst relative error ${r.gradcheck.worst}`);
  const text = await graft(['check', mnist, '--params', '0']);
  assert.match(text.stdout, /every operator has a gradient rule/);
});

test('graft check names operators that have no gradient rule and exits non-zero', async () => {
  const g = readOnnx(mnist);
  g.nodes.push({
    name: 'weird',
    opType: 'LpNormalization',
    domain: '',
    inputs: [g.outputs[0]!.name],
    outputs: ['hm'],
    attrs: {},
  });
  g.outputs = [{ name: 'hm' }];
  const p = join(tmp, 'lpnorm.onnx');
  const { writeOnnx } = await import('../../src/formats/onnx.js');
  writeOnnx(g, p);
  const e = await fail(['check', p, '--params', '0']);
  assert.equal(e.code, 1);
  assert.match(e.stdout, /missing gradient rules: LpNormalization/);
});

test('graft grad writes one gradient per parameter, for both losses', async () => {
  const rng = new Rng(3);
  const x = {
    dtype: 'float32' as const,
    dims: [1, 1, 28, 28],
    data: Float32Array.from({ length: 784 }, () => rng.uniform() * 255),
  };
  const R = { dtype: 'float32' as const, dims: [1, 10], data: Float32Array.from({ length: 10 }, () => rng.normal()) };
  const feed = join(tmp, 'feed.safetensors');
  writeSafetensors(feed, { Input3: x, R, labels: { dtype: 'int64', dims: [1], data: BigInt64Array.from([3n]) } });
  for (const loss of ['weighted-sum', 'cross-entropy']) {
    const out = join(tmp, `grads-${loss}.safetensors`);
    await graft(['grad', mnist, '--feed', feed, '--loss', loss, '--out', out]);
    const { tensors, metadata } = readSafetensors(out);
    assert.ok(tensors.has('Parameter5') && tensors.has('Parameter193'), [...tensors.keys()].join(','));
    assert.deepEqual(tensors.get('Parameter5')!.dims, [8, 1, 5, 5]);
    assert.ok(Number.isFinite(Number(metadata['loss'])));
    const g = tensors.get('Parameter194')!.data as Float32Array; // output bias: dL/db = R (weighted-sum)
    if (loss === 'weighted-sum') for (let k = 0; k < 10; k++) assert.ok(Math.abs(g[k]! - R.data[k]!) < 1e-5);
  }
});

test('graft grad rejects a feed of the wrong shape or type with a message naming the input', async () => {
  const feed = join(tmp, 'bad.safetensors');
  writeSafetensors(feed, {
    Input3: { dtype: 'float32', dims: [1, 1, 14, 14], data: new Float32Array(196) },
    R: { dtype: 'float32', dims: [1, 10], data: new Float32Array(10) },
  });
  const e = await fail(['grad', mnist, '--feed', feed, '--out', join(tmp, 'x.safetensors')]);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /feed 'Input3' has shape \[1,1,14,14\], the model expects \[1,1,28,28\]/);
  assert.doesNotMatch(e.stderr, /at .*\.ts:\d+/, 'no stack trace');
  const garbage = join(tmp, 'garbage.onnx');
  writeFileSync(garbage, 'not a model');
  const e2 = await fail(['check', garbage]);
  assert.match(e2.stderr, /garbage\.onnx is not a valid ONNX file/);
});

test('graft train fine-tunes the MNIST network on 50 digits per class to ≥ 0.95 held-out accuracy', async () => {
  const out = join(tmp, 'digits.onnx');
  const { stdout } = await graft([
    'train',
    '--model',
    mnist,
    '--data',
    asset('datasets/digits-8x8/digits.csv.gz'),
    '--labels-per-class',
    '50',
    '--epochs',
    '30',
    '--lr',
    '3e-3',
    '--pixel-max',
    '16',
    '--seed',
    '1',
    '--out',
    out,
    '--json',
  ]);
  const r = JSON.parse(stdout);
  assert.ok(r.testAccuracy >= 0.95, `test accuracy ${r.testAccuracy}`);
  assert.ok(r.zeroShotAccuracy < 0.9);
  assert.ok(existsSync(out));
});
