import cliProgress from 'cli-progress';
import { loadModel } from '../formats/load.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { evaluateClassifier } from '../features/classifier.js';
import { formatMetrics } from '../eval/metrics.js';
import { writeReport } from '../eval/report.js';
import { int } from './parse.js';

interface EvalFlags { model: string; data: string; labelsData?: string; maxPerClass?: string; batchSize: string; report?: string; json?: boolean }

/** `graft eval --model DIR --data D`: metrics of a saved classifier on a labelled dataset. */
export async function evalCommand(o: EvalFlags) {
  const data = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
  });
  const model = loadModel(o.model);
  const bar = o.json || !process.stderr.isTTY ? null : new cliProgress.SingleBar(
    { format: 'eval |{bar}| {value}/{total} images', stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  bar?.start(data.inputs.length, 0);
  const t0 = performance.now();
  const { metrics, skipped } = await evaluateClassifier(model, data, { batchSize: int(o.batchSize, '--batch-size'), onProgress: (d) => bar?.update(d) });
  bar?.stop();
  const seconds = (performance.now() - t0) / 1000;
  const files = o.report
    ? writeReport(o.report, metrics, { title: `Graft evaluation: ${o.model}`, model: o.model, data: o.data, details: { seconds: Number(seconds.toFixed(2)) }, skipped })
    : [];
  if (o.json) {
    process.stdout.write(JSON.stringify({ model: o.model, data: o.data, seconds, ...(files.length ? { report: files } : {}), skipped, metrics }, null, 2) + '\n');
    return;
  }
  for (const f of skipped) process.stdout.write(`skipped ${f.path}: ${f.error}\n`);
  process.stdout.write(formatMetrics(metrics, 'eval'));
  if (files.length) process.stdout.write(`report: ${files.join(', ')}\n`);
}
