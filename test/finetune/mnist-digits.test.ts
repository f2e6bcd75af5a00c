/**
 * The real fine-tune of issue 2: the pretrained MNIST network (zero-shot ≈ 0.85 on the 8×8 digits)
 * fine-tuned with at most 50 labels per class must reach ≥ 0.95 on a held-out split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finetuneImageCsv, evaluateModel } from '../../src/finetune/classifier.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { makeBatchDynamic } from '../../src/graph/rewrites.js';
import { loadPixelDataset } from '../../src/data/pixel-dataset.js';
import { stratifiedSplit } from '../../src/data/splits.js';
import { asset } from '../helpers/assets.js';

const model = asset('models/onnxjs-demo/mnist.onnx');
const data = asset('datasets/digits-8x8/digits.csv.gz');

test('fine-tuning the MNIST network on 50 digits per class lifts held-out accuracy from ~0.85 to ≥ 0.95 (public API)', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'graft-ft-')), 'digits.onnx');
  const r = await finetuneImageCsv(model, data, {
    labelsPerClass: 50,
    epochs: 30,
    lr: 3e-3,
    pixelMax: 16,
    seed: 0,
    out,
  });
  assert.equal(r.trainExamples, 500);
  assert.ok(r.testExamples > 500);
  assert.ok(r.zeroShotAccuracy > 0.8 && r.zeroShotAccuracy < 0.9, `zero-shot ${r.zeroShotAccuracy}`);
  assert.ok(r.testAccuracy >= 0.95, `test accuracy after fine-tuning ${r.testAccuracy}`);
  // The saved model is a plain ONNX file: onnxruntime alone reproduces the accuracy on the same split.
  const saved = makeBatchDynamic(readOnnx(out));
  const ds = await loadPixelDataset(data, { side: 28, pixelMax: 16 });
  const split = stratifiedSplit(ds.y, { testFraction: 0.3, perClass: 50, seed: 0 });
  const test = { x: split.test.map((i) => ds.x[i]!), y: split.test.map((i) => ds.y[i]!) };
  const acc = await evaluateModel(saved, test);
  assert.ok(Math.abs(acc - r.testAccuracy) < 1e-9, `saved model ${acc} vs trainer ${r.testAccuracy}`);
});
