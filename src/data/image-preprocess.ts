/** Image preprocessing with sharp: grey digit images in the MNIST convention, and input scaling. */
import sharp from 'sharp';

export interface MnistStyleOptions {
  /** Side of the box the digit is scaled into (MNIST: 20). */
  box?: number;
  /** Side of the canvas (MNIST: 28). */
  canvas?: number;
  /** Largest pixel value in the source (8×8 digits: 16). */
  maxValue?: number;
  /** Output range top (MNIST models trained on 0–255: 255). */
  outMax?: number;
}

/**
 * Scale a small grey image into a box centred on a larger canvas, as MNIST digits were prepared
 * (digit fitted into 20×20, centred in 28×28). Returns canvas² floats in [0, outMax].
 */
export async function toMnistStyle(
  pixels: Float32Array,
  side: number,
  o: MnistStyleOptions = {},
): Promise<Float32Array> {
  const box = o.box ?? 20;
  const canvas = o.canvas ?? 28;
  const maxValue = o.maxValue ?? 255;
  const outMax = o.outMax ?? 255;
  const src = Buffer.alloc(side * side);
  for (let i = 0; i < src.length; i++) src[i] = Math.max(0, Math.min(255, Math.round((pixels[i]! / maxValue) * 255)));
  const before = Math.floor((canvas - box) / 2);
  const after = canvas - box - before;
  const { data, info } = await sharp(src, { raw: { width: side, height: side, channels: 1 } })
    .resize(box, box, { kernel: 'linear', fit: 'fill' })
    .extend({ top: before, bottom: after, left: before, right: after, background: { r: 0, g: 0, b: 0 } })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== canvas || info.height !== canvas || info.channels !== 1)
    throw new Error(`sharp returned ${info.width}×${info.height}×${info.channels}, expected ${canvas}×${canvas}×1`);
  const out = new Float32Array(canvas * canvas);
  for (let i = 0; i < out.length; i++) out[i] = (data[i]! / 255) * outMax;
  return out;
}
