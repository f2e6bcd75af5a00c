/**
 * The TF.js file reader: model.json (a file, a folder holding one, or a JS bundle as nsfwjs ships them,
 * through ./tfjs-nsfwjs.ts) and its weight shards, every shard inside the model's folder and every
 * declared size checked before anything is allocated. Weights are decoded to float32 by name:
 * float32, int32, bool, or quantized (`quantization: {dtype: uint8|uint16, scale, min}` → q·scale + min,
 * as tfjs dequantizes; or `{dtype: float16}`), through the importer core. The layers importer is
 * ./tfjs.ts, the graph-model importer ./tfjs-graph.ts.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Tensor } from '../graph/tensor.js';
import { dequantizeMinScale, float16ToFloat32 } from './importer/core.js';
import { GraftError } from '../util/errors.js';
import { insideFolder } from '../util/paths.js';
import { checkedNumel } from '../util/limits.js';
import { readModelBundle, readShardBundle } from './tfjs-nsfwjs.js';

/* ------------------------------------------------------------------------------------------------ */
/* model.json and its weight shards                                                                   */

interface Quantization {
  dtype?: string;
  scale?: number;
  min?: number;
  original_dtype?: string;
}
interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: Quantization;
}
export interface WeightGroup {
  paths: string[];
  weights: WeightSpec[];
}
/* eslint-disable @typescript-eslint/no-explicit-any */
export type Json = any;
export interface ModelJson {
  modelTopology?: Json;
  weightsManifest?: WeightGroup[];
  format?: string;
}

/** Where model.json and its shards come from. */
export interface Source {
  label: string;
  dir: string;
  json: ModelJson;
  /** The file a manifest path names (for messages). */
  shardFile(path: string): string;
  shard(path: string): Uint8Array;
}

function fileSource(file: string): Source {
  let json: ModelJson;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as ModelJson;
  } catch (e) {
    throw new GraftError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json))
    throw new GraftError(`${file} is not a TF.js model.json (not a JSON object)`);
  const dir = dirname(file);
  const shardFile = (p: string) => insideFolder(dir, shardName(p, file), `weight shard (listed in ${file})`);
  return {
    label: file,
    dir,
    json,
    shardFile,
    shard(p) {
      const f = shardFile(p);
      if (!existsSync(f)) throw new GraftError(`weight shard not found: ${f} (listed in ${file})`);
      return new Uint8Array(readFileSync(f));
    },
  };
}

/** A manifest path as a file name relative to model.json's folder (URL-decoded, as tfjs's loader fetches it). */
function shardName(p: unknown, file: string): string {
  if (typeof p !== 'string')
    throw new GraftError(`${file}: a weightsManifest path is not a string (${JSON.stringify(p)})`);
  let name: string;
  try {
    name = decodeURIComponent(p);
  } catch {
    throw new GraftError(`${file}: weightsManifest path '${p}' is not valid URL encoding`);
  }
  return name.replace(/^(\.\/)+/, '');
}

function bundleSource(file: string): Source {
  const dir = dirname(file);
  const shardFile = (p: string) =>
    insideFolder(dir, `${shardName(p, file)}.min.js`, `weight shard bundle (listed in ${file})`);
  return {
    label: file,
    dir,
    json: readModelBundle(file) as ModelJson,
    shardFile,
    shard: (p) => readShardBundle(shardFile(p)),
  };
}

export function openSource(path: string): Source {
  if (!existsSync(path)) throw new GraftError(`model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, 'model.json'))) return fileSource(join(path, 'model.json'));
    if (existsSync(join(path, 'model.min.js'))) return bundleSource(join(path, 'model.min.js'));
    throw new GraftError(`${path} is a folder without model.json (or a model.min.js bundle)`);
  }
  return /\.m?js$/.test(path) ? bundleSource(path) : fileSource(path);
}

const STORED_BYTES: Record<string, number> = { float32: 4, int32: 4, uint8: 1, uint16: 2, float16: 2, bool: 1 };

/** Every weight of the manifest, by name, in Keras layout (float32; int32 weights as float32 too). */
export function decodeTfjsWeights(
  manifest: WeightGroup[],
  src: Pick<Source, 'shard' | 'shardFile' | 'label'>,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  if (!Array.isArray(manifest)) throw new GraftError(`${src.label}: weightsManifest is not a list`);
  for (const group of manifest) {
    if (!group || typeof group !== 'object' || !Array.isArray(group.paths) || !Array.isArray(group.weights))
      throw new GraftError(`${src.label}: a weightsManifest entry lacks paths or weights`);
    // every declared size is checked before any shard is read or any buffer allocated
    const sizes = group.weights.map((w) => {
      if (!w || typeof w !== 'object' || typeof w.name !== 'string')
        throw new GraftError(`${src.label}: a weightsManifest weight has no name`);
      const q = w.quantization;
      if (q != null && typeof q !== 'object')
        throw new GraftError(`${src.label}: weight '${w.name}' has a malformed quantization`);
      const stored = q?.dtype ?? w.dtype;
      const per = typeof stored === 'string' && Object.hasOwn(STORED_BYTES, stored) ? STORED_BYTES[stored] : undefined;
      if (!per) throw new GraftError(`${src.label}: weight '${w.name}' has unsupported dtype ${String(stored)}`);
      return checkedNumel(w.shape, `${src.label}: weight '${w.name}'`) * per;
    });
    const shards = group.paths.map((p) => src.shard(p));
    const total = shards.reduce((s, b) => s + b.byteLength, 0);
    const needed = sizes.reduce((s, n) => s + n, 0);
    if (total < needed) {
      // shards of a group are cut at a fixed size, the last one shorter: a short one before it is the culprit
      const first = shards[0]?.byteLength ?? 0;
      let bad = group.paths.length - 1;
      for (let i = 0; i < shards.length - 1; i++)
        if (shards[i]!.byteLength < first) {
          bad = i;
          break;
        }
      throw new GraftError(
        `weight shard ${src.shardFile(group.paths[bad] ?? '?')} is truncated: its group (${group.paths.join(', ')}) holds ` +
          `${total} bytes, the manifest's weights (${group.weights
            .map((w) => w.name)
            .slice(0, 3)
            .join(', ')}${group.weights.length > 3 ? ', …' : ''}) need ${needed}`,
      );
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const s of shards) {
      all.set(s, o);
      o += s.byteLength;
    }
    let off = 0;
    group.weights.forEach((w, k) => {
      const bytes = all.subarray(off, off + sizes[k]!);
      off += sizes[k]!;
      if (out.has(w.name)) throw new GraftError(`${src.label}: weight '${w.name}' appears twice in the manifest`);
      out.set(w.name, { dtype: 'float32', dims: [...w.shape], data: dequantize(w, bytes, src.label) });
    });
  }
  return out;
}

function dequantize(w: WeightSpec, bytes: Uint8Array, label: string): Float32Array {
  const q = w.quantization;
  const n = checkedNumel(w.shape, `${label}: weight '${w.name}'`);
  const copy = new Uint8Array(bytes); // aligned, owned
  const stored = q?.dtype ?? w.dtype;
  const out = new Float32Array(n);
  const intOut = w.dtype === 'int32';
  if (q && (stored === 'uint8' || stored === 'uint16')) {
    if (typeof q.scale !== 'number' || typeof q.min !== 'number')
      throw new GraftError(`${label}: quantized weight '${w.name}' lacks scale/min`);
    return dequantizeMinScale(stored === 'uint8' ? copy : new Uint16Array(copy.buffer, 0, n), q.scale, q.min, intOut);
  }
  switch (stored) {
    case 'float32':
      return new Float32Array(copy.buffer, 0, n);
    case 'int32': {
      const v = new Int32Array(copy.buffer, 0, n);
      for (let i = 0; i < n; i++) out[i] = v[i]!;
      return out;
    }
    case 'float16':
      return float16ToFloat32(new Uint16Array(copy.buffer, 0, n));
    case 'bool':
    case 'uint8':
      for (let i = 0; i < n; i++) out[i] = copy[i]!;
      return out;
    case 'uint16': {
      const v = new Uint16Array(copy.buffer, 0, n);
      for (let i = 0; i < n; i++) out[i] = v[i]!;
      return out;
    }
    default:
      throw new GraftError(`${label}: weight '${w.name}' has unsupported dtype ${stored}`);
  }
}
