/**
 * `graft curve`: accuracy vs labels per class for scratch, frozen-feature and fine-tuned training (src/eval/curve.ts).
 *
 * Data: a CSV of square grey images (pixels then a label; the model must take [batch, 1, S, S]), or
 * any labelled image data `graft train` reads: IDX files (MNIST layout, labels beside them) or an
 * image folder (one subfolder per class), decoded and prepared as the model's preprocessing metadata
 * says (else: resize to its input, pixel × --input-max / 255). Every example is held in memory as a
 * float tensor: cap big datasets with --max-per-class.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { basename } from 'node:path';
import { int, num } from './parse.js';
import { progressBar } from '../util/progress.js';
import { loadModel } from '../formats/load.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { exampleDims } from '../train/fit.js';
import { loadPixelDataset } from '../data/pixel-dataset.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { imagesToTensor } from '../data/image.js';
import { getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import type { Graph } from '../graph/graph.js';
import type { Examples } from '../train/fit.js';
import {
  dataEfficiencyCurve,
  writeCurve,
  curveMarkdown,
  checkCurveLists,
  CURVE_METHODS,
  type CurveMethod,
} from '../eval/curve.js';
import { GraftError } from '../util/errors.js';
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

/** IDX files or an image folder as in-memory examples in the model's input scale. */
async function loadImageData(model: Graph, dims: number[], o: CurveFlags): Promise<Examples> {
  if (dims.length !== 3 || (dims[0] !== 1 && dims[0] !== 3))
    throw new GraftError(
      `${o.model}: graft curve on image data needs a model with an image input [batch, 1 or 3, H, W]; this one takes [batch, ${dims}]`,
    );
  const d = loadLabelledImages(o.data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: int(o.maxPerClass, '--max-per-class') } : {}),
  });
  const inputMax = num(o.inputMax, '--input-max');
  const p: ImagePreprocess = getPreprocess(model) ?? {
    layout: 'NCHW',
    width: dims[2]!,
    height: dims[1]!,
    channels: dims[0] as 1 | 3,
    channelOrder: dims[0] === 1 ? 'GRAY' : 'RGB',
    mean: Array(dims[0]).fill(0),
    std: Array(dims[0]).fill(1 / inputMax),
    resize: 'stretch',
    source: 'flag',
  };
  const per = dims.reduce((a, b) => a * b, 1);
  const x: Float32Array[] = [];
  for (let i = 0; i < d.inputs.length; i += 256) {
    const t = await imagesToTensor(d.inputs.slice(i, i + 256), p);
    const data = t.data as Float32Array;
    for (let k = 0; k < t.dims[0]!; k++) x.push(data.slice(k * per, (k + 1) * per));
  }
  return { x, y: d.labels };
}

export async function curveCommand(o: CurveFlags) {
  const budgets = o.labelsPerClass.split(',').map((s) => int(s.trim(), '--labels-per-class'));
  const methods = o.methods.split(',').map((s) => s.trim()) as CurveMethod[];
  for (const m of methods)
    if (!CURVE_METHODS.includes(m))
      throw new GraftError(`--methods: unknown method '${m}' (known: ${CURVE_METHODS.join(', ')})`);
  checkCurveLists(budgets, methods);
  const model = loadModel(o.model);
  model.name = basename(o.model);
  const dims = exampleDims(makeBatchDynamic(model));
  let data: Examples;
  if (/\.csv(\.gz)?$/i.test(o.data)) {
    if (dims.length !== 3 || dims[0] !== 1 || dims[1] !== dims[2])
      throw new GraftError(
        `${o.model}: a CSV --data holds grey square images; the model's input is [batch, ${dims}] (expected [batch, 1, S, S])`,
        'give an image folder or IDX files instead',
      );
    data = await loadPixelDataset(o.data, {
      side: dims[1]!,
      preprocess: o.preprocess,
      pixelMax: num(o.pixelMax, '--pixel-max'),
    });
  } else data = await loadImageData(model, dims, o);
  const bar = progressBar('curve |{bar}| {value}/{total} runs | {method} {perClass}/class seed {seed}: {acc}', {
    quiet: o.json,
  });
  // --queue: each (seed, budget, method) a job on `graft worker`s; the examples go to a run file in --out
  const r = await (o.queue ? curveOnQueue({ queue: o.queue, modelPath: o.model, dir: o.out }) : dataEfficiencyCurve)(
    model,
    data,
    {
      budgets,
      seeds: int(o.seeds, '--seeds'),
      methods,
      testFraction: num(o.testFraction, '--test-fraction'),
      minSteps: int(o.steps, '--steps'),
      batchSize: int(o.batchSize, '--batch-size'),
      finetuneLr: num(o.lr, '--lr'),
      scratchLr: num(o.scratchLr, '--scratch-lr'),
      ...(o.node ? { node: o.node } : {}),
      onProgress: (p) => {
        if (!bar) {
          if (!o.json)
            process.stderr.write(
              `${p.done}/${p.total} ${p.method} ${p.perClass}/class seed ${p.seed}: ${p.accuracy.toFixed(3)}\n`,
            );
          return;
        }
        bar.update(p.done, p.total, {
          method: p.method,
          perClass: p.perClass,
          seed: p.seed,
          acc: p.accuracy.toFixed(3),
        });
      },
    },
  );
  bar?.stop();
  const files = writeCurve(r, o.out);
  if (o.json) process.stdout.write(JSON.stringify({ ...r, files }, null, 2) + '\n');
  else process.stdout.write(curveMarkdown(r) + `wrote ${files.join(', ')}\n`);
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
