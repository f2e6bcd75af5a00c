/**
 * Token attributions for saved text classifiers: gradient × input on the word embeddings, i.e. for
 * each token t, Σ_h E[t, h] · ∂score/∂E[t, h], where E is the output of the embedding lookup
 * (Gather of the embedding table by input_ids) and the score the chosen class's logit. The gradient
 * graph is written by Graft's autodiff and run by onnxruntime, one text per run.
 */
import type { Graph } from '../graph/graph.js';
import { loadTextClassifier, type TextClassifier } from '../text/saved.js';
import { textFeeds } from '../text/encoder.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import { oneHot, resolveClass, scoreGradGraph } from './target.js';
import { softmax } from '../util/vectors.js';

export interface ExplainTextOptions {
  /** The class to explain: an index or a label name (default: each text's top class). */
  class?: number | string;
  /** Longest token sequence (default: the classifier's recorded one). */
  maxLength?: number;
  runtime?: RuntimeOptions;
}

export interface TextExplanation {
  text: string;
  /** The class explained and its probability. */
  class: { index: number; label?: string; probability: number };
  /** Probabilities of every class, in the order of the labels. */
  probabilities: number[];
  /** The tokens as the tokenizer cut the text, special tokens ([CLS], [SEP]) included. */
  tokens: string[];
  /** Gradient × input per token (summed over the embedding's hidden dimension); > 0 speaks for the class. */
  scores: number[];
  /** Whether each token is a special token the tokenizer added. */
  special: boolean[];
}

/** The word-embedding lookup: a Gather whose indices are input_ids from a float table [vocab, hidden]. */
export function wordEmbeddingValue(g: Graph): string {
  const n = g.nodes.find(
    (x) =>
      x.opType === 'Gather' &&
      x.inputs[1] === 'input_ids' &&
      g.initializers.get(x.inputs[0]!)?.dims.length === 2 &&
      g.initializers.get(x.inputs[0]!)?.dtype === 'float32',
  );
  if (!n) throw new GraftError(`${g.name}: no word-embedding lookup (a Gather of a float table by input_ids) found`);
  return n.outputs[0]!;
}

/** Per-token gradient × input attributions for each text, from a saved text classifier folder (or one already loaded). */
export async function explainTexts(
  classifier: string | TextClassifier,
  texts: readonly string[],
  o: ExplainTextOptions = {},
): Promise<TextExplanation[]> {
  const c = typeof classifier === 'string' ? loadTextClassifier(classifier) : classifier;
  if (c.prompt)
    throw new GraftError(
      'token attributions for prompt classifiers are not supported',
      'explain a classifier trained with a head (the default modes of graft train on texts)',
    );
  texts.forEach((t, i) => {
    if (!t.trim())
      throw new GraftError(
        `input ${i + 1} of ${texts.length} is an empty text`,
        'give each text to explain as a non-empty argument',
      );
  });
  const emb = wordEmbeddingValue(c.graph);
  const built = await scoreGradGraph(c.graph, emb, o.runtime ? { runtime: o.runtime } : {});
  const classes = built.shapes.get(built.score.score)!.dims[1];
  if (typeof classes !== 'number') throw new GraftError(`${c.graph.name}: the number of classes is not fixed`);
  const session = await Session.fromGraph(built.graph, o.runtime ?? {}, `${c.graph.name} (attributions)`);
  const maxLength = o.maxLength ?? c.settings.maxLength;
  const out: TextExplanation[] = [];
  try {
    for (const text of texts) {
      const enc = c.tokenizer.encodeBatch([text], { maxLength, warn: () => {} });
      const feeds = { ...textFeeds(c.graph, enc) };
      const run = (k: number) => session.run({ ...feeds, [built.seed]: oneHot(classes, k) });
      let k = o.class === undefined ? -1 : resolveClass(o.class, c.labels, classes);
      let res = await run(k);
      const scores = res[built.score.score]!.data as Float32Array;
      if (k < 0) {
        k = 0;
        for (let j = 1; j < classes; j++) if (scores[j]! > scores[k]!) k = j;
        res = await run(k);
      }
      const p = built.score.softmax
        ? Array.from(res[built.score.output]!.data as Float32Array)
        : Array.from(softmax(scores));
      const E = res[emb]!.data as Float32Array,
        G = res[built.grad]!.data as Float32Array;
      const T = enc.lengths[0]!;
      const H = E.length / (res[emb]!.dims[1]! as number);
      const ids = Array.from(enc.inputIds.data as BigInt64Array, Number).slice(0, T);
      const attr = ids.map((_, t) => {
        let s = 0;
        for (let h = 0; h < H; h++) s += E[t * H + h]! * G[t * H + h]!;
        return s;
      });
      out.push({
        text,
        class: { index: k, ...(c.labels[k] != null ? { label: c.labels[k] } : {}), probability: p[k]! },
        probabilities: p,
        tokens: ids.map((id) => c.tokenizer.idToToken(id) ?? `#${id}`),
        scores: attr,
        special: ids.map((_, t) => t < c.tokenizer.prefixIds.length || t >= T - c.tokenizer.suffixIds.length),
      });
    }
  } finally {
    await session.release();
  }
  return out;
}
