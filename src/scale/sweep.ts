/**
 * Running a sweep (src/scale/cells.ts) and writing its table: `runSweep` runs the cells in this
 * process one after another, or, given a queue address, submits one `cell` job per cell and waits
 * for them all; sweep.json and sweep.md are the same either way (apart from seconds and workers).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';
import { checkReachable, shownUrl } from './connection.js';
import { Submitter, type WatchOptions } from './watch.js';
import { gridCells, runSweepCell, type CellJob, type CellResult, type CellValue, type SweepSpec } from './cells.js';
import type { DataSpec } from './jobs.js';

export interface SweepRunOptions extends WatchOptions {
  /** redis://HOST:PORT: run the cells as jobs on `graft worker`s (default: here). */
  queue?: string;
  /** Tries per cell (queue only; default 2). */
  attempts?: number;
  onCell?: (r: CellResult, done: number, total: number) => void;
}

export interface SweepResult {
  model: string;
  data: string;
  mode: SweepSpec['mode'];
  base: Record<string, unknown>;
  keys: string[];
  cells: CellResult[];
  /** The cell with the best validation accuracy (else test accuracy); ties: the earliest. */
  best?: number;
  queue?: string;
}

/** Run every cell of an absolute spec (absoluteSpec). */
export async function runSweep(spec: SweepSpec & { data: DataSpec }, o: SweepRunOptions = {}): Promise<SweepResult> {
  const params = gridCells(spec.grid);
  const base = spec.base ?? {};
  const cells: CellResult[] = [];
  if (!o.queue) {
    for (const [i, p] of params.entries()) {
      const r = await runSweepCell(spec.mode, spec.model, spec.data, { ...base, ...p }, i, p);
      cells.push(r);
      o.onCell?.(r, cells.length, params.length);
    }
  } else {
    await checkReachable(o.queue);
    const run = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const sub = new Submitter(o.queue);
    try {
      const ids = params.map((_, i) => `${run}-cell-${i}`);
      sub.events.on('completed', ({ jobId, returnvalue }) => {
        const i = ids.indexOf(jobId);
        if (i < 0) return;
        const r = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as CellResult;
        cells.push(r);
        o.onCell?.(r, cells.length, params.length);
      });
      await sub.events.waitUntilReady();
      await sub.queue.addBulk(
        params.map((p, i) => ({
          name: 'cell',
          data: {
            kind: 'cell',
            run,
            index: i,
            cells: params.length,
            mode: spec.mode,
            model: spec.model,
            data: spec.data,
            options: { ...base, ...p },
            params: p,
          } satisfies CellJob,
          opts: {
            jobId: ids[i]!,
            attempts: o.attempts ?? 2,
            backoff: { type: 'exponential', delay: 1000 },
            removeOnComplete: { age: 7 * 86400 },
            removeOnFail: { age: 7 * 86400 },
          },
        })),
      );
      const got = await sub.waitAll<CellResult>(ids, (id) => `cell ${ids.indexOf(id) + 1} of ${ids.length}`, {
        ...o,
        rerunHint: 'run the sweep again',
      });
      cells.length = 0;
      for (const id of ids) cells.push(got.get(id)!);
    } finally {
      await sub.close();
    }
  }
  cells.sort((a, b) => a.index - b.index);
  if (cells.length !== params.length)
    throw new GraftError(`sweep: ${cells.length} of ${params.length} cells came back`);
  const score = (c: CellResult) => c.validation?.accuracy ?? c.test?.accuracy ?? -1;
  let best: number | undefined;
  for (const c of cells) if (score(c) >= 0 && (best === undefined || score(c) > score(cells[best]!))) best = c.index;
  return {
    model: spec.model,
    data: spec.data.path,
    mode: spec.mode,
    base,
    keys: Object.keys(spec.grid),
    cells,
    ...(best !== undefined ? { best } : {}),
    ...(o.queue ? { queue: shownUrl(o.queue) } : {}),
  };
}

const fmt = (v: CellValue) => (v === null ? '–' : String(v));
const acc = (s?: { accuracy: number }) => (s ? s.accuracy.toFixed(4) : '–');
const f1 = (s?: { macroF1: number }) => (s ? s.macroF1.toFixed(4) : '–');

/** Markdown: one row per cell, its grid values, validation and test accuracy and macro F1, seconds; the best marked. */
export function sweepMarkdown(r: SweepResult): string {
  const lines = [
    `Sweep of ${r.cells.length} cells (${r.mode}) on ${r.model}, data ${r.data}${Object.keys(r.base).length ? `; every cell: ${JSON.stringify(r.base)}` : ''}.`,
    '',
    `| ${r.keys.join(' | ')} | val accuracy | val macro F1 | test accuracy | test macro F1 | seconds |`,
    `| ${r.keys.map(() => '---').join(' | ')} | ---: | ---: | ---: | ---: | ---: |`,
    ...r.cells.map(
      (c) =>
        `| ${r.keys.map((k, j) => (j === 0 && c.index === r.best ? `**${fmt(c.params[k]!)}**` : fmt(c.params[k]!))).join(' | ')} | ${acc(c.validation)} | ${f1(c.validation)} | ${acc(c.test)} | ${f1(c.test)} | ${c.seconds.toFixed(1)} |`,
    ),
    '',
  ];
  if (r.best !== undefined)
    lines.push(
      `Best (in bold, by ${r.cells[r.best]!.validation ? 'validation' : 'test'} accuracy): ${JSON.stringify(r.cells[r.best]!.params)}.`,
      '',
    );
  return lines.join('\n');
}

/** sweep.json and sweep.md in `dir`, atomically. Returns their paths. */
export function writeSweep(r: SweepResult, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, 'sweep.json'), join(dir, 'sweep.md')];
  atomicWrite(files[0]!, Buffer.from(JSON.stringify(r, null, 2) + '\n'));
  atomicWrite(files[1]!, Buffer.from(sweepMarkdown(r)));
  return files;
}
