/**
 * `graft eval --model M --data D`: metrics (and an HTML/JSON report) of a saved classifier on a
 * labelled dataset. An image classifier reads an image folder or IDX files; a text classifier folder
 * (from `graft train --text-column …`) reads a CSV/TSV/JSONL table named by --text-column and
 * --label-column, as training does.
 */
import { join } from 'node:path';
import { loadModel } from '../formats/load.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { readTextTable, subsetTable } from '../data/text-table.js';
import { evaluateClassifier } from '../features/classifier.js';
import { formatMetrics, type Metrics } from '../eval/metrics.js';
import { writeReport, type ReportInfo } from '../eval/report.js';
import { evaluateTextClassifier } from '../eval/text.js';
import { isTextClassifierFolder, loadTextClassifier } from '../text/saved.js';
import { configPositions, readTextConfig } from '../text/model-folder.js';
import { GraftError } from '../util/errors.js';
import { column, int } from './parse.js';
import { progressBar, type ProgressBar } from '../util/progress.js';

interface EvalFlags {
  model: string;
  data: string;
  labelsData?: string;
  maxPerClass?: string;
  batchSize: string;
  report?: string;
  json?: boolean;
  textColumn?: string;
  labelColumn?: string;
  maxLength?: string;
}

/** The flags only a text classifier reads. */
const TEXT_FLAGS: [keyof EvalFlags, string][] = [
  ['textColumn', '--text-column'],
  ['labelColumn', '--label-column'],
  ['maxLength', '--max-length'],
];

/** `graft eval --model DIR --data D`: metrics of a saved classifier on a labelled dataset. */
export async function evalCommand(o: EvalFlags) {
  if (isTextClassifierFolder(o.model)) return evalText(o);
  const given = TEXT_FLAGS.filter(([k]) => o[k] !== undefined).map(([, f]) => f);
  if (given.length)
    throw new GraftError(
      `${given.join(', ')} appl${given.length === 1 ? 'ies' : 'y'} to text classifiers, and ${o.model} is not one (a text classifier folder holds model.onnx and tokenizer.json)`,
      'drop the text flags to evaluate an image classifier on an image folder or IDX files',
    );
  const data = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
  });
  const model = loadModel(o.model);
  const bar = evalBar(o, 'images');
  const total = data.inputs.length;
  bar?.update(0, total);
  const t0 = performance.now();
  const { metrics, skipped } = await evaluateClassifier(model, data, {
    batchSize: int(o.batchSize, '--batch-size'),
    onProgress: (d) => bar?.update(d, total),
  });
  bar?.stop();
  const seconds = (performance.now() - t0) / 1000;
  const files = o.report
    ? writeReport(reportPath(o.report), metrics, {
        title: `Graft evaluation: ${o.model}`,
        model: o.model,
        data: o.data,
        details: { seconds: Number(seconds.toFixed(2)) },
        skipped,
      })
    : [];
  if (o.json) {
    process.stdout.write(
      JSON.stringify(
        { model: o.model, data: o.data, seconds, ...(files.length ? { report: files } : {}), skipped, metrics },
        null,
        2,
      ) + '\n',
    );
    return;
  }
  for (const f of skipped) process.stdout.write(`skipped ${f.path}: ${f.error}\n`);
  printMetrics(metrics, files);
}

/** A text classifier folder on a labelled text table (the reader and column flags of `graft train --text-column`). */
async function evalText(o: EvalFlags): Promise<void> {
  if (o.textColumn === undefined)
    throw new GraftError(
      `${o.model} is a text classifier: name the text column of ${o.data} with --text-column (and the label column with --label-column)`,
      'header names, JSONL fields, or 0-based indices for headerless files, as for graft train --text-column',
    );
  if (o.labelsData !== undefined)
    throw new GraftError(`--labels-data applies to IDX image data, not to the text classifier ${o.model}`);
  const c = loadTextClassifier(o.model);
  const batchSize = int(o.batchSize, '--batch-size');
  if (batchSize < 1) throw new GraftError(`--batch-size must be at least 1, got ${batchSize}`);
  let maxLength = c.settings.maxLength;
  if (o.maxLength !== undefined) {
    maxLength = int(o.maxLength, '--max-length');
    const positions = configPositions(readTextConfig(o.model));
    if (maxLength < 1) throw new GraftError(`--max-length must be at least 1, got ${maxLength}`);
    if (positions && maxLength > positions)
      throw new GraftError(`--max-length ${maxLength} exceeds the model's ${positions} positions`);
  }
  let table = readTextTable(o.data, {
    textColumn: column(o.textColumn),
    ...(o.labelColumn !== undefined ? { labelColumn: column(o.labelColumn) } : {}),
  });
  if (o.maxPerClass) {
    const n = int(o.maxPerClass, '--max-per-class');
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
  const bar = evalBar(o, 'texts');
  // Truncation warnings (one per onnxruntime batch) are held, then printed below the bar, condensed.
  const held: string[] = [];
  const warn = (m: string) => void held.push(m);
  bar?.update(0, table.texts.length);
  const t0 = performance.now();
  let metrics: Metrics;
  try {
    ({ metrics } = await evaluateTextClassifier(c, table.texts, table.labels, {
      maxLength,
      batchSize,
      source: table.source,
      where: o.data,
      rows: table.rows,
      warn,
      ...(bar ? { onProgress: (d: number) => bar.update(d, table.texts.length) } : {}),
    }));
  } finally {
    bar?.stop();
    printWarnings(held, table.source, maxLength);
  }
  const seconds = (performance.now() - t0) / 1000;
  const info: ReportInfo = {
    title: `Graft evaluation: ${o.model}`,
    model: o.model,
    data: o.data,
    details: { seconds: Number(seconds.toFixed(2)), mode: c.settings.mode, 'max length': maxLength },
  };
  const files = o.report ? writeReport(reportPath(o.report), metrics, info) : [];
  if (o.json) {
    process.stdout.write(
      JSON.stringify(
        {
          model: o.model,
          data: o.data,
          mode: c.settings.mode,
          maxLength,
          seconds,
          ...(files.length ? { report: files } : {}),
          metrics,
        },
        null,
        2,
      ) + '\n',
    );
    return;
  }
  printMetrics(metrics, files);
}

/** --report: a file OUT.html (OUT.json beside it) or OUT.json; a path without those extensions is a folder receiving report.html and report.json. */
function reportPath(p: string): string {
  return /\.(html?|json)$/i.test(p) ? p : join(p, 'report.html');
}

/** The first few truncation warnings as they are, then one line counting all of them. */
function printWarnings(held: readonly string[], source: string, maxLength: number, shown = 3): void {
  for (const m of held.slice(0, shown)) process.stderr.write(m + '\n');
  if (held.length <= shown) return;
  const total = held.reduce((s, m) => s + Number(/truncated (\d+) text/.exec(m)?.[1] ?? 0), 0);
  process.stderr.write(
    `warning: ${source}: truncated ${total} text(s) in all to ${maxLength} tokens (${held.length - shown} more warnings not shown)\n`,
  );
}

function evalBar(o: EvalFlags, unit: string): ProgressBar | null {
  return progressBar(`eval |{bar}| {value}/{total} ${unit}`, { quiet: o.json });
}

function printMetrics(metrics: Metrics, files: string[]): void {
  process.stdout.write(formatMetrics(metrics, 'eval'));
  if (files.length) process.stdout.write(`report: ${files.join(', ')}\n`);
}
