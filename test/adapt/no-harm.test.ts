/**
 * Adaptation that does no harm (src/adapt/selection.ts selectOverUnadapted, NO_HARM_MARGIN): every
 * label-free selection has the unadapted model (or the source-only head) as a candidate and leaves it
 * only when the criterion prefers the adapted one by the margin. On real data: mnist.onnx → the 8×8
 * digits (source-free: entropy minimization helps, and is kept; with an unreachable margin the input
 * network comes back untouched), and mnist.onnx features Fashion → dim-noisy Fashion (feature level:
 * subspace alignment helps and is used; self-training, which does not help there, keeps the
 * source-only head); and `graft adapt` says when it kept the unadapted model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectOverUnadapted, NO_HARM_MARGIN } from '../../src/adapt/selection.js';
import { digitsTask, fashionFeaturePair } from '../../src/adapt/experiments.js';
import { adaptNetwork } from '../../src/adapt/source-free.js';
import { adaptFeatures } from '../../src/adapt/features.js';
import { sourceOnly } from '../../src/adapt/feature-head.js';
import { predictClassProba } from '../../src/adapt/predict.js';
import { graft } from '../helpers/cli.js';
import { assetPath, needs, lazy } from '../helpers/assets.js';
import { GraftError } from '../../src/util/errors.js';
import { argmax, accuracy } from '../../src/util/vectors.js';

test('selectOverUnadapted leaves the unadapted candidate only beyond the margin', () => {
  const base = { params: {}, value: 'unadapted', score: 1 };
  const cands = [
    { params: { lr: 1 }, value: 'a', score: 1.04 },
    { params: { lr: 2 }, value: 'b', score: 1.03 },
  ];
  const kept = selectOverUnadapted(base, cands, 0.05, 'IM');
  assert.equal(kept.keptUnadapted, true);
  assert.equal(kept.chosen.value, 'unadapted');
  assert.equal(kept.best.value, 'a');
  assert.match(kept.reason, /kept the unadapted model/);
  const moved = selectOverUnadapted(base, cands, 0.02, 'IM');
  assert.equal(moved.keptUnadapted, false);
  assert.equal(moved.chosen.value, 'a');
  assert.match(moved.reason, /exceeds the unadapted model's .* by 0\.0400 > margin 0\.02/);
  // a tie at the margin keeps the unadapted model
  assert.equal(selectOverUnadapted(base, [{ params: {}, value: 'c', score: 1.5 }], 0.5).keptUnadapted, true);
  assert.throws(() => selectOverUnadapted(base, cands, NaN), GraftError);
  assert.throws(() => selectOverUnadapted(base, [], 0), GraftError);
});

const digitsSkip = needs('models/onnxjs-demo/mnist.onnx', 'datasets/digits-8x8/digits.csv.gz');
const digits = lazy(() => digitsTask());

test('source-free: the unadapted network is a candidate; entropy minimization that helps is still chosen', {
  skip: digitsSkip,
}, async () => {
  const task = await digits();
  const acc = async (g: typeof task.model) =>
    accuracy((await predictClassProba(g, task.test.x)).map(argmax), task.test.y);
  const grid = [{ lr: 3e-3, diversity: 1, steps: 50 }];
  const r = await adaptNetwork('entropy', task.model, task.target, { grid, checkpoints: [25] });
  assert.equal(r.keptUnadapted, false);
  assert.equal(r.noHarm!.margin, NO_HARM_MARGIN.informationMaximization);
  assert.ok(Math.max(...r.candidates.map((c) => c.score)) > r.before + NO_HARM_MARGIN.informationMaximization);
  assert.ok((await acc(r.model)) > (await acc(task.model)) + 0.05);
  // a margin no candidate can clear: the input network comes back, and the result says so
  const k = await adaptNetwork('entropy', task.model, task.target, { grid, checkpoints: [25], margin: 100 });
  assert.equal(k.keptUnadapted, true);
  assert.equal(k.model, task.model);
  assert.deepEqual(k.chosen, {});
  assert.match(k.noHarm!.reason, /kept the unadapted model/);
  // the old rule (noHarm: false) still picks the best adapted candidate
  const old = await adaptNetwork('entropy', task.model, task.target, { grid, checkpoints: [25], noHarm: false });
  assert.equal(old.keptUnadapted, false);
  assert.equal(old.noHarm, undefined);
});

const fashionSkip = needs('models/onnxjs-demo/mnist.onnx', 'datasets/fashion-mnist');
const pair = lazy(async () => {
  const p = await fashionFeaturePair(1500, 'dim-noisy');
  const base = accuracy((await sourceOnly(p.source, p.target.x)).targetProba.map(argmax), p.target.y);
  return { ...p, base };
});

test('feature level: subspace alignment, which helps, is used; self-training, which does not, keeps the source-only head', {
  skip: fashionSkip,
}, async () => {
  const { source, target, base } = await pair();
  const sub = await adaptFeatures('subspace', source, target.x);
  assert.equal(sub.unadapted!.kept, false, sub.unadapted!.reason);
  assert.ok(accuracy(sub.targetProba.map(argmax), target.y) > base + 0.1);
  const st = await adaptFeatures('self-training', source, target.x);
  assert.equal(st.unadapted!.kept, true, st.unadapted!.reason);
  assert.deepEqual(st.chosen, {});
  assert.ok(
    Math.abs(accuracy(st.targetProba.map(argmax), target.y) - base) < 1e-12,
    'kept: exactly the source-only head',
  );
  // noHarm: false is the old selection (a self-training threshold)
  const old = await adaptFeatures('self-training', source, target.x, { noHarm: false });
  assert.equal(old.unadapted, undefined);
  assert.ok('threshold' in old.chosen);
});

test('graft adapt reports when it kept the unadapted model', { skip: fashionSkip }, async () => {
  const model = assetPath('models/onnxjs-demo/mnist.onnx');
  const fTrain = assetPath('datasets/fashion-mnist/train-images-idx3-ubyte.gz'),
    fTest = assetPath('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');
  const args = [
    'adapt',
    '--method',
    'self-training',
    '--model',
    model,
    '--node',
    'Pooling160_Output_0_reshape0',
    '--source',
    fTrain,
    '--target',
    fTest,
    '--shift-target',
    'dim-noisy',
    '--max-examples',
    '1500',
    '--target-labels',
    'data',
  ];
  const r = JSON.parse((await graft([...args, '--json'])).stdout);
  assert.equal(r.keptUnadapted, true, JSON.stringify(r.noHarm));
  assert.match(r.noHarm.reason, /kept the unadapted model/);
  assert.equal(r.accuracy.after, r.accuracy.before);
  const text = (await graft(args)).stdout;
  assert.match(text, /kept the unadapted model/);
});
