/**
 * Training checkpoints: one per epoch in a folder, each a safetensors file (weights, the best weights
 * kept for early stopping, optimizer tensors, the losses so far) and a JSON manifest (epoch, global
 * step — the schedule's position —, the shuffling RNG's state, optimizer scalars, early-stopping
 * bookkeeping, the run's settings). Both are written atomically (src/util/atomic.ts: temporary file, fsync,
 * rename), the manifest last, so a run killed, or a disk that fills, at any instant leaves the previous
 * checkpoints complete and loadable: a manifest names a checkpoint that exists.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { atomicWrite } from '../formats/onnx.js';
import type { Tensor } from '../graph/tensor.js';
import type { OptimizerState } from '../optim/optimizer.js';
import { GraftError } from '../util/errors.js';
import { insideFolder } from '../util/paths.js';

export interface EarlyStoppingState {
  /** Best monitored value so far (higher is better for accuracy, lower for loss). */
  best: number | null;
  bestEpoch: number;
  /** Epochs since the last improvement. */
  bad: number;
  stopped: boolean;
}

export interface CheckpointState {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps taken (the schedule's position). */
  step: number;
  /** The shuffling RNG's state after `epoch` epochs. */
  rng: number[];
  losses: number[];
  /** Current values of every weight the run may change (trainable parameters, BatchNorm statistics). */
  weights: Map<string, Float32Array>;
  optimizer: OptimizerState;
  early?: EarlyStoppingState;
  /** The weights at early stopping's best epoch, when that is not `epoch`. */
  bestWeights?: Map<string, Float32Array>;
  /** The run's settings; a resumed run must match them. */
  config: Record<string, unknown>;
  /** Training callbacks' and the batch source's state (src/train/loop.ts), by name: JSON… */
  callbacks?: Record<string, unknown>;
  /** …and tensors (stored as `cb/<name>/<key>`). */
  callbackTensors?: Map<string, Map<string, Float32Array>>;
}

interface Manifest {
  format: 'graft-checkpoint';
  version: 1;
  epoch: number;
  step: number;
  rng: (number | null)[];
  optimizer: { kind: string; meta: Record<string, unknown> };
  early?: EarlyStoppingState;
  hasBest: boolean;
  config: Record<string, unknown>;
  callbacks?: Record<string, unknown>;
  tensors: string;
}

const NAME = /^epoch-(\d+)\.json$/;
const base = (epoch: number) => `epoch-${String(epoch).padStart(4, '0')}`;

/** Write the checkpoint of `s.epoch` into `dir`; keep only the newest `keep` checkpoints when given. */
export function writeCheckpoint(dir: string, s: CheckpointState, keep?: number): string {
  const tensors = new Map<string, Tensor>();
  const put = (prefix: string, m: Map<string, Float32Array>) => {
    for (const [k, v] of m) tensors.set(`${prefix}/${k}`, { dtype: 'float32', dims: [v.length], data: v });
  };
  put('weights', s.weights);
  if (s.bestWeights) put('best', s.bestWeights);
  put('optim', s.optimizer.tensors);
  for (const [name, m] of s.callbackTensors ?? []) put(`cb/${name}`, m);
  // losses as float64 in the tensor file: JSON would turn −0 into 0
  tensors.set('losses', { dtype: 'float64', dims: [s.losses.length], data: Float64Array.from(s.losses) });
  const b = base(s.epoch);
  const path = join(dir, `${b}.json`);
  const tensorPath = join(dir, `${b}.safetensors`);
  // Rewriting an epoch (a rerun from an earlier checkpoint): drop its manifest first, so a failure below
  // never pairs the old manifest with new tensors; the other epochs' checkpoints are untouched.
  rmSync(path, { force: true });
  writeSafetensors(tensorPath, tensors, { format: 'graft-checkpoint' });
  const manifest: Manifest = {
    format: 'graft-checkpoint',
    version: 1,
    epoch: s.epoch,
    step: s.step,
    rng: s.rng.map((x) => (Number.isFinite(x) ? x : null)),
    optimizer: { kind: s.optimizer.kind, meta: s.optimizer.meta },
    ...(s.early ? { early: s.early } : {}),
    hasBest: !!s.bestWeights,
    config: s.config,
    ...(s.callbacks ? { callbacks: s.callbacks } : {}),
    tensors: `${b}.safetensors`,
  };
  try {
    atomicWrite(path, new TextEncoder().encode(JSON.stringify(manifest, null, 1)));
  } catch (e) {
    rmSync(tensorPath, { force: true }); // no manifest names it: it is not a checkpoint
    throw e;
  }
  if (keep !== undefined) {
    for (const e of listCheckpoints(dir).slice(0, -Math.max(1, keep))) {
      rmSync(join(dir, `${base(e)}.json`), { force: true });
      rmSync(join(dir, `${base(e)}.safetensors`), { force: true });
    }
  }
  return path;
}

/** Epochs that have a complete checkpoint in `dir`, ascending. */
export function listCheckpoints(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => NAME.exec(f))
    .filter((m): m is RegExpExecArray => !!m && existsSync(join(dir, `${base(Number(m[1]))}.safetensors`)))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** The newest checkpoint in `dir`, or undefined when there is none. */
export function readLatestCheckpoint(dir: string): CheckpointState | undefined {
  const all = listCheckpoints(dir);
  const last = all[all.length - 1];
  return last === undefined ? undefined : readCheckpoint(dir, last);
}

export function readCheckpoint(dir: string, epoch: number): CheckpointState {
  const path = join(dir, `${base(epoch)}.json`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw new GraftError(`checkpoint ${path} is unreadable: ${(e as Error).message}`);
  }
  if (!m || typeof m !== 'object' || m.format !== 'graft-checkpoint' || m.version !== 1)
    throw new GraftError(`${path} is not a Graft checkpoint (version 1)`);
  checkManifest(m, path);
  const { tensors } = readSafetensors(insideFolder(dir, m.tensors, `checkpoint tensor file (named in ${path})`));
  const take = (prefix: string) => {
    const out = new Map<string, Float32Array>();
    for (const [k, t] of tensors) {
      if (!k.startsWith(`${prefix}/`)) continue;
      if (t.dtype !== 'float32')
        throw new GraftError(`checkpoint ${path}: tensor '${k}' is ${t.dtype}, expected float32`);
      out.set(k.slice(prefix.length + 1), Float32Array.from(t.data as Float32Array));
    }
    return out;
  };
  return {
    epoch: m.epoch,
    step: m.step,
    rng: m.rng.map((x) => (x === null ? NaN : x)),
    losses: lossesOf(tensors.get('losses'), path),
    weights: take('weights'),
    optimizer: { kind: m.optimizer.kind, meta: m.optimizer.meta, tensors: take('optim') },
    ...(m.early ? { early: m.early } : {}),
    ...(m.hasBest ? { bestWeights: take('best') } : {}),
    config: m.config,
    ...(m.callbacks ? { callbacks: m.callbacks, callbackTensors: callbackTensorsOf(take('cb')) } : {}),
  };
}

/** `name/key` tensors grouped by callback name. */
function callbackTensorsOf(all: Map<string, Float32Array>): Map<string, Map<string, Float32Array>> {
  const out = new Map<string, Map<string, Float32Array>>();
  for (const [k, v] of all) {
    const i = k.indexOf('/');
    if (i < 0) continue;
    const name = k.slice(0, i);
    if (!out.has(name)) out.set(name, new Map());
    out.get(name)!.set(k.slice(i + 1), v);
  }
  return out;
}

function lossesOf(t: Tensor | undefined, path: string): number[] {
  if (!t) return [];
  if (t.dtype !== 'float64' && t.dtype !== 'float32')
    throw new GraftError(`checkpoint ${path}: tensor 'losses' is ${t.dtype}, expected float64`);
  return Array.from(t.data as Float64Array);
}

/** The manifest's fields have the types the reader relies on (a damaged or hostile file fails here, named). */
function checkManifest(m: Manifest, path: string): void {
  const bad = (what: string): never => {
    throw new GraftError(`checkpoint ${path} is damaged: ${what}`);
  };
  const isObj = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (typeof m.epoch !== 'number' || typeof m.step !== 'number') bad('epoch/step are not numbers');
  if (!Array.isArray(m.rng) || m.rng.some((x) => x !== null && typeof x !== 'number'))
    bad('rng is not a list of numbers');
  if (!isObj(m.optimizer) || typeof m.optimizer.kind !== 'string' || !isObj(m.optimizer.meta))
    bad('optimizer is not {kind, meta}');
  if (typeof m.tensors !== 'string') bad('tensors is not a file name');
  if (!isObj(m.config)) bad('config is not an object');
  if (m.early !== undefined && !isObj(m.early)) bad('early is not an object');
  if (m.callbacks !== undefined && !isObj(m.callbacks)) bad('callbacks is not an object');
}

/**
 * Settings that differ between a checkpoint and the run resuming it. fit() puts `epochs` in the config
 * only when the schedule depends on the run's length (cosine, one-cycle), so elsewhere epochs may grow.
 */
export function configMismatch(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(saved), ...Object.keys(now)]);
  return [...keys].filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(now[k]));
}
