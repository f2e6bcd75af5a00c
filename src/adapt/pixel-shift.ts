/**
 * Documented covariate shifts of grey images (values 0–1), for building a labelled source →
 * unlabelled target pair from one dataset, as the corrupted-image benchmarks (MNIST-C,
 * ImageNet-C) do. Each is a fixed, seeded function of the image; labels are unchanged.
 *
 * - 'dim-noisy': contrast reduced to 50 %, brightness raised by 0.3, plus Gaussian noise (σ 0.1),
 *   clipped to [0, 1]: a washed-out, grainy capture of the same scene.
 * - 'invert': 1 − x (light background, dark object).
 * - 'noise': Gaussian noise σ 0.3, clipped.
 */
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export type PixelShift = 'dim-noisy' | 'invert' | 'noise';
export const PIXEL_SHIFTS: readonly PixelShift[] = ['dim-noisy', 'invert', 'noise'];

export function shiftImages(xs: Float32Array[], shift: PixelShift, seed = 0): Float32Array[] {
  const rng = new Rng(seed);
  const clip = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
  switch (shift) {
    case 'dim-noisy': return xs.map((x) => x.map((v) => clip(0.5 * v + 0.3 + 0.1 * rng.normal())));
    case 'invert': return xs.map((x) => x.map((v) => 1 - v));
    case 'noise': return xs.map((x) => x.map((v) => clip(v + 0.3 * rng.normal())));
    default: throw new GraftError(`unknown shift '${shift as string}' (known: ${PIXEL_SHIFTS.join(', ')})`);
  }
}
