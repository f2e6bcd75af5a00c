/**
 * Sweeps: a grid of settings (e.g. learning rate × top blocks × seed) over one model and dataset,
 * each combination a cell, run in this process or as queue jobs; the same table either way.
 *
 *   { "model": "…", "data": "…", "mode": "features" | "finetune",
 *     "base": { "labelsPerClass": 20, "epochs": 5 },              (options every cell shares)
 *     "grid": { "lr": [1e-3, 3e-3], "topBlocks": [1, 2], "seed": [0, 1, 2] } }
 *
 * A cell's options are `base` with its grid values on top, given to trainFeatureClassifier
 * (features) or finetuneImages (finetune) as they are: their option names are the keys. The
 * cells' order is the grid's (the last key varies fastest), their results depend only on their own
 * options, so the table does not depend on which worker ran what.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve, dirname } from 'node:path';
import type { Job } from 'bullmq';
import { trainFeatureClassifier } from '../features/classifier.js';
import { finetuneImages } from '../finetune/image-finetune.js';
import type { Metrics } from '../eval/metrics.js';
import { GraftError } from '../util/errors.js';
import { loadModel } from '../formats/load.js';
import { loadData, mustSee, type DataSpec, WORKER_NAME } from './load.js';

export type SweepMode = 'features' | 'finetune';
export const SWEEP_MODES: readonly SweepMode[] = ['features', 'finetune'];

export type CellValue = number | string | boolean | null;

export interface SweepSpec {
  model: string;
  data: string | DataSpec;
  mode: SweepMode;
  base?: Record<string, unknown>;
  grid: Record<string, CellValue[]>;
}

export interface CellJob {
  kind: 'cell';
  run: string;
  index: number;
  cells: number;
  mode: SweepMode;
  model: string;
  data: DataSpec;
  /** base + this cell's grid values */
  options: Record<string, unknown>;
  params: Record<string, CellValue>;
}

/** The scores a cell reports (of its validation and test splits). */
export interface CellScores {
  accuracy: number;
  macroF1: number;
  n: number;
}

export interface CellResult {
  index: number;
  params: Record<string, CellValue>;
  validation?: CellScores;
  test?: CellScores;
  /** Seconds of this cell's own work. */
  seconds: number;
  worker: string;
}

/** Options a cell cannot take: callbacks, and what would make cells overwrite each other. */
const REFUSED = [
  'out',
  'onProgress',
  'onSkip',
  'onStep',
  'onEpoch',
  'onStart',
  'onStage',
  'onCacheProgress',
  'runtime',
  'checkpoint',
];

/** Check a parsed sweep file; paths are taken relative to the file's folder. */
export function checkSweepSpec(x: unknown, file = 'the sweep file'): SweepSpec {
  if (!x || typeof x !== 'object' || Array.isArray(x))
    throw new GraftError(`${file}: expected a JSON object with model, data, mode and grid`);
  const s = x as Record<string, unknown>;
  for (const k of Object.keys(s))
    if (!['model', 'data', 'mode', 'base', 'grid'].includes(k))
      throw new GraftError(`${file}: unknown key '${k}' (known: model, data, mode, base, grid)`);
  if (typeof s['model'] !== 'string' || !s['model']) throw new GraftError(`${file}: 'model' must be a path`);
  const data = s['data'];
  if (
    !(typeof data === 'string' && data) &&
    !(data && typeof data === 'object' && typeof (data as DataSpec).path === 'string')
  )
    throw new GraftError(`${file}: 'data' must be a path or { "path": …, "labelsData"?: …, "maxPerClass"?: … }`);
  const mode = s['mode'] ?? 'features';
  if (!SWEEP_MODES.includes(mode as SweepMode))
    throw new GraftError(`${file}: 'mode' must be one of ${SWEEP_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  const base = s['base'] ?? {};
  if (typeof base !== 'object' || Array.isArray(base) || base === null)
    throw new GraftError(`${file}: 'base' must be an object of options`);
  const grid = s['grid'];
  if (!grid || typeof grid !== 'object' || Array.isArray(grid) || Object.keys(grid).length === 0)
    throw new GraftError(`${file}: 'grid' must be an object of option → list of values`);
  for (const [k, v] of Object.entries(grid as Record<string, unknown>)) {
    if (!Array.isArray(v) || v.length === 0) throw new GraftError(`${file}: grid '${k}' must be a non-empty list`);
    if (v.some((e) => e !== null && !['number', 'string', 'boolean'].includes(typeof e)))
      throw new GraftError(`${file}: grid '${k}' holds a value that is not a number, string, boolean or null`);
    if (new Set(v.map((e) => JSON.stringify(e))).size !== v.length)
      throw new GraftError(`${file}: grid '${k}' lists a value twice`);
  }
  for (const k of [...Object.keys(base as object), ...Object.keys(grid as object)])
    if (REFUSED.includes(k)) throw new GraftError(`${file}: '${k}' cannot be set per sweep cell`);
  return {
    model: s['model'],
    data: data as string | DataSpec,
    mode: mode as SweepMode,
    base: base as Record<string, unknown>,
    grid: grid as Record<string, CellValue[]>,
  };
}

/** Make the spec's paths absolute (relative to `dir`, the sweep file's folder). */
export function absoluteSpec(s: SweepSpec, dir: string): SweepSpec & { data: DataSpec } {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dir, p));
  const d: DataSpec = typeof s.data === 'string' ? { path: s.data } : s.data;
  const base = { ...(s.base ?? {}) };
  if (typeof base['cacheDir'] === 'string') base['cacheDir'] = abs(base['cacheDir']);
  return {
    ...s,
    model: abs(s.model),
    data: { ...d, path: abs(d.path), ...(d.labelsData ? { labelsData: abs(d.labelsData) } : {}) },
    base,
  };
}

export function sweepFileDir(file: string): string {
  return dirname(resolve(file));
}

/** A sweep file (JSON) checked, its paths made absolute against its folder. */
export function readSweepSpec(file: string): SweepSpec & { data: DataSpec } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new GraftError(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (/\.ya?ml$/i.test(file))
    throw new GraftError(
      `${file}: YAML is not read; write the grid as JSON`,
      'e.g. { "model": "m.onnx", "data": "photos/", "mode": "features", "grid": { "seed": [0, 1, 2] } }',
    );
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch (e) {
    throw new GraftError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  return absoluteSpec(checkSweepSpec(x, file), sweepFileDir(file));
}

/** Every combination of the grid's values, the last key varying fastest. */
export function gridCells(grid: Record<string, CellValue[]>): Record<string, CellValue>[] {
  let out: Record<string, CellValue>[] = [{}];
  for (const [k, vs] of Object.entries(grid)) out = out.flatMap((c) => vs.map((v) => ({ ...c, [k]: v })));
  return out;
}

const scores = (m?: Metrics): CellScores | undefined =>
  m ? { accuracy: m.accuracy, macroF1: m.macroF1, n: m.n } : undefined;

/** Run one cell here. */
export async function runSweepCell(
  mode: SweepMode,
  model: string,
  data: DataSpec,
  options: Record<string, unknown>,
  index: number,
  params: Record<string, CellValue>,
): Promise<CellResult> {
  const t0 = performance.now();
  mustSee(model, 'the model');
  const g = loadModel(model); // a fresh graph per cell: training may change the one it is given
  const d = loadData(data);
  let validation: Metrics | undefined, test: Metrics | undefined;
  try {
    if (mode === 'features')
      ({
        report: { validation, test },
      } = await trainFeatureClassifier(g, d, options));
    else
      ({
        report: { validation, test },
      } = await finetuneImages(g, d, options));
  } catch (e) {
    if (e instanceof GraftError)
      throw new GraftError(`cell ${index + 1} (${JSON.stringify(params)}): ${e.message}`, e.hint);
    throw e;
  }
  const v = scores(validation),
    t = scores(test);
  return {
    index,
    params,
    ...(v ? { validation: v } : {}),
    ...(t ? { test: t } : {}),
    seconds: (performance.now() - t0) / 1000,
    worker: WORKER_NAME,
  };
}

export async function runCell(job: Job<CellJob>): Promise<CellResult> {
  const d = job.data;
  return runSweepCell(d.mode, d.model, d.data, d.options, d.index, d.params);
}
