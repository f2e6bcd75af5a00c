/**
 * One call from a text model folder and a labelled table to a saved text classifier folder:
 * `trainTextClassifier` reads the table (CSV/TSV/JSONL, or the built-in 'spam-assassin' corpus),
 * splits it (stratified, seeded), trains by one method, scores the test split and saves model.onnx,
 * the tokenizer files, labels.json, report.html and report.json. Methods:
 *   features  pooled frozen features + logistic head (the features cached with `cacheDir`);
 *   finetune  linear probe, then the encoder fine-tuned: all of it, the layers matching `trainable`,
 *             or LoRA adapters (`loraRank`);
 *   setfit    contrastive pairs, then a logistic head;
 *   prompt    a cloze `template` scored by the masked-LM head at one label word per class
 *             (zero-shot with epochs 0, else the whole graph fine-tuned);
 *   auto      the methods compared on folds of the training split (src/finetune/auto.ts).
 * The defaults of every method live here once (TEXT_TRAIN_DEFAULTS); the CLI shows them in its help.
 */
import { join } from 'node:path';
import { readTextData, subsetTable } from '../data/text-table.js';
import { stratifiedSplit } from '../data/splits.js';
import { openCache } from '../features/cache.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { writeReport } from '../eval/report.js';
import {
  trainTextAuto,
  scoreTextClassifier,
  writeAutoReport,
  type AutoCandidate,
  type AutoSelection,
} from '../finetune/auto.js';
import { GraftError } from '../util/errors.js';
import { loadModelFolderSync } from './model-folder.js';
import { addPooling, addClassifierHead, withProbabilities, type Pooling } from './encoder.js';
import {
  TextFeatureExtractor,
  fitTextHead,
  finetuneText,
  gemmFromLogistic,
  predictTextProba,
  type FinetuneMode,
} from './classify.js';
import { trainSetFit } from './setfit.js';
import { saveTextClassifier, savePromptClassifier } from './saved.js';
import {
  promptClassifier,
  finetunePrompt,
  predictPromptProba,
  parseTemplate,
  labelWordIds,
  encodePrompts,
  DEFAULT_TEMPLATE,
  type PromptSpec,
} from './prompt.js';
import type { TextTokenizer } from './tokenizer.js';
import { argmax } from '../util/vectors.js';
import type { ProgressOptions } from '../train/callbacks.js';

export const TEXT_METHODS = ['features', 'finetune', 'setfit', 'prompt', 'auto'] as const;
export type TextMethod = (typeof TEXT_METHODS)[number];

/** Per-method defaults, declared once. setfit: epochs are passes over SetFit's pair budget, batchSize pairs per step. */
export const TEXT_TRAIN_DEFAULTS = {
  shared: { testFraction: 0.25, seed: 0, pooling: 'mean' as Pooling, weightDecay: 0.01, out: 'graft-text-classifier' },
  features: {},
  finetune: { lr: 1e-4, epochs: 10, batchSize: 16, init: 'probe' as 'probe' | 'random' },
  setfit: { lr: 1e-4, epochs: 1, batchSize: 16 },
  /** lr 3e-5: the recipe chosen on the review snippets' validation split (src/text/prompt.ts). */
  prompt: { lr: 3e-5, epochs: 10, batchSize: 16 },
  auto: { lr: 1e-4 },
} as const;

export interface TrainTextOptions {
  method?: TextMethod;
  /** The column holding the text: CSV header name, 0-based index for headerless files, or JSONL field. */
  textColumn?: string | number;
  /** The column holding the label (default: label, or guessed for headerless files). */
  labelColumn?: string | number;
  pooling?: Pooling;
  /** Longest input in tokens (default min(128, the model's)). */
  maxLength?: number;
  seed?: number;
  testFraction?: number;
  labelsPerClass?: number;
  /** Feature cache folder (features and auto). */
  cacheDir?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  weightDecay?: number;
  clipNorm?: number;
  /** finetune: a parameter-name pattern (only those layers and the head train); default: all. */
  trainable?: string;
  /** finetune: LoRA adapters of this rank instead of the weights (at 5× lr, alpha = 2·rank). */
  loraRank?: number;
  /** finetune: start the head from the fitted logistic probe (default) or at random. */
  init?: 'probe' | 'random';
  /** prompt: the cloze template (default DEFAULT_TEMPLATE). */
  template?: string;
  /** prompt: one label word per class, in the order of the class names. */
  labelWords?: string[];
  /** auto: folds of the training split (default 5). */
  folds?: number;
  /** auto: repeats of the folds, each with its own shuffle (default 3 at ≤ 200 training texts, else 1). */
  repeats?: number;
  /** auto: minutes for the search. */
  budgetMinutes?: number;
  /** finetune and setfit: write a checkpoint per epoch into this folder (setfit: per pass over the pair budget). */
  checkpointDir?: string;
  /** finetune and setfit: continue from the newest checkpoint in checkpointDir, bit for bit. */
  resume?: boolean;
  /** Keep only the newest this many checkpoints. */
  keepCheckpoints?: number;
  /** Folder to write (default graft-text-classifier). */
  out?: string;
  /** Where truncation warnings go (default: nowhere). */
  warn?: (message: string) => void;
  /** Progress of the long parts: `task` (features, fine-tune, contrastive), `done` of `total` `unit`s. */
  onProgress?: (p: { task: string; unit: string; done: number; total: number }) => void;
  /** The training loop's progress bar on stderr (src/train/callbacks.ts Progress; only on a terminal). */
  progress?: boolean | ProgressOptions;
  /** auto: each candidate as its fold scores are known. */
  onCandidate?: (c: AutoCandidate) => void;
}

export interface TrainTextReport {
  method: TextMethod;
  /** auto: the method it chose. */
  chosen?: string;
  model: string;
  data: string;
  /** The table's text and label columns, as given. */
  textColumn?: string | number;
  labelColumn?: string | number;
  classes: string[];
  train: number;
  /** Test-split metrics (absent only when the test split is empty). */
  test?: Metrics;
  maxLength: number;
  pooling?: Pooling;
  seconds: number;
  /** The files written: model.onnx, labels.json, report.html, report.json (and the tokenizer files beside them). */
  files: string[];
  out: string;
  /** The method's own numbers (steps, final loss, template, label words, auto's selection, …). */
  [detail: string]: unknown;
}

export interface TrainTextResult {
  report: TrainTextReport;
  /** The training texts (e.g. to calibrate an int8 copy). */
  trainTexts: string[];
  /** auto: every candidate's fold scores and the reason for the choice. */
  selection?: AutoSelection;
}

/** Train a text classifier on `data` with the encoder folder `modelDir` and save it (see the module doc). */
export async function trainTextClassifier(
  modelDir: string,
  data: string,
  o: TrainTextOptions = {},
): Promise<TrainTextResult> {
  const method = o.method ?? 'auto';
  if (!TEXT_METHODS.includes(method))
    throw new GraftError(`unknown text method '${method}': one of ${TEXT_METHODS.join(', ')}`);
  const D = TEXT_TRAIN_DEFAULTS;
  const m = loadModelFolderSync(modelDir);
  const maxLength = o.maxLength ?? Math.min(128, m.tokenizer.modelMaxLength);
  if (m.maxPositions && maxLength > m.maxPositions)
    throw new GraftError(`--max-length ${maxLength} exceeds the model's ${m.maxPositions} positions`);
  const table = readTextData(data, o);
  const seed = o.seed ?? D.shared.seed;
  const pooling = o.pooling ?? D.shared.pooling;
  const split = stratifiedSplit(table.y, {
    testFraction: o.testFraction ?? D.shared.testFraction,
    ...(o.labelsPerClass ? { perClass: o.labelsPerClass } : {}),
    seed,
  });
  const train = subsetTable(table, split.train);
  const test = subsetTable(table, split.test);
  const out = o.out ?? D.shared.out;
  const source = table.source;
  const warn = o.warn ?? (() => {});
  const progress = (task: string, unit: string) => (done: number, total: number) =>
    o.onProgress?.({ task, unit, done, total });
  const bar = o.progress ? { progress: o.progress } : {};
  const t0 = performance.now();
  const base = {
    model: modelDir,
    data,
    // the columns, so that `graft export --int8` can calibrate on the same table without asking again
    ...(o.textColumn !== undefined ? { textColumn: o.textColumn } : {}),
    ...(o.labelColumn !== undefined ? { labelColumn: o.labelColumn } : {}),
    classes: table.classes,
    train: train.texts.length,
    maxLength,
  };
  const files = ['model.onnx', 'labels.json', 'report.html', 'report.json'].map((f) => join(out, f));
  const weightDecay = o.weightDecay ?? D.shared.weightDecay;
  const checkpoints = {
    ...(o.checkpointDir !== undefined ? { checkpointDir: o.checkpointDir } : {}),
    ...(o.resume ? { resume: true } : {}),
    ...(o.keepCheckpoints !== undefined ? { keepCheckpoints: o.keepCheckpoints } : {}),
  };
  if (Object.keys(checkpoints).length && method !== 'finetune' && method !== 'setfit')
    throw new GraftError(
      `checkpoints (--checkpoint-dir, --resume) apply to text fine-tuning and SetFit, not to ${method}`,
    );

  if (method === 'auto') {
    const lr = o.lr ?? D.auto.lr;
    const r = await trainTextAuto(m, train.texts, train.y, {
      classes: table.classes.length,
      pooling,
      maxLength,
      seed,
      lr,
      warn,
      ...(o.folds !== undefined ? { folds: o.folds } : {}),
      ...(o.repeats !== undefined ? { repeats: o.repeats } : {}),
      ...(o.budgetMinutes !== undefined ? { budgetMinutes: o.budgetMinutes } : {}),
      ...(o.cacheDir ? { cache: openCache(o.cacheDir) } : {}),
      ...(o.onCandidate ? { onCandidate: o.onCandidate } : {}),
    });
    const metrics = test.texts.length
      ? await scoreTextClassifier(r.classifier, m, test.texts, test.y, table.classes, maxLength)
      : undefined;
    saveTextClassifier(r.classifier, out, {
      from: modelDir,
      labels: table.classes,
      settings: { maxLength, pooling, mode: r.mode },
    });
    const report: TrainTextReport = {
      method,
      mode: 'auto',
      chosen: r.mode,
      ...base,
      ...(metrics ? { test: metrics } : {}),
      pooling,
      auto: r.selection,
      seconds: (performance.now() - t0) / 1000,
      files: metrics ? files : files.slice(0, 2),
      out,
    };
    writeAutoReport(out, r.selection, report, metrics, 'test', modelDir);
    return { report, trainTexts: train.texts, selection: r.selection };
  }

  let P: Float32Array[];
  let save: () => void;
  const details: Record<string, unknown> = {};
  if (method === 'prompt') {
    if (o.loraRank !== undefined)
      throw new GraftError(
        '--lora-rank does not apply to prompt classification (it fine-tunes the whole encoder and masked-LM head)',
      );
    if (o.cacheDir !== undefined)
      throw new GraftError('--cache does not apply to prompt classification (it caches no features)');
    if (o.trainable !== undefined && o.trainable !== 'all')
      throw new GraftError(
        '--trainable does not apply to prompt classification (it fine-tunes the whole encoder and masked-LM head)',
      );
    const spec = promptSpec(o, m.tokenizer, table.classes, maxLength);
    const epochs = o.epochs ?? D.prompt.epochs,
      batchSize = o.batchSize ?? D.prompt.batchSize;
    if (epochs < 0) throw new GraftError(`--epochs must be 0 (zero-shot) or more, got ${epochs}`);
    if (batchSize < 1) throw new GraftError(`--batch-size must be at least 1, got ${batchSize}`);
    const tuned =
      epochs === 0
        ? undefined
        : await finetunePrompt(m, train.texts, train.y, {
            ...spec,
            maxLength,
            seed,
            source,
            rows: train.rows,
            warn,
            epochs,
            minSteps: 0,
            batchSize,
            lr: o.lr ?? D.prompt.lr,
            weightDecay,
            ...(o.clipNorm !== undefined ? { clipNorm: o.clipNorm } : {}),
            ...bar,
            onStep: (s) => progress('fine-tune', 'steps')(s.step, s.steps),
          });
    const c = tuned ?? promptClassifier(m, spec);
    Object.assign(details, {
      template: c.template.template,
      labelWords: c.labelWords,
      epochs,
      steps: tuned?.steps ?? 0,
      ...(tuned ? { finalLoss: tuned.losses.at(-1) } : {}),
    });
    P = await predictPromptProba(c, m.tokenizer, test.texts, { maxLength, source, rows: test.rows, warn });
    save = () => savePromptClassifier(c, out, { from: modelDir, labels: table.classes, maxLength });
  } else {
    const extractor = new TextFeatureExtractor(m, pooling);
    let classifier;
    try {
      if (method === 'setfit') {
        const epochs = o.epochs ?? D.setfit.epochs,
          pairsPerStep = o.batchSize ?? D.setfit.batchSize;
        if (epochs < 1) throw new GraftError(`--epochs must be at least 1, got ${epochs}`);
        if (pairsPerStep < 1) throw new GraftError(`--batch-size must be at least 1, got ${pairsPerStep}`);
        const r = await trainSetFit(m, train.texts, train.y, {
          pooling,
          maxLength,
          seed,
          epochs,
          pairsPerStep,
          lr: o.lr ?? D.setfit.lr,
          source,
          rows: train.rows,
          warn,
          ...checkpoints,
          ...bar,
          onStep: (s) => progress('contrastive', 'steps')(s.step, s.steps),
        });
        classifier = addClassifierHead(addPooling(r.encoder, pooling), gemmFromLogistic(r.head), {
          probabilities: true,
        });
        await r.extractor.release();
        Object.assign(details, {
          epochs,
          pairsPerStep,
          steps: r.steps,
          pairBatchTexts: r.maxBatchTexts,
          ...(r.resumedFrom ? { resumedFrom: r.resumedFrom } : {}),
        });
      } else {
        const F = await extractor.extract(train.texts, {
          maxLength,
          source,
          rows: train.rows,
          warn,
          ...(o.cacheDir ? { cache: openCache(o.cacheDir) } : {}),
          onProgress: (p) => progress('features', 'texts')(p.done, p.total),
        });
        const head = await fitTextHead(F, train.y, seed);
        details['probe'] = { l2: head.l2 };
        if (method === 'features') {
          classifier = addClassifierHead(extractor.graph, gemmFromLogistic(head), { probabilities: true });
        } else {
          const trainable = o.trainable ?? 'all';
          const ftMode: FinetuneMode = o.loraRank ? 'lora' : trainable !== 'all' ? 'top' : 'full';
          const init = o.init ?? D.finetune.init;
          const lr = o.lr ?? D.finetune.lr;
          const r = await finetuneText(m, train.texts, train.y, {
            mode: ftMode,
            pooling,
            maxLength,
            classes: table.classes.length,
            seed,
            source,
            rows: train.rows,
            warn,
            ...(init === 'probe' ? { head } : {}),
            ...(ftMode === 'top' ? { trainable } : {}),
            ...(o.loraRank ? { loraRank: o.loraRank, lr: lr * 5 } : { lr }),
            epochs: o.epochs ?? D.finetune.epochs,
            batchSize: o.batchSize ?? D.finetune.batchSize,
            weightDecay,
            ...(o.clipNorm !== undefined ? { clipNorm: o.clipNorm } : {}),
            ...checkpoints,
            ...bar,
            onStep: (s) => progress('fine-tune', 'steps')(s.step, s.steps),
          });
          classifier = withProbabilities(r.graph);
          Object.assign(details, {
            finetune: ftMode,
            init,
            steps: r.steps,
            finalLoss: r.losses[r.losses.length - 1],
            ...(r.resumedFrom ? { resumedFrom: r.resumedFrom } : {}),
          });
        }
      }
    } finally {
      await extractor.release();
    }
    const g = classifier;
    P = await predictTextProba(g, m.tokenizer, test.texts, { maxLength, source, rows: test.rows, warn });
    save = () =>
      saveTextClassifier(g, out, {
        from: modelDir,
        labels: table.classes,
        settings: { maxLength, pooling, mode: method },
      });
  }
  const metrics = test.texts.length ? classificationMetrics([...test.y], P.map(argmax), table.classes) : undefined;
  const report: TrainTextReport = {
    method,
    mode: method,
    ...base,
    ...(method === 'prompt' ? {} : { pooling }),
    ...details,
    ...(metrics ? { test: metrics } : {}),
    seconds: (performance.now() - t0) / 1000,
    files: metrics ? files : files.slice(0, 2),
    out,
  };
  save();
  if (metrics) {
    writeReport(join(out, 'report.html'), metrics, {
      title: `Graft text classifier (${method}): test split`,
      model: modelDir,
      data,
      details: {
        method,
        'training texts': train.texts.length,
        'test texts': test.texts.length,
        'max length': maxLength,
      },
      extra: { training: report },
    });
  }
  return { report, trainTexts: train.texts };
}

/** prompt: the template and one label word per class (class k ↔ word k, classes in the table's order), checked against the tokenizer. */
function promptSpec(
  o: TrainTextOptions,
  tokenizer: TextTokenizer,
  classes: readonly string[],
  maxLength: number,
): PromptSpec {
  const order = `the order of the class names (numeric labels ascending, others alphabetical): ${classes.join(', ')}`;
  const words = o.labelWords;
  if (words === undefined)
    throw new GraftError(
      `prompt classification needs --label-words: one word per class, in ${order}`,
      'e.g. --label-words bad,good',
    );
  if (words.some((w) => !w)) throw new GraftError(`--label-words "${words.join(',')}" holds an empty word`);
  if (words.length !== classes.length)
    throw new GraftError(
      `--label-words gives ${words.length} word${words.length === 1 ? '' : 's'} (${words.join(', ')}) for ${classes.length} classes: give one per class, in ${order}`,
    );
  const template = o.template ?? DEFAULT_TEMPLATE;
  const flagged = <T>(flag: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof GraftError) throw new GraftError(`${flag}: ${e.message}`, e.hint);
      throw e;
    }
  };
  // the template must leave room for text at maxLength (encoding an empty text checks it)
  flagged('--template', () => encodePrompts(tokenizer, [''], parseTemplate(tokenizer, template), { maxLength }));
  flagged('--label-words', () => labelWordIds(tokenizer, words));
  return { template, labelWords: [...words] };
}
