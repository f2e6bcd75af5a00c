/** A CSV of small grey images turned into model-ready examples (MNIST-style or stretched). */
import { readPixelCsv } from './tabular.js';
import { toMnistStyle } from './image-preprocess.js';
import type { Examples } from '../train/fit.js';
import sharp from 'sharp';

export interface PixelDatasetOptions {
  /** 'mnist': fit into a 20/28 box centred on the canvas; 'stretch': resize to the canvas. */
  preprocess?: 'mnist' | 'stretch';
  /** Canvas side (the model's input side). */
  side: number;
  /** Largest pixel value in the file. */
  pixelMax?: number;
  /** Value of a full-intensity pixel for the model (default 255). */
  outMax?: number;
}

export async function loadPixelDataset(path: string, o: PixelDatasetOptions): Promise<Examples> {
  const t = readPixelCsv(path);
  const outMax = o.outMax ?? 255;
  const x = await Promise.all(
    t.pixels.map(async (p) => {
      if ((o.preprocess ?? 'mnist') === 'mnist')
        return toMnistStyle(p, t.side, {
          box: Math.round((o.side * 20) / 28),
          canvas: o.side,
          maxValue: o.pixelMax ?? 255,
          outMax,
        });
      const src = Buffer.from(p.map((v) => Math.round((v / (o.pixelMax ?? 255)) * 255)));
      const data = await sharp(src, { raw: { width: t.side, height: t.side, channels: 1 } })
        .resize(o.side, o.side, { kernel: 'linear' })
        .toColourspace('b-w')
        .raw()
        .toBuffer();
      return Float32Array.from(data, (v) => (v / 255) * outMax);
    }),
  );
  return { x, y: t.labels };
}
