/**
 * One call from a saved classifier and a labelled dataset to its metrics and report (`graft eval`):
 * `evaluateSavedClassifier` evaluates an image classifier on an image folder or IDX files
 * (src/features/classifier.ts evaluateClassifier), or a text classifier folder (from `graft train
 * text|setfit|prompt`) on a CSV/TSV/JSONL table read with the text and label columns, as training
 * reads it (./text.ts). With `report` it writes report.html and report.json. Truncation warnings of
 * a text run are held until the run ends, then given condensed. Errors name the `graft eval` flag.
 */
import { join } from 'node:path';
import { loadModel } from '../formats/load.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { readTextTable, subsetTable } from '../data/text-table.js';
import { evaluateClassifier } from '../features/classifier.js';
import { isTextClassifierFolder, loadTextClassifier } from '../text/saved.js';
import { configPositions, readTextConfig } from '../text/model-folder.js';
import { GraftError } from '../util/errors.js';
import type { Metrics } from './metrics.js';
import { writeReport, type ReportInfo } from './report.js';
import { evaluateTextClassifier } from './text.js';

export interface EvaluateSavedOptions {
  /** IDX data: the labels file (default: guessed from the images file name). */
  labelsData?: string;
  /** Only the first N examples of each class. */
  maxPerClass?: number;
  /** Examples per onnxruntime run (default 32 for images, 64 for texts). */
  batchSize?: number;
  /** Write a report: OUT.html (OUT.json beside it), OUT.json, or a folder receiving report.html and report.json. */
  report?: string;
  /** Text classifiers: the table's text and label columns (header names, JSONL fields or 0-based indices). */
  textColumn?: string | number;
  labelColumn?: string | number;
  /** Text classifiers: longest input in tokens (default: the classifier's own). */
  maxLength?: number;
  /** Examples evaluated so far (after each batch), of `total` images or texts. */
  onProgress?: (done: number, total: number, unit: 'images' | 'texts') => void;
  /** The evaluation ended (before any held warning is given). */
  onEnd?: () => void;
  /** Condensed truncation warnings, given after `onEnd` (default: printed on stderr). */
  warn?: (m: string) => void;
}

interface EvaluatedBase {
  model: string;
  data: string;
  seconds: number;
  /** The report files written. */
  files: string[];
  metrics: Metrics;
}

export type SavedEvaluation =
  | (EvaluatedBase & { kind: 'images'; skipped: { path: string; error: string }[] })
  | (EvaluatedBase & { kind: 'text'; mode: string; maxLength: number });

/** The settings only a text classifier reads, with their flags. */
const TEXT_SETTINGS: [keyof EvaluateSavedOptions, string][] = [
  ['textColumn', '--text-column'],
  ['labelColumn', '--label-column'],
  ['maxLength', '--max-length'],
];

/** A report path: OUT.html, OUT.json, or a folder receiving report.html (report.json beside it). */
function reportPath(p: string): string {
  return /\.(html?|json)$/i.test(p) ? p : join(p, 'report.html');
}

/** Metrics of the saved classifier `model` (a file or a text classifier folder) on the labelled `data`. */
export async function evaluateSavedClassifier(
  model: string,
  data: string,
  o: EvaluateSavedOptions = {},
): Promise<SavedEvaluation> {
  if (isTextClassifierFolder(model)) return evaluateText(model, data, o);
  const given = TEXT_SETTINGS.filter(([k]) => o[k] !== undefined).map(([, f]) => f);
  if (given.length)
    throw new GraftError(
      `${given.join(', ')} appl${given.length === 1 ? 'ies' : 'y'} to text classifiers, and ${model} is not one (a text classifier folder holds model.onnx and tokenizer.json)`,
      'drop the text flags to evaluate an image classifier on an image folder or IDX files',
    );
  const d = loadLabelledImages(data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: o.maxPerClass } : {}),
  });
  const g = loadModel(model);
  const total = d.inputs.length;
  o.onProgress?.(0, total, 'images');
  const t0 = performance.now();
  let r: Awaited<ReturnType<typeof evaluateClassifier>>;
  try {
    r = await evaluateClassifier(g, d, {
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
      onProgress: (done) => o.onProgress?.(done, total, 'images'),
    });
  } finally {
    o.onEnd?.();
  }
  const { metrics, skipped } = r;
  const seconds = (performance.now() - t0) / 1000;
  const files = o.report
    ? writeReport(reportPath(o.report), metrics, {
        title: `Graft evaluation: ${model}`,
        model,
        data,
        details: { seconds: Number(seconds.toFixed(2)) },
        skipped,
      })
    : [];
  return { kind: 'images', model, data, seconds, files, skipped, metrics };
}

/** A text classifier folder on a labelled text table. */
async function evaluateText(model: string, data: string, o: EvaluateSavedOptions): Promise<SavedEvaluation> {
  if (o.textColumn === undefined)
    throw new GraftError(
      `${model} is a text classifier: name the text column of ${data} with --text-column (and the label column with --label-column)`,
      'header names, JSONL fields, or 0-based indices for headerless files, as for graft train --text-column',
    );
  if (o.labelsData !== undefined)
    throw new GraftError(`--labels-data applies to IDX image data, not to the text classifier ${model}`);
  const c = loadTextClassifier(model);
  const batchSize = o.batchSize ?? 64;
  if (batchSize < 1) throw new GraftError(`--batch-size must be at least 1, got ${batchSize}`);
  let maxLength = c.settings.maxLength;
  if (o.maxLength !== undefined) {
    maxLength = o.maxLength;
    const positions = configPositions(readTextConfig(model));
    if (maxLength < 1) throw new GraftError(`--max-length must be at least 1, got ${maxLength}`);
    if (positions && maxLength > positions)
      throw new GraftError(`--max-length ${maxLength} exceeds the model's ${positions} positions`);
  }
  let table = readTextTable(data, {
    textColumn: o.textColumn,
    ...(o.labelColumn !== undefined ? { labelColumn: o.labelColumn } : {}),
  });
  if (o.maxPerClass !== undefined) {
    const n = o.maxPerClass;
    if (n < 1) throw new GraftError(`--max-per-class must be at least 1, got ${n}`);
    const seen = new Map<string, number>();
    table = subsetTable(
      table,
      table.labels.flatMap((l, i) => {
        const k = seen.get(l) ?? 0;
        seen.set(l, k + 1);
        return k < n ? [i] : [];
      }),
    );
  }
  // Truncation warnings (one per onnxruntime batch) are held, then given after the run, condensed.
  const held: string[] = [];
  const total = table.texts.length;
  o.onProgress?.(0, total, 'texts');
  const t0 = performance.now();
  let metrics: Metrics;
  try {
    ({ metrics } = await evaluateTextClassifier(c, table.texts, table.labels, {
      maxLength,
      batchSize,
      source: table.source,
      where: data,
      rows: table.rows,
      warn: (m) => void held.push(m),
      ...(o.onProgress ? { onProgress: (d: number) => o.onProgress!(d, total, 'texts') } : {}),
    }));
  } finally {
    o.onEnd?.();
    const warn = o.warn ?? ((m: string) => void process.stderr.write(`${m}\n`));
    for (const m of condensedWarnings(held, table.source, maxLength)) warn(m);
  }
  const seconds = (performance.now() - t0) / 1000;
  const info: ReportInfo = {
    title: `Graft evaluation: ${model}`,
    model,
    data,
    details: { seconds: Number(seconds.toFixed(2)), mode: c.settings.mode, 'max length': maxLength },
  };
  const files = o.report ? writeReport(reportPath(o.report), metrics, info) : [];
  return { kind: 'text', model, data, mode: c.settings.mode, maxLength, seconds, files, metrics };
}

/** The first few truncation warnings as they are, then one line counting all of them. */
export function condensedWarnings(held: readonly string[], source: string, maxLength: number, shown = 3): string[] {
  const out = held.slice(0, shown);
  if (held.length <= shown) return out;
  const total = held.reduce((s, m) => s + Number(/truncated (\d+) text/.exec(m)?.[1] ?? 0), 0);
  out.push(
    `warning: ${source}: truncated ${total} text(s) in all to ${maxLength} tokens (${held.length - shown} more warnings not shown)`,
  );
  return out;
}
