/** `graft train --mode finetune`: train the network itself on a labelled dataset. */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { finetuneImageCsv } from '../finetune/classifier.js';
import { int, num } from './parse.js';
import { parseTrainable, type TrainFlags } from './train.js';

export async function finetuneCommand(o: TrainFlags) {
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


/** Flags only `--mode finetune` reads (none yet beyond the shared ones in main.ts). */
export function finetuneOptions(cmd: Command): Command {
  return cmd;
}
