/** graft curve's library: a small real curve (MNIST CNN → 8×8 digits), its table/plot files, and budget errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/formats/load.js';
import { loadPixelDataset } from '../../src/data/pixel-dataset.js';
import { dataEfficiencyCurve, writeCurve } from '../../src/eval/curve.js';
import { GraftError } from '../../src/util/errors.js';
import { asset } from '../helpers/assets.js';

const NODE = 'Pooling160_Output_0_reshape0';

test('a data-efficiency curve on real data: every method learns, transfer beats scratch at 2 labels per class; table and SVG written', async () => {
  const model = loadModel(asset('models/onnxjs-demo/mnist.onnx'));
  const data = await loadPixelDataset(asset('datasets/digits-8x8/digits.csv.gz'), { side: 28, pixelMax: 16 });
  const r = await dataEfficiencyCurve(model, data, { budgets: [10, 2], seeds: 2, minSteps: 40 });
  assert.deepEqual(r.budgets, [2, 10]);
  assert.equal(r.points.length, 2 * 2 * 3);
  const mean = (m: string, b: number) => r.summary.find((s) => s.method === m && s.perClass === b)!.mean;
  for (const m of ['scratch', 'features', 'finetune']) assert.ok(mean(m, 10) > 0.5, `${m} at 10/class: ${mean(m, 10)}`);
  assert.ok(Math.max(mean('features', 2), mean('finetune', 2)) > mean('scratch', 2), JSON.stringify(r.summary));
  for (const s of r.summary) assert.ok(s.min <= s.mean && s.mean <= s.max);
  const dir = mkdtempSync(join(tmpdir(), 'graft-curve-'));
  writeCurve(r, dir);
  const md = readFileSync(join(dir, 'curve.md'), 'utf8');
  assert.match(md, /\| 10 \| 0\.\d{3} \[0\.\d{3}–0\.\d{3}\] \|/);
  const svg = readFileSync(join(dir, 'curve.svg'), 'utf8');
  assert.equal((svg.match(/<polyline /g) ?? []).length, 3);
  assert.equal((svg.match(/<polygon /g) ?? []).length, 3);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'curve.json'), 'utf8')).budgets, [2, 10]);
  await assert.rejects(() => dataEfficiencyCurve(model, data, { budgets: [500], seeds: 1, methods: ['features'], node: NODE }), GraftError);
});
