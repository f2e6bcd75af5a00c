/**
 * Content-addressed files of the Studio data folder: DIR/blobs/ab/<sha256> (the bytes as uploaded) and
 * DIR/blobs/ab/<sha256>.thumb.jpg (a JPEG thumbnail made with sharp), both written atomically. Bytes are
 * decode-checked before they are stored: what sharp (or Graft's BMP reader) cannot decode as an image is
 * refused, and images over a pixel budget are refused before anything is allocated for them.
 *
 * Deleting: `remove` unlinks a blob and its thumbnail once the database holds no record of it (the
 * record goes first, in a committed transaction, so a crash in between leaves an orphan file, never a
 * record without its bytes); `sweep` removes orphans (and temporary files a crash left) at start-up.
 * A blob an upload has stored but not yet recorded is pinned (`pin`/`unpin`) so that a concurrent
 * delete of the same content leaves it alone.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { atomicWrite } from '../util/atomic.js';
import { decodeBmp } from '../data/image.js';
import { GraftError } from '../util/errors.js';

/** Largest image accepted, in pixels (a 50-megapixel photo). */
export const MAX_PIXELS = 50_000_000;
export const THUMB_SIZE = 160;
const SHA = /^[0-9a-f]{64}$/;

export interface StoredImage {
  sha256: string;
  size: number;
  mime: string;
  width: number;
  height: number;
}

export class NotAnImage extends GraftError {}

const MIME: Record<string, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  tiff: 'image/tiff',
  avif: 'image/avif',
  heif: 'image/heif',
};

export class BlobStore {
  private pins = new Map<string, number>();

  constructor(readonly dir: string) {}

  /** Keep a blob from being removed until `unpin` (counted: several uploads may pin the same content). */
  pin(sha: string): void {
    this.pins.set(sha, (this.pins.get(sha) ?? 0) + 1);
  }
  unpin(sha: string): void {
    const n = (this.pins.get(sha) ?? 0) - 1;
    if (n > 0) this.pins.set(sha, n);
    else this.pins.delete(sha);
  }
  isPinned(sha: string): boolean {
    return this.pins.has(sha);
  }

  /** Unlink a blob and its thumbnail (unless pinned); the caller has removed its record. */
  remove(sha: string): boolean {
    if (this.isPinned(sha)) return false;
    rmSync(this.path(sha, true), { force: true });
    rmSync(this.path(sha), { force: true });
    return true;
  }

  /**
   * Remove every file under blobs/ that is not a blob (or thumbnail) in `keep`, unpinned: orphans whose
   * record was deleted before a crash, and temporary files of interrupted writes. Returns how many went.
   */
  sweep(keep: Set<string>): number {
    const root = join(this.dir, 'blobs');
    if (!existsSync(root)) return 0;
    let n = 0;
    for (const sub of readdirSync(root, { withFileTypes: true })) {
      if (!sub.isDirectory() || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
      for (const f of readdirSync(join(root, sub.name), { withFileTypes: true })) {
        const sha = f.name.slice(0, 64);
        const known = SHA.test(sha) && sha.startsWith(sub.name) && (f.name === sha || f.name === `${sha}.thumb.jpg`);
        if (known && (keep.has(sha) || this.isPinned(sha))) continue;
        if (!known && SHA.test(sha) && this.isPinned(sha)) continue; // a write in progress
        rmSync(join(root, sub.name, f.name), { recursive: true, force: true });
        n++;
      }
    }
    return n;
  }

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

  /**
   * Decode-check an image, make its thumbnail, and store both (once per content). `name` is for
   * messages. The blob comes back pinned: the caller records it, then unpins it.
   */
  async putImage(bytes: Uint8Array, name: string): Promise<StoredImage> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    let img: sharp.Sharp, width: number, height: number, mime: string, thumb: Buffer;
    try {
      const bmp = decodeBmp(bytes);
      if (bmp) {
        if (bmp.width * bmp.height > MAX_PIXELS)
          throw new NotAnImage(`${name}: ${bmp.width}×${bmp.height} pixels is over the limit of ${MAX_PIXELS}`);
        img = sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } });
        width = bmp.width;
        height = bmp.height;
        mime = 'image/bmp';
      } else {
        const meta = await sharp(bytes, { limitInputPixels: MAX_PIXELS }).metadata();
        if (!meta.format || !MIME[meta.format] || !meta.width || !meta.height)
          throw new Error(`unsupported format ${meta.format ?? 'unknown'}`);
        img = sharp(bytes, { limitInputPixels: MAX_PIXELS }).rotate();
        width = meta.width;
        height = meta.height;
        mime = MIME[meta.format]!;
      }
      // decoding the whole image (the thumbnail) is the check: a truncated file fails here
      thumb = await img
        .resize(THUMB_SIZE, THUMB_SIZE, { fit: 'inside', withoutEnlargement: true })
        .flatten({ background: '#ffffff' })
        .jpeg({ quality: 80 })
        .toBuffer();
    } catch (e) {
      if (e instanceof NotAnImage) throw e;
      throw new NotAnImage(`${name} is not an image Graft can read (${(e as Error).message.split('\n')[0]})`);
    }
    this.pin(sha256);
    try {
      if (!this.has(sha256)) atomicWrite(this.path(sha256), bytes);
      if (!existsSync(this.path(sha256, true))) atomicWrite(this.path(sha256, true), thumb);
    } catch (e) {
      this.unpin(sha256);
      throw e;
    }
    return { sha256, size: bytes.length, mime, width, height };
  }
}
