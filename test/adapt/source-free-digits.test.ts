/**
 * Source-free adaptation of a real pretrained model: mnist.onnx (trained on MNIST; ≈ 0.85 zero-shot
 * on the 8×8 digits) adapted to the digits' unlabelled 70 % split, scored on the held-out 30 %.
 * Hyperparameters and checkpoints are chosen by the label-free criterion (information maximization
 * on the unlabelled split); the held-out labels are read only after the choice. Entropy
 * minimization and self-training must each raise held-out accuracy. mnist.onnx has no
 * BatchNormalization, so AdaBN must refuse it (test/adapt/adabn.test.ts shows AdaBN on a BN model).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { digitsTask } from '../../src/adapt/experiments.js';
import { adaptNetwork } from '../../src/adapt/source-free.js';
import { adaBn } from '../../src/adapt/adabn.js';
import { predictClassProba } from '../../src/adapt/predict.js';
import { GraftError } from '../../src/util/errors.js';
import { needs, lazy } from '../helpers/assets.js';
import { argmax, accuracy } from '../../src/util/vectors.js';

const skip = needs('models/onnxjs-demo/mnist.onnx', 'datasets/digits-8x8/digits.csv.gz');
const setup = lazy(async () => {
  const task = await digitsTask();
  const heldOut = async (g: typeof task.model) =>
    accuracy((await predictClassProba(g, task.test.x)).map(argmax), task.test.y);
  return { task, heldOut, zeroShot: await heldOut(task.model) };
});

test('the unadapted MNIST network scores about 0.85 on the held-out digits', { skip }, async () => {
  const { task, zeroShot } = await setup();
  assert.ok(zeroShot > 0.8 && zeroShot < 0.9, `zero-shot ${zeroShot}`);
  assert.equal(task.target.length + task.test.x.length, 1797);
});

test('entropy minimization (with class diversity), selected without labels, raises held-out accuracy by ≥ 0.05', {
  skip,
}, async () => {
  const { task, heldOut, zeroShot } = await setup();
  const r = await adaptNetwork('entropy', task.model, task.target);
  const acc = await heldOut(r.model);
  assert.ok(r.candidates.length >= 4);
  const best = Math.max(...r.candidates.map((c) => c.score));
  const chosen = r.candidates.find((c) => c.params === r.chosen);
  assert.ok(chosen, 'the chosen setting is one of the scored candidates');
  assert.equal(chosen.score, best, 'the chosen candidate has the best label-free score');
  assert.ok(best > r.before, 'the chosen model scores above the unadapted one');
  assert.ok(
    acc >= zeroShot + 0.05,
    `entropy: ${zeroShot.toFixed(3)} → ${acc.toFixed(3)} (chosen ${JSON.stringify(r.chosen)})`,
  );
});

test('self-training on confident pseudo-labels, selected without labels, raises held-out accuracy by ≥ 0.03', {
  skip,
}, async () => {
  const { task, heldOut, zeroShot } = await setup();
  const r = await adaptNetwork('self-training', task.model, task.target);
  const acc = await heldOut(r.model);
  assert.ok(
    acc >= zeroShot + 0.03,
    `self-training: ${zeroShot.toFixed(3)} → ${acc.toFixed(3)} (chosen ${JSON.stringify(r.chosen)})`,
  );
});

test('AdaBN refuses a model without BatchNormalization, naming the alternative', { skip }, async () => {
  const { task } = await setup();
  await assert.rejects(
    () => adaBn(task.model, task.target.slice(0, 10)),
    (e: unknown) => e instanceof GraftError && /no BatchNormalization/.test(e.message),
  );
});
