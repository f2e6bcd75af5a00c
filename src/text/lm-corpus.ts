/**
 * Text corpora for language-model fine-tuning: plain text (documents separated by blank lines), CSV
 * (a text column) or JSONL (a text field), optionally gzip-compressed, as a list of documents. Empty
 * documents and text that is not valid UTF-8 are errors naming the file and row.
 */
import { existsSync } from 'node:fs';
import { parseCsvRecords, readTextFile } from '../data/text-table.js';
import { GraftError } from '../util/errors.js';

export interface CorpusOptions {
  /** CSV: column name (the first row is then a header) or 0-based index; default: the column with the longest texts (no header). */
  textColumn?: string | number;
  /** JSONL: the field holding the text (default 'text'). */
  field?: string;
}

/** The file as text: missing file, bad gzip and invalid UTF-8 are GraftErrors naming the file (and line). */
function readUtf8(path: string): string {
  if (!existsSync(path)) throw new GraftError(`corpus file not found: ${path}`);
  return readTextFile(path);
}

/** The documents of a corpus file (see CorpusOptions). */
export function readCorpus(path: string, opts: CorpusOptions = {}): string[] {
  const text = readUtf8(path);
  const base = path.replace(/\.gz$/, '').toLowerCase();
  let docs: { text: string; row: number }[];
  if (base.endsWith('.csv') || base.endsWith('.tsv')) {
    const recs = parseCsvRecords(text, base.endsWith('.tsv') ? '\t' : ',', path); // unterminated quotes: an error naming the line
    const rows = recs.map((r) => r.fields);
    if (!rows.length) throw new GraftError(`${path}: no rows`);
    let col: number;
    let start = 0;
    if (typeof opts.textColumn === 'string' && !/^\d+$/.test(opts.textColumn)) {
      col = rows[0]!.indexOf(opts.textColumn);
      if (col < 0)
        throw new GraftError(
          `${path}: no column named '${opts.textColumn}' in the header (${rows[0]!.join(', ')})`,
          'pass --text-column with a header name or a 0-based index',
        );
      start = 1;
    } else if (opts.textColumn !== undefined) {
      col = Number(opts.textColumn);
      if (col >= rows[0]!.length)
        throw new GraftError(`${path}: text column ${col} does not exist (${rows[0]!.length} columns)`);
    } else {
      const width = rows[0]!.length;
      const len = Array.from({ length: width }, (_, c) => rows.reduce((a, r) => a + (r[c]?.length ?? 0), 0));
      col = len.indexOf(Math.max(...len));
    }
    docs = recs.slice(start).map(({ fields: r, line }) => {
      if (r.length <= col) throw new GraftError(`${path}: line ${line} has ${r.length} columns, no text column ${col}`);
      return { text: r[col]!, row: line };
    });
  } else if (base.endsWith('.jsonl') || base.endsWith('.ndjson')) {
    const field = opts.field ?? (typeof opts.textColumn === 'string' ? opts.textColumn : 'text');
    docs = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch {
        throw new GraftError(`${path}: line ${i + 1} is not valid JSON`);
      }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj))
        throw new GraftError(`${path}: line ${i + 1} is not a JSON object`);
      const v = (obj as Record<string, unknown>)[field];
      if (typeof v !== 'string')
        throw new GraftError(
          `${path}: line ${i + 1} has no string field '${field}'`,
          'pass --text-column with the field name',
        );
      docs.push({ text: v, row: i + 1 });
    });
  } else {
    docs = [];
    let row = 1;
    for (const para of text.split(/\n\s*\n/)) {
      if (para.trim()) docs.push({ text: para.trim(), row });
      row += para.split('\n').length + 1;
    }
  }
  for (const d of docs) if (!d.text.trim()) throw new GraftError(`${path}: row ${d.row} has an empty text`);
  if (!docs.length) throw new GraftError(`${path}: the corpus has no text`);
  return docs.map((d) => d.text);
}

/** The Pang & Lee full movie reviews (label, text CSV without header): the texts. */
export function loadReviewTexts(path: string): string[] {
  return readCorpus(path, { textColumn: 1 });
}
