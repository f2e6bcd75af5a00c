import cliProgress from 'cli-progress';
import { finetuneImageCsv } from '../finetune/classifier.js';
import type { TrainableSpec } from '../train/training-graph.js';
import { int, num } from './parse.js';
import { trainFeatureClassifier } from '../features/classifier.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { formatMetrics } from '../eval/metrics.js';

interface TrainFlags {
  model: string; data: string; mode: string; out?: string; labelsData?: string; cache?: string; node?: string; valFraction: string; maxPerClass?: string; epochs: string; batchSize: string; lr: string; optimizer: 'adamw' | 'sgd';
  momentum: string; weightDecay: string; clipNorm?: string; labelSmoothing: string; trainable: string; labelsPerClass?: string;
  testFraction?: string; preprocess: 'mnist' | 'stretch'; pixelMax: string; seed: string; json?: boolean;
}

export function parseTrainable(s: string): TrainableSpec {
  if (s === 'all') return 'all';
  if (s.startsWith('after:')) return { after: s.slice(6) };
  return { pattern: s };
}

export async function trainCommand(o: TrainFlags) {
  if (o.mode === 'features') return featuresCommand(o);
  const epochs = int(o.epochs, '--epochs');
  const bar = o.json || !process.stderr.isTTY ? null : new cliProgress.SingleBar(
    { format: 'epoch {epoch} |{bar}| {value}/{total} steps | loss {loss}', stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  const wd = num(o.weightDecay, '--weight-decay');
  const report = await finetuneImageCsv(o.model, o.data, {
    epochs,
    batchSize: int(o.batchSize, '--batch-size'),
    lr: num(o.lr, '--lr'),
    optimizer: o.optimizer === 'sgd' ? { kind: 'sgd', momentum: num(o.momentum, '--momentum'), weightDecay: wd } : { kind: 'adamw', weightDecay: wd },
    ...(o.clipNorm ? { clipNorm: num(o.clipNorm, '--clip-norm') } : {}),
    loss: { kind: 'cross-entropy', labelSmoothing: num(o.labelSmoothing, '--label-smoothing') },
    trainable: parseTrainable(o.trainable),
    ...(o.labelsPerClass ? { labelsPerClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    testFraction: num(o.testFraction ?? '0.3', '--test-fraction'),
    preprocess: o.preprocess,
    pixelMax: num(o.pixelMax, '--pixel-max'),
    seed: int(o.seed, '--seed'),
    out: o.out ?? 'graft-model.onnx',
    onStart: ({ totalSteps }) => bar?.start(totalSteps, 0, { epoch: 1, loss: '-' }),
    onStep: ({ epoch, step, loss }) => bar?.update(step, { epoch, loss: loss.toFixed(4) }),
    onEpoch: ({ epoch, loss, valAccuracy }) => {
      if (!bar && !o.json) process.stderr.write(`epoch ${epoch}: mean loss ${loss.toFixed(4)}${valAccuracy !== undefined ? `, validation accuracy ${valAccuracy.toFixed(4)}` : ''}\n`);
    },
  });
  bar?.stop();
  if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else
    process.stdout.write(
      `trained on ${report.trainExamples} examples in ${report.seconds.toFixed(1)} s (${report.steps} steps)\n` +
        `test accuracy: ${report.testAccuracy.toFixed(4)} (before fine-tuning: ${report.zeroShotAccuracy.toFixed(4)}) on ${report.testExamples} held-out examples\n` +
        `saved ${report.out}\n`,
    );
}

async function featuresCommand(o: TrainFlags) {
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
