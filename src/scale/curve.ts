/**
 * Data-efficiency curves as queue jobs: `curveOnQueue` plans the curve and extracts the features
 * once here, as a local run does (src/eval/curve.ts), writes the examples (and features) to one
 * file in a run folder every worker can reach, submits one `curve-cell` job per (seed, budget,
 * method) and assembles the points in the local order: the same curve.json/md/svg as a local run
 * (apart from seconds). The run folder is removed at the end.
 *
 * Run file (little-endian): u32 header length | JSON header {n, dim, featDim} | u32 labels ×n |
 * f32 inputs n×dim | f32 features n×featDim.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Graph } from '../graph/graph.js';
import type { Examples } from '../train/fit.js';
import {
  planCurve,
  curveCells,
  curveFeatures,
  runCurveCell,
  summarizeCurve,
  type CurveCell,
  type CurveOptions,
  type CurvePlan,
  type CurvePoint,
  type CurveResult,
} from '../eval/curve.js';
import { atomicWrite } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';
import { checkReachable } from './connection.js';
import { Submitter, type WatchOptions } from './watch.js';

export interface CurveCellJob {
  kind: 'curve-cell';
  run: string;
  index: number;
  cells: number;
  model: string;
  dataFile: string;
  plan: CurvePlan;
  cell: CurveCell;
}

export interface CurveQueueOptions extends WatchOptions {
  queue: string;
  /** The model's path (what workers load). */
  modelPath: string;
  /** A folder every worker can reach; the run's data file goes in a subfolder, removed at the end. */
  dir: string;
  attempts?: number;
}

function writeRunFile(path: string, data: Examples, feats?: Float32Array[]): void {
  const n = data.x.length,
    dim = data.x[0]?.length ?? 0,
    featDim = feats?.[0]?.length ?? 0;
  const head = Buffer.from(JSON.stringify({ n, dim, featDim }));
  const body = Buffer.alloc(4 + head.length + 4 * n + 4 * n * dim + 4 * n * featDim);
  body.writeUInt32LE(head.length, 0);
  head.copy(body, 4);
  let off = 4 + head.length;
  for (const y of data.y) {
    body.writeUInt32LE(y, off);
    off += 4;
  }
  for (const x of data.x) {
    Buffer.from(x.buffer, x.byteOffset, x.byteLength).copy(body, off);
    off += 4 * dim;
  }
  for (const f of feats ?? []) {
    Buffer.from(f.buffer, f.byteOffset, f.byteLength).copy(body, off);
    off += 4 * featDim;
  }
  atomicWrite(path, body);
}

/** The examples and features of a run file (sizes checked against the file's length). */
export function readRunFile(path: string): { data: Examples; feats?: Float32Array[] } {
  const b = readFileSync(path);
  const bad = (why: string) => new GraftError(`${path}: not a curve run file (${why})`);
  if (b.length < 4) throw bad('too short');
  const hl = b.readUInt32LE(0);
  if (4 + hl > b.length) throw bad('header past the end');
  const h = JSON.parse(b.subarray(4, 4 + hl).toString()) as { n: number; dim: number; featDim: number };
  if (![h.n, h.dim, h.featDim].every((v) => Number.isInteger(v) && v >= 0)) throw bad('bad sizes');
  const need = 4 + hl + 4 * h.n * (1 + h.dim + h.featDim);
  if (b.length !== need) throw bad(`${b.length} bytes, the header says ${need}`);
  let off = 4 + hl;
  const y: number[] = [];
  for (let i = 0; i < h.n; i++) {
    y.push(b.readUInt32LE(off));
    off += 4;
  }
  const floats = (count: number) => {
    const out = new Float32Array(count);
    Buffer.from(out.buffer).set(b.subarray(off, off + 4 * count));
    off += 4 * count;
    return out;
  };
  const x = Array.from({ length: h.n }, () => floats(h.dim));
  const feats = h.featDim ? Array.from({ length: h.n }, () => floats(h.featDim)) : undefined;
  return { data: { x, y }, ...(feats ? { feats } : {}) };
}

/** A worker's run files (cells of one curve share one). */
const runFiles = new Map<string, { mtime: number; v: ReturnType<typeof readRunFile> }>();

/** Run one curve cell on this worker. */
export async function runCurveCellJob(d: CurveCellJob, loadModel: (path: string) => Graph): Promise<CurvePoint> {
  const mtime = statSync(d.dataFile).mtimeMs;
  let f = runFiles.get(d.dataFile);
  if (!f || f.mtime !== mtime) {
    f = { mtime, v: readRunFile(d.dataFile) };
    runFiles.clear();
    runFiles.set(d.dataFile, f);
  }
  return runCurveCell(loadModel(d.model), f.v.data, d.plan, d.cell, f.v.feats);
}

/**
 * A function with dataEfficiencyCurve's signature that runs the cells on the queue. The model given
 * must be the one at `q.modelPath` (workers load it from there).
 */
export function curveOnQueue(
  q: CurveQueueOptions,
): (model: Graph, data: Examples, o: CurveOptions) => Promise<CurveResult> {
  return async (model, data, o) => {
    const plan = planCurve(model, data, o);
    await checkReachable(q.queue);
    let feats: Float32Array[] | undefined;
    let featureSeconds: number | undefined;
    if (plan.methods.includes('features')) {
      const t0 = performance.now();
      feats = await curveFeatures(model, data, o);
      featureSeconds = (performance.now() - t0) / 1000;
    }
    const run = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const runDir = join(resolve(q.dir), `.graft-queue-${run}`);
    mkdirSync(runDir, { recursive: true });
    const dataFile = join(runDir, 'examples.bin');
    const sub = new Submitter(q.queue);
    try {
      writeRunFile(dataFile, data, feats);
      const cells = curveCells(plan);
      const ids = cells.map((_, i) => `${run}-curve-${i}`);
      let done = 0;
      sub.events.on('completed', ({ jobId, returnvalue }) => {
        if (!ids.includes(jobId)) return;
        const p = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as CurvePoint;
        o.onProgress?.({
          done: ++done,
          total: cells.length,
          method: p.method,
          perClass: p.perClass,
          seed: p.seed,
          accuracy: p.accuracy,
        });
      });
      await sub.events.waitUntilReady();
      await sub.queue.addBulk(
        cells.map((cell, i) => ({
          name: 'curve-cell',
          data: {
            kind: 'curve-cell',
            run,
            index: i,
            cells: cells.length,
            model: resolve(q.modelPath),
            dataFile,
            plan,
            cell,
          } satisfies CurveCellJob,
          opts: {
            jobId: ids[i]!,
            attempts: q.attempts ?? 2,
            backoff: { type: 'exponential', delay: 1000 },
            removeOnComplete: { age: 7 * 86400 },
            removeOnFail: { age: 7 * 86400 },
          },
        })),
      );
      const got = await sub.waitAll<CurvePoint>(
        ids,
        (id) => {
          const c = cells[ids.indexOf(id)]!;
          return `curve cell ${c.method} at ${c.perClass}/class, seed ${c.seed}`;
        },
        { ...q, rerunHint: 'run graft curve again' },
      );
      return summarizeCurve(
        model.name,
        data.x.length,
        plan,
        ids.map((id) => got.get(id)!),
        featureSeconds,
      );
    } finally {
      await sub.close();
      rmSync(runDir, { recursive: true, force: true });
    }
  };
}
