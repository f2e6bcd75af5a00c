/**
 * Image augmentation for fine-tuning, on decoded pixels before the model's normalization: random
 * resized crop (sharp extract + resize), horizontal flip and colour jitter (brightness, contrast,
 * saturation, as typed-array ops). Every random choice comes from an Rng seeded by (seed, view,
 * image content), so the same image gets the same view whatever order it is processed in, and a
 * cache of precomputed views can be keyed by `augmentKey(options)` and the view index.
 */
import { readFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import type { ImagePreprocess } from '../formats/preprocess.js';
import type { Tensor } from '../graph/tensor.js';
import { decodeBmp, loadPixels, normalize, type RawImage } from './image.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export interface AugmentOptions {
  /** Random resized crop: area fraction and aspect-ratio ranges (false: no crop). Default scale [0.6, 1], ratio [3/4, 4/3]. */
  crop?: { scale: [number, number]; ratio: [number, number] } | false;
  /** Horizontal flip with probability 1/2 (default true). */
  flip?: boolean;
  /** Colour jitter strengths: each factor is drawn from [1 − s, 1 + s] (default 0.2 each; false: none). */
  jitter?: { brightness: number; contrast: number; saturation: number } | false;
}

export const DEFAULT_AUGMENT: Required<AugmentOptions> = {
  crop: { scale: [0.6, 1], ratio: [3 / 4, 4 / 3] },
  flip: true,
  jitter: { brightness: 0.2, contrast: 0.2, saturation: 0.2 },
};

/** The settings with defaults filled in. */
export function resolveAugment(o: AugmentOptions = {}): Required<AugmentOptions> {
  return {
    crop: o.crop ?? DEFAULT_AUGMENT.crop,
    flip: o.flip ?? DEFAULT_AUGMENT.flip,
    jitter: o.jitter ?? DEFAULT_AUGMENT.jitter,
  };
}

/** A stable string of the settings (part of an activation cache key). */
export function augmentKey(o: AugmentOptions = {}): string {
  return JSON.stringify(resolveAugment(o));
}

function bytesOf(input: string | Uint8Array): Uint8Array {
  if (typeof input !== 'string') return input;
  if (!existsSync(input)) throw new GraftError(`image not found: ${input}`);
  return readFileSync(input);
}

/** The Rng of one view of one image: seeded by the seed, the view index and the image's bytes. */
export function viewRng(input: string | Uint8Array, seed: number, view: number): Rng {
  const h = createHash('sha256').update(`${seed}:${view}:`).update(bytesOf(input)).digest();
  return new Rng(h.readUInt32LE(0) ^ h.readUInt32LE(4));
}

/** Crop box of a random resized crop (torchvision's rule: 10 tries, then the central crop). */
export function cropBox(
  w: number,
  h: number,
  scale: [number, number],
  ratio: [number, number],
  rng: Rng,
): { left: number; top: number; width: number; height: number } {
  const area = w * h;
  const [lr0, lr1] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let i = 0; i < 10; i++) {
    const a = area * (scale[0] + rng.uniform() * (scale[1] - scale[0]));
    const r = Math.exp(lr0 + rng.uniform() * (lr1 - lr0));
    const cw = Math.round(Math.sqrt(a * r)),
      ch = Math.round(Math.sqrt(a / r));
    if (cw >= 1 && ch >= 1 && cw <= w && ch <= h)
      return { left: rng.int(w - cw + 1), top: rng.int(h - ch + 1), width: cw, height: ch };
  }
  const s = Math.min(w, h);
  return { left: Math.floor((w - s) / 2), top: Math.floor((h - s) / 2), width: s, height: s };
}

/** Brightness, contrast and saturation factors applied in place to H × W × C uint8 pixels. */
export function colourJitter(img: RawImage, f: { brightness: number; contrast: number; saturation: number }): void {
  const { data, channels: c } = img;
  const n = img.width * img.height;
  const grey = (i: number) =>
    c >= 3 ? 0.299 * data[i * c]! + 0.587 * data[i * c + 1]! + 0.114 * data[i * c + 2]! : data[i * c]!;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += grey(i);
  mean = (mean / n) * f.brightness;
  for (let i = 0; i < n; i++) {
    const g = grey(i) * f.brightness;
    for (let k = 0; k < Math.min(c, 3); k++) {
      let v = data[i * c + k]! * f.brightness;
      v = g + (v - g) * f.saturation;
      v = mean + (v - mean) * f.contrast;
      data[i * c + k] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
    }
  }
}

/**
 * One augmented view of an image, fitted to the preprocessing's size and channels: H × W × C uint8.
 * The crop is taken from the decoded image at its own resolution, then resized.
 */
export async function augmentedPixels(
  input: string | Uint8Array,
  p: ImagePreprocess,
  o: AugmentOptions,
  rng: Rng,
): Promise<RawImage> {
  const a = resolveAugment(o);
  const label = typeof input === 'string' ? input : 'image';
  try {
    const buf = bytesOf(input);
    const bmp = decodeBmp(buf);
    let img = bmp
      ? sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } })
      : sharp(buf).rotate();
    const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    img = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels as 1 | 3 | 4 } });
    if (a.crop) img = img.extract(cropBox(info.width, info.height, a.crop.scale, a.crop.ratio, rng));
    img = img.resize(p.width, p.height, { fit: 'fill' });
    if (a.flip && rng.uniform() < 0.5) img = img.flop();
    img = p.channels === 1 ? img.grayscale() : img.toColourspace('srgb');
    const out = await img.raw().toBuffer({ resolveWithObject: true });
    const raw: RawImage = {
      data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength),
      width: out.info.width,
      height: out.info.height,
      channels: out.info.channels,
    };
    if (raw.width !== p.width || raw.height !== p.height || raw.channels !== p.channels)
      throw new GraftError(
        `${label}: augmented to ${raw.width}×${raw.height}×${raw.channels}, expected ${p.width}×${p.height}×${p.channels}`,
      );
    if (a.jitter) {
      const j = a.jitter;
      const draw = (s: number) => 1 - s + 2 * s * rng.uniform();
      colourJitter(raw, { brightness: draw(j.brightness), contrast: draw(j.contrast), saturation: draw(j.saturation) });
    }
    return raw;
  } catch (e) {
    if (e instanceof GraftError) throw e;
    throw new GraftError(`${label}: cannot augment the image: ${(e as Error).message}`);
  }
}

/**
 * View `view` of each image as one NCHW batch: view 0 is the plain image (the model's own
 * preprocessing), views ≥ 1 are augmented with the Rng of (seed, view, image).
 */
export async function viewsToTensor(
  inputs: (string | Uint8Array)[],
  views: number[],
  p: ImagePreprocess,
  o: AugmentOptions,
  seed: number,
): Promise<Tensor> {
  const per = p.channels * p.height * p.width;
  const data = new Float32Array(inputs.length * per);
  for (let n = 0; n < inputs.length; n++) {
    const v = views[n]!;
    const px =
      v === 0 ? await loadPixels(inputs[n]!, p) : await augmentedPixels(inputs[n]!, p, o, viewRng(inputs[n]!, seed, v));
    normalize(px, p, data, n * per);
  }
  return { dtype: 'float32', dims: [inputs.length, p.channels, p.height, p.width], data };
}
