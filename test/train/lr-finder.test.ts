/**
 * The learning-rate range test on the digits task: the trainer comes back exactly as it was, the
 * suggested rate trains well, the plot is written, and `graft train --lr-find` prints and exits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lrFind, findLr, lrFindAscii, writeLrFindSvg } from '../../src/train/lr-finder.js';
import { Trainer } from '../../src/train/trainer.js';
import { fit, evaluate, stack, labelsTensor } from '../../src/train/fit.js';
import { digitsTask, sameBits, mnistPath, digitsPath } from './digits-task.js';
import { graft } from '../helpers/cli.js';

const task = await digitsTask();
const copy = (m: Map<string, Float32Array>) => new Map([...m].map(([k, v]) => [k, Float32Array.from(v)]));

test('lrFind restores weights, optimizer state and step count bit for bit', async () => {
  const t = await Trainer.create(task.model, { lr: 1e-3 });
  await t.step({ Input3: stack(task.train.x.slice(0, 32), [1, 28, 28]) }, labelsTensor(task.train.y.slice(0, 32)));
  const params = copy(t.params);
  const opt = t.optimizer.exportState();
  const r = await lrFind(t, task.train, { steps: 40 });
  assert.ok(r.lrs.length >= 5 && r.lrs.length <= 40);
  assert.ok(sameBits(params, t.params), 'weights changed');
  const after = t.optimizer.exportState();
  assert.deepEqual(after.meta, opt.meta);
  assert.ok(sameBits(opt.tensors, after.tensors), 'optimizer moments changed');
  assert.equal(t.steps, 1);
  await t.release();
});

test('the suggested rate (steepest descent) trains the digits task far better than a tiny rate; plot and sketch drawn', async () => {
  const r = await findLr(task.model, task.train, { steps: 100, seed: 0 });
  const min = Math.min(...r.smoothed);
  assert.ok(r.smoothed[r.smoothed.length - 1]! > 1.5 * min, 'the loss should climb again at the largest rates');
  assert.ok(r.suggestion > 1e-5 && r.suggestion < 1e-1, `suggestion ${r.suggestion}`);
  assert.ok(r.suggestion <= r.minLossLr);
  const i = r.lrs.indexOf(r.suggestion);
  assert.ok(
    r.smoothed[Math.min(r.lrs.length - 1, i + 3)]! < r.smoothed[Math.max(0, i - 3)]!,
    'the loss is not falling at the suggestion',
  );
  const acc = async (lr: number) => {
    const f = await fit(task.model, task.train, { epochs: 3, lr, seed: 0 });
    const a = (await evaluate(f.trainer, task.val)).accuracy;
    await f.trainer.release();
    return a;
  };
  const [good, tiny] = [await acc(r.suggestion), await acc(r.lrs[0]!)];
  assert.ok(good > tiny + 0.05, `validation accuracy at the suggestion ${good} vs at ${r.lrs[0]}: ${tiny}`);
  const svg = join(mkdtempSync(join(tmpdir(), 'graft-lrf-')), 'plot.svg');
  writeLrFindSvg(svg, r);
  const text = readFileSync(svg, 'utf8');
  assert.match(text, /^<svg[\s\S]*<path d="M[^"]+"[\s\S]*suggested [0-9.e-]+ \(steepest\)[\s\S]*<\/svg>\n$/);
  const sketch = lrFindAscii(r);
  assert.ok(sketch.includes('|') && sketch.split('\n').length === 13);
});

test('graft train --lr-find prints the suggestion and a sketch, writes the SVG, trains nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-lrf-cli-'));
  const { stdout } = await graft([
    'train',
    '--model',
    mnistPath(),
    '--data',
    digitsPath(),
    '--pixel-max',
    '16',
    '--labels-per-class',
    '50',
    '--lr-find',
    '--lr-find-steps',
    '60',
    '--lr-find-plot',
    join(dir, 'lr.svg'),
    '--out',
    join(dir, 'model.onnx'),
  ]);
  assert.match(stdout, /suggested learning rate: \d\.\d+e-\d+ \(steepest descent of the smoothed loss\)/);
  assert.ok(existsSync(join(dir, 'lr.svg')));
  assert.ok(!existsSync(join(dir, 'model.onnx')), 'lr-find must not train a model');
});
