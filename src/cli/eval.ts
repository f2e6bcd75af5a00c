/**
 * `graft eval --model M --data D`: metrics (and an HTML/JSON report) of a saved classifier on a
 * labelled dataset: the flags, one call into evaluateSavedClassifier (src/eval/saved.ts: an image
 * classifier on an image folder or IDX files, a text classifier folder on a CSV/TSV/JSONL table),
 * the progress bar and the metrics.
 */
import { formatMetrics, type Metrics } from '../eval/metrics.js';
import { evaluateSavedClassifier } from '../eval/saved.js';
import { column, int } from './parse.js';
import { progressBar } from '../util/progress.js';

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

/** `graft eval --model DIR --data D`: metrics of a saved classifier on a labelled dataset. */
export async function evalCommand(o: EvalFlags) {
  const bar = progressBar('eval |{bar}| {value}/{total} {unit}', { quiet: o.json });
  const r = await evaluateSavedClassifier(o.model, o.data, {
    ...(o.labelsData !== undefined ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass !== undefined ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
    batchSize: int(o.batchSize, '--batch-size'),
    ...(o.report !== undefined ? { report: o.report } : {}),
    ...(o.textColumn !== undefined ? { textColumn: column(o.textColumn) } : {}),
    ...(o.labelColumn !== undefined ? { labelColumn: column(o.labelColumn) } : {}),
    ...(o.maxLength !== undefined ? { maxLength: int(o.maxLength, '--max-length') } : {}),
    onProgress: (done, total, unit) => bar?.update(done, total, { unit }),
    onEnd: () => bar?.stop(),
  });
  const report = r.files.length ? { report: r.files } : {};
  if (o.json) {
    const shown =
      r.kind === 'images'
        ? { model: r.model, data: r.data, seconds: r.seconds, ...report, skipped: r.skipped, metrics: r.metrics }
        : {
            model: r.model,
            data: r.data,
            mode: r.mode,
            maxLength: r.maxLength,
            seconds: r.seconds,
            ...report,
            metrics: r.metrics,
          };
    process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    return;
  }
  if (r.kind === 'images') for (const f of r.skipped) process.stdout.write(`skipped ${f.path}: ${f.error}\n`);
  printMetrics(r.metrics, r.files);
}

function printMetrics(metrics: Metrics, files: string[]): void {
  process.stdout.write(formatMetrics(metrics, 'eval'));
  if (files.length) process.stdout.write(`report: ${files.join(', ')}\n`);
}
