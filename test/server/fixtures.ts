/**
 * Saved classifiers for the server tests, made in seconds from real assets: an image classifier
 * (logistic head on the bundled MNIST network's features, trained on the bundled 8×8 digits as BMP
 * files) and, when ../shared has it, a text classifier (logistic head on bert-mini-debian's pooled
 * features, a handful of labelled sentences). Plus real digit images as PNG bytes to send.
 */
import { join } from 'node:path';
import sharp from 'sharp';
import { loadModel } from '../../src/formats/load.js';
import { makeBatchDynamic } from '../../src/graph/rewrites.js';
import { setPreprocess } from '../../src/formats/preprocess.js';
import { readPixelCsv } from '../../src/data/tabular.js';
import { greyToBmp } from '../../src/data/labelled-images.js';
import { trainFeatureClassifier } from '../../src/features/classifier.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { TextFeatureExtractor, fitTextHead, gemmFromLogistic } from '../../src/text/classify.js';
import { addClassifierHead } from '../../src/text/encoder.js';
import { saveTextClassifier } from '../../src/text/saved.js';
import { asset } from '../helpers/assets.js';

export const TEXT_MODEL = 'models/text/bert-mini-debian';

/** The 8×8 digits (0–16) as 8-bit grey pixels, with labels. */
export function digits(): { pixels: Uint8Array[]; labels: number[]; side: number } {
  const t = readPixelCsv(asset('datasets/digits-8x8/digits.csv.gz'));
  return {
    pixels: t.pixels.map((p) => Uint8Array.from(p, (v) => Math.round((v * 255) / 16))),
    labels: t.labels,
    side: t.side,
  };
}

/** Digit `i` as a PNG file's bytes. */
export async function digitPng(i: number): Promise<Buffer> {
  const d = digits();
  return sharp(Buffer.from(d.pixels[i]!), { raw: { width: d.side, height: d.side, channels: 1 } })
    .png()
    .toBuffer();
}

/** Train and save the MNIST-features digit classifier into `dir` (about a second). */
export async function digitClassifier(dir: string, n = 300): Promise<string> {
  const g = makeBatchDynamic(loadModel(asset('models/onnxjs-demo/mnist.onnx')));
  // the network reads 28×28 grey pixels in 0–255
  setPreprocess(g, {
    layout: 'NCHW',
    width: 28,
    height: 28,
    channels: 1,
    channelOrder: 'GRAY',
    mean: [0],
    std: [1 / 255],
    resize: 'stretch',
    source: 'flag',
  });
  const d = digits();
  const inputs = d.pixels.slice(0, n).map((p) => greyToBmp(p, d.side, d.side));
  const classes = Array.from({ length: 10 }, (_, i) => `digit-${i}`);
  await trainFeatureClassifier(
    g,
    { inputs, labels: d.labels.slice(0, n), classes, names: [], kind: 'idx' },
    { out: dir, seed: 0 },
  );
  return dir;
}

export const TEXTS = {
  positive: [
    'a wonderful, moving film',
    'great acting and a clever story',
    'i loved every minute of it',
    'brilliant and funny',
    'the best film this year',
    'a delight from start to end',
  ],
  negative: [
    'a dull, boring mess',
    'terrible acting and a stupid plot',
    'i hated every minute of it',
    'awful and tedious',
    'the worst film this year',
    'a waste of time',
  ],
};

/** Fit and save a small sentiment classifier on bert-mini-debian's mean-pooled features into `dir` (seconds). */
export async function textClassifier(dir: string): Promise<string> {
  const from = asset(TEXT_MODEL);
  const m = loadModelFolderSync(from);
  const texts = [...TEXTS.negative, ...TEXTS.positive];
  const y = texts.map((_, i) => (i < TEXTS.negative.length ? 0 : 1));
  const ex = new TextFeatureExtractor(m, 'mean');
  try {
    const head = await fitTextHead(await ex.extract(texts, { maxLength: 32 }), y, 0);
    const g = addClassifierHead(ex.graph, gemmFromLogistic(head), { probabilities: true });
    saveTextClassifier(g, dir, {
      from,
      labels: ['negative', 'positive'],
      settings: { maxLength: 32, pooling: 'mean', mode: 'features' },
    });
  } finally {
    await ex.release();
  }
  return dir;
}

export { join };
