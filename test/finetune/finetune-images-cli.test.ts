/**
 * `graft train --mode finetune` on IDX images: the top block trained on cached activations, the
 * classifier folder it saves taken by `graft predict` and `graft eval`; flag errors name the flag.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, graftFails } from '../helpers/cli.js';
import { asset, needs } from '../helpers/assets.js';

test('graft train --mode finetune --top-blocks on IDX data, then predict and eval on the saved folder', {
  skip: needs('models/coral/mobilenet_v2_1.0_224_quant.tflite', 'datasets/fashion-mnist', 'models/coral/cat.bmp'),
}, async () => {
  const model = asset('models/coral/mobilenet_v2_1.0_224_quant.tflite');
  const data = join(asset('datasets/fashion-mnist'), 't10k-images-idx3-ubyte.gz');
  const dir = mkdtempSync(join(tmpdir(), 'graft-ft-cli-'));
  try {
    const out = join(dir, 'ft');
    const { stdout } = await graft([
      'train',
      '--mode',
      'finetune',
      '--model',
      model,
      '--data',
      data,
      '--max-per-class',
      '8',
      '--top-blocks',
      '1',
      '--epochs',
      '2',
      '--seed',
      '2',
      '--cache',
      join(dir, 'cache'),
      '--out',
      out,
      '--json',
    ]);
    const r = JSON.parse(stdout) as {
      cut: string;
      examples: { train: number };
      test: { accuracy: number };
      export: { maxAbsDiff: number; path: string };
    };
    assert.equal(r.cut, 'MobilenetV2/expanded_conv_16/project/add_fold_1');
    assert.ok(r.examples.train > 0 && r.test.accuracy > 0.2, stdout);
    assert.ok(
      r.export.maxAbsDiff <= 1e-4 && existsSync(join(out, 'model.onnx')) && existsSync(join(out, 'labels.json')),
    );
    // the same files as every train subcommand: the report beside the model
    for (const f of ['report.html', 'report.json']) assert.ok(existsSync(join(out, f)), f);
    const ev = await graft(['eval', '--model', out, '--data', data, '--max-per-class', '3', '--json']);
    const m = (JSON.parse(ev.stdout) as { metrics: { n: number; accuracy: number } }).metrics;
    assert.equal(m.n, 30);
    assert.ok(
      m.accuracy > 0.3,
      `eval accuracy ${m.accuracy} (these 30 images are among the 80 it was trained/tested on)`,
    );
    const png = asset('models/coral/cat.bmp');
    const pr = await graft(['predict', '--model', out, png]);
    assert.match(pr.stdout, /\d\.\d+/);
    const bad = await graftFails([
      'train',
      '--mode',
      'finetune',
      '--model',
      model,
      '--data',
      data,
      '--cut',
      'no-such-node',
      '--out',
      join(dir, 'x'),
    ]);
    assert.match(bad.stderr, /--cut: no node or value named 'no-such-node'/);
    const both = await graftFails([
      'train',
      '--mode',
      'finetune',
      '--model',
      model,
      '--data',
      data,
      '--cut',
      'a',
      '--top-blocks',
      '2',
    ]);
    assert.match(both.stderr, /only one of --cut, --top-blocks and --full/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
