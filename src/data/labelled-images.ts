/**
 * A labelled image dataset from the command line's `--data`: an image folder (one subfolder per
 * class) or an IDX pair (MNIST layout). IDX images are wrapped as tiny uncompressed 8-bit grey BMP
 * files in memory, so they go through the same decoding and preprocessing as photos (grey expanded
 * to the model's channels, resized to its input) and are cache-keyed by their own bytes.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { listImageFolder } from './image-folder.js';
import { readIdxDataset } from './idx.js';
import { GraftError } from '../util/errors.js';

export interface LabelledImages {
  /** Image files, or encoded image bytes (IDX examples as BMP). */
  inputs: (string | Uint8Array)[];
  labels: number[];
  /** Class names; label i is classes[i]. */
  classes: string[];
  /** A short name per example (its path, or `file#index`). */
  names: string[];
  kind: 'image-folder' | 'idx';
}

export interface LabelledImagesOptions {
  /** IDX labels file (default: the images file's name with `images-idx3` → `labels-idx1`, when that exists). */
  labelsData?: string;
  /** Keep only the first N examples of each class (in file order). */
  maxPerClass?: number;
  /** Class names for IDX data (default "0", "1", …). */
  classNames?: string[];
}

/** A grey image (row-major, h × w uint8) as an 8-bit paletted BMP file. */
export function greyToBmp(pixels: Uint8Array, width: number, height: number): Uint8Array {
  const rowBytes = Math.ceil(width / 4) * 4;
  const offset = 14 + 40 + 256 * 4;
  const size = offset + rowBytes * height;
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x42;
  buf[1] = 0x4d;
  dv.setUint32(2, size, true);
  dv.setUint32(10, offset, true);
  dv.setUint32(14, 40, true);
  dv.setInt32(18, width, true);
  dv.setInt32(22, -height, true); // top-down rows
  dv.setUint16(26, 1, true);
  dv.setUint16(28, 8, true);
  dv.setUint32(30, 0, true);
  dv.setUint32(34, rowBytes * height, true);
  dv.setUint32(46, 256, true);
  for (let i = 0; i < 256; i++) {
    const o = 54 + 4 * i;
    buf[o] = i;
    buf[o + 1] = i;
    buf[o + 2] = i;
  }
  for (let y = 0; y < height; y++) buf.set(pixels.subarray(y * width, (y + 1) * width), offset + y * rowBytes);
  return buf;
}

function guessLabelsFile(images: string): string | undefined {
  const b = basename(images);
  if (!/images-idx3/.test(b)) return undefined;
  const p = join(dirname(images), b.replace('images-idx3', 'labels-idx1'));
  return existsSync(p) ? p : undefined;
}

export function loadLabelledImages(data: string, o: LabelledImagesOptions = {}): LabelledImages {
  if (!existsSync(data)) throw new GraftError(`dataset not found: ${data}`);
  let out: LabelledImages;
  if (statSync(data).isDirectory()) {
    if (o.labelsData) throw new GraftError(`--labels-data is for IDX files; ${data} is an image folder`);
    const f = listImageFolder(data);
    out = {
      inputs: f.items.map((i) => i.path),
      labels: f.items.map((i) => i.label),
      classes: f.classes,
      names: f.items.map((i) => i.path),
      kind: 'image-folder',
    };
  } else {
    const labelsPath = o.labelsData ?? guessLabelsFile(data);
    if (!labelsPath)
      throw new GraftError(
        `${data}: a file dataset must be IDX images with a labels file`,
        'pass --labels-data LABELS-idx1-ubyte.gz, or give an image folder (one subfolder per class)',
      );
    const d = readIdxDataset(data, labelsPath);
    if (d.shape.length !== 2)
      throw new GraftError(`${data}: IDX images must be 2-D (grey), got example dims [${d.shape.join(', ')}]`);
    const [h, w] = d.shape as [number, number];
    const classes = o.classNames ?? Array.from({ length: d.numClasses }, (_, i) => String(i));
    if (classes.length < d.numClasses)
      throw new GraftError(`${classes.length} class names for ${d.numClasses} classes`);
    // keep only what is used before wrapping (a cap per class makes big files cheap)
    const keep = capPerClass(d.labels, o.maxPerClass);
    return {
      inputs: keep.map((i) => greyToBmp(d.images[i]!, w, h)),
      labels: keep.map((i) => d.labels[i]!),
      classes,
      names: keep.map((i) => `${basename(data)}#${i}`),
      kind: 'idx',
    };
  }
  const keep = capPerClass(out.labels, o.maxPerClass);
  if (keep.length === out.labels.length) return out;
  return {
    ...out,
    inputs: keep.map((i) => out.inputs[i]!),
    labels: keep.map((i) => out.labels[i]!),
    names: keep.map((i) => out.names[i]!),
  };
}

function capPerClass(labels: number[], max?: number): number[] {
  if (max === undefined) return labels.map((_, i) => i);
  if (!(max >= 1)) throw new GraftError(`--max-per-class must be at least 1, got ${max}`);
  const seen = new Map<number, number>();
  const keep: number[] = [];
  labels.forEach((y, i) => {
    const c = seen.get(y) ?? 0;
    if (c < max) {
      keep.push(i);
      seen.set(y, c + 1);
    }
  });
  return keep;
}
