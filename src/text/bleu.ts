/**
 * Corpus BLEU computed the sacreBLEU way (its defaults: 13a tokenization, n-grams up to 4, clipped
 * counts summed over the corpus, 'exp' smoothing of zero precisions, brevity penalty against the
 * closest reference length), so scores are comparable with papers that report sacreBLEU.
 */
import { GraftError } from '../util/errors.js';

/** sacreBLEU's `13a` tokenizer (mteval-v13a): separate punctuation and symbols, keep decimals together. */
export function tokenize13a(line: string): string[] {
  let s = line
    .replace(/<skipped>/g, '')
    .replace(/-\n/g, '')
    .replace(/\n/g, ' ');
  if (s.includes('&'))
    s = s
      .replace(/&quot;/g, '"')
      .replace(/&amp;/g, '&')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>');
  s = ` ${s} `;
  s = s.replace(/([{-~[-` -&(-+:-@/])/g, ' $1 ');
  s = s.replace(/([^0-9])([.,])/g, '$1 $2 ');
  s = s.replace(/([.,])([^0-9])/g, ' $1 $2');
  s = s.replace(/([0-9])(-)/g, '$1 $2 ');
  return s.split(/\s+/).filter((t) => t.length > 0);
}

export interface BleuResult {
  /** 0–100 */
  score: number;
  /** n-gram precisions (0–100), n = 1..4, after smoothing */
  precisions: number[];
  bp: number;
  ratio: number;
  hypLen: number;
  refLen: number;
  counts: number[];
  totals: number[];
}

function ngrams(tokens: string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const k = tokens.slice(i, i + n).join('\u0001');
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/**
 * Corpus BLEU of hypotheses against one or more reference streams (`refs[k][i]` is the k-th
 * reference of sentence i, as sacreBLEU's `corpus_score(hyps, refs)`).
 */
export function corpusBleu(
  hyps: readonly string[],
  refs: readonly (readonly string[])[],
  opts: { maxOrder?: number; lowercase?: boolean } = {},
): BleuResult {
  const N = opts.maxOrder ?? 4;
  if (!refs.length) throw new GraftError('BLEU needs at least one reference stream');
  for (const r of refs)
    if (r.length !== hyps.length)
      throw new GraftError(`BLEU: ${hyps.length} hypotheses but a reference stream of ${r.length}`);
  // as sacreBLEU's _preprocess_segment: lowercase (optional), strip trailing whitespace, tokenize
  const prep = (s: string) => tokenize13a((opts.lowercase ? s.toLowerCase() : s).trimEnd());
  const counts = new Array<number>(N).fill(0);
  const totals = new Array<number>(N).fill(0);
  let hypLen = 0,
    refLen = 0;
  hyps.forEach((h, i) => {
    const ht = prep(h);
    const rts = refs.map((r) => prep(r[i]!));
    hypLen += ht.length;
    // closest reference length, ties to the shorter
    let best = rts[0]!.length;
    for (const r of rts) {
      const d = Math.abs(r.length - ht.length),
        bd = Math.abs(best - ht.length);
      if (d < bd || (d === bd && r.length < best)) best = r.length;
    }
    refLen += best;
    for (let n = 1; n <= N; n++) {
      const hc = ngrams(ht, n);
      const maxRef = new Map<string, number>();
      for (const r of rts) for (const [k, c] of ngrams(r, n)) maxRef.set(k, Math.max(maxRef.get(k) ?? 0, c));
      for (const [k, c] of hc) counts[n - 1]! += Math.min(c, maxRef.get(k) ?? 0);
      totals[n - 1]! += Math.max(0, ht.length - n + 1);
    }
  });
  const precisions = new Array<number>(N).fill(0);
  let smooth = 1;
  for (let n = 0; n < N; n++) {
    if (totals[n] === 0) break;
    if (counts[n] === 0) {
      smooth *= 2;
      precisions[n] = 100 / (smooth * totals[n]!);
    } else precisions[n] = (100 * counts[n]!) / totals[n]!;
  }
  const bp = hypLen < refLen ? (hypLen > 0 ? Math.exp(1 - refLen / hypLen) : 0) : 1;
  const logs = precisions.map((p) => (p > 0 ? Math.log(p) : -9999999999));
  const score = bp * Math.exp(logs.reduce((a, b) => a + b, 0) / N);
  return { score, precisions, bp, ratio: refLen ? hypLen / refLen : 0, hypLen, refLen, counts, totals };
}

/** sacreBLEU's one-line summary: `BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)`. */
export function formatBleu(r: BleuResult): string {
  return `BLEU = ${r.score.toFixed(2)} ${r.precisions.map((p) => p.toFixed(1)).join('/')} (BP = ${r.bp.toFixed(3)} ratio = ${r.ratio.toFixed(3)} hyp_len = ${r.hypLen} ref_len = ${r.refLen})`;
}
