/** CSV files (optionally gzip-compressed) as rows of strings. */
import { readFileSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { GraftError } from '../util/errors.js';

export function readText(path: string): string {
  if (!existsSync(path)) throw new GraftError(`data file not found: ${path}`);
  const raw = readFileSync(path);
  return (path.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
}

/** Parse CSV with quoted fields ("" escapes a quote). */
export function parseCsv(text: string, sep = ','): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === sep) { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      field = '';
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
    } else field += ch;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

export interface PixelTable {
  /** One Float32Array of width·height pixels per example. */
  pixels: Float32Array[];
  labels: number[];
  side: number;
}

/**
 * A numeric CSV of square grey images: each row is side² pixel values then an integer label
 * (e.g. the 8×8 digits). Rows that do not parse are reported with their line number.
 */
export function readPixelCsv(path: string): PixelTable {
  const rows = parseCsv(readText(path));
  if (!rows.length) throw new GraftError(`${path} has no rows`);
  const n = rows[0]!.length - 1;
  const side = Math.round(Math.sqrt(n));
  if (side * side !== n) throw new GraftError(`${path}: ${n} pixel columns is not a square image`);
  const pixels: Float32Array[] = [];
  const labels: number[] = [];
  rows.forEach((r, i) => {
    const vals = r.map(Number);
    if (r.length !== n + 1 || vals.some((v) => !Number.isFinite(v)))
      throw new GraftError(`${path}:${i + 1}: expected ${n} pixel values and a label`);
    pixels.push(Float32Array.from(vals.slice(0, n)));
    labels.push(vals[n]!);
  });
  return { pixels, labels, side };
}
