/**
 * Photos → model input, with sharp: decode (JPEG, PNG, WebP, GIF, TIFF, AVIF; BMP is decoded here),
 * orient by EXIF, fit to the model's size, and normalize per channel, following the preprocessing a
 * model records (src/formats/preprocess.ts). The result is NCHW float32.
 */
import { readFileSync, existsSync } from 'node:fs';
import sharp from 'sharp';
import type { ImagePreprocess } from '../formats/preprocess.js';
import type { Tensor } from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';

/** Decoded pixels: height × width × channels, uint8, interleaved. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/**
 * Uncompressed Windows bitmaps (24/32-bit, and 8-bit paletted), which libvips does not read. Returns
 * undefined for anything else, so sharp gets to try.
 */
export function decodeBmp(buf: Uint8Array): RawImage | undefined {
  if (buf.length < 54 || buf[0] !== 0x42 || buf[1] !== 0x4d) return undefined;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const offset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  const width = dv.getInt32(18, true);
  const rawHeight = dv.getInt32(22, true);
  const bpp = dv.getUint16(28, true);
  const compression = dv.getUint32(30, true);
  if (compression !== 0 && compression !== 3)
    throw new GraftError(`compressed BMP files (compression ${compression}) are not supported`);
  if (![8, 24, 32].includes(bpp)) throw new GraftError(`${bpp}-bit BMP files are not supported`);
  const height = Math.abs(rawHeight);
  const topDown = rawHeight < 0;
  const rowBytes = Math.ceil((width * bpp) / 32) * 4;
  if (offset + rowBytes * height > buf.length) throw new GraftError('truncated BMP file');
  let palette: Uint8Array | undefined;
  if (bpp === 8) {
    const colours = dv.getUint32(46, true) || 256;
    palette = buf.subarray(14 + headerSize, 14 + headerSize + 4 * colours);
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = offset + (topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (palette) {
        const k = buf[row + x]! * 4;
        out[o] = palette[k + 2]!;
        out[o + 1] = palette[k + 1]!;
        out[o + 2] = palette[k]!;
      } else {
        const p = row + x * (bpp / 8);
        out[o] = buf[p + 2]!;
        out[o + 1] = buf[p + 1]!;
        out[o + 2] = buf[p]!; // stored BGR
      }
    }
  }
  return { data: out, width, height, channels: 3 };
}

function source(input: string | Uint8Array | RawImage): sharp.Sharp {
  if (!(typeof input === 'string' || input instanceof Uint8Array)) {
    const { width, height, channels } = input;
    return sharp(input.data, { raw: { width, height, channels: channels as 1 | 2 | 3 | 4 } });
  }
  let buf: Uint8Array;
  if (typeof input === 'string') {
    if (!existsSync(input)) throw new GraftError(`image not found: ${input}`);
    buf = readFileSync(input);
  } else buf = input;
  const bmp = decodeBmp(buf);
  if (bmp) return sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } });
  return sharp(buf).rotate(); // EXIF orientation
}

/**
 * Decode (a path or an encoded image's bytes; raw H × W × C pixels are taken as they are) and fit an
 * image to the preprocessing's size and channels: H × W × C uint8.
 */
export async function loadPixels(
  input: string | Uint8Array | RawImage,
  p: Pick<ImagePreprocess, 'width' | 'height' | 'channels' | 'resize' | 'fit' | 'resample'>,
): Promise<RawImage> {
  const label = typeof input === 'string' ? input : 'image';
  try {
    let img = source(input).removeAlpha();
    const kernel = p.resample ? KERNELS[p.resample] : undefined;
    if (p.fit) img = await fitAndCrop(img, p, kernel);
    else
      img = img.resize(p.width, p.height, {
        ...(p.resize === 'center-crop' ? { fit: 'cover', position: 'centre' } : { fit: 'fill' }),
        ...(kernel ? { kernel } : {}),
      });
    img = p.channels === 1 ? img.grayscale() : img.toColourspace('srgb');
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.width !== p.width || info.height !== p.height || info.channels !== p.channels)
      throw new GraftError(
        `${label}: decoded to ${info.width}×${info.height}×${info.channels}, expected ${p.width}×${p.height}×${p.channels}`,
      );
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

const KERNELS = { nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos: 'lanczos3' } as const;

/**
 * Transformers.js's resize then centre crop: the resized size follows its rule for a shortest edge
 * (scale = max(s/w, s/h), each side floored after rounding to 2 decimals); the crop offsets are
 * floored, and a crop larger than the image pads with black.
 */
async function fitAndCrop(
  img: sharp.Sharp,
  p: Pick<ImagePreprocess, 'width' | 'height' | 'resize' | 'fit'>,
  kernel: keyof sharp.KernelEnum | undefined,
): Promise<sharp.Sharp> {
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const fit = p.fit!;
  let w: number, h: number;
  if ('shortestEdge' in fit) {
    const s = Math.max(fit.shortestEdge / info.width, fit.shortestEdge / info.height);
    w = Math.floor(Number((info.width * s).toFixed(2)));
    h = Math.floor(Number((info.height * s).toFixed(2)));
  } else ({ width: w, height: h } = fit);
  let out = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  if (w !== info.width || h !== info.height)
    out = sharp(
      await out
        .resize(w, h, { fit: 'fill', ...(kernel ? { kernel } : {}) })
        .raw()
        .toBuffer(),
      { raw: { width: w, height: h, channels: info.channels } },
    );
  if (p.resize !== 'center-crop' || (w === p.width && h === p.height))
    return w === p.width && h === p.height ? out : out.resize(p.width, p.height, { fit: 'fill' });
  const padX = Math.max(0, p.width - w),
    padY = Math.max(0, p.height - h);
  if (padX || padY) {
    const left = Math.floor(padX / 2),
      top = Math.floor(padY / 2);
    out = sharp(
      await out
        .extend({ left, right: padX - left, top, bottom: padY - top, background: { r: 0, g: 0, b: 0 } })
        .raw()
        .toBuffer(),
      { raw: { width: w + padX, height: h + padY, channels: info.channels } },
    );
  }
  const cw = w + padX,
    ch = h + padY;
  return out.extract({
    left: Math.floor((cw - p.width) / 2),
    top: Math.floor((ch - p.height) / 2),
    width: p.width,
    height: p.height,
  });
}

/** Pixels (H × W × C uint8) → C × H × W floats, value = (pixel/255 − mean[c]) / std[c], channels in the model's order. */
export function normalize(
  img: RawImage,
  p: Pick<ImagePreprocess, 'mean' | 'std' | 'channelOrder'>,
  out = new Float32Array(img.width * img.height * img.channels),
  at = 0,
): Float32Array {
  const { width: w, height: h, channels: c } = img;
  const hw = w * h;
  const lut = new Float32Array(256);
  for (let k = 0; k < c; k++) {
    // the model's channel k comes from the image's channel src (BGR models: reversed)
    const src = p.channelOrder === 'BGR' ? c - 1 - k : k;
    const mean = p.mean[k] ?? p.mean[0] ?? 0,
      std = p.std[k] ?? p.std[0] ?? 1;
    // the 256 possible values, each computed as (v/255 − mean)/std and rounded to float32 as before
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - mean) / std;
    const base = at + k * hw,
      data = img.data;
    for (let i = 0, j = src; i < hw; i++, j += c) out[base + i] = lut[data[j]!]!;
  }
  return out;
}

/** Images as one NCHW float32 batch, prepared as the model's preprocessing says; an unreadable image is an error naming it. */
export async function imagesToTensor(inputs: (string | Uint8Array)[], p: ImagePreprocess): Promise<Tensor> {
  const per = p.channels * p.height * p.width;
  const data = new Float32Array(inputs.length * per);
  for (let n = 0; n < inputs.length; n++) normalize(await loadPixels(inputs[n]!, p), p, data, n * per);
  return { dtype: 'float32', dims: [inputs.length, p.channels, p.height, p.width], data };
}

export interface UnreadableImage {
  /** Position in the inputs given. */
  index: number;
  /** Why (the message names the file when the input was a path). */
  error: string;
}

/**
 * Images as one NCHW float32 batch of those that decode; the others are listed in `failed` (with
 * the reason) instead of failing the batch. `ok` holds the input index of each tensor row.
 */
export async function decodeImages(
  inputs: (string | Uint8Array)[],
  p: ImagePreprocess,
): Promise<{ tensor: Tensor; ok: number[]; failed: UnreadableImage[] }> {
  const per = p.channels * p.height * p.width;
  const failed: UnreadableImage[] = [];
  // decoded concurrently (sharp works on libuv's thread pool)
  const imgs = await Promise.all(
    inputs.map(async (x, n): Promise<RawImage | undefined> => {
      try {
        return await loadPixels(x, p);
      } catch (e) {
        failed.push({ index: n, error: e instanceof Error ? e.message : String(e) });
        return undefined;
      }
    }),
  );
  failed.sort((a, b) => a.index - b.index);
  const ok = imgs.flatMap((im, n) => (im ? [n] : []));
  const data = new Float32Array(ok.length * per);
  ok.forEach((n, r) => normalize(imgs[n]!, p, data, r * per));
  return { tensor: { dtype: 'float32', dims: [ok.length, p.channels, p.height, p.width], data }, ok, failed };
}
