import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { Session } from '../../src/runtime/session.js';
import {
  availableDevices,
  diagnose,
  gpuProviderFiles,
  ortBinaryDir,
  parseLddMissing,
  resolveDevice,
  GPU_INSTALL_HINT,
} from '../../src/runtime/device.js';
import { GraftError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/random.js';
import { graft, graftFails } from '../helpers/cli.js';
import { asset, needs } from '../helpers/assets.js';

/** Gemm → Relu → Gemm → Softmax with random weights: enough arithmetic that a different provider would show. */
function mlp(): Graph {
  const g = new Graph();
  g.name = 'mlp';
  const rng = new Rng(3);
  const w = (dims: number[]) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims[0]! * dims[1]! }, () => rng.normal() * 0.3),
  });
  g.initializers.set('w1', w([16, 32]));
  g.initializers.set('w2', w([32, 5]));
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [null, 16] });
  g.outputs.push({ name: 'p', dtype: 'float32', shape: [null, 5] });
  g.nodes.push(
    { name: 'g1', opType: 'Gemm', domain: '', inputs: ['x', 'w1'], outputs: ['h'], attrs: {} },
    { name: 'r', opType: 'Relu', domain: '', inputs: ['h'], outputs: ['hr'], attrs: {} },
    { name: 'g2', opType: 'Gemm', domain: '', inputs: ['hr', 'w2'], outputs: ['z'], attrs: {} },
    { name: 's', opType: 'Softmax', domain: '', inputs: ['z'], outputs: ['p'], attrs: {} },
  );
  return g;
}
const input = () => {
  const rng = new Rng(9);
  return {
    x: { dtype: 'float32' as const, dims: [7, 16], data: Float32Array.from({ length: 7 * 16 }, () => rng.normal()) },
  };
};
async function runOn(device: string | undefined): Promise<Float32Array> {
  const s = await Session.fromGraph(mlp(), device === undefined ? {} : { device });
  try {
    return (await s.run(input()))['p']!.data as Float32Array;
  } finally {
    await s.release();
  }
}

const cudaInstalled = gpuProviderFiles('cuda').every((f) => existsSync(join(ortBinaryDir(), f)));
const noCuda = cudaInstalled
  ? "onnxruntime-node's CUDA provider is installed here: this test is about its absence"
  : false;

test('devices offered here: cpu and auto always, the providers onnxruntime-node lists (linux x64: cuda, tensorrt, webgpu)', () => {
  const d = availableDevices();
  assert.equal(d[0], 'cpu');
  assert.equal(d.at(-1), 'auto');
  if (process.platform === 'linux' && process.arch === 'x64')
    for (const p of ['cuda', 'tensorrt', 'webgpu']) assert.ok(d.includes(p), p);
});

test('the CPU path: device cpu is the default, and gives the same numbers', async () => {
  assert.deepEqual(await resolveDevice('cpu'), { device: 'cpu', requested: 'cpu', providers: ['cpu'] });
  const dflt = await runOn(undefined),
    cpu = await runOn('cpu');
  assert.deepEqual(cpu, dflt);
  assert.ok(Math.abs(cpu.slice(0, 5).reduce((a, b) => a + b, 0) - 1) < 1e-5, 'a softmax row');
});

test('an unknown device is an error listing the valid ones (option and GRAFT_DEVICE)', async () => {
  await assert.rejects(runOn('tpu'), (e: unknown) => {
    assert.ok(e instanceof GraftError);
    assert.match(e.message, /unknown device 'tpu'; valid devices here: cpu, .*auto/);
    return true;
  });
  // a provider onnxruntime-node has on another platform only
  await assert.rejects(
    resolveDevice(process.platform === 'darwin' ? 'dml' : 'coreml'),
    /is not in onnxruntime-node .* for /,
  );
  process.env['GRAFT_DEVICE'] = 'gpu0';
  try {
    await assert.rejects(runOn(undefined), /unknown device 'gpu0' \(from GRAFT_DEVICE\); valid devices here: cpu/);
  } finally {
    delete process.env['GRAFT_DEVICE'];
  }
});

test("device cuda without onnxruntime-node's CUDA libraries: an error naming the missing library and how to install it", {
  skip: noCuda,
}, async () => {
  for (const start of [() => resolveDevice('cuda'), () => runOn('cuda')]) {
    await assert.rejects(start(), (e: unknown) => {
      assert.ok(e instanceof GraftError);
      assert.match(
        e.message,
        /^CUDA cannot start: onnxruntime-node's .*libonnxruntime_providers_cuda\.so.* not installed/,
      );
      assert.match(e.hint ?? '', /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/);
      return true;
    });
  }
  await assert.rejects(resolveDevice('tensorrt'), /TensorRT cannot start: .*libonnxruntime_providers_tensorrt\.so/);
});

test('device auto without CUDA: one warning per process, then the CPU, with results identical to device cpu', {
  skip: noCuda,
}, async () => {
  const writes: string[] = [];
  const spy = mock.method(process.stderr, 'write', (chunk: unknown) => {
    writes.push(String(chunk));
    return true;
  });
  let auto: Float32Array, again: Float32Array;
  try {
    const r = await resolveDevice('auto');
    assert.equal(r.device, 'cpu');
    assert.deepEqual(r.providers, ['cpu']);
    assert.match(r.fallbackReason ?? '', /libonnxruntime_providers_cuda\.so/);
    auto = await runOn('auto');
    process.env['GRAFT_DEVICE'] = 'auto';
    again = await runOn(undefined);
  } finally {
    delete process.env['GRAFT_DEVICE'];
    spy.mock.restore();
  }
  const warnings = writes.filter((w) => w.includes('warning: device auto'));
  assert.equal(warnings.length, 1, writes.join(''));
  assert.match(warnings[0]!, /CUDA cannot start: .*; running on the CPU/);
  const cpu = await runOn('cpu');
  assert.deepEqual(auto, cpu);
  assert.deepEqual(again, cpu);
});

test('diagnosis: absent provider files are named; present ones are checked with ldd for missing CUDA libraries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-device-'));
  try {
    const e1 = diagnose('cuda', 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library', dir);
    assert.equal(
      e1.message,
      `CUDA cannot start: onnxruntime-node's libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so are not installed (looked in ${dir})`,
    );
    assert.equal(e1.hint, GPU_INSTALL_HINT);
    writeFileSync(join(dir, 'libonnxruntime_providers_shared.so'), '');
    assert.match(
      diagnose('cuda', 'x', dir).message,
      /onnxruntime-node's libonnxruntime_providers_cuda\.so is not installed/,
    );
    // files present (not real libraries, so ldd names nothing): onnxruntime's own reason is passed on
    writeFileSync(join(dir, 'libonnxruntime_providers_cuda.so'), '');
    const e3 = diagnose(
      'cuda',
      '[ONNXRuntimeError] : 1 : FAIL : CUDA failure 100: no CUDA-capable device is detected',
      dir,
    );
    assert.equal(e3.message, 'CUDA cannot start: CUDA failure 100: no CUDA-capable device is detected');
    assert.match(e3.hint ?? '', /nvidia-smi/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ldd = [
    '\tlinux-vdso.so.1 (0x00007ffd)',
    '\tlibcublasLt.so.12 => not found',
    '\tlibcudnn.so.9 => not found',
    '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f)',
    '\tlibcublasLt.so.12 => not found',
  ].join('\n');
  assert.deepEqual(parseLddMissing(ldd), ['libcublasLt.so.12', 'libcudnn.so.9']);
});

const MODEL = 'models/coral/mobilenet_v2_1.0_224_quant.tflite',
  IMAGE = 'models/coral/hot_dog.jpg';

test('graft --device: unknown names listed, cuda names the missing library, auto warns once and prints what cpu prints', {
  skip: needs(MODEL, IMAGE) || noCuda,
}, async () => {
  const args = ['classify', asset(MODEL), asset(IMAGE), '--top', '3'];
  const bad = await graftFails(['--device', 'npu', ...args]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown device 'npu'; valid devices here: cpu, .*cuda.*auto/);
  const cuda = await graftFails(['--device', 'cuda', ...args]);
  assert.match(cuda.stderr, /CUDA cannot start: .*libonnxruntime_providers_cuda\.so/);
  assert.match(cuda.stderr, /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/);
  const cpu = await graft(['--device', 'cpu', ...args]);
  const auto = await graft(['--device', 'auto', ...args]);
  assert.equal(auto.stdout, cpu.stdout);
  assert.match(cpu.stdout, /hotdog/);
  assert.equal(auto.stderr.match(/graft: warning: device auto/g)?.length, 1, auto.stderr);
  assert.doesNotMatch(auto.stderr, /provider_bridge|\[E:onnxruntime/, 'no native error log');
});
