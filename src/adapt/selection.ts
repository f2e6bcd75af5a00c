/**
 * Model selection without target labels. Adaptation has hyperparameters (confidence threshold,
 * learning rate, steps) and checkpoints, and picking them with target test labels (as many
 * published comparisons do) reports an accuracy no user could get. The criteria here read only
 * unlabelled target data (and, for reverse validation, the labelled source):
 *
 * - informationMaximization: H(mean prediction) − mean H(prediction), at a fixed temperature:
 *   confident predictions that still use every class (high is good; the score of SHOT/IM).
 * - reverseValidation: fit a head on the target's pseudo-labels (the candidate's predictions), then
 *   measure its accuracy on held-out labelled source data: a candidate whose target labelling is
 *   consistent with the source task scores high (Zhong et al. 2010).
 *
 * Target labels, when a caller has them, are for the final report only: `selectBest` never sees them.
 */
import { entropyOf } from './predict.js';
import { fit } from '../heads/logistic.js';
import { GraftError } from '../util/errors.js';

/** H(mean p) − mean H(p) over a set of predicted distributions. */
export function informationMaximization(P: ArrayLike<number>[]): {
  score: number;
  meanEntropy: number;
  diversity: number;
} {
  if (P.length === 0) throw new GraftError('information maximization needs predictions');
  const K = P[0]!.length;
  const mean = new Float64Array(K);
  let h = 0;
  for (const p of P) {
    h += entropyOf(p);
    for (let k = 0; k < K; k++) mean[k]! += p[k]! / P.length;
  }
  const meanEntropy = h / P.length,
    diversity = entropyOf(mean);
  return { score: diversity - meanEntropy, meanEntropy, diversity };
}

export interface Candidate<T> {
  /** What the candidate is (hyperparameters, checkpoint step). */
  params: Record<string, number | string>;
  value: T;
  /** Label-free score (higher is better). */
  score: number;
}

/** The candidate with the highest label-free score (first one on ties). */
export function selectBest<T>(cands: Candidate<T>[]): Candidate<T> {
  if (cands.length === 0) throw new GraftError('no candidates to select from');
  let best = cands[0]!;
  for (const c of cands) if (c.score > best.score) best = c;
  return best;
}

/**
 * Reverse validation score of a target labelling: fit a head on the target with `pseudoLabels`,
 * then its accuracy on held-out labelled source data (higher is better).
 */
export async function reverseValidation(
  target: ArrayLike<number>[],
  pseudoLabels: number[],
  sourceVal: { x: ArrayLike<number>[]; y: number[] },
  o: { numClasses: number; l2?: number; maxIter?: number },
): Promise<number> {
  const head = await fit(target, pseudoLabels, {
    numClasses: o.numClasses,
    l2: o.l2 ?? 1e-2,
    maxIter: o.maxIter ?? 100,
  });
  return head.accuracy(sourceVal.x, sourceVal.y);
}

/**
 * How much a label-free score must prefer an adapted candidate over the unadapted model (or the
 * source-only head) before adaptation is used: "do no harm". Calibrated by bench/adapt-no-harm.ts on
 * the shared shift pairs of docs/adaptation.md ("Do no harm": the smallest margins of the grid at which
 * no method, as selected, lowered target accuracy by more than 0.005 there). Information
 * maximization is in nats; reverse validation is an accuracy.
 */
export const NO_HARM_MARGIN = {
  /** Source-free methods (adaptNetwork), and dann/mmd/deep-coral with select 'im'. */
  informationMaximization: 0.05,
  /** dann, mmd, deep-coral with reverse validation (adaptWithSource). */
  reverseValidation: 0.01,
  /** Feature-level methods: IM of the reverse-validation-chosen head vs the source-only head (adaptFeatures). */
  informationMaximizationFeatures: 0.05,
} as const;

export interface GuardedSelection<T> {
  /** The selected candidate: the best adapted one, or the unadapted one. */
  chosen: Candidate<T>;
  /** The adapted candidate with the highest score (whether or not it was chosen). */
  best: Candidate<T>;
  /** True when the unadapted candidate was kept. */
  keptUnadapted: boolean;
  margin: number;
  /** One sentence saying what was chosen and why. */
  reason: string;
}

/**
 * Select among adapted candidates with the unadapted model as a candidate too: move away from it
 * only when the best adapted candidate's score exceeds the unadapted one's by more than `margin`.
 */
export function selectOverUnadapted<T>(
  unadapted: Candidate<T>,
  adapted: Candidate<T>[],
  margin: number,
  criterion = 'score',
): GuardedSelection<T> {
  if (!Number.isFinite(margin)) throw new GraftError(`the no-harm margin must be a finite number, got ${margin}`);
  const best = selectBest(adapted);
  const gain = best.score - unadapted.score;
  const keptUnadapted = !(gain > margin);
  const reason = keptUnadapted
    ? `kept the unadapted model: the best adapted candidate's ${criterion} (${best.score.toFixed(4)}) is not above the unadapted model's (${unadapted.score.toFixed(4)}) by more than the margin ${margin}`
    : `adapted: the best candidate's ${criterion} (${best.score.toFixed(4)}) exceeds the unadapted model's (${unadapted.score.toFixed(4)}) by ${gain.toFixed(4)} > margin ${margin}`;
  return { chosen: keptUnadapted ? unadapted : best, best, keptUnadapted, margin, reason };
}
