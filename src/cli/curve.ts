/**
 * `graft curve`: accuracy vs labels per class for scratch, frozen-feature and fine-tuned training:
 * the flags, one call into curveFromFiles (src/eval/curve-files.ts; with --queue, its cells run on
 * `graft worker`s through src/scale/curve.ts), the progress bar and the table.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { int, num } from './parse.js';
import { progressBar } from '../util/progress.js';
import { curveMarkdown, CURVE_METHODS } from '../eval/curve.js';
import { curveFromFiles } from '../eval/curve-files.js';
import { curveOnQueue } from '../scale/curve.js';

export interface CurveFlags {
  model: string;
  data: string;
  labelsPerClass: string;
  seeds: string;
  methods: string;
  out: string;
  testFraction: string;
  steps: string;
  batchSize: string;
  lr: string;
  scratchLr: string;
  node?: string;
  preprocess: 'mnist' | 'stretch';
  pixelMax: string;
  json?: boolean;
  labelsData?: string;
  maxPerClass?: string;
  inputMax: string;
  queue?: string;
}

export async function curveCommand(o: CurveFlags) {
  const bar = progressBar('curve |{bar}| {value}/{total} runs | {method} {perClass}/class seed {seed}: {acc}', {
    quiet: o.json,
  });
  const { result: r, files } = await curveFromFiles(o.model, o.data, {
    budgets: o.labelsPerClass.split(',').map((s) => int(s.trim(), '--labels-per-class')),
    methods: o.methods.split(',').map((s) => s.trim()),
    out: o.out,
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
    inputMax: num(o.inputMax, '--input-max'),
    preprocess: o.preprocess,
    pixelMax: num(o.pixelMax, '--pixel-max'),
    seeds: int(o.seeds, '--seeds'),
    testFraction: num(o.testFraction, '--test-fraction'),
    minSteps: int(o.steps, '--steps'),
    batchSize: int(o.batchSize, '--batch-size'),
    finetuneLr: num(o.lr, '--lr'),
    scratchLr: num(o.scratchLr, '--scratch-lr'),
    ...(o.node ? { node: o.node } : {}),
    // --queue: each (seed, budget, method) a job on `graft worker`s; the examples go to a run file in --out
    ...(o.queue ? { run: curveOnQueue({ queue: o.queue, modelPath: o.model, dir: o.out }) } : {}),
    onProgress: (p) => {
      if (!bar) {
        if (!o.json)
          process.stderr.write(
            `${p.done}/${p.total} ${p.method} ${p.perClass}/class seed ${p.seed}: ${p.accuracy.toFixed(3)}\n`,
          );
        return;
      }
      bar.update(p.done, p.total, { method: p.method, perClass: p.perClass, seed: p.seed, acc: p.accuracy.toFixed(3) });
    },
  });
  bar?.stop();
  if (o.json) process.stdout.write(`${JSON.stringify({ ...r, files }, null, 2)}\n`);
  else process.stdout.write(`${curveMarkdown(r)}wrote ${files.join(', ')}\n`);
}

export function curveOptions(cmd: Command): Command {
  return cmd
    .requiredOption(
      '--model <path>',
      'pretrained classifier with an image input [batch, C, H, W] (.onnx, .tflite, TF.js, or a folder); CSV data: grey square [batch, 1, S, S]; the scratch method: square inputs',
    )
    .requiredOption(
      '--data <path>',
      'a CSV (optionally .gz) of square grey images (one row of pixels, then the label), IDX images (labels file beside them), or an image folder (one subfolder per class)',
    )
    .option('--labels-data <file>', 'IDX data: the labels file (default: guessed from the images file name)')
    .option(
      '--max-per-class <n>',
      'IDX / image folder: use only the first N examples of each class (every example is held in memory)',
    )
    .option(
      '--input-max <x>',
      'IDX / image folder, model without preprocessing metadata: value of a full-intensity pixel for the model (mnist.onnx: 255)',
      '255',
    )
    .option('--labels-per-class <list>', 'comma-separated label budgets per class', '1,2,5,10,20,50')
    .option('--seeds <n>', 'seeds (splits, picks, initializations) per budget', '3')
    .option('--methods <list>', `comma-separated, of ${CURVE_METHODS.join(', ')}`, CURVE_METHODS.join(','))
    .option('--out <dir>', 'folder for curve.json, curve.md and curve.svg', 'graft-curve')
    .option('--test-fraction <x>', 'fraction of each class held out for testing, per seed', '0.3')
    .option('--steps <n>', 'minimum optimizer steps of each trained network', '100')
    .option('--batch-size <n>', 'examples per step', '32')
    .option('--lr <x>', 'fine-tuning learning rate (AdamW)', '1e-3')
    .option('--scratch-lr <x>', 'from-scratch learning rate (AdamW)', '2e-3')
    .option('--node <name>', 'features method: value to cut the model at (default: the input of its final classifier)')
    .addOption(new Option('--preprocess <kind>', 'input preparation').choices(['mnist', 'stretch']).default('mnist'))
    .option('--pixel-max <x>', 'CSV data: largest pixel value in the data (8×8 digits: 16)', '16')
    .option(
      '--queue <url>',
      'train each (seed, budget, method) as a job on `graft worker` processes through the Redis at redis://HOST:PORT (the model and --out must be on paths every worker can reach)',
    )
    .option('--json', 'print the result as JSON');
}
