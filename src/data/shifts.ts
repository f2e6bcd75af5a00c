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
 *   a list  — several applied in order.
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
  | { kind: 'none' };

/** The shift the pair uses unless told otherwise (see docs/adaptation.md for why). */
export const DEFAULT_SHIFT: Shift[] = [{ kind: 'noise', std: 80 }];

export function describeShift(s: Shift | Shift[]): string {
  const list = Array.isArray(s) ? s : [s];
  if (!list.length) return 'none';
  return list.map((x) => {
    switch (x.kind) {
      case 'rotate': return `rotate ${x.degrees}°`;
      case 'invert': return 'invert';
      case 'blur': return `blur σ=${x.sigma}`;
      case 'noise': return `noise σ=${x.std}`;
      case 'none': return 'none';
    }
  }).join(' + ');
}

/** Parse `rotate:45`, `invert`, `blur:1.5`, `noise:60`, joined with `+`. */
export function parseShift(text: string): Shift[] {
  return text.split('+').map((part) => {
    const [kind, arg] = part.trim().split(':');
    const n = arg === undefined ? NaN : Number(arg);
    if (kind === 'invert') return { kind: 'invert' } as const;
    if (kind === 'none') return { kind: 'none' } as const;
    if (!Number.isFinite(n)) throw new GraftError(`shift '${part}': expected rotate:DEG, blur:SIGMA, noise:STD, invert or none`);
    if (kind === 'rotate') return { kind: 'rotate', degrees: n } as const;
    if (kind === 'blur' && n > 0) return { kind: 'blur', sigma: n } as const;
    if (kind === 'noise' && n >= 0) return { kind: 'noise', std: n } as const;
    throw new GraftError(`shift '${part}': unknown kind or bad value (rotate:DEG, blur:SIGMA>0, noise:STD≥0, invert, none)`);
  });
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

function rotate(img: Uint8Array, w: number, h: number, degrees: number): Uint8Array {
  const out = new Uint8Array(w * h);
  const a = (degrees * Math.PI) / 180, c = Math.cos(a), s = Math.sin(a);
  const cx = (w - 1) / 2, cy = (h - 1) / 2;
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= w || y >= h ? 0 : img[y * w + x]!);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      // inverse map: the source pixel that lands at (x, y)
      const dx = x - cx, dy = y - cy;
      const sx = c * dx + s * dy + cx, sy = -s * dx + c * dy + cy;
      const x0 = Math.floor(sx), y0 = Math.floor(sy), fx = sx - x0, fy = sy - y0;
      const v = (1 - fx) * (1 - fy) * at(x0, y0) + fx * (1 - fy) * at(x0 + 1, y0) + (1 - fx) * fy * at(x0, y0 + 1) + fx * fy * at(x0 + 1, y0 + 1);
      out[y * w + x] = clampByte(v);
    }
  return out;
}

function blur(img: Uint8Array, w: number, h: number, sigma: number): Uint8Array {
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
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r]! * tmp[Math.min(h - 1, Math.max(0, y + i)) * w + x]!;
      out[y * w + x] = clampByte(v / sum);
    }
  return out;
}

/** One image (row-major h × w uint8) with the shifts applied in order; `rng` feeds the noise. */
export function applyShift(img: Uint8Array, w: number, h: number, shift: Shift | Shift[], rng: Rng): Uint8Array {
  let cur = img;
  for (const s of Array.isArray(shift) ? shift : [shift]) {
    if (s.kind === 'none') cur = Uint8Array.from(cur);
    else if (s.kind === 'invert') cur = cur.map((v) => 255 - v);
    else if (s.kind === 'rotate') cur = rotate(cur, w, h, s.degrees);
    else if (s.kind === 'blur') cur = blur(cur, w, h, s.sigma);
    else cur = cur.map((v) => clampByte(v + s.std * rng.normal()));
  }
  return cur;
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

export const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

const cached = new Map<string, IdxDataset>();
function fashion(dir: string | undefined, part: 'train' | 't10k'): IdxDataset {
  const base = dir ?? requireAsset('datasets/fashion-mnist');
  const key = `${base}|${part}`;
  let d = cached.get(key);
  if (!d) cached.set(key, (d = readIdxDataset(join(base, `${part}-images-idx3-ubyte.gz`), join(base, `${part}-labels-idx1-ubyte.gz`))));
  return d;
}

function pick(labels: number[], perClass: number, rng: Rng, allowed: (i: number) => boolean): number[] {
  const out: number[] = [];
  for (const [c, idx] of shuffledByClass(labels, rng)) {
    const ok = idx.filter(allowed);
    if (ok.length < perClass) throw new GraftError(`Fashion-MNIST class ${c} has only ${ok.length} images for ${perClass} per class`);
    out.push(...ok.slice(0, perClass));
  }
  return rng.shuffle(out);
}

/** The Fashion-MNIST source → shifted target pair described in the header. */
export function fashionShiftPair(o: ShiftPairOptions = {}): DomainPair {
  const shift = o.shift ?? DEFAULT_SHIFT;
  const seed = o.seed ?? 0;
  const train = fashion(o.dir, 'train'), test = fashion(o.dir, 't10k');
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
    shift, description: describeShift(shift), classes: FASHION_CLASSES, exampleDims: [1, 28, 28],
  };
}
