/**
 * Content-addressed files of the Studio data folder: DIR/blobs/ab/<sha256> (the bytes as uploaded) and
 * DIR/blobs/ab/<sha256>.thumb.jpg (a JPEG thumbnail made with sharp), both written atomically. Bytes are
 * decode-checked before they are stored: what sharp (or Graft's BMP reader) cannot decode as an image is
 * refused, and images over a pixel budget are refused before anything is allocated for them.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { atomicWrite } from '../util/atomic.js';
import { decodeBmp } from '../data/image.js';
import { GraftError } from '../util/errors.js';

/** Largest image accepted, in pixels (a 50-megapixel photo). */
export const MAX_PIXELS = 50_000_000;
export const THUMB_SIZE = 160;
const SHA = /^[0-9a-f]{64}$/;

export interface StoredImage { sha256: string; size: number; mime: string; width: number; height: number }

export class NotAnImage extends GraftError {}

const MIME: Record<string, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif', tiff: 'image/tiff', avif: 'image/avif', heif: 'image/heif' };

export class BlobStore {
  constructor(readonly dir: string) {}

  static isSha(s: string): boolean {
    return SHA.test(s);
  }

  /** The path of a blob; `sha` must be 64 hex digits (checked, so it never climbs out). */
  path(sha: string, thumb = false): string {
    if (!SHA.test(sha)) throw new GraftError(`not a sha256: '${sha}'`);
    return join(this.dir, 'blobs', sha.slice(0, 2), thumb ? `${sha}.thumb.jpg` : sha);
  }

  has(sha: string): boolean {
    return SHA.test(sha) && existsSync(this.path(sha));
  }

  read(sha: string, thumb = false): Buffer {
    return readFileSync(this.path(sha, thumb));
  }

  /** Decode-check an image, make its thumbnail, and store both (once per content). `name` is for messages. */
  async putImage(bytes: Uint8Array, name: string): Promise<StoredImage> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    let img: sharp.Sharp, width: number, height: number, mime: string, thumb: Buffer;
    try {
      const bmp = decodeBmp(bytes);
      if (bmp) {
        if (bmp.width * bmp.height > MAX_PIXELS) throw new NotAnImage(`${name}: ${bmp.width}×${bmp.height} pixels is over the limit of ${MAX_PIXELS}`);
        img = sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } });
        width = bmp.width; height = bmp.height; mime = 'image/bmp';
      } else {
        const meta = await sharp(bytes, { limitInputPixels: MAX_PIXELS }).metadata();
        if (!meta.format || !MIME[meta.format] || !meta.width || !meta.height) throw new Error(`unsupported format ${meta.format ?? 'unknown'}`);
        img = sharp(bytes, { limitInputPixels: MAX_PIXELS }).rotate();
        width = meta.width; height = meta.height; mime = MIME[meta.format]!;
      }
      // decoding the whole image (the thumbnail) is the check: a truncated file fails here
      thumb = await img.resize(THUMB_SIZE, THUMB_SIZE, { fit: 'inside', withoutEnlargement: true }).flatten({ background: '#ffffff' }).jpeg({ quality: 80 }).toBuffer();
    } catch (e) {
      if (e instanceof NotAnImage) throw e;
      throw new NotAnImage(`${name} is not an image Graft can read (${(e as Error).message.split('\n')[0]})`);
    }
    if (!this.has(sha256)) atomicWrite(this.path(sha256), bytes);
    if (!existsSync(this.path(sha256, true))) atomicWrite(this.path(sha256, true), thumb);
    return { sha256, size: bytes.length, mime, width, height };
  }
}
