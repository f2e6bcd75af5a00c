/**
 * The CLI's --schedule flag offers every kind the library's schedule module has, 'linear' included:
 * the flags parse into the library spec, and the rates it gives warm up, then fall linearly to 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { imageFitFlags, scheduleOf, type ImageFitFlags } from '../../src/cli/train-images.js';
import { makeSchedule, SCHEDULES } from '../../src/train/schedule.js';
import { GraftError } from '../../src/util/errors.js';

function flags(args: string[]): ImageFitFlags {
  const cmd = imageFitFlags(new Command('t').exitOverride().configureOutput({ writeErr: () => {} }));
  cmd.parse(args, { from: 'user' });
  return cmd.opts<ImageFitFlags>();
}

test('--schedule linear parses into the library spec and decays linearly to 0 after the warmup', () => {
  assert.ok(SCHEDULES.includes('linear'));
  const spec = scheduleOf(flags(['--schedule', 'linear', '--warmup-fraction', '0.2']));
  assert.deepEqual(spec, { kind: 'linear', warmupFraction: 0.2 });
  const at = makeSchedule(spec, 1, { totalSteps: 10, stepsPerEpoch: 5 });
  const rates = Array.from({ length: 10 }, (_, k) => at(k));
  assert.ok(rates[0]! < rates[1]!, `warms up: ${rates}`);
  assert.ok(Math.abs(rates[2]! - 1) < 1e-12, `peak after 20% of the steps: ${rates}`);
  for (let k = 3; k < 10; k++)
    assert.ok(Math.abs(rates[k - 1]! - rates[k]! - (rates[8]! - rates[9]!)) < 1e-9, `linear decay: ${rates}`);
  assert.ok(rates[9]! < rates[3]!);
  assert.deepEqual(scheduleOf(flags(['--schedule', 'linear'])), { kind: 'linear' });
});

test('--schedule linear refuses --warmup steps and an out-of-range fraction; --warmup-fraction needs linear', () => {
  assert.throws(
    () => scheduleOf(flags(['--schedule', 'linear', '--warmup', '5'])),
    (e: unknown) => e instanceof GraftError && /--warmup-fraction/.test(e.message),
  );
  assert.throws(
    () => scheduleOf(flags(['--schedule', 'linear', '--warmup-fraction', '1'])),
    (e: unknown) => e instanceof GraftError && /\[0, 1\)/.test(e.message),
  );
  assert.throws(
    () => scheduleOf(flags(['--schedule', 'cosine', '--warmup-fraction', '0.1'])),
    (e: unknown) => e instanceof GraftError && /--schedule linear/.test(e.message),
  );
  assert.throws(() => flags(['--schedule', 'sideways']), /Allowed choices are .*linear/);
});
