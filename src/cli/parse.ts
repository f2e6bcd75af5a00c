/** Flag parsing helpers that fail with a message naming the flag. */
import { GraftError } from '../util/errors.js';

export function int(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new GraftError(`${flag} must be an integer, got '${v}'`);
  return n;
}

/** A table column flag: digits are a 0-based column index, anything else a header name or JSONL field. */
export function column(v: string): string | number {
  return /^\d+$/.test(v) ? Number(v) : v;
}

export function num(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new GraftError(`${flag} must be a number, got '${v}'`);
  return n;
}
