/**
 * Resume after kill -9, bit for bit, for the text trainings on the one loop: text classification
 * fine-tuning, SetFit, LM fine-tuning and translation training. A child process trains with a
 * checkpoint folder and is killed with SIGKILL after its first checkpoint; the run resumed from that
 * folder ends with the same weights (and losses) as an uninterrupted run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTask, TEXT_TASKS, taskAssets } from './text-tasks.js';
import { sameBits } from './digits-task.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';
import { GraftError } from '../../src/util/errors.js';
import { needs } from '../helpers/assets.js';

/** Start the child, SIGKILL it once its first checkpoint exists; the checkpoints it left. */
async function killedRun(task: string, dir: string): Promise<number[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/train/resume-child.ts', task, dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: process.env,
  });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  let done = false;
  void exited.then(() => (done = true));
  while (!done && !existsSync(join(dir, 'epoch-0001.json'))) await new Promise((r) => setTimeout(r, 50));
  if (!done) child.kill('SIGKILL');
  const code = await exited;
  assert.equal(code, null, `the child ended by itself before it could be killed (exit ${code}): ${err}`);
  return listCheckpoints(dir);
}

for (const task of TEXT_TASKS) {
  test(`${task}: killed with SIGKILL after a checkpoint, resumed → the same weights, bit for bit, as an uninterrupted run`, {
    skip: needs(...taskAssets[task]),
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), `graft-resume-${task}-`));
    try {
      const left = await killedRun(task, dir);
      assert.ok(left.length >= 1 && left.at(-1)! < 3, `checkpoints left by the killed run: ${left}`);
      const resumed = await runTask(task, { checkpointDir: dir, resume: true });
      assert.equal(resumed.resumedFrom, left.at(-1));
      const whole = await runTask(task);
      assert.equal(whole.resumedFrom, 0);
      assert.ok(sameBits(whole.weights, resumed.weights), 'final weights differ');
      assert.deepEqual(resumed.losses, whole.losses);
      // other settings are refused, naming them
      if (task === 'classify')
        await assert.rejects(
          runTask('setfit', { checkpointDir: dir, resume: true }),
          (e: Error) => e instanceof GraftError && /other settings \(.*\blr\b/.test(e.message),
        );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
