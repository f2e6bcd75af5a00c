/**
 * The image route trains through the same loop as the rest of `--mode finetune` (src/train/fit.ts):
 * top blocks on cached Fashion-MNIST activations with a one-cycle schedule, class weights,
 * discriminative rates and early stopping, killed with SIGKILL after its first checkpoint and
 * resumed with --resume, ends with the same exported weights, bit for bit, as an uninterrupted run.
 * Also --lr-find on the same cached activations. Small: 7 images per class, the top block only,
 * activations shared through an on-disk cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOnnx } from '../../src/formats/onnx.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';
import { sameBits, floatInitializers } from '../train/digits-task.js';
import { graft, graftKilledAtFirstCheckpoint } from '../helpers/cli.js';
import { asset, needs } from '../helpers/assets.js';

const EPOCHS = 6;
const args = (cache: string, dir: string, out: string) => [
  'train',
  '--mode',
  'finetune',
  '--model',
  asset('models/coral/mobilenet_v2_1.0_224_quant.tflite'),
  '--data',
  join(asset('datasets/fashion-mnist'), 't10k-images-idx3-ubyte.gz'),
  '--max-per-class',
  '7',
  '--top-blocks',
  '1',
  '--epochs',
  String(EPOCHS),
  '--batch-size',
  '8',
  '--lr',
  '1e-3',
  '--seed',
  '3',
  '--schedule',
  'one-cycle',
  '--class-weights',
  'balanced',
  '--lr-decay',
  '0.5',
  '--layer-groups',
  '2',
  '--early-stopping',
  'loss',
  '--patience',
  '20',
  '--val-fraction',
  '0.15',
  '--test-fraction',
  '0.15',
  '--cache',
  cache,
  '--checkpoint-dir',
  dir,
  '--out',
  out,
];

test('image route: kill -9 after the first checkpoint, --resume → the same exported weights as an uninterrupted run', {
  skip: needs('models/coral/mobilenet_v2_1.0_224_quant.tflite', 'datasets/fashion-mnist'),
}, async () => {
  const base = mkdtempSync(join(tmpdir(), 'graft-img-resume-'));
  try {
    const cache = join(base, 'cache');
    const [dirA, dirB, outA, outB] = ['a', 'b', 'outA', 'outB'].map((s) => join(base, s)) as [
      string,
      string,
      string,
      string,
    ];
    const ref = await graft([...args(cache, dirA, outA), '--json']);
    const r = JSON.parse(ref.stdout) as { epochs: number; resumedFrom: number };
    assert.equal(r.epochs, EPOCHS);
    assert.deepEqual(
      listCheckpoints(dirA),
      Array.from({ length: EPOCHS }, (_, i) => i + 1),
    );
    // the run to kill: SIGKILL as soon as its first checkpoint's manifest exists
    await graftKilledAtFirstCheckpoint(args(cache, dirB, outB), dirB);
    const done = listCheckpoints(dirB);
    assert.ok(
      !existsSync(join(outB, 'model.onnx')) && done.length >= 1 && done.length < EPOCHS,
      `killed too late: checkpoints ${done}`,
    );
    const { stderr, stdout } = await graft([...args(cache, dirB, outB), '--resume']);
    assert.match(stderr, new RegExp(`resumed from the checkpoint of epoch ${done[done.length - 1]}`));
    assert.match(stdout, /resumed after epoch/);
    const a = floatInitializers(readOnnx(join(outA, 'model.onnx')));
    const b = floatInitializers(readOnnx(join(outB, 'model.onnx')));
    assert.ok(sameBits(a, b), 'the resumed run ends with other weights than the uninterrupted one');
    // --lr-find on image data: the range test on the cached activations (all cache hits here)
    const plot = join(base, 'lr.svg');
    const lf = await graft([
      ...args(cache, join(base, 'c'), join(base, 'outC')),
      '--lr-find',
      '--lr-find-steps',
      '12',
      '--lr-find-plot',
      plot,
      '--json',
    ]);
    const f = JSON.parse(lf.stdout) as { suggestion: number; steps: number; plot: string };
    assert.ok(f.suggestion > 0 && f.steps >= 5 && existsSync(plot), lf.stdout);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
