/**
 * Feature extraction: cut a model at a value (by default the input of its final classifier layer),
 * run batches through onnxruntime, and return one vector per example, consulting and filling an
 * on-disk activation cache so a second run over the same data computes nothing. Image decoding
 * runs ahead of onnxruntime in a bounded pipeline (src/data/pipeline.ts).
 */
import { readFileSync } from 'node:fs';
import type { Graph, Node } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { encodeOnnx } from '../formats/onnx.js';
import { getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { decodeImages } from '../data/image.js';
import { mapAhead } from '../data/pipeline.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { cacheKey, fromHalf, sha256, toHalf, type FeatureCache } from './cache.js';
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
  /**
   * onnxruntime runs whose images are decoded ahead of the one running (default 2; 0: decode each
   * only when it is needed). Decoding happens on libuv's threads (sharp), beside onnxruntime's.
   */
  prefetch?: number;
  /**
   * The cut model, its hash and its onnxruntime session made once (prepareExtraction) and used by
   * many calls (a worker's shards); `model` and `node` must be those it was prepared from. The
   * caller releases it.
   */
  prepared?: PreparedExtraction;
  /**
   * Cache keys already known (e.g. computed by the jobs that filled the cache), by input path: an
   * image whose key is here is not read to compute it. Only with opts.cache.
   */
  knownKeys?: ReadonlyMap<string, string>;
  /** Called once per input batch, in order, with its examples' cache keys ('' where unreadable); only with opts.cache. */
  onKeys?: (keys: string[]) => void;
}

/** What extractFeatures derives from (model, node) before it runs: reusable across calls. */
export interface PreparedExtraction {
  value: string;
  cut: Graph;
  inputName: string;
  /** sha256 of the cut model (part of every cache key). */
  modelHash: string;
  /** The session, made on first use. */
  session(): Promise<Session>;
  release(): Promise<void>;
}

/** Cut `model` at `node` (default: the input of its final classifier) once, for many extractFeatures calls. */
export function prepareExtraction(
  model: Graph,
  node: string | undefined,
  runtime?: RuntimeOptions,
): PreparedExtraction {
  const value = node ?? defaultFeatureNode(model);
  const cut = model.cutBefore([value]);
  const dataInputs = cut.dataInputs();
  if (dataInputs.length !== 1)
    throw new GraftError(
      `${model.name}: feature extraction needs a model with one data input, this one has ${dataInputs.length}`,
    );
  let s: Promise<Session> | undefined;
  let hash: string | undefined;
  return {
    value,
    cut,
    inputName: dataInputs[0]!.name,
    get modelHash() {
      if (hash === undefined) hash = sha256(encodeOnnx(cut));
      return hash;
    },
    session: () => (s ??= Session.fromGraph(cut, runtime, `${model.name} (cut at ${value})`)),
    release: async () => {
      const p = s;
      s = undefined;
      await (await p?.catch(() => undefined))?.release();
    },
  };
}

/** Ops between the classifier layer and the output that do not change what the feature is. */
const PASSIVE = new Set([
  'Softmax',
  'LogSoftmax',
  'Sigmoid',
  'Reshape',
  'Squeeze',
  'Unsqueeze',
  'Flatten',
  'Identity',
  'Cast',
  'Dropout',
  'Transpose',
]);

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
    const c =
      g.initializers.has(v) ||
      (n !== undefined &&
        (n.opType === 'Constant' || (n.inputs.some((i) => i) && n.inputs.filter((i) => i).every(isConst))));
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

/** One input batch on its way through the pipeline. */
interface BatchState {
  batch: ExtractBatch;
  isTensor: boolean;
  n: number;
  out: (Float32Array | undefined)[];
  /** Rows skipped as unreadable (reported, in order, by the consumer). */
  bad: Set<number>;
  keys: string[];
  /** Rows whose file could not be read for the cache key. */
  hashErrors: { row: number; error: string }[];
  /** Cache misses whose key an earlier batch of this run computes: read from the cache when this batch's turn comes. */
  deferred: number[];
  /** Rows sent to the model (decoded or not). */
  attempted: number;
}

/** A run's worth of rows of one batch (rows = [] only to close a batch with nothing to compute). */
interface Work {
  state: BatchState;
  rows: number[];
  first: boolean;
  last: boolean;
}

/** Work with its input prepared: the rows that decoded, as one tensor, and those that did not. */
interface Prepared {
  work: Work;
  feed?: Tensor;
  rows: number[];
  failed: { row: number; error: string }[];
}

/**
 * Features of every example, in input order (minus unreadable images when opts.onUnreadable is
 * given). `node` is the value to cut at (default: the input of the final classifier); a 4-D value is
 * global-average-pooled to one vector per example. Images are decoded (sharp, on libuv's threads)
 * up to opts.prefetch runs ahead of the one onnxruntime is running; results, their order, progress
 * and unreadable-image reports are those of decoding each batch only when it is run.
 */
export async function extractFeatures(
  model: Graph,
  node: string | undefined,
  inputs: AsyncIterable<ExtractBatch> | Iterable<ExtractBatch>,
  opts: ExtractOptions,
): Promise<Float32Array[]> {
  if (!(opts.batchSize >= 1)) throw new GraftError(`batch size must be at least 1, got ${opts.batchSize}`);
  const ahead = opts.prefetch ?? 2;
  if (!(Number.isInteger(ahead) && ahead >= 0))
    throw new GraftError(`prefetch must be an integer ≥ 0, got ${opts.prefetch}`);
  const prep = opts.prepared ?? prepareExtraction(model, node, opts.runtime);
  if (node !== undefined && node !== prep.value)
    throw new GraftError(`extractFeatures: prepared for ${prep.value}, asked for ${node}`);
  const { value, inputName } = prep;
  const pre = opts.preprocess ?? getPreprocess(model);
  const preJson = JSON.stringify(pre ?? null);
  const modelHash = opts.cache ? prep.modelHash : '';
  const cache = opts.cache;
  const known = opts.knownKeys;
  let session: Session | undefined;
  const progress: ExtractProgress = { examples: 0, cached: 0, computed: 0, runs: 0, skipped: 0 };
  const results: Float32Array[] = [];
  /** Keys some batch of this run computes (a later batch with the same key reads it from the cache, as a plain loop would). */
  const scheduled = new Set<string>();

  // producer side (runs ahead): cache keys and lookups, then the rows to compute in runs of batchSize
  async function* plan(): AsyncGenerator<Work> {
    for await (const batch of iterate(inputs)) {
      const isTensor = !Array.isArray(batch);
      const n = isTensor ? (batch.dims[0] ?? 0) : batch.length;
      if (isTensor && batch.dtype !== 'float32')
        throw new GraftError(`input batches must be float32 tensors, got ${batch.dtype}`);
      if (!isTensor && !pre)
        throw new GraftError(
          `${model.name}: images need preprocessing, and the model records none; pass opts.preprocess`,
        );
      const state: BatchState = {
        batch,
        isTensor,
        n,
        out: new Array(n).fill(undefined),
        bad: new Set(),
        keys: [],
        hashErrors: [],
        deferred: [],
        attempted: 0,
      };
      let missing: number[];
      if (cache) {
        const per = isTensor ? batch.dims.slice(1).reduce((a, b) => a * b, 1) : 0;
        const hashBad = new Set<number>();
        state.keys = Array.from({ length: n }, (_, i) => {
          let bytes: Uint8Array;
          if (isTensor) {
            const d = batch.data as Float32Array;
            bytes = new Uint8Array(d.buffer, d.byteOffset + i * per * 4, per * 4);
          } else {
            const x = batch[i]!;
            const k = typeof x === 'string' ? known?.get(x) : undefined;
            if (k) return k;
            try {
              bytes = typeof x === 'string' ? readFileSync(x) : x;
            } catch (e) {
              state.hashErrors.push({ row: i, error: `${x}: cannot read the file: ${(e as Error).message}` });
              hashBad.add(i);
              return '';
            }
          }
          return cacheKey({
            model: modelHash,
            node: value,
            preprocess: isTensor ? `tensor:${JSON.stringify(batch.dims.slice(1))}` : preJson,
            input: bytes,
          });
        });
        opts.onKeys?.(state.keys);
        const hits = cache.getMany(state.keys.map((k) => k || 'unreadable'));
        missing = [];
        hits.forEach((h, i) => {
          if (hashBad.has(i)) return;
          if (h) state.out[i] = h;
          else if (scheduled.has(state.keys[i]!)) state.deferred.push(i);
          else missing.push(i);
        });
        for (const i of missing) scheduled.add(state.keys[i]!);
      } else missing = Array.from({ length: n }, (_, i) => i);
      if (missing.length === 0) yield { state, rows: [], first: true, last: true };
      for (let s = 0; s < missing.length; s += opts.batchSize)
        yield {
          state,
          rows: missing.slice(s, s + opts.batchSize),
          first: s === 0,
          last: s + opts.batchSize >= missing.length,
        };
    }
  }

  // the step that runs ahead: decode (or slice) the rows of one run
  const prepare = async (work: Work): Promise<Prepared> => {
    const { state, rows } = work;
    if (rows.length === 0) return { work, rows, failed: [] };
    if (state.isTensor) return { work, feed: sliceRows(state.batch as Tensor, rows), rows, failed: [] };
    const d = await decodeImages(
      rows.map((r) => (state.batch as (string | Uint8Array)[])[r]!),
      pre!,
    );
    return {
      work,
      feed: d.tensor,
      rows: d.ok.map((k) => rows[k]!),
      failed: d.failed.map((f) => ({ row: rows[f.index]!, error: f.error })),
    };
  };

  // consumer side (in order): unreadable reports, onnxruntime runs, cache writes, results
  const unreadable = (s: BatchState, i: number, error: string) => {
    if (!opts.onUnreadable) throw new GraftError(error);
    s.bad.add(i);
    opts.onUnreadable({ index: progress.examples + i, input: (s.batch as (string | Uint8Array)[])[i]!, error });
  };
  const compute = async (p: Prepared) => {
    const s = p.work.state;
    s.attempted += p.work.rows.length;
    for (const f of p.failed) unreadable(s, f.row, f.error);
    if (p.rows.length === 0 || !p.feed) return;
    session ??= await prep.session();
    const res = await session.run({ [inputName]: p.feed }, [value]);
    progress.runs++;
    // with a cache, return what the cache stores (fp16): a run that computes and one that reads agree bit for bit
    const vecs = cache ? toVectors(res[value]!).map((v) => fromHalf(toHalf(v))) : toVectors(res[value]!);
    if (vecs.length !== p.rows.length)
      throw new GraftError(`${model.name}: the model returned ${vecs.length} features for ${p.rows.length} inputs`);
    p.rows.forEach((r, i) => (s.out[r] = vecs[i]));
    if (cache) cache.putMany(p.rows.map((r, i) => ({ key: s.keys[r]!, vector: vecs[i]! })));
    progress.computed += p.rows.length;
  };

  try {
    for await (const p of mapAhead(plan(), prepare, ahead)) {
      const s = p.work.state;
      if (p.work.first) {
        for (const h of s.hashErrors) unreadable(s, h.row, h.error);
        if (s.deferred.length) {
          // earlier batches have written these by now; one that failed to decode there is tried again here
          const hits = cache!.getMany(s.deferred.map((r) => s.keys[r]!));
          const again = s.deferred.filter((r, j) => !(s.out[r] = hits[j]));
          for (let k = 0; k < again.length; k += opts.batchSize)
            await compute(
              await prepare({ state: s, rows: again.slice(k, k + opts.batchSize), first: false, last: false }),
            );
        }
      }
      await compute(p);
      if (p.work.last) {
        s.out.forEach((v, i) => {
          if (!s.bad.has(i)) results.push(v!);
        });
        progress.cached += s.n - s.attempted - s.hashErrors.length;
        progress.examples += s.n;
        progress.skipped += s.bad.size;
        opts.onProgress?.({ ...progress });
      }
    }
  } finally {
    if (!opts.prepared) await prep.release();
  }
  return results;
}
