import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { pickToken, isSampling, CausalLm, generateText } from '../../src/text/generate.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { Session } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

const logits = Float32Array.from([0.1, 2.0, -1, 1.9, 0.5]);

test('greedy picks the argmax; top-k 1 and a tiny top-p reduce sampling to it', () => {
  const rng = new Rng(1);
  assert.equal(isSampling({}), false);
  assert.equal(isSampling({ topP: 0.9 }), true);
  assert.equal(isSampling({ temperature: 0 }), false);
  assert.equal(pickToken(logits, {}, rng), 1);
  for (let i = 0; i < 50; i++) {
    assert.equal(pickToken(logits, { topK: 1, temperature: 5 }, rng), 1);
    assert.equal(pickToken(logits, { topP: 0.01, temperature: 1 }, rng), 1);
  }
});

test('sampling follows softmax(logits / T) within top-k / top-p, and is reproducible by seed', () => {
  const draw = (o: Parameters<typeof pickToken>[1], n = 20000, seed = 3) => {
    const rng = new Rng(seed);
    const c = new Array<number>(logits.length).fill(0);
    for (let i = 0; i < n; i++) c[pickToken(logits, o, rng)]!++;
    return c.map((x) => x / n);
  };
  const p = (T: number, keep: number[]) => {
    const e = keep.map((i) => Math.exp(logits[i]! / T));
    const z = e.reduce((a, b) => a + b, 0);
    const out = new Array<number>(logits.length).fill(0);
    keep.forEach((i, k) => (out[i] = e[k]! / z));
    return out;
  };
  const full = draw({ temperature: 1 });
  p(1, [0, 1, 2, 3, 4]).forEach((q, i) =>
    assert.ok(Math.abs(full[i]! - q) < 0.015, `T=1 token ${i}: ${full[i]} vs ${q}`),
  );
  const hot = draw({ temperature: 0.5, topK: 2 });
  p(0.5, [1, 3]).forEach((q, i) => assert.ok(Math.abs(hot[i]! - q) < 0.015, `top-k token ${i}: ${hot[i]} vs ${q}`));
  // top-p 0.6 at T=1: sorted probabilities 0.39 (1), 0.36 (3) → keeps tokens 1 and 3
  const nuc = draw({ topP: 0.6 });
  p(1, [1, 3]).forEach((q, i) => assert.ok(Math.abs(nuc[i]! - q) < 0.015, `top-p token ${i}: ${nuc[i]} vs ${q}`));
  assert.deepEqual(draw({ temperature: 1 }, 200, 9), draw({ temperature: 1 }, 200, 9));
});

test('GPT-2-mini: batched generation equals one prompt at a time, greedy follows the full model, EOS stops', {
  skip: needs('models/text/gpt2-mini-debian'),
}, async () => {
  const dir = asset('models/text/gpt2-mini-debian');
  const tok = await loadTokenizer(dir);
  const model = readOnnx(`${dir}/onnx/model.onnx`);
  const lm = await CausalLm.create(model, { maxPositions: 128 });
  const prompts = ['this package provides', 'a small library for reading files and', 'the'];
  const batch = await generateText(lm, tok, prompts, { maxNewTokens: 12 });
  for (let i = 0; i < prompts.length; i++) {
    const one = await generateText(lm, tok, [prompts[i]!], { maxNewTokens: 12 });
    assert.equal(one[0]!.text, batch[i]!.text);
  }
  assert.ok(batch.every((b) => b.tokens > 0 && b.text.startsWith(b.prompt.split(' ')[0]!)));
  // greedy's first token is the full model's argmax at the last prompt position
  const ids = [tok.bosId!, ...tok.encode(prompts[0]!, { addSpecialTokens: false })];
  const s = await Session.fromGraph(model);
  const r = (
    await s.run({
      input_ids: { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) },
      attention_mask: { dtype: 'int64', dims: [1, ids.length], data: new BigInt64Array(ids.length).fill(1n) },
    })
  )['logits']!;
  await s.release();
  const v = r.dims[2]!;
  const lastRow = (r.data as Float32Array).subarray((ids.length - 1) * v, ids.length * v);
  const first = (await lm.generate([ids], { maxNewTokens: 1 }))[0]![0]!;
  assert.equal(first, lastRow.indexOf(Math.max(...lastRow)));
  // stopping: treat the greedy first token as end-of-text → nothing generated
  assert.deepEqual(await lm.generate([ids], { maxNewTokens: 5, eos: first }), [[]]);
  const a = await generateText(lm, tok, prompts, { maxNewTokens: 10, topP: 0.9, temperature: 0.8, seed: 4 });
  const b = await generateText(lm, tok, prompts, { maxNewTokens: 10, topP: 0.9, temperature: 0.8, seed: 4 });
  assert.deepEqual(a, b);
  await lm.release();
});

test('graft generate runs from the command line and rejects a bad flag by name', {
  skip: needs('models/text/gpt2-mini-debian'),
}, () => {
  const dir = asset('models/text/gpt2-mini-debian');
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
      'this package',
      '--max-new-tokens',
      '5',
      '--json',
    ],
    { encoding: 'utf8' },
  );
  const j = JSON.parse(out) as { results: { text: string; tokens: number }[] };
  assert.equal(j.results.length, 1);
  assert.ok(j.results[0]!.tokens >= 1 && j.results[0]!.tokens <= 5);
  assert.throws(
    () =>
      execFileSync(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'generate', '--model', dir, '--prompt', 'x', '--top-p', '1.5'],
        { encoding: 'utf8', stdio: 'pipe' },
      ),
    /--top-p must be in/,
  );
  assert.throws(
    () =>
      execFileSync(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'generate', '--model', dir, '--prompt', 'x', '--greedy', '--top-k', '5'],
        { encoding: 'utf8', stdio: 'pipe' },
      ),
    /--greedy cannot be combined with --top-k/,
  );
});

test('a prompt longer than the context is warned about once, naming it and the tokens dropped', {
  skip: needs('models/text/gpt2-mini-debian'),
}, async () => {
  const dir = asset('models/text/gpt2-mini-debian');
  const tok = await loadTokenizer(dir);
  const lm = await CausalLm.create(readOnnx(`${dir}/onnx/model.onnx`), { maxPositions: 8 });
  const long = 'the package provides a small library for reading and writing files in many formats';
  const n = 1 + tok.encode(long, { addSpecialTokens: false }).length; // with the beginning-of-text token
  assert.ok(n > 8);
  const warnings: string[] = [];
  const res = await generateText(lm, tok, ['the', long], { maxNewTokens: 4, warn: (m) => warnings.push(m) });
  assert.equal(res.length, 2);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /^prompt 2 \("the package provides/);
  assert.ok(
    warnings[0]!.includes(`${n} tokens`) && warnings[0]!.includes(`first ${n - 8} tokens are dropped`),
    warnings[0],
  );
  // on ids directly: named by position
  const ids: string[] = [];
  await lm.generate([[1, 2, 3], Array.from({ length: 11 }, (_, i) => i + 5)], {
    maxNewTokens: 1,
    warn: (m) => ids.push(m),
  });
  assert.deepEqual(ids.length, 1);
  assert.match(ids[0]!, /^prompt 2: 11 tokens.*first 3 tokens are dropped/);
  // a prompt that fits but grows past the context during generation: one note, when it starts to slide
  const grow: string[] = [];
  const out = await lm.generate([[1, 2, 3, 4, 5, 6]], { maxNewTokens: 5, warn: (m) => grow.push(m) });
  assert.equal(out[0]!.length, 5);
  assert.equal(grow.length, 1, grow.join('\n'));
  assert.match(grow[0]!, /^prompt 1: prompt and generated text passed the model's 8 positions after 3 new tokens/);
  // stopping when the row is exactly 9 tokens long: the 9th was never fed back, nothing slid out of view
  const none: string[] = [];
  await lm.generate([[1, 2, 3, 4, 5, 6]], { maxNewTokens: 3, warn: (m) => none.push(m) });
  assert.deepEqual(none, []);
  await lm.release();
});

test("graft generate warns on stderr when a prompt exceeds the model's positions", {
  skip: needs('models/text/gpt2-mini-debian'),
}, () => {
  const dir = asset('models/text/gpt2-mini-debian');
  const prompt = Array.from({ length: 200 }, (_, i) => (i % 2 ? 'package' : 'the')).join(' ');
  const short = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'generate',
      '--model',
      dir,
      '--prompt',
      'the package',
      '--max-new-tokens',
      '2',
    ],
    { encoding: 'utf8' },
  );
  assert.equal(short.status, 0, short.stderr);
  assert.doesNotMatch(short.stderr, /dropped/);
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'generate', '--model', dir, '--prompt', prompt, '--max-new-tokens', '2'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => /dropped/.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0]!,
    /warning: prompt 1 \("the package the package.*"\): \d+ tokens, longer than the model's 128 positions; its first \d+ tokens are dropped/,
  );
});
