/** The source → shifted target pair: shifts do what they say, are seeded, and the pair is built as documented. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyShift, parseShift, fashionShiftPair, describeShift, shiftImages } from '../../src/data/shifts.js';
import { Rng } from '../../src/util/random.js';
import { GraftError } from '../../src/util/errors.js';
import { asset, needs } from '../helpers/assets.js';

const W = 6,
  H = 6;
const img = Uint8Array.from({ length: W * H }, (_, i) => (i * 37) % 256);

test('shifts: rotation by 90° moves pixels as a quarter turn, invert is an involution, blur keeps the mean, noise is seeded', () => {
  const r = applyShift(img, W, H, { kind: 'rotate', degrees: 90 }, new Rng(1));
  // a quarter turn maps the pixel at (x, y) to (W−1−y, x) for square images, up to rounding
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) assert.ok(Math.abs(r[x * W + (W - 1 - y)]! - img[y * W + x]!) <= 1, `(${x}, ${y})`);
  assert.deepEqual(
    applyShift(applyShift(img, W, H, { kind: 'invert' }, new Rng(1)), W, H, { kind: 'invert' }, new Rng(1)),
    img,
  );
  const b = applyShift(img, W, H, { kind: 'blur', sigma: 1 }, new Rng(1));
  const mean = (a: Uint8Array) => a.reduce((s, v) => s + v, 0) / a.length;
  assert.ok(Math.abs(mean(b) - mean(img)) < 8);
  assert.ok(b.some((v, i) => v !== img[i]));
  const n1 = applyShift(img, W, H, parseShift('noise:50'), new Rng(5)),
    n2 = applyShift(img, W, H, parseShift('noise:50'), new Rng(5));
  assert.deepEqual(n1, n2);
  assert.ok(n1.some((v, i) => v !== img[i]));
  assert.equal(describeShift(parseShift('rotate:30+blur:1.5')), 'rotate 30° + blur σ=1.5');
  assert.throws(() => parseShift('twist:3'), GraftError);
  assert.throws(() => parseShift('blur:0'), GraftError);
});

test('the Fashion-MNIST pair: stratified sizes, same test garments in both domains, target shifted, reproducible', {
  skip: needs('datasets/fashion-mnist'),
}, () => {
  asset('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');
  const p = fashionShiftPair({ sourcePerClass: 5, targetPerClass: 4, testPerClass: 3, seed: 2 });
  assert.equal(p.description, 'noise σ=80');
  assert.equal(p.source.train.x.length, 50);
  assert.equal(p.target.train.x.length, 40);
  assert.deepEqual(p.source.test.y, p.target.test.y);
  for (let c = 0; c < 10; c++) assert.equal(p.source.train.y.filter((y) => y === c).length, 5);
  const diff = p.source.test.x[0]!.reduce((s, v, i) => s + Math.abs(v - p.target.test.x[0]![i]!), 0) / 784;
  assert.ok(diff > 0.1, `target differs from source (mean |Δ| ${diff})`);
  assert.ok(p.source.test.x[0]!.every((v) => v >= 0 && v <= 1));
  const again = fashionShiftPair({ sourcePerClass: 5, targetPerClass: 4, testPerClass: 3, seed: 2 });
  assert.deepEqual(again.target.train.x[3], p.target.train.x[3]);
  const other = fashionShiftPair({
    shift: parseShift('rotate:90'),
    sourcePerClass: 5,
    targetPerClass: 4,
    testPerClass: 3,
    seed: 2,
  });
  assert.deepEqual(other.source.test.x[0], p.source.test.x[0]);
  assert.notDeepEqual(other.target.test.x[0], p.target.test.x[0]);
});

test('presets on 0–1 images: dim-noisy washes out and adds seeded noise, invert is exact; presets parse as wash/noise', () => {
  const xs = [
    Float32Array.from({ length: 16 }, (_, i) => i / 15),
    Float32Array.from({ length: 16 }, (_, i) => (i % 2 ? 1 : 0)),
  ];
  const a = shiftImages(xs, 'dim-noisy', 3),
    b = shiftImages(xs, 'dim-noisy', 3);
  assert.deepEqual(a, b);
  const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
  // contrast 0.5 and +0.3: the mean moves from m to about 0.5·m + 0.3, values stay in [0, 1]
  for (let k = 0; k < 2; k++) {
    assert.ok(Math.abs(mean(a[k]!) - (0.5 * mean(xs[k]!) + 0.3)) < 0.08, `mean ${mean(a[k]!)}`);
    assert.ok(a[k]!.every((v) => v >= 0 && v <= 1));
  }
  const on = a[1]!.filter((_, i) => i % 2 === 1),
    off = a[1]!.filter((_, i) => i % 2 === 0);
  assert.ok(Math.abs(mean(on) - mean(off) - 0.5) < 0.12, `contrast halved: ${mean(on) - mean(off)}`);
  assert.deepEqual(
    shiftImages(xs, 'invert').map((x) => Array.from(x, (v) => Math.round(v * 1e6))),
    xs.map((x) => Array.from(x, (v) => Math.round((1 - v) * 1e6))),
  );
  assert.deepEqual(parseShift('dim-noisy'), [{ kind: 'wash', contrast: 0.5, brightness: 76.5, std: 25.5 }]);
  assert.equal(describeShift(parseShift('noise')), 'noise σ=76.5');
  // the byte path and the 0–1 path agree on the same (noise-free) wash
  const u8 = applyShift(img, W, H, parseShift('wash:0.5:76.5:0'), new Rng(0));
  const f = shiftImages([Float32Array.from(img, (v) => v / 255)], parseShift('wash:0.5:76.5:0'))[0]!;
  for (let i = 0; i < u8.length; i++) assert.ok(Math.abs(u8[i]! - f[i]! * 255) <= 0.5 + 1e-3);
  assert.throws(() => parseShift('wash:0.5'), GraftError);
  assert.throws(() => shiftImages([new Float32Array(5)], 'noise'), GraftError);
});
