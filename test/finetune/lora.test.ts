/**
 * LoRA: the rewrite's gradients match finite differences, training moves only A and B, and merging
 * gives the same outputs with plain weights (on a small MLP + 1×1 conv graph and on BERT-mini).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { addLora, mergeLora, loraSites } from '../../src/finetune/lora.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Trainer } from '../../src/train/trainer.js';
import { Session, type Feeds } from '../../src/runtime/session.js';
import { loadModel } from '../../src/formats/load.js';
import { encodeOnnx, decodeOnnx } from '../../src/formats/onnx.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

const I = (value: number) => ({ type: 'int' as const, value });

/**
 * x [batch, 2, 3, 3] → Conv 1×1 (2→4) → Relu → Flatten → MatMul (36→5) → Gemm (5→3, transB) → logits;
 * the MatMul weight is read through a Transpose, as PyTorch exports it.
 */
function net(seed = 1): Graph {
  const rng = new Rng(seed);
  const g = new Graph();
  g.name = 'lora-net';
  g.opsets = { '': 17 };
  const w = (dims: number[], s = 0.4) => ({
    dtype: 'float32' as const,
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => rng.normal() * s),
  });
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 2, 3, 3] });
  g.initializers.set('conv.weight', w([4, 2, 1, 1]));
  g.initializers.set('conv.bias', w([4], 0.1));
  g.initializers.set('fc1.weight', w([5, 36]));
  g.initializers.set('fc2.weight', w([3, 5]));
  g.initializers.set('fc2.bias', w([3], 0.1));
  g.nodes.push(
    {
      name: 'conv',
      opType: 'Conv',
      domain: '',
      inputs: ['x', 'conv.weight', 'conv.bias'],
      outputs: ['c'],
      attrs: { kernel_shape: { type: 'ints', value: [1, 1] } },
    },
    { name: 'relu', opType: 'Relu', domain: '', inputs: ['c'], outputs: ['r'], attrs: {} },
    { name: 'flat', opType: 'Flatten', domain: '', inputs: ['r'], outputs: ['f'], attrs: { axis: I(1) } },
    {
      name: 'fc1/T',
      opType: 'Transpose',
      domain: '',
      inputs: ['fc1.weight'],
      outputs: ['fc1.wt'],
      attrs: { perm: { type: 'ints', value: [1, 0] } },
    },
    { name: 'fc1', opType: 'MatMul', domain: '', inputs: ['f', 'fc1.wt'], outputs: ['h'], attrs: {} },
    {
      name: 'fc2',
      opType: 'Gemm',
      domain: '',
      inputs: ['h', 'fc2.weight', 'fc2.bias'],
      outputs: ['logits'],
      attrs: { transB: I(1) },
    },
  );
  g.outputs.push({ name: 'logits', dtype: 'float32', shape: ['batch', 3] });
  return g;
}

function randomTensor(dims: number[], rng: Rng, s = 1): Tensor {
  return {
    dtype: 'float32',
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b) }, () => rng.normal() * s),
  };
}

/** Give every B a random value, so the adapters change the output and A gets a gradient too. */
function randomizeB(g: Graph, seed: number): void {
  const rng = new Rng(seed);
  for (const s of loraSites(g)) g.initializers.set(s.b, randomTensor(g.initializers.get(s.b)!.dims, rng, 0.3));
}

async function run(g: Graph, feeds: Feeds): Promise<Record<string, Tensor>> {
  const s = await Session.fromGraph(g, {}, g.name);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.dims, b.dims);
  const x = a.data as Float32Array,
    y = b.data as Float32Array;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

test('addLora adapts MatMul (through Transpose), Gemm and 1×1 Conv weights; B starts at zero so outputs are unchanged', async () => {
  const g = net();
  const { graph, params } = addLora(g, { rank: 2, alpha: 4 });
  const sites = loraSites(graph);
  assert.deepEqual(sites.map((s) => s.weight).sort(), ['conv.weight', 'fc1.weight', 'fc2.weight']);
  assert.equal(params.length, 6);
  assert.ok(sites.every((s) => s.scale === 2));
  assert.deepEqual(graph.initializers.get(sites.find((s) => s.weight === 'conv.weight')!.a)!.dims, [4, 2]);
  assert.equal(g.nodes.length, 6, 'the input graph is not modified');
  const x = randomTensor([3, 2, 3, 3], new Rng(5));
  assert.equal(maxAbsDiff((await run(g, { x })).logits!, (await run(graph, { x })).logits!), 0);
  // match and targets select
  assert.deepEqual(
    loraSites(addLora(g, { rank: 1, match: /^fc/ }).graph)
      .map((s) => s.weight)
      .sort(),
    ['fc1.weight', 'fc2.weight'],
  );
  assert.deepEqual(
    loraSites(addLora(g, { rank: 1, targets: ['Conv1x1'] }).graph).map((s) => s.weight),
    ['conv.weight'],
  );
  assert.throws(() => addLora(g, { rank: 1, match: 'nothing' }), /no MatMul\/Gemm\/Conv1x1 weight matching/);
  assert.throws(() => addLora(g, { rank: 9 }), /exceeds the smaller side/);
});

test('LoRA gradients match finite differences (A and B of every site, and the input)', async () => {
  const { graph, params } = addLora(net(), { rank: 2, alpha: 3, seed: 4 });
  randomizeB(graph, 11);
  const x = randomTensor([2, 2, 3, 3], new Rng(8));
  const r = await gradCheck(graph, {
    feeds: { x },
    wrt: [...params, 'x'],
    samples: 10,
    float64: true,
    eps: [1e-3, 1e-4],
  });
  const detail = r.entries.map((e) => `${e.name}: ${e.maxRelError.toExponential(2)}`).join(', ');
  assert.equal(r.entries.length, 7);
  assert.ok(
    r.entries.every((e) => e.maxAbsGrad > 0),
    `a gradient is identically zero: ${detail}`,
  );
  assert.ok(r.worst < 1e-3, detail);
});

test('training with trainable: {names: params} moves A and B only; merged model gives the trained outputs', async () => {
  const base = net(2);
  const { graph, params } = addLora(base, { rank: 2, seed: 1 });
  const rng = new Rng(3);
  const x = randomTensor([12, 2, 3, 3], rng);
  const y: Tensor = { dtype: 'int64', dims: [12], data: BigInt64Array.from({ length: 12 }, (_, i) => BigInt(i % 3)) };
  const t = await Trainer.create(graph, { trainable: { names: params }, lr: 0.05 });
  assert.deepEqual([...t.params.keys()].sort(), [...params].sort());
  const first = (await t.step({ x }, y)).loss;
  let last = first;
  for (let i = 0; i < 30; i++) last = (await t.step({ x }, y)).loss;
  assert.ok(last < first * 0.7, `loss ${first} → ${last}`);
  const trained = t.toGraph();
  const predicted = await t.predict({ x });
  await t.release();
  for (const k of ['conv.weight', 'fc1.weight', 'fc2.weight'])
    assert.deepEqual(trained.initializers.get(k), base.initializers.get(k), `${k} stayed frozen`);
  // merge: no LoRA node, initializer or metadata left, same outputs, and it survives an ONNX round trip
  const merged = decodeOnnx(encodeOnnx(mergeLora(trained)));
  assert.ok(!merged.nodes.some((n) => n.name.startsWith('lora/')), 'LoRA nodes left after merge');
  assert.ok(![...merged.initializers.keys()].some((k) => k.includes('lora_')), 'LoRA initializers left after merge');
  assert.equal(merged.metadata['graft.lora'], undefined);
  assert.equal(merged.nodes.length, base.nodes.length);
  const diff = maxAbsDiff((await run(merged, { x })).logits!, predicted);
  assert.ok(diff < 1e-5, `merged vs trained forward: max |Δ| ${diff}`);
  assert.ok(
    maxAbsDiff((await run(merged, { x })).logits!, (await run(base, { x })).logits!) > 1e-3,
    'training changed nothing',
  );
});

test('BERT-mini: LoRA on attention and FFN MatMuls, then merge, gives the same outputs', {
  skip: needs('models/text/bert-mini-debian/onnx/model.onnx'),
}, async () => {
  const bert = loadModel(asset('models/text/bert-mini-debian/onnx/model.onnx'));
  const { graph, params } = addLora(bert, {
    rank: 4,
    alpha: 8,
    match: /attention|intermediate|output\.dense/,
    targets: ['MatMul'],
  });
  const sites = loraSites(graph);
  assert.equal(sites.length, 4 * 6, sites.map((s) => s.weight).join(', ')); // q, k, v, attention out, intermediate, output per layer
  assert.equal(params.length, 2 * sites.length);
  randomizeB(graph, 21);
  const rng = new Rng(9);
  const [batch, seq] = [2, 16];
  const ids = BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt(i % seq === 0 ? 2 : 5 + rng.int(8000)));
  const feeds: Feeds = {
    input_ids: { dtype: 'int64', dims: [batch, seq], data: ids },
    attention_mask: { dtype: 'int64', dims: [batch, seq], data: BigInt64Array.from({ length: batch * seq }, () => 1n) },
    token_type_ids: { dtype: 'int64', dims: [batch, seq], data: new BigInt64Array(batch * seq) },
  };
  const withLora = await run(graph, feeds);
  const merged = mergeLora(graph);
  assert.ok(!merged.nodes.some((n) => n.name.startsWith('lora/')));
  assert.equal(merged.nodes.length, bert.nodes.length);
  assert.equal(merged.initializers.size, bert.initializers.size);
  const out = await run(merged, feeds);
  const plain = await run(bert, feeds);
  const diff = maxAbsDiff(out.last_hidden_state!, withLora.last_hidden_state!);
  const moved = maxAbsDiff(out.last_hidden_state!, plain.last_hidden_state!);
  console.log(
    `BERT-mini LoRA merge: max |Δ| ${diff.toExponential(2)} (adapters moved outputs by up to ${moved.toFixed(3)})`,
  );
  assert.ok(diff < 1e-4, `merged vs LoRA forward: ${diff}`);
  assert.ok(moved > 1e-2, 'the random adapters changed nothing');
});

test('an invalid --lora-match pattern is a GraftError naming the flag, not a SyntaxError', () => {
  assert.throws(
    () => addLora(new Graph(), { rank: 1, match: '(' }),
    (e: Error) => e.name === 'GraftError' && /--lora-match: '\(' is not a valid regular expression/.test(e.message),
  );
});
