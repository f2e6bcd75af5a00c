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
 * Folds: stratified K-fold, repeated R times with different shuffles (`repeats`, default 3 when the
 * training split has at most 200 examples, else 1), so that every training example is held out once
 * per repeat. The rule (`chooseByFolds`): the frozen-feature head is the incumbent; each other
 * candidate, in order, replaces it only when its held-out accuracy is higher by more than `switchBar(m)`
 * standard errors, m being the number of challengers (one standard error for one challenger, more for
 * several, so that noise alone displaces the simplest method no more often than with one). The
 * standard error is that of the per-example paired differences (each example's candidate − incumbent
 * correctness, averaged over the repeats, then over the examples), which is
 * steadier than the spread of K fold means; fold results without per-example data fall back to the
 * paired fold differences. Every candidate's fold accuracies, the comparisons and the reason are in
 * the report.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import normalQuantile from '@stdlib/stats-base-dists-normal-quantile';
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
import { argmax } from '../util/vectors.js';

/** One candidate's cross-validation: accuracy per held-out fold (absent when skipped). */
export interface AutoCandidate {
  method: string;
  /** What it is, in words. */
  description: string;
  /** Accuracy per held-out fold, repeat after repeat (K values per repeat). */
  folds?: number[];
  /** Held-out accuracy: the fraction of held-out predictions that were right, over every repeat scored. */
  mean?: number;
  /** Repeats of the K folds scored (fewer than asked when the budget ran out). */
  repeats?: number;
  seconds: number;
  /** Why it was not scored (the budget, or not applicable). */
  skipped?: string;
}

export interface AutoComparison {
  challenger: string;
  incumbent: string;
  /** Held-out accuracy difference (challenger − incumbent) and its standard error. */
  meanDiff: number;
  standardError: number;
  /**
   * What the standard error is taken over: `examples` (per-example paired differences, each averaged
   * over the repeats both candidates scored) or `folds` (paired fold accuracies; no per-example data).
   */
  statistic: 'examples' | 'folds';
  /** How many paired values: training examples, or folds. */
  pairs: number;
  /** Repeats both candidates scored (the comparison uses those). */
  repeats: number;
  /** Standard errors the challenger had to be ahead by (`switchBar` of the number of challengers). */
  bar: number;
  switched: boolean;
}

export interface AutoSelection {
  mode: 'auto';
  /** Folds of the training split (stratified). */
  folds: number;
  /** Repeats of the K folds asked for (each with its own shuffle). */
  repeats: number;
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

/** Repeats of the K folds when the caller gives none: 3 on a small training split (≤ 200 examples), else 1. */
export function defaultRepeats(trainExamples: number): number {
  return trainExamples <= 200 ? 3 : 1;
}

const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Mean and standard error of the mean (∞ with fewer than two values). */
function meanAndSe(d: number[]): { m: number; se: number } {
  const m = meanOf(d);
  const se = d.length > 1 ? Math.sqrt(d.reduce((a, x) => a + (x - m) ** 2, 0) / (d.length - 1) / d.length) : Infinity;
  return { m, se };
}

/**
 * Per training example, per repeat: 1 when its held-out prediction was right, else 0
 * (`correct[r][i]`, for each repeat the candidate scored). Keyed by method.
 */
export type HeldOutCorrectness = ReadonlyMap<string, readonly (ArrayLike<number> & Iterable<number>)[]>;

/**
 * The paired difference of challenger c against incumbent inc: per example (each example's
 * correctness difference averaged over the repeats both scored) when `correct` has both, else per
 * fold over the folds both scored.
 */
export function pairedDifference(
  c: AutoCandidate,
  inc: AutoCandidate,
  correct?: HeldOutCorrectness,
): Pick<AutoComparison, 'meanDiff' | 'standardError' | 'statistic' | 'pairs' | 'repeats'> {
  const a = correct?.get(c.method),
    b = correct?.get(inc.method);
  if (a?.length && b?.length) {
    const R = Math.min(a.length, b.length),
      n = a[0]!.length;
    const d = Array.from({ length: n }, (_, i) => {
      let s = 0;
      for (let r = 0; r < R; r++) s += a[r]![i]! - b[r]![i]!;
      return s / R;
    });
    const { m, se } = meanAndSe(d);
    return { meanDiff: m, standardError: se, statistic: 'examples', pairs: n, repeats: R };
  }
  const F = Math.min(c.folds!.length, inc.folds!.length);
  const { m, se } = meanAndSe(c.folds!.slice(0, F).map((x, f) => x - inc.folds![f]!));
  const R = Math.min(c.repeats ?? 1, inc.repeats ?? 1);
  return { meanDiff: m, standardError: se, statistic: 'folds', pairs: F, repeats: R };
}

/** One-sided chance that noise alone puts a challenger more than one standard error ahead: 1 − Φ(1). */
const ONE_SE_TAIL = 0.15865525393145707;

/**
 * How many standard errors a challenger must be ahead by, when `challengers` of them are compared in
 * turn: one for a single challenger (a one-sided false-switch chance of 1 − Φ(1) ≈ 16 %); with m of
 * them each is held to the Bonferroni bar Φ⁻¹(1 − 0.16/m) (1.41 for two, 1.62 for three), so that the
 * chance that noise alone displaces the simplest method stays at most that of one comparison. (With
 * one bar per comparison, the best of three noisy challengers clears it far more often than one.)
 */
export function switchBar(challengers: number): number {
  return challengers <= 1 ? 1 : normalQuantile(1 - ONE_SE_TAIL / challengers, 0, 1);
}

/**
 * The incumbent (the first scored candidate, the simplest) is replaced by a later candidate only
 * when the held-out accuracy difference is positive and exceeds `switchBar(m)` standard errors of the
 * paired differences (per example when `correct` is given, else per fold), m = the scored challengers.
 */
export function chooseByFolds(
  cands: AutoCandidate[],
  correct?: HeldOutCorrectness,
): {
  chosen: string;
  reason: string;
  comparisons: AutoComparison[];
} {
  const scored = cands.filter((c) => c.folds);
  if (!scored.length) throw new GraftError('no candidate was scored');
  let inc = scored[0]!;
  const comparisons: AutoComparison[] = [];
  const why: string[] = [];
  const bar = switchBar(scored.length - 1);
  const bars = bar === 1 ? 'one standard error' : `${bar.toFixed(2)} standard errors`;
  for (const c of scored.slice(1)) {
    const p = pairedDifference(c, inc, correct);
    const switched = p.meanDiff > 0 && p.meanDiff > bar * p.standardError;
    comparisons.push({ challenger: c.method, incumbent: inc.method, ...p, bar, switched });
    const over =
      p.statistic === 'examples'
        ? `${p.pairs} held-out examples${p.repeats > 1 ? ` × ${p.repeats} repeats` : ''}`
        : `${p.pairs} folds`;
    why.push(
      `${c.method} vs ${inc.method}: ${p.meanDiff >= 0 ? '+' : ''}${p.meanDiff.toFixed(4)} ± ${p.standardError.toFixed(4)} over ${over} (${switched ? 'wins by more than the noise' : 'not more than the noise'})`,
    );
    if (switched) inc = c;
  }
  const first = scored[0]!.method;
  const reason =
    inc.method === first
      ? `kept ${first}, the simplest: no other candidate's held-out accuracy beat it by more than ${bars} of the paired differences${bar === 1 ? '' : ` (the bar for ${scored.length - 1} challengers)`}${why.length ? ` (${why.join('; ')})` : ''}`
      : `chose ${inc.method}: its held-out accuracy beat the incumbent by more than ${bars} of the paired differences${bar === 1 ? '' : ` (the bar for ${scored.length - 1} challengers)`} (${why.join('; ')})`;
  return { chosen: inc.method, reason, comparisons };
}

/** Fold index per example for each repeat: repeat 0 is `stratifiedFolds(y, k, seed)`, later ones reshuffled. */
export function repeatedFolds(y: readonly number[], k: number, repeats: number, seed = 0): number[][] {
  return Array.from({ length: repeats }, (_, r) => stratifiedFolds(y, k, seed + 7919 * r));
}

/** Trains on the `tr` examples, returns the predicted class of each `va` example. */
type FoldScorer = (tr: number[], va: number[]) => Promise<readonly number[]>;

/**
 * Runs candidates in order under the budget: each is cross-validated over the repeated folds (the
 * first candidate always runs; no new candidate, nor a new repeat of one, starts once the budget is
 * spent) and keeps every held-out example's correctness for the noise estimate.
 */
class Search {
  readonly candidates: AutoCandidate[] = [];
  readonly correct = new Map<string, Uint8Array[]>();
  constructor(
    private readonly t0: number,
    private readonly budgetMinutes: number | undefined,
    private readonly y: readonly number[],
    private readonly folds: number[][],
    private readonly k: number,
    private readonly onCandidate?: (c: AutoCandidate) => void,
  ) {}
  private spent(): number {
    return (performance.now() - this.t0) / 60000;
  }
  private overBudget(): boolean {
    return this.budgetMinutes !== undefined && this.spent() >= this.budgetMinutes;
  }
  /** The choice among the candidates run so far (chooseByFolds), as the report's selection; seconds so far. */
  select(): AutoSelection {
    const choice = chooseByFolds(this.candidates, this.correct);
    return {
      mode: 'auto',
      folds: this.k,
      repeats: this.folds.length,
      trainExamples: this.y.length,
      candidates: this.candidates,
      comparisons: choice.comparisons,
      chosen: choice.chosen,
      reason: choice.reason,
      ...(this.budgetMinutes !== undefined ? { budgetMinutes: this.budgetMinutes } : {}),
      seconds: (performance.now() - this.t0) / 1000,
    };
  }
  async run(method: string, description: string, predict: FoldScorer, notApplicable?: string): Promise<void> {
    let c: AutoCandidate;
    if (notApplicable) c = { method, description, seconds: 0, skipped: notApplicable };
    else if (this.candidates.length && this.overBudget())
      c = {
        method,
        description,
        seconds: 0,
        skipped: `budget of ${this.budgetMinutes} min spent (${this.spent().toFixed(1)} min) before it started`,
      };
    else {
      const s0 = performance.now();
      const accs: number[] = [],
        correct: Uint8Array[] = [];
      let hits = 0,
        total = 0;
      for (const fold of this.folds) {
        if (correct.length && this.overBudget()) break;
        const right = new Uint8Array(this.y.length);
        for (let f = 0; f < this.k; f++) {
          const tr = fold.flatMap((g, i) => (g === f ? [] : [i])),
            va = fold.flatMap((g, i) => (g === f ? [i] : []));
          const pred = await predict(tr, va);
          let ok = 0;
          va.forEach((i, j) => {
            right[i] = pred[j] === this.y[i] ? 1 : 0;
            ok += right[i]!;
          });
          accs.push(va.length ? ok / va.length : 0);
          hits += ok;
          total += va.length;
        }
        correct.push(right);
      }
      this.correct.set(method, correct);
      c = {
        method,
        description,
        folds: accs,
        mean: hits / total,
        repeats: correct.length,
        seconds: (performance.now() - s0) / 1000,
      };
    }
    this.candidates.push(c);
    this.onCandidate?.(c);
  }
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
  /** Repeats of the folds, each with its own shuffle (default: `defaultRepeats` of the training split's size). */
  repeats?: number;
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
    const repeats = o.repeats ?? defaultRepeats(y.length);
    const search = new Search(t0, o.budgetMinutes, y, repeatedFolds(y, k, repeats, seed), k, o.onCandidate);
    await search.run('features', 'frozen-feature logistic head', async (tr, va) => {
      const m = (
        await fitCV(
          tr.map((i) => X[i]!),
          tr.map((i) => y[i]!),
          { numClasses: K, seed, ...(o.features?.grid ? { grid: o.features.grid } : {}) },
        )
      ).model;
      return m.predict(va.map((i) => X[i]!));
    });
    const ft = o.finetune ?? {};
    const ftDesc = ft.lora
      ? `LoRA rank ${ft.lora.rank} on the top blocks`
      : ft.cut !== undefined
        ? `the network above '${ft.cut}' fine-tuned`
        : `top ${ft.topBlocks ?? 2} blocks fine-tuned on cached activations`;
    // the top blocks and their cached activations are made once, on the first fold
    let prepared: { m: Awaited<ReturnType<typeof splitTopBlocks>>; store: ActivationStore } | undefined;
    const prepare = async () => {
      if (prepared) return prepared;
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
      prepared = { m, store };
      return prepared;
    };
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
    await search.run('finetune', ftDesc, async (tr, va) => {
      const { m, store } = await prepare();
      const sub = (idx: number[], plain = false) =>
        new ActivationStore(
          store.dims,
          idx.map((i) => (plain ? store.rows[i]!.slice(0, 1) : store.rows[i]!)),
        );
      const r = await trainTopBlocks(
        m,
        sub(tr),
        tr.map((i) => y[i]!),
        { ...rest, epochs: ft.epochs ?? 5, batchSize: ft.batchSize ?? 32, seed },
      );
      try {
        return await predictStore(r.trainer, m, sub(va, true));
      } finally {
        await r.trainer.release();
      }
    });
    const selection = search.select();
    const common = { ...splitOpts, cacheDir, ...(o.out ? { out: o.out } : {}) };
    let result: ImageAutoResult;
    if (selection.chosen === 'features') {
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
    folds: `${selection.folds} (stratified, of the ${selection.trainExamples} training examples)${selection.repeats > 1 ? `, repeated ${selection.repeats} times with different shuffles` : ''}`,
  };
  for (const c of selection.candidates)
    details[`candidate ${c.method}`] = c.folds
      ? `${c.description}: held-out accuracy ${c.mean!.toFixed(4)}, folds [${c.folds.map((a) => a.toFixed(3)).join(', ')}] (${c.seconds.toFixed(1)} s)`
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
  /** Repeats of the folds, each with its own shuffle (default: `defaultRepeats` of the training split's size). */
  repeats?: number;
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
  const repeats = o.repeats ?? defaultRepeats(y.length);
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
    const search = new Search(t0, o.budgetMinutes, y, repeatedFolds(y, k, repeats, seed), k, o.onCandidate);
    await search.run('features', TEXT_DESCRIPTIONS['features']!, async (tr, va) =>
      (await fitTextHead(pick(F, tr), pick(y, tr), seed)).predict(pick(F, va)),
    );
    const off = (mth: string) => (exclude.has(mth) ? 'left out by the caller' : undefined);
    await search.run(
      'tfidf',
      TEXT_DESCRIPTIONS['tfidf']!,
      async (tr, va) =>
        (await trainTfidfClassifier(pick(texts, tr), pick(y, tr), { seed, tokenizer: m.tokenizer, maxLength })).predict(
          pick(texts, va),
        ),
      off('tfidf'),
    );
    await search.run(
      'finetune',
      TEXT_DESCRIPTIONS['finetune']!,
      async (tr, va) => {
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
        return (await predictTextProba(r.graph, m.tokenizer, pick(texts, va), { maxLength, warn: quiet })).map(argmax);
      },
      off('finetune'),
    );
    const sfMax = o.setfitMaxPerClass ?? 16;
    await search.run(
      'setfit',
      TEXT_DESCRIPTIONS['setfit']!,
      async (tr, va) => {
        o.onStage?.(`SetFit fold`);
        const r = await trainSetFit(m, pick(texts, tr), pick(y, tr), {
          pooling,
          maxLength,
          seed,
          lr,
          steps: Math.min(Math.ceil((40 * tr.length) / 16), 120),
        });
        try {
          return r.head.predict(await r.extractor.extract(pick(texts, va), { maxLength, warn: quiet }));
        } finally {
          await r.extractor.release();
        }
      },
      off('setfit') ??
        (perClass > sfMax
          ? `SetFit runs at ≤ ${sfMax} labels per class (the training split has up to ${perClass})`
          : undefined),
    );
    const selection = search.select();
    // the chosen method on every training text
    o.onStage?.(`final ${selection.chosen}`);
    let classifier: Graph;
    const mode = selection.chosen as TextAutoResult['mode'];
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
