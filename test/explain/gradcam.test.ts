/**
 * Grad-CAM on a real image model (the Coral MobileNet v2 TFLite) and real photos: the gradient the
 * autodiff writes equals finite differences of the class score with respect to the cut activations
 * (at the default layer and at an earlier one, through a ReLU6), the map is a real map that depends
 * on the class, a cat pasted into one half of a grey canvas puts the map's mass on that half, and
 * `graft explain` writes PNG overlays that decode.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath, lazy, needs } from '../helpers/assets.js';
import { graft } from '../helpers/cli.js';
import { GradCam, gradCam, explainImages } from '../../src/explain/gradcam.js';
import { scoreValue } from '../../src/explain/target.js';
import { resizeBilinear } from '../../src/explain/overlay.js';
import { loadPixels, normalize } from '../../src/data/image.js';
import { Session } from '../../src/runtime/session.js';
import { readIdxDataset } from '../../src/data/idx.js';
import { loadLabelledImages } from '../../src/data/labelled-images.js';
import { trainFeatureClassifier } from '../../src/features/classifier.js';
import { classifyImages } from '../../src/eval/classify.js';
import { loadModel } from '../../src/formats/load.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { Rng } from '../../src/util/random.js';

const MODEL = 'models/coral/mobilenet_v2_1.0_224_quant.tflite';
const SMALL = 'models/coral/mobilenet_v1_0.25_128_quant.tflite';
const CAT = 'models/coral/cat.bmp';
const HOT_DOG = 'models/coral/hot_dog.jpg';
const skip = needs(MODEL, CAT, HOT_DOG);
const EGYPTIAN_CAT = 286;
let made = false;
const cam = lazy(() => {
  made = true;
  return GradCam.create(assetPath(MODEL));
});

async function input(c: GradCam, image: string | Uint8Array): Promise<Tensor> {
  const p = c.preprocess;
  return { dtype: 'float32', dims: [1, p.channels, p.height, p.width], data: normalize(await loadPixels(image, p), p) };
}

/**
 * Compare ∂score/∂A from the gradient graph with central differences of the model's head (the graph
 * after A) on the largest-gradient elements and a few random ones; the error is relative to max|∂A|,
 * the best over steps 1, 0.1 and 0.01 (float32 rounding at small steps, ReLU6 kinks at large ones).
 */
async function finiteDifferenceError(c: GradCam, image: string): Promise<number> {
  const t = await c.tensors(await input(c, image));
  const score = scoreValue(c.model).score;
  const head = c.model.cutAfter([c.layer], [{ name: c.layer, dtype: 'float32', shape: t.activations.dims }]);
  head.outputs = [{ name: score }];
  head.prune();
  const s = await Session.fromGraph(head);
  const A = t.activations.data as Float32Array,
    G = t.gradient.data as Float32Array;
  const f = async (a: Float32Array) =>
    (await s.run({ [c.layer]: { ...t.activations, data: a } }))[score]!.data[t.classIndex] as number;
  assert.ok(Math.abs((await f(A)) - t.scores[t.classIndex]!) < 1e-4, 'the head alone gives the same score');
  const order = [...G.keys()].sort((i, j) => Math.abs(G[j]!) - Math.abs(G[i]!));
  const gmax = Math.abs(G[order[0]!]!);
  assert.ok(gmax > 0);
  const rng = new Rng(3);
  let worst = 0;
  for (const i of [...order.slice(0, 4), ...Array.from({ length: 4 }, () => rng.int(A.length))]) {
    let best = Infinity;
    for (const h of [1, 0.1, 0.01]) {
      const ap = A.slice(),
        am = A.slice();
      ap[i]! += h;
      am[i]! -= h;
      const fd = ((await f(ap)) - (await f(am))) / (2 * h);
      best = Math.min(best, Math.abs(fd - G[i]!) / gmax);
    }
    worst = Math.max(worst, best);
  }
  await s.release();
  return worst;
}

test('gradCam: channel weights are the spatial mean of the gradient; ReLU, then divided by the maximum', () => {
  // two channels on a 1×3 map: w = mean(G) = [1, −0.5]; Σ w·A = [1−0.5·2, 2−0.5·0, 3−0.5·8] = [0, 2, −1] → ReLU → [0, 1, 0]
  const A: Tensor = { dtype: 'float32', dims: [1, 2, 1, 3], data: Float32Array.from([1, 2, 3, 2, 0, 8]) };
  const G: Tensor = { dtype: 'float32', dims: [1, 2, 1, 3], data: Float32Array.from([3, 0, 0, -1, -0.5, 0]) };
  const { cam: m, max } = gradCam(A, G);
  assert.equal(max, 2);
  assert.deepEqual(Array.from(m.data), [0, 1, 0]);
  assert.deepEqual([m.width, m.height], [3, 1]);
  // bilinear upsampling keeps constant maps constant and the range of the map
  const up = resizeBilinear({ data: Float32Array.from([0, 1, 0, 1]), width: 2, height: 2 }, 7, 5);
  assert.equal(up.data.length, 35);
  assert.ok(Math.min(...up.data) >= 0 && Math.max(...up.data) <= 1);
  assert.ok(
    resizeBilinear({ data: Float32Array.from([0.5, 0.5]), width: 2, height: 1 }, 9, 9).data.every((v) => v === 0.5),
  );
});

test('the Grad-CAM gradient equals finite differences of the class score w.r.t. the cut activations', {
  skip,
}, async () => {
  const c = await cam();
  assert.equal(c.layer, 'MobilenetV2/Conv_1/Relu6', 'the last convolution, its ReLU6 included');
  const e1 = await finiteDifferenceError(c, assetPath(CAT));
  assert.ok(e1 < 1e-3, `default layer: worst relative error ${e1}`);
  // an earlier layer: the score reaches it through Conv_1 and its ReLU6 (a nonlinear head)
  const early = await GradCam.create(c.model, { layer: 'MobilenetV2/expanded_conv_16/project/add_fold_1' });
  try {
    const e2 = await finiteDifferenceError(early, assetPath(CAT));
    assert.ok(e2 < 2e-2, `earlier layer: worst relative error ${e2}`);
  } finally {
    await early.release();
  }
  await assert.rejects(GradCam.create(c.model, { layer: 'no/such/value' }), /no value named 'no\/such\/value'/);
  await assert.rejects(
    GradCam.create(c.model, { layer: 'MobilenetV2/Logits/Squeeze1' }),
    /needs \[N, C, H, W\] activations/,
  );
});

test("the heatmap is a real map, and the top class's map differs from another class's", { skip }, async () => {
  const c = await cam();
  const catE = await c.explain(assetPath(CAT), { overlay: false });
  assert.equal(catE.class.index, EGYPTIAN_CAT);
  assert.equal(catE.class.label, 'Egyptian cat');
  assert.deepEqual([catE.cam.width, catE.cam.height, catE.heatmap.width, catE.heatmap.height], [7, 7, 224, 224]);
  const stats = (d: Float32Array) => {
    const mean = d.reduce((a, v) => a + v, 0) / d.length;
    return {
      min: Math.min(...d),
      max: Math.max(...d),
      std: Math.sqrt(d.reduce((a, v) => a + (v - mean) ** 2, 0) / d.length),
    };
  };
  const s = stats(catE.cam.data);
  assert.equal(s.max, 1);
  assert.ok(s.min >= 0 && s.min < 0.1, `min ${s.min}`);
  assert.ok(s.std > 0.1, `std ${s.std}: not a flat map`);
  const dog = await c.explain(assetPath(HOT_DOG), { overlay: false });
  assert.equal(dog.class.label, 'hotdog, hot dog, red hot');
  const dogAsCat = await c.explain(assetPath(HOT_DOG), { overlay: false, class: 'Egyptian cat' });
  assert.equal(dogAsCat.class.index, EGYPTIAN_CAT);
  assert.ok(dogAsCat.class.probability < dog.class.probability);
  let diff = 0;
  for (let i = 0; i < 49; i++) diff += Math.abs(dog.cam.data[i]! - dogAsCat.cam.data[i]!);
  assert.ok(diff / 49 > 0.1, `mean |difference| between the two classes' maps: ${diff / 49}`);
  // a class given by index is the same explanation as by name
  const byIndex = await c.explain(assetPath(HOT_DOG), { overlay: false, class: EGYPTIAN_CAT });
  assert.deepEqual(Array.from(byIndex.cam.data), Array.from(dogAsCat.cam.data));
  await assert.rejects(c.explain(assetPath(HOT_DOG), { class: 'no such class' }), /no class named 'no such class'/);
  await assert.rejects(c.explain(assetPath(HOT_DOG), { class: 5000 }), /out of range: the model has 1001 classes/);
});

test("a cat pasted into one half of a grey canvas: most of the cat map's mass lies in that half", {
  skip,
}, async () => {
  const c = await cam();
  const p = await loadPixels(assetPath(CAT), { width: 112, height: 112, channels: 3, resize: 'stretch' });
  const cat = await sharp(p.data, { raw: { width: 112, height: 112, channels: 3 } })
    .png()
    .toBuffer();
  const fracLeft: number[] = [];
  for (const left of [0, 112]) {
    const canvas = await sharp({
      create: { width: 224, height: 224, channels: 3, background: { r: 128, g: 128, b: 128 } },
    })
      .composite([{ input: cat, left, top: 56 }])
      .png()
      .toBuffer();
    const e = await c.explain(canvas, { overlay: false, class: EGYPTIAN_CAT });
    let l = 0,
      all = 0;
    for (let y = 0; y < 224; y++)
      for (let x = 0; x < 224; x++) {
        const v = e.heatmap.data[y * 224 + x]!;
        all += v;
        if (x < 112) l += v;
      }
    fracLeft.push(l / all);
  }
  assert.ok(fracLeft[0]! > 0.7, `cat on the left: ${(100 * fracLeft[0]!).toFixed(1)} % of the mass on the left`);
  assert.ok(fracLeft[1]! < 0.3, `cat on the right: ${(100 * fracLeft[1]!).toFixed(1)} % of the mass on the left`);
});

test('explainImages (bytes in, another model): a PNG overlay at the size of the original image', {
  skip: needs(SMALL, HOT_DOG),
}, async () => {
  const [e] = await explainImages(assetPath(SMALL), [readFileSync(assetPath(HOT_DOG))]);
  assert.equal(e!.image, 'image 1');
  assert.deepEqual([e!.cam.width, e!.cam.height, e!.heatmap.width], [4, 4, 128]);
  const meta = await sharp(e!.overlay!).metadata();
  const orig = await sharp(assetPath(HOT_DOG)).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', orig.width, orig.height]);
});

test('a saved classifier folder (frozen features + logistic head): the map explains its classes, with its probabilities', {
  skip: needs(SMALL, 'datasets/fashion-mnist'),
}, async () => {
  // 3 Fashion-MNIST classes × 8 test images as PNG files in class folders
  const root = mkdtempSync(join(tmpdir(), 'graft-explain-fm-'));
  const d = readIdxDataset(
    assetPath('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'),
    assetPath('datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'),
  );
  const names: Record<number, string> = { 0: 'tshirt', 1: 'trouser', 7: 'sneaker' };
  const count: Record<number, number> = {};
  const files: string[] = [];
  for (let i = 0; i < d.labels.length && files.length < 24; i++) {
    const name = names[d.labels[i]!];
    if (!name || (count[d.labels[i]!] ?? 0) >= 8) continue;
    count[d.labels[i]!] = (count[d.labels[i]!] ?? 0) + 1;
    mkdirSync(join(root, name), { recursive: true });
    files.push(join(root, name, `${i}.png`));
    await sharp(Buffer.from(d.images[i]!), { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toFile(files[files.length - 1]!);
  }
  const out = join(root, 'clf');
  await trainFeatureClassifier(assetPath(SMALL), await loadLabelledImages(root), { out, labelsPerClass: 5 });
  const picks = [files[0]!, files[10]!, files[20]!];
  const ex = await explainImages(out, picks, { overlay: false });
  const cls = await classifyImages(loadModel(out), picks, { top: 3 });
  for (const [k, e] of ex.entries()) {
    assert.equal(e.layer, 'MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6');
    assert.ok(['sneaker', 'trouser', 'tshirt'].includes(e.class.label!), e.class.label);
    assert.equal(e.class.label, cls[k]!.top[0]!.label);
    assert.ok(Math.abs(e.class.probability - cls[k]!.top[0]!.probability) < 1e-5);
    assert.ok(e.camMax > 0 && Math.max(...e.cam.data) === 1);
  }
});

test('graft explain writes one overlay per image that decodes, and --json describes them', { skip }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'graft-explain-'));
  const { stdout } = await graft([
    'explain',
    assetPath(MODEL),
    assetPath(CAT),
    assetPath(HOT_DOG),
    '--out',
    out,
    '--json',
  ]);
  const r = JSON.parse(stdout) as {
    layer: string;
    images: { image: string; overlay: string; class: { label: string } }[];
  };
  assert.equal(r.layer, 'MobilenetV2/Conv_1/Relu6');
  assert.deepEqual(
    r.images.map((i) => i.class.label),
    ['Egyptian cat', 'hotdog, hot dog, red hot'],
  );
  assert.deepEqual(readdirSync(out).sort(), ['cat.gradcam.png', 'hot_dog.gradcam.png']);
  for (const i of r.images) {
    const { data, info } = await sharp(i.overlay).raw().toBuffer({ resolveWithObject: true });
    assert.ok(info.width > 100 && info.height > 100 && data.length === info.width * info.height * info.channels);
  }
});

test.after(async () => {
  if (made) await (await cam()).release();
});
