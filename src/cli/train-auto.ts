/**
 * `graft train --mode auto` (the default): the frozen-feature head and fine-tuned variants compared
 * on folds of the training split (src/finetune/auto.ts), the chosen one fitted and saved; a summary
 * of every candidate's fold accuracy and the reason, in the stdout summary, --json and report.json/html.
 * CSV pixel data (no image folder, no IDX) trains with --mode finetune, as before.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { int, num, column } from './parse.js';
import type { TrainFlags } from './train.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { imageFinetuneOptionsFrom } from './train-finetune-images.js';
import { finetuneCommand } from './train-finetune.js';
import { trainAuto, trainTextAuto, scoreTextClassifier, writeAutoReport, type AutoSelection, type AutoCandidate } from '../finetune/auto.js';
import { formatMetrics, type Metrics } from '../eval/metrics.js';
import { readTextTable, subsetTable, loadSpamAssassin } from '../data/text-table.js';
import { stratifiedSplit } from '../data/splits.js';
import { openCache } from '../features/cache.js';
import { loadModelFolderSync } from '../text/model-folder.js';
import { saveTextClassifier } from '../text/saved.js';
import type { Pooling } from '../text/encoder.js';
import { GraftError } from '../util/errors.js';

/** `--budget MINUTES`. */
function budgetOf(o: TrainFlags): number | undefined {
  if (o['budget'] === undefined) return undefined;
  const b = num(String(o['budget']), '--budget');
  if (!(b > 0)) throw new GraftError(`--budget must be a positive number of minutes, got ${String(o['budget'])}`);
  return b;
}

/** Is `data` image data (an image folder or IDX) rather than a CSV of pixels? */
function isImageData(o: TrainFlags): boolean {
  if (o.labelsData) return true;
  if (existsSync(o.data) && statSync(o.data).isDirectory()) return true;
  return /idx\d-ubyte(\.gz)?$/.test(o.data);
}

/** The summary lines every auto run prints: one per candidate, then the choice and its reason. */
export function selectionLines(s: AutoSelection): string[] {
  const lines = [`--mode auto: ${s.folds}-fold cross-validation on the ${s.trainExamples} training examples (the test split is not used to choose)`];
  for (const c of s.candidates) lines.push(`  ${candidateLine(c)}`);
  lines.push(s.reason);
  return lines;
}

function candidateLine(c: AutoCandidate): string {
  return c.folds
    ? `${c.method.padEnd(9)} mean fold accuracy ${c.mean!.toFixed(4)}  [${c.folds.map((a) => a.toFixed(3)).join(' ')}]  ${c.description} (${c.seconds.toFixed(1)} s)`
    : `${c.method.padEnd(9)} skipped: ${c.skipped}  (${c.description})`;
}

export async function autoCommand(o: TrainFlags): Promise<void> {
  if (o['textColumn'] === undefined && !isImageData(o)) {
    // CSV pixel data: --mode finetune, exactly as before auto became the default
    if (!o.json && process.stderr.isTTY) process.stderr.write('--mode auto compares methods on image folders, IDX images and text; CSV pixel data trains with --mode finetune\n');
    return finetuneCommand({ ...o, mode: 'finetune' });
  }
  if (o['lrFind']) throw new GraftError('--lr-find applies to --mode finetune: give --mode finetune');
  if (o['head'] !== undefined && o['head'] !== 'logistic') throw new GraftError(`--head ${String(o['head'])} applies to --mode features: --mode auto's frozen-feature candidate is the logistic head`);
  if (o['textColumn'] !== undefined) return autoTextCommand(o);
  const budget = budgetOf(o);
  const data = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
  });
  const out = o.out ?? 'graft-classifier';
  const ft = imageFinetuneOptionsFrom(o);
  const say = (s: string) => { if (!o.json && process.stderr.isTTY) process.stderr.write(s + '\n'); };
  const r = await trainAuto(o.model, data, {
    ...(o.labelsPerClass ? { labelsPerClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    valFraction: num(o.valFraction, '--val-fraction'), testFraction: num(o.testFraction ?? '0.2', '--test-fraction'), seed: int(o.seed, '--seed'),
    ...(o.cache ? { cacheDir: o.cache } : {}), out,
    ...(o['folds'] !== undefined ? { folds: int(String(o['folds']), '--folds') } : {}),
    ...(budget !== undefined ? { budgetMinutes: budget } : {}),
    features: { ...(o.node ? { node: o.node } : {}), batchSize: int(o.batchSize, '--batch-size') },
    finetune: ft,
    onCandidate: (c) => say(`candidate ${candidateLine(c)}`),
  });
  if (o.json) {
    process.stdout.write(JSON.stringify({ mode: 'auto', chosen: r.selection.chosen, auto: r.selection, test: r.test, validation: r.validation, training: r.features?.report ?? r.finetuned?.report, out }, null, 2) + '\n');
    return;
  }
  process.stdout.write([
    ...selectionLines(r.selection),
    ...(r.test ? [formatMetrics(r.test, 'test').trimEnd()] : r.validation ? [formatMetrics(r.validation, 'validation').trimEnd()] : []),
    `saved ${join(out, 'model.onnx')} and ${join(out, 'labels.json')}; report: ${join(out, 'report.html')} and ${join(out, 'report.json')} (every candidate's fold scores)`,
  ].join('\n') + '\n');
}

async function autoTextCommand(o: TrainFlags): Promise<void> {
  const budget = budgetOf(o);
  const m = loadModelFolderSync(o.model);
  const maxLength = o['maxLength'] ? int(o['maxLength'] as string, '--max-length') : Math.min(128, m.tokenizer.modelMaxLength);
  if (m.maxPositions && maxLength > m.maxPositions) throw new GraftError(`--max-length ${maxLength} exceeds the model's ${m.maxPositions} positions`);
  const pooling = (o['pooling'] as Pooling | undefined) ?? 'mean';
  const labelColumn = o['labelColumn'] as string | undefined;
  const table = o.data === 'spam-assassin' ? loadSpamAssassin() : readTextTable(o.data, { textColumn: column(o['textColumn'] as string), ...(labelColumn !== undefined ? { labelColumn: column(labelColumn) } : {}) });
  const seed = int(o.seed, '--seed');
  const split = stratifiedSplit(table.y, {
    testFraction: num(o.testFraction ?? '0.25', '--test-fraction'),
    ...(o.labelsPerClass ? { perClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    seed,
  });
  const train = subsetTable(table, split.train), test = subsetTable(table, split.test);
  const out = o.out ?? 'graft-text-classifier';
  const say = (s: string) => { if (!o.json && process.stderr.isTTY) process.stderr.write(s + '\n'); };
  const warn = (msg: string) => process.stderr.write(msg + '\n');
  const t0 = Date.now();
  const r = await trainTextAuto(m, train.texts, train.y, {
    classes: table.classes.length, pooling, maxLength, seed, lr: num(o.lr, '--lr'), warn,
    ...(o['folds'] !== undefined ? { folds: int(String(o['folds']), '--folds') } : {}),
    ...(budget !== undefined ? { budgetMinutes: budget } : {}),
    ...(o.cache ? { cache: openCache(o.cache) } : {}),
    onCandidate: (c) => say(`candidate ${candidateLine(c)}`),
  });
  const metrics: Metrics | undefined = test.texts.length ? await scoreTextClassifier(r.classifier, m, test.texts, test.y, table.classes, maxLength) : undefined;
  saveTextClassifier(r.classifier, out, { from: o.model, labels: table.classes, settings: { maxLength, pooling, mode: r.mode } });
  const report = { mode: 'auto', chosen: r.mode, model: o.model, data: o.data, classes: table.classes, train: train.texts.length, test: metrics, maxLength, pooling, auto: r.selection, seconds: (Date.now() - t0) / 1000 };
  writeAutoReport(out, r.selection, report, metrics, 'test', o.model);
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  process.stdout.write([
    ...selectionLines(r.selection),
    ...(metrics ? [formatMetrics(metrics, 'test').trimEnd()] : []),
    `saved ${out}/model.onnx with its tokenizer and labels.json (mode ${r.mode}); report: ${join(out, 'report.html')} and ${join(out, 'report.json')}`,
  ].join('\n') + '\n');
}
