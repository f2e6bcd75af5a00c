/**
 * Classification metrics from true and predicted labels: accuracy, the confusion matrix (rows: true
 * class, columns: predicted class), per-class precision / recall / F1, and their macro averages.
 *
 * Conventions (as scikit-learn's with zero_division=0): a class never predicted has precision 0, a
 * class with no examples has recall 0; macro averages are taken over the classes that occur in the
 * true or the predicted labels, so a class absent from both does not pull the average down.
 */
import { GraftError } from '../util/errors.js';

export interface ClassMetrics {
  index: number;
  label: string;
  precision: number;
  recall: number;
  f1: number;
  /** Examples whose true class this is. */
  support: number;
  /** Examples predicted as this class. */
  predicted: number;
}

export interface Metrics {
  /** Number of examples. */
  n: number;
  accuracy: number;
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  labels: string[];
  perClass: ClassMetrics[];
  /** confusion[t][p]: examples of true class t predicted as p. */
  confusion: number[][];
}

/** Counts of (true, predicted) pairs as a K × K matrix, rows true. */
export function confusionMatrix(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, numClasses: number): number[][] {
  if (yTrue.length !== yPred.length)
    throw new GraftError(`${yTrue.length} true labels but ${yPred.length} predictions`);
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const t = yTrue[i]!,
      p = yPred[i]!;
    if (!(t >= 0 && t < numClasses && Number.isInteger(t)))
      throw new GraftError(`true label ${t} is out of range for ${numClasses} classes`);
    if (!(p >= 0 && p < numClasses && Number.isInteger(p)))
      throw new GraftError(`predicted label ${p} is out of range for ${numClasses} classes`);
    m[t]![p]!++;
  }
  return m;
}

/**
 * Metrics of predictions against true labels. `labels` names the classes (its length is the number
 * of classes), or is the number of classes (names then are "0", "1", …).
 */
export function classificationMetrics(
  yTrue: ArrayLike<number>,
  yPred: ArrayLike<number>,
  labels: string[] | number,
): Metrics {
  const names = typeof labels === 'number' ? Array.from({ length: labels }, (_, i) => String(i)) : labels;
  const K = names.length;
  const confusion = confusionMatrix(yTrue, yPred, K);
  const n = yTrue.length;
  let correct = 0;
  for (let k = 0; k < K; k++) correct += confusion[k]![k]!;
  const perClass: ClassMetrics[] = names.map((label, k) => {
    const tp = confusion[k]![k]!;
    const support = confusion[k]!.reduce((a, b) => a + b, 0);
    let predicted = 0;
    for (let t = 0; t < K; t++) predicted += confusion[t]![k]!;
    const precision = predicted ? tp / predicted : 0;
    const recall = support ? tp / support : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { index: k, label, precision, recall, f1, support, predicted };
  });
  const present = perClass.filter((c) => c.support > 0 || c.predicted > 0);
  const mean = (f: (c: ClassMetrics) => number) =>
    present.length ? present.reduce((s, c) => s + f(c), 0) / present.length : 0;
  return {
    n,
    accuracy: n ? correct / n : 0,
    macroPrecision: mean((c) => c.precision),
    macroRecall: mean((c) => c.recall),
    macroF1: mean((c) => c.f1),
    labels: names,
    perClass,
    confusion,
  };
}

/** A few lines of plain text: overall scores, then one line per class. */
export function formatMetrics(m: Metrics, title = 'metrics'): string {
  const w = Math.max(5, ...m.labels.map((l) => l.length));
  const lines = [
    `${title}: accuracy ${m.accuracy.toFixed(4)}, macro-F1 ${m.macroF1.toFixed(4)} on ${m.n} examples`,
    `  ${'class'.padEnd(w)}  precision  recall  f1      support`,
    ...m.perClass.map(
      (c) =>
        `  ${c.label.padEnd(w)}  ${c.precision.toFixed(4).padEnd(9)}  ${c.recall.toFixed(4)}  ${c.f1.toFixed(4)}  ${c.support}`,
    ),
  ];
  return lines.join('\n') + '\n';
}
