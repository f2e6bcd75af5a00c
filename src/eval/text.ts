/**
 * Evaluation of saved text classifiers (folders from `graft train --text-column …`, any mode; see
 * src/text/saved.ts) on labelled texts: the data's label values mapped to the classifier's class
 * names (an unknown one is a GraftError naming the row and the known classes), empty texts refused
 * by row, predictions (with progress after each batch), then the metrics.
 */
import { classificationMetrics, type Metrics } from './metrics.js';
import { textClassifierProba, type TextClassifier, type TextProbaOptions } from '../text/saved.js';
import { GraftError } from '../util/errors.js';
import { argmax } from '../util/vectors.js';

export interface TextEvalOptions extends TextProbaOptions {
  /** Where the labels come from in messages (default: the source, else 'labels'). */
  where?: string;
}

export interface TextEvaluation {
  metrics: Metrics;
  /** Predicted class index (into the classifier's labels) per text. */
  predictions: number[];
  /** True class index per text. */
  truth: number[];
}

/**
 * Class index (into c.labels) of each label value. A value the classifier does not know is a
 * GraftError naming `where`, the row and the classifier's classes.
 */
export function classifierClassIndices(
  c: TextClassifier,
  labels: readonly string[],
  o: { where?: string; rows?: readonly number[] } = {},
): number[] {
  if (!c.labels.length)
    throw new GraftError('the text classifier records no class names (labels.json / model metadata)');
  const index = new Map(c.labels.map((l, i) => [l, i]));
  return labels.map((l, i) => {
    const k = index.get(l.trim());
    if (k === undefined)
      throw new GraftError(
        `${o.where ?? 'labels'}: ${o.rows ? `line ${o.rows[i]}` : `row ${i + 1}`}: label "${l}" is not one of the classifier's classes (${c.labels.join(', ')})`,
        'evaluate on data labelled with the class names the classifier was trained on (its labels.json)',
      );
    return k;
  });
}

/** Metrics of a saved text classifier on texts labelled with its class names. */
export async function evaluateTextClassifier(
  c: TextClassifier,
  texts: readonly string[],
  labels: readonly string[],
  o: TextEvalOptions = {},
): Promise<TextEvaluation> {
  if (texts.length !== labels.length) throw new GraftError(`${texts.length} texts but ${labels.length} labels`);
  if (!texts.length) throw new GraftError('no texts to evaluate');
  const where = o.where ?? o.source ?? 'labels';
  const rowName = (i: number) => (o.rows ? `line ${o.rows[i]}` : `row ${i + 1}`);
  texts.forEach((t, i) => {
    if (!t.trim()) throw new GraftError(`${where}: ${rowName(i)}: empty text`, 'remove the row or fill in its text');
  });
  const truth = classifierClassIndices(c, labels, { where, ...(o.rows ? { rows: o.rows } : {}) });
  const maxLength = o.maxLength ?? c.settings.maxLength;
  if (!(Number.isInteger(maxLength) && maxLength >= 1))
    throw new GraftError(`max length must be a positive integer, got ${maxLength}`);
  const bs = o.batchSize ?? 64;
  if (!(Number.isInteger(bs) && bs >= 1)) throw new GraftError(`batch size must be a positive integer, got ${bs}`);
  const P = await textClassifierProba(c, texts, {
    ...o,
    maxLength,
    batchSize: bs,
    rows: o.rows ?? texts.map((_, k) => k + 1),
  });
  const K = P[0]!.length;
  if (K !== c.labels.length)
    throw new GraftError(
      `the text classifier outputs ${K} scores per text but records ${c.labels.length} classes (${c.labels.join(', ')})`,
    );
  const predictions = P.map(argmax);
  return { metrics: classificationMetrics(truth, predictions, c.labels), predictions, truth };
}
