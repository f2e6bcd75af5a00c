/**
 * Deep MMD and deep CORAL: the loss graphs' gradients against finite differences, the terms'
 * values against a direct JavaScript computation, and a real-data run (Fashion-MNIST → noisy
 * Fashion-MNIST) where the MMD term raises target accuracy over source-only training.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Session } from '../../src/runtime/session.js';
import { mmdLoss, deepCoralLoss, alignFit } from '../../src/adapt/mmd.js';
import type { AdaptLoss } from '../../src/adapt/dann.js';
import { batchFeeds, lossGraph, N, shiftPairAccuracies } from '../helpers/adapt-net.js';
import { needs } from '../helpers/assets.js';

for (const [name, make] of [
  ['MMD', () => mmdLoss({ feature: 'feat', weight: 3 })],
  ['CORAL', () => deepCoralLoss({ feature: 'feat', featureDim: 5, weight: 50 })],
] as [string, () => AdaptLoss][]) {
  test(`deep ${name} loss graph: analytic gradients match finite differences`, async () => {
    const feeds = batchFeeds();
    const { g } = lossGraph(make(), feeds);
    const r = await gradCheck(g, {
      feeds,
      wrt: ['W1', 'b1', 'W2', 'x'],
      samples: 12,
      float64: true,
      eps: [1e-3, 1e-4],
    });
    for (const e of r.entries) assert.ok(e.maxAbsGrad > 1e-6, `${e.name}: the loss depends on it`);
    assert.ok(r.worst < 1e-4, JSON.stringify(r.entries));
  });
}

/** The alignment term (the loss's second reported output) for the tiny batch, and the features. */
async function termAndFeatures(loss: AdaptLoss): Promise<{ term: number; feat: Float32Array }> {
  const feeds = batchFeeds();
  const { g } = lossGraph(loss, feeds);
  const built = g.outputs[0]!.name;
  const termNode = g.nodes.find((n) => n.opType === 'Add' && n.outputs[0] === built)!;
  g.outputs = [{ name: termNode.inputs[1]! }, { name: 'feat' }];
  const s = await Session.fromGraph(g, {}, 'term');
  const r = await s.run(feeds);
  await s.release();
  return { term: Number(r[termNode.inputs[1]!]!.data[0]), feat: r['feat']!.data as Float32Array };
}

test('the MMD and CORAL terms equal a direct computation of their formulas', async () => {
  const src = [0, 1, 2],
    tgt = [3, 4, 5],
    D = 5;
  const { term: mmd, feat } = await termAndFeatures(mmdLoss({ feature: 'feat' }));
  const row = (i: number) => Array.from(feat.subarray(i * D, (i + 1) * D));
  const d2 = (i: number, j: number) => row(i).reduce((s, v, k) => s + (v - row(j)[k]!) ** 2, 0);
  let mean = 0;
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) mean += d2(i, j) / (N * N - N);
  const k = (i: number, j: number) =>
    [0.25, 0.5, 1, 2, 4].reduce((s, b) => s + Math.exp(-d2(i, j) / (b * (mean + 1e-6))), 0);
  const avg = (a: number[], b: number[]) =>
    a.reduce((s, i) => s + b.reduce((t, j) => t + k(i, j), 0), 0) / (a.length * b.length);
  const want = avg(src, src) + avg(tgt, tgt) - 2 * avg(src, tgt);
  assert.ok(Math.abs(mmd - want) < 1e-4 * Math.max(1, want), `MMD² ${mmd} vs ${want}`);
  assert.ok(want > 1e-3);

  const { term: coral } = await termAndFeatures(deepCoralLoss({ feature: 'feat', featureDim: D }));
  const cov = (rows: number[]) => {
    const mu = Array.from({ length: D }, (_, a) => rows.reduce((s, i) => s + row(i)[a]!, 0) / rows.length);
    return Array.from({ length: D * D }, (_, ab) => {
      const a = Math.floor(ab / D),
        b = ab % D;
      return rows.reduce((s, i) => s + (row(i)[a]! - mu[a]!) * (row(i)[b]! - mu[b]!), 0) / (rows.length - 1);
    });
  };
  const cs = cov(src),
    ct = cov(tgt);
  const wantC = cs.reduce((s, v, i) => s + (v - ct[i]!) ** 2, 0) / (4 * D * D);
  assert.ok(Math.abs(coral - wantC) < 1e-4 * Math.max(1e-3, wantC), `CORAL ${coral} vs ${wantC}`);
});

test('deep MMD on Fashion-MNIST → noisy Fashion-MNIST beats source-only training on the target (real data, labels unused)', {
  skip: needs('datasets/fashion-mnist'),
}, async () => {
  const {
    sourceOnly: a0,
    adapted: a1,
    description,
  } = await shiftPairAccuracies((m, s, t, o) => alignFit('mmd', m, s, t, o));
  console.log(`target accuracy (${description}): source-only ${a0.toFixed(3)}, deep MMD ${a1.toFixed(3)}`);
  assert.ok(a1 > a0 + 0.03, `deep MMD ${a1} vs source-only ${a0}`);
});
