/**
 * onnxruntime-node, wrapped: sessions built from an in-memory Graph, typed feeds, thread settings,
 * the execution provider (`device`: cpu, cuda, … or auto, checked once per process), and errors
 * that name the input at fault, or the missing library, instead of a native message.
 */
import * as ort from 'onnxruntime-node';
import type { Graph } from '../graph/graph.js';
import { resolveDevice } from './device.js';
import { encodeOnnx } from '../formats/onnx.js';
import type { Tensor, TypedArray, DType } from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';

export interface RuntimeOptions {
  /** Threads for one operator (default: GRAFT_THREADS, else onnxruntime's own choice). */
  threads?: number;
  /** onnxruntime graph optimization level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Where to run: 'cpu', 'cuda', 'tensorrt', 'webgpu' (those onnxruntime-node lists on this
   * platform), or 'auto' (CUDA when it starts, else the CPU with one warning). Default: GRAFT_DEVICE,
   * else 'cpu'. A device that cannot start is a GraftError naming the missing library.
   */
  device?: string;
  /** Execution providers exactly as onnxruntime takes them (overrides `device`; not checked first). */
  providers?: string[];
  /** onnxruntime session config entries, e.g. { 'session.set_denormal_as_zero': '1' }. */
  config?: Record<string, string>;
}

/** 'a.b.c': v → { a: { 'b.c': v } }: onnxruntime-node joins `extra`'s nesting back into config keys. */
function configExtra(config: Record<string, string>): Record<string, Record<string, string>> {
  const extra: Record<string, Record<string, string>> = {};
  for (const [k, v] of Object.entries(config)) {
    const dot = k.indexOf('.');
    if (dot < 0) throw new GraftError(`onnxruntime config key '${k}' has no section (e.g. 'session.${k}')`);
    (extra[k.slice(0, dot)] ??= {})[k.slice(dot + 1)] = v;
  }
  return extra;
}

export function defaultThreads(): number | undefined {
  const t = process.env['GRAFT_THREADS'];
  if (!t) return undefined;
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1) throw new GraftError(`GRAFT_THREADS must be a positive integer, got '${t}'`);
  return n;
}

/**
 * onnxruntime session options. `providers` are the execution providers to use (default: opts.providers,
 * else the CPU); use resolvedSessionOptions to honour opts.device / GRAFT_DEVICE.
 */
export function sessionOptions(opts: RuntimeOptions = {}, providers?: string[]): ort.InferenceSession.SessionOptions {
  const threads = opts.threads ?? defaultThreads();
  return {
    executionProviders: opts.providers ?? providers ?? ['cpu'],
    graphOptimizationLevel: opts.optimization ?? 'all',
    ...(threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {}),
    logSeverityLevel: 3,
    ...(opts.config ? { extra: configExtra(opts.config) } : {}),
  };
}

/** sessionOptions with the execution providers of opts.device (else GRAFT_DEVICE), started and checked once per process. */
export async function resolvedSessionOptions(opts: RuntimeOptions = {}): Promise<ort.InferenceSession.SessionOptions> {
  if (opts.providers) return sessionOptions(opts);
  return sessionOptions(opts, (await resolveDevice(opts.device)).providers);
}

export type Feeds = Record<string, Tensor>;

export class Session {
  /** Inputs that have a default value (initializers also listed as inputs, as in IR version 3 files). */
  private optional = new Set<string>();

  private constructor(
    readonly ort: ort.InferenceSession,
    readonly label: string,
  ) {}

  static async fromGraph(g: Graph, opts: RuntimeOptions = {}, label = g.name): Promise<Session> {
    const s = await Session.fromBytes(encodeOnnx(g), opts, label);
    s.optional = new Set(g.initializers.keys());
    return s;
  }

  static async fromBytes(bytes: Uint8Array, opts: RuntimeOptions = {}, label = 'model'): Promise<Session> {
    const options = await resolvedSessionOptions(opts);
    try {
      return new Session(await ort.InferenceSession.create(bytes, options), label);
    } catch (e) {
      throw new GraftError(`onnxruntime could not load ${label}: ${cleanOrtMessage(e)}`);
    }
  }

  get inputNames(): readonly string[] {
    return this.ort.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.ort.outputNames;
  }

  async run(feeds: Feeds, outputs?: string[]): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.ort.inputNames) {
      const t = feeds[name];
      if (!t && this.optional.has(name)) continue;
      if (!t) throw new GraftError(`${this.label}: missing input '${name}'`);
      ortFeeds[name] = toOrt(t);
    }
    let res: ort.InferenceSession.ReturnType;
    try {
      res = outputs ? await this.ort.run(ortFeeds, outputs) : await this.ort.run(ortFeeds);
    } catch (e) {
      throw new GraftError(`${this.label}: onnxruntime failed: ${cleanOrtMessage(e)}`);
    }
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(res)) out[k] = fromOrt(v);
    return out;
  }

  async release(): Promise<void> {
    await this.ort.release();
  }
}

export function cleanOrtMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*/, '').trim();
}

const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  float32: 'float32',
  float64: 'float64',
  float16: 'float16',
  int8: 'int8',
  uint8: 'uint8',
  int16: 'int16',
  uint16: 'uint16',
  int32: 'int32',
  uint32: 'uint32',
  int64: 'int64',
  uint64: 'uint64',
  bool: 'bool',
  string: 'string',
};

export function toOrt(t: Tensor): ort.Tensor {
  const type = ORT_TYPE[t.dtype];
  if (!type) throw new GraftError(`onnxruntime-node cannot take ${t.dtype} tensors as inputs`);
  return new ort.Tensor(type, t.data as never, t.dims);
}

export function fromOrt(v: ort.Tensor): Tensor {
  const dtype = (v.type === 'bool' ? 'bool' : v.type) as DType;
  let data = v.data as TypedArray | string[];
  if (dtype === 'float16' && !(data instanceof Uint16Array))
    data = new Uint16Array((data as unknown as { buffer: ArrayBuffer }).buffer);
  return { dtype, dims: [...v.dims], data };
}
