/**
 * A model folder that ships Optimum's merged cached decoder (onnx/decoder_model_merged.onnx: one graph,
 * an If on `use_cache_branch` choosing between the decoder without past and the decoder with past,
 * weights shared in the outer graph) is used as it is, and its greedy tokens equal the uncached
 * path's. The folder is built here from the shared GPT-2-mini: the with-past branch is Graft's own
 * step graph specialized to one new token (so it is wrong for a whole prompt: the test fails if the
 * prefill runs that branch), the no-past branch the uncached graph with present.* outputs (it ignores
 * the past: the test fails if a step runs that branch).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { ONNX_PROTO } from '../../src/formats/onnx-schema.js';
import { encodeOnnx, readOnnx, writeOnnx } from '../../src/formats/onnx.js';
import { Graph } from '../../src/graph/graph.js';
import { CausalLm, generateText } from '../../src/text/generate.js';
import {
  KvDecoder,
  kvRewrite,
  loadShippedDecoder,
  shippedDecoder,
  specializeStep,
  type KvRewrite,
} from '../../src/text/kv-cache.js';
import { Session } from '../../src/runtime/session.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { asset, needs } from '../helpers/assets.js';

const GPT2 = 'models/text/gpt2-mini-debian';
const LAYERS = 4;
const ModelProto = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');

/** A branch of the If: no inputs, every weight the outer graph also holds read from there, outputs renamed. */
function branch(g: Graph, outer: Graph, prefix: string): unknown {
  const b = g.clone();
  b.name = `${prefix}branch`;
  // logits [batch, new, vocab] instead of the last position's: drop the GatherND of the rewrite
  const gather = b.nodes.find((n) => n.opType === 'GatherND' && n.outputs[0] === 'next_logits')!;
  b.nodes = b.nodes.filter((n) => n !== gather);
  b.outputs = [{ name: gather.inputs[0]! }, ...b.outputs.filter((v) => v.name.startsWith('present.'))];
  b.prune();
  for (const [name, t] of [...b.initializers])
    if (outer.initializers.has(name)) b.initializers.delete(name);
    else if (!name.startsWith('kv/')) {
      outer.initializers.set(name, t); // a weight: shared in the outer graph, as Optimum merges them
      b.initializers.delete(name);
    }
  // a branch output may not reuse an outer name: each goes through an Identity to a prefixed name
  b.outputs = b.outputs.map((v, i) => {
    const name = `${prefix}${i === 0 ? 'logits' : v.name}`;
    b.nodes.push({
      name: `${prefix}out_${i}`,
      opType: 'Identity',
      domain: '',
      inputs: [v.name],
      outputs: [name],
      attrs: {},
    });
    return { name, dtype: 'float32' as const };
  });
  b.inputs = [];
  // the GraphProto as a plain object (what a file's If attribute holds once decoded)
  return (ModelProto.toObject(ModelProto.decode(encodeOnnx(b))) as { graph: unknown }).graph;
}

test("a folder with Optimum's decoder_model_merged.onnx (If on use_cache_branch) is used as it is: greedy tokens equal the uncached path's", {
  skip: needs(GPT2),
}, async () => {
  const src = asset(GPT2);
  const model = readOnnx(join(src, 'onnx/model.onnx'));
  const r = kvRewrite(model) as KvRewrite;
  assert.ok(!('reason' in r));
  const prefill = await Session.fromGraph(r.prefill);
  const spec = await specializeStep(r, await KvDecoder.stepProbes(prefill, r));
  await prefill.release();

  const merged = new Graph();
  merged.name = 'decoder_model_merged';
  merged.opsets = { ...model.opsets };
  merged.irVersion = model.irVersion;
  const past = (name: string) => ({ name, dtype: 'float32' as const, shape: ['batch', 4, 'past_sequence_length', 64] });
  merged.inputs.push(
    { name: 'input_ids', dtype: 'int64', shape: ['batch', 'sequence_length'] },
    { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'past_sequence_length + 1'] },
    { name: 'position_ids', dtype: 'int64', shape: ['batch', 'sequence_length'] },
  );
  for (let i = 0; i < LAYERS; i++)
    merged.inputs.push(past(`past_key_values.${i}.key`), past(`past_key_values.${i}.value`));
  merged.inputs.push({ name: 'use_cache_branch', dtype: 'bool', shape: [1] });
  const outs = ['logits'];
  for (let i = 0; i < LAYERS; i++) outs.push(`present.${i}.key`, `present.${i}.value`);
  merged.nodes.push({
    name: 'optimum::if',
    opType: 'If',
    domain: '',
    inputs: ['use_cache_branch'],
    outputs: outs,
    attrs: {
      then_branch: {
        type: 'raw',
        value: { name: 'then_branch', type: 5, g: branch(spec.graph, merged, 'with_past/') },
      },
      else_branch: { type: 'raw', value: { name: 'else_branch', type: 5, g: branch(r.prefill, merged, 'no_past/') } },
    },
  });
  merged.outputs = outs.map((name) => ({ name, dtype: 'float32' as const }));

  const dir = mkdtempSync(join(tmpdir(), 'graft-kv-merged-'));
  try {
    mkdirSync(join(dir, 'onnx'));
    writeOnnx(merged, join(dir, 'onnx', 'decoder_model_merged.onnx'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'])
      copyFileSync(join(src, f), join(dir, f));
    assert.deepEqual(shippedDecoder(dir), { path: join(dir, 'onnx', 'decoder_model_merged.onnx'), kind: 'merged' });
    // the file read back still holds the If and its two branches, the weights once in the outer graph
    const back = readOnnx(join(dir, 'onnx', 'decoder_model_merged.onnx'));
    assert.deepEqual(
      back.nodes.map((n) => n.opType),
      ['If'],
    );
    assert.ok(back.initializers.size > 0);

    const kv = (await loadShippedDecoder(dir))!;
    assert.match(kv.source, /^shipped .*decoder_model_merged\.onnx$/);
    assert.equal(kv.layers, LAYERS);
    const shipped = await CausalLm.create(undefined, { cached: kv, maxPositions: 128 });
    const plain = await CausalLm.create(model, { maxPositions: 128, cache: false });
    assert.equal(shipped.cached, true);
    const prompts = [
      [3, 100, 200, 300],
      [3, 55],
      [3, 1000, 20, 30, 40, 50, 60, 70, 80],
    ];
    const a = await shipped.generate(prompts, { maxNewTokens: 24 });
    const b = await plain.generate(prompts, { maxNewTokens: 24 });
    assert.deepEqual(a, b);
    assert.ok(a.every((row) => row.length === 24));
    const tok = await loadTokenizer(src);
    const want = (await generateText(plain, tok, ['this package provides'], { maxNewTokens: 8 }))[0]!.text;
    await shipped.release();
    await plain.release();
    // graft generate on the folder: no onnx/model.onnx there, only the merged decoder can answer
    const out = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'generate',
        '--model',
        dir,
        '--prompt',
        'this package provides',
        '--max-new-tokens',
        '8',
        '--json',
      ],
      { encoding: 'utf8' },
    );
    assert.equal((JSON.parse(out) as { results: { text: string }[] }).results[0]!.text, want);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
