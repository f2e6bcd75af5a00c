/**
 * TF-IDF features + logistic regression: the classic text-classification baseline the encoder
 * results are reported against. Word uni/bigrams (scikit-learn's default token pattern, lowercased),
 * smoothed idf (ln((1+n)/(1+df)) + 1), sublinear tf (1 + ln tf), rows L2-normalized; the vocabulary is
 * fitted on the training texts only, pruned by min_df and capped by document frequency.
 */
import { fitCV, type LogisticRegression } from '../heads/logistic.js';

export interface TfidfOptions {
  /** Largest n-gram (default 2). */
  ngram?: number;
  /** Keep terms in at least this many training documents (default 1, 2 when there are over 500 documents). */
  minDf?: number;
  /** Keep at most this many terms, the most frequent by df (default 20,000). */
  maxFeatures?: number;
  sublinearTf?: boolean;
}

export function tfidfTokens(text: string, ngram = 2): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}_]{2,}/gu) ?? [];
  const out = [...words];
  for (let n = 2; n <= ngram; n++) for (let i = 0; i + n <= words.length; i++) out.push(words.slice(i, i + n).join(' '));
  return out;
}

export class TfidfVectorizer {
  readonly vocab = new Map<string, number>();
  idf = new Float64Array(0);

  constructor(readonly o: TfidfOptions = {}) {}

  fit(texts: readonly string[]): this {
    const ngram = this.o.ngram ?? 2;
    const df = new Map<string, number>();
    for (const t of texts) for (const w of new Set(tfidfTokens(t, ngram))) df.set(w, (df.get(w) ?? 0) + 1);
    const minDf = this.o.minDf ?? (texts.length > 500 ? 2 : 1);
    const terms = [...df].filter(([, c]) => c >= minDf).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, this.o.maxFeatures ?? 20000);
    terms.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    this.vocab.clear();
    terms.forEach(([w], i) => this.vocab.set(w, i));
    const n = texts.length;
    this.idf = Float64Array.from(terms, ([, c]) => Math.log((1 + n) / (1 + c)) + 1);
    return this;
  }

  transform(texts: readonly string[]): Float64Array[] {
    const ngram = this.o.ngram ?? 2;
    const D = this.vocab.size;
    return texts.map((t) => {
      const v = new Float64Array(D);
      for (const w of tfidfTokens(t, ngram)) {
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
export async function trainTfidfClassifier(texts: readonly string[], y: number[], o: TfidfOptions & { seed?: number } = {}): Promise<TfidfClassifier> {
  const vectorizer = new TfidfVectorizer(o).fit(texts);
  const X = vectorizer.transform(texts);
  const { model: head } = await fitCV(X, y, { standardize: false, seed: o.seed ?? 0, grid: [1e-4, 1e-3, 1e-2, 1e-1] });
  return { vectorizer, head, predict: (t) => head.predict(vectorizer.transform(t)) };
}
