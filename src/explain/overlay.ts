/**
 * Drawing explanations: bilinear upsampling of a low-resolution map, a colour map (jet), and a PNG
 * of the map blended over the image (sharp encodes it). A model that stretches images to its input
 * gets the overlay on the original image (scaled down to a maximum side); one that crops gets it on
 * the image as the model saw it.
 */
import { readFileSync, existsSync } from 'node:fs';
import sharp from 'sharp';
import { decodeBmp, loadPixels, type RawImage } from '../data/image.js';
import type { ImagePreprocess } from '../formats/preprocess.js';
import { GraftError } from '../util/errors.js';

/** A map of values in [0, 1], row-major, height × width. */
export interface Heatmap {
  data: Float32Array;
  width: number;
  height: number;
}

/** Bilinear resize (pixel centres aligned, as image resizers do; edges clamped). */
export function resizeBilinear(m: Heatmap, width: number, height: number): Heatmap {
  const out = new Float32Array(width * height);
  const sx = m.width / width,
    sy = m.height / height;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), m.height - 1);
    const y0 = Math.floor(fy),
      y1 = Math.min(y0 + 1, m.height - 1),
      ty = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), m.width - 1);
      const x0 = Math.floor(fx),
        x1 = Math.min(x0 + 1, m.width - 1),
        tx = fx - x0;
      const top = m.data[y0 * m.width + x0]! * (1 - tx) + m.data[y0 * m.width + x1]! * tx;
      const bottom = m.data[y1 * m.width + x0]! * (1 - tx) + m.data[y1 * m.width + x1]! * tx;
      out[y * width + x] = top * (1 - ty) + bottom * ty;
    }
  }
  return { data: out, width, height };
}

/** The jet colour map: 0 → dark blue, 0.5 → green-yellow, 1 → dark red; RGB in 0–255. */
export function jet(t: number): [number, number, number] {
  const v = Math.min(1, Math.max(0, t));
  const c = (x: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - x))));
  return [c(3), c(2), c(1)];
}

/** Blend a heatmap (resized to the image) over RGB pixels: more colour where the map is high. */
export function blend(img: RawImage, map: Heatmap): Uint8Array {
  const m = map.width === img.width && map.height === img.height ? map : resizeBilinear(map, img.width, img.height);
  const out = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.width * img.height; i++) {
    const t = m.data[i]!;
    const [r, g, b] = jet(t);
    const a = 0.25 + 0.4 * t;
    const src = i * img.channels;
    const px =
      img.channels >= 3
        ? [img.data[src]!, img.data[src + 1]!, img.data[src + 2]!]
        : [img.data[src]!, img.data[src]!, img.data[src]!];
    out[i * 3] = Math.round((1 - a) * px[0]! + a * r);
    out[i * 3 + 1] = Math.round((1 - a) * px[1]! + a * g);
    out[i * 3 + 2] = Math.round((1 - a) * px[2]! + a * b);
  }
  return out;
}

/** RGB pixels as a PNG. */
export async function rgbPng(data: Uint8Array, width: number, height: number): Promise<Buffer> {
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/**
 * The PNG overlay of `map` (in the model's input frame) over `image`: the original image (scaled so
 * its longest side is at most maxSide) when the model stretches images, else the model's view.
 */
export async function overlayPng(
  image: string | Uint8Array,
  map: Heatmap,
  pre: ImagePreprocess,
  o: { maxSide?: number } = {},
): Promise<Buffer> {
  const base =
    pre.resize === 'stretch' && !pre.fit
      ? await decodeOriginal(image, o.maxSide ?? 1024)
      : await loadPixels(image, { ...pre, channels: 3 });
  return rgbPng(blend(base, map), base.width, base.height);
}

/** The image as it is (EXIF-oriented, RGB), scaled down so its longest side is at most maxSide. */
async function decodeOriginal(input: string | Uint8Array, maxSide: number): Promise<RawImage> {
  const label = typeof input === 'string' ? input : 'image';
  try {
    let buf: Uint8Array;
    if (typeof input === 'string') {
      if (!existsSync(input)) throw new GraftError(`image not found: ${input}`);
      buf = readFileSync(input);
    } else buf = input;
    const bmp = decodeBmp(buf);
    const img = bmp
      ? sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } })
      : sharp(buf).rotate();
    const { data, info } = await img
      .removeAlpha()
      .resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width,
      height: info.height,
      channels: info.channels,
    };
  } catch (e) {
    if (e instanceof GraftError) throw e;
    throw new GraftError(`${label}: cannot read the image: ${(e as Error).message}`);
  }
}
