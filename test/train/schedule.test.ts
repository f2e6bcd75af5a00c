/** Learning-rate schedules: warmup, cosine, one-cycle and step decay as functions of the global step. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSchedule } from '../../src/train/schedule.js';

const ctx = { totalSteps: 100, stepsPerEpoch: 10 };
const close = (a: number, b: number, tol = 1e-12) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test('constant, with and without linear warmup', () => {
  const c = makeSchedule(undefined, 0.1, ctx);
  for (const s of [0, 17, 99]) assert.equal(c(s), 0.1);
  const w = makeSchedule({ kind: 'constant', warmupSteps: 4 }, 0.1, ctx);
  [0.025, 0.05, 0.075, 0.1, 0.1, 0.1].forEach((v, i) => close(w([0, 1, 2, 3, 4, 50][i]!), v));
});

test('cosine: linear warmup to the peak, then half a cosine down to finalFraction·lr at the last step', () => {
  const f = makeSchedule({ kind: 'cosine', warmupSteps: 10, finalFraction: 0.1 }, 1, ctx);
  close(f(0), 0.1);
  close(f(9), 1);
  close(f(10), 1);
  close(f(55), 0.1 + 0.9 * 0.5); // halfway through the decay
  close(f(100), 0.1);
  for (let s = 11; s < 100; s++) assert.ok(f(s) < f(s - 1), `decreasing at ${s}`);
  // default warmup: 5% of the steps
  const d = makeSchedule({ kind: 'cosine' }, 1, ctx);
  assert.ok(d(3) < 1 && d(4) === 1 && d(5) === 1 && d(6) < 1);
});

test('one-cycle: from lr/25 up to lr at 30% of the steps, down to lr/(25·1e4) at the last step (as torch OneCycleLR)', () => {
  const f = makeSchedule({ kind: 'one-cycle' }, 1, ctx);
  close(f(0), 1 / 25);
  close(f(29), 1); // torch: the peak at step pct·total − 1
  close(f(99), 1 / 25 / 1e4);
  for (let s = 1; s <= 29; s++) assert.ok(f(s) > f(s - 1));
  for (let s = 30; s <= 99; s++) assert.ok(f(s) < f(s - 1));
});

test('step decay: ×gamma every stepEpochs epochs', () => {
  const f = makeSchedule({ kind: 'step', stepEpochs: 3, gamma: 0.5 }, 0.8, ctx);
  assert.equal(f(0), 0.8);
  assert.equal(f(29), 0.8);
  assert.equal(f(30), 0.4);
  assert.equal(f(60), 0.2);
  assert.throws(() => makeSchedule({ kind: 'one-cycle', pctStart: 1 }, 1, ctx), /pctStart/);
});
