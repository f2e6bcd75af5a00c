/**
 * Explanations written to a folder (`graft explain`): `explainToFolder` explains image inputs with
 * Grad-CAM (./gradcam.ts), writing `<stem>.gradcam.png` overlays (numbered when two inputs share a
 * stem; an unreadable image is skipped and told), or, for a text classifier folder, texts with
 * token attributions (./text.ts), writing attributions.json and attributions.html (./html.ts).
 * Errors name the `graft explain` flag.
 */
import { basename, extname, join, resolve } from 'node:path';
import { atomicWrite } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';
import { isTextClassifierFolder } from '../text/saved.js';
import { GradCam, type ImageExplanation } from './gradcam.js';
import { explainTexts, type TextExplanation } from './text.js';
import { attributionsHtml } from './html.js';

export interface ExplainFolderOptions {
  /** The folder written (created when missing). */
  out: string;
  /** The class to explain: an index or a label name (default: each input's top class). */
  class?: string;
  /** Images: the activations for Grad-CAM (default: the last convolution's output, with its activation). */
  layer?: string;
  /** Images: each explained image as its overlay is written. */
  onImage?: (e: ImageExplanation, overlay: string) => void;
  /** Images: an unreadable image, skipped. */
  onSkip?: (image: string, error: GraftError) => void;
}

export type FolderExplanation =
  | {
      kind: 'images';
      /** The activations Grad-CAM used. */
      layer: string;
      images: { explanation: ImageExplanation; overlay: string }[];
      /** Images that could not be read. */
      skipped: number;
    }
  | { kind: 'texts'; texts: TextExplanation[]; files: string[] };

/** Explain `inputs` (image paths, or texts for a text classifier folder) with `model`, into `o.out`. */
export async function explainToFolder(
  model: string,
  inputs: readonly string[],
  o: ExplainFolderOptions,
): Promise<FolderExplanation> {
  if (isTextClassifierFolder(model)) return textsToFolder(model, inputs, o);
  const cam = await GradCam.create(model, o.layer ? { layer: o.layer } : {});
  const images: { explanation: ImageExplanation; overlay: string }[] = [];
  const taken = new Set<string>();
  let skipped = 0;
  try {
    const cls = o.class === undefined ? undefined : cam.classIndex(o.class);
    for (const image of inputs) {
      let e: ImageExplanation;
      try {
        e = await cam.explain(image, cls !== undefined ? { class: cls } : {});
      } catch (err) {
        // an unreadable image is reported and skipped
        if (!(err instanceof GraftError)) throw err;
        skipped++;
        o.onSkip?.(image, err);
        continue;
      }
      const file = outputName(o.out, image, taken);
      atomicWrite(file, e.overlay!);
      images.push({ explanation: e, overlay: file });
      o.onImage?.(e, file);
    }
  } finally {
    await cam.release();
  }
  return { kind: 'images', layer: cam.layer, images, skipped };
}

/** `<out>/<stem>.gradcam.png`, numbered when two inputs share a stem. */
function outputName(dir: string, image: string, taken: Set<string>): string {
  const stem = basename(image, extname(image)) || 'image';
  for (let k = 1; ; k++) {
    const file = join(dir, `${stem}${k > 1 ? `-${k}` : ''}.gradcam.png`);
    if (!taken.has(resolve(file))) {
      taken.add(resolve(file));
      return file;
    }
  }
}

async function textsToFolder(
  model: string,
  texts: readonly string[],
  o: ExplainFolderOptions,
): Promise<FolderExplanation> {
  if (o.layer)
    throw new GraftError('--layer is for image models (Grad-CAM); text attributions use the word embeddings');
  const res = await explainTexts(model, texts, o.class !== undefined ? { class: o.class } : {});
  const files = [join(o.out, 'attributions.json'), join(o.out, 'attributions.html')];
  atomicWrite(files[0]!, Buffer.from(`${JSON.stringify(res, null, 2)}\n`));
  atomicWrite(files[1]!, Buffer.from(attributionsHtml(res)));
  return { kind: 'texts', texts: res, files };
}
