/**
 * An image-folder dataset: one subfolder per class (class names sorted, so labels are stable),
 * image files picked by extension. Decoding uses src/data/image.ts; an image that cannot be read is
 * reported by path and skipped, never a crash.
 */
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, extname } from 'node:path';
import type { ImagePreprocess } from '../formats/preprocess.js';
import type { Tensor } from '../graph/tensor.js';
import { decodeImages } from './image.js';
import { mapAhead } from './pipeline.js';
import { GraftError } from '../util/errors.js';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.bmp', '.avif'];

export interface ImageItem {
  path: string;
  label: number;
}

export interface ImageFolder {
  root: string;
  /** Class names (subfolder names), sorted; label i is classes[i]. */
  classes: string[];
  items: ImageItem[];
}

export interface ImageFolderOptions {
  /** File extensions to accept, case-insensitive, with the dot (default IMAGE_EXTENSIONS). */
  extensions?: string[];
  /** Look into nested folders below each class folder (default false). */
  recursive?: boolean;
}

/** List (path, label) pairs of an image folder. Files are sorted within each class. */
export function listImageFolder(root: string, o: ImageFolderOptions = {}): ImageFolder {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new GraftError(`image folder not found: ${root}`);
  const exts = new Set((o.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
  const classes = readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort();
  if (classes.length === 0) throw new GraftError(`${root}: no class subfolders (expected one folder per class)`);
  const items: ImageItem[] = [];
  const walk = (dir: string, label: number) => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (o.recursive) walk(p, label);
      } else if (exts.has(extname(e.name).toLowerCase())) items.push({ path: p, label });
    }
  };
  classes.forEach((c, label) => walk(join(root, c), label));
  return { root, classes, items };
}

export interface DecodeFailure {
  path: string;
  error: string;
}

export interface DecodedBatch {
  /** NCHW float32, one row per item that decoded. */
  tensor: Tensor;
  /** The items that decoded, in tensor order. */
  items: ImageItem[];
  /** The items that could not be read, with why. */
  failed: DecodeFailure[];
}

/** Decode a list of items into one batch; unreadable images are reported in `failed` and skipped. */
export async function decodeItems(
  items: ImageItem[],
  p: ImagePreprocess,
  onError?: (f: DecodeFailure) => void,
): Promise<DecodedBatch> {
  const d = await decodeImages(
    items.map((it) => it.path),
    p,
  );
  const failed = d.failed.map((f) => ({ path: items[f.index]!.path, error: f.error }));
  if (onError) failed.forEach(onError);
  return { tensor: d.tensor, items: d.ok.map((k) => items[k]!), failed };
}

/**
 * Decoded batches of `batchSize` items (a batch can be smaller when images fail or at the end). The
 * next `prefetch` batches (default 2) decode while the caller works on the current one; failures are
 * reported to onError in item order, as each batch is handed over.
 */
export async function* imageFolderBatches(
  items: ImageItem[],
  p: ImagePreprocess,
  batchSize: number,
  onError?: (f: DecodeFailure) => void,
  prefetch = 2,
): AsyncGenerator<DecodedBatch> {
  if (!(batchSize >= 1)) throw new GraftError(`batch size must be at least 1, got ${batchSize}`);
  if (!(Number.isInteger(prefetch) && prefetch >= 0))
    throw new GraftError(`prefetch must be an integer ≥ 0, got ${prefetch}`);
  const slices: ImageItem[][] = [];
  for (let i = 0; i < items.length; i += batchSize) slices.push(items.slice(i, i + batchSize));
  for await (const b of mapAhead(slices, (s) => decodeItems(s, p), prefetch)) {
    if (onError) b.failed.forEach(onError);
    yield b;
  }
}
