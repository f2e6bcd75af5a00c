/**
 * TF.js layers models (a Keras topology in model.json's `modelTopology`, weights in binary shards listed by
 * `weightsManifest`) → Graft's ONNX graph, NCHW.
 *
 * Keras computes channels_last; Graft's graphs are channels-first. The import converts once, at the
 * edges, instead of wrapping every node in transposes: the ONNX input is declared [batch, C, H, W];
 * every tensor of rank ≥ 3 is held channels-first (Keras axis r−1 → ONNX axis 1, axis k → k+1), tensors
 * of rank ≤ 2 as they are; weights are permuted when read (Conv2D HWIO → OIHW, DepthwiseConv2D
 * HW·C·M → (C·M)·1·H·W); axis attributes (Concatenate, Softmax, BatchNormalization) are remapped. Only
 * where Keras looks at the memory order of an image tensor (Flatten, Reshape, Permute) does a Transpose
 * appear, and not even there when the move is a pure relabelling of size-1 axes.
 *
 * The file (model.json, weight shards, nsfwjs's .min.js bundles) is read by ./tfjs-reader.ts; layout,
 * padding, kernel layouts and naming come from the importer core (./importer/core.ts); each Keras layer
 * class is one entry of TFJS_LAYERS, each activation one entry of TFJS_ACTIVATIONS. Graph models
 * (format "graph-model") go to ./tfjs-graph.ts.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, extname } from 'node:path';
import type { Graph, Dim } from '../graph/graph.js';
import { A, type Builder } from '../graph/builder.js';
import { type Tensor, numel, permuteData } from '../graph/tensor.js';
import {
  Emitter,
  Handlers,
  channelsFirst,
  invertPerm as invert,
  keepsMemoryOrder,
  toSourceOrder,
  windowPads,
  hwioToOihw,
  depthwiseToOihw,
} from './importer/core.js';
import { setLabels, setPreprocess, type ImagePreprocess } from './preprocess.js';
import { GraftError } from '../util/errors.js';
import { insideFolder } from '../util/paths.js';
import { nsfwjsLabels, nsfwjsModelDir, type NsfwjsModel } from './tfjs-nsfwjs.js';
import { importTfjsGraphModel } from './tfjs-graph.js';
import { decodeTfjsWeights, openSource, type Json, type Source } from './tfjs-reader.js';

export { decodeTfjsWeights } from './tfjs-reader.js';

export interface TfjsReadOptions {
  /**
   * Image preprocessing, where the model file does not say (it rarely does): value = (pixel/255 − mean)/std.
   * Given here, it is recorded with source 'flag'; otherwise /255 (mean 0, std 1) is recorded as 'default'.
   */
  preprocess?: Partial<Pick<ImagePreprocess, 'mean' | 'std' | 'channelOrder' | 'resize'>>;
  /**
   * Class names: a list, or a text file with one per line (the first N lines are used, N = output size).
   * Default: a labels file found beside model.json (metadata.json's `labels`, class_names.txt, labels.txt,
   * classes.txt, synset.txt, *.names, imagenet.shortnames.list). `false`: none.
   */
  labels?: string[] | string | false;
  /** Graph name (default: the Keras model's name). */
  name?: string;
}

/* ------------------------------------------------------------------------------------------------ */
/* the graph                                                                                          */

/** A Keras tensor during import: its ONNX value and its Keras shape (batch first, null = unknown). Rank ≥ 3 is held channels-first. */
interface KVal {
  name: string;
  shape: (number | null)[];
}

interface LayerJson {
  class_name: string;
  name?: string;
  config: Json;
  inbound_nodes?: Json[];
}

const MODEL_CLASSES = new Set(['Model', 'Functional', 'Sequential']);
const IDENTITY_LAYERS = new Set([
  'Dropout',
  'SpatialDropout1D',
  'SpatialDropout2D',
  'SpatialDropout3D',
  'GaussianNoise',
  'GaussianDropout',
  'AlphaDropout',
  'ActivityRegularization',
]);

/** ONNX axis of Keras axis `axis` of a rank-`rank` tensor (held channels-first from rank 3). */
function onnxAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new GraftError(`axis ${axis} is out of range for a rank-${rank} tensor`);
  return channelsFirst(rank).indexOf(a);
}
/** Keras axis held at each ONNX axis. */
const cfOrder = channelsFirst;
const onnxDims = (s: (number | null)[]): (number | null)[] => cfOrder(s.length).map((k) => s[k]!);
/** Whether transposing a tensor of `dims` by `perm` leaves its memory order unchanged (only size-1 axes move). */
const permIsRelabel = keepsMemoryOrder;
const pair = (v: Json, n = 2): number[] =>
  v == null ? [] : Array.isArray(v) ? v.map(Number) : Array(n).fill(Number(v));

/** TF's padding rule (the importer core's), for Keras' padding names. */
function spatial(
  inp: (number | null)[],
  k: number[],
  s: number[],
  d: number[],
  padding: string,
  what: string,
): { pads: number[] | null; out: (number | null)[] } {
  if (padding !== 'same' && padding !== 'valid')
    throw new GraftError(`${what}: padding '${padding}' is not supported (same, valid)`);
  return windowPads(inp, k, s, d, padding, what);
}

class Importer extends Emitter {
  /** A number per layer object, for initializers made once per layer (shared layers reuse them). */
  private readonly layerIds = new Map<object, number>();
  readonly used = new Set<string>();
  /** Keras layers applied directly to each graph input (for preprocessing hints). */
  readonly firstLayers = new Map<string, LayerJson[]>();

  constructor(
    private readonly weights: Map<string, Tensor>,
    readonly label: string,
  ) {
    super();
  }

  err(layer: LayerJson, msg: string): GraftError {
    return new GraftError(`${this.label}: layer '${layerName(layer)}' (${layer.class_name}): ${msg}`);
  }

  /* ---- weights ---- */

  weight(layer: LayerJson, scope: string[], key: string, expectRank?: number): Tensor {
    const lname = layerName(layer);
    const tries = [[...scope, lname, key].join('/'), `${lname}/${key}`];
    let found = tries.find((t) => this.weights.has(t));
    if (!found) {
      const suffix = `/${lname}/${key}`;
      const hits = [...this.weights.keys()].filter((k) => k.endsWith(suffix));
      if (hits.length === 1) found = hits[0];
    }
    if (!found) throw this.err(layer, `weight '${lname}/${key}' is not in the weights manifest`);
    this.used.add(found);
    const t = this.weights.get(found)!;
    if (expectRank != null && t.dims.length !== expectRank)
      throw this.err(layer, `weight '${found}' has shape [${t.dims}], expected rank ${expectRank}`);
    return t;
  }

  /** An initializer made once per layer (shared layers reuse it). */
  init(layer: LayerJson, key: string, make: () => Tensor): string {
    let id = this.layerIds.get(layer);
    if (id == null) this.layerIds.set(layer, (id = this.layerIds.size));
    return this.cachedInitializer(`${id}|${key}`, `${layerName(layer)}/${key}`, make);
  }

  /* ---- models ---- */

  buildModel(layer: LayerJson, inputs: KVal[] | null, scope: string[]): KVal[] {
    const cfg = layer.config;
    if (layer.class_name === 'Sequential') return this.buildSequential(layer, cfg, inputs, scope);
    return this.buildFunctional(layer, cfg, inputs, scope);
  }

  private makeInput(name: string, batchShape: Json, dtype: Json, where: string): KVal {
    if (!Array.isArray(batchShape) || batchShape.length < 2)
      throw new GraftError(`${this.label}: ${where} has no input shape (batch_input_shape)`);
    if (dtype != null && typeof dtype === 'string' && dtype !== 'float32')
      throw new GraftError(`${this.label}: input '${name}' is ${dtype}; only float32 inputs are supported`);
    const shape: (number | null)[] = [
      null,
      ...batchShape.slice(1).map((d: Json) => (d == null || d < 0 ? null : Number(d))),
    ];
    const onnxName = this.b.name(name);
    // symbolic batch; unknown sizes get names too (height/width for images)
    const sym =
      shape.length === 4
        ? ['batch', 'channels', 'height', 'width']
        : shape.map((_, i) => (i === 0 ? 'batch' : `${onnxName}_d${i}`));
    const dims: Dim[] = onnxDims(shape).map((d, i) => (i === 0 ? 'batch' : (d ?? sym[i]!)));
    this.g.inputs.push({ name: onnxName, dtype: 'float32', shape: dims });
    return { name: onnxName, shape };
  }

  private buildSequential(model: LayerJson, cfg: Json, inputs: KVal[] | null, scope: string[]): KVal[] {
    const layers: LayerJson[] = Array.isArray(cfg) ? cfg : cfg?.layers;
    if (!Array.isArray(layers) || layers.length === 0)
      throw new GraftError(`${this.label}: Sequential model '${layerName(model)}' has no layers`);
    let cur: KVal;
    const first = layers[0]!;
    if (inputs) {
      if (inputs.length !== 1) throw this.err(model, `a Sequential model takes one input, got ${inputs.length}`);
      cur = inputs[0]!;
    } else if (first.class_name === 'InputLayer') {
      const c = first.config ?? {};
      cur = this.makeInput(
        c.name ?? layerName(first),
        c.batch_input_shape ?? c.batch_shape,
        c.dtype,
        `input layer '${layerName(first)}'`,
      );
    } else {
      const c = first.config ?? {};
      cur = this.makeInput(
        `${layerName(first)}_input`,
        declaredInputShape(first),
        c.dtype,
        `Sequential model '${layerName(model)}' (first layer '${layerName(first)}')`,
      );
    }
    const input = cur;
    for (const l of layers) {
      if (l.class_name === 'InputLayer') continue;
      if (cur === input && !inputs) this.noteFirst(input.name, l);
      const out = this.applyLayer(l, [cur], scope);
      if (out.length !== 1) throw this.err(l, `gives ${out.length} outputs inside a Sequential model`);
      cur = out[0]!;
    }
    return [cur];
  }

  private noteFirst(input: string, l: LayerJson) {
    let a = this.firstLayers.get(input);
    if (!a) this.firstLayers.set(input, (a = []));
    a.push(l);
  }

  private buildFunctional(model: LayerJson, cfg: Json, inputs: KVal[] | null, scope: string[]): KVal[] {
    const layers: LayerJson[] = cfg?.layers;
    if (!Array.isArray(layers)) throw new GraftError(`${this.label}: model '${layerName(model)}' has no layer list`);
    const byName = new Map(layers.map((l) => [layerName(l), l]));
    const vals = new Map<string, KVal[]>();
    const key = (name: string, node: number) => `${name}#${node}`;
    const inRefs = refList(cfg.input_layers);
    const outRefs = refList(cfg.output_layers);
    if (inputs && inputs.length !== inRefs.length)
      throw this.err(model, `takes ${inRefs.length} inputs, got ${inputs.length}`);
    const graphInputs = new Set<string>();
    inRefs.forEach((r, k) => {
      const l = byName.get(r[0]);
      if (!l)
        throw new GraftError(
          `${this.label}: model '${layerName(model)}' names input layer '${r[0]}', which it does not have`,
        );
      if (inputs) {
        vals.set(key(r[0], r[1]), [inputs[k]!]);
        return;
      }
      const c = l.config ?? {};
      const v = this.makeInput(c.name ?? r[0], c.batch_input_shape ?? c.batch_shape, c.dtype, `input layer '${r[0]}'`);
      graphInputs.add(v.name);
      vals.set(key(r[0], r[1]), [v]);
    });
    type Call = { layer: LayerJson; node: number; refs: [string, number, number][] };
    let pending: Call[] = [];
    for (const l of layers) {
      if (l.class_name === 'InputLayer') continue;
      // A nested model already holds a node of its own (input → output) when rebuilt, so Keras and tfjs
      // number its calls from 1 in references ("kept_nodes = 1" for networks when serializing).
      const first = MODEL_CLASSES.has(l.class_name) && ownsFirstNode(l) ? 1 : 0;
      (l.inbound_nodes ?? []).forEach((n, k) =>
        pending.push({ layer: l, node: k + first, refs: inboundRefs(n, this.label, l) }),
      );
    }
    while (pending.length) {
      const next: Call[] = [];
      for (const c of pending) {
        const ins = c.refs.map(([n, ni, ti]) => vals.get(key(n, ni))?.[ti]);
        if (ins.some((v) => !v)) {
          next.push(c);
          continue;
        }
        const kin = ins as KVal[];
        if (!inputs) for (const v of kin) if (graphInputs.has(v.name)) this.noteFirst(v.name, c.layer);
        vals.set(key(layerName(c.layer), c.node), this.applyLayer(c.layer, kin, scope));
      }
      if (next.length === pending.length) {
        const c = next[0]!;
        const miss = c.refs.find(([n, ni, ti]) => !vals.get(key(n, ni))?.[ti])!;
        throw this.err(c.layer, `its input '${miss[0]}' (node ${miss[1]}, tensor ${miss[2]}) is never computed`);
      }
      pending = next;
    }
    return outRefs.map(([n, ni, ti]) => {
      const v = vals.get(key(n, ni))?.[ti];
      if (!v) throw new GraftError(`${this.label}: model output '${n}' (node ${ni}, tensor ${ti}) is never computed`);
      return v;
    });
  }

  /* ---- layers ---- */

  applyLayer(layer: LayerJson, inputs: KVal[], scope: string[]): KVal[] {
    if (MODEL_CLASSES.has(layer.class_name)) return this.buildModel(layer, inputs, [...scope, layerName(layer)]);
    const mark = this.mark();
    const outs = this.layer(layer, inputs, scope);
    // Name each layer's output after the layer: readable graphs, and outputs named like Keras' layers.
    for (const v of outs) v.name = this.nameResult(mark, v.name, layerName(layer));
    return outs;
  }

  private layer(layer: LayerJson, inputs: KVal[], scope: string[]): KVal[] {
    const c = layer.config ?? {};
    const cls = layer.class_name;
    const lname = layerName(layer);
    const one = (): KVal => {
      if (inputs.length !== 1) throw this.err(layer, `expects one input, got ${inputs.length}`);
      return inputs[0]!;
    };
    const rank = (x: KVal, ...ok: number[]) => {
      if (!ok.includes(x.shape.length))
        throw this.err(
          layer,
          `expects a rank-${ok.join('/')} input (batch included), got shape [${x.shape.map((d) => d ?? '?')}]`,
        );
    };
    if (c.data_format === 'channels_first') throw this.err(layer, `data_format 'channels_first' is not supported`);
    const handler = TFJS_LAYERS.get(cls);
    if (!handler)
      throw new GraftError(`${this.label}: layer '${lname}' is a ${cls}, which the TF.js importer does not support`);
    return handler(this, { layer, c, cls, lname, inputs, scope, b: this.b, one, rank });
  }

  /** The ONNX value of `x` in Keras' own axis order (a Transpose unless only size-1 axes move). */
  toKerasOrder(layer: LayerJson, x: KVal): string {
    // the next Reshape/Flatten relabels the axes when only size-1 axes move
    return toSourceOrder(this.b, x.name, cfOrder(x.shape.length), x.shape, `${layerName(layer)}/Transpose`);
  }

  conv(
    layer: LayerJson,
    ins: string[],
    x: KVal,
    k: number[],
    s: number[],
    d: number[],
    padding: string,
    group: number,
    F: number,
    base: string,
  ): KVal {
    const { pads, out } = spatial(x.shape.slice(1, 3), k, s, d, padding, `${this.label}: layer '${layerName(layer)}'`);
    const attrs = {
      kernel_shape: A.is(k),
      strides: A.is(s),
      dilations: A.is(d),
      group: A.i(group),
      ...(pads ? { pads: A.is(pads) } : { auto_pad: A.s('SAME_UPPER') }),
    };
    return { name: this.b.op('Conv', ins, attrs, `${layerName(layer)}/${base}`), shape: [null, ...out, F] };
  }

  activation(layer: LayerJson, x: KVal, act: Json, required = false): KVal {
    const name = typeof act === 'string' ? act : (act?.class_name ?? act?.config?.name);
    const key = name == null ? 'linear' : String(name).toLowerCase();
    if (key === 'linear')
      return required
        ? { name: this.b.op('Identity', [x.name], {}, `${layerName(layer)}/${name}`), shape: [...x.shape] }
        : x;
    const emit = TFJS_ACTIVATIONS.get(key);
    if (!emit) throw this.err(layer, `activation '${name}' is not supported`);
    // softmax-like activations run over the channels: ONNX axis 1 of a channels-first tensor
    return {
      name: emit(this.b, x.name, `${layerName(layer)}/${name}`, x.shape.length >= 3 ? 1 : -1),
      shape: [...x.shape],
    };
  }
}

/** What a layer handler gets: the layer, its config, its inputs (Keras tensors) and helpers. */
interface LayerCall {
  layer: LayerJson;
  /** The layer's config (an empty object when it has none). */
  c: Json;
  cls: string;
  lname: string;
  inputs: KVal[];
  /** Names of the nested models the layer sits in (for weight names). */
  scope: string[];
  b: Builder;
  /** The single input (an error when there are several). */
  one: () => KVal;
  /** Check the rank of an input (batch included). */
  rank: (x: KVal, ...ok: number[]) => void;
}

type LayerHandler = (im: Importer, call: LayerCall) => KVal[];

/** The Keras layers Graft converts, by class name: one entry each. */
export const TFJS_LAYERS = new Handlers<LayerHandler>('TF.js layers')
  .register([...IDENTITY_LAYERS], (_, { one }) => [{ ...one() }])
  .register('Conv2D', (im, { layer, c, scope, one, rank }) => {
    const x = one();
    rank(x, 4);
    const K = im.weight(layer, scope, 'kernel', 4);
    const [kh, kw, cinG, F] = K.dims as [number, number, number, number];
    const groups = Number(c.groups ?? 1);
    if (x.shape[3] != null && x.shape[3] !== cinG * groups)
      throw im.err(layer, `kernel [${K.dims}] does not fit ${x.shape[3]} input channels`);
    const W = im.init(layer, 'kernel', () => ({ dtype: 'float32', ...hwioToOihw(K.data as Float32Array, K.dims) }));
    const ins = [x.name, W];
    if (c.use_bias !== false) ins.push(im.init(layer, 'bias', () => im.weight(layer, scope, 'bias', 1)));
    const y = im.conv(
      layer,
      ins,
      x,
      [kh, kw],
      pair(c.strides ?? 1),
      pair(c.dilation_rate ?? 1),
      c.padding ?? 'valid',
      groups,
      F,
      'Conv',
    );
    return [im.activation(layer, y, c.activation)];
  })
  .register('DepthwiseConv2D', (im, { layer, c, scope, one, rank }) => {
    const x = one();
    rank(x, 4);
    const K = im.weight(layer, scope, 'depthwise_kernel', 4);
    const [kh, kw, C, M] = K.dims as [number, number, number, number];
    if (x.shape[3] != null && x.shape[3] !== C)
      throw im.err(layer, `kernel [${K.dims}] does not fit ${x.shape[3]} input channels`);
    const W = im.init(layer, 'depthwise_kernel', () => depthwiseWeight(K));
    const ins = [x.name, W];
    if (c.use_bias !== false) ins.push(im.init(layer, 'bias', () => im.weight(layer, scope, 'bias', 1)));
    const y = im.conv(
      layer,
      ins,
      x,
      [kh, kw],
      pair(c.strides ?? 1),
      pair(c.dilation_rate ?? 1),
      c.padding ?? 'valid',
      C,
      C * M,
      'DepthwiseConv',
    );
    return [im.activation(layer, y, c.activation)];
  })
  .register('SeparableConv2D', (im, { layer, c, scope, one, rank }) => {
    const x = one();
    rank(x, 4);
    const D = im.weight(layer, scope, 'depthwise_kernel', 4);
    const P = im.weight(layer, scope, 'pointwise_kernel', 4);
    const [kh, kw, C, M] = D.dims as [number, number, number, number];
    const F = P.dims[3]!;
    if (P.dims[2] !== C * M)
      throw im.err(layer, `pointwise kernel [${P.dims}] does not fit depthwise kernel [${D.dims}]`);
    const dw = im.conv(
      layer,
      [x.name, im.init(layer, 'depthwise_kernel', () => depthwiseWeight(D))],
      x,
      [kh, kw],
      pair(c.strides ?? 1),
      pair(c.dilation_rate ?? 1),
      c.padding ?? 'valid',
      C,
      C * M,
      'DepthwiseConv',
    );
    const pw = im.init(layer, 'pointwise_kernel', () => ({
      dtype: 'float32',
      ...hwioToOihw(P.data as Float32Array, P.dims),
    }));
    const ins = [dw.name, pw];
    if (c.use_bias !== false) ins.push(im.init(layer, 'bias', () => im.weight(layer, scope, 'bias', 1)));
    const y = im.conv(layer, ins, dw, [1, 1], [1, 1], [1, 1], 'valid', 1, F, 'PointwiseConv');
    return [im.activation(layer, y, c.activation)];
  })
  .register('Dense', (im, { layer, c, lname, scope, b, one }) => {
    const x = one();
    if (x.shape.length < 2) throw im.err(layer, 'expects an input of rank ≥ 2');
    const K = im.weight(layer, scope, 'kernel', 2);
    const [nin, units] = K.dims as [number, number];
    const last = x.shape[x.shape.length - 1];
    if (last != null && last !== nin) throw im.err(layer, `kernel [${K.dims}] does not fit ${last} input features`);
    const bias = c.use_bias !== false ? im.init(layer, 'bias', () => im.weight(layer, scope, 'bias', 1)) : null;
    const shape = [...x.shape.slice(0, -1), units];
    if (x.shape.length === 2) {
      const W = im.init(layer, 'kernel', () => K);
      const y = bias
        ? b.op('Gemm', [x.name, W, bias], {}, `${lname}/Gemm`)
        : b.op('MatMul', [x.name, W], {}, `${lname}/MatMul`);
      return [im.activation(layer, { name: y, shape }, c.activation)];
    }
    // channels-first data: a Dense over the channel axis is a 1×…×1 convolution
    const r = x.shape.length;
    const W = im.init(layer, 'kernel', () => {
      const p = permuteData(K.data as Float32Array, K.dims, [1, 0]);
      return { dtype: 'float32', dims: [units, nin, ...Array(r - 2).fill(1)], data: p.data };
    });
    const y = b.op(
      'Conv',
      bias ? [x.name, W, bias] : [x.name, W],
      { kernel_shape: A.is(Array(r - 2).fill(1)) },
      `${lname}/Conv`,
    );
    return [im.activation(layer, { name: y, shape }, c.activation)];
  })
  .register('BatchNormalization', (im, { layer, c, lname, scope, b, one }) => {
    const x = one();
    const r = x.shape.length;
    const axes = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1];
    if (axes.length !== 1 || onnxAxis(Number(axes[0]), r) !== 1)
      throw im.err(
        layer,
        `normalizing over axis ${JSON.stringify(c.axis)} of a rank-${r} tensor is not supported (only the channel axis)`,
      );
    if (r < 2) throw im.err(layer, 'expects an input of rank ≥ 2');
    const mean = im.weight(layer, scope, 'moving_mean', 1);
    const C = mean.dims[0]!;
    const ones = (v: number): Tensor => ({ dtype: 'float32', dims: [C], data: new Float32Array(C).fill(v) });
    const gamma = im.init(layer, 'gamma', () => (c.scale !== false ? im.weight(layer, scope, 'gamma', 1) : ones(1)));
    const beta = im.init(layer, 'beta', () => (c.center !== false ? im.weight(layer, scope, 'beta', 1) : ones(0)));
    const m = im.init(layer, 'moving_mean', () => mean);
    const v = im.init(layer, 'moving_variance', () => im.weight(layer, scope, 'moving_variance', 1));
    const y = b.op(
      'BatchNormalization',
      [x.name, gamma, beta, m, v],
      { epsilon: A.f(Number(c.epsilon ?? 1e-3)) },
      `${lname}/BatchNormalization`,
    );
    return [{ name: y, shape: [...x.shape] }];
  })
  .register('Activation', (im, { layer, c, one }) => {
    const x = one();
    return [im.activation(layer, { ...x }, c.activation, true)];
  })
  .register('ReLU', (im, { layer, c, lname, b, one }) => {
    const x = one();
    const max = c.max_value == null ? null : Number(c.max_value);
    const slope = Number(c.negative_slope ?? 0);
    const thr = Number(c.threshold ?? 0);
    if (thr !== 0) throw im.err(layer, `threshold ${thr} is not supported`);
    let y: string;
    if (slope === 0)
      y =
        max == null
          ? b.op('Relu', [x.name], {}, `${lname}/Relu`)
          : b.op('Clip', [x.name, b.f32(0), b.f32(max)], {}, `${lname}/Clip`);
    else {
      y = b.op('LeakyRelu', [x.name], { alpha: A.f(slope) }, `${lname}/LeakyRelu`);
      if (max != null) y = b.op('Clip', [y, b.f32(-3.4028234663852886e38), b.f32(max)], {}, `${lname}/Clip`);
    }
    return [{ name: y, shape: [...x.shape] }];
  })
  .register('LeakyReLU', (_, { c, lname, b, one }) => {
    const x = one();
    const alpha = Number(c.alpha ?? c.negative_slope ?? 0.3);
    return [{ name: b.op('LeakyRelu', [x.name], { alpha: A.f(alpha) }, `${lname}/LeakyRelu`), shape: [...x.shape] }];
  })
  .register('ELU', (_, { c, lname, b, one }) => {
    const x = one();
    return [{ name: b.op('Elu', [x.name], { alpha: A.f(Number(c.alpha ?? 1)) }, `${lname}/Elu`), shape: [...x.shape] }];
  })
  .register('Softmax', (im, { layer, c, lname, b, one }) => {
    const x = one();
    const axes = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1];
    if (axes.length !== 1)
      throw im.err(layer, `softmax over several axes (${JSON.stringify(c.axis)}) is not supported`);
    return [
      {
        name: b.op('Softmax', [x.name], { axis: A.i(onnxAxis(Number(axes[0]), x.shape.length)) }, `${lname}/Softmax`),
        shape: [...x.shape],
      },
    ];
  })
  .register(
    ['Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum'],
    (im, { layer, lname, inputs, b, cls }) => {
      if (inputs.length < 2) throw im.err(layer, `expects at least two inputs, got ${inputs.length}`);
      const r = inputs[0]!.shape.length;
      if (inputs.some((v) => v.shape.length !== r))
        throw im.err(
          layer,
          `inputs of different ranks (${inputs.map((v) => v.shape.length).join(', ')}) are not supported`,
        );
      const shape = inputs[0]!.shape.map((_, i) => {
        const ds = inputs.map((v) => v.shape[i]);
        return ds.some((d) => d == null)
          ? (ds.find((d) => d != null && d !== 1) ?? null)
          : Math.max(...(ds as number[]));
      });
      const names = inputs.map((v) => v.name);
      let y: string;
      if (cls === 'Subtract') {
        if (names.length !== 2) throw im.err(layer, `expects two inputs, got ${names.length}`);
        y = b.op('Sub', names, {}, `${lname}/Sub`);
      } else if (cls === 'Add') y = b.op(names.length === 2 ? 'Add' : 'Sum', names, {}, `${lname}/Add`);
      else if (cls === 'Multiply') {
        y = names[0]!;
        for (const n of names.slice(1)) y = b.op('Mul', [y, n], {}, `${lname}/Mul`);
      } else y = b.op(cls === 'Average' ? 'Mean' : cls === 'Maximum' ? 'Max' : 'Min', names, {}, `${lname}/${cls}`);
      shape[0] = null;
      return [{ name: y, shape }];
    },
  )
  .register('Concatenate', (im, { layer, c, lname, inputs, b }) => {
    if (inputs.length < 1) throw im.err(layer, 'has no inputs');
    const r = inputs[0]!.shape.length;
    if (inputs.some((v) => v.shape.length !== r))
      throw im.err(layer, 'inputs of different ranks cannot be concatenated');
    const ax = (Number(c.axis ?? -1) + r) % r;
    const shape = inputs[0]!.shape.map((d, i) =>
      i === ax ? (inputs.some((v) => v.shape[i] == null) ? null : inputs.reduce((s, v) => s + v.shape[i]!, 0)) : d,
    );
    if (inputs.length === 1) return [{ name: inputs[0]!.name, shape }];
    return [
      {
        name: b.op(
          'Concat',
          inputs.map((v) => v.name),
          { axis: A.i(onnxAxis(ax, r)) },
          `${lname}/Concat`,
        ),
        shape,
      },
    ];
  })
  .register(
    ['MaxPooling2D', 'AveragePooling2D', 'MaxPooling1D', 'AveragePooling1D', 'MaxPool2D', 'AveragePool2D'],
    (im, { c, lname, b, one, rank, cls }) => {
      const x = one();
      const nsp = cls.includes('1D') ? 1 : 2;
      rank(x, nsp + 2);
      const k = pair(c.pool_size ?? 2, nsp);
      const s = c.strides == null ? k : pair(c.strides, nsp);
      const { pads, out } = spatial(
        x.shape.slice(1, 1 + nsp),
        k,
        s,
        k.map(() => 1),
        c.padding ?? 'valid',
        `${im.label}: layer '${lname}'`,
      );
      const max = cls.startsWith('Max');
      if (
        pads &&
        out.every((o) => o === 1) &&
        pads.every((p) => p === 0) &&
        x.shape.slice(1, 1 + nsp).every((n, i) => n === k[i])
      ) {
        // one window over the whole map (MobileNet's and Inception's last pool): a spatial mean/max
        const y = b.reduce(
          max ? 'ReduceMax' : 'ReduceMean',
          x.name,
          [...Array(nsp).keys()].map((i) => i + 2),
          true,
        );
        return [{ name: y, shape: [null, ...out, x.shape[x.shape.length - 1]!] }];
      }
      const attrs = {
        kernel_shape: A.is(k),
        strides: A.is(s),
        ...(pads ? { pads: A.is(pads) } : { auto_pad: A.s('SAME_UPPER') }),
      };
      // TF averages over the window's taps inside the input: count_include_pad = 0, ONNX's default.
      const y = b.op(
        max ? 'MaxPool' : 'AveragePool',
        [x.name],
        max ? attrs : { ...attrs, count_include_pad: A.i(0) },
        `${lname}/${max ? 'MaxPool' : 'AveragePool'}`,
      );
      return [{ name: y, shape: [null, ...out, x.shape[x.shape.length - 1]!] }];
    },
  )
  .register(
    [
      'GlobalAveragePooling2D',
      'GlobalMaxPooling2D',
      'GlobalAveragePooling1D',
      'GlobalMaxPooling1D',
      'GlobalAvgPool2D',
      'GlobalMaxPool2D',
    ],
    (_, { c, b, one, rank, cls }) => {
      const x = one();
      rank(x, cls.includes('1D') ? 3 : 4);
      const r = x.shape.length;
      const C = x.shape[r - 1]!;
      // ReduceMean/ReduceMax over the spatial axes, as tf2onnx writes it (one node, float64 kernels too)
      const keep = Boolean(c.keepdims);
      const y = b.reduce(
        cls.includes('Max') ? 'ReduceMax' : 'ReduceMean',
        x.name,
        [...Array(r - 2).keys()].map((i) => i + 2),
        keep,
      );
      return [{ name: y, shape: keep ? [null, ...Array(r - 2).fill(1), C] : [null, C] }];
    },
  )
  .register('ZeroPadding2D', (_, { c, lname, b, one, rank }) => {
    const x = one();
    rank(x, 4);
    const p = c.padding ?? 1;
    const [[t, bo], [l, r]] = (
      typeof p === 'number'
        ? [
            [p, p],
            [p, p],
          ]
        : (p as Json[]).map((v) => (Array.isArray(v) ? v.map(Number) : [Number(v), Number(v)]))
    ) as [[number, number], [number, number]];
    const y = b.op('Pad', [x.name, b.i64([0, 0, t, l, 0, 0, bo, r])], { mode: A.s('constant') }, `${lname}/Pad`);
    const [, H, Wd, C] = x.shape;
    return [{ name: y, shape: [null, H == null ? null : H + t + bo, Wd == null ? null : Wd + l + r, C!] }];
  })
  .register('Cropping2D', (_, { c, lname, b, one, rank }) => {
    const x = one();
    rank(x, 4);
    const p = c.cropping ?? 0;
    const [[t, bo], [l, r]] = (
      typeof p === 'number'
        ? [
            [p, p],
            [p, p],
          ]
        : (p as Json[]).map((v) => (Array.isArray(v) ? v.map(Number) : [Number(v), Number(v)]))
    ) as [[number, number], [number, number]];
    const END = 2 ** 31 - 1;
    const y = b.op(
      'Slice',
      [x.name, b.i64([t, l]), b.i64([bo ? -bo : END, r ? -r : END]), b.i64([2, 3])],
      {},
      `${lname}/Slice`,
    );
    const [, H, Wd, C] = x.shape;
    return [{ name: y, shape: [null, H == null ? null : H - t - bo, Wd == null ? null : Wd - l - r, C!] }];
  })
  .register('Flatten', (im, { layer, lname, b, one }) => {
    const x = one();
    const r = x.shape.length;
    const n = x.shape.slice(1).some((d) => d == null) ? null : numel(x.shape.slice(1) as number[]);
    if (r <= 2) return [{ ...x }];
    // Keras flattens H·W·C order: bring the channels back last unless that moves only size-1 axes
    const src = im.toKerasOrder(layer, x);
    return [{ name: b.op('Flatten', [src], { axis: A.i(1) }, `${lname}/Flatten`), shape: [null, n] }];
  })
  .register('Reshape', (im, { layer, c, lname, b, one }) => {
    const x = one();
    if (!Array.isArray(c.target_shape))
      throw im.err(layer, `target_shape ${JSON.stringify(c.target_shape)} is not a list`);
    const target: number[] = (c.target_shape as Json[]).map((d) => (d == null ? -1 : Number(d)));
    if (target.some((d) => !Number.isSafeInteger(d) || d < -1))
      throw im.err(layer, `target_shape ${JSON.stringify(c.target_shape)} is not a list of sizes`);
    const known = x.shape.slice(1).every((d) => d != null) ? numel(x.shape.slice(1) as number[]) : null;
    const unknownAt = target.indexOf(-1);
    const resolved = target.map((d, i) =>
      i === unknownAt ? (known == null ? null : known / numel(target.filter((t) => t !== -1))) : d,
    );
    const outShape: (number | null)[] = [null, ...resolved];
    const src = im.toKerasOrder(layer, x);
    const r = outShape.length;
    if (r >= 3) {
      const back = cfOrder(r);
      if (resolved.every((d) => d != null) && permIsRelabel(outShape, back))
        return [{ name: b.reshape(src, [0, ...onnxDims(outShape).slice(1).map(Number)]), shape: outShape }];
      const y = b.reshape(src, [0, ...target]);
      return [{ name: b.op('Transpose', [y], { perm: A.is(back) }, `${lname}/Transpose`), shape: outShape }];
    }
    return [{ name: b.reshape(src, [0, ...target]), shape: outShape }];
  })
  .register('Permute', (im, { layer, c, lname, b, one }) => {
    const x = one();
    const r = x.shape.length;
    if (
      !Array.isArray(c.dims) ||
      c.dims.some((d: unknown) => !Number.isInteger(d) || (d as number) < 1 || (d as number) > c.dims.length) ||
      new Set(c.dims).size !== c.dims.length
    )
      throw im.err(layer, `dims ${JSON.stringify(c.dims)} is not a permutation`);
    const kp = [0, ...(c.dims as number[]).map(Number)];
    if (kp.length !== r) throw im.err(layer, `dims ${JSON.stringify(c.dims)} do not fit a rank-${r} input`);
    const cf = cfOrder(r),
      inv = invert(cf);
    const perm = cf.map((k) => inv[kp[k]!]!);
    const shape = kp.map((k) => x.shape[k]!);
    if (perm.every((p, i) => p === i)) return [{ name: x.name, shape }];
    return [{ name: b.op('Transpose', [x.name], { perm: A.is(perm) }, `${lname}/Transpose`), shape }];
  })
  .register('Rescaling', (im, { layer, c, lname, b, one }) => {
    const x = one();
    let y = x.name;
    const vec = (v: Json, base: string) => {
      if (typeof v === 'number') return b.f32(v);
      const a = (v as Json[]).map(Number);
      const r = x.shape.length;
      return im.init(layer, base, () => ({
        dtype: 'float32',
        dims: r >= 3 ? [a.length, ...Array(r - 2).fill(1)] : [a.length],
        data: Float32Array.from(a),
      }));
    };
    const scale = c.scale ?? 1,
      offset = c.offset ?? 0;
    if (scale !== 1) y = b.op('Mul', [y, vec(scale, 'scale')], {}, `${lname}/Mul`);
    if (offset !== 0) y = b.op('Add', [y, vec(offset, 'offset')], {}, `${lname}/Add`);
    return [{ name: y, shape: [...x.shape] }];
  });

/** Keras activations (lower case) by name: the ONNX value of activation(v); `axis` is the channel axis. */
export const TFJS_ACTIVATIONS = new Handlers<(b: Builder, v: string, base: string, axis: number) => string>(
  'TF.js activations',
)
  .register('relu', (b, v, base) => b.op('Relu', [v], {}, base))
  .register('relu6', (b, v, base) => b.op('Clip', [v, b.f32(0), b.f32(6)], {}, base))
  .register('elu', (b, v, base) => b.op('Elu', [v], { alpha: A.f(1) }, base))
  .register('selu', (b, v, base) =>
    b.op(
      'Mul',
      [b.op('Elu', [v], { alpha: A.f(1.6732632423543772) }, `${base}/Elu`), b.f32(1.0507009873554805)],
      {},
      base,
    ),
  )
  .register('sigmoid', (b, v, base) => b.op('Sigmoid', [v], {}, base))
  .register(['hard_sigmoid', 'hardsigmoid'], (b, v, base) =>
    b.op('HardSigmoid', [v], { alpha: A.f(0.2), beta: A.f(0.5) }, base),
  )
  .register('tanh', (b, v, base) => b.op('Tanh', [v], {}, base))
  .register('softmax', (b, v, base, axis) => b.op('Softmax', [v], { axis: A.i(axis) }, base))
  .register(['log_softmax', 'logsoftmax'], (b, v, base, axis) => b.op('LogSoftmax', [v], { axis: A.i(axis) }, base))
  .register('softplus', (b, v, base) => b.op('Softplus', [v], {}, base))
  .register('softsign', (b, v, base) =>
    b.op('Div', [v, b.op('Add', [b.op('Abs', [v], {}, `${base}/Abs`), b.f32(1)], {}, `${base}/Add`)], {}, base),
  )
  .register(['swish', 'silu'], (b, v, base) => b.op('Mul', [v, b.op('Sigmoid', [v], {}, `${base}/Sigmoid`)], {}, base))
  .register('mish', (b, v, base) =>
    b.op('Mul', [v, b.op('Tanh', [b.op('Softplus', [v], {}, `${base}/Softplus`)], {}, `${base}/Tanh`)], {}, base),
  )
  .register('gelu', (b, v, base) => {
    const e = b.op('Erf', [b.op('Mul', [v, b.f32(Math.SQRT1_2)], {}, `${base}/Scale`)], {}, `${base}/Erf`);
    return b.op(
      'Mul',
      [b.op('Mul', [v, b.f32(0.5)], {}, `${base}/Half`), b.op('Add', [e, b.f32(1)], {}, `${base}/Add`)],
      {},
      base,
    );
  })
  .register('exponential', (b, v, base) => b.op('Exp', [v], {}, base));

function layerName(l: LayerJson): string {
  return String(l.config?.name ?? l.name ?? l.class_name);
}

/** The batch input shape a layer (or a nested model's first layer / input layer) declares. */
function declaredInputShape(l: LayerJson): Json {
  const c = l.config ?? {};
  if (l.class_name === 'Sequential') {
    const f = (Array.isArray(c) ? c : c.layers)?.[0];
    return f ? declaredInputShape(f) : undefined;
  }
  if (MODEL_CLASSES.has(l.class_name)) {
    const ref = refList(c.input_layers)[0];
    const il = (c.layers as LayerJson[] | undefined)?.find((x) => layerName(x) === ref?.[0]);
    return il ? declaredInputShape(il) : undefined;
  }
  return c.batch_input_shape ?? c.batch_shape ?? (c.input_shape ? [null, ...c.input_shape] : undefined);
}

/** Whether a nested model has its own first node: functional models always, Sequential ones once built (with an input shape). */
function ownsFirstNode(l: LayerJson): boolean {
  if (l.class_name !== 'Sequential') return true;
  const layers: LayerJson[] | undefined = Array.isArray(l.config) ? l.config : l.config?.layers;
  const f = layers?.[0];
  if (!f) return false;
  const c = f.config ?? {};
  if (MODEL_CLASSES.has(f.class_name)) return ownsFirstNode(f);
  return f.class_name === 'InputLayer' || c.batch_input_shape != null || c.batch_shape != null || c.input_shape != null;
}

function depthwiseWeight(K: Tensor): Tensor {
  return { dtype: 'float32', ...depthwiseToOihw(K.data as Float32Array, K.dims) };
}

/** input_layers / output_layers: [[name, node, tensor], …] (or one flat [name, node, tensor]). */
function refList(v: Json): [string, number, number][] {
  if (!Array.isArray(v)) return [];
  if (typeof v[0] === 'string') return [[v[0], Number(v[1] ?? 0), Number(v[2] ?? 0)]];
  return v.map((r: Json) => [String(r[0]), Number(r[1] ?? 0), Number(r[2] ?? 0)]);
}

/** One call's inputs: Keras 2 / tfjs `[[name, node, tensor, kwargs], …]`, or Keras 3 `{args: [keras tensors…]}`. */
function inboundRefs(n: Json, label: string, l: LayerJson): [string, number, number][] {
  if (Array.isArray(n)) return n.map((r: Json) => [String(r[0]), Number(r[1] ?? 0), Number(r[2] ?? 0)]);
  if (n && typeof n === 'object' && Array.isArray(n.args)) {
    const out: [string, number, number][] = [];
    const walk = (a: Json) => {
      if (Array.isArray(a)) a.forEach(walk);
      else if (a && typeof a === 'object' && a.class_name === '__keras_tensor__') {
        const h = a.config.keras_history;
        out.push([String(h[0]), Number(h[1]), Number(h[2])]);
      }
    };
    walk(n.args);
    return out;
  }
  throw new GraftError(`${label}: layer '${layerName(l)}' has inbound nodes in a form the importer does not know`);
}

/* ------------------------------------------------------------------------------------------------ */
/* entry points                                                                                       */

/**
 * Read a TF.js layers model: `path` is model.json, a folder holding one, or a JS bundle (model.min.js,
 * or a folder holding one) whose shards are `<path>.min.js` files, as nsfwjs ships its models.
 */
export function readTfjs(path: string, opts: TfjsReadOptions = {}): Graph {
  const src = openSource(path);
  return importTfjs(src, opts);
}

/** One of nsfwjs's layers models (MobileNetV2 at 224, InceptionV3 at 299), from the installed npm package. */
export function readNsfwjs(
  model: NsfwjsModel,
  opts: TfjsReadOptions & { /** where to resolve the package from (see nsfwjsPackageDir) */ from?: string } = {},
): Graph {
  const g = readTfjs(nsfwjsModelDir(model, opts.from), {
    labels: nsfwjsLabels(opts.from),
    ...opts,
    name: opts.name ?? `nsfwjs-${model}`,
  });
  g.docString = `nsfwjs ${model}, imported from the npm package's bundled TF.js model`;
  g.metadata['graft.source'] = `tfjs:nsfwjs/${model}`;
  return g;
}

function importTfjs(src: Source, opts: TfjsReadOptions): Graph {
  const json = src.json;
  if (json.modelTopology != null && (typeof json.modelTopology !== 'object' || Array.isArray(json.modelTopology)))
    throw new GraftError(`${src.label}: modelTopology is not an object`);
  if (json.format === 'graph-model' || (json.modelTopology && 'node' in json.modelTopology)) {
    // a TensorFlow GraphDef: ./tfjs-graph.ts
    const g = importTfjsGraphModel(json, decodeTfjsWeights(json.weightsManifest ?? [], src), src.label, {
      ...opts,
      name: opts.name ?? basename(src.dir),
    });
    g.metadata['graft.source'] = `tfjs:${basename(src.label)}`;
    return g;
  }
  const topo = json.modelTopology;
  if (!topo || typeof topo !== 'object') throw new GraftError(`${src.label} has no modelTopology`);
  const mc: LayerJson = topo.model_config ?? topo;
  if (!mc || !MODEL_CLASSES.has(mc.class_name))
    throw new GraftError(
      `${src.label}: the topology is a '${mc?.class_name}', expected a Keras Model/Functional/Sequential`,
    );
  checkLayers(mc, src.label, 0);
  const weights = decodeTfjsWeights(json.weightsManifest ?? [], src);

  const imp = new Importer(weights, src.label);
  const outs = imp.buildModel(mc, null, []);
  const g = imp.g;
  g.name = opts.name ?? String(mc.config?.name ?? basename(src.dir));
  g.docString = `imported from the TF.js layers model ${src.label}`;
  g.metadata['graft.source'] = `tfjs:${basename(src.label)}`;
  // Graph outputs: distinct values, never a graph input itself.
  imp.setOutputs(
    outs.map((v) => ({ name: v.name, shape: onnxDims(v.shape).map((d, i): Dim => (i === 0 ? 'batch' : d)) })),
    (name) => `${name}/output`,
  );
  g.prune();

  const pre = preprocessFor(g, imp, opts);
  if (pre) setPreprocess(g, pre);
  const last = outs[0]?.shape;
  const classes = last && last.length === 2 ? last[1] : null;
  if (classes != null && opts.labels !== false) {
    const labels = resolveLabels(src.dir, classes, opts.labels);
    if (labels) setLabels(g, labels);
  }
  return g;
}

/**
 * The shape of a Keras topology the importer relies on, checked up front so that a damaged or hostile
 * model.json is a named error: every layer an object with a class_name and a config object, layer lists and
 * inbound_nodes lists where present.
 */
function checkLayers(layer: Json, label: string, depth: number): void {
  const bad = (what: string): never => {
    throw new GraftError(`${label}: ${what}`);
  };
  if (depth > 64) bad('models nested over 64 deep');
  if (layer === null || typeof layer !== 'object' || Array.isArray(layer)) bad('a layer is not an object');
  const name = typeof layer.config?.name === 'string' ? ` '${layer.config.name}'` : '';
  if (typeof layer.class_name !== 'string') bad(`a layer${name} has no class_name`);
  if (layer.config != null && typeof layer.config !== 'object')
    bad(`layer${name} (${layer.class_name}) has a config that is not an object`);
  if (layer.inbound_nodes != null && !Array.isArray(layer.inbound_nodes))
    bad(`layer${name} (${layer.class_name}) has inbound_nodes that are not a list`);
  if (MODEL_CLASSES.has(layer.class_name)) {
    const layers = Array.isArray(layer.config) ? layer.config : layer.config?.layers;
    if (layers != null && !Array.isArray(layers)) bad(`model${name} has layers that are not a list`);
    for (const l of layers ?? []) checkLayers(l, label, depth + 1);
  }
}

function preprocessFor(g: Graph, imp: Importer, opts: TfjsReadOptions): ImagePreprocess | undefined {
  const inp = g.dataInputs();
  if (inp.length !== 1) return undefined;
  const s = inp[0]!.shape;
  if (!s || s.length !== 4) return undefined;
  const [, C, H, W] = s;
  if ((C !== 1 && C !== 3) || typeof H !== 'number' || typeof W !== 'number') return undefined;
  const ch = C as 1 | 3;
  const fill = (v: number[] | undefined, d: number): number[] =>
    !v || v.length === 0 ? Array(ch).fill(d) : v.length === 1 ? Array(ch).fill(v[0]) : v;
  const given = opts.preprocess ?? {};
  const base = {
    layout: 'NCHW' as const,
    width: W,
    height: H,
    channels: ch,
    channelOrder: given.channelOrder ?? (ch === 1 ? ('GRAY' as const) : ('RGB' as const)),
    resize: given.resize ?? ('stretch' as const),
  };
  if (given.mean || given.std) {
    const mean = fill(given.mean, 0),
      std = fill(given.std, 1);
    if (mean.length !== ch || std.length !== ch) throw new GraftError(`preprocess mean/std need 1 or ${ch} values`);
    return { ...base, mean, std, source: 'flag' };
  }
  // A Rescaling layer right at the input: the model takes raw 0–255 pixels and says so itself.
  const first = imp.firstLayers.get(inp[0]!.name) ?? [];
  if (first.length === 1 && first[0]!.class_name === 'Rescaling') {
    const sc = first[0]!.config?.scale ?? 1,
      off = first[0]!.config?.offset ?? 0;
    if (typeof sc === 'number' && typeof off === 'number' && sc !== 0) {
      // the graph computes pixel·scale + offset itself: it wants the pixel values, (pixel/255 − 0)/(1/255)
      return { ...base, mean: Array(ch).fill(0), std: Array(ch).fill(1 / 255), source: 'file' };
    }
  }
  return { ...base, mean: Array(ch).fill(0), std: Array(ch).fill(1), source: 'default' };
}

const LABEL_FILES = ['class_names.txt', 'labels.txt', 'classes.txt', 'synset.txt', 'imagenet.shortnames.list'];

function readLabelLines(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l, i, a) => l !== '' || i < a.length - 1);
}

function resolveLabels(dir: string, n: number, given: string[] | string | undefined): string[] | undefined {
  if (Array.isArray(given)) {
    if (given.length !== n) throw new GraftError(`${given.length} labels given for a model with ${n} outputs`);
    return given;
  }
  if (typeof given === 'string') {
    if (!existsSync(given)) throw new GraftError(`labels file not found: ${given}`);
    const lines = readLabelLines(given);
    if (lines.length < n) throw new GraftError(`${given} has ${lines.length} labels, the model has ${n} outputs`);
    return lines.slice(0, n);
  }
  // metadata.json (Teachable Machine) lists the labels in output order
  const meta = insideFolder(dir, 'metadata.json', 'labels file');
  if (existsSync(meta)) {
    try {
      const m = JSON.parse(readFileSync(meta, 'utf8')) as { labels?: unknown };
      if (Array.isArray(m.labels) && m.labels.length === n) return m.labels.map(String);
    } catch {
      /* not ours */
    }
  }
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  const candidates = [
    ...LABEL_FILES.filter((f) => names.includes(f)),
    ...names.filter((f) => extname(f) === '.names' && !LABEL_FILES.includes(f)),
  ];
  for (const f of candidates) {
    const lines = readLabelLines(insideFolder(dir, f, 'labels file'));
    if (lines.length >= n) return lines.slice(0, n);
  }
  return undefined;
}
