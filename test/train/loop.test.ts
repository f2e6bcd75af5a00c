/**
 * The one training loop (src/train/loop.ts) and its callbacks on the MNIST/digits task: call order,
 * a callback ending training, a callback's own state carried through a checkpoint and a resume, the
 * linear schedule, and the progress bar drawn only on a terminal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fit } from '../../src/train/fit.js';
import { trainLoop, shuffledBatches, steppedBatches, type Callback, type CallbackState } from '../../src/train/loop.js';
import { LearningRate } from '../../src/train/callbacks.js';
import { linearSchedule, makeSchedule } from '../../src/train/schedule.js';
import { Trainer } from '../../src/train/trainer.js';
import { mlpGraph } from '../../src/heads/mlp.js';
import { Rng } from '../../src/util/random.js';
import { digitsTask, mnistPath, digitsPath } from './digits-task.js';
import { needs } from '../helpers/assets.js';

const skip = needs(mnistPath(), digitsPath());

test('callbacks see train → epoch → step → epoch end in order; one that sets ctx.stop ends the run after that epoch', {
  skip,
}, async () => {
  const { model, train } = await digitsTask(5);
  const seen: string[] = [];
  const spy: Callback = {
    name: 'spy',
    onTrainBegin: (ctx) => void seen.push(`begin ${ctx.totalSteps}`),
    onEpochBegin: (ctx) => void seen.push(`epoch ${ctx.epoch}`),
    onStepEnd: (_ctx, s) => void seen.push(`step ${s.step}`),
    onEpochEnd: (ctx, logs) => {
      seen.push(`end ${logs.epoch} ${Number.isFinite(logs.loss)}`);
      if (ctx.epoch === 2) ctx.stop = true;
    },
    onTrainEnd: () => void seen.push('done'),
  };
  const r = await fit(model, train, { epochs: 5, batchSize: 25, lr: 1e-3, callbacks: [spy] });
  await r.trainer.release();
  assert.equal(r.epochs, 2);
  assert.deepEqual(seen, [
    'begin 10',
    'epoch 1',
    'step 1',
    'step 2',
    'end 1 true',
    'epoch 2',
    'step 3',
    'step 4',
    'end 2 true',
    'done',
  ]);
  assert.equal(r.losses.length, 4);
});

/** A callback with state: the sum of the losses it has seen, saved in checkpoints. */
class LossSum implements Callback {
  readonly name = 'loss-sum';
  sum = 0;
  onStepEnd(_c: unknown, s: { loss: number }): void {
    this.sum += s.loss;
  }
  state(): CallbackState {
    return { json: { sum: this.sum }, tensors: new Map([['last', Float32Array.of(this.sum)]]) };
  }
  restore(s: CallbackState): void {
    this.sum = (s.json as { sum: number }).sum;
    assert.equal(s.tensors?.get('last')?.[0], Math.fround(this.sum));
  }
}

test("a callback's state() goes into each checkpoint and restore() puts it back on resume", { skip }, async () => {
  const { model, train } = await digitsTask(5);
  const dir = mkdtempSync(join(tmpdir(), 'graft-loop-'));
  try {
    const whole = new LossSum();
    await (await fit(model, train, { epochs: 3, batchSize: 25, callbacks: [whole] })).trainer.release();
    await (
      await fit(model, train, { epochs: 2, batchSize: 25, checkpoint: { dir }, callbacks: [new LossSum()] })
    ).trainer.release();
    const resumed = new LossSum();
    const r = await fit(model, train, {
      epochs: 3,
      batchSize: 25,
      checkpoint: { dir, resume: true },
      callbacks: [resumed],
    });
    await r.trainer.release();
    assert.equal(r.resumedFrom, 2);
    assert.equal(resumed.sum, whole.sum);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('batch sources: shuffled mini-batches cover every example once per epoch; stepped sources cut steps into epochs', () => {
  const seen: number[][] = [];
  const src = shuffledBatches(10, 4, 2, (idx) => {
    seen.push(idx);
    return { feeds: {} };
  });
  assert.equal(src.epochs, 2);
  assert.deepEqual(
    [1, 2].map((e) => src.steps(e)),
    [3, 3],
  );
  const rng = new Rng(0);
  for (const e of [1, 2]) [...(src.batches(e, rng, undefined as never) as Iterable<unknown>)];
  assert.deepEqual(
    seen
      .slice(0, 3)
      .flat()
      .sort((a, b) => a - b),
    [...Array(10).keys()],
  );
  assert.deepEqual(
    seen.map((b) => b.length),
    [4, 4, 2, 4, 4, 2],
  );
  const capped = shuffledBatches(10, 4, 5, () => ({ feeds: {} }), { maxSteps: 4 });
  assert.deepEqual([capped.epochs, capped.steps(1), capped.steps(2)], [2, 3, 1]);
  const stepped = steppedBatches(7, 3, (k) => ({
    feeds: { k: { dtype: 'float32', dims: [], data: Float32Array.of(k) } },
  }));
  assert.deepEqual([stepped.epochs, stepped.steps(1), stepped.steps(3)], [3, 3, 1]);
  const ks = [1, 2, 3].flatMap((e) =>
    [
      ...(stepped.batches(e, rng, undefined as never) as Iterable<{ feeds: Record<string, { data: Float32Array }> }>),
    ].map((b) => b.feeds['k']!.data[0]),
  );
  assert.deepEqual(ks, [0, 1, 2, 3, 4, 5, 6]);
});

test("the linear schedule (text fine-tuning) is one kind of train/schedule.ts, and LearningRate sets each step's rate", async () => {
  const f = makeSchedule({ kind: 'linear', warmupFraction: 0.25 }, 1e-3, { totalSteps: 8, stepsPerEpoch: 4 });
  assert.deepEqual([0, 1, 2, 7].map(f), [
    0.5e-3,
    1e-3,
    linearSchedule(1e-3, 2, 8, 0.25),
    linearSchedule(1e-3, 7, 8, 0.25),
  ]);
  assert.ok(f(7) > 0 && f(7) < f(2));
  const t = await Trainer.create(mlpGraph(4, 3, 2, 0), { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd' } });
  const rng = new Rng(1);
  const x = Array.from({ length: 8 }, () => Float32Array.from({ length: 4 }, () => rng.normal()));
  const lrs: number[] = [];
  const src = shuffledBatches(8, 4, 2, (idx) => ({
    feeds: {
      features: { dtype: 'float32', dims: [idx.length, 4], data: Float32Array.from(idx.flatMap((i) => [...x[i]!])) },
    },
    target: { dtype: 'int64', dims: [idx.length], data: BigInt64Array.from(idx.map((i) => BigInt(i % 2))) },
  }));
  const r = await trainLoop(t, src, {
    lr: 1e-3,
    callbacks: [new LearningRate(f), { name: 'lrs', onStepEnd: (_c, s) => void lrs.push(s.lr) }],
  });
  await r.trainer.release();
  assert.deepEqual(lrs, [0, 1, 2, 3].map(f));
});

test('one progress bar: drawn on a terminal stream (steps of all), nothing when the stream is not a terminal or quiet', {
  skip,
}, async () => {
  const { model, train } = await digitsTask(5);
  const sink = (tty: boolean) => {
    let text = '';
    const w = new Writable({
      write(c, _e, cb) {
        text += String(c);
        cb();
      },
    }) as Writable & {
      isTTY?: boolean;
      columns?: number;
      cursorTo?: unknown;
      clearLine?: unknown;
      moveCursor?: unknown;
    };
    if (tty)
      Object.assign(w, {
        isTTY: true,
        columns: 120,
        cursorTo: (_x: number, _y?: number, cb?: () => void) => (cb?.(), true),
        clearLine: (_d: number, cb?: () => void) => (cb?.(), true),
        moveCursor: (_dx: number, _dy: number, cb?: () => void) => (cb?.(), true),
      });
    return { w, text: () => text };
  };
  const tty = sink(true),
    pipe = sink(false),
    quiet = sink(true);
  for (const s of [tty, pipe])
    await (
      await fit(model, train, { epochs: 1, batchSize: 25, progress: { stream: s.w as never, label: 'test' } })
    ).trainer.release();
  await (
    await fit(model, train, { epochs: 1, batchSize: 25, progress: { stream: quiet.w as never, quiet: true } })
  ).trainer.release();
  assert.match(tty.text(), /test \[.*\] 2\/2 steps/);
  assert.equal(pipe.text(), '');
  assert.equal(quiet.text(), '');
});
