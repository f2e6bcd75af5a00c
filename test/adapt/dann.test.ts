/**
 * DANN: the loss graph's gradients against finite differences, the gradient-reversal node's effect
 * on the parameters (×−λ into the feature extractor, unchanged into the domain classifier), and a
 * small real-data run (Fashion-MNIST → noisy Fashion-MNIST) where DANN beats source-only training.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Trainer } from '../../src/train/trainer.js';
import { dannLoss, sourceOnlyLoss, dann, dannLambda, GRL_LAMBDA, type AdaptLoss } from '../../src/adapt/dann.js';
import { tinyNet, batchFeeds, lossGraph, shiftPairAccuracies } from '../helpers/adapt-net.js';
import { needs } from '../helpers/assets.js';

test('DANN loss graph: analytic gradients match finite differences (model and domain-classifier weights, inputs)', async () => {
  const feeds = batchFeeds(0.7);
  const { g, params } = lossGraph(dannLoss({ feature: 'feat', featureDim: 5, hidden: 4, seed: 2 }), feeds);
  assert.equal(params.length, 4);
  const r = await gradCheck(g, {
    feeds,
    wrt: ['W1', 'b1', 'W2', 'x', ...params],
    samples: 12,
    float64: true,
    eps: [1e-3, 1e-4],
  });
  for (const e of r.entries) assert.ok(e.maxAbsGrad > 1e-6, `${e.name}: the loss depends on it`);
  assert.ok(r.worst < 1e-4, JSON.stringify(r.entries));
});

/** Parameter changes of one SGD step with lr 1 (= the gradients the training graph computes). */
async function stepDelta(loss: AdaptLoss, lambda: number): Promise<Map<string, Float32Array>> {
  const tr = await Trainer.create(tinyNet(), { loss, optimizer: { kind: 'sgd', momentum: 0, weightDecay: 0 }, lr: 1 });
  const before = new Map([...tr.params].map(([k, v]) => [k, Float32Array.from(v)]));
  const feeds = batchFeeds(lambda);
  if (!tr.tg.targets.includes(GRL_LAMBDA)) delete feeds[GRL_LAMBDA];
  await tr.step(feeds);
  const out = new Map([...tr.params].map(([k, v]) => [k, before.get(k)!.map((b, i) => b - v[i]!)]));
  await tr.release();
  return out;
}

test('gradient reversal: the domain gradient reaches the feature extractor ×(−λ), the domain classifier unchanged', async () => {
  const loss = () => dannLoss({ feature: 'feat', featureDim: 5, hidden: 4, seed: 2 });
  const plain = await stepDelta(loss(), -1); // λ = −1: reversal ×(−λ) = ×1, the ordinary gradient of CE + domain
  const off = await stepDelta(loss(), 0); // λ = 0: the features get the source CE gradient only
  const rev = await stepDelta(loss(), 0.5);
  const ceOnly = await stepDelta(sourceOnlyLoss(), 0);
  const close = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) < 1e-5 + 1e-4 * Math.abs(b), `${what}: ${a} vs ${b}`);
  let domainSignal = 0;
  for (const p of ['W1', 'b1']) {
    plain.get(p)!.forEach((v, i) => {
      const dom = v - off.get(p)![i]!; // the domain loss's own gradient at this parameter
      domainSignal = Math.max(domainSignal, Math.abs(dom));
      close(off.get(p)![i]!, ceOnly.get(p)![i]!, `${p}[${i}] with λ=0 vs source CE alone`);
      close(rev.get(p)![i]!, off.get(p)![i]! - 0.5 * dom, `${p}[${i}] with λ=0.5`);
    });
  }
  assert.ok(domainSignal > 1e-4, 'the domain loss has a gradient at the feature extractor');
  for (const [p, d] of plain)
    if (p.startsWith('domain/')) d.forEach((v, i) => close(rev.get(p)![i]!, v, `${p}[${i}] is not reversed`));
  assert.equal(dannLambda(0), 0);
  assert.ok(Math.abs(dannLambda(1) - 0.9999) < 1e-3);
});

test('DANN on Fashion-MNIST → noisy Fashion-MNIST beats source-only training on the target (real data, labels unused)', {
  skip: needs('datasets/fashion-mnist'),
}, async () => {
  const { sourceOnly: a0, adapted: a1, description } = await shiftPairAccuracies(dann);
  console.log(`target accuracy (${description}): source-only ${a0.toFixed(3)}, DANN ${a1.toFixed(3)}`);
  assert.ok(a1 > a0 + 0.05, `DANN ${a1} vs source-only ${a0}`);
});
