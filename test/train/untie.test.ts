/**
 * Parameters an exporter tied: torch.onnx merges equal-valued initializers (the zero biases and unit
 * LayerNorm scales of a fresh model) into one, read by the other layers through Identity nodes. Without
 * `untie` training warns and the layers share one tensor; with it each trains its own copy, exactly as a
 * graph built untied from the start would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, type Node } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { findTies, untieParameters, selectTrainable, compileTraining } from '../../src/train/training-graph.js';
import { Trainer } from '../../src/train/trainer.js';
import { fit } from '../../src/train/fit.js';
import { readOnnx, writeOnnx } from '../../src/formats/onnx.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { graft } from '../helpers/cli.js';

const H = 6;
const f32 = (dims: number[], f: (i: number) => number): Tensor => ({
  dtype: 'float32',
  dims,
  data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => f(i)),
});

/**
 * x [batch, 1, 8, 8] → Flatten → fc1 (Gemm 64→6) → LayerNorm ln1 → Relu → fc2 (Gemm 6→6) → LayerNorm ln2 → head (Gemm 6→3).
 * `tied`: as torch.onnx writes a fresh model: one zero initializer 'onnx::zeros' read through Identity
 * nodes as fc1.bias, fc2.bias, ln1.bias, ln2.bias; ln1.weight (ones) read directly and, through an
 * Identity, as ln2.weight. Otherwise every parameter has its own initializer with the same values.
 */
function torchStyle(tied: boolean, seed = 7): Graph {
  const rng = new Rng(seed);
  const g = new Graph();
  g.name = tied ? 'tied' : 'untied';
  g.opsets = { '': 17 };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 1, 8, 8] });
  g.initializers.set(
    'fc1.weight',
    f32([H, 64], () => rng.normal() * 0.2),
  );
  g.initializers.set(
    'fc2.weight',
    f32([H, H], () => rng.normal() * 0.4),
  );
  g.initializers.set(
    'head.weight',
    f32([3, H], () => rng.normal() * 0.4),
  );
  g.initializers.set(
    'head.bias',
    f32([3], () => rng.normal() * 0.1),
  );
  const zeros = () => f32([H], () => 0);
  const ones = () => f32([H], () => 1);
  const node = (
    name: string,
    opType: string,
    inputs: string[],
    outputs: string[],
    attrs: Node['attrs'] = {},
  ): Node => ({ name, opType, domain: '', inputs, outputs, attrs });
  if (tied) {
    g.initializers.set('onnx::zeros', zeros());
    g.initializers.set('ln1.weight', ones());
    for (const b of ['fc1.bias', 'fc2.bias', 'ln1.bias', 'ln2.bias'])
      g.nodes.push(node(`Identity_${b}`, 'Identity', ['onnx::zeros'], [b]));
    g.nodes.push(node('Identity_ln2.weight', 'Identity', ['ln1.weight'], ['ln2.weight']));
  } else {
    for (const b of ['fc1.bias', 'fc2.bias', 'ln1.bias', 'ln2.bias']) g.initializers.set(b, zeros());
    for (const w of ['ln1.weight', 'ln2.weight']) g.initializers.set(w, ones());
  }
  const transB = { transB: { type: 'int' as const, value: 1 } };
  g.nodes.push(
    node('flatten', 'Flatten', ['x'], ['flat']),
    node('fc1', 'Gemm', ['flat', 'fc1.weight', 'fc1.bias'], ['h1'], transB),
    node('ln1', 'LayerNormalization', ['h1', 'ln1.weight', 'ln1.bias'], ['n1'], { axis: { type: 'int', value: -1 } }),
    node('relu', 'Relu', ['n1'], ['a1']),
    node('fc2', 'Gemm', ['a1', 'fc2.weight', 'fc2.bias'], ['h2'], transB),
    node('ln2', 'LayerNormalization', ['h2', 'ln2.weight', 'ln2.bias'], ['n2'], { axis: { type: 'int', value: -1 } }),
    node('head', 'Gemm', ['n2', 'head.weight', 'head.bias'], ['logits'], transB),
  );
  g.outputs.push({ name: 'logits', dtype: 'float32', shape: ['batch', 3] });
  return g;
}

/** Three classes of 8×8 images: a bright row band at a class-dependent height, plus noise. */
function data(n: number, seed = 3): { x: Float32Array[]; y: number[] } {
  const rng = new Rng(seed);
  const x: Float32Array[] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    x.push(Float32Array.from({ length: 64 }, (_, k) => (Math.floor(k / 8) >> 1 === c ? 1 : 0) + rng.normal() * 0.3));
    y.push(c);
  }
  return { x, y };
}

const batch = (d: { x: Float32Array[]; y: number[] }, from: number, n: number) => ({
  feeds: {
    x: {
      dtype: 'float32' as const,
      dims: [n, 1, 8, 8],
      data: Float32Array.from(d.x.slice(from, from + n).flatMap((v) => [...v])),
    },
  },
  target: { dtype: 'int64' as const, dims: [n], data: BigInt64Array.from(d.y.slice(from, from + n).map(BigInt)) },
});

async function trainSteps(g: Graph, opts: Parameters<typeof Trainer.create>[1], steps: number): Promise<Trainer> {
  const tr = await Trainer.create(g, { lr: 0.05, optimizer: { kind: 'sgd', momentum: 0 }, ...opts });
  const d = data(48);
  for (let s = 0; s < steps; s++) {
    const b = batch(d, (s * 16) % 48, 16);
    await tr.step(b.feeds, b.target);
  }
  return tr;
}

const diff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

test("findTies sees the exporter's ties, and what trains follows them through the Identity nodes", () => {
  const g = torchStyle(true);
  const ties = findTies(g);
  assert.deepEqual(
    ties.map((t) => [t.initializer, [...t.feeds].sort()]),
    [
      ['onnx::zeros', ['fc1.bias', 'fc2.bias', 'ln1.bias', 'ln2.bias']],
      ['ln1.weight', ['ln1.weight', 'ln2.weight']],
    ],
  );
  assert.deepEqual(findTies(torchStyle(false)), []);
  // the shared initializer trains (once); after a cut it trains when one of its Identity outputs is read after the cut
  assert.ok(selectTrainable(g, 'all').includes('onnx::zeros'));
  assert.deepEqual(
    selectTrainable(g, { after: 'ln1' }).sort(),
    ['head.bias', 'head.weight', 'ln1.weight', 'onnx::zeros', 'fc2.weight'].sort(),
  );
});

test('without untie: one warning line naming the tied initializers and their values; the tied biases stay equal', async () => {
  const warnings: string[] = [];
  const tr = await trainSteps(torchStyle(true), { warn: (m) => warnings.push(m) }, 6);
  try {
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /'onnx::zeros' feeds fc1\.bias, fc2\.bias, ln1\.bias, ln2\.bias/);
    assert.match(warnings[0]!, /'ln1\.weight' feeds ln1\.weight, ln2\.weight/);
    assert.match(warnings[0]!, /--untie/);
    assert.ok(!warnings[0]!.includes('\n'), 'one line');
    assert.ok(tr.params.has('onnx::zeros') && !tr.params.has('fc1.bias'));
    assert.ok(Math.max(...tr.params.get('onnx::zeros')!.map(Math.abs)) > 1e-4, 'the shared tensor trained');
    // the trained model still reads one tensor for all four biases
    const out = tr.toGraph();
    assert.equal(out.nodes.filter((n) => n.opType === 'Identity').length, 5);
    assert.ok(!out.initializers.has('fc1.bias') && !out.initializers.has('fc2.bias'));
  } finally {
    await tr.release();
  }
  // an untied graph gives no warning
  const none: string[] = [];
  const tg = await compileTraining(torchStyle(false), { warn: (m) => none.push(m) });
  assert.equal(tg.params.length, 10);
  assert.deepEqual(none, []);
});

test('with untie: each parameter gets its own copy and gradient, the same updates as a graph untied from the start', async () => {
  const warnings: string[] = [];
  const steps = 6;
  const untied = await trainSteps(torchStyle(true), { untie: true, warn: (m) => warnings.push(m) }, steps);
  const reference = await trainSteps(torchStyle(false), {}, steps);
  const tied1 = await trainSteps(torchStyle(true), { warn: () => {} }, 1);
  const untied1 = await trainSteps(torchStyle(true), { untie: true }, 1);
  try {
    assert.deepEqual(warnings, []);
    assert.deepEqual([...untied.params.keys()].sort(), [...reference.params.keys()].sort());
    for (const [k, v] of reference.params)
      assert.ok(
        diff(untied.params.get(k)!, v) <= 1e-6,
        `${k} differs from the untied-from-start run by ${diff(untied.params.get(k)!, v)}`,
      );
    // the biases that began as one zero tensor now differ
    const b = (k: string) => untied.params.get(k)!;
    assert.ok(diff(b('fc1.bias'), b('fc2.bias')) > 1e-4, 'fc1.bias and fc2.bias should have diverged');
    assert.ok(diff(b('ln1.weight'), b('ln2.weight')) > 1e-4, 'ln1.weight and ln2.weight should have diverged');
    // one SGD step from zeros: the tied tensor's update (−lr·gradient) is the sum of the untied copies' updates
    const delta = (t: Trainer, k: string) => t.params.get(k)!;
    const sum = ['fc1.bias', 'fc2.bias', 'ln1.bias', 'ln2.bias']
      .map((k) => delta(untied1, k))
      .reduce((a, c) => a.map((v, i) => v + c[i]!));
    assert.ok(
      diff(delta(tied1, 'onnx::zeros'), sum) <= 1e-5,
      `tied update ≠ sum of the untied ones (${diff(delta(tied1, 'onnx::zeros'), sum)})`,
    );
    assert.ok(diff(delta(untied1, 'fc1.bias'), delta(untied1, 'fc2.bias')) > 1e-5, 'each copy gets its own gradient');

    // the exported model: separate initializers, no Identity nodes left, runs in onnxruntime like the reference
    const g = untied.toGraph();
    assert.equal(g.nodes.filter((n) => n.opType === 'Identity').length, 0);
    assert.ok(!g.initializers.has('onnx::zeros'));
    for (const k of ['fc1.bias', 'fc2.bias', 'ln1.bias', 'ln2.bias', 'ln1.weight', 'ln2.weight'])
      assert.ok(g.initializers.has(k), k);
    const dir = mkdtempSync(join(tmpdir(), 'graft-untie-'));
    try {
      writeOnnx(g, join(dir, 'm.onnx'));
      writeOnnx(reference.toGraph(), join(dir, 'ref.onnx'));
      const back = readOnnx(join(dir, 'm.onnx'));
      assert.deepEqual([...back.initializers.keys()].sort(), [...reference.toGraph().initializers.keys()].sort());
      const x = batch(data(6, 9), 0, 6).feeds;
      const run = async (p: string) => {
        const s = await Session.fromGraph(readOnnx(p));
        try {
          return (await s.run(x))['logits']!.data as Float32Array;
        } finally {
          await s.release();
        }
      };
      assert.ok(diff(await run(join(dir, 'm.onnx')), await run(join(dir, 'ref.onnx'))) <= 1e-5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    for (const t of [untied, reference, tied1, untied1]) await t.release();
  }
});

test('untieParameters leaves a tie whose value is a graph output alone, and fit() unties a names list', async () => {
  const g = torchStyle(true);
  g.outputs.push({ name: 'fc2.bias' });
  const { graph, ties } = untieParameters(g);
  assert.ok(
    graph.nodes.some((n) => n.opType === 'Identity' && n.outputs[0] === 'fc2.bias'),
    'the output keeps its Identity',
  );
  assert.ok(graph.initializers.has('onnx::zeros') && graph.initializers.has('fc1.bias'));
  assert.deepEqual(ties.find((t) => t.initializer === 'onnx::zeros')!.feeds.sort(), [
    'fc1.bias',
    'ln1.bias',
    'ln2.bias',
  ]);
  assert.equal(torchStyle(true).nodes.length, 12, 'the input graph is not changed');

  // fit with untie and a names list that holds the tied initializer: every copy trains
  const d = data(24);
  const r = await fit(torchStyle(true), d, {
    untie: true,
    epochs: 1,
    batchSize: 8,
    trainable: { names: ['onnx::zeros', 'head.weight'] },
  });
  try {
    assert.deepEqual([...r.trainer.params.keys()].sort(), [
      'fc1.bias',
      'fc2.bias',
      'head.weight',
      'ln1.bias',
      'ln2.bias',
    ]);
  } finally {
    await r.trainer.release();
  }
});

test('graft train --untie: the warning without it, separate initializers with it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-untie-cli-'));
  try {
    writeOnnx(torchStyle(true), join(dir, 'tied.onnx'));
    const d = data(60, 5);
    writeFileSync(
      join(dir, 'data.csv'),
      d.x
        .map((v, i) => [...v].map((p) => Math.round(Math.min(1, Math.max(0, p)) * 255)).join(',') + `,${d.y[i]}`)
        .join('\n') + '\n',
    );
    const args = (out: string) => [
      'train',
      '--model',
      join(dir, 'tied.onnx'),
      '--data',
      join(dir, 'data.csv'),
      '--epochs',
      '2',
      '--batch-size',
      '8',
      '--lr',
      '0.01',
      '--out',
      join(dir, out),
      '--json',
    ];
    const plain = await graft(args('plain.onnx'));
    assert.match(
      plain.stderr,
      /graft: warning: tied parameters: 'onnx::zeros' feeds fc1\.bias, fc2\.bias, ln1\.bias, ln2\.bias/,
    );
    assert.equal(plain.stderr.split('\n').filter((l) => l.includes('tied parameters')).length, 1, plain.stderr);
    const p = readOnnx(join(dir, 'plain.onnx'));
    assert.equal(p.nodes.filter((n) => n.opType === 'Identity').length, 5);

    const untied = await graft([...args('untied.onnx'), '--untie']);
    assert.doesNotMatch(untied.stderr, /tied parameters/);
    const u = readOnnx(join(dir, 'untied.onnx'));
    assert.equal(u.nodes.filter((n) => n.opType === 'Identity').length, 0);
    const get = (k: string) => u.initializers.get(k)!.data as Float32Array;
    assert.ok(diff(get('fc1.bias'), get('fc2.bias')) > 1e-5, 'the untied biases trained apart');
    assert.ok(!u.initializers.has('onnx::zeros'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
