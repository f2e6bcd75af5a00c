/** `graft train --mode features`: a head fitted on the frozen backbone's cached features. */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { int, num } from './parse.js';
import { trainFeatureClassifier } from '../features/classifier.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { formatMetrics } from '../eval/metrics.js';
import type { TrainFlags } from './train.js';

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
  const { report } = await trainFeatureClassifier(o.model, data, {
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
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const x = report.extraction;
  process.stdout.write(
    `features: ${report.featureDim}-d at '${report.featureNode}' for ${x.examples} images (${x.computed} computed, ${x.cached} from the cache) in ${x.seconds.toFixed(1)} s\n` +
      `head: logistic regression on ${report.examples.train} examples, l2 ${report.head.l2} chosen by ${report.head.folds}-fold cross-validation in ${report.head.seconds.toFixed(1)} s\n` +
      (report.validation ? formatMetrics(report.validation, 'validation') : '') +
      (report.test ? formatMetrics(report.test, 'test') : '') +
      `saved ${out}/model.onnx and ${out}/labels.json\n`,
  );
}

/** Flags only `--mode features` reads (none yet beyond the shared ones in main.ts). */
export function featuresOptions(cmd: Command): Command {
  return cmd;
}
