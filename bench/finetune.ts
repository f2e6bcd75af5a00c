/**
 * Fine-tuning time to a fixed validation accuracy, Graft vs PyTorch, same machine, same run:
 * the Coral MobileNetV2 (TFLite, imported by Graft; PyTorch runs the same ONNX graph op by op with
 * the same weights, bench/finetune_torch.py) on Fashion-MNIST: N labelled training images per class
 * (seeded stratified pick from the 60k train file), a fixed validation subset of the 10k test file,
 * images upsampled 28 → 224. Same recipe in all four: new 10-class head (zeros), AdamW (lr, weight
 * decay 1e-4), batch 32, cosine decay over the epochs, validation accuracy after every epoch.
 *
 *   graft-top    the top blocks trained on activations cached at the cut (the bottom runs once per image)
 *   torch-top    PyTorch's straightforward loop: the same top blocks trainable, the full forward every step
 *   graft-full   everything trains (the prepared images are cached; each epoch runs the whole network)
 *   torch-full   the same in PyTorch
 *
 * Each runs in its own process (peak RSS is per process). Time to target counts everything from
 * the start of the process's work: data preparation, cache building, training and validation.
 *
 *   npx tsx bench/finetune.ts [--per-class 50] [--val 300] [--target 0.8] [--top-blocks 2] [--epochs 4]
 *                             [--full-epochs 2] [--lr 1e-3] [--threads 1] [--python /usr/bin/python3] [--skip-full]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/formats/load.js';
import { writeOnnx } from '../src/formats/onnx.js';
import { makeBatchDynamic } from '../src/graph/rewrites.js';
import { readIdxDataset } from '../src/data/idx.js';
import { greyToBmp } from '../src/data/labelled-images.js';
import { assetPath } from '../src/data/assets.js';
import { shuffledByClass } from '../src/data/splits.js';
import { splitTopBlocks, cacheActivations, trainTopBlocks } from '../src/finetune/top-blocks.js';
import { defaultFeatureNode } from '../src/features/extract.js';
import { Rng } from '../src/util/random.js';

const argv = process.argv.slice(2);
const flag = (k: string, d: string) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1]! : d;
};
const MODEL = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
const FASHION = assetPath('datasets/fashion-mnist');

interface EpochLog {
  epoch: number;
  seconds: number;
  loss: number;
  val_accuracy: number;
}
interface RunResult {
  epochs: EpochLog[];
  peak_rss_mb: number;
  trainable?: number;
  cache_seconds?: number;
}
interface Spec {
  model: string;
  fashion: string;
  train: number[];
  val: number[];
  cut: string;
  feature: string;
  mode: 'top' | 'full';
  epochs: number;
  batch: number;
  lr: number;
  weight_decay: number;
  threads: number;
  seed: number;
}

/** One Graft run (in a child process): cache at the cut (or the prepared images for full), train, validate each epoch. */
async function graftRun(spec: Spec): Promise<RunResult> {
  process.env['GRAFT_THREADS'] = String(spec.threads);
  const t0 = performance.now();
  const train = readIdxDataset(
    join(spec.fashion, 'train-images-idx3-ubyte.gz'),
    join(spec.fashion, 'train-labels-idx1-ubyte.gz'),
  );
  const t10k = readIdxDataset(
    join(spec.fashion, 't10k-images-idx3-ubyte.gz'),
    join(spec.fashion, 't10k-labels-idx1-ubyte.gz'),
  );
  const model = makeBatchDynamic(loadModel(spec.model));
  const m = await splitTopBlocks(model, 10, {
    cut: spec.mode === 'full' ? model.dataInputs()[0]!.name : spec.cut,
    featureNode: spec.feature,
  });
  const trS = await cacheActivations(
    m,
    spec.train.map((i) => greyToBmp(train.images[i]!, 28, 28)),
  );
  const vaS = await cacheActivations(
    m,
    spec.val.map((i) => greyToBmp(t10k.images[i]!, 28, 28)),
  );
  const cacheSeconds = (performance.now() - t0) / 1000;
  const epochs: EpochLog[] = [];
  const r = await trainTopBlocks(
    m,
    trS,
    spec.train.map((i) => train.labels[i]!),
    {
      epochs: spec.epochs,
      batchSize: spec.batch,
      lr: spec.lr,
      headLrMult: 1,
      headInit: 'zeros',
      seed: spec.seed,
      optimizer: { kind: 'adamw', weightDecay: spec.weight_decay },
      validation: { store: vaS, labels: spec.val.map((i) => t10k.labels[i]!) },
      onEpoch: (e) => {
        epochs.push({
          epoch: e.epoch,
          seconds: (performance.now() - t0) / 1000,
          loss: e.loss,
          val_accuracy: e.valAccuracy!,
        });
        process.stderr.write(`${JSON.stringify(epochs.at(-1))}\n`);
      },
    },
  );
  const trainable = [...r.trainer.params.values()].reduce((a, p) => a + p.length, 0);
  await r.trainer.release();
  return { epochs, peak_rss_mb: process.resourceUsage().maxRSS / 1024, trainable, cache_seconds: cacheSeconds };
}

function child(kind: string, spec: Spec, python: string): RunResult | { error: string } {
  const dir = mkdtempSync(join(tmpdir(), 'graft-bench-ft-'));
  const specPath = join(dir, 'spec.json');
  writeFileSync(specPath, JSON.stringify(spec));
  const self = fileURLToPath(import.meta.url);
  const r = kind.startsWith('torch')
    ? spawnSync(python, [join(self, '..', 'finetune_torch.py'), specPath], {
        encoding: 'utf8',
        maxBuffer: 1 << 26,
        stdio: ['ignore', 'pipe', 'inherit'],
      })
    : spawnSync(process.execPath, [...process.execArgv, self, '--child', specPath], {
        encoding: 'utf8',
        maxBuffer: 1 << 26,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
  rmSync(dir, { recursive: true, force: true });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as RunResult;
  } catch {
    return { error: `${kind} exited with ${r.status}: ${line.slice(0, 300)}` };
  }
}

async function main() {
  const ci = argv.indexOf('--child');
  if (ci >= 0) {
    const { readFileSync } = await import('node:fs');
    const spec = JSON.parse(readFileSync(argv[ci + 1]!, 'utf8')) as Spec;
    process.stdout.write(JSON.stringify(await graftRun(spec)) + '\n');
    return;
  }
  const perClass = Number(flag('per-class', '50'));
  const nVal = Number(flag('val', '300'));
  const target = Number(flag('target', '0.8'));
  const threads = Number(flag('threads', '1'));
  const python = flag('python', process.env['GRAFT_BENCH_PYTHON'] ?? '/usr/bin/python3');
  const train = readIdxDataset(
    join(FASHION, 'train-images-idx3-ubyte.gz'),
    join(FASHION, 'train-labels-idx1-ubyte.gz'),
  );
  const t10k = readIdxDataset(join(FASHION, 't10k-images-idx3-ubyte.gz'), join(FASHION, 't10k-labels-idx1-ubyte.gz'));
  const pick: number[] = [];
  for (const [, idx] of shuffledByClass(train.labels, new Rng(2024))) pick.push(...idx.slice(0, perClass));
  const val = new Rng(99).shuffle([...Array(t10k.labels.length).keys()]).slice(0, nVal);
  const model = makeBatchDynamic(loadModel(MODEL));
  const dir = mkdtempSync(join(tmpdir(), 'graft-bench-ft-model-'));
  const onnxPath = join(dir, 'mobilenet_v2.onnx');
  writeOnnx(model, onnxPath);
  const m = await splitTopBlocks(model, 10, { topBlocks: Number(flag('top-blocks', '2')) });
  const base = {
    model: onnxPath,
    fashion: FASHION,
    train: pick,
    val,
    cut: m.cut,
    feature: defaultFeatureNode(model),
    batch: 32,
    lr: Number(flag('lr', '1e-3')),
    weight_decay: 1e-4,
    threads,
    seed: 0,
  };
  const runs: [string, Spec][] = [
    ['graft-top', { ...base, mode: 'top', epochs: Number(flag('epochs', '4')) }],
    ['torch-top', { ...base, mode: 'top', epochs: Number(flag('epochs', '4')) }],
  ];
  if (!argv.includes('--skip-full'))
    runs.push(
      ['graft-full', { ...base, mode: 'full', epochs: Number(flag('full-epochs', '2')) }],
      ['torch-full', { ...base, mode: 'full', epochs: Number(flag('full-epochs', '2')) }],
    );
  console.log(
    `Fashion-MNIST, ${perClass} labels/class (${pick.length} images), ${nVal} validation images, target accuracy ${target}, cut ${m.cut}, ${threads} thread(s)`,
  );
  const results = new Map<string, RunResult | { error: string }>();
  for (const [k, spec] of runs) {
    console.log(`running ${k} …`);
    results.set(k, child(k, spec, python));
  }
  rmSync(dir, { recursive: true, force: true });
  const reach = (r: RunResult) => r.epochs.find((e) => e.val_accuracy >= target);
  console.log(
    '\n| run | epochs | s/epoch (after the first) | validation accuracy by epoch | time to ≥ target | peak RSS |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [k] of runs) {
    const r = results.get(k)!;
    if ('error' in r) {
      console.log(`| ${k} | failed: ${r.error} | | | | |`);
      continue;
    }
    const e = r.epochs;
    const per = e.length > 1 ? (e.at(-1)!.seconds - e[0]!.seconds) / (e.length - 1) : NaN;
    const hit = reach(r);
    console.log(
      `| ${k} | ${e.length} | ${per.toFixed(1)} | ${e.map((x) => x.val_accuracy.toFixed(3)).join(', ')} | ${hit ? `${hit.seconds.toFixed(1)} s (epoch ${hit.epoch})` : 'not reached'} | ${r.peak_rss_mb.toFixed(0)} MB |`,
    );
  }
  const t = (k: string) => {
    const r = results.get(k);
    return r && !('error' in r) ? reach(r)?.seconds : undefined;
  };
  for (const [a, b] of [
    ['graft-top', 'torch-top'],
    ['graft-full', 'torch-full'],
    ['graft-top', 'torch-full'],
  ] as const) {
    const [ta, tb] = [t(a), t(b)];
    if (ta !== undefined && tb !== undefined) console.log(`${b} / ${a} time to ${target}: ${(tb / ta).toFixed(2)}×`);
    else if (results.has(a) && results.has(b))
      console.log(`${a} vs ${b}: target not reached by ${ta === undefined ? a : ''} ${tb === undefined ? b : ''}`);
  }
}

await main();
