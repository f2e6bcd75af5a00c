/**
 * The image fine-tuning pipeline end to end on real data (Fashion-MNIST IDX through the imported
 * MobileNetV2, a small subset): top blocks found by name, activations cached on disk (a second run
 * computes nothing), LoRA adapters on the tail's 1×1 convolutions, export with the parity check, and
 * the exported folder scored by `evaluateClassifier` (what `graft eval` runs) agreeing with the
 * in-memory predictions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/formats/load.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { loadLabelledImages } from '../../src/data/labelled-images.js';
import { stratifiedSplit } from '../../src/data/splits.js';
import { finetuneImages } from '../../src/finetune/image-finetune.js';
import { blockCuts, resolveCut } from '../../src/finetune/top-blocks.js';
import { evaluateClassifier } from '../../src/features/classifier.js';
import { asset, needs } from '../helpers/assets.js';

test('MobileNetV2 blocks: cut points come from node names, one live activation each', {
  skip: needs('models/coral/mobilenet_v2_1.0_224_quant.tflite'),
}, () => {
  const model = loadModel(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'));
  const cuts = blockCuts(model);
  assert.deepEqual(
    cuts.slice(-3).map((c) => c.next),
    ['expanded_conv_15', 'expanded_conv_16', 'Conv_1'],
  );
  assert.equal(resolveCut(model, { topBlocks: 1 }), 'MobilenetV2/expanded_conv_16/project/add_fold_1');
  assert.equal(resolveCut(model, { topBlocks: 3 }), 'MobilenetV2/expanded_conv_14/add');
  assert.equal(resolveCut(model, { cut: 'MobilenetV2/Conv_1/Relu6_node' }), 'MobilenetV2/Conv_1/Relu6');
  assert.throws(() => resolveCut(model, { topBlocks: 40 }), /too many/);
  assert.throws(() => resolveCut(model, { cut: 'nope' }), /no node or value named 'nope'/);
});

test('finetuneImages on Fashion-MNIST IDX: cached top blocks + LoRA, exported folder scores like the trained model', {
  skip: needs('datasets/fashion-mnist', 'models/coral/mobilenet_v2_1.0_224_quant.tflite'),
}, async () => {
  const fm = asset('datasets/fashion-mnist');
  const data = loadLabelledImages(join(fm, 't10k-images-idx3-ubyte.gz'), { maxPerClass: 12 });
  const dir = mkdtempSync(join(tmpdir(), 'graft-ft-images-'));
  try {
    const opts = {
      topBlocks: 1,
      augment: true,
      views: 2,
      cacheDir: join(dir, 'cache'),
      epochs: 3,
      lr: 2e-3,
      headLrMult: 1,
      seed: 4,
      lora: { rank: 4, alpha: 8 },
      testFraction: 0.25,
      valFraction: 0,
    } as const;
    const first = await finetuneImages(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'), data, {
      ...opts,
      out: join(dir, 'out'),
    });
    const r = first.report;
    assert.equal(r.cut, 'MobilenetV2/expanded_conv_16/project/add_fold_1');
    assert.deepEqual(r.cutDims, [320, 7, 7]);
    assert.equal(r.examples.train, 90);
    assert.equal(r.cache.computed, 90 * 2 + 30);
    assert.ok(r.lora && r.lora.params === 2, `LoRA on Conv_1's 1×1 kernel: ${JSON.stringify(r.lora)}`);
    assert.ok(r.export && r.export.maxAbsDiff <= 1e-4, JSON.stringify(r.export));
    assert.ok(r.test!.accuracy > 0.4, `test accuracy ${r.test!.accuracy} (chance 0.1)`);
    const g = readOnnx(join(dir, 'out', 'model.onnx'));
    assert.ok(
      !g.nodes.some((n) => n.name.startsWith('lora/')) && g.metadata['graft.lora'] === undefined,
      'LoRA merged',
    );
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'out', 'labels.json'), 'utf8')), data.classes);
    // the exported folder on the same test images: the in-memory score (cached fp16 activations) and
    // the file's (fp32 all the way) agree to within one image
    const split = stratifiedSplit(data.labels, { testFraction: 0.25, valFraction: 0, seed: 4 });
    const sub = {
      ...data,
      inputs: split.test.map((i) => data.inputs[i]!),
      labels: split.test.map((i) => data.labels[i]!),
      names: split.test.map((i) => data.names[i]!),
    };
    const ev = await evaluateClassifier(g, sub);
    assert.ok(
      Math.abs(ev.metrics.accuracy - r.test!.accuracy) <= 1 / 30 + 1e-9,
      `${ev.metrics.accuracy} vs ${r.test!.accuracy}`,
    );
    // second run: everything from the cache, same result (fp16 both times)
    const again = await finetuneImages(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'), data, opts);
    assert.equal(again.report.cache.computed, 0);
    assert.equal(again.report.cache.cached, 90 * 2 + 30);
    assert.equal(again.report.test!.accuracy, r.test!.accuracy);
    assert.equal(again.report.finalLoss, r.finalLoss);
    assert.ok(!existsSync(join(dir, 'out2')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
