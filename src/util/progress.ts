/**
 * The one terminal progress bar of Graft: training steps (src/train/callbacks.ts Progress), feature
 * extraction, caching, evaluation, adaptation, learning curves and downloads all draw it. It goes to
 * stderr (or a given stream), only when that is a terminal and never when quiet (--json), so stdout
 * keeps the summary alone.
 */
import cliProgress from 'cli-progress';

/** Would a bar be drawn on `stream` (default stderr)? Not when quiet, not when it is not a terminal. */
export function showsProgress(quiet?: boolean, stream: { isTTY?: boolean } = process.stderr): boolean {
  return !quiet && !!stream.isTTY;
}

/** A bar that starts at its first update; `stop` ends it (a later update starts a fresh one). */
export class ProgressBar {
  private bar?: cliProgress.SingleBar;
  private total = -1;

  constructor(
    /** cli-progress format: {bar}, {value}, {total}, {eta_formatted} and the payload's keys. */
    readonly format: string,
    readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** `done` of `total` (the total may change between updates), with the format's own fields. */
  update(done: number, total: number, payload: Record<string, unknown> = {}): void {
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        { format: this.format, stream: this.stream, hideCursor: true, etaBuffer: 50 },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, done, payload);
      this.total = total;
      return;
    }
    if (total !== this.total) {
      this.bar.setTotal(total);
      this.total = total;
    }
    this.bar.update(done, payload);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
    this.total = -1;
  }
}

/** The bar, or null when nothing may be drawn (quiet, or the stream is not a terminal). */
export function progressBar(
  format: string,
  o: { quiet?: boolean | undefined; stream?: NodeJS.WriteStream } = {},
): ProgressBar | null {
  const stream = o.stream ?? process.stderr;
  return showsProgress(o.quiet, stream) ? new ProgressBar(format, stream) : null;
}
