import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fit, fitCV, logisticProblem, stratifiedFolds, LogisticSession } from '../../src/heads/logistic.js';
import { minimize } from '../../src/heads/lbfgs.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

test('L-BFGS minimizes the Rosenbrock function', async () => {
  const r = await minimize(
    (x, g) => {
      const a = x[0]!,
        b = x[1]!;
      g[0] = -2 * (1 - a) - 400 * a * (b - a * a);
      g[1] = 200 * (b - a * a);
      return (1 - a) ** 2 + 100 * (b - a * a) ** 2;
    },
    Float64Array.of(-1.2, 1),
    { gtol: 1e-8 },
  );
  assert.ok(r.converged, r.reason);
  assert.ok(Math.abs(r.x[0]! - 1) < 1e-6 && Math.abs(r.x[1]! - 1) < 1e-6, `${r.x}`);
  assert.ok(r.iterations < 100, `${r.iterations} iterations`);
});

function blobs(n: number, K: number, D: number, seed: number, spread = 0.5) {
  const rng = new Rng(seed);
  const centres = Array.from({ length: K }, () => Array.from({ length: D }, () => rng.normal() * 3));
  const X: Float32Array[] = [],
    y: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % K;
    X.push(Float32Array.from(centres[k]!, (c) => c + rng.normal() * spread + 100)); // offset: standardization matters
    y.push(k);
  }
  return { X, y };
}

test('synthetic separable problem: perfect accuracy, gradient ≈ 0 at the optimum', async () => {
  const tr = blobs(300, 4, 5, 1),
    te = blobs(200, 4, 5, 1);
  const m = await fit(tr.X, tr.y, { l2: 1e-3, ftol: 1e-15 }); // stop on the gradient only
  assert.ok(m.info.converged, `${m.info.reason} after ${m.info.iterations}`);
  assert.ok(m.info.gradNorm < 1e-4);
  assert.equal(m.accuracy(tr.X, tr.y), 1);
  assert.equal(m.accuracy(te.X, te.y), 1);
  const p = m.predictProba(te.X.slice(0, 3));
  for (const r of p) assert.ok(Math.abs(r.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  // analytic gradient agrees with finite differences
  const session = await LogisticSession.create();
  const pr = logisticProblem(tr.X.slice(0, 40), tr.y.slice(0, 40), session, { l2: 0.1, classWeights: [1, 2, 0.5, 1] });
  const rng = new Rng(3);
  const th = Float64Array.from({ length: pr.K * pr.D + pr.K }, () => rng.normal() * 0.3);
  const g = new Float64Array(th.length);
  await pr.fg(th, g);
  for (const i of [0, 3, 7, 19, th.length - 1]) {
    const h = 1e-6,
      a = th.slice(),
      b = th.slice();
    a[i]! += h;
    b[i]! -= h;
    const fd =
      ((await pr.fg(a, new Float64Array(th.length))) - (await pr.fg(b, new Float64Array(th.length)))) / (2 * h);
    assert.ok(Math.abs(fd - g[i]!) < 1e-6, `param ${i}: ${fd} vs ${g[i]}`);
  }
  await session.release();
});

test('class weights shift predictions towards the heavier class', async () => {
  const rng = new Rng(5);
  const X: Float32Array[] = [],
    y: number[] = [];
  for (let i = 0; i < 400; i++) {
    const k = i % 2;
    X.push(Float32Array.of(rng.normal() * 2 + (k ? 0.5 : -0.5)));
    y.push(k);
  }
  const plain = await fit(X, y, { l2: 1e-3 });
  const heavy = await fit(X, y, { l2: 1e-3, classWeights: [1, 5] });
  const count1 = (m: typeof plain) => m.predict(X).filter((v) => v === 1).length;
  assert.ok(count1(heavy) > count1(plain) + 50, `${count1(heavy)} vs ${count1(plain)}`);
  const bal = await fit(X.slice(0, 250), [...y.slice(0, 250)], { classWeights: 'balanced' });
  assert.equal(bal.numClasses, 2);
  const f = stratifiedFolds(y, 5, 1);
  for (let k = 0; k < 5; k++) assert.equal(f.filter((v, i) => v === k && y[i] === 1).length, 40);
});

test('Fashion-MNIST raw pixels, 10 labels per class: CV-chosen L2, accuracy on 1000 test images', {
  skip: needs('datasets/fashion-mnist'),
}, async () => {
  const fm = asset('datasets/fashion-mnist');
  const train = readIdxDataset(join(fm, 'train-images-idx3-ubyte.gz'), join(fm, 'train-labels-idx1-ubyte.gz'));
  const testSet = readIdxDataset(join(fm, 't10k-images-idx3-ubyte.gz'), join(fm, 't10k-labels-idx1-ubyte.gz'));
  const rng = new Rng(42);
  const pick: number[] = [];
  const per = new Array(10).fill(0);
  for (const i of rng.shuffle(Array.from({ length: train.labels.length }, (_, i) => i))) {
    const c = train.labels[i]!;
    if (per[c] < 10) {
      per[c]++;
      pick.push(i);
    }
    if (pick.length === 100) break;
  }
  const px = (a: Uint8Array) => Float32Array.from(a, (v) => v / 255);
  const X = pick.map((i) => px(train.images[i]!)),
    y = pick.map((i) => train.labels[i]!);
  const t0 = Date.now();
  const cv = await fitCV(X, y, { grid: [1e-2, 0.1, 1, 10], folds: 5, seed: 1 });
  const Xt = testSet.images.slice(0, 1000).map(px),
    yt = testSet.labels.slice(0, 1000);
  const acc = cv.model.accuracy(Xt, yt);
  console.log(
    `# fashion-mnist 10/class raw pixels: l2=${cv.l2} (cv ${cv.scores.map((s) => `${s.l2}:${s.logloss.toFixed(3)}/${s.accuracy.toFixed(2)}`).join(' ')}), test accuracy ${acc.toFixed(3)}, gradNorm ${cv.model.info.gradNorm.toExponential(2)}, ${cv.model.info.iterations} iterations, ${Date.now() - t0} ms`,
  );
  assert.ok(acc > 0.55, `accuracy ${acc}`);
  assert.ok(cv.model.info.gradNorm < 1e-3, `gradient norm ${cv.model.info.gradNorm}`);
  // the reported loss is the objective's value at the optimum, and no nearby point is lower
  const session = await LogisticSession.create();
  const pr = logisticProblem(X, y, session, { l2: cv.l2 });
  const theta = new Float64Array(pr.K * pr.D + pr.K);
  theta.set(cv.model.weights);
  theta.set(cv.model.bias, pr.K * pr.D);
  const g = new Float64Array(theta.length);
  const f = await pr.fg(theta, g);
  assert.ok(Math.abs(f - cv.model.info.f) < 1e-12);
  const r = new Rng(9);
  for (let t = 0; t < 5; t++) {
    const th2 = Float64Array.from(theta, (v) => v + r.normal() * 1e-3);
    assert.ok((await pr.fg(th2, new Float64Array(theta.length))) >= f - 1e-12);
  }
  // the default stopping rule (relative decrease ≤ 2.2e-9, as scipy/scikit-learn) ends within 1e-6 of
  // the optimum that a gradient-only stop (‖g‖ ≤ 1e-6) reaches from there
  const strict = await fit(X, y, { l2: cv.l2, ftol: 1e-15, init: theta });
  assert.ok(strict.info.gradNorm <= 1e-6, `strict fit: gradient norm ${strict.info.gradNorm}`);
  assert.ok(f - strict.info.f < 1e-6 * Math.max(1, Math.abs(f)), `${f} vs ${strict.info.f}`);
  assert.deepEqual(cv.model.predict(Xt), strict.predict(Xt));
  await session.release();
});
