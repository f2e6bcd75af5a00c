/**
 * Child process of text-resume.test.ts: runs one tiny text training (text-tasks.ts) with a checkpoint
 * folder, slowed after its first checkpoint so the parent can kill it (SIGKILL) mid-run, then — when run
 * with `resume` — finishes it and writes the final weights to OUT as a safetensors file.
 *   node --import tsx test/train/resume-child.ts TASK DIR [resume OUT]
 */
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/graph/tensor.js';
import type { Callback } from '../../src/train/loop.js';
import { runTask, type TextTask } from './text-tasks.js';

const [task, dir, mode, out] = process.argv.slice(2) as [TextTask, string, string | undefined, string | undefined];
// after the first checkpoint exists, each step waits a little: the parent's kill lands inside the run
let slow = false;
const pace: Callback = {
  name: 'pace',
  onEpochEnd: () => {
    slow = true;
  },
  onStepEnd: () => (slow ? new Promise((r) => setTimeout(r, 300)) : undefined),
};
const r = await runTask(task, {
  checkpointDir: dir,
  ...(mode === 'resume' ? { resume: true } : { callbacks: [pace] }),
});
if (out) {
  const m = new Map<string, Tensor>(
    [...r.weights].map(([k, v]) => [k, { dtype: 'float32', dims: [v.length], data: v }]),
  );
  m.set('losses', { dtype: 'float64', dims: [r.losses.length], data: Float64Array.from(r.losses) });
  writeSafetensors(out, m);
}
