/**
 * Any model Graft reads → one ONNX file, with the image preprocessing and class names it needs
 * recorded in its metadata. The file is written only once the model has been built in full and
 * onnxruntime has loaded it, and then atomically: a failed conversion leaves nothing behind.
 */
import { extname } from 'node:path';
import type { Graph, ValueInfo } from '../graph/graph.js';
import { numel } from '../graph/tensor.js';
import { loadModel } from './load.js';
import { readLabels } from './labels.js';
import { encodeOnnx, atomicWrite } from './onnx.js';
import { getLabels, getPreprocess, setLabels, setPreprocess, type ImagePreprocess } from './preprocess.js';
import { Session } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';

export interface PreprocessOverrides {
  mean?: number[];
  std?: number[];
  width?: number;
  height?: number;
  channelOrder?: 'RGB' | 'BGR';
  resize?: 'stretch' | 'center-crop';
}

export interface ConvertOptions extends PreprocessOverrides {
  /** A labels file: one class name per line. */
  labels?: string;
  /** Load the result in onnxruntime before writing (default true). */
  verify?: boolean;
}

export interface ConvertReport {
  input: string;
  output: string;
  nodes: number;
  ops: Record<string, number>;
  parameters: number;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  preprocess?: ImagePreprocess;
  labels?: number;
  bytes: number;
}

/** The image size and channels a model's first input implies, when it is a fixed NCHW image. */
function imageInput(g: Graph): { channels: 1 | 3; height: number; width: number } | undefined {
  const v = g.dataInputs()[0];
  const s = v?.shape;
  if (!s || s.length !== 4) return undefined;
  const [, c, h, w] = s;
  if ((c !== 1 && c !== 3) || typeof h !== 'number' || typeof w !== 'number') return undefined;
  return { channels: c, height: h, width: w };
}

/** Apply preprocessing flags over what the model records (the result's source is 'flag'). */
export function applyPreprocess(g: Graph, o: PreprocessOverrides): ImagePreprocess | undefined {
  const given = o.mean || o.std || o.width || o.height || o.channelOrder || o.resize;
  const base = getPreprocess(g);
  if (!given) return base;
  const img = imageInput(g);
  const channels = base?.channels ?? img?.channels ?? 3;
  const width = o.width ?? base?.width ?? img?.width;
  const height = o.height ?? base?.height ?? img?.height;
  if (!width || !height) throw new GraftError("the model's input size is not fixed: give --size WxH");
  if (img && (img.width !== width || img.height !== height))
    throw new GraftError(`--size ${width}x${height} does not match the model's input, ${img.width}x${img.height}`);
  const perChannel = (v: number[] | undefined, dflt: number[], flag: string): number[] => {
    if (!v) return dflt;
    if (v.length === 1) return new Array(channels).fill(v[0]);
    if (v.length !== channels)
      throw new GraftError(`${flag} has ${v.length} values; the model takes ${channels} channel(s)`);
    return v;
  };
  const std = perChannel(o.std, base?.std ?? new Array(channels).fill(1), '--std');
  if (std.some((s) => !(Math.abs(s) > 0))) throw new GraftError('--std values must be non-zero');
  const p: ImagePreprocess = {
    layout: 'NCHW',
    width,
    height,
    channels,
    channelOrder: channels === 1 ? 'GRAY' : (o.channelOrder ?? (base?.channelOrder === 'BGR' ? 'BGR' : 'RGB')),
    mean: perChannel(o.mean, base?.mean ?? new Array(channels).fill(0), '--mean'),
    std,
    resize: o.resize ?? base?.resize ?? 'stretch',
    source: 'flag',
  };
  setPreprocess(g, p);
  return p;
}

/** Attach class names from a labels file, checking that they match the model's classes. */
export function applyLabels(g: Graph, file: string): string[] {
  const labels = readLabels(file);
  const last = g.outputs[0]?.shape?.at(-1);
  if (typeof last === 'number' && last !== labels.length)
    throw new GraftError(
      `${file} has ${labels.length} labels, but the model's output '${g.outputs[0]!.name}' has ${last} classes`,
    );
  setLabels(g, labels);
  return labels;
}

export async function convertModel(input: string, output: string, o: ConvertOptions = {}): Promise<ConvertReport> {
  if (extname(output).toLowerCase() !== '.onnx')
    throw new GraftError(`the output must be an .onnx file, got ${output}`);
  const g = loadModel(input);
  if (o.labels) applyLabels(g, o.labels);
  const preprocess = applyPreprocess(g, o);
  const bytes = encodeOnnx(g);
  if (o.verify ?? true) {
    const s = await Session.fromBytes(bytes, {}, `${input} (converted)`);
    await s.release();
  }
  atomicWrite(output, bytes);
  const ops: Record<string, number> = {};
  for (const [k, v] of [...g.opCounts()].sort((a, b) => b[1] - a[1])) ops[k] = v;
  const params = [...g.initializers.values()].reduce((s, t) => s + (t.dtype === 'float32' ? numel(t.dims) : 0), 0);
  return {
    input,
    output,
    nodes: g.nodes.length,
    ops,
    parameters: params,
    inputs: g.dataInputs(),
    outputs: g.outputs,
    ...(preprocess ? { preprocess } : {}),
    ...(getLabels(g) ? { labels: getLabels(g)!.length } : {}),
    bytes: bytes.byteLength,
  };
}
