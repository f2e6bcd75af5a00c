/**
 * One call from a pretrained image model and a labelled dataset to a saved, fine-tuned classifier:
 * `trainImageClassifier` picks the path the data needs and writes the same files either way.
 *   - A CSV of square grey pixel rows (optionally .gz): the whole network trains (finetuneImageCsv);
 *     a new head replaces the old output when the class counts differ.
 *   - An image folder (one subfolder per class) or IDX files: the top blocks (or the network from
 *     `cut`, or LoRA adapters) train on activations cached below the cut (finetuneImages).
 * Saved: a folder holding model.onnx, labels.json, report.html and report.json. A CSV run given an
 * `out` ending in .onnx writes that one file only (the form `graft train --mode finetune` used).
 * The learning-rate range test on the same split is `lrFindImageData`; `trainImageAuto` runs
 * src/finetune/auto.ts's comparison (frozen-feature head vs fine-tuned) on a dataset path.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadLabelledImages, type LabelledImages } from '../data/labelled-images.js';
import { writeReport } from '../eval/report.js';
import { atomicWrite } from '../util/atomic.js';
import type { StepInfo } from '../train/fit.js';
import { loadModel } from '../formats/load.js';
import type { LrFindOptions, LrFindResult } from '../train/lr-finder.js';
import { GraftError } from '../util/errors.js';
import { finetuneImageCsv, lrFindImageCsv, type FinetuneOptions, type FinetuneReport } from './classifier.js';
import { finetuneImages, lrFindImages, type ImageFinetuneOptions, type ImageFinetuneReport } from './image-finetune.js';
import { trainAuto, type ImageAutoOptions, type ImageAutoResult } from './auto.js';

/** Options of both paths; the CSV-only ones are marked. */
export interface TrainImagesOptions
  extends ImageFinetuneOptions,
    Pick<FinetuneOptions, 'preprocess' | 'pixelMax' | 'newHead' | 'onNewHead'> {
  /** IDX data: the labels file (default: guessed from the images file name). */
  labelsData?: string;
  /** Image data: use only the first N examples of each class. */
  maxPerClass?: number;
  /** Image data: train the whole network (the cut at the data input). */
  full?: boolean;
  /** Folder to write (default graft-finetuned); for CSV data an .onnx path writes that file only. */
  out?: string;
  /** After every step. */
  onStep?: (info: StepInfo) => void;
}

export type TrainImagesResult =
  | { data: 'csv'; report: FinetuneReport; files: string[] }
  | { data: 'images'; report: ImageFinetuneReport; files: string[]; images: LabelledImages };

export const IMAGE_TRAIN_DEFAULTS = { out: 'graft-finetuned', csvTestFraction: 0.3, imageTestFraction: 0.2 } as const;

/** Is `data` image data (an image folder, or IDX files) rather than a CSV of pixel rows? */
export function isImageData(data: string, labelsData?: string): boolean {
  if (labelsData) return true;
  if (existsSync(data) && statSync(data).isDirectory()) return true;
  return /idx\d-ubyte(\.gz)?$/.test(data);
}

/** CSV options from the shared ones (the image-only ones dropped). */
function csvOptions(o: TrainImagesOptions): FinetuneOptions {
  const {
    cut,
    topBlocks,
    views,
    augment,
    cacheDir,
    tolerance: _t,
    onCacheProgress: _c,
    labelsData,
    maxPerClass,
    full,
    out: _o,
    headLrMult: _h,
    headInit: _i,
    lora,
    probeGrid: _g,
    onStep,
    onEpoch,
    valFraction,
    ...rest
  } = o;
  const imageOnly = Object.entries({ cut, topBlocks, views, augment, cacheDir, labelsData, maxPerClass, full, lora })
    .filter(([, v]) => v !== undefined && v !== false)
    .map(([k]) => k);
  if (imageOnly.length)
    throw new GraftError(
      `${imageOnly.join(', ')} ${imageOnly.length > 1 ? 'apply' : 'applies'} to image folders and IDX data, not to a CSV of pixel rows`,
    );
  // the CSV path holds out a validation split only for early stopping
  return {
    ...rest,
    ...(rest.earlyStopping && valFraction !== undefined ? { valFraction } : {}),
    ...(onStep ? { onStep } : {}),
    ...(onEpoch ? { onEpoch } : {}),
  };
}

function loadImages(data: string, o: TrainImagesOptions): LabelledImages {
  return loadLabelledImages(data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: o.maxPerClass } : {}),
  });
}

/** Image options with `full` resolved to the cut at the data input. */
function imageOptions(model: string, o: TrainImagesOptions): ImageFinetuneOptions {
  const {
    labelsData: _l,
    maxPerClass: _m,
    full,
    preprocess: _p,
    pixelMax: _x,
    newHead: _n,
    onNewHead: _h,
    ...rest
  } = o;
  if (full) {
    if (o.cut !== undefined || o.topBlocks !== undefined)
      throw new GraftError('give only one of --cut, --top-blocks and --full');
    return { ...rest, cut: loadModel(model).dataInputs()[0]?.name ?? '' };
  }
  if (o.cut !== undefined && o.topBlocks !== undefined)
    throw new GraftError('give only one of --cut, --top-blocks and --full');
  return rest;
}

/** Fine-tune `model` on `data` and save the classifier (see the module doc). */
export async function trainImageClassifier(
  model: string,
  data: string,
  o: TrainImagesOptions = {},
): Promise<TrainImagesResult> {
  const out = o.out ?? IMAGE_TRAIN_DEFAULTS.out;
  if (!isImageData(data, o.labelsData)) {
    const single = /\.onnx$/i.test(out);
    const modelPath = single ? out : join(out, 'model.onnx');
    if (!single) mkdirSync(out, { recursive: true });
    const report = await finetuneImageCsv(model, data, {
      ...csvOptions(o),
      testFraction: o.testFraction ?? IMAGE_TRAIN_DEFAULTS.csvTestFraction,
      out: modelPath,
    });
    if (single) return { data: 'csv', report, files: [modelPath] };
    const labels = join(out, 'labels.json');
    atomicWrite(
      labels,
      Buffer.from(
        JSON.stringify(
          report.test.perClass.map((c) => c.label),
          null,
          2,
        ) + '\n',
      ),
    );
    const reports = writeReport(join(out, 'report.html'), report.test, {
      title: 'Graft fine-tuned classifier: test split',
      model,
      data,
      details: {
        'training examples': report.trainExamples,
        epochs: report.epochs,
        steps: report.steps,
        'accuracy before fine-tuning': report.zeroShotAccuracy.toFixed(4),
      },
      extra: { training: report },
    });
    return { data: 'csv', report, files: [modelPath, labels, ...reports] };
  }
  if (/\.onnx$/i.test(out))
    throw new GraftError(
      `--out ${out}: image fine-tuning saves a classifier folder (model.onnx and labels.json inside); give a folder name`,
    );
  const images = loadImages(data, o);
  const { report } = await finetuneImages(model, images, {
    ...imageOptions(model, o),
    testFraction: o.testFraction ?? IMAGE_TRAIN_DEFAULTS.imageTestFraction,
    out,
  });
  const files = report.export ? [report.export.path, report.export.labels] : [];
  const shown = report.test ?? report.validation;
  if (shown) {
    files.push(
      ...writeReport(join(out, 'report.html'), shown, {
        title: `Graft fine-tuned classifier: ${report.test ? 'test' : 'validation'} split`,
        model,
        data,
        details: {
          cut: report.cut,
          'training images': report.examples.train,
          views: report.views,
          epochs: report.epochs,
          steps: report.steps,
        },
        extra: { training: report },
      }),
    );
  }
  return { data: 'images', report, files, images };
}

/** The learning-rate range test on the training split trainImageClassifier would use. */
export async function lrFindImageData(
  model: string,
  data: string,
  o: TrainImagesOptions & LrFindOptions = {},
): Promise<LrFindResult & { data: 'csv' | 'images' }> {
  if (!isImageData(data, o.labelsData)) {
    const r = await lrFindImageCsv(model, data, {
      ...csvOptions(o),
      testFraction: o.testFraction ?? IMAGE_TRAIN_DEFAULTS.csvTestFraction,
      ...(o.steps !== undefined ? { steps: o.steps } : {}),
    });
    return { ...r, data: 'csv' };
  }
  const r = await lrFindImages(model, loadImages(data, o), {
    ...imageOptions(model, o),
    testFraction: o.testFraction ?? IMAGE_TRAIN_DEFAULTS.imageTestFraction,
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
  });
  return { ...r, data: 'images' };
}

/**
 * The frozen-feature head and fine-tuned variants compared on folds of the training split of an image
 * folder or IDX files, the chosen one fitted and saved with report.html/report.json (trainAuto).
 */
export async function trainImageAuto(
  model: string,
  data: string,
  o: ImageAutoOptions & { labelsData?: string; maxPerClass?: number } = {},
): Promise<ImageAutoResult & { out: string }> {
  if (!isImageData(data, o.labelsData))
    throw new GraftError(
      `${data}: auto compares methods on image folders, IDX images and text; a CSV of pixel rows trains with graft train images`,
    );
  const { labelsData: _l, maxPerClass: _m, ...rest } = o;
  const out = o.out ?? 'graft-classifier';
  return { ...(await trainAuto(model, loadImages(data, o), { ...rest, out })), out };
}
