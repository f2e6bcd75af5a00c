/**
 * One call from a classifier folder and calibration data on disk to its int8 copy (`graft export
 * --int8`): `exportInt8FromData` reads the calibration examples (images from a folder or IDX files,
 * or a text table's text column for a text classifier folder), by default the data the folder's
 * report.json says it was trained on, and runs exportInt8 (./quantize.ts). Errors name the flag.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLabelledImages } from '../data/labelled-images.js';
import { readTextData } from '../data/text-table.js';
import { isTextClassifierFolder } from '../text/saved.js';
import { GraftError } from '../util/errors.js';
import { exportInt8, type CalibrationSet, type Int8ExportOptions, type Int8Report } from './quantize.js';

export interface CalibrationDataOptions {
  /** IDX images: the labels file (default: guessed from the images file name). */
  labelsData?: string;
  /** Text classifiers: the table's text column, and its label column (header names, JSONL fields or 0-based indices). */
  textColumn?: string | number;
  labelColumn?: string | number;
}

/**
 * What the report.json says of the training: its training section's fields over the report's own
 * (a report without a training section names its data at the top); {} when there is none or it does
 * not parse.
 */
function trainingReport(dir: string): Record<string, unknown> {
  const p = join(dir, 'report.json');
  if (!existsSync(p)) return {};
  try {
    const r = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
    const t = r['training'];
    return { ...r, ...(t && typeof t === 'object' ? (t as Record<string, unknown>) : {}) };
  } catch {
    return {};
  }
}

/** The training data a report names, when it still exists (or is the bundled spam-assassin). */
function dataIn(t: Record<string, unknown>): string | undefined {
  const d = t['data'];
  return typeof d === 'string' && (existsSync(d) || d === 'spam-assassin') ? d : undefined;
}

/** The data a folder was trained on, when its report.json names it and it still exists (or is the bundled spam-assassin). */
export function trainingDataOf(dir: string): string | undefined {
  return dataIn(trainingReport(dir));
}

/** A text classifier's training columns, as its training report records them. */
function columnsIn(t: Record<string, unknown>): Pick<CalibrationDataOptions, 'textColumn' | 'labelColumn'> {
  const col = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? v : undefined);
  const textColumn = col(t['textColumn']),
    labelColumn = col(t['labelColumn']);
  return {
    ...(textColumn !== undefined ? { textColumn } : {}),
    ...(labelColumn !== undefined ? { labelColumn } : {}),
  };
}

/**
 * Calibration examples from a dataset path: images (folder, IDX) or a text table's text column (default:
 * the columns the classifier was trained on, when `data` is its training data).
 */
export function calibrationSet(modelDir: string, data: string, o: CalibrationDataOptions = {}): CalibrationSet {
  if (isTextClassifierFolder(modelDir)) {
    const t = trainingReport(modelDir);
    const trained = data === dataIn(t) ? columnsIn(t) : {};
    const textColumn = o.textColumn ?? trained.textColumn;
    const labelColumn = o.labelColumn ?? (o.textColumn === undefined ? trained.labelColumn : undefined);
    if (textColumn === undefined && data !== 'spam-assassin')
      throw new GraftError(`${modelDir} is a text classifier: give --text-column for the calibration file ${data}`);
    return {
      texts: readTextData(data, {
        ...(textColumn !== undefined ? { textColumn } : {}),
        ...(labelColumn !== undefined ? { labelColumn } : {}),
      }).texts,
    };
  }
  return { images: loadLabelledImages(data, o.labelsData ? { labelsData: o.labelsData } : {}).inputs };
}

/**
 * The classifier folder `modelDir` quantized to int8 in `out`, calibrated on `calibration` (default:
 * its training data). Returns the report and the data it was calibrated on.
 */
export async function exportInt8FromData(
  modelDir: string,
  out: string,
  o: CalibrationDataOptions & Int8ExportOptions & { calibration?: string } = {},
): Promise<{ report: Int8Report; data: string }> {
  const { calibration, labelsData, textColumn, labelColumn, ...int8 } = o;
  const data = calibration ?? trainingDataOf(modelDir);
  if (!data)
    throw new GraftError(
      `${modelDir}: give --calibration DATA (training images or texts to calibrate the activation ranges on)`,
      'its report.json names no training data that still exists',
    );
  const set = calibrationSet(modelDir, data, {
    ...(labelsData !== undefined ? { labelsData } : {}),
    ...(textColumn !== undefined ? { textColumn } : {}),
    ...(labelColumn !== undefined ? { labelColumn } : {}),
  });
  return { report: await exportInt8(modelDir, out, set, int8), data };
}
