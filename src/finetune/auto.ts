/**
 * `--mode auto` (the default of `graft train`): fit the frozen-feature head and the fine-tuned
 * variants on the training split, choose by accuracy on held-out folds OF THE TRAINING SPLIT (the
 * test split is never read for the choice), keep the simpler method unless another wins by more than
 * the folds' noise, then fit the chosen method on the whole training split and save it.
 *
 * Candidates, in order of cost (a `budgetMinutes` stops new ones from starting once spent; the
 * frozen-feature head always runs):
 * - images: the frozen-feature logistic head (src/features/classifier.ts), then the top blocks
 *   trained on cached activations (src/finetune/image-finetune.ts);
 * - text: the frozen-feature logistic head, Graft's TF-IDF over the tokenizer's ids + logistic head
 *   (src/text/tfidf.ts), LP-FT (linear probe, then the whole encoder fine-tuned), and, at ≤ 16
 *   labels per class, SetFit (src/text/setfit.ts).
 *
 * The rule (`chooseByFolds`): the frozen-feature head is the incumbent; each other candidate, in
 * order, replaces the incumbent only when its mean paired fold difference against it exceeds one
 * standard error of those differences (and is positive). Every candidate's fold accuracies, the
 * comparisons and the reason are in the report.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { loadModel } from '../formats/load.js';
import type { LabelledImages } from '../data/labelled-images.js';
import { stratifiedSplit } from '../data/splits.js';
import { FeatureCache } from '../features/cache.js';
import { extractFeatures, defaultFeatureNode } from '../features/extract.js';
import { trainFeatureClassifier, type FeatureTrainOptions, type FeatureTrainResult } from '../features/classifier.js';
import { fitCV } from '../heads/logistic.js';
import { finetuneImages, type ImageFinetuneOptions, type ImageFinetuneResult } from './image-finetune.js';
import { splitTopBlocks, cacheActivations, trainTopBlocks, predictStore, ActivationStore } from './top-blocks.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import {
  TextFeatureExtractor,
  fitTextHead,
  finetuneText,
  gemmFromLogistic,
  predictTextProba,
  type TextModel,
} from '../text/classify.js';
import { addPooling, addClassifierHead, withProbabilities, type Pooling } from '../text/encoder.js';
import { trainSetFit } from '../text/setfit.js';
import { trainTfidfClassifier, tfidfClassifierGraph } from '../text/tfidf.js';
import { writeReport } from '../eval/report.js';
import { classificationMetrics, type Metrics } from '../eval/metrics.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { accuracy, argmax } from '../util/vectors.js';

/** One candidate's cross-validation: accuracy per held-out fold (absent when skipped). */
export interface AutoCandidate {
  method: string;
  /** What it is, in words. */
  description: string;
  folds?: number[];
  mean?: number;
  seconds: number;
  /** Why it was not scored (the budget, or not applicable). */
  skipped?: string;
}

export interface AutoComparison {
  challenger: string;
  incumbent: string;
  /** Mean and standard error of the paired fold differences (challenger − incumbent). */
  meanDiff: number;
  standardError: number;
  switched: boolean;
}

export interface AutoSelection {
  mode: 'auto';
  /** Folds of the training split (stratified). */
  folds: number;
  trainExamples: number;
  candidates: AutoCandidate[];
  comparisons: AutoComparison[];
  chosen: string;
  reason: string;
  budgetMinutes?: number;
  seconds: number;
}

/** Stratified fold index (0..k−1) per example, seeded. */
export function stratifiedFolds(y: readonly number[], k: number, seed = 0): number[] {
  const rng = new Rng(seed + 31);
  const fold = new Array<number>(y.length).fill(0);
  const byClass = new Map<number, number[]>();
  y.forEach((c, i) => byClass.set(c, [...(byClass.get(c) ?? []), i]));
  let offset = 0;
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    rng.shuffle(byClass.get(c)!).forEach((i, j) => (fold[i] = (j + offset) % k));
    offset += byClass.get(c)!.length;
  }
  return fold;
}

/** Folds to use for y: min(wanted, the smallest class count), at least 2 (0: too few examples to cross-validate). */
export function foldCount(y: readonly number[], wanted = 5): number {
  const counts = new Map<number, number>();
  for (const c of y) counts.set(c, (counts.get(c) ?? 0) + 1);
  const k = Math.min(wanted, ...counts.values());
  return k >= 2 ? k : 0;
}

const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * The incumbent (the first scored candidate, the simplest) is replaced by a later candidate only
 * when the mean of the paired fold differences exceeds one standard error of them and is positive.
 */
export function chooseByFolds(cands: AutoCandidate[]): {
  chosen: string;
  reason: string;
  comparisons: AutoComparison[];
} {
  const scored = cands.filter((c) => c.folds);
  if (!scored.length) throw new GraftError('no candidate was scored');
  let inc = scored[0]!;
  const comparisons: AutoComparison[] = [];
  const why: string[] = [];
  for (const c of scored.slice(1)) {
    const d = c.folds!.map((a, f) => a - inc.folds![f]!);
    const m = meanOf(d);
    const se = d.length > 1 ? Math.sqrt(d.reduce((a, x) => a + (x - m) ** 2, 0) / (d.length - 1) / d.length) : Infinity;
    const switched = m > 0 && m > se;
    comparisons.push({ challenger: c.method, incumbent: inc.method, meanDiff: m, standardError: se, switched });
    why.push(
      `${c.method} vs ${inc.method}: ${m >= 0 ? '+' : ''}${m.toFixed(4)} ± ${se.toFixed(4)} (${switched ? "wins by more than the folds' noise" : "not more than the folds' noise"})`,
    );
    if (switched) inc = c;
  }
  const first = scored[0]!.method;
  const reason =
    inc.method === first
      ? `kept ${first}, the simplest: no other candidate beat it by more than one standard error of the paired fold differences${why.length ? ` (${why.join('; ')})` : ''}`
      : `chose ${inc.method}: it beat the incumbent by more than one standard error of the paired fold differences (${why.join('; ')})`;
  return { chosen: inc.method, reason, comparisons };
}

/** Runs candidates in order under the budget; the first always runs. */
class Search {
  readonly candidates: AutoCandidate[] = [];
  constructor(
    private readonly t0: number,
    private readonly budgetMinutes: number | undefined,
    private readonly onCandidate?: (c: AutoCandidate) => void,
  ) {}
  async run(
    method: string,
    description: string,
    score: () => Promise<number[]>,
    notApplicable?: string,
  ): Promise<void> {
    const spent = (performance.now() - this.t0) / 60000;
    let c: AutoCandidate;
    if (notApplicable) c = { method, description, seconds: 0, skipped: notApplicable };
    else if (this.candidates.length && this.budgetMinutes !== undefined && spent >= this.budgetMinutes)
      c = {
        method,
        description,
        seconds: 0,
        skipped: `budget of ${this.budgetMinutes} min spent (${spent.toFixed(1)} min) before it started`,
      };
    else {
      const s0 = performance.now();
      const folds = await score();
      c = { method, description, folds, mean: meanOf(folds), seconds: (performance.now() - s0) / 1000 };
    }
    this.candidates.push(c);
    this.onCandidate?.(c);
  }
}

/** Per fold f: train on the other folds, score on fold f. */
async function perFold(
  fold: number[],
  k: number,
  score: (tr: number[], va: number[]) => Promise<number>,
): Promise<number[]> {
  const out: number[] = [];
  for (let f = 0; f < k; f++) {
    const tr = fold.flatMap((g, i) => (g === f ? [] : [i])),
      va = fold.flatMap((g, i) => (g === f ? [i] : []));
    out.push(await score(tr, va));
  }
  return out;
}

// ───────────────────────────── images ─────────────────────────────

export interface ImageAutoOptions {
  labelsPerClass?: number;
  valFraction?: number;
  testFraction?: number;
  seed?: number;
  /** Activation/feature cache folder (default: a temporary one, removed at the end). */
  cacheDir?: string;
  out?: string;
  /** Folds of the training split (default 5, fewer when a class has fewer training examples). */
  folds?: number;
  /** Minutes for the search: no new candidate starts after this (the frozen head always runs). */
  budgetMinutes?: number;
  /** Options of the frozen-feature candidate (its head is the logistic regression). */
  features?: Omit<
    FeatureTrainOptions,
    'out' | 'labelsPerClass' | 'valFraction' | 'testFraction' | 'seed' | 'cacheDir' | 'head' | 'mlp' | 'knn' | 'ncm'
  >;
  /** Options of the fine-tuned candidate (default: the top 2 blocks, 5 epochs). */
  finetune?: Omit<
    ImageFinetuneOptions,
    'out' | 'labelsPerClass' | 'valFraction' | 'testFraction' | 'seed' | 'cacheDir'
  >;
  onCandidate?: (c: AutoCandidate) => void;
}

export interface ImageAutoResult {
  selection: AutoSelection;
  /** The chosen method's result, fitted on the whole training split (and saved in `out`). */
  features?: FeatureTrainResult;
  finetuned?: ImageFinetuneResult;
  test?: Metrics;
  validation?: Metrics;
}

/** `--mode auto` on images: frozen-feature head vs top blocks fine-tuned, chosen on folds of the training split. */
export async function trainAuto(
  model: Graph | string,
  data: LabelledImages,
  o: ImageAutoOptions = {},
): Promise<ImageAutoResult> {
  const t0 = performance.now();
  const g = typeof model === 'string' ? loadModel(model) : model;
  const seed = o.seed ?? 0;
  const K = data.classes.length;
  if (K < 2) throw new GraftError(`the dataset has ${K} class; at least two are needed`);
  const splitOpts = {
    valFraction: o.valFraction ?? 0.1,
    testFraction: o.testFraction ?? 0.2,
    seed,
    ...(o.labelsPerClass !== undefined ? { labelsPerClass: o.labelsPerClass } : {}),
  };
  const split = stratifiedSplit(data.labels, {
    valFraction: splitOpts.valFraction,
    testFraction: splitOpts.testFraction,
    seed,
    ...(o.labelsPerClass ? { perClass: o.labelsPerClass } : {}),
  });
  const tmp = o.cacheDir ? undefined : mkdtempSync(join(tmpdir(), 'graft-auto-'));
  const cacheDir = o.cacheDir ?? tmp!;
  try {
    const cache = FeatureCache.open(cacheDir);
    const search = new Search(t0, o.budgetMinutes, o.onCandidate);
    // the training split's readable images (an unreadable one is skipped, as the final fit skips it)
    const node = o.features?.node ?? defaultFeatureNode(g);
    const bad = new Set<number>();
    const chunks: (string | Uint8Array)[][] = [];
    for (let s = 0; s < split.train.length; s += 32)
      chunks.push(split.train.slice(s, s + 32).map((i) => data.inputs[i]!));
    const feats = await extractFeatures(g, node, chunks, {
      batchSize: 32,
      cache,
      ...(o.features?.runtime ? { runtime: o.features.runtime } : {}),
      onUnreadable: (f) => bad.add(f.index),
    });
    const keep = split.train.map((_, j) => j).filter((j) => !bad.has(j));
    const X = keep.map((j) => feats[j]!),
      y = keep.map((j) => data.labels[split.train[j]!]!);
    const k = foldCount(y, o.folds ?? 5);
    if (!k)
      throw new GraftError(
        'graft train auto needs at least 2 training examples of every class to cross-validate',
        'raise --labels-per-class, or pick a method: graft train features|images',
      );
    const fold = stratifiedFolds(y, k, seed);
    await search.run('features', 'frozen-feature logistic head', () =>
      perFold(fold, k, async (tr, va) => {
        const m = (
          await fitCV(
            tr.map((i) => X[i]!),
            tr.map((i) => y[i]!),
            { numClasses: K, seed, ...(o.features?.grid ? { grid: o.features.grid } : {}) },
          )
        ).model;
        return accuracy(
          m.predict(va.map((i) => X[i]!)),
          va.map((i) => y[i]!),
        );
      }),
    );
    const ft = o.finetune ?? {};
    const ftDesc = ft.lora
      ? `LoRA rank ${ft.lora.rank} on the top blocks`
      : ft.cut !== undefined
        ? `the network above '${ft.cut}' fine-tuned`
        : `top ${ft.topBlocks ?? 2} blocks fine-tuned on cached activations`;
    await search.run('finetune', ftDesc, async () => {
      const gb = makeBatchDynamic(g);
      const m = await splitTopBlocks(gb, K, {
        ...(ft.cut !== undefined ? { cut: ft.cut } : { topBlocks: ft.topBlocks ?? 2 }),
        ...(ft.runtime ? { runtime: ft.runtime } : {}),
      });
      const augment = ft.augment === true ? {} : ft.augment === false ? undefined : ft.augment;
      const views = ft.views ?? (augment ? 4 : 1);
      const store = await cacheActivations(
        m,
        keep.map((j) => data.inputs[split.train[j]!]!),
        { views, seed, cache, ...(augment ? { augment } : {}), ...(ft.runtime ? { runtime: ft.runtime } : {}) },
      );
      const sub = (idx: number[], plain = false) =>
        new ActivationStore(
          store.dims,
          idx.map((i) => (plain ? store.rows[i]!.slice(0, 1) : store.rows[i]!)),
        );
      const {
        cut: _c,
        topBlocks: _t,
        views: _v,
        augment: _a,
        tolerance: _tol,
        onCacheProgress: _p,
        checkpoint: _ck,
        ...rest
      } = ft;
      return perFold(fold, k, async (tr, va) => {
        const r = await trainTopBlocks(
          m,
          sub(tr),
          tr.map((i) => y[i]!),
          { ...rest, epochs: ft.epochs ?? 5, batchSize: ft.batchSize ?? 32, seed },
        );
        try {
          return accuracy(
            await predictStore(r.trainer, m, sub(va, true)),
            va.map((i) => y[i]!),
          );
        } finally {
          await r.trainer.release();
        }
      });
    });
    const choice = chooseByFolds(search.candidates);
    const selection: AutoSelection = {
      mode: 'auto',
      folds: k,
      trainExamples: y.length,
      candidates: search.candidates,
      comparisons: choice.comparisons,
      chosen: choice.chosen,
      reason: choice.reason,
      ...(o.budgetMinutes !== undefined ? { budgetMinutes: o.budgetMinutes } : {}),
      seconds: (performance.now() - t0) / 1000,
    };
    const common = { ...splitOpts, cacheDir, ...(o.out ? { out: o.out } : {}) };
    let result: ImageAutoResult;
    if (choice.chosen === 'features') {
      const r = await trainFeatureClassifier(g, data, { ...o.features, ...common });
      result = {
        selection,
        features: r,
        ...(r.report.test ? { test: r.report.test } : {}),
        ...(r.report.validation ? { validation: r.report.validation } : {}),
      };
    } else {
      const r = await finetuneImages(g, data, { ...ft, ...common, seed });
      result = {
        selection,
        finetuned: r,
        ...(r.report.test ? { test: r.report.test } : {}),
        ...(r.report.validation ? { validation: r.report.validation } : {}),
      };
    }
    if (o.out)
      writeAutoReport(
        o.out,
        selection,
        result.features?.report ?? result.finetuned!.report,
        result.test ?? result.validation,
        result.test ? 'test' : 'validation',
        typeof model === 'string' ? model : g.name,
      );
    return result;
  } finally {
    if (tmp && existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
  }
}

/** report.json / report.html in `out`: the chosen method's metrics, every candidate's fold scores and the reason. */
export function writeAutoReport(
  out: string,
  selection: AutoSelection,
  training: unknown,
  shown: Metrics | undefined,
  split: string,
  model: string,
): void {
  if (!shown) return;
  const details: Record<string, string | number> = {
    split,
    'chosen by graft train auto': selection.chosen,
    reason: selection.reason,
    folds: `${selection.folds} (stratified, of the ${selection.trainExamples} training examples)`,
  };
  for (const c of selection.candidates)
    details[`candidate ${c.method}`] = c.folds
      ? `${c.description}: mean fold accuracy ${c.mean!.toFixed(4)} [${c.folds.map((a) => a.toFixed(3)).join(', ')}] (${c.seconds.toFixed(1)} s)`
      : `${c.description}: skipped (${c.skipped})`;
  writeReport(join(out, 'report.html'), shown, {
    title: `Graft classifier (graft train auto chose ${selection.chosen}): ${split} split`,
    model,
    details,
    extra: { auto: selection, training },
  });
}

// ───────────────────────────── text ─────────────────────────────

export interface TextAutoOptions {
  classes: number;
  pooling?: Pooling;
  maxLength?: number;
  seed?: number;
  folds?: number;
  budgetMinutes?: number;
  /** Feature cache for the frozen encoder's pooled vectors. */
  cache?: FeatureCache;
  /** LP-FT: encoder learning rate (default 1e-4), epochs (default 3; at least 60 steps and 3 per 16 texts). */
  lr?: number;
  epochs?: number;
  /** SetFit runs at ≤ this many labels per class (default 16). */
  setfitMaxPerClass?: number;
  /** Candidates to leave out (e.g. ['setfit']). */
  exclude?: string[];
  warn?: (m: string) => void;
  onCandidate?: (c: AutoCandidate) => void;
  onStage?: (s: string) => void;
}

export interface TextAutoResult {
  selection: AutoSelection;
  /** The chosen classifier fitted on all the training texts: input_ids (…) → probabilities. */
  classifier: Graph;
  /** The `mode` recorded in the saved folder's settings. */
  mode: 'features' | 'tfidf' | 'finetune' | 'setfit';
}

const TEXT_DESCRIPTIONS: Record<string, string> = {
  features: 'frozen-feature logistic head',
  tfidf: "TF-IDF over the tokenizer's id uni/bigrams + logistic head",
  finetune: 'LP-FT: linear probe, then the whole encoder fine-tuned',
  setfit: 'SetFit: contrastive pairs, then a logistic head',
};

/** LP-FT steps as bench/text-classify.ts runs them: at least 60, and 3 epochs. */
const lpftMinSteps = (n: number) => Math.max(3 * Math.ceil(n / 16), 60);

/** `--mode auto` on text: frozen head, TF-IDF, LP-FT and (≤ 16 labels per class) SetFit, chosen on folds of the training texts. */
export async function trainTextAuto(
  m: TextModel,
  texts: readonly string[],
  y: number[],
  o: TextAutoOptions,
): Promise<TextAutoResult> {
  const t0 = performance.now();
  const seed = o.seed ?? 0,
    K = o.classes,
    pooling = o.pooling ?? 'mean';
  const maxLength = o.maxLength ?? Math.min(128, m.tokenizer.modelMaxLength);
  const quiet = () => {};
  const k = foldCount(y, o.folds ?? 5);
  if (!k)
    throw new GraftError(
      'graft train auto needs at least 2 training texts of every class to cross-validate',
      'raise --labels-per-class, or pick a method: graft train text [--finetune] or graft train setfit',
    );
  const fold = stratifiedFolds(y, k, seed);
  const extractor = new TextFeatureExtractor(m, pooling);
  const exclude = new Set(o.exclude ?? []);
  const perClass = Math.max(...Array.from({ length: K }, (_, c) => y.filter((v) => v === c).length));
  const lr = o.lr ?? 1e-4;
  const pick = <T>(xs: readonly T[], idx: number[]) => idx.map((i) => xs[i]!);
  try {
    o.onStage?.('features');
    const F = await extractor.extract(texts, {
      maxLength,
      warn: o.warn ?? quiet,
      ...(o.cache ? { cache: o.cache } : {}),
    });
    const search = new Search(t0, o.budgetMinutes, o.onCandidate);
    await search.run('features', TEXT_DESCRIPTIONS['features']!, () =>
      perFold(fold, k, async (tr, va) =>
        (await fitTextHead(pick(F, tr), pick(y, tr), seed)).accuracy(pick(F, va), pick(y, va)),
      ),
    );
    const off = (mth: string) => (exclude.has(mth) ? 'left out by the caller' : undefined);
    await search.run(
      'tfidf',
      TEXT_DESCRIPTIONS['tfidf']!,
      () =>
        perFold(fold, k, async (tr, va) =>
          accuracy(
            (
              await trainTfidfClassifier(pick(texts, tr), pick(y, tr), { seed, tokenizer: m.tokenizer, maxLength })
            ).predict(pick(texts, va)),
            pick(y, va),
          ),
        ),
      off('tfidf'),
    );
    await search.run(
      'finetune',
      TEXT_DESCRIPTIONS['finetune']!,
      () =>
        perFold(fold, k, async (tr, va) => {
          o.onStage?.(`LP-FT fold`);
          const head = await fitTextHead(pick(F, tr), pick(y, tr), seed);
          const r = await finetuneText(m, pick(texts, tr), pick(y, tr), {
            classes: K,
            pooling,
            maxLength,
            seed,
            head,
            lr,
            epochs: o.epochs ?? 3,
            minSteps: lpftMinSteps(tr.length),
            warn: quiet,
          });
          return accuracy(
            (await predictTextProba(r.graph, m.tokenizer, pick(texts, va), { maxLength, warn: quiet })).map(argmax),
            pick(y, va),
          );
        }),
      off('finetune'),
    );
    const sfMax = o.setfitMaxPerClass ?? 16;
    await search.run(
      'setfit',
      TEXT_DESCRIPTIONS['setfit']!,
      () =>
        perFold(fold, k, async (tr, va) => {
          o.onStage?.(`SetFit fold`);
          const r = await trainSetFit(m, pick(texts, tr), pick(y, tr), {
            pooling,
            maxLength,
            seed,
            lr,
            steps: Math.min(Math.ceil((40 * tr.length) / 16), 120),
          });
          try {
            return r.head.accuracy(await r.extractor.extract(pick(texts, va), { maxLength, warn: quiet }), pick(y, va));
          } finally {
            await r.extractor.release();
          }
        }),
      off('setfit') ??
        (perClass > sfMax
          ? `SetFit runs at ≤ ${sfMax} labels per class (the training split has up to ${perClass})`
          : undefined),
    );
    const choice = chooseByFolds(search.candidates);
    const selection: AutoSelection = {
      mode: 'auto',
      folds: k,
      trainExamples: y.length,
      candidates: search.candidates,
      comparisons: choice.comparisons,
      chosen: choice.chosen,
      reason: choice.reason,
      ...(o.budgetMinutes !== undefined ? { budgetMinutes: o.budgetMinutes } : {}),
      seconds: 0,
    };
    // the chosen method on every training text
    o.onStage?.(`final ${choice.chosen}`);
    let classifier: Graph;
    const mode = choice.chosen as TextAutoResult['mode'];
    if (mode === 'features') {
      classifier = addClassifierHead(extractor.graph, gemmFromLogistic(await fitTextHead(F, y, seed)), {
        probabilities: true,
      });
    } else if (mode === 'tfidf') {
      classifier = tfidfClassifierGraph(
        await trainTfidfClassifier(texts, y, { seed, tokenizer: m.tokenizer, maxLength }),
      );
    } else if (mode === 'finetune') {
      const r = await finetuneText(m, texts, y, {
        classes: K,
        pooling,
        maxLength,
        seed,
        head: await fitTextHead(F, y, seed),
        lr,
        epochs: o.epochs ?? 3,
        minSteps: lpftMinSteps(texts.length),
        warn: quiet,
      });
      classifier = withProbabilities(r.graph);
    } else {
      const r = await trainSetFit(m, texts, y, {
        pooling,
        maxLength,
        seed,
        lr,
        steps: Math.min(Math.ceil((40 * texts.length) / 16), 120),
      });
      classifier = addClassifierHead(addPooling(r.encoder, pooling), gemmFromLogistic(r.head), { probabilities: true });
      await r.extractor.release();
    }
    selection.seconds = (performance.now() - t0) / 1000;
    return { selection, classifier, mode };
  } finally {
    await extractor.release();
  }
}

/** Test metrics of a text classifier graph (probabilities or logits output). */
export async function scoreTextClassifier(
  g: Graph,
  m: TextModel,
  texts: readonly string[],
  y: readonly number[],
  classes: string[],
  maxLength: number,
): Promise<Metrics> {
  const P = await predictTextProba(g, m.tokenizer, texts, { maxLength, warn: () => {} });
  return classificationMetrics([...y], P.map(argmax), classes);
}
