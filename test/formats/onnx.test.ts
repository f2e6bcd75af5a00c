import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOnnx, writeOnnx, encodeOnnx, decodeOnnx } from '../../src/formats/onnx.js';
import { Session } from '../../src/runtime/session.js';
import { exampleFeeds } from '../../src/autodiff/shapes.js';
import { Graph } from '../../src/graph/graph.js';
import type { Tensor, DType } from '../../src/graph/tensor.js';
import { asset, needs } from '../helpers/assets.js';

const models = [
  'models/onnxjs-demo/mnist.onnx',
  'models/text/bert-mini-debian/onnx/model.onnx',
  'models/text/gpt2-mini-debian/onnx/model.onnx',
];

async function outputs(bytes: Uint8Array, feeds: Record<string, Tensor>) {
  const s = await Session.fromBytes(bytes);
  const r = await s.run(feeds);
  await s.release();
  return r;
}

for (const m of models) {
  test(`read → write round trip of ${m} gives bit-identical onnxruntime outputs`, { skip: needs(m) }, async () => {
    const path = asset(m);
    const g = readOnnx(path);
    const feeds = exampleFeeds(g, 2, 5);
    if (feeds['input_ids']) (feeds['input_ids'].data as BigInt64Array).fill(7n);
    const a = await outputs(readFileSync(path), feeds);
    const b = await outputs(encodeOnnx(g), feeds);
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    for (const k of Object.keys(a)) {
      const x = new Uint8Array((a[k]!.data as Float32Array).buffer);
      const y = new Uint8Array((b[k]!.data as Float32Array).buffer);
      assert.deepEqual(a[k]!.dims, b[k]!.dims);
      assert.ok(Buffer.compare(Buffer.from(x), Buffer.from(y)) === 0, `output ${k} differs`);
    }
    // and a second round trip is stable
    const again = decodeOnnx(encodeOnnx(g));
    assert.equal(again.nodes.length, g.nodes.length);
    assert.deepEqual([...again.initializers.keys()], [...g.initializers.keys()]);
  });
}

test('initializers of every numeric type survive a round trip, including external data', async () => {
  const g = new Graph();
  g.opsets = { '': 18 };
  const types: [DType, Tensor['data']][] = [
    ['float32', Float32Array.from([1.5, -2, 3e-8])],
    ['float64', Float64Array.from([Math.PI, -1e300, 2])],
    ['float16', Uint16Array.from([0x3c00, 0xc000, 0x7bff])],
    ['bfloat16', Uint16Array.from([0x3f80, 0xc000, 0x0001])],
    ['int8', Int8Array.from([-128, 0, 127])],
    ['uint8', Uint8Array.from([0, 1, 255])],
    ['int16', Int16Array.from([-32768, 5, 32767])],
    ['uint16', Uint16Array.from([0, 9, 65535])],
    ['int32', Int32Array.from([-(2 ** 31), 0, 2 ** 31 - 1])],
    ['uint32', Uint32Array.from([0, 1, 2 ** 32 - 1])],
    ['int64', BigInt64Array.from([-(2n ** 63n), 0n, 2n ** 63n - 1n])],
    ['uint64', BigUint64Array.from([0n, 1n, 2n ** 64n - 1n])],
    ['bool', Uint8Array.from([1, 0, 1])],
  ];
  for (const [dtype, data] of types) {
    g.initializers.set(`t_${dtype}`, { dtype, dims: [3], data });
    g.nodes.push({
      name: `id_${dtype}`,
      opType: 'Identity',
      domain: '',
      inputs: [`t_${dtype}`],
      outputs: [`o_${dtype}`],
      attrs: {},
    });
    g.outputs.push({ name: `o_${dtype}`, dtype, shape: [3] });
  }
  g.initializers.set('big', {
    dtype: 'float32',
    dims: [4096],
    data: Float32Array.from({ length: 4096 }, (_, i) => i * 0.5),
  });
  g.nodes.push({ name: 'id_big', opType: 'Identity', domain: '', inputs: ['big'], outputs: ['o_big'], attrs: {} });
  g.outputs.push({ name: 'o_big', dtype: 'float32', shape: [4096] });
  const dir = mkdtempSync(join(tmpdir(), 'graft-onnx-'));
  const path = join(dir, 'm.onnx');
  writeOnnx(g, path, { externalDataThreshold: 1024 });
  assert.ok(existsSync(join(dir, 'm.onnx.data')), 'external data file written');
  const back = readOnnx(path);
  for (const [name, t] of g.initializers) {
    const u = back.initializers.get(name)!;
    assert.equal(u.dtype, t.dtype, name);
    assert.deepEqual(u.dims, t.dims);
    assert.deepEqual(Array.from(u.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>), name);
  }
  // onnxruntime reads the external data too (uint types are not all runnable; run the float one)
  const sub = back.clone();
  sub.outputs = [{ name: 'o_big' }];
  sub.prune();
  const r = await (await Session.fromGraph(sub)).run({});
  assert.equal((r['o_big']!.data as Float32Array)[4095], 4095 * 0.5);
});

test('a truncated or corrupt file gets a clear error naming it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-onnx-'));
  const bytes = readFileSync(asset(models[0]!));
  const p = join(dir, 'broken.onnx');
  writeFileSync(p, bytes.subarray(0, bytes.length - 500));
  assert.throws(() => readOnnx(p), /broken\.onnx/);
  assert.throws(() => readOnnx(join(dir, 'absent.onnx')), /not found/);
});

test('cutBefore and cutAfter split a model at a value and compose back to the original', async () => {
  const g = readOnnx(asset(models[0]!));
  const cut = g.nodes.find((n) => n.opType === 'MaxPool')!.outputs[0]!;
  const head = g.cutBefore([cut]);
  const tail = g.cutAfter([cut]);
  assert.ok(head.nodes.length + tail.nodes.length <= g.nodes.length + 1);
  const x = exampleFeeds(g, 1, 3);
  const full = await (await Session.fromGraph(g)).run(x);
  const mid = await (await Session.fromGraph(head)).run(x);
  const out = await (await Session.fromGraph(tail)).run({ [cut]: mid[cut]! });
  const k = g.outputs[0]!.name;
  assert.deepEqual(Array.from(out[k]!.data as Float32Array), Array.from(full[k]!.data as Float32Array));
});
