/**
 * The small real task the training-loop tests share: the pretrained MNIST network and the 8×8 digits
 * (upscaled MNIST-style), a fixed stratified split with 50 training labels per class.
 */
import { loadModel } from '../../src/formats/load.js';
import { makeBatchDynamic } from '../../src/graph/rewrites.js';
import { loadPixelDataset } from '../../src/data/pixel-dataset.js';
import { stratifiedSplit } from '../../src/data/splits.js';
import type { Examples } from '../../src/train/fit.js';
import type { Graph } from '../../src/graph/graph.js';
import { asset } from '../helpers/assets.js';

export const mnistPath = () => asset('models/onnxjs-demo/mnist.onnx');
export const digitsPath = () => asset('datasets/digits-8x8/digits.csv.gz');

export async function digitsTask(
  perClass = 50,
): Promise<{ model: Graph; train: Examples; val: Examples; test: Examples }> {
  const model = makeBatchDynamic(loadModel(mnistPath()));
  const ds = await loadPixelDataset(digitsPath(), { side: 28, pixelMax: 16 });
  const split = stratifiedSplit(ds.y, { testFraction: 0.3, valFraction: 0.1, perClass, seed: 0 });
  const pick = (idx: number[]): Examples => ({ x: idx.map((i) => ds.x[i]!), y: idx.map((i) => ds.y[i]!) });
  return { model, train: pick(split.train), val: pick(split.val), test: pick(split.test) };
}

/** Bitwise equality of two weight maps (every name of `a` present in `b` with the same bits). */
export function sameBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length) return false;
    const x = new Uint32Array(v.buffer, v.byteOffset, v.length);
    const y = new Uint32Array(w.buffer, w.byteOffset, w.length);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  }
  return true;
}

export const floatInitializers = (g: Graph) =>
  new Map([...g.initializers].filter(([, t]) => t.dtype === 'float32').map(([k, t]) => [k, t.data as Float32Array]));
