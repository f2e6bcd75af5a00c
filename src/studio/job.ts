/**
 * One Studio training job, run off the server's thread (in the child process of src/studio/worker.ts):
 * the examples snapshot of a run → Graft's library (trainFeatureClassifier, finetuneImages, the text
 * feature/fine-tuning functions) → the classifier folder under the run folder, then an evaluation of
 * that saved folder on the held-out split (accuracy, per-class precision/recall, confusion matrix, the
 * misclassified examples by id). Progress is reported through `emit`.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { trainFeatureClassifier } from '../features/classifier.js';
import { Session } from '../runtime/session.js';
import { imagesToTensor } from '../data/image.js';
import { finetuneImages } from '../finetune/image-finetune.js';
import { blockCuts } from '../finetune/top-blocks.js';
import { loadModel } from '../formats/load.js';
import { getPreprocess, setPreprocess } from '../formats/preprocess.js';
import type { Graph } from '../graph/graph.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { stratifiedSplit } from '../data/splits.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { loadModelFolderSync } from '../text/model-folder.js';
import { TextFeatureExtractor, fitTextHead, finetuneText, gemmFromLogistic } from '../text/classify.js';
import { addClassifierHead, withProbabilities } from '../text/encoder.js';
import { saveTextClassifier, loadTextClassifier, textClassifierProba } from '../text/saved.js';
import { openCache } from '../features/cache.js';
import { listCheckpoints } from '../train/checkpoint.js';
import { GraftError } from '../util/errors.js';
import { argmax, argmaxRows } from '../util/vectors.js';

export interface JobExample {
  id: string;
  label: number;
  file?: string;
  text?: string;
}

export interface JobSettings {
  epochs?: number;
  learningRate?: number;
  augment?: boolean;
  holdout?: number;
  batchSize?: number;
  topBlocks?: number;
  loraRank?: number;
  seed?: number;
}

export interface JobSpec {
  runId: string;
  kind: 'image' | 'text';
  method: string;
  /** Resolved path of the backbone (a model file or a text model folder). */
  backbone: string;
  settings: JobSettings;
  classes: string[];
  examples: JobExample[];
  /** The run folder: classifier/, checkpoints/ and job files go here. */
  runDir: string;
  /** Shared activation cache folder. */
  cacheDir: string;
  /** Continue from the newest checkpoint in runDir/checkpoints when there is one. */
  resume: boolean;
}

export type Phase = 'preparing' | 'extracting' | 'training' | 'evaluating' | 'saving' | 'done';

export type JobEvent =
  | { type: 'progress'; phase: Phase; fraction: number; message?: string }
  | { type: 'epoch'; epoch: number; loss: number | null; accuracy: number | null; valAccuracy: number | null }
  | { type: 'resumed'; fromEpoch: number }
  | { type: 'log'; message: string };

export interface JobEvaluation {
  accuracy: number;
  classes: string[];
  perClass: { class: string; precision: number; recall: number; support: number }[];
  confusion: number[][];
  misclassified: { exampleId: string; trueClass: string; predictedClass: string; probability: number | null }[];
  heldOut: number;
  trained: number;
}

/** Method ids and the project kinds they apply to. */
export const METHODS = {
  features: ['image', 'text'],
  finetune: ['image'],
  'top-layers': ['text'],
  lora: ['text'],
} as const;

export const DEFAULTS = {
  image: {
    features: { holdout: 0.2, seed: 0, batchSize: 32 },
    finetune: { epochs: 5, learningRate: 1e-3, augment: false, holdout: 0.2, batchSize: 32, topBlocks: 1, seed: 0 },
  },
  text: {
    features: { holdout: 0.25, seed: 0 },
    'top-layers': { epochs: 3, learningRate: 1e-4, holdout: 0.25, batchSize: 16, seed: 0 },
    lora: { epochs: 3, learningRate: 1e-4, holdout: 0.25, batchSize: 16, loraRank: 8, seed: 0 },
  },
} as const;

/** The classifier folder of a run. */
export const classifierDir = (runDir: string) => join(runDir, 'classifier');
export const checkpointDir = (runDir: string) => join(runDir, 'checkpoints');

/** The held-out split a job's library call uses (same function, same options, so the same indices). */
function split(labels: number[], holdout: number, seed: number, val: number) {
  return stratifiedSplit(labels, { testFraction: holdout, valFraction: val, seed });
}

function evaluation(
  m: Metrics,
  ex: JobExample[],
  test: number[],
  pred: number[],
  probs: (number | null)[],
  classes: string[],
  trained: number,
): JobEvaluation {
  const misclassified: JobEvaluation['misclassified'] = [];
  test.forEach((row, i) => {
    const e = ex[row]!;
    if (pred[i] !== e.label)
      misclassified.push({
        exampleId: e.id,
        trueClass: classes[e.label]!,
        predictedClass: classes[pred[i]!] ?? `class ${pred[i]}`,
        probability: probs[i] ?? null,
      });
  });
  return {
    accuracy: m.accuracy,
    classes,
    perClass: m.perClass.map((c, k) => ({
      class: classes[k]!,
      precision: c.precision,
      recall: c.recall,
      support: c.support,
    })),
    confusion: m.confusion,
    misclassified,
    heldOut: test.length,
    trained,
  };
}

export async function runJob(job: JobSpec, emit: (e: JobEvent) => void): Promise<JobEvaluation> {
  const s = job.settings;
  const out = classifierDir(job.runDir);
  mkdirSync(job.runDir, { recursive: true });
  if (!job.resume) rmSync(checkpointDir(job.runDir), { recursive: true, force: true });
  const labels = job.examples.map((e) => e.label);
  const seed = s.seed ?? 0;
  const K = job.classes.length;
  if (K < 2) throw new GraftError(`a project needs at least two classes with examples to train; it has ${K}`);
  emit({ type: 'progress', phase: 'preparing', fraction: 0 });
  if (job.kind === 'image') return runImage(job, emit, out, labels, seed);
  return runText(job, emit, out, labels, seed);
}

/**
 * The backbone graph, with image preprocessing recorded: a model that records none (the MNIST network)
 * gets its input size and raw 0–255 pixels, as `graft curve`'s default (--input-max 255).
 */
function imageBackbone(path: string): Graph {
  const g = makeBatchDynamic(loadModel(path));
  if (getPreprocess(g)) return g;
  const dims = g.dataInputs()[0]?.shape?.slice(1);
  if (
    !dims ||
    dims.length !== 3 ||
    (dims[0] !== 1 && dims[0] !== 3) ||
    typeof dims[1] !== 'number' ||
    typeof dims[2] !== 'number'
  )
    throw new GraftError(
      `${path}: the model records no image preprocessing and its input is not [batch, 1 or 3, H, W]`,
    );
  setPreprocess(g, {
    layout: 'NCHW',
    width: dims[2],
    height: dims[1],
    channels: dims[0],
    channelOrder: dims[0] === 1 ? 'GRAY' : 'RGB',
    mean: Array(dims[0]).fill(0),
    std: Array(dims[0]).fill(1 / 255),
    resize: 'stretch',
    source: 'default',
  });
  return g;
}

async function runImage(
  job: JobSpec,
  emit: (e: JobEvent) => void,
  out: string,
  labels: number[],
  seed: number,
): Promise<JobEvaluation> {
  const s = job.settings;
  const backbone = imageBackbone(job.backbone);
  const holdout = s.holdout ?? 0.2;
  const data = {
    inputs: job.examples.map((e) => e.file!),
    labels,
    classes: job.classes,
    names: job.examples.map((e) => e.id),
    kind: 'image-folder' as const,
  };
  let trained: number;
  let sp: { test: number[] };
  if (job.method === 'features') {
    sp = split(labels, holdout, seed, 0);
    const r = await trainFeatureClassifier(backbone, data, {
      head: 'logistic',
      testFraction: holdout,
      valFraction: 0,
      seed,
      batchSize: s.batchSize ?? 32,
      cacheDir: job.cacheDir,
      out,
      onProgress: (p) =>
        emit({ type: 'progress', phase: 'extracting', fraction: 0.85 * (p.examples / Math.max(1, p.total)) }),
    });
    trained = r.report.examples.train;
    emit({ type: 'epoch', epoch: 1, loss: null, accuracy: null, valAccuracy: r.report.test?.accuracy ?? null });
  } else if (job.method === 'finetune') {
    const val = 0.1;
    sp = split(labels, holdout, seed, val);
    const epochs = s.epochs ?? 5;
    const ckpt = join(job.runDir, 'checkpoints');
    const resumeFrom = job.resume && existsSync(ckpt) ? (listCheckpoints(ckpt).at(-1) ?? 0) : 0;
    // each epoch's numbers also go to epochs.jsonl in the run folder (the server may die before it stores them)
    const log = join(job.runDir, 'epochs.jsonl');
    if (resumeFrom) {
      emit({ type: 'resumed', fromEpoch: resumeFrom });
      const seen = new Map<number, Extract<JobEvent, { type: 'epoch' }>>();
      if (existsSync(log))
        for (const line of readFileSync(log, 'utf8').split('\n')) {
          try {
            const e = JSON.parse(line) as Extract<JobEvent, { type: 'epoch' }>;
            if (e.epoch <= resumeFrom) seen.set(e.epoch, e);
          } catch {
            /* a line cut short by the kill */
          }
        }
      for (const e of [...seen.values()].sort((a, b) => a.epoch - b.epoch)) emit(e);
    } else rmSync(log, { force: true });
    // a network without recognisable blocks (the MNIST CNN) is fine-tuned whole: the cut at its input
    const blocks = blockCuts(backbone).length;
    const where = blocks ? { topBlocks: Math.min(s.topBlocks ?? 1, blocks) } : { cut: backbone.dataInputs()[0]!.name };
    if (!blocks) emit({ type: 'log', message: 'the backbone has no blocks to cut at: fine-tuning the whole network' });
    const r = await finetuneImages(backbone, data, {
      ...where,
      epochs,
      lr: s.learningRate ?? 1e-3,
      augment: !!s.augment,
      testFraction: holdout,
      valFraction: val,
      seed,
      batchSize: s.batchSize ?? 32,
      cacheDir: job.cacheDir,
      out,
      checkpoint: { dir: ckpt, resume: job.resume, keep: 2 },
      onCacheProgress: (p) =>
        emit({ type: 'progress', phase: 'extracting', fraction: 0.3 * (p.done / Math.max(1, p.total)) }),
      onStep: (st) => {
        emit({ type: 'progress', phase: 'training', fraction: 0.3 + 0.6 * (st.step / Math.max(1, st.totalSteps)) });
      },
      onEpoch: (e) => {
        const ev = {
          type: 'epoch' as const,
          epoch: e.epoch,
          loss: e.loss,
          accuracy: null,
          valAccuracy: e.valAccuracy ?? null,
        };
        appendFileSync(log, JSON.stringify(ev) + '\n');
        emit(ev);
      },
    });
    trained = r.report.examples.train;
  } else throw new GraftError(`method '${job.method}' does not apply to image projects`);
  emit({ type: 'progress', phase: 'evaluating', fraction: 0.92 });
  const test = sp.test;
  const { pred, prob } = await scoreImages(
    join(out, 'model.onnx'),
    test.map((i) => data.inputs[i]!),
  );
  const m = classificationMetrics(
    test.map((i) => labels[i]!),
    pred,
    job.classes,
  );
  const e = evaluation(m, job.examples, test, pred, prob, job.classes, trained);
  writeFileSync(join(job.runDir, 'evaluation.json'), JSON.stringify(e, null, 2) + '\n');
  emit({ type: 'progress', phase: 'done', fraction: 1 });
  return e;
}

/** The saved classifier's top class and its probability for each image (all were decode-checked on upload). */
async function scoreImages(modelPath: string, files: string[]): Promise<{ pred: number[]; prob: number[] }> {
  const g = loadModel(modelPath);
  const pre = getPreprocess(g);
  if (!pre) throw new GraftError(`${modelPath}: the saved classifier records no image preprocessing`);
  const input = g.dataInputs()[0]!.name,
    output = (g.outputs.find((o) => o.name === 'probabilities') ?? g.outputs[0]!).name;
  const session = await Session.fromGraph(g, undefined, 'studio evaluation');
  const pred: number[] = [],
    prob: number[] = [];
  try {
    for (let s = 0; s < files.length; s += 32) {
      const x = await imagesToTensor(files.slice(s, s + 32), pre);
      const r = (await session.run({ [input]: x }, [output]))[output]!;
      const K = r.dims[r.dims.length - 1]!,
        d = r.data as Float32Array;
      argmaxRows(r).forEach((best, i) => {
        pred.push(best);
        prob.push(d[i * K + best]!);
      });
    }
  } finally {
    await session.release();
  }
  return { pred, prob };
}

async function runText(
  job: JobSpec,
  emit: (e: JobEvent) => void,
  out: string,
  labels: number[],
  seed: number,
): Promise<JobEvaluation> {
  const s = job.settings;
  const holdout = s.holdout ?? 0.25;
  const sp = split(labels, holdout, seed, 0);
  const texts = job.examples.map((e) => e.text!);
  const trTexts = sp.train.map((i) => texts[i]!),
    trY = sp.train.map((i) => labels[i]!);
  const m = loadModelFolderSync(job.backbone);
  const maxLength = Math.min(128, m.tokenizer.modelMaxLength);
  const pooling = 'mean' as const;
  const extractor = new TextFeatureExtractor(m, pooling);
  const share = job.method === 'features' ? 0.85 : 0.25;
  const F = await extractor.extract(trTexts, {
    maxLength,
    cache: openCache(job.cacheDir),
    onProgress: (p) =>
      emit({ type: 'progress', phase: 'extracting', fraction: share * (p.done / Math.max(1, p.total)) }),
  });
  emit({ type: 'progress', phase: 'training', fraction: share });
  const head = await fitTextHead(F, trY, seed);
  let classifier;
  if (job.method === 'features') {
    classifier = addClassifierHead(extractor.graph, gemmFromLogistic(head), { probabilities: true });
  } else if (job.method === 'top-layers' || job.method === 'lora') {
    const lora = job.method === 'lora';
    let epochLoss: number[] = [],
      epochAt = 0;
    const flush = () => {
      if (epochLoss.length)
        emit({
          type: 'epoch',
          epoch: epochAt + 1,
          loss: epochLoss.reduce((a, b) => a + b, 0) / epochLoss.length,
          accuracy: null,
          valAccuracy: null,
        });
      epochLoss = [];
    };
    const r = await finetuneText(m, trTexts, trY, {
      mode: lora ? 'lora' : 'top',
      pooling,
      maxLength,
      classes: job.classes.length,
      seed,
      head,
      ...(lora ? { loraRank: s.loraRank ?? 8, lr: (s.learningRate ?? 1e-4) * 5 } : { lr: s.learningRate ?? 1e-4 }),
      epochs: s.epochs ?? 3,
      batchSize: s.batchSize ?? 16,
      onStep: (st) => {
        if (st.epoch !== epochAt) {
          flush();
          epochAt = st.epoch;
        }
        epochLoss.push(st.loss);
        emit({
          type: 'progress',
          phase: 'training',
          fraction: share + (0.9 - share) * (st.step / Math.max(1, st.steps)),
        });
      },
    });
    flush();
    classifier = withProbabilities(r.graph);
  } else throw new GraftError(`method '${job.method}' does not apply to text projects`);
  await extractor.release();
  emit({ type: 'progress', phase: 'saving', fraction: 0.9 });
  saveTextClassifier(classifier, out, {
    from: job.backbone,
    labels: job.classes,
    settings: { maxLength, pooling, mode: job.method },
  });
  emit({ type: 'progress', phase: 'evaluating', fraction: 0.92 });
  const c = loadTextClassifier(out);
  const P = await textClassifierProba(
    c,
    sp.test.map((i) => texts[i]!),
    {},
  );
  const pred = P.map(argmax);
  const met = classificationMetrics(
    sp.test.map((i) => labels[i]!),
    pred,
    job.classes,
  );
  const e = evaluation(
    met,
    job.examples,
    sp.test,
    pred,
    P.map((p, i) => p[pred[i]!] ?? null),
    job.classes,
    sp.train.length,
  );
  writeFileSync(join(job.runDir, 'evaluation.json'), JSON.stringify(e, null, 2) + '\n');
  emit({ type: 'progress', phase: 'done', fraction: 1 });
  return e;
}
