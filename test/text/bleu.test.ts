import { test } from 'node:test';
import assert from 'node:assert/strict';
import { corpusBleu, tokenize13a, formatBleu } from '../../src/text/bleu.js';
import { Rng } from '../../src/util/random.js';

test('13a tokenization splits punctuation but keeps decimals and inner hyphens of words', () => {
  assert.deepEqual(tokenize13a('Hello, world. It costs $3.50 (approx.) for 2-3 items; e-mail me!'), [
    'Hello',
    ',',
    'world',
    '.',
    'It',
    'costs',
    '$',
    '3.50',
    '(',
    'approx',
    '.',
    ')',
    'for',
    '2',
    '-',
    '3',
    'items',
    ';',
    'e-mail',
    'me',
    '!',
  ]);
  assert.deepEqual(tokenize13a('a &amp; b &quot;c&quot;'), ['a', '&', 'b', '"', 'c', '"']);
  assert.deepEqual(tokenize13a('1,000 and 3.'), ['1,000', 'and', '3', '.']);
});

test('hand-checkable cases: identical = 100, disjoint = exp-smoothed floor, brevity penalty', () => {
  assert.ok(Math.abs(corpusBleu(['the cat sat on the mat'], [['the cat sat on the mat']]).score - 100) < 1e-9);
  // no match at any order: 'exp' smoothing gives 100/(2·4), 100/(4·3), 100/(8·2), 100/(16·1), not 0
  const d = corpusBleu(['a b c d'], [['e f g h']]).score;
  assert.ok(
    Math.abs(d - Math.exp((Math.log(12.5) + Math.log(100 / 12) + Math.log(6.25) + Math.log(6.25)) / 4)) < 1e-9,
    String(d),
  );
  // hypothesis = first 4 of 6 reference words: all precisions 100, BP = exp(1 - 6/4)
  const r = corpusBleu(['the cat sat on'], [['the cat sat on the mat']]);
  assert.ok(Math.abs(r.bp - Math.exp(1 - 6 / 4)) < 1e-12);
  assert.ok(Math.abs(r.score - 100 * Math.exp(-0.5)) < 1e-9);
  // sacreBLEU rstrips each segment before 13a: a trailing newline must not delete a final hyphen ('-\n')
  assert.ok(Math.abs(corpusBleu(['the cat sat on the mat-\n'], [['the cat sat on the mat-']]).score - 100) < 1e-9);
  // clipping: "the the the the" against "the cat": unigram precision 1/4, no higher-order matches → exp smoothing
  const c = corpusBleu(['the the the the'], [['the cat']]);
  assert.deepEqual(c.counts, [1, 0, 0, 0]);
  assert.deepEqual(c.totals, [4, 3, 2, 1]);
  assert.ok(
    Math.abs(c.precisions[1]! - 100 / (2 * 3)) < 1e-12 &&
      Math.abs(c.precisions[2]! - 100 / (4 * 2)) < 1e-12 &&
      Math.abs(c.precisions[3]! - 100 / 8) < 1e-12,
  );
});

test('the sacreBLEU README example (two reference streams)', () => {
  const refs = [
    ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
    ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
  ];
  const sys = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];
  assert.equal(
    formatBleu(corpusBleu(sys, refs)),
    'BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)',
  );
});

/** BLEU straight from Papineni et al. with sacreBLEU's conventions, written independently (single reference). */
function referenceBleu(hyps: string[][], refs: string[][]): number {
  const match = [0, 0, 0, 0],
    total = [0, 0, 0, 0];
  let c = 0,
    r = 0;
  for (let i = 0; i < hyps.length; i++) {
    const h = hyps[i]!,
      ref = refs[i]!;
    c += h.length;
    r += ref.length;
    for (let n = 1; n <= 4; n++) {
      const grams = (t: string[]) => {
        const o: string[] = [];
        for (let k = 0; k + n <= t.length; k++) o.push(t.slice(k, k + n).join(' '));
        return o;
      };
      const hg = grams(h),
        rg = grams(ref);
      total[n - 1]! += hg.length;
      for (const g of new Set(hg))
        match[n - 1]! += Math.min(hg.filter((x) => x === g).length, rg.filter((x) => x === g).length);
    }
  }
  let k = 1,
    logSum = 0;
  for (let n = 0; n < 4; n++) {
    const p = match[n]! > 0 ? match[n]! / total[n]! : 1 / ((k *= 2) * total[n]!);
    logSum += Math.log(p);
  }
  return 100 * (c < r ? Math.exp(1 - r / c) : 1) * Math.exp(logSum / 4);
}

test('random corpora agree with an independent implementation of the definition', () => {
  const rng = new Rng(11);
  const words = ['a', 'b', 'c', 'd', 'e', 'f', 'the', 'cat', 'on', 'mat'];
  for (let trial = 0; trial < 20; trial++) {
    const n = 1 + rng.int(8);
    const refs: string[][] = [],
      hyps: string[][] = [];
    for (let i = 0; i < n; i++) {
      const ref = Array.from({ length: 4 + rng.int(10) }, () => words[rng.int(words.length)]!);
      const hyp = ref
        .filter(() => rng.uniform() < 0.8)
        .map((w) => (rng.uniform() < 0.2 ? words[rng.int(words.length)]! : w));
      if (rng.uniform() < 0.3) hyp.push(...ref.slice(0, 3));
      if (hyp.length < 4) hyp.push('x', 'y', 'z', 'w');
      refs.push(ref);
      hyps.push(hyp);
    }
    const got = corpusBleu(
      hyps.map((h) => h.join(' ')),
      [refs.map((r) => r.join(' '))],
    ).score;
    const want = referenceBleu(hyps, refs);
    assert.ok(Math.abs(got - want) < 1e-9, `trial ${trial}: ${got} vs ${want}`);
  }
});
