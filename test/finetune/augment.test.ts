/** Augmentation: seeded (same image, seed and view → same pixels; other views differ), crops in bounds, flips mirror, jitter stays in range. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { augmentedPixels, viewRng, cropBox, colourJitter, viewsToTensor, augmentKey } from '../../src/data/augment.js';
import { greyToBmp } from '../../src/data/labelled-images.js';
import { loadPixels } from '../../src/data/image.js';
import type { ImagePreprocess } from '../../src/formats/preprocess.js';
import { Rng } from '../../src/util/random.js';

const PRE: ImagePreprocess = {
  layout: 'NCHW',
  width: 16,
  height: 16,
  channels: 3,
  channelOrder: 'RGB',
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  resize: 'stretch',
  source: 'flag',
};

/** A 12×12 grey image, bright on the left third only: flips are visible. */
function leftBright(): Uint8Array {
  const px = new Uint8Array(144);
  for (let y = 0; y < 12; y++) for (let x = 0; x < 4; x++) px[y * 12 + x] = 250;
  return greyToBmp(px, 12, 12);
}

test('crop boxes stay inside the image and cover the requested area range', () => {
  const rng = new Rng(1);
  for (let i = 0; i < 200; i++) {
    const b = cropBox(28, 20, [0.3, 1], [3 / 4, 4 / 3], rng);
    assert.ok(b.left >= 0 && b.top >= 0 && b.left + b.width <= 28 && b.top + b.height <= 20, JSON.stringify(b));
    assert.ok(b.width * b.height >= 0.2 * 560 && b.width * b.height <= 560, JSON.stringify(b));
  }
});

test('views are seeded by (seed, view, image) and differ between views', async () => {
  const img = leftBright();
  const a = await augmentedPixels(img, PRE, {}, viewRng(img, 5, 1));
  const b = await augmentedPixels(img, PRE, {}, viewRng(img, 5, 1));
  assert.deepEqual(a.data, b.data);
  const others = await Promise.all([2, 3, 4, 5].map((v) => augmentedPixels(img, PRE, {}, viewRng(img, 5, v))));
  assert.ok(
    others.some((o) => o.data.some((v, i) => v !== a.data[i])),
    'every view is the same',
  );
  assert.equal(a.width, 16);
  assert.equal(a.channels, 3);
  // view 0 is the plain image through the model's own preprocessing
  const t = await viewsToTensor([img, img], [0, 1], PRE, {}, 5);
  const plain = await loadPixels(img, PRE);
  assert.ok(Math.abs((t.data as Float32Array)[0]! - (plain.data[0]! / 255 - 0.5) / 0.5) < 1e-6);
  assert.notEqual(augmentKey({ flip: false }), augmentKey({}));
});

test('flip only: the bright side moves to the right in about half of the views', async () => {
  const img = leftBright();
  let flipped = 0;
  for (let v = 1; v <= 40; v++) {
    const p = await augmentedPixels(img, PRE, { crop: false, jitter: false }, viewRng(img, 0, v));
    const left = p.data[(8 * 16 + 1) * 3]!,
      right = p.data[(8 * 16 + 14) * 3]!;
    assert.ok(Math.abs(left - right) > 150, `${left} vs ${right}`);
    if (right > left) flipped++;
  }
  assert.ok(flipped > 8 && flipped < 32, `${flipped}/40 flipped`);
});

test('colour jitter: factors of 1 change nothing; brightness scales; values stay in 0–255', () => {
  const data = Uint8Array.from({ length: 4 * 3 }, (_, i) => (i * 37) % 256);
  const img = { data: Uint8Array.from(data), width: 2, height: 2, channels: 3 };
  colourJitter(img, { brightness: 1, contrast: 1, saturation: 1 });
  assert.deepEqual(img.data, data);
  colourJitter(img, { brightness: 0.5, contrast: 1, saturation: 1 });
  img.data.forEach((v, i) => assert.ok(Math.abs(v - data[i]! * 0.5) <= 0.5 + 1e-9, `${v} vs ${data[i]}`));
  const bright = { data: Uint8Array.from(data), width: 2, height: 2, channels: 3 };
  colourJitter(bright, { brightness: 3, contrast: 1.5, saturation: 1.5 });
  assert.ok(bright.data.every((v) => v >= 0 && v <= 255));
});
