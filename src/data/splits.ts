/** Seeded, stratified splits of a labelled dataset. */
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';

export interface SplitOptions {
  /** Fraction of each class held out for testing (default 0.3). */
  testFraction?: number;
  /** Fraction of each class held out for validation (default 0). */
  valFraction?: number;
  /** Keep at most this many training examples per class (few-label experiments). */
  perClass?: number;
  seed?: number;
}

export interface Split {
  train: number[];
  val: number[];
  test: number[];
}

/**
 * The indices of each class, classes in ascending order, each list shuffled by `rng` (in that order,
 * so a seed fixes the result): the common start of every stratified split, pick and fold.
 */
export function shuffledByClass(labels: number[], rng: Rng): [label: number, indices: number[]][] {
  const byClass = new Map<number, number[]>();
  labels.forEach((y, i) => {
    let l = byClass.get(y);
    if (!l) byClass.set(y, (l = []));
    l.push(i);
  });
  return [...byClass.keys()].sort((a, b) => a - b).map((y) => [y, rng.shuffle(byClass.get(y)!)]);
}

export function stratifiedSplit(labels: number[], o: SplitOptions = {}): Split {
  const rng = new Rng(o.seed ?? 0);
  const out: Split = { train: [], val: [], test: [] };
  for (const [y, idx] of shuffledByClass(labels, rng)) {
    const nTest = Math.round(idx.length * (o.testFraction ?? 0.3));
    const nVal = Math.round(idx.length * (o.valFraction ?? 0));
    if (nTest + nVal >= idx.length)
      throw new GraftError(`class ${y} has too few examples (${idx.length}) for the split`);
    out.test.push(...idx.slice(0, nTest));
    out.val.push(...idx.slice(nTest, nTest + nVal));
    const rest = idx.slice(nTest + nVal);
    out.train.push(...(o.perClass ? rest.slice(0, o.perClass) : rest));
  }
  rng.shuffle(out.train);
  return out;
}
