/**
 * Download progress: the events a pull reports, and the terminal bar that shows them (bytes, total,
 * rate, time left) on stderr. The bar is drawn only on a terminal and never with --json.
 */
import cliProgress from 'cli-progress';

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
  if (quiet || !process.stderr.isTTY) return null;
  const bar = new cliProgress.SingleBar(
    { format: '{file} |{bar}| {done} / {size}  {rate}  eta {eta_formatted}', stream: process.stderr, hideCursor: true, etaBuffer: 50 },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  let started = false;
  return {
    listener: (p) => {
      const secs = Math.max((Date.now() - t0) / 1000, 1e-3);
      const payload = { file: p.file, done: formatBytes(p.done), size: formatBytes(p.total), rate: `${formatBytes(Math.round(p.fetched / secs))}/s` };
      if (!started) {
        bar.start(p.total, p.done, payload);
        started = true;
      } else bar.update(p.done, payload);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
