/** Numeric CSV tables of square grey images (optionally gzip-compressed); parsing is text-table's. */
import { GraftError } from '../util/errors.js';
import { readTextFile, parseCsvRecords } from './text-table.js';

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
  const rows = parseCsvRecords(readTextFile(path), ',', path);
  if (!rows.length) throw new GraftError(`${path} has no rows`);
  const n = rows[0]!.fields.length - 1;
  const side = Math.round(Math.sqrt(n));
  if (side * side !== n) throw new GraftError(`${path}: ${n} pixel columns is not a square image`);
  const pixels: Float32Array[] = [];
  const labels: number[] = [];
  rows.forEach(({ fields, line }) => {
    const vals = fields.map(Number);
    if (fields.length !== n + 1 || vals.some((v) => !Number.isFinite(v)))
      throw new GraftError(`${path}:${line}: expected ${n} pixel values and a label`);
    pixels.push(Float32Array.from(vals.slice(0, n)));
    labels.push(vals[n]!);
  });
  return { pixels, labels, side };
}
