/**
 * Transformers.js-layout model folders (onnx/model.onnx + quantized variants, config.json,
 * preprocessor_config.json) built here with Graft's own writer, then loaded and used by real commands.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Graph } from '../../src/graph/graph.js';
import { writeOnnx } from '../../src/formats/onnx.js';
import { loadModel, resolveModelFile } from '../../src/formats/load.js';
import { getLabels, getPreprocess } from '../../src/formats/preprocess.js';
import {
  preprocessFromHfConfig,
  labelsFromHfConfig,
  repoOfCacheFolder,
  QUANTIZED_KEY,
} from '../../src/formats/hf-folder.js';
import { imagesToTensor } from '../../src/data/image.js';
import { smallCnn } from '../../src/heads/scratch-cnn.js';
import { compileTraining } from '../../src/train/training-graph.js';
import { GraftError } from '../../src/util/errors.js';
import { graft, graftFails } from '../helpers/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'graft-hf-'));

/** A "classifier" whose scores are its input pixels: logits = Flatten(pixel_values), so what classify feeds shows in its output. */
function echoModel(c: number, h: number, w: number): Graph {
  const g = new Graph();
  g.name = 'echo';
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'pixel_values', dtype: 'float32', shape: ['batch', c, h, w] }];
  g.nodes.push({
    name: 'flatten',
    opType: 'Flatten',
    domain: '',
    inputs: ['pixel_values'],
    outputs: ['logits'],
    attrs: {},
  });
  g.outputs = [{ name: 'logits' }];
  return g;
}

function writeFolder(
  dir: string,
  files: { onnx?: Record<string, Graph>; config?: object; preprocessor?: object },
): string {
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const [name, g] of Object.entries(files.onnx ?? {})) writeOnnx(g, join(dir, 'onnx', name));
  if (files.config) writeFileSync(join(dir, 'config.json'), JSON.stringify(files.config));
  if (files.preprocessor) writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(files.preprocessor));
  return dir;
}

/** 6×4 RGB image with every pixel distinct: pixel (x, y) = (10x + 40y + 1, 200 − 7x − 30y, 3x·y + 5). */
const W = 6,
  H = 4;
const px = (x: number, y: number): [number, number, number] => [
  10 * x + 40 * y + 1,
  200 - 7 * x - 30 * y,
  3 * x * y + 5,
];
async function writeGradientPng(file: string): Promise<void> {
  const raw = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw.set(px(x, y), (y * W + x) * 3);
  await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
    .png()
    .toFile(file);
}

const MEAN = [0.5, 0.4, 0.3],
  STD = [0.2, 0.25, 0.5];
/** ViT/MobileNet-style config: shortest edge 4 (the image's own, so no resampling), centre crop 4×4, rescale, normalize. */
const PREPROCESSOR = {
  image_processor_type: 'MobileNetV2ImageProcessor',
  do_resize: true,
  size: { shortest_edge: 4 },
  resample: 2,
  do_center_crop: true,
  crop_size: { height: 4, width: 4 },
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: MEAN,
  image_std: STD,
};

/** What Transformers.js computes for the gradient image: crop columns 1…4 (offset floor((6−4)/2)), pixel/255, (v − mean)/std, CHW. */
function expectedTensor(): number[] {
  const out: number[] = [];
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) out.push((px(x + 1, y)[c]! / 255 - MEAN[c]!) / STD[c]!);
  return out;
}

test('preprocessor_config.json is read as Transformers.js reads it: the tensor fed is the hand-computed crop and normalization', async () => {
  const dir = writeFolder(tmp(), { onnx: { 'model.onnx': echoModel(3, 4, 4) }, preprocessor: PREPROCESSOR });
  const img = join(dir, 'img.png');
  await writeGradientPng(img);
  const g = loadModel(dir);
  const pre = getPreprocess(g)!;
  assert.equal(pre.source, 'file');
  assert.deepEqual(
    [pre.width, pre.height, pre.channels, pre.channelOrder, pre.resize],
    [4, 4, 3, 'RGB', 'center-crop'],
  );
  const t = await imagesToTensor([img], pre);
  assert.deepEqual(t.dims, [1, 3, 4, 4]);
  const want = expectedTensor();
  (t.data as Float32Array).forEach((v, i) =>
    assert.ok(Math.abs(v - want[i]!) < 1e-5, `element ${i}: ${v} ≠ ${want[i]}`),
  );
});

test('graft classify FOLDER img.png feeds that tensor and names classes from config.json id2label', async () => {
  const id2label = Object.fromEntries(Array.from({ length: 48 }, (_, i) => [String(i), `class-${i}`]));
  const dir = writeFolder(tmp(), {
    onnx: { 'model.onnx': echoModel(3, 4, 4) },
    preprocessor: PREPROCESSOR,
    config: { id2label },
  });
  const img = join(dir, 'img.png');
  await writeGradientPng(img);
  const { stdout } = await graft(['classify', dir, img, '--top', '48', '--json']);
  const res = JSON.parse(stdout) as { top: { index: number; label?: string; probability: number }[] }[];
  const want = expectedTensor();
  const z = Math.max(...want);
  const sum = want.reduce((s, v) => s + Math.exp(v - z), 0);
  assert.equal(res[0]!.top.length, 48);
  for (const t of res[0]!.top) {
    assert.equal(t.label, `class-${t.index}`);
    assert.ok(Math.abs(t.probability - Math.exp(want[t.index]! - z) / sum) < 1e-5, `class ${t.index}`);
  }
});

test('resize then crop: a 16×8 image goes to 8×4 (shortest edge 4) before the centre 4×4 crop', async () => {
  const dir = writeFolder(tmp(), {
    onnx: { 'model.onnx': echoModel(3, 4, 4) },
    preprocessor: { ...PREPROCESSOR, do_normalize: false },
  });
  // red for x < 6, blue from there: resized to 8×4 the red band is columns 0…2, so the crop (columns
  // 2…5) starts red; a crop of the unresized image (columns 6…9) would be all blue
  const raw = Buffer.alloc(16 * 8 * 3);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 16; x++) raw.set(x < 6 ? [255, 0, 0] : [0, 0, 255], (y * 16 + x) * 3);
  const img = join(dir, 'bands.png');
  await sharp(raw, { raw: { width: 16, height: 8, channels: 3 } })
    .png()
    .toFile(img);
  const t = await imagesToTensor([img], getPreprocess(loadModel(dir))!);
  assert.deepEqual(t.dims, [1, 3, 4, 4]);
  const d = t.data as Float32Array;
  const at = (c: number, y: number, x: number) => d[c * 16 + y * 4 + x]!;
  for (let y = 0; y < 4; y++) {
    assert.ok(at(0, y, 0) > 0.6 && at(2, y, 0) < 0.4, `row ${y}: first column is red (${at(0, y, 0)}, ${at(2, y, 0)})`);
    assert.ok(Math.abs(at(2, y, 3) - 1) < 2 / 255 && at(0, y, 3) < 2 / 255, `row ${y}: last column is blue`);
  }
  // shortest edge 8 (the image's own) with a 4×4 crop: no resize, the crop is columns 6…9, all blue
  // (fitting the shorter side to the crop instead would start it red)
  const dir8 = writeFolder(tmp(), {
    onnx: { 'model.onnx': echoModel(3, 4, 4) },
    preprocessor: { ...PREPROCESSOR, do_normalize: false, size: { shortest_edge: 8 } },
  });
  const t8 = await imagesToTensor([img], getPreprocess(loadModel(dir8))!);
  const d8 = t8.data as Float32Array;
  for (let i = 0; i < 16; i++) assert.ok(d8[i]! < 2 / 255 && Math.abs(d8[32 + i]! - 1) < 2 / 255, `pixel ${i} is blue`);
});

test('the variants of preprocessor_config.json: ViT, ConvNeXt (crop_pct), DINOv2/BiT, EfficientNet, rescale without normalize, BGR', () => {
  // ViT: size {height, width}, no crop, mean/std 0.5
  const vit = preprocessFromHfConfig(
    {
      image_processor_type: 'ViTImageProcessor',
      do_resize: true,
      size: { height: 224, width: 224 },
      do_normalize: true,
      image_mean: [0.5, 0.5, 0.5],
      image_std: [0.5, 0.5, 0.5],
      resample: 2,
      do_rescale: true,
      rescale_factor: 0.00392156862745098,
    },
    3,
  );
  assert.deepEqual(
    [vit.width, vit.height, vit.resize, vit.fit, vit.resample],
    [224, 224, 'stretch', { width: 224, height: 224 }, 'bilinear'],
  );
  vit.mean.forEach((m) => assert.ok(Math.abs(m - 0.5) < 1e-9));
  // ConvNeXt: shortest_edge 224 with crop_pct 0.875 → shorter side floor(224 / 0.875) = 256, crop 224
  const cnx = preprocessFromHfConfig(
    {
      image_processor_type: 'ConvNextImageProcessor',
      size: { shortest_edge: 224 },
      crop_pct: 0.875,
      do_normalize: true,
      image_mean: [0.485, 0.456, 0.406],
      image_std: [0.229, 0.224, 0.225],
      resample: 3,
    },
    3,
  );
  assert.deepEqual(
    [cnx.width, cnx.height, cnx.resize, cnx.fit, cnx.resample],
    [224, 224, 'center-crop', { shortestEdge: 256 }, 'bicubic'],
  );
  // ConvNeXt at 384 and up: a plain stretch
  const cnx384 = preprocessFromHfConfig(
    { image_processor_type: 'ConvNextImageProcessor', size: { shortest_edge: 384 } },
    3,
  );
  assert.deepEqual([cnx384.width, cnx384.resize, cnx384.fit], [384, 'stretch', { width: 384, height: 384 }]);
  // DINOv2 (BitImageProcessor): shortest edge 256, crop 224
  const dino = preprocessFromHfConfig(
    {
      image_processor_type: 'BitImageProcessor',
      do_resize: true,
      size: { shortest_edge: 256 },
      do_center_crop: true,
      crop_size: { height: 224, width: 224 },
      do_normalize: true,
      image_mean: [0.485, 0.456, 0.406],
      image_std: [0.229, 0.224, 0.225],
    },
    3,
  );
  assert.deepEqual([dino.width, dino.height, dino.resize, dino.fit], [224, 224, 'center-crop', { shortestEdge: 256 }]);
  assert.deepEqual(dino.std, [0.229, 0.224, 0.225]);
  // EfficientNet with include_top (the default): Transformers.js squares image_std
  const eff = preprocessFromHfConfig(
    {
      image_processor_type: 'EfficientNetImageProcessor',
      size: { height: 600, width: 600 },
      do_normalize: true,
      image_mean: [0.485, 0.456, 0.406],
      image_std: [0.47853944, 0.4732864, 0.47434163],
    },
    3,
  );
  eff.std.forEach((s, i) => assert.ok(Math.abs(s - [0.47853944, 0.4732864, 0.47434163][i]! ** 2) < 1e-9));
  // do_rescale false, no normalize: values stay 0–255 → Graft's std is 1/255
  const raw = preprocessFromHfConfig({ size: { height: 32, width: 32 }, do_rescale: false, do_normalize: false }, 3);
  assert.deepEqual(raw.mean, [0, 0, 0]);
  raw.std.forEach((s) => assert.ok(Math.abs(s - 1 / 255) < 1e-12));
  // rescale_factor 1/127.5 and mean 1: values in −1…1
  const pm1 = preprocessFromHfConfig(
    { size: 32, rescale_factor: 1 / 127.5, do_normalize: true, image_mean: 1, image_std: 1 },
    3,
  );
  assert.deepEqual([pm1.width, pm1.fit], [32, { width: 32, height: 32 }]);
  // Graft: (p/255 − M)/S must equal p/127.5 − 1 for every pixel value
  for (const p of [0, 100, 255]) assert.ok(Math.abs((p / 255 - pm1.mean[0]!) / pm1.std[0]! - (p / 127.5 - 1)) < 1e-9);
  // channel flip and grey models
  assert.equal(preprocessFromHfConfig({ size: 8, do_flip_channel_order: true }, 3).channelOrder, 'BGR');
  assert.equal(preprocessFromHfConfig({ size: 8 }, 1).channelOrder, 'GRAY');
  // a bad size is a GraftError naming the file
  assert.throws(
    () => preprocessFromHfConfig({ size: { longest_edge: 8 } }, 3, 'x/preprocessor_config.json'),
    (e: unknown) => e instanceof GraftError && /x\/preprocessor_config\.json/.test(e.message),
  );
});

test('id2label gives class names in index order; placeholder LABEL_n names are ignored', () => {
  assert.deepEqual(labelsFromHfConfig({ id2label: { '1': 'dog', '0': 'cat' } }), ['cat', 'dog']);
  assert.equal(labelsFromHfConfig({ id2label: { '0': 'LABEL_0', '1': 'LABEL_1' } }), undefined);
  assert.equal(labelsFromHfConfig({ id2label: { '0': 'a', '2': 'c' } }), undefined);
  assert.equal(labelsFromHfConfig({}), undefined);
});

test('the fp32 onnx/model.onnx is chosen when quantized variants sit beside it', () => {
  const fp32 = echoModel(3, 4, 4);
  const q = echoModel(3, 4, 4);
  q.name = 'quantized-variant';
  const variants = Object.fromEntries(
    ['model_quantized', 'model_fp16', 'model_int8', 'model_uint8', 'model_q4', 'model_q4f16', 'model_bnb4'].map((n) => [
      `${n}.onnx`,
      q,
    ]),
  );
  const dir = writeFolder(tmp(), { onnx: { ...variants, 'model.onnx': fp32 }, preprocessor: PREPROCESSOR });
  assert.equal(resolveModelFile(dir), join(dir, 'onnx', 'model.onnx'));
  const g = loadModel(dir);
  assert.equal(g.name, 'echo');
  assert.equal(g.metadata[QUANTIZED_KEY], undefined);
});

test("a model file given inside such a folder also takes the folder's preprocessing and labels", () => {
  const dir = writeFolder(tmp(), {
    onnx: { 'model.onnx': echoModel(3, 4, 4) },
    preprocessor: PREPROCESSOR,
    config: { id2label: { '0': 'x' } },
  });
  const g = loadModel(join(dir, 'onnx', 'model.onnx'));
  assert.equal(getPreprocess(g)?.width, 4);
  assert.deepEqual(getLabels(g), ['x']);
});

test('the HF cache layout names the repository: models--ORG--NAME/snapshots/REV', () => {
  assert.equal(
    repoOfCacheFolder('/home/u/.cache/huggingface/hub/models--Xenova--vit-base-patch16-224/snapshots/abc'),
    'Xenova/vit-base-patch16-224',
  );
  assert.equal(repoOfCacheFolder('/tmp/some/folder'), undefined);
});

/** Two classes of 8×8 images (reddish vs bluish, with noise), as an image folder written with sharp. */
async function writeImageFolder(root: string, perClass = 8): Promise<void> {
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (const [cls, base] of [
    ['red', [200, 40, 40]],
    ['blue', [40, 40, 200]],
  ] as const) {
    mkdirSync(join(root, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const raw = Buffer.alloc(10 * 10 * 3);
      for (let k = 0; k < raw.length; k++)
        raw[k] = Math.max(0, Math.min(255, base[k % 3]! + Math.round((rnd() - 0.5) * 80)));
      await sharp(raw, { raw: { width: 10, height: 10, channels: 3 } })
        .png()
        .toFile(join(root, cls, `${i}.png`));
    }
  }
}

const CNN_PREPROCESSOR = {
  image_processor_type: 'BitImageProcessor',
  do_resize: true,
  size: { shortest_edge: 8 },
  do_center_crop: true,
  crop_size: { height: 8, width: 8 },
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.485, 0.456, 0.406],
  image_std: [0.229, 0.224, 0.225],
};

test('graft train --mode features works on a Transformers.js-layout folder: preprocessing from the folder, classifier saved and usable', async () => {
  const root = tmp();
  const cnn = smallCnn({ channels: 3, size: 8, classes: 5, seed: 3 });
  const dir = writeFolder(join(root, 'model'), {
    onnx: { 'model.onnx': cnn, 'model_quantized.onnx': cnn },
    preprocessor: CNN_PREPROCESSOR,
    config: { id2label: { '0': 'a', '1': 'b', '2': 'c', '3': 'd', '4': 'e' } },
  });
  await writeImageFolder(join(root, 'data'));
  const out = join(root, 'clf');
  await graft(['train', '--mode', 'features', '--model', dir, '--data', join(root, 'data'), '--out', out, '--json']);
  const saved = loadModel(out);
  const pre = getPreprocess(saved)!;
  assert.deepEqual([pre.width, pre.height, pre.resize, pre.fit], [8, 8, 'center-crop', { shortestEdge: 8 }]);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), ['blue', 'red']);
  const { stdout } = await graft(['classify', out, join(root, 'data', 'red', '0.png'), '--json']);
  assert.equal(JSON.parse(stdout)[0].top[0].label, 'red');
});

test('a quantized-only folder loads for inference but is refused for training, naming the file to download', async () => {
  const root = tmp();
  const cnn = smallCnn({ channels: 3, size: 8, classes: 2, seed: 3 });
  const dir = writeFolder(join(root, 'hub', 'models--acme--tiny-cnn', 'snapshots', 'abc123'), {
    onnx: { 'model_quantized.onnx': cnn, 'model_fp16.onnx': cnn },
    preprocessor: CNN_PREPROCESSOR,
  });
  assert.equal(resolveModelFile(dir), join(dir, 'onnx', 'model_quantized.onnx'));
  const g = loadModel(dir);
  assert.ok(getPreprocess(g), "inference still gets the folder's preprocessing");
  await assert.rejects(
    compileTraining(g),
    (e: unknown) =>
      e instanceof GraftError &&
      /only quantized weights \(onnx\/model_quantized\.onnx\)/.test(e.message) &&
      /graft pull acme\/tiny-cnn --include onnx\/model\.onnx/.test(e.hint ?? ''),
  );
  await writeImageFolder(join(root, 'data'), 4);
  const r = await graftFails([
    'train',
    '--mode',
    'finetune',
    '--model',
    dir,
    '--data',
    join(root, 'data'),
    '--epochs',
    '1',
    '--out',
    join(root, 'out'),
  ]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /has only quantized weights \(onnx\/model_quantized\.onnx\): training needs the full-precision onnx\/model\.onnx/,
  );
  assert.match(r.stderr, /graft pull acme\/tiny-cnn --include onnx\/model\.onnx/);
});
