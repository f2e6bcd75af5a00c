/**
 * The one progress bar (src/util/progress.ts): drawn only on a terminal and never when quiet; the
 * training loop's Progress callback draws the same bar.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { progressBar, showsProgress } from '../../src/util/progress.js';
import { Progress } from '../../src/train/callbacks.js';

/** A stream that says it is a terminal and keeps what is written. */
function fakeTerminal(isTTY = true): NodeJS.WriteStream & { text: () => string } {
  const chunks: string[] = [];
  const s = new Writable({
    write: (c, _e, cb) => {
      chunks.push(String(c));
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text: () => string };
  Object.assign(s, {
    isTTY,
    columns: 120,
    cursorTo: (_x: number, cb?: () => void) => {
      cb?.();
      return true;
    },
    clearLine: (_d: number, cb?: () => void) => {
      cb?.();
      return true;
    },
    moveCursor: () => true,
    text: () => chunks.join(''),
  });
  return s;
}

test('the bar draws on a terminal, with its fields, and not when quiet or not a terminal', () => {
  assert.equal(progressBar('x {value}/{total}', { stream: fakeTerminal(false) }), null);
  assert.equal(progressBar('x {value}/{total}', { quiet: true, stream: fakeTerminal() }), null);
  assert.equal(showsProgress(true, { isTTY: true }), false);
  assert.equal(showsProgress(false, { isTTY: true }), true);
  const tty = fakeTerminal();
  const bar = progressBar('features {value}/{total} images | {cached} cached', { stream: tty })!;
  bar.update(0, 40, { cached: 0 });
  bar.update(40, 50, { cached: 7 });
  bar.stop();
  assert.match(tty.text(), /features 40\/50 images \| 7 cached/);
});

test("the training loop's Progress callback draws the same bar: steps of the run, epoch and loss", () => {
  const tty = fakeTerminal();
  const p = new Progress({ label: 'fine-tune', stream: tty });
  assert.equal(p.active, true);
  assert.equal(new Progress({ quiet: true, stream: tty }).active, false);
  const ctx = { totalSteps: 6, epoch: 1, epochs: 2, trainer: { steps: 0 } } as unknown as Parameters<
    Progress['onTrainBegin']
  >[0];
  p.onTrainBegin(ctx);
  p.onStepEnd(ctx, { step: 4, epoch: 2, loss: 0.25 } as Parameters<Progress['onStepEnd']>[1]);
  p.onTrainEnd();
  assert.match(tty.text(), /fine-tune \[.*\] 4\/6 steps \| epoch 2\/2 \| loss 0\.2500/);
});
