/** Class-name files: one name per line, optionally "index name" (as some model zoos write them). */
import { readFileSync, existsSync } from 'node:fs';
import { GraftError } from '../util/errors.js';

export function parseLabels(text: string): string[] {
  const lines = text.replace(/\r/g, '').split('\n');
  while (lines.length && lines[lines.length - 1]!.trim() === '') lines.pop();
  // "0  background" / "1 tench": every line starts with its own index
  const indexed = lines.length > 0 && lines.every((l) => /^\s*\d+[\s:]+\S/.test(l));
  if (!indexed) return lines.map((l) => l.trim());
  const out: string[] = [];
  for (const l of lines) {
    const m = /^\s*(\d+)[\s:]+(.*)$/.exec(l)!;
    out[Number(m[1])] = m[2]!.trim();
  }
  return Array.from(out, (x) => x ?? '');
}

export function readLabels(path: string): string[] {
  if (!existsSync(path)) throw new GraftError(`labels file not found: ${path}`);
  const labels = parseLabels(readFileSync(path, 'utf8'));
  if (!labels.length) throw new GraftError(`labels file ${path} is empty`);
  return labels;
}
