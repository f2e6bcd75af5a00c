/**
 * Inductive transfer on real weights: the MNIST CNN with its head replaced for a new task trains on
 * it; three heads on one backbone export as one ONNX whose outputs agree with the heads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/formats/load.js';
import { loadPixelDataset } from '../../src/data/pixel-dataset.js';
import { stratifiedSplit } from '../../src/data/splits.js';
import { fit, predictLabels, stack } from '../../src/train/fit.js';
import { Session } from '../../src/runtime/session.js';
import { withNewHead, trainMultiTask, exportMultiTask } from '../../src/features/multi-task.js';
import { asset, needs } from '../helpers/assets.js';
import { accuracy } from '../../src/util/vectors.js';

const NODE = 'Pooling160_Output_0_reshape0';

test('a new head on a trained network (MNIST CNN → digit parity) trains; multi-task heads export as one ONNX with k outputs', async () => {
  const model = loadModel(asset('models/onnxjs-demo/mnist.onnx'));
  const data = await loadPixelDataset(asset('datasets/digits-8x8/digits.csv.gz'), { side: 28, pixelMax: 16 });
  const split = stratifiedSplit(data.y, { testFraction: 0.3, perClass: 30, seed: 0 });
  const test = split.test.slice(0, 300);
  const parity = data.y.map((y) => y % 2);

  const g = await withNewHead(model, 2, { node: NODE, seed: 1 });
  assert.deepEqual(
    g.outputs.map((o) => o.name),
    ['logits'],
  );
  assert.equal(g.initializers.get('new_head.weight')!.dims.join(','), '2,256');
  const r = await fit(
    g,
    { x: split.train.map((i) => data.x[i]!), y: split.train.map((i) => parity[i]!) },
    { epochs: 4, batchSize: 32, lr: 1e-3, seed: 1 },
  );
  const acc = accuracy(
    await predictLabels(
      r.trainer,
      r.trainer.tg.model,
      test.map((i) => data.x[i]!),
    ),
    test.map((i) => parity[i]!),
  );
  await r.trainer.release();
  assert.ok(acc > 0.7, `parity accuracy (chance 0.5) after fine-tuning the new head and backbone: ${acc}`);

  const tasks = [
    { name: 'digit', labels: data.y },
    { name: 'parity', labels: parity },
  ];
  const mt = await trainMultiTask(model, data.x, tasks, { node: NODE, train: split.train });
  const onnx = exportMultiTask(model, mt.node, mt.heads);
  assert.deepEqual(
    onnx.outputs.map((o) => o.name),
    ['probabilities_digit', 'probabilities_parity'],
  );
  const s = await Session.fromGraph(onnx, {}, 'multi');
  const out = await s.run({
    [onnx.dataInputs()[0]!.name]: stack(
      test.map((i) => data.x[i]!),
      [1, 28, 28],
    ),
  });
  await s.release();
  for (const [k, t] of tasks.entries()) {
    const p = out[`probabilities_${t.name}`]!;
    const K = p.dims[1]!;
    const pred = Array.from({ length: test.length }, (_, n) => {
      let b = 0;
      for (let c = 1; c < K; c++)
        if ((p.data as Float32Array)[n * K + c]! > (p.data as Float32Array)[n * K + b]!) b = c;
      return b;
    });
    const heads = await mt.heads[k]!.head.predict(test.map((i) => mt.features[i]!));
    const agree = pred.filter((v, n) => v === heads[n]).length / test.length;
    assert.ok(agree > 0.99, `${t.name}: exported ONNX agrees with the head on ${agree}`);
    assert.ok(
      accuracy(
        pred,
        test.map((i) => t.labels[i]!),
      ) > (K === 10 ? 0.8 : 0.75),
    );
  }
});

test('a classifier saved by graft train --mode features starts a new task: its old head is cut at "features" and a new one fitted', {
  skip: needs('datasets/fashion-mnist', 'models/coral/mobilenet_v2_1.0_224_quant.tflite'),
}, async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadLabelledImages } = await import('../../src/data/labelled-images.js');
  const { trainFeatureClassifier, evaluateClassifier } = await import('../../src/features/classifier.js');
  const { getLabels } = await import('../../src/formats/preprocess.js');
  const fm = asset('datasets/fashion-mnist');
  const data = loadLabelledImages(join(fm, 't10k-images-idx3-ubyte.gz'), { maxPerClass: 6 });
  const dir = mkdtempSync(join(tmpdir(), 'graft-inductive-'));
  const first = await trainFeatureClassifier(asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'), data, {
    labelsPerClass: 4,
    valFraction: 0,
    testFraction: 0.34,
    out: join(dir, 'ten'),
  });
  assert.equal(first.report.featureDim, 1280);
  // the new task: the same kind of images, grouped into 4 classes
  const group = [0, 2, 0, 0, 0, 1, 0, 1, 3, 1]; // tops, bottoms, footwear, bags
  const task2 = { ...data, labels: data.labels.map((y) => group[y]!), classes: ['top', 'bottom', 'footwear', 'bag'] };
  const second = await trainFeatureClassifier(join(dir, 'ten'), task2, {
    valFraction: 0,
    testFraction: 0.34,
    out: join(dir, 'four'),
  });
  assert.match(second.report.featureNode, /(^|\/)features$/); // the old head's input, as the saved model names it
  assert.equal(second.report.featureDim, 1280);
  const g = loadModel(join(dir, 'four'));
  assert.deepEqual(getLabels(g), ['top', 'bottom', 'footwear', 'bag']);
  assert.equal(g.outputs.length, 1);
  const ev = await evaluateClassifier(g, {
    ...task2,
    inputs: second.split.test.map((i) => task2.inputs[i]!),
    labels: second.split.test.map((i) => task2.labels[i]!),
    names: [],
  });
  assert.ok(ev.metrics.accuracy > 0.6, `new-task accuracy ${ev.metrics.accuracy}`);
});

test('the default feature node of the CNTK-exported MNIST CNN is the input of its final MatMul (reshaped weight, Add bias), as loaded, batch-freed and upgraded', async () => {
  const { defaultFeatureNode } = await import('../../src/features/extract.js');
  const { makeBatchDynamic, upgradeOpset } = await import('../../src/graph/rewrites.js');
  const { featureNodeOf, outputClasses } = await import('../../src/features/multi-task.js');
  const model = loadModel(asset('models/onnxjs-demo/mnist.onnx'));
  for (const g of [model, makeBatchDynamic(model), upgradeOpset(model), makeBatchDynamic(upgradeOpset(model))]) {
    assert.equal(defaultFeatureNode(g), NODE);
    assert.equal(featureNodeOf(g), NODE);
  }
  assert.equal(await outputClasses(model), 10);
  // a new head without naming the node cuts at the same value
  const g = await withNewHead(model, 3);
  assert.equal(g.metadata['graft.features'], NODE);
  assert.equal(await outputClasses(g), 3);
});
