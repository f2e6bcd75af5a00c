/**
 * Feature-level adaptation with label-free hyperparameter selection: run one method (CORAL,
 * subspace alignment, self-training, CORAL then self-training, or source-only) over a small grid of its hyperparameters,
 * each fitted on most of the labelled source, score every candidate by reverse validation on the
 * held-out rest of the source (./selection.ts), and refit the best on all the source. Target labels
 * never enter; a caller that has them scores the returned head for the report.
 */
import { coral } from './coral.js';
import { subspaceAlignment } from './subspace.js';
import { selfTrainFeatures } from './self-training.js';
import { sourceOnly, type FeatureAdaptResult, type HeadOptions, type LabelledFeatures } from './feature-head.js';
import {
  informationMaximization,
  reverseValidation,
  selectBest,
  selectOverUnadapted,
  NO_HARM_MARGIN,
  type Candidate,
} from './selection.js';
import { stratifiedSplit } from '../data/splits.js';
import { GraftError } from '../util/errors.js';
import { classCount } from '../heads/head.js';
import { argmax } from '../util/vectors.js';

export type FeatureMethod = 'source-only' | 'coral' | 'subspace' | 'self-training' | 'coral-self-training';
export const FEATURE_METHODS: readonly FeatureMethod[] = [
  'source-only',
  'coral',
  'subspace',
  'self-training',
  'coral-self-training',
];

export interface AdaptFeaturesOptions extends HeadOptions {
  /** Hyperparameter values to try (default per method; see defaultGrid). */
  grid?: Record<string, number>[];
  /** Fraction of each source class held out for reverse validation (default 0.2). */
  valFraction?: number;
  seed?: number;
  onCandidate?: (c: { params: Record<string, number>; score: number; seconds: number }) => void;
  /** Keep every candidate's target probabilities in `candidates` (for studies of the criterion). */
  keepPredictions?: boolean;
  /**
   * Do no harm (default true): the source-only head is a candidate too; the method's best candidate
   * (by reverse validation) is used only when the information maximization of its target predictions
   * beats the source-only head's by more than `margin`.
   */
  noHarm?: boolean;
  /** Margin of the no-harm rule, in nats of information maximization (default NO_HARM_MARGIN.informationMaximizationFeatures). */
  margin?: number;
}

export interface AdaptFeaturesResult extends FeatureAdaptResult {
  /** Every candidate with its label-free scores (reverse validation picks; IM is reported). */
  candidates: {
    params: Record<string, number>;
    reverseValidation: number;
    informationMaximization: number;
    targetProba?: Float64Array[];
  }[];
  chosen: Record<string, number>;
  /** No-harm rule (absent for method 'source-only' or noHarm false): the source-only candidate's scores, the margin (information maximization), and whether it was kept. */
  unadapted?: {
    reverseValidation: number;
    informationMaximization: number;
    kept: boolean;
    margin: number;
    reason: string;
    targetProba?: Float64Array[];
  };
}

export function defaultGrid(method: FeatureMethod, d: number): Record<string, number>[] {
  switch (method) {
    case 'source-only':
      return [{}];
    case 'coral':
      return [0.01, 0.1, 1].map((lambda) => ({ lambda }));
    case 'subspace':
      return [...new Set([16, 32, 64, 128, d])].filter((k) => k <= d).map((dims) => ({ dims }));
    case 'self-training':
      return [0.7, 0.8, 0.9, 0.95].map((threshold) => ({ threshold }));
    case 'coral-self-training':
      return [0.1, 1].flatMap((lambda) => [0.7, 0.9].map((threshold) => ({ lambda, threshold })));
  }
}

export function runFeatureMethod(
  method: FeatureMethod,
  source: LabelledFeatures,
  target: ArrayLike<number>[],
  params: Record<string, number>,
  o: HeadOptions,
): Promise<FeatureAdaptResult> {
  switch (method) {
    case 'source-only':
      return sourceOnly(source, target, o);
    case 'coral':
      return coral(source, target, { ...o, ...params });
    case 'subspace':
      return subspaceAlignment(source, target, { ...o, ...params });
    case 'self-training':
      return selfTrainFeatures(source, target, { ...o, ...params });
    case 'coral-self-training':
      return selfTrainFeatures(source, target, { ...o, ...params, align: 'coral' });
    default:
      throw new GraftError(`unknown feature-level method '${method as string}' (known: ${FEATURE_METHODS.join(', ')})`);
  }
}

export async function adaptFeatures(
  method: FeatureMethod,
  source: LabelledFeatures,
  target: ArrayLike<number>[],
  o: AdaptFeaturesOptions = {},
): Promise<AdaptFeaturesResult> {
  if (!FEATURE_METHODS.includes(method))
    throw new GraftError(`unknown feature-level method '${method}' (known: ${FEATURE_METHODS.join(', ')})`);
  const t0 = performance.now();
  const K = o.numClasses ?? classCount(source.y);
  const ho: HeadOptions = { ...o, numClasses: K };
  const grid = o.grid ?? defaultGrid(method, source.x[0]!.length);
  let chosen = grid[0] ?? {};
  const candidates: AdaptFeaturesResult['candidates'] = [];
  const guard = (o.noHarm ?? true) && method !== 'source-only';
  let unadapted: AdaptFeaturesResult['unadapted'];
  if (grid.length > 1 || guard) {
    const split = stratifiedSplit(source.y, { testFraction: o.valFraction ?? 0.2, seed: o.seed ?? 0 });
    const tr = { x: split.train.map((i) => source.x[i]!), y: split.train.map((i) => source.y[i]!) };
    const va = { x: split.test.map((i) => source.x[i]!), y: split.test.map((i) => source.y[i]!) };
    const rv = (P: Float64Array[]) =>
      reverseValidation(target, P.map(argmax), va, { numClasses: K, ...(o.l2 !== undefined ? { l2: o.l2 } : {}) });
    const cands: Candidate<Record<string, number>>[] = [];
    for (const params of grid) {
      const c0 = performance.now();
      const r = await runFeatureMethod(method, tr, target, params, ho);
      const score = await rv(r.targetProba);
      const im = informationMaximization(r.targetProba).score;
      candidates.push({
        params,
        reverseValidation: score,
        informationMaximization: im,
        ...(o.keepPredictions ? { targetProba: r.targetProba } : {}),
      });
      cands.push({ params, value: params, score });
      o.onCandidate?.({ params, score, seconds: (performance.now() - c0) / 1000 });
    }
    if (guard) {
      // the source-only head, fitted as the candidates were; the method's best candidate (by reverse
      // validation) is used only when information maximization of its target predictions beats the
      // source-only head's by the margin (reverse validation itself favours the source-only labelling:
      // its pseudo-labels agree with the source by construction — docs/adaptation.md, "Do no harm")
      const base = await sourceOnly(tr, target, ho);
      const baseIm = informationMaximization(base.targetProba).score;
      const best = selectBest(cands);
      const bestIm = candidates[cands.indexOf(best)]!.informationMaximization;
      const margin = o.margin ?? NO_HARM_MARGIN.informationMaximizationFeatures;
      const g = selectOverUnadapted(
        { params: {}, value: {}, score: baseIm },
        [{ ...best, score: bestIm }],
        margin,
        'information maximization of the target predictions',
      );
      unadapted = {
        reverseValidation: await rv(base.targetProba),
        informationMaximization: baseIm,
        kept: g.keptUnadapted,
        margin,
        reason: g.reason,
        ...(o.keepPredictions ? { targetProba: base.targetProba } : {}),
      };
      chosen = g.keptUnadapted ? {} : best.value;
      if (g.keptUnadapted) {
        const final = await sourceOnly(source, target, ho);
        return { ...final, candidates, chosen, unadapted, seconds: (performance.now() - t0) / 1000 };
      }
    } else {
      chosen = selectBest(cands).value;
    }
  }
  const final = await runFeatureMethod(method, source, target, chosen, ho);
  return {
    ...final,
    candidates,
    chosen,
    ...(unadapted ? { unadapted } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
}
