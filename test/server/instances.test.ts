/**
 * Several onnxruntime sessions per served model (`instances`, `graft serve --instances`): batches run
 * side by side (two at once with two instances, never more than one with one), and every image's
 * probabilities equal those of a one-session registry running each image alone.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelRegistry } from '../../src/server/registry.js';
import { digitClassifier, digitPng } from './fixtures.js';
import { needs } from '../helpers/assets.js';

const tmp = mkdtempSync(join(tmpdir(), 'graft-serve-instances-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('two instances run two batches at once, with the results of one session running each image alone', {
  skip: needs('datasets/digits-8x8/digits.csv.gz'),
}, async () => {
  const clf = await digitClassifier(join(tmp, 'digits'));
  const images = await Promise.all(
    Array.from({ length: 24 }, async (_, i) => ({ name: `d${i}.png`, bytes: await digitPng(500 + i) })),
  );
  const pair = new ModelRegistry({ batching: { maxBatch: 3, maxDelayMs: 0 }, instances: 2 });
  const alone = new ModelRegistry({ batching: { maxBatch: 1 } });
  try {
    const p = await pair.add('digits', clf);
    await alone.add('digits', clf);
    assert.equal(p.batching.instances, 2);
    const m = pair.get('digits');
    const [a, b] = [
      await Promise.all(images.map((im) => m.predictImages([im], { top: 10 }))),
      await Promise.all(images.map((im) => alone.get('digits').predictImages([im], { top: 10 }))),
    ];
    const s = m.stats();
    assert.equal(s.inputs, 24);
    assert.ok(s.runs >= 8, `24 inputs in batches of at most 3 ran in ${s.runs} runs`);
    assert.equal(s.mostRunning, 2, 'two batches ran at the same time');
    assert.equal(alone.get('digits').stats().mostRunning, 1);
    for (let i = 0; i < images.length; i++) {
      const ta = a[i]![0]!.top,
        tb = b[i]![0]!.top;
      assert.deepEqual(
        ta.map((t) => t.index),
        tb.map((t) => t.index),
        `image ${i}`,
      );
      ta.forEach((t, k) => assert.ok(Math.abs(t.probability - tb[k]!.probability) <= 1e-6, `image ${i}`));
    }
  } finally {
    await pair.close();
    await alone.close();
  }
});
