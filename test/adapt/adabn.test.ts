/**
 * Normalization-based adaptation on a network that has BatchNormalization: a small BN CNN trained
 * from scratch on Fashion-MNIST (3,000 labelled source images) loses most of its accuracy on
 * washed-out, noisy test images (the 'dim-noisy' shift of src/data/shifts.ts). AdaBN
 * (target statistics, no labels, no gradient) and TENT-style entropy minimization of the BN
 * affine parameters must each win back accuracy on held-out shifted images; on unshifted data
 * AdaBN's statistics must reproduce the exact layer statistics it claims to compute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fashionBnTask } from '../../src/adapt/experiments.js';
import { adaBn } from '../../src/adapt/adabn.js';
import { adaptNetwork } from '../../src/adapt/source-free.js';
import { batchNormAffine } from '../../src/adapt/entropy.js';
import { predictClassProba } from '../../src/adapt/predict.js';
import { Session } from '../../src/runtime/session.js';
import { stack } from '../../src/train/fit.js';
import { needs, lazy } from '../helpers/assets.js';
import { argmax, accuracy } from '../../src/util/vectors.js';

const skip = needs('datasets/fashion-mnist');
const setup = lazy(async () => {
  const task = await fashionBnTask();
  const acc = async (g: typeof task.model) =>
    accuracy((await predictClassProba(g, task.test.x)).map(argmax), task.test.y);
  return { task, acc, sourceOnly: await acc(task.model) };
});

test('the BN CNN works on its own domain and loses accuracy under the shift', { skip }, async () => {
  const { task, sourceOnly } = await setup();
  const clean = accuracy((await predictClassProba(task.model, task.sourceTest.x)).map(argmax), task.sourceTest.y);
  assert.ok(clean > 0.75, `unshifted accuracy ${clean}`);
  assert.ok(sourceOnly < clean - 0.2, `shifted ${sourceOnly} vs unshifted ${clean}`);
});

test('AdaBN raises shifted accuracy by ≥ 0.08, and its statistics normalize the first layer exactly', {
  skip,
}, async () => {
  const { task, acc, sourceOnly } = await setup();
  const r = await adaBn(task.model, task.target);
  assert.equal(r.layers.length, 2);
  const after = await acc(r.model);
  assert.ok(after >= sourceOnly + 0.08, `AdaBN: ${sourceOnly.toFixed(3)} → ${after.toFixed(3)}`);
  // the first BN input, over the target, has the mean and variance now stored in the model
  const g = r.model.clone();
  const bn = g.nodes.find((n) => n.opType === 'BatchNormalization')!;
  g.outputs = [{ name: bn.inputs[0]! }];
  g.prune();
  const s = await Session.fromGraph(g);
  const t = (await s.run({ input: stack(task.target, [1, 28, 28]) }))[bn.inputs[0]!]!;
  await s.release();
  const [n, C, H, W] = t.dims as [number, number, number, number];
  const d = t.data as Float32Array;
  const mean = r.model.initializers.get(bn.inputs[3]!)!.data as Float32Array,
    vr = r.model.initializers.get(bn.inputs[4]!)!.data as Float32Array;
  for (let c = 0; c < C; c++) {
    let s1 = 0,
      s2 = 0;
    for (let e = 0; e < n; e++)
      for (let j = 0; j < H * W; j++) {
        const v = d[(e * C + c) * H * W + j]!;
        s1 += v;
        s2 += v * v;
      }
    const m = s1 / (n * H * W),
      v = s2 / (n * H * W) - m * m;
    assert.ok(
      Math.abs(m - mean[c]!) < 1e-3 * (1 + Math.abs(m)) && Math.abs(v - vr[c]!) < 1e-3 * (1 + v),
      `channel ${c}`,
    );
  }
});

test('entropy minimization of the BN affine parameters (TENT), selected without labels, raises shifted accuracy by ≥ 0.15', {
  skip,
}, async () => {
  const { task, acc, sourceOnly } = await setup();
  assert.equal(batchNormAffine(task.model).length, 4);
  const r = await adaptNetwork('entropy', task.model, task.target, {
    grid: [1e-3, 1e-2].map((lr) => ({ lr, diversity: 1 })),
  });
  const after = await acc(r.model);
  assert.ok(
    after >= sourceOnly + 0.15,
    `TENT: ${sourceOnly.toFixed(3)} → ${after.toFixed(3)} (chosen ${JSON.stringify(r.chosen)})`,
  );
});
