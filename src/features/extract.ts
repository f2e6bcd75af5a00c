/**
 * Feature extraction: cut a model at a value (by default the input of its final classifier layer),
 * run batches through onnxruntime, and return one vector per example, consulting and filling an
 * on-disk activation cache so a second run over the same data computes nothing.
 */
import { readFileSync } from 'node:fs';
import type { Graph, Node } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { encodeOnnx } from '../formats/onnx.js';
import { getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { decodeImages } from '../data/image.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { cacheKey, sha256, type FeatureCache } from './cache.js';
import { GraftError } from '../util/errors.js';

/**
 * One batch of inputs: an NCHW float32 tensor (already prepared), or images as file paths or
 * encoded bytes (decoded with the model's recorded preprocessing, only when not cached).
 */
export type ExtractBatch = Tensor | (string | Uint8Array)[];

export interface ExtractProgress {
  /** Examples handled so far. */
  examples: number;
  /** Of those, how many came from the cache. */
  cached: number;
  /** How many were computed by the model. */
  computed: number;
  /** onnxruntime session runs so far. */
  runs: number;
  /** Unreadable images skipped (only with opts.onUnreadable). */
  skipped: number;
}

export interface ExtractOptions {
  /** Examples per onnxruntime run. */
  batchSize: number;
  cache?: FeatureCache;
  onProgress?: (p: ExtractProgress) => void;
  /** Image preprocessing (default: what the model records). */
  preprocess?: ImagePreprocess;
  runtime?: RuntimeOptions;
  /**
   * When given, an image that cannot be read or decoded is reported here and skipped (it has no row
   * in the result); without it, such an image is an error. `index` counts examples over all batches.
   */
  onUnreadable?: (f: { index: number; input: string | Uint8Array; error: string }) => void;
}

/** Ops between the classifier layer and the output that do not change what the feature is. */
const PASSIVE = new Set(['Softmax', 'LogSoftmax', 'Sigmoid', 'Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'Cast', 'Dropout', 'Transpose']);

/**
 * The value feeding a model's final classifier: walking back from the first output through
 * softmax/reshape-like ops (and a bias Add), the data input of the last Gemm, MatMul or 1×1 Conv.
 */
export function defaultFeatureNode(g: Graph): string {
  const out = g.outputs[0];
  if (!out) throw new GraftError(`${g.name}: the model has no outputs`);
  const prod = g.producers();
  // constant: an initializer, a Constant node, or computed from constants only (a reshaped weight)
  const memo = new Map<string, boolean>();
  const isConst = (v: string): boolean => {
    const known = memo.get(v);
    if (known !== undefined) return known;
    memo.set(v, false); // cycles (none in a valid graph) count as data
    const n = prod.get(v);
    const c = g.initializers.has(v) || (n !== undefined && (n.opType === 'Constant' || (n.inputs.some((i) => i) && n.inputs.filter((i) => i).every(isConst))));
    memo.set(v, c);
    return c;
  };
  let v = out.name;
  for (let steps = 0; steps < 32; steps++) {
    const n: Node | undefined = prod.get(v);
    if (!n) break;
    const data = n.inputs.filter((i) => i && !isConst(i));
    if (n.opType === 'Gemm' || n.opType === 'MatMul') {
      if (data.length !== 1) break;
      return data[0]!;
    }
    if (n.opType === 'Conv') {
      const w = g.initializers.get(n.inputs[1] ?? '');
      const k = n.attrs['kernel_shape'];
      const ks = k && k.type === 'ints' ? k.value : w ? w.dims.slice(2) : undefined;
      if (ks && ks.every((d) => d === 1) && data.length === 1) return data[0]!;
      break;
    }
    if ((PASSIVE.has(n.opType) || n.opType === 'Add') && data.length === 1) {
      v = data[0]!;
      continue;
    }
    break;
  }
  throw new GraftError(
    `${g.name}: cannot find the final classifier layer (Gemm, MatMul or 1×1 Conv before the output); name the feature node explicitly`,
  );
}

/** Average over everything after the channel axis: [N, C, ...] → N vectors of C (2-D values: rows as they are). */
function toVectors(t: Tensor): Float32Array[] {
  if (t.dtype !== 'float32') throw new GraftError(`feature value is ${t.dtype}, expected float32`);
  const data = t.data as Float32Array;
  const [n = 1, c = 1] = t.dims;
  const spatial = t.dims.length <= 2 ? 1 : t.dims.slice(2).reduce((a, b) => a * b, 1);
  const out: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    if (spatial === 1) {
      out.push(data.slice(i * c, (i + 1) * c));
      continue;
    }
    const v = new Float32Array(c);
    for (let k = 0; k < c; k++) {
      let s = 0;
      const base = (i * c + k) * spatial;
      for (let j = 0; j < spatial; j++) s += data[base + j]!;
      v[k] = s / spatial;
    }
    out.push(v);
  }
  return out;
}

function sliceRows(t: Tensor, idx: number[]): Tensor {
  if (idx.length === t.dims[0] && idx.every((r, i) => r === i)) return t; // the whole batch: no copy
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const src = t.data as Float32Array;
  const data = new Float32Array(idx.length * per);
  idx.forEach((r, i) => data.set(src.subarray(r * per, (r + 1) * per), i * per));
  return { dtype: 'float32', dims: [idx.length, ...t.dims.slice(1)], data };
}

async function* iterate(inputs: AsyncIterable<ExtractBatch> | Iterable<ExtractBatch>): AsyncGenerator<ExtractBatch> {
  for await (const b of inputs as AsyncIterable<ExtractBatch>) yield b;
}

/**
 * Features of every example, in input order (minus unreadable images when opts.onUnreadable is
 * given). `node` is the value to cut at (default: the input of the final classifier); a 4-D value is
 * global-average-pooled to one vector per example.
 */
export async function extractFeatures(
  model: Graph,
  node: string | undefined,
  inputs: AsyncIterable<ExtractBatch> | Iterable<ExtractBatch>,
  opts: ExtractOptions,
): Promise<Float32Array[]> {
  if (!(opts.batchSize >= 1)) throw new GraftError(`batch size must be at least 1, got ${opts.batchSize}`);
  const value = node ?? defaultFeatureNode(model);
  const cut = model.cutBefore([value]);
  const dataInputs = cut.dataInputs();
  if (dataInputs.length !== 1) throw new GraftError(`${model.name}: feature extraction needs a model with one data input, this one has ${dataInputs.length}`);
  const inputName = dataInputs[0]!.name;
  const pre = opts.preprocess ?? getPreprocess(model);
  const preJson = JSON.stringify(pre ?? null);
  const modelHash = opts.cache ? sha256(encodeOnnx(cut)) : '';
  let session: Session | undefined;
  const progress: ExtractProgress = { examples: 0, cached: 0, computed: 0, runs: 0, skipped: 0 };
  const results: Float32Array[] = [];

  try {
    for await (const batch of iterate(inputs)) {
      const isTensor = !Array.isArray(batch);
      const n = isTensor ? (batch.dims[0] ?? 0) : batch.length;
      if (isTensor && batch.dtype !== 'float32') throw new GraftError(`input batches must be float32 tensors, got ${batch.dtype}`);
      if (!isTensor && !pre) throw new GraftError(`${model.name}: images need preprocessing, and the model records none; pass opts.preprocess`);
      const out: (Float32Array | undefined)[] = new Array(n).fill(undefined);
      const bad = new Set<number>();
      const unreadable = (i: number, error: string) => {
        if (!opts.onUnreadable) throw new GraftError(error);
        bad.add(i);
        opts.onUnreadable({ index: progress.examples + i, input: (batch as (string | Uint8Array)[])[i]!, error });
      };
      let keys: string[] = [];
      if (opts.cache) {
        const per = isTensor ? batch.dims.slice(1).reduce((a, b) => a * b, 1) : 0;
        keys = Array.from({ length: n }, (_, i) => {
          let bytes: Uint8Array;
          if (isTensor) {
            const d = batch.data as Float32Array;
            bytes = new Uint8Array(d.buffer, d.byteOffset + i * per * 4, per * 4);
          } else {
            const x = batch[i]!;
            try {
              bytes = typeof x === 'string' ? readFileSync(x) : x;
            } catch (e) {
              unreadable(i, `${x}: cannot read the file: ${(e as Error).message}`);
              return '';
            }
          }
          return cacheKey({ model: modelHash, node: value, preprocess: isTensor ? `tensor:${JSON.stringify(batch.dims.slice(1))}` : preJson, input: bytes });
        });
        const hits = opts.cache.getMany(keys.map((k) => k || 'unreadable'));
        hits.forEach((h, i) => (out[i] = bad.has(i) ? undefined : h));
      }
      const missing = out.flatMap((v, i) => (v || bad.has(i) ? [] : [i]));
      progress.cached += n - missing.length - bad.size;
      for (let s = 0; s < missing.length; s += opts.batchSize) {
        let rows = missing.slice(s, s + opts.batchSize);
        let feed: Tensor;
        if (isTensor) feed = sliceRows(batch, rows);
        else {
          const d = await decodeImages(rows.map((r) => batch[r]!), pre!);
          for (const f of d.failed) unreadable(rows[f.index]!, f.error);
          rows = d.ok.map((k) => rows[k]!);
          feed = d.tensor;
          if (rows.length === 0) continue;
        }
        session ??= await Session.fromGraph(cut, opts.runtime, `${model.name} (cut at ${value})`);
        const res = await session.run({ [inputName]: feed }, [value]);
        progress.runs++;
        const vecs = toVectors(res[value]!);
        if (vecs.length !== rows.length) throw new GraftError(`${model.name}: the model returned ${vecs.length} features for ${rows.length} inputs`);
        rows.forEach((r, i) => (out[r] = vecs[i]));
        if (opts.cache) opts.cache.putMany(rows.map((r, i) => ({ key: keys[r]!, vector: vecs[i]! })));
        progress.computed += rows.length;
      }
      out.forEach((v, i) => { if (!bad.has(i)) results.push(v!); });
      progress.examples += n;
      progress.skipped += bad.size;
      opts.onProgress?.({ ...progress });
    }
  } finally {
    await session?.release();
  }
  return results;
}
