/**
 * Export of a fine-tuned model: LoRA merged, training-only nodes gone, probabilities + logits
 * outputs, preprocessing and labels in the metadata and labels.json beside the file; the parity
 * check passes against the training graph's forward and fails (writing nothing) when they differ.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { addLora } from '../../src/finetune/lora.js';
import { exportFinetuned, stripTraining } from '../../src/export/export.js';
import { Trainer } from '../../src/train/trainer.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { getLabels, getPreprocess, type ImagePreprocess } from '../../src/formats/preprocess.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { GraftError } from '../../src/util/errors.js';

const I = (value: number) => ({ type: 'int' as const, value });

/** x [batch, 2, 4, 4] → Conv 1×1 → BatchNorm → Relu → Dropout → GlobalAveragePool → Flatten → Gemm (3 classes) → Softmax */
function net(): Graph {
  const rng = new Rng(3);
  const w = (dims: number[], s = 0.5, base = 0) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => base + rng.normal() * s),
  });
  const g = new Graph();
  g.name = 'export-net';
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 2, 4, 4] });
  for (const [k, t] of Object.entries({
    'conv.w': w([6, 2, 1, 1]),
    'conv.b': w([6], 0.1),
    'bn.scale': w([6], 0.1, 1),
    'bn.bias': w([6], 0.1),
    'bn.mean': w([6], 0.1),
    'bn.var': w([6], 0.1, 1),
    'fc.w': w([3, 6]),
    'fc.b': w([3], 0.1),
  }))
    g.initializers.set(k, t);
  g.initializers.set('bn.var', {
    dtype: 'float32',
    dims: [6],
    data: Float32Array.from({ length: 6 }, (_, i) => 0.5 + i / 10),
  });
  g.initializers.set('drop.ratio', { dtype: 'float32', dims: [], data: Float32Array.from([0.3]) });
  g.nodes.push(
    { name: 'conv', opType: 'Conv', domain: '', inputs: ['x', 'conv.w', 'conv.b'], outputs: ['c'], attrs: {} },
    {
      name: 'bn',
      opType: 'BatchNormalization',
      domain: '',
      inputs: ['c', 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'],
      outputs: ['n'],
      attrs: {},
    },
    { name: 'relu', opType: 'Relu', domain: '', inputs: ['n'], outputs: ['r'], attrs: {} },
    { name: 'drop', opType: 'Dropout', domain: '', inputs: ['r', 'drop.ratio'], outputs: ['d'], attrs: {} },
    { name: 'gap', opType: 'GlobalAveragePool', domain: '', inputs: ['d'], outputs: ['p'], attrs: {} },
    { name: 'flat', opType: 'Flatten', domain: '', inputs: ['p'], outputs: ['f'], attrs: { axis: I(1) } },
    { name: 'fc', opType: 'Gemm', domain: '', inputs: ['f', 'fc.w', 'fc.b'], outputs: ['z'], attrs: { transB: I(1) } },
    { name: 'sm', opType: 'Softmax', domain: '', inputs: ['z'], outputs: ['prob'], attrs: { axis: I(-1) } },
  );
  g.outputs.push({ name: 'prob', dtype: 'float32', shape: ['batch', 3] });
  return g;
}

const PRE: ImagePreprocess = {
  layout: 'NCHW',
  width: 4,
  height: 4,
  channels: 1,
  channelOrder: 'GRAY',
  mean: [0.5],
  std: [0.25],
  resize: 'stretch',
  source: 'flag',
};

function batch(n: number, seed: number): Tensor {
  const rng = new Rng(seed);
  return { dtype: 'float32', dims: [n, 2, 4, 4], data: Float32Array.from({ length: n * 32 }, () => rng.normal()) };
}

test('stripTraining removes Dropout and puts batch-statistics BatchNormalization back in inference mode', () => {
  const g = net();
  const bn = g.nodes.find((n) => n.opType === 'BatchNormalization')!;
  bn.attrs['training_mode'] = I(1);
  bn.outputs = ['n', 'mean_out', 'var_out'];
  const s = stripTraining(g);
  assert.ok(!s.nodes.some((n) => n.opType === 'Dropout'));
  const bn2 = s.nodes.find((n) => n.opType === 'BatchNormalization')!;
  assert.equal(bn2.attrs['training_mode'], undefined);
  assert.deepEqual(bn2.outputs, ['n']);
  assert.ok(s.nodes.find((n) => n.opType === 'GlobalAveragePool')!.inputs.includes('r'));
});

test('export: LoRA merged, one file + labels.json, parity with Trainer.predict within 1e-4; a mismatch fails and writes nothing', async () => {
  const { graph, params } = addLora(net(), { rank: 2, targets: ['Conv1x1', 'Gemm'] });
  const t = await Trainer.create(graph, { trainable: { names: params }, lr: 0.05 });
  const x = batch(16, 1);
  const y: Tensor = { dtype: 'int64', dims: [16], data: BigInt64Array.from({ length: 16 }, (_, i) => BigInt(i % 3)) };
  for (let i = 0; i < 10; i++) await t.step({ x }, y);
  const dir = mkdtempSync(join(tmpdir(), 'graft-export-'));
  try {
    const check = batch(5, 2);
    const labels = ['a', 'b', 'c'];
    const r = await exportFinetuned(t.toGraph(), {
      out: dir,
      labels,
      preprocess: PRE,
      checkInputs: check,
      reference: (inp) => t.predict({ x: inp }),
    });
    assert.ok(r.maxAbsDiff <= 1e-4 && r.maxAbsDiff >= 0, String(r.maxAbsDiff));
    assert.equal(r.compared, 'probabilities'); // the trained model ends in a Softmax, so predict gives probabilities
    assert.equal(r.checked, 5);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'labels.json'), 'utf8')), labels);
    const g = readOnnx(join(dir, 'model.onnx'));
    assert.deepEqual(getLabels(g), labels);
    assert.deepEqual(getPreprocess(g), PRE);
    assert.ok(
      !g.nodes.some((n) => n.name.startsWith('lora/') || n.opType === 'Dropout'),
      g.nodes.map((n) => n.opType).join(','),
    );
    assert.ok(![...g.initializers.keys()].some((k) => k.includes('lora_')));
    assert.equal(g.metadata['graft.lora'], undefined);
    assert.deepEqual(
      g.outputs.map((o) => o.name),
      ['probabilities', 'logits'],
    );
    assert.equal(g.nodes.filter((n) => n.opType === 'Softmax').length, 1);
    // the file on its own: probabilities sum to 1 and equal Trainer.predict's; logits give them back
    const s = await Session.fromGraph(g);
    const out = await s.run({ x: check });
    await s.release();
    const p = out['probabilities']!.data as Float32Array;
    for (let r0 = 0; r0 < 5; r0++) assert.ok(Math.abs(p[r0 * 3]! + p[r0 * 3 + 1]! + p[r0 * 3 + 2]! - 1) < 1e-5);
    const ref = (await t.predict({ x: check })).data as Float32Array;
    assert.ok(p.every((v, i) => Math.abs(v - ref[i]!) <= 1e-4));
    const z = out['logits']!.data as Float32Array;
    for (let r0 = 0; r0 < 5; r0++) {
      const e = [0, 1, 2].map((k) => Math.exp(z[r0 * 3 + k]!));
      const sum = e[0]! + e[1]! + e[2]!;
      for (let k = 0; k < 3; k++) assert.ok(Math.abs(e[k]! / sum - p[r0 * 3 + k]!) < 1e-5);
    }
    // a reference that disagrees (here by 1e-3): GraftError naming the difference, no model.onnx written
    const dir2 = join(dir, 'bad');
    await assert.rejects(
      exportFinetuned(t.toGraph(), {
        out: dir2,
        labels,
        checkInputs: check,
        reference: async (inp) => {
          const o = await t.predict({ x: inp });
          return { ...o, data: (o.data as Float32Array).map((v) => v + 1e-3) };
        },
      }),
      (e: unknown) =>
        e instanceof GraftError &&
        /parity check failed: .* by up to 1\.0\d*e-3 in the probabilities .*tolerance 1\.0e-4/.test(e.message),
    );
    assert.ok(!existsSync(dir2) || readdirSync(dir2).length === 0, 'nothing written after a failed check');
    assert.ok(!readdirSync(dir).some((n) => n.includes('.tmp-')), 'no staged folder left');
    // two labels for a three-class model: refused, nothing written
    const dir3 = join(dir, 'labels');
    await assert.rejects(
      exportFinetuned(t.toGraph(), {
        out: dir3,
        labels: ['a', 'b'],
        checkInputs: check,
        reference: (inp) => t.predict({ x: inp }),
      }),
      (e: unknown) => e instanceof GraftError && /3 classes but 2 labels/.test(e.message),
    );
    assert.ok(!existsSync(join(dir3, 'model.onnx')));
  } finally {
    await t.release();
    rmSync(dir, { recursive: true, force: true });
  }
});
