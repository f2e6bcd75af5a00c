/**
 * TF-IDF features + logistic regression: the classic text-classification baseline the encoder
 * results are reported against. Word uni/bigrams (scikit-learn's default token pattern, lowercased),
 * smoothed idf (ln((1+n)/(1+df)) + 1), sublinear tf (1 + ln tf), rows L2-normalized; the vocabulary is
 * fitted on the training texts only, pruned by min_df and capped by document frequency.
 *
 * With a `tokenizer`, the terms are the tokenizer's ids instead of words: unigrams and adjacent
 * bigrams of the encoded ids (pairs touching a special token — [CLS], [SEP], padding — excluded).
 * Such a classifier exports as one ONNX graph (`tfidfClassifierGraph`): ONNX's TfIdfVectorizer
 * counts the n-grams over `input_ids`, then sublinear tf × idf, L2 normalization, the folded logistic
 * head and a Softmax — saved like every text classifier (src/text/saved.ts: model.onnx + tokenizer),
 * so `graft predict` and `graft eval` run it as they run the encoder classifiers.
 */
import { fitCV, type LogisticRegression } from '../heads/logistic.js';
import { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { TextTokenizer } from './tokenizer.js';
import { GraftError } from '../util/errors.js';

export interface TfidfOptions {
  /** Largest n-gram (default 2). */
  ngram?: number;
  /** Keep terms in at least this many training documents (default 1, 2 when there are over 500 documents). */
  minDf?: number;
  /** Keep at most this many terms, the most frequent by df (default 20,000). */
  maxFeatures?: number;
  sublinearTf?: boolean;
  /** Terms are n-grams of this tokenizer's ids (exportable to ONNX) instead of words. */
  tokenizer?: TextTokenizer;
  /** With `tokenizer`: longest encoding in tokens (default min(128, the tokenizer's)). */
  maxLength?: number;
}

/** Id uni/bigram terms of each text ("12" and "12 345"), as ONNX's TfIdfVectorizer sees them. */
export function idTerms(tokenizer: TextTokenizer, texts: readonly string[], maxLength: number, ngram = 2): string[][] {
  if (ngram < 1 || ngram > 2) throw new GraftError(`TF-IDF over token ids supports 1- and 2-grams, got ${ngram}`);
  const special = new Set(
    [
      tokenizer.padId,
      tokenizer.clsId,
      tokenizer.sepId,
      tokenizer.bosId,
      tokenizer.eosId,
      tokenizer.maskId,
      ...tokenizer.prefixIds,
      ...tokenizer.suffixIds,
    ].filter((v): v is number => v !== undefined),
  );
  const out: string[][] = [];
  for (let s = 0; s < texts.length; s += 256) {
    const enc = tokenizer.encodeBatch(texts.slice(s, s + 256), { maxLength, warn: () => {} });
    const L = enc.inputIds.dims[1]!;
    const ids = enc.inputIds.data as BigInt64Array;
    enc.lengths.forEach((len, r) => {
      const row = Array.from(ids.subarray(r * L, r * L + len), Number);
      const terms: string[] = [];
      for (let j = 0; j < row.length; j++) {
        if (special.has(row[j]!)) continue;
        terms.push(String(row[j]));
        if (ngram >= 2 && j + 1 < row.length && !special.has(row[j + 1]!)) terms.push(`${row[j]} ${row[j + 1]}`);
      }
      out.push(terms);
    });
  }
  return out;
}

export function tfidfTokens(text: string, ngram = 2): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}_]{2,}/gu) ?? [];
  const out = [...words];
  for (let n = 2; n <= ngram; n++)
    for (let i = 0; i + n <= words.length; i++) out.push(words.slice(i, i + n).join(' '));
  return out;
}

export class TfidfVectorizer {
  readonly vocab = new Map<string, number>();
  idf = new Float64Array(0);

  constructor(readonly o: TfidfOptions = {}) {}

  /** The terms of each text (words, or token-id n-grams with a tokenizer). */
  terms(texts: readonly string[]): string[][] {
    const ngram = this.o.ngram ?? 2;
    const tk = this.o.tokenizer;
    return tk
      ? idTerms(tk, texts, this.o.maxLength ?? Math.min(128, tk.modelMaxLength), ngram)
      : texts.map((t) => tfidfTokens(t, ngram));
  }

  fit(texts: readonly string[]): this {
    const df = new Map<string, number>();
    for (const ts of this.terms(texts)) for (const w of new Set(ts)) df.set(w, (df.get(w) ?? 0) + 1);
    const minDf = this.o.minDf ?? (texts.length > 500 ? 2 : 1);
    const terms = [...df]
      .filter(([, c]) => c >= minDf)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, this.o.maxFeatures ?? 20000);
    terms.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    this.vocab.clear();
    terms.forEach(([w], i) => this.vocab.set(w, i));
    const n = texts.length;
    this.idf = Float64Array.from(terms, ([, c]) => Math.log((1 + n) / (1 + c)) + 1);
    return this;
  }

  transform(texts: readonly string[]): Float64Array[] {
    const D = this.vocab.size;
    return this.terms(texts).map((ts) => {
      const v = new Float64Array(D);
      for (const w of ts) {
        const k = this.vocab.get(w);
        if (k !== undefined) v[k]! += 1;
      }
      let norm = 0;
      for (let j = 0; j < D; j++) {
        if (!v[j]) continue;
        v[j] = ((this.o.sublinearTf ?? true) ? 1 + Math.log(v[j]!) : v[j]!) * this.idf[j]!;
        norm += v[j]! * v[j]!;
      }
      norm = Math.sqrt(norm) || 1;
      for (let j = 0; j < D; j++) if (v[j]) v[j]! /= norm;
      return v;
    });
  }
}

export interface TfidfClassifier {
  vectorizer: TfidfVectorizer;
  head: LogisticRegression;
  predict(texts: readonly string[]): number[];
}

/** Fit TF-IDF on the training texts and a logistic head with the L2 penalty chosen by cross-validation. */
export async function trainTfidfClassifier(
  texts: readonly string[],
  y: number[],
  o: TfidfOptions & { seed?: number } = {},
): Promise<TfidfClassifier> {
  const vectorizer = new TfidfVectorizer(o).fit(texts);
  const X = vectorizer.transform(texts);
  const { model: head } = await fitCV(X, y, { standardize: false, seed: o.seed ?? 0, grid: [1e-4, 1e-3, 1e-2, 1e-1] });
  return { vectorizer, head, predict: (t) => head.predict(vectorizer.transform(t)) };
}

/** Name of the TF-IDF classifier graph's output (as the feature classifiers'). */
const PROBABILITIES = 'probabilities';

/**
 * A token-id TF-IDF classifier as one ONNX graph: input_ids [N, L] → TfIdfVectorizer (TF counts of
 * the vocabulary's uni/bigrams) → (1 + ln tf)·[tf > 0] (or tf) × idf → L2-normalized rows → MatMul +
 * bias (the logistic head) → Softmax → `probabilities` [N, K].
 */
export function tfidfClassifierGraph(c: TfidfClassifier, name = 'tfidf-logistic'): Graph {
  const v = c.vectorizer;
  if (!v.o.tokenizer)
    throw new GraftError('only a TF-IDF classifier over token ids (fitted with a tokenizer) exports to ONNX');
  const V = v.vocab.size,
    K = c.head.numClasses;
  if (V === 0) throw new GraftError('the TF-IDF vocabulary is empty: no terms in the training texts');
  const uni: [number, number][] = [],
    bi: [number, number, number][] = [];
  for (const [term, j] of v.vocab) {
    const p = term.split(' ').map(Number);
    if (p.length === 1) uni.push([p[0]!, j]);
    else bi.push([p[0]!, p[1]!, j]);
  }
  const g = new Graph();
  g.name = name;
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'input_ids', dtype: 'int64', shape: ['N', 'L'] }];
  const b = new Builder(g, 'tfidf/');
  const tf = b.op(
    'TfIdfVectorizer',
    ['input_ids'],
    {
      mode: A.s('TF'),
      min_gram_length: A.i(1),
      max_gram_length: A.i(bi.length ? 2 : 1),
      max_skip_count: A.i(0),
      ngram_counts: A.is(bi.length ? [0, uni.length] : [0]),
      ngram_indexes: A.is([...uni.map(([, j]) => j), ...bi.map(([, , j]) => j)]),
      pool_int64s: A.is([...uni.map(([id]) => id), ...bi.flatMap(([a, c2]) => [a, c2])]),
    },
    'tf',
  );
  const one = b.f32(1);
  const scaled =
    (v.o.sublinearTf ?? true)
      ? b.op(
          'Mul',
          [b.op('Add', [b.op('Log', [b.op('Max', [tf, one])]), one]), b.op('Min', [tf, one])],
          {},
          'sublinear',
        )
      : tf;
  const x = b.op(
    'Mul',
    [scaled, b.constant({ dtype: 'float32', dims: [V], data: Float32Array.from(v.idf) }, 'idf')],
    {},
    'tfidf',
  );
  const norm = b.op('ReduceL2', [x], { axes: A.is([1]), keepdims: A.i(1) }, 'norm');
  const xn = b.op('Div', [x, b.op('Max', [norm, b.f32(1e-12)])], {}, 'normalized');
  const { weight, bias } = c.head.folded(); // [K, V] on raw (unstandardized) features
  const w = new Float32Array(V * K);
  for (let k = 0; k < K; k++) for (let j = 0; j < V; j++) w[j * K + k] = weight[k * V + j]!;
  const logits = b.op(
    'Add',
    [
      b.op('MatMul', [xn, b.constant({ dtype: 'float32', dims: [V, K], data: w }, 'weight')]),
      b.constant({ dtype: 'float32', dims: [K], data: bias }, 'bias'),
    ],
    {},
    'logits',
  );
  const probs = b.op('Softmax', [logits], { axis: A.i(1) }, 'softmax');
  const last = g.nodes.at(-1)!;
  last.outputs = [PROBABILITIES];
  void probs;
  g.outputs = [{ name: PROBABILITIES, dtype: 'float32', shape: ['N', K] }];
  return g;
}
