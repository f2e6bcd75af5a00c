/**
 * fit()'s training-loop options on a small real task (the MNIST network fine-tuned on 8×8 digits):
 * bit-for-bit reproducibility, class weights, early stopping with best-weight restore, discriminative
 * learning rates, gradual unfreezing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fit, resolveClassWeights, crossEntropyOf, stack, labelsTensor, type EpochInfo } from '../../src/train/fit.js';
import { Trainer } from '../../src/train/trainer.js';
import { layerGroups, discriminativeScales } from '../../src/train/layer-groups.js';
import { selectTrainable } from '../../src/train/training-graph.js';
import { readCheckpoint } from '../../src/train/checkpoint.js';
import { digitsTask, sameBits, floatInitializers } from './digits-task.js';

const task = await digitsTask();
const tmp = () => mkdtempSync(join(tmpdir(), 'graft-fit-'));

test('same seed and data → the same weights to the last bit (default onnxruntime threads); another seed differs', async () => {
  const run = async (seed: number) => {
    const r = await fit(task.model, task.train, { epochs: 2, lr: 3e-3, seed, schedule: { kind: 'cosine' } });
    const w = new Map([...r.trainer.params].map(([k, v]) => [k, Float32Array.from(v)]));
    await r.trainer.release();
    return { w, losses: r.losses };
  };
  const a = await run(3);
  const b = await run(3);
  const c = await run(4);
  assert.ok(sameBits(a.w, b.w), 'two runs with seed 3 differ');
  assert.deepEqual(a.losses, b.losses);
  assert.ok(!sameBits(a.w, c.w), 'seed 4 gives the same weights as seed 3');
});

test("class weights: 'balanced' is n/(classes·count); the training loss is the weighted cross-entropy", async () => {
  assert.deepEqual(resolveClassWeights('balanced', [0, 0, 0, 1], 2), [4 / 6, 2]);
  assert.throws(() => resolveClassWeights([1, 2], [0], 3), /2 class weights given for a model with 3 classes/);
  const weights = Array.from({ length: 10 }, (_, k) => 1 + k); // class k weighs 1 + k
  const t = await Trainer.create(task.model, { loss: { kind: 'cross-entropy', classWeights: weights }, lr: 0 });
  const xs = task.train.x.slice(0, 40);
  const ys = task.train.y.slice(0, 40);
  const x = { Input3: stack(xs, [1, 28, 28]) };
  const { loss } = await t.step(x, labelsTensor(ys), 0);
  const logits = await t.predict(x);
  const expected = crossEntropyOf(logits, ys, false, weights);
  const plain = crossEntropyOf(logits, ys, false);
  assert.ok(Math.abs(loss - expected) < 1e-4 * expected, `graph loss ${loss} vs weighted cross-entropy ${expected}`);
  assert.ok(Math.abs(expected - plain) > 1e-2 * plain, 'the weights should change the loss on this batch');
  await t.release();
});

test("early stopping on validation loss stops after `patience` epochs without improvement and restores the best epoch's weights", async () => {
  const dir = tmp();
  const seen: EpochInfo[] = [];
  const r = await fit(task.model, task.train, {
    epochs: 20,
    lr: 3e-3,
    seed: 0,
    validation: task.val,
    earlyStopping: { monitor: 'loss', patience: 2 },
    checkpoint: { dir },
    onEpoch: (e) => seen.push(e),
  });
  assert.ok(r.epochs < 20, `did not stop early (${r.epochs} epochs)`);
  assert.equal(r.bestEpoch, r.epochs - 2);
  const best = seen[r.bestEpoch! - 1]!;
  assert.ok(best.improved && seen.slice(r.bestEpoch!).every((e) => !e.improved && e.valLoss! >= best.valLoss!));
  assert.ok(seen[seen.length - 1]!.stopping);
  // the trainer ends with exactly the best epoch's weights, and its validation numbers
  const ck = readCheckpoint(dir, r.bestEpoch!);
  assert.ok(sameBits(new Map([...r.trainer.params]), ck.weights), "final weights are not the best epoch's");
  assert.equal(r.valLoss, best.valLoss);
  assert.equal(r.valAccuracy, best.valAccuracy);
  await r.trainer.release();
});

test('layer groups of the MNIST network follow depth: conv1, conv2, classifier (weight reshaped before its MatMul)', () => {
  const groups = layerGroups(task.model, selectTrainable(task.model, 'all'));
  assert.deepEqual(groups, [
    ['Parameter5', 'Parameter6'],
    ['Parameter87', 'Parameter88'],
    ['Parameter193', 'Parameter194'],
  ]);
  assert.deepEqual(layerGroups(task.model, selectTrainable(task.model, 'all'), 2), [
    ['Parameter5', 'Parameter6', 'Parameter87', 'Parameter88'],
    ['Parameter193', 'Parameter194'],
  ]);
  assert.deepEqual([...discriminativeScales(groups, 0.5).values()], [0.25, 0.25, 0.5, 0.5, 1, 1]);
});

test('discriminative learning rates: one SGD step moves each group by lrDecay^(depth from the top) of the plain step', async () => {
  const one = { x: task.train.x.slice(0, 64), y: task.train.y.slice(0, 64) };
  const step = async (lrDecay?: number) => {
    const r = await fit(task.model, one, {
      epochs: 1,
      batchSize: 64,
      lr: 1e-3,
      optimizer: { kind: 'sgd', weightDecay: 0 },
      ...(lrDecay ? { lrDecay } : {}),
    });
    const w = new Map([...r.trainer.params].map(([k, v]) => [k, Float32Array.from(v)]));
    await r.trainer.release();
    return w;
  };
  const plain = await step();
  const disc = await step(0.5);
  const init = floatInitializers(task.model);
  const expect: Record<string, number> = {
    Parameter5: 0.25,
    Parameter6: 0.25,
    Parameter87: 0.5,
    Parameter88: 0.5,
    Parameter193: 1,
    Parameter194: 1,
  };
  for (const [k, scale] of Object.entries(expect)) {
    const p0 = init.get(k)!;
    let num = 0,
      den = 0;
    for (let i = 0; i < p0.length; i++) {
      num += (disc.get(k)![i]! - p0[i]!) * (plain.get(k)![i]! - p0[i]!);
      den += (plain.get(k)![i]! - p0[i]!) ** 2;
    }
    assert.ok(den > 0, `${k} did not move`);
    assert.ok(Math.abs(num / den - scale) < 1e-3, `${k}: step ratio ${num / den}, expected ${scale}`);
  }
});

test('gradual unfreezing: the classifier trains first, then conv2, then conv1; earlier groups stay bit-identical until their stage', async () => {
  const dir = tmp();
  const stages: string[][] = [];
  const r = await fit(task.model, task.train, {
    epochs: 3,
    lr: 1e-3,
    unfreezeEvery: 1,
    lrDecay: 0.5,
    checkpoint: { dir },
    onStage: (s) => stages.push(s.trainable),
  });
  assert.deepEqual(stages, [
    ['Parameter193', 'Parameter194'],
    ['Parameter87', 'Parameter88', 'Parameter193', 'Parameter194'],
    ['Parameter5', 'Parameter6', 'Parameter87', 'Parameter88', 'Parameter193', 'Parameter194'],
  ]);
  const init = floatInitializers(task.model);
  const same = (epoch: number, k: string) =>
    sameBits(new Map([[k, readCheckpoint(dir, epoch).weights.get(k)!]]), new Map([[k, init.get(k)!]]));
  assert.ok(same(1, 'Parameter5') && same(1, 'Parameter87') && !same(1, 'Parameter193'));
  assert.ok(same(2, 'Parameter5') && !same(2, 'Parameter87'));
  assert.ok(!same(3, 'Parameter5'));
  await r.trainer.release();
});
