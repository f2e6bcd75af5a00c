/** Fixed subsets of the real review snippets (pang&lee2) written as small CSV files for CLI tests. */
import { writeFileSync } from 'node:fs';
import { asset } from './assets.js';
import { readTextTable } from '../../src/data/text-table.js';

/** A CSV with the header `sentiment,review` (quoted texts) of [label, text] rows. */
export function reviewCsv(rows: readonly (readonly [string, string])[]): string {
  return 'sentiment,review\n' + rows.map(([l, x]) => `${l},"${x.replace(/"/g, '""')}"`).join('\n') + '\n';
}

/** Per class (neg, then pos), snippets [from, to) of that class; written to `path`, returned as [label, text] rows. */
export function writeReviewSnippets(path: string, from: number, to: number): [string, string][] {
  const t = readTextTable(asset('datasets/reviews/polarity-en-pang&lee2.csv'));
  const rows = [0, 1].flatMap((c) =>
    t.texts
      .filter((_, i) => t.y[i] === c)
      .slice(from, to)
      .map((x): [string, string] => [c ? 'pos' : 'neg', x]),
  );
  writeFileSync(path, reviewCsv(rows));
  return rows;
}
