/**
 * Checkpoints and resume: a run interrupted after any epoch and resumed from its last checkpoint ends
 * with the same weights, bit for bit, as an uninterrupted run — in the library (with a schedule,
 * discriminative rates, gradual unfreezing, class weights and early stopping all in play) and through
 * the CLI after a real `kill -9`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fit, type FitOptions } from '../../src/train/fit.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { GraftError } from '../../src/util/errors.js';
import { digitsTask, sameBits, floatInitializers, mnistPath, digitsPath } from '../train/digits-task.js';
import { graft, graftKilledAtFirstCheckpoint } from '../helpers/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'graft-ckpt-'));
const task = await digitsTask();

class Interrupt extends Error {}

async function run(o: FitOptions, stopAfter?: number) {
  try {
    const r = await fit(task.model, task.train, {
      ...o,
      ...(stopAfter
        ? {
            onEpoch: (e) => {
              if (e.epoch === stopAfter) throw new Interrupt();
            },
          }
        : {}),
    });
    const w = new Map([...r.trainer.params, ...r.trainer.stateValues].map(([k, v]) => [k, Float32Array.from(v)]));
    await r.trainer.release();
    return { w, r };
  } catch (e) {
    if (e instanceof Interrupt) return undefined;
    throw e;
  }
}

const recipe: FitOptions = {
  epochs: 6,
  lr: 3e-3,
  batchSize: 16,
  seed: 5,
  schedule: { kind: 'one-cycle' },
  lrDecay: 0.5,
  unfreezeEvery: 2,
  classWeights: 'balanced',
  validation: task.val,
  earlyStopping: { monitor: 'accuracy', patience: 10 },
};

test('library: interrupted after epoch 1, 2 (an unfreezing boundary) or 3, then resumed → bit-identical final weights and losses', async () => {
  const ref = (await run({ ...recipe, checkpoint: { dir: tmp() } }))!;
  for (const stop of [1, 2, 3]) {
    const dir = tmp();
    assert.equal(await run({ ...recipe, checkpoint: { dir } }, stop), undefined);
    assert.deepEqual(
      listCheckpoints(dir),
      Array.from({ length: stop }, (_, i) => i + 1),
    );
    const resumed = (await run({ ...recipe, checkpoint: { dir, resume: true } }))!;
    assert.equal(resumed.r.resumedFrom, stop);
    assert.ok(sameBits(ref.w, resumed.w), `stopped after epoch ${stop}: weights differ from the uninterrupted run`);
    assert.deepEqual(resumed.r.losses, ref.r.losses);
    assert.equal(resumed.r.bestEpoch, ref.r.bestEpoch);
  }
});

test('library: early stopping state survives a resume (stop epoch and restored best weights as uninterrupted)', async () => {
  const o: FitOptions = {
    epochs: 20,
    lr: 3e-3,
    seed: 1,
    validation: task.val,
    earlyStopping: { monitor: 'loss', patience: 2 },
  };
  const ref = (await run({ ...o, checkpoint: { dir: tmp() } }))!;
  assert.ok(
    ref.r.epochs < 20 && ref.r.bestEpoch! < ref.r.epochs,
    `the reference run should stop early (${ref.r.epochs} epochs, best ${ref.r.bestEpoch})`,
  );
  const dir = tmp();
  await run({ ...o, checkpoint: { dir } }, ref.r.epochs - 1); // interrupted after a non-improving epoch: best weights live in the checkpoint
  const resumed = (await run({ ...o, checkpoint: { dir, resume: true } }))!;
  assert.equal(resumed.r.epochs, ref.r.epochs);
  assert.equal(resumed.r.bestEpoch, ref.r.bestEpoch);
  assert.ok(sameBits(ref.w, resumed.w));
  // resuming a finished run trains nothing and gives the same weights again
  const again = (await run({ ...o, checkpoint: { dir, resume: true } }))!;
  assert.equal(again.r.epochs, ref.r.epochs);
  assert.ok(sameBits(ref.w, again.w));
});

test('library: resuming with other settings is refused, naming them', async () => {
  const dir = tmp();
  await run({ epochs: 1, lr: 1e-3, checkpoint: { dir } });
  await assert.rejects(
    run({ epochs: 2, lr: 2e-3, checkpoint: { dir, resume: true } }),
    (e: Error) => e instanceof GraftError && /other settings \(lr\)/.test(e.message),
  );
  await assert.rejects(
    run({
      epochs: 2,
      lr: 1e-3,
      loss: { kind: 'cross-entropy', labelSmoothing: 0.1 },
      checkpoint: { dir, resume: true },
    }),
    (e: Error) => e instanceof GraftError && /other settings \(loss\)/.test(e.message),
  );
  // a cosine schedule's rates depend on the run's length: more epochs on resume is another run
  const cos = tmp();
  await run({ epochs: 1, lr: 1e-3, schedule: { kind: 'cosine' }, checkpoint: { dir: cos } });
  await assert.rejects(
    run({ epochs: 2, lr: 1e-3, schedule: { kind: 'cosine' }, checkpoint: { dir: cos, resume: true } }),
    (e: Error) => e instanceof GraftError && /other settings \(epochs\)/.test(e.message),
  );
});

test('library: --keep-checkpoints keeps the newest; a tensor file without its manifest (a write cut short) is not a checkpoint', async () => {
  const dir = tmp();
  await run({ epochs: 4, lr: 1e-3, checkpoint: { dir, keep: 2 } });
  assert.deepEqual(listCheckpoints(dir), [3, 4]);
  writeFileSync(join(dir, 'epoch-0005.safetensors'), 'partial');
  assert.deepEqual(listCheckpoints(dir), [3, 4]);
  const again = (await run({ epochs: 4, lr: 1e-3, checkpoint: { dir, resume: true } }))!;
  assert.equal(again.r.resumedFrom, 4);
});

const cliArgs = (dir: string, out: string) => [
  'train',
  '--model',
  mnistPath(),
  '--data',
  digitsPath(),
  '--pixel-max',
  '16',
  '--epochs',
  '5',
  '--batch-size',
  '8',
  '--lr',
  '2e-3',
  '--schedule',
  'cosine',
  '--lr-decay',
  '0.5',
  '--class-weights',
  'balanced',
  '--early-stopping',
  'loss',
  '--patience',
  '10',
  '--checkpoint-dir',
  dir,
  '--out',
  out,
];

test('CLI: kill -9 after the first checkpoint, --resume → the same weights, bit for bit, as an uninterrupted run', async () => {
  const base = tmp();
  const [dirA, dirB] = [join(base, 'a'), join(base, 'b')];
  const [outA, outB] = [join(base, 'a.onnx'), join(base, 'b.onnx')];
  await graft(cliArgs(dirA, outA));
  // the run to kill: SIGKILL as soon as the first checkpoint's manifest exists
  await graftKilledAtFirstCheckpoint(cliArgs(dirB, outB), dirB);
  const done = listCheckpoints(dirB);
  assert.ok(!existsSync(outB) && done.length >= 1 && done.length < 5, `killed too late: checkpoints ${done}`);
  const { stderr, stdout } = await graft([...cliArgs(dirB, outB), '--resume']);
  assert.match(stderr, new RegExp(`resumed from the checkpoint of epoch ${done[done.length - 1]}`));
  assert.match(stdout, /resumed after epoch/);
  const a = floatInitializers(readOnnx(outA));
  const b = floatInitializers(readOnnx(outB));
  assert.ok(sameBits(a, b), 'the resumed run ends with other weights than the uninterrupted one');
  assert.ok(!sameBits(a, floatInitializers(task.model)), 'nothing trained');
});
