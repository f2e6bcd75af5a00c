/** `graft convert` and `graft classify`, run as a user would, on the Coral TFLite models and real photos. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asset, needs } from '../helpers/assets.js';
import { graft, graftFails as fail } from '../helpers/cli.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { getLabels, getPreprocess } from '../../src/formats/preprocess.js';

const coral = (f: string) => asset(`models/coral/${f}`);
const tmp = mkdtempSync(join(tmpdir(), 'graft-convert-'));
const CATS = new Set([282, 283, 284, 285, 286]);

test('graft convert writes an ONNX model that records preprocessing and labels; graft classify reads them back', {
  skip: needs('models/coral'),
}, async () => {
  const out = join(tmp, 'mobilenet_v2.onnx');
  const { stdout } = await graft([
    'convert',
    coral('mobilenet_v2_1.0_224_quant.tflite'),
    out,
    '--labels',
    coral('imagenet_labels.txt'),
  ]);
  assert.match(stdout, /input {2}input float32 \[batch, 3, 224, 224\]/);
  assert.match(stdout, /preprocess \(file\): 224x224 RGB/);
  assert.match(stdout, /labels: 1001/);
  const g = readOnnx(out);
  assert.equal(getPreprocess(g)!.source, 'file');
  assert.equal(getLabels(g)![935], 'hotdog, hot dog, red hot');

  const r = JSON.parse(
    (await graft(['classify', out, coral('hot_dog.jpg'), coral('cat_720p.jpg'), '--top', '3', '--json'])).stdout,
  );
  assert.equal(r.length, 2);
  assert.equal(r[0].top.length, 3);
  assert.equal(r[0].top[0].index, 935);
  assert.match(r[0].top[0].label, /^hotdog/);
  assert.ok(r[0].top[0].probability >= 0.9, `hotdog p = ${r[0].top[0].probability}`);
  assert.ok(CATS.has(r[1].top[0].index), JSON.stringify(r[1].top));

  const text = (await graft(['classify', out, coral('hot_dog.jpg'), '--top', '2'])).stdout;
  assert.match(text, /hot_dog\.jpg\n {2}0\.9\d+ {2}hotdog, hot dog, red hot \(935\)\n {2}0\.\d+ {2}\S/);
});

test('graft classify takes a .tflite model directly, int8 per-channel included, with --labels', {
  skip: needs('models/coral'),
}, async () => {
  const labels = join(tmp, 'numbered.txt');
  // "index name" lines are read too
  writeFileSync(
    labels,
    readFileSync(coral('imagenet_labels.txt'), 'utf8')
      .trim()
      .split('\n')
      .map((l, i) => `${i} ${l}`)
      .join('\n'),
  );
  const r = JSON.parse(
    (
      await graft([
        'classify',
        coral('tf2_mobilenet_v2_1.0_224_ptq.tflite'),
        coral('cat.bmp'),
        '--labels',
        labels,
        '--json',
        '--top',
        '1',
      ])
    ).stdout,
  );
  assert.equal(r[0].top[0].index, 286);
  assert.equal(r[0].top[0].label, 'Egyptian cat');
  assert.ok(r[0].top[0].probability >= 0.6, `p = ${r[0].top[0].probability}`); // libcoral's threshold for this model and image
});

test('graft convert --mean/--std/--size/--channel-order record preprocessing given by flags', {
  skip: needs('models/coral'),
}, async () => {
  const out = join(tmp, 'flags.onnx');
  const { stdout } = await graft([
    'convert',
    coral('mobilenet_v1_0.25_128_quant.tflite'),
    out,
    '--mean',
    '0.485,0.456,0.406',
    '--std',
    '0.229,0.224,0.225',
    '--size',
    '128x128',
    '--channel-order',
    'BGR',
    '--json',
  ]);
  const r = JSON.parse(stdout);
  assert.deepEqual(r.preprocess, {
    layout: 'NCHW',
    width: 128,
    height: 128,
    channels: 3,
    channelOrder: 'BGR',
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    resize: 'stretch',
    source: 'flag',
  });
  assert.deepEqual(getPreprocess(readOnnx(out)), r.preprocess);
  assert.equal(r.labels, 1001, 'the label list packed in the .tflite file comes along');
});

test('graft convert fails cleanly and leaves nothing behind', { skip: needs('models/coral') }, async () => {
  const dir = mkdtempSync(join(tmp, 'fail-'));
  const truncated = join(dir, 'cut.tflite');
  writeFileSync(truncated, readFileSync(coral('mobilenet_v1_0.25_128_quant.tflite')).subarray(0, 50000));
  const out = join(dir, 'out.onnx');
  const e = await fail(['convert', truncated, out]);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /cut\.tflite is truncated or not a valid TFLite file/);
  assert.doesNotMatch(e.stderr, /at .*\.ts:\d+/, 'no stack trace');
  const e2 = await fail(['convert', coral('mobilenet_v1_0.25_128_quant.tflite'), out, '--size', '224x224']);
  assert.match(e2.stderr, /--size 224x224 does not match the model's input, 128x128/);
  const e3 = await fail([
    'convert',
    coral('mobilenet_v1_0.25_128_quant.tflite'),
    out,
    '--labels',
    coral('inat_bird_labels.txt'),
  ]);
  assert.match(e3.stderr, /has 965 labels, but the model's output .* has 1001 classes/);
  const e4 = await fail(['convert', coral('mobilenet_v1_0.25_128_quant.tflite'), join(dir, 'out.txt')]);
  assert.match(e4.stderr, /the output must be an \.onnx file/);
  const e5 = await fail(['convert', coral('mobilenet_v1_0.25_128_quant.tflite'), out, '--mean', '0.5,x']);
  assert.match(e5.stderr, /--mean must be a number, got 'x'/);
  assert.deepEqual(readdirSync(dir), ['cut.tflite'], 'no output and no temporary file');
});

test('graft classify names a missing or unreadable image', { skip: needs('models/coral') }, async () => {
  const model = coral('mobilenet_v1_0.25_128_quant.tflite');
  const e = await fail(['classify', model, join(tmp, 'nope.jpg')]);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /image not found: .*nope\.jpg/);
  const junk = join(tmp, 'junk.jpg');
  writeFileSync(junk, 'not an image');
  const e2 = await fail(['classify', model, junk]);
  assert.match(e2.stderr, /junk\.jpg: cannot read the image/);
  assert.ok(existsSync(model));
});

test('graft classify and graft check take a TF.js layers model folder (Tiny Darknet)', {
  skip: needs('models/ml5/darknettiny', 'models/coral/cat_720p.jpg'),
}, async () => {
  const darknet = asset('models/ml5/darknettiny');
  const { stdout } = await graft(['classify', darknet, asset('models/coral/cat_720p.jpg'), '--json', '--top', '3']);
  const r = JSON.parse(stdout);
  const top = (r[0]?.top ?? r[0]?.classes ?? []) as { label?: string }[];
  assert.ok(
    top.some((c) => /cat|tabby/i.test(c.label ?? '')),
    JSON.stringify(r).slice(0, 400),
  );
  const check = await graft(['check', darknet, '--params', '0', '--json']);
  assert.deepEqual(JSON.parse(check.stdout).missing, []);
});
