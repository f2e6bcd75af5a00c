/**
 * Feature-level adaptation on real features: mnist.onnx's 256-d features of 1,500 labelled
 * Fashion-MNIST training images (source) and of 1,500 washed-out, noisy test images (target,
 * 'dim-noisy'). Each method's hyperparameter is chosen by reverse validation on held-out source
 * labels; target labels are read only to score the result. CORAL must raise target accuracy well
 * above the source-only head; self-training's confident pseudo-labels must be more accurate than
 * the source-only labelling it starts from and must not lose accuracy (from the source-only head it
 * gains little under this shift); subspace alignment and CORAL + self-training must raise accuracy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fashionFeaturePair } from '../../src/adapt/experiments.js';
import { adaptFeatures } from '../../src/adapt/features.js';
import { sourceOnly } from '../../src/adapt/feature-head.js';
import { selfTrainFeatures } from '../../src/adapt/self-training.js';
import { needs, lazy } from '../helpers/assets.js';
import { GraftError } from '../../src/util/errors.js';
import { argmax, accuracy } from '../../src/util/vectors.js';

const skip = needs('models/onnxjs-demo/mnist.onnx', 'datasets/fashion-mnist');
const setup = lazy(async () => {
  const { source, target } = await fashionFeaturePair(1500, 'dim-noisy');
  const base = await sourceOnly(source, target.x);
  return { source, target, base, baseAcc: accuracy(base.targetProba.map(argmax), target.y) };
});

test('CORAL, λ chosen by reverse validation, raises target accuracy by ≥ 0.1', { skip }, async () => {
  const { source, target, baseAcc } = await setup();
  const r = await adaptFeatures('coral', source, target.x);
  assert.equal(r.candidates.length, 3);
  const acc = accuracy(r.targetProba.map(argmax), target.y);
  assert.ok(
    acc >= baseAcc + 0.1,
    `CORAL ${acc.toFixed(3)} vs source-only ${baseAcc.toFixed(3)} (λ ${r.chosen['lambda']})`,
  );
  // the returned head works on raw target features as they are
  assert.ok(Math.abs(accuracy(r.head.predictProba(target.x).map(argmax), target.y) - acc) < 1e-12);
});

test('self-training: confident pseudo-labels beat the labelling they come from; the result does not lose accuracy', {
  skip,
}, async () => {
  const { source, target, base, baseAcc } = await setup();
  const conf = base.targetProba.flatMap((p, i) => (p[argmax(p)]! >= 0.7 ? [i] : []));
  assert.ok(conf.length > 50 && conf.length < target.x.length);
  const confAcc = conf.filter((i) => argmax(base.targetProba[i]!) === target.y[i]).length / conf.length;
  assert.ok(confAcc > baseAcc + 0.1, `confident subset ${confAcc.toFixed(3)} vs all ${baseAcc.toFixed(3)}`);
  const r = await adaptFeatures('self-training', source, target.x);
  const acc = accuracy(r.targetProba.map(argmax), target.y);
  assert.ok(acc >= baseAcc - 0.005, `self-training ${acc.toFixed(3)} vs source-only ${baseAcc.toFixed(3)}`);
  const rounds: number[] = [];
  await selfTrainFeatures(source, target.x, { threshold: 0.7, rounds: 2, onRound: (x) => rounds.push(x.kept) });
  assert.equal(rounds[0], conf.length, 'round 1 keeps exactly the confident examples');
  // targetWeight is a repeat count: a fraction or a value below 1 is refused, not rounded
  for (const targetWeight of [1.5, 0])
    await assert.rejects(
      () => selfTrainFeatures(source, target.x, { targetWeight }),
      (e: Error) => e instanceof GraftError && /targetWeight/.test(e.message),
    );
  for (const r of [0, 2.5, Number.NaN])
    await assert.rejects(
      () => selfTrainFeatures(source, target.x, { rounds: r }),
      (e: Error) => e instanceof GraftError && /rounds must be/.test(e.message),
    );
});

test('subspace alignment (each domain z-scored, k chosen by reverse validation) raises target accuracy by ≥ 0.05', {
  skip,
}, async () => {
  const { source, target, baseAcc } = await setup();
  const r = await adaptFeatures('subspace', source, target.x);
  assert.ok(r.candidates.length >= 4);
  assert.equal(r.head.dim, 256, 'a head on raw target features');
  const acc = accuracy(r.targetProba.map(argmax), target.y);
  assert.ok(
    acc >= baseAcc + 0.05,
    `subspace alignment ${acc.toFixed(3)} vs source-only ${baseAcc.toFixed(3)} (k ${r.chosen['dims']})`,
  );
});

test('CORAL followed by self-training raises target accuracy by ≥ 0.15 over source-only', { skip }, async () => {
  const { source, target, baseAcc } = await setup();
  const r = await adaptFeatures('coral-self-training', source, target.x);
  const acc = accuracy(r.targetProba.map(argmax), target.y);
  assert.ok(
    acc >= baseAcc + 0.15,
    `CORAL + self-training ${acc.toFixed(3)} vs source-only ${baseAcc.toFixed(3)} (${JSON.stringify(r.chosen)})`,
  );
});
