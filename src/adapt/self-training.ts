/**
 * Self-training with confidence-thresholded pseudo-labels, on cached features: fit the head on the
 * source, label the target with it, keep the target examples whose top probability reaches the
 * threshold, refit on source + those pseudo-labelled target examples, and repeat (relabelling the
 * whole target each round, so early mistakes can be undone). With `align: 'coral'` the source
 * features are first moved by CORAL (./coral.ts), so the first labelling is CORAL's.
 */
import { coralMoveSource } from './coral.js';
import {
  checkDomains,
  fitHead,
  numClassesOf,
  type FeatureAdaptResult,
  type HeadOptions,
  type LabelledFeatures,
} from './feature-head.js';
import { GraftError } from '../util/errors.js';
import { argmax } from '../util/vectors.js';

export interface SelfTrainingOptions extends HeadOptions {
  /** Keep target examples whose top probability is at least this (default 0.9). */
  threshold?: number;
  /** Rounds of relabel-and-refit (default 3; stops early when the kept set stops changing). */
  rounds?: number;
  /** Weight of the pseudo-labelled target relative to the source: each kept target example is repeated this many times (default 1). */
  targetWeight?: number;
  onRound?: (info: { round: number; kept: number }) => void;
  /** Align the source to the target first: 'coral' (with `lambda`, default 1) or 'none' (default). */
  align?: 'none' | 'coral';
  lambda?: number;
}

export async function selfTrainFeatures(
  source: LabelledFeatures,
  target: ArrayLike<number>[],
  o: SelfTrainingOptions = {},
): Promise<FeatureAdaptResult> {
  checkDomains(source, target);
  const threshold = o.threshold ?? 0.9;
  if (!(threshold >= 0 && threshold < 1)) throw new GraftError(`threshold must be in [0, 1), got ${threshold}`);
  const targetWeight = o.targetWeight ?? 1; // a repeat count: a fraction would be rounded up by the loop below
  if (!(Number.isInteger(targetWeight) && targetWeight >= 1))
    throw new GraftError(
      `targetWeight must be a whole number ≥ 1 (times each kept target example is repeated), got ${targetWeight}`,
    );
  const rounds = o.rounds ?? 3;
  if (!(Number.isInteger(rounds) && rounds >= 1))
    throw new GraftError(`rounds must be a whole number ≥ 1, got ${rounds}`);
  const t0 = performance.now();
  const K = numClassesOf(source.y, o);
  const ho = { ...o, numClasses: K };
  let sx: ArrayLike<number>[] = source.x;
  if ((o.align ?? 'none') === 'coral') {
    sx = await coralMoveSource(source.x, target, o.lambda ?? 1);
  }
  let head = await fitHead(sx, source.y, ho);
  let P = head.predictProba(target);
  let prev = '';
  const kept: number[] = [];
  for (let r = 1; r <= rounds; r++) {
    const idx: number[] = [];
    P.forEach((p, i) => {
      if (p[argmax(p)]! >= threshold) idx.push(i);
    });
    const key = idx.map((i) => `${i}:${argmax(P[i]!)}`).join(',');
    if (key === prev) break;
    prev = key;
    kept.push(idx.length);
    o.onRound?.({ round: r, kept: idx.length });
    const x = [...sx],
      y = [...source.y];
    for (let w = 0; w < targetWeight; w++)
      for (const i of idx) {
        x.push(target[i]!);
        y.push(argmax(P[i]!));
      }
    head = await fitHead(x, y, ho, head);
    P = head.predictProba(target);
  }
  return {
    method: o.align === 'coral' ? 'coral-self-training' : 'self-training',
    head,
    targetProba: P,
    info: { threshold, align: o.align ?? 'none', rounds: kept.length, kept: kept[kept.length - 1] ?? 0 },
    seconds: (performance.now() - t0) / 1000,
  };
}
