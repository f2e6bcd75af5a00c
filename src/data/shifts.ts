/**
 * Labelled source → shifted target pairs for domain adaptation, built from Fashion-MNIST (IDX, under
 * the assets folder), in the spirit of the rotated-MNIST benchmarks: the task (10 clothing classes)
 * stays, the images change by a documented, seeded transformation.
 *
 * Shifts (all on 28×28 grey uint8 images):
 *   rotate  — rotation by a fixed angle about the centre (bilinear, black fill);
 *   invert  — 255 − pixel (white garments on black become black on white);
 *   blur    — Gaussian blur of standard deviation `sigma` pixels (separable, edges clamped);
 *   noise   — additive Gaussian noise of standard deviation `std` (0–255 units), clipped, seeded;
 *   wash    — washed out and noisy: contrast × `contrast`, plus `brightness`, plus Gaussian noise of
 *             standard deviation `std` (both 0–255 units), clipped, seeded;
 *   a list  — several applied in order.
 *
 * Named presets (PIXEL_SHIFTS, used by `graft adapt --shift-target`, bench/adapt.ts and the
 * adaptation experiments; shiftImages applies them to images scaled 0–1):
 *   dim-noisy — wash:0.5:76.5:25.5 (contrast halved, brightness +0.3, noise σ 0.1 of full scale);
 *   invert    — invert;
 *   noise     — noise:76.5 (σ 0.3 of full scale).
 *
 * The pair: source train images come from the first half of the 60k training file, target train
 * images from the second half (different garments, shifted; their labels exist but adaptation uses
 * them only for the target-supervised upper bound), and both test sets are the same fixed subset of
 * the 10k test file, unshifted (source) and shifted (target). Every pick is stratified and seeded.
 */
import { join } from 'node:path';
import { readIdxDataset, type IdxDataset } from './idx.js';
import { requireAsset } from './assets.js';
import { shuffledByClass } from './splits.js';
import type { Examples } from '../train/fit.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export type Shift =
  | { kind: 'rotate'; degrees: number }
  | { kind: 'invert' }
  | { kind: 'blur'; sigma: number }
  | { kind: 'noise'; std: number }
  | { kind: 'wash'; contrast: number; brightness: number; std: number }
  | { kind: 'none' };

/** Named shifts of the adaptation experiments (see the header). */
export type PixelShift = 'dim-noisy' | 'invert' | 'noise';
export const PIXEL_SHIFTS: readonly PixelShift[] = ['dim-noisy', 'invert', 'noise'];
const PRESETS: Record<PixelShift, Shift[]> = {
  'dim-noisy': [{ kind: 'wash', contrast: 0.5, brightness: 76.5, std: 25.5 }],
  invert: [{ kind: 'invert' }],
  noise: [{ kind: 'noise', std: 76.5 }],
};

/** The shift the pair uses unless told otherwise (see docs/adaptation.md for why). */
export const DEFAULT_SHIFT: Shift[] = [{ kind: 'noise', std: 80 }];

export function describeShift(s: Shift | Shift[]): string {
  const list = Array.isArray(s) ? s : [s];
  if (!list.length) return 'none';
  return list
    .map((x) => {
      switch (x.kind) {
        case 'rotate':
          return `rotate ${x.degrees}°`;
        case 'invert':
          return 'invert';
        case 'blur':
          return `blur σ=${x.sigma}`;
        case 'noise':
          return `noise σ=${x.std}`;
        case 'wash':
          return `wash ×${x.contrast} +${x.brightness} σ=${x.std}`;
        case 'none':
          return 'none';
      }
    })
    .join(' + ');
}

/** Parse `rotate:45`, `invert`, `blur:1.5`, `noise:60`, `wash:0.5:76.5:25.5` or a preset name, joined with `+`. */
export function parseShift(text: string): Shift[] {
  return text.split('+').flatMap((part): Shift[] => {
    const name = part.trim();
    if ((PIXEL_SHIFTS as readonly string[]).includes(name)) return PRESETS[name as PixelShift];
    const [kind, arg, a2, a3] = name.split(':');
    if (kind === 'wash') {
      const [c, br, sd] = [arg, a2, a3].map(Number);
      if (![c, br, sd].every((v) => Number.isFinite(v)) || c! < 0 || sd! < 0)
        throw new GraftError(
          `shift '${part}': expected wash:CONTRAST:BRIGHTNESS:STD (contrast ≥ 0, brightness and std in 0–255 units)`,
        );
      return [{ kind: 'wash', contrast: c!, brightness: br!, std: sd! }];
    }
    const n = arg === undefined ? NaN : Number(arg);
    if (kind === 'invert') return [{ kind: 'invert' }];
    if (kind === 'none') return [{ kind: 'none' }];
    if (!Number.isFinite(n))
      throw new GraftError(
        `shift '${part}': expected rotate:DEG, blur:SIGMA, noise:STD, wash:C:B:STD, invert, none or ${PIXEL_SHIFTS.join(', ')}`,
      );
    if (kind === 'rotate') return [{ kind: 'rotate', degrees: n }];
    if (kind === 'blur' && n > 0) return [{ kind: 'blur', sigma: n }];
    if (kind === 'noise' && n >= 0) return [{ kind: 'noise', std: n }];
    throw new GraftError(
      `shift '${part}': unknown kind or bad value (rotate:DEG, blur:SIGMA>0, noise:STD≥0, wash:C:B:STD, invert, none, ${PIXEL_SHIFTS.join(', ')})`,
    );
  });
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Pixel storage of one scale: bytes 0–255 (rounded) or floats 0–1 (`full` is the top value). */
interface Scale<A extends Uint8Array | Float32Array> {
  full: number;
  make(n: number): A;
  fix(v: number): number;
}
const BYTES: Scale<Uint8Array> = { full: 255, make: (n) => new Uint8Array(n), fix: clampByte };
const UNIT: Scale<Float32Array> = {
  full: 1,
  make: (n) => new Float32Array(n),
  fix: (v) => (v < 0 ? 0 : v > 1 ? 1 : v),
};

function rotate<A extends Uint8Array | Float32Array>(img: A, w: number, h: number, degrees: number, sc: Scale<A>): A {
  const clampByte = sc.fix;
  const out = sc.make(w * h);
  const a = (degrees * Math.PI) / 180,
    c = Math.cos(a),
    s = Math.sin(a);
  const cx = (w - 1) / 2,
    cy = (h - 1) / 2;
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= w || y >= h ? 0 : img[y * w + x]!);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      // inverse map: the source pixel that lands at (x, y)
      const dx = x - cx,
        dy = y - cy;
      const sx = c * dx + s * dy + cx,
        sy = -s * dx + c * dy + cy;
      const x0 = Math.floor(sx),
        y0 = Math.floor(sy),
        fx = sx - x0,
        fy = sy - y0;
      const v =
        (1 - fx) * (1 - fy) * at(x0, y0) +
        fx * (1 - fy) * at(x0 + 1, y0) +
        (1 - fx) * fy * at(x0, y0 + 1) +
        fx * fy * at(x0 + 1, y0 + 1);
      out[y * w + x] = clampByte(v);
    }
  return out;
}

function blur<A extends Uint8Array | Float32Array>(img: A, w: number, h: number, sigma: number, sc: Scale<A>): A {
  const clampByte = sc.fix;
  const r = Math.max(1, Math.ceil(3 * sigma));
  const k = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((p, q) => p + q, 0);
  const tmp = new Float32Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r]! * img[y * w + Math.min(w - 1, Math.max(0, x + i))]!;
      tmp[y * w + x] = v / sum;
    }
  const out = sc.make(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r]! * tmp[Math.min(h - 1, Math.max(0, y + i)) * w + x]!;
      out[y * w + x] = clampByte(v / sum);
    }
  return out;
}

function applyScaled<A extends Uint8Array | Float32Array>(
  img: A,
  w: number,
  h: number,
  shift: Shift | Shift[],
  rng: Rng,
  sc: Scale<A>,
): A {
  let cur = img;
  const u = sc.full / 255; // 0–255 parameters in this scale
  for (const s of Array.isArray(shift) ? shift : [shift]) {
    if (s.kind === 'none') cur = cur.slice() as A;
    else if (s.kind === 'invert') cur = cur.map((v) => sc.full - v) as A;
    else if (s.kind === 'rotate') cur = rotate(cur, w, h, s.degrees, sc);
    else if (s.kind === 'blur') cur = blur(cur, w, h, s.sigma, sc);
    else if (s.kind === 'wash')
      cur = cur.map((v) => sc.fix(s.contrast * v + s.brightness * u + s.std * u * rng.normal())) as A;
    else cur = cur.map((v) => sc.fix(v + s.std * u * rng.normal())) as A;
  }
  return cur;
}

/** One image (row-major h × w uint8) with the shifts applied in order; `rng` feeds the noise. */
export function applyShift(img: Uint8Array, w: number, h: number, shift: Shift | Shift[], rng: Rng): Uint8Array {
  return applyScaled(img, w, h, shift, rng, BYTES);
}

/**
 * Square grey images with values 0–1 (each w·w floats), shifted by a preset name or a Shift list,
 * seeded (one Rng over all images, in order); results stay in 0–1 (not rounded).
 */
export function shiftImages(xs: Float32Array[], shift: PixelShift | Shift | Shift[], seed = 0): Float32Array[] {
  const list = typeof shift === 'string' ? PRESETS[shift] : shift;
  if (!list)
    throw new GraftError(
      `unknown shift '${shift as string}' (known: ${PIXEL_SHIFTS.join(', ')}, or parseShift's syntax)`,
    );
  const rng = new Rng(seed);
  return xs.map((x) => {
    const w = Math.round(Math.sqrt(x.length));
    if (w * w !== x.length) throw new GraftError(`shiftImages: images must be square, got ${x.length} pixels`);
    return applyScaled(x, w, w, list, rng, UNIT);
  });
}

export interface ShiftPairOptions {
  shift?: Shift[];
  /** Labelled source training images per class (default 200). */
  sourcePerClass?: number;
  /** Target training images per class (default 200); unlabelled for adaptation. */
  targetPerClass?: number;
  /** Test images per class, the same garments in both domains (default 100). */
  testPerClass?: number;
  seed?: number;
  /** Fashion-MNIST folder (default: datasets/fashion-mnist under the assets folder). */
  dir?: string;
}

export interface DomainPair {
  /** Examples are [1, 28, 28] pixels scaled to 0–1. */
  source: { train: Examples; test: Examples };
  target: { train: Examples; test: Examples };
  shift: Shift[];
  description: string;
  classes: string[];
  exampleDims: [1, 28, 28];
}

export const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

const cached = new Map<string, IdxDataset>();
function fashion(dir: string | undefined, part: 'train' | 't10k'): IdxDataset {
  const base = dir ?? requireAsset('datasets/fashion-mnist');
  const key = `${base}|${part}`;
  let d = cached.get(key);
  if (!d)
    cached.set(
      key,
      (d = readIdxDataset(join(base, `${part}-images-idx3-ubyte.gz`), join(base, `${part}-labels-idx1-ubyte.gz`))),
    );
  return d;
}

function pick(labels: number[], perClass: number, rng: Rng, allowed: (i: number) => boolean): number[] {
  const out: number[] = [];
  for (const [c, idx] of shuffledByClass(labels, rng)) {
    const ok = idx.filter(allowed);
    if (ok.length < perClass)
      throw new GraftError(`Fashion-MNIST class ${c} has only ${ok.length} images for ${perClass} per class`);
    out.push(...ok.slice(0, perClass));
  }
  return rng.shuffle(out);
}

/** The Fashion-MNIST source → shifted target pair described in the header. */
export function fashionShiftPair(o: ShiftPairOptions = {}): DomainPair {
  const shift = o.shift ?? DEFAULT_SHIFT;
  const seed = o.seed ?? 0;
  const train = fashion(o.dir, 'train'),
    test = fashion(o.dir, 't10k');
  const half = Math.floor(train.images.length / 2);
  const rng = new Rng(seed);
  const noise = new Rng(seed + 1000003);
  const src = pick(train.labels, o.sourcePerClass ?? 200, rng, (i) => i < half);
  const tgt = pick(train.labels, o.targetPerClass ?? 200, rng, (i) => i >= half);
  const te = pick(test.labels, o.testPerClass ?? 100, rng, () => true);
  const [h, w] = train.shape as [number, number];
  const toX = (px: Uint8Array) => Float32Array.from(px, (v) => v / 255);
  const make = (d: IdxDataset, idx: number[], shifted: boolean): Examples => ({
    x: idx.map((i) => toX(shifted ? applyShift(d.images[i]!, w, h, shift, noise) : d.images[i]!)),
    y: idx.map((i) => d.labels[i]!),
  });
  return {
    source: { train: make(train, src, false), test: make(test, te, false) },
    target: { train: make(train, tgt, true), test: make(test, te, true) },
    shift,
    description: describeShift(shift),
    classes: FASHION_CLASSES,
    exampleDims: [1, 28, 28],
  };
}
