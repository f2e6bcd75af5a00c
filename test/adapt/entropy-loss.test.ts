/**
 * The label-free losses of network adaptation: the entropy (− diversity) loss and the tempered
 * pseudo-label cross-entropy give the values computed directly in JavaScript, their gradients match
 * finite differences, and training steps on the entropy loss lower it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Builder } from '../../src/graph/builder.js';
import { Session } from '../../src/runtime/session.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { entropyLoss, entropyMinimize } from '../../src/adapt/entropy.js';
import { temperedCrossEntropy } from '../../src/adapt/self-train-net.js';
import { probabilities, entropyOf, predictLogits } from '../../src/adapt/predict.js';
import { informationMaximization } from '../../src/adapt/selection.js';
import type { CustomLoss } from '../../src/train/losses.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { tinyNet } from '../helpers/adapt-net.js';
import { Rng } from '../../src/util/random.js';

const N = 6;
function xs(seed = 11): Float32Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: N }, () => Float32Array.from({ length: 4 }, () => rng.normal()));
}
const batch = (x: Float32Array[]): Tensor => ({
  dtype: 'float32',
  dims: [x.length, 4],
  data: Float32Array.from(x.flatMap((v) => [...v])),
});
const labels: Tensor = { dtype: 'int64', dims: [N], data: BigInt64Array.from([0n, 2n, 1n, 1n, 0n, 2n]) };

function lossGraph(loss: CustomLoss) {
  const g = tinyNet();
  const built = loss.build(g, 'logits', new Builder(g, 'loss/'));
  if (built.targets.includes('pseudo_labels')) g.inputs.push({ name: 'pseudo_labels', dtype: 'int64', shape: ['N'] });
  g.outputs = [{ name: built.loss }];
  return { g, loss: built.loss };
}

test('entropy − diversity loss at a temperature equals the JavaScript value, and its gradient matches finite differences', async () => {
  const x = xs();
  const logits = await predictLogits(tinyNet(), x);
  for (const [div, T] of [
    [0, 1],
    [1, 2.5],
  ] as const) {
    const { g, loss } = lossGraph(entropyLoss(div, T));
    const s = await Session.fromGraph(g);
    const v = Number((await s.run({ x: batch(x) }))[loss]!.data[0]);
    await s.release();
    const im = informationMaximization(probabilities(logits, T));
    const want = im.meanEntropy - div * im.diversity;
    assert.ok(Math.abs(v - want) < 1e-5, `diversity ${div}, T ${T}: ${v} vs ${want}`);
    const r = await gradCheck(g, {
      feeds: { x: batch(x) },
      wrt: ['W1', 'b1', 'W2', 'x'],
      samples: 10,
      float64: true,
      eps: [1e-3, 1e-4],
    });
    for (const e of r.entries) assert.ok(e.maxAbsGrad > 1e-6, `${e.name}: the loss depends on it`);
    assert.ok(r.worst < 1e-4, JSON.stringify(r.entries));
  }
});

test('tempered pseudo-label cross-entropy equals the JavaScript value and checks against finite differences', async () => {
  const x = xs(3);
  const T = 3;
  const P = probabilities(await predictLogits(tinyNet(), x), T);
  const want = P.reduce((a, p, i) => a - Math.log(p[Number(labels.data[i])]!), 0) / N;
  const { g, loss } = lossGraph(temperedCrossEntropy(T));
  const s = await Session.fromGraph(g);
  const v = Number((await s.run({ x: batch(x), pseudo_labels: labels }))[loss]!.data[0]);
  await s.release();
  assert.ok(Math.abs(v - want) < 1e-5, `${v} vs ${want}`);
  const r = await gradCheck(g, {
    feeds: { x: batch(x), pseudo_labels: labels },
    wrt: ['W1', 'W2'],
    samples: 10,
    float64: true,
    eps: [1e-3, 1e-4],
  });
  assert.ok(r.worst < 1e-4, JSON.stringify(r.entries));
});

test('entropy minimization steps lower the mean prediction entropy on the target', async () => {
  const x = Array.from({ length: 8 }, (_, i) => xs(20 + i)).flat();
  const meanH = async (g: Parameters<typeof predictLogits>[0]) =>
    probabilities(await predictLogits(g, x)).reduce((a, p) => a + entropyOf(p), 0) / x.length;
  const before = await meanH(tinyNet());
  const r = await entropyMinimize(tinyNet(), x, { steps: 30, lr: 1e-2, batchSize: 16, diversity: 0 });
  assert.equal(r.losses.length, 30);
  const after = await meanH(r.model);
  assert.ok(after < before - 0.05, `mean entropy ${before} → ${after}`);
  assert.deepEqual([...r.trainable].sort(), ['W1', 'W2', 'b1'], 'no BatchNormalization: every parameter trains');
});
