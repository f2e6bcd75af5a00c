/** `graft train --mode features`: a head fitted on the frozen backbone's cached features. */
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { int, num } from './parse.js';
import { trainFeatureClassifier } from '../features/classifier.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { formatMetrics } from '../eval/metrics.js';
import type { TrainFlags } from './train.js';
import { HEAD_KINDS, type HeadKind } from '../heads/head.js';
import { GraftError } from '../util/errors.js';
import { int8PostStep } from './export.js';

/** `--head-grid a,b,c`: the values cross-validation tries for the head's hyperparameter. */
function headGrid(v: unknown, head: HeadKind): number[] | undefined {
  if (v === undefined) return undefined;
  const xs = String(v).split(',').map((t) => num(t.trim(), '--head-grid'));
  if (xs.some((x) => (head === 'mlp' ? !(x >= 0) : !(x > 0))))
    throw new GraftError(`--head-grid: values must be ${head === 'mlp' ? '≥ 0' : 'positive'}, got '${String(v)}'`);
  if (head === 'knn' && xs.some((x) => !Number.isInteger(x))) throw new GraftError(`--head-grid: k must be whole numbers for --head knn, got '${String(v)}'`);
  return xs;
}

const HEAD_PARAM: Record<HeadKind, string> = { logistic: 'l2', mlp: 'weight decay', ncm: 'temperature', knn: 'k' };

export async function featuresCommand(o: TrainFlags) {
  const data = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
  });
  const bar = o.json || !process.stderr.isTTY ? null : new cliProgress.SingleBar(
    { format: 'features |{bar}| {value}/{total} images | {cached} cached', stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const out = o.out ?? 'graft-classifier';
  const head = (o['head'] ?? 'logistic') as HeadKind;
  if (!HEAD_KINDS.includes(head)) throw new GraftError(`--head must be one of ${HEAD_KINDS.join(', ')}, got '${head}'`);
  const grid = headGrid(o['headGrid'], head);
  if (o['hidden'] !== undefined) {
    if (head !== 'mlp') throw new GraftError(`--hidden applies only to --head mlp (the head is '${head}')`);
    if (int(String(o['hidden']), '--hidden') < 1) throw new GraftError(`--hidden must be at least 1, got ${String(o['hidden'])}`);
  }
  const skippedNow: string[] = [];
  const { report } = await trainFeatureClassifier(o.model, data, {
    head,
    ...(grid && head === 'logistic' ? { grid } : {}),
    ...(head === 'mlp' ? { mlp: { ...(grid ? { weightDecays: grid } : {}), ...(o['hidden'] !== undefined ? { hidden: int(String(o['hidden']), '--hidden') } : {}) } } : {}),
    ...(grid && head === 'knn' ? { knn: { ks: grid } } : {}),
    ...(grid && head === 'ncm' ? { ncm: { temperatures: grid } } : {}),
    onSkip: (f) => skippedNow.push(`skipped ${f.path}: ${f.error}`),
    ...(o.node ? { node: o.node } : {}),
    ...(o.labelsPerClass ? { labelsPerClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    valFraction: num(o.valFraction, '--val-fraction'),
    testFraction: num(o.testFraction ?? '0.2', '--test-fraction'),
    seed: int(o.seed, '--seed'),
    batchSize: int(o.batchSize, '--batch-size'),
    ...(o.cache ? { cacheDir: o.cache } : {}),
    out,
    onProgress: (p) => {
      if (!bar) return;
      if (!started) { bar.start(p.total, 0, { cached: 0 }); started = true; }
      bar.update(p.examples, { cached: p.cached });
    },
  });
  bar?.stop();
  // --int8: the saved folder quantized too, calibrated on the training images, into OUT-int8
  const int8 = o['int8'] ? await int8PostStep(out, { images: data.inputs }, !!o.json) : undefined;
  if (o.json) {
    process.stdout.write(JSON.stringify(int8 ? { ...report, int8 } : report, null, 2) + '\n');
    return;
  }
  const x = report.extraction;
  const h = report.head;
  const name: Record<HeadKind, string> = { logistic: 'logistic regression', mlp: `MLP (${h.summary['hidden']} hidden units, ${h.summary['epochs']} epochs)`, ncm: 'nearest class mean', knn: 'k nearest neighbours' };
  const param = HEAD_PARAM[h.kind];
  const value = h.kind === 'logistic' ? h.summary['l2'] : h.kind === 'mlp' ? h.summary['weightDecay'] : h.kind === 'ncm' ? h.summary['temperature'] : h.summary['k'];
  const how = h.cv.length === 0 ? 'given' : h.kind === 'knn' ? 'chosen by leave-one-out cross-validation' : `chosen by ${h.folds}-fold cross-validation`;
  process.stdout.write(
    skippedNow.map((l) => l + '\n').join('') +
    `features: ${report.featureDim}-d at '${report.featureNode}' for ${x.examples} images (${x.computed} computed, ${x.cached} from the cache${x.skipped ? `, ${x.skipped} unreadable skipped` : ''}) in ${x.seconds.toFixed(1)} s\n` +
      `head: ${name[h.kind]} on ${report.examples.train} examples, ${param} ${value} ${how} in ${h.seconds.toFixed(1)} s\n` +
      (report.validation ? formatMetrics(report.validation, 'validation') : '') +
      (report.test ? formatMetrics(report.test, 'test') : '') +
      `saved ${out}/model.onnx and ${out}/labels.json\n` +
      (report.files ? `report: ${out}/report.html (confusion matrix, per-class bars) and ${out}/report.json\n` : ''),
  );
}

/** Flags only `--mode features` reads. */
export function featuresOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--head <kind>', 'features mode: the head: logistic regression, a small MLP trained through the engine, nearest class mean, or k nearest neighbours (for very few labels)').choices([...HEAD_KINDS]).default('logistic'))
    .option('--head-grid <values>', 'features mode: comma-separated values cross-validation tries for the head\'s hyperparameter (logistic: l2; mlp: weight decay; ncm: softmax temperature; knn: k)')
    .option('--hidden <n>', 'features mode, --head mlp: hidden units (default 128)')
    .option('--int8', 'features mode and text classification: also write an int8 (QDQ) copy of the saved folder to OUT-int8, calibrated on 200 training examples (as graft export --int8)');
}
