/**
 * Download progress: the events a pull reports, and the terminal bar that shows them (bytes, total,
 * rate, time left) on stderr, drawn with src/util/progress.ts (only on a terminal, never with --json).
 */
import { progressBar as bar } from '../util/progress.js';

export interface PullProgress {
  /** The file being downloaded now. */
  file: string;
  /** Bytes of this pull received or found on disk so far, out of `total`. */
  done: number;
  total: number;
  /** Bytes received over the network by this pull so far (excludes resumed partials). */
  fetched: number;
}

export type ProgressListener = (p: PullProgress) => void;

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A listener drawing a bar on stderr, and `stop` to end it; null when stderr is not a terminal or `quiet`. */
export function progressBar(quiet = false): { listener: ProgressListener; stop: () => void } | null {
  const b = bar('{file} |{bar}| {done} / {size}  {rate}  eta {eta_formatted}', { quiet });
  if (!b) return null;
  const t0 = Date.now();
  return {
    listener: (p) => {
      const secs = Math.max((Date.now() - t0) / 1000, 1e-3);
      b.update(p.done, p.total, {
        file: p.file,
        done: formatBytes(p.done),
        size: formatBytes(p.total),
        rate: `${formatBytes(Math.round(p.fetched / secs))}/s`,
      });
    },
    stop: () => b.stop(),
  };
}
