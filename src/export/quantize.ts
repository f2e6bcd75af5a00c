/**
 * Static post-training int8 quantization to standard ONNX QDQ form, and its export as a classifier
 * folder (`graft export --int8`).
 *
 * The rewrite (quantizeGraph) follows the layout onnxruntime's QDQ optimizer fuses into integer
 * kernels (QLinearConv, MatMulIntegerToFloat, QGemm, QLinearAdd):
 *   - weights of Conv, MatMul and Gemm become int8 initializers, symmetric and per output channel
 *     (axis 0 for Conv and Gemm with transB, axis 1 for MatMul and Gemm without; one scalar scale
 *     when all channels share it), each behind a DequantizeLinear without zero point input (0);
 *     a Conv or Gemm bias becomes int32 with scale = input scale × weight scale. Weights are never
 *     uint8 nor int8 with a non-zero zero point: onnxruntime fuses those too, but its x86 kernels for
 *     them ran slower than the float model;
 *   - every float activation entering one of those nodes, and every Conv output (after its ReLU or
 *     Clip when that is its only consumer, so the activation folds into the quantized range), gets a
 *     QuantizeLinear → DequantizeLinear pair (uint8 or int8, asymmetric, ranges from calibrate.ts).
 *     The quantized nodes read the dequantized copy, and so does every consumer of a Conv output and
 *     an Add/Mul of quantized values only (they fuse into QLinearAdd…); other consumers (a transformer's
 *     residual Add, a Shape) keep the float value, so no rounding error enters the residual path;
 *   - embedding tables read by Gather are stored int8 (per tensor, symmetric) and the gathered rows
 *     are dequantized, so the table itself is never expanded to float at run time;
 *   - a constant scalar Mul/Div after a quantized product of two activations (attention's Q·Kᵀ/√d)
 *     moves into the first input's dequantization scale (foldProductScales).
 * Everything else (normalizations, softmax, the classifier's probabilities) stays float32. Weights
 * computed by constant subgraphs (Constant nodes, Transpose of an initializer, as PyTorch exports
 * Linear layers) are folded into initializers first.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Graph, attrFloat, attrInt, attrInts, type Node } from '../graph/graph.js';
import { A, Builder } from '../graph/builder.js';
import { numel, permuteData, type Tensor } from '../graph/tensor.js';
import { encodeOnnx, readOnnx } from '../formats/onnx.js';
import { atomicWrite, MODEL_FOLDER_FILES, writeFolderAtomic } from '../util/atomic.js';
import { getLabels, getPreprocess } from '../formats/preprocess.js';
import { imagesToTensor } from '../data/image.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { isTextClassifierFolder, loadTextClassifier } from '../text/saved.js';
import { textFeeds } from '../text/encoder.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { argmaxRows } from '../util/vectors.js';
import {
  calibrate,
  qparams,
  type ActivationType,
  type CalibrationMethod,
  type QParams,
  type Range,
} from './calibrate.js';

export const QUANTIZATION_METADATA = 'graft.quantization';
const COMPUTE_OPS = new Set(['Conv', 'MatMul', 'Gemm']);
const FUSED_ACTIVATIONS = new Set(['Relu', 'Clip']);
/** Element-wise ops onnxruntime runs on quantized inputs when all of them are (QLinearAdd, QLinearMul). */
const PAIRWISE_QUANTIZED = new Set(['Add', 'Mul']);

/* ------------------------------------------------------------------ constant folding */

/** Constant nodes become initializers; Transpose of a float32 initializer becomes the transposed initializer. */
export function foldConstants(src: Graph): Graph {
  const g = src.clone();
  const keep: Node[] = [];
  for (const n of g.nodes) {
    const value = n.attrs['value'];
    if (n.opType === 'Constant' && n.domain === '' && value?.type === 'tensor' && n.outputs.length === 1) {
      g.initializers.set(n.outputs[0]!, value.value);
      continue;
    }
    const w = n.opType === 'Transpose' ? g.initializers.get(n.inputs[0]!) : undefined;
    if (w && w.dtype === 'float32' && n.outputs.length === 1) {
      const perm = attrInts(n, 'perm') ?? w.dims.map((_, i) => w.dims.length - 1 - i);
      g.initializers.set(n.outputs[0]!, { dtype: 'float32', ...permuteData(w.data as Float32Array, w.dims, perm) });
      continue;
    }
    keep.push(n);
  }
  g.nodes = keep;
  return g.prune();
}

/* ------------------------------------------------------------------ the plan */

export interface QuantSite {
  node: Node;
  /** Activation inputs (quantized by a Q/DQ pair each). */
  activations: string[];
  /** Weight input index and the axis its per-channel scales run along. */
  weight?: { index: number; axis: number };
  /** Bias input index (Conv input 2, Gemm C), quantized to int32. */
  bias?: number;
}

export interface QuantPlan {
  sites: QuantSite[];
  /** Embedding tables read by Gather (node and initializer), stored int8. */
  gathers: Node[];
  /** Float values to calibrate and quantize: site activations and Conv outputs. */
  values: string[];
  /** Of those, the Conv outputs: every consumer reads their dequantized copy (others: quantized consumers only). */
  allConsumers?: string[];
  /** Compute nodes left in float, with the reason. */
  skipped: { node: string; op: string; reason: string }[];
}

/**
 * The compute nodes nearest the graph outputs: walking back from each output through non-compute
 * nodes (Softmax, Reshape, Add…), the first Conv/MatMul/Gemm met.
 */
export function outputLayers(g: Graph): Set<Node> {
  const prod = g.producers();
  const found = new Set<Node>(),
    seen = new Set<string>();
  const stack = g.outputs.map((v) => v.name);
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const n = prod.get(v);
    if (!n) continue;
    if (COMPUTE_OPS.has(n.opType)) found.add(n);
    else for (const i of n.inputs) if (i && !g.initializers.has(i)) stack.push(i);
  }
  return found;
}

export interface PlanOptions {
  /** Store embedding tables (Gather on an initializer) as int8 (default true). */
  embeddings?: boolean;
  /**
   * Keep the compute layer nearest each output (the classifier head) in float32 (default true): a
   * linear head over many features sums the rounding of every weight into logits whose differences
   * are small (measured on the Fashion-MNIST MobileNetV2 classifier: int8 head alone 0.79 → 0.66
   * accuracy on 96 images; float head 0.80), at a negligible share of the compute.
   */
  keepOutputLayer?: boolean;
}

export function planQuantization(g: Graph, o: PlanOptions = {}): QuantPlan {
  const consumers = g.consumers();
  const outputs = new Set(g.outputs.map((v) => v.name));
  const heads = o.keepOutputLayer === false ? new Set<Node>() : outputLayers(g);
  const isWeight = (v: string | undefined) => !!v && g.initializers.get(v)?.dtype === 'float32';
  const sites: QuantSite[] = [],
    gathers: Node[] = [],
    skipped: QuantPlan['skipped'] = [];
  const values = new Set<string>(),
    allConsumers = new Set<string>();
  const skip = (n: Node, reason: string) => skipped.push({ node: n.name, op: n.opType, reason });
  for (const n of g.nodes) {
    if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
    if (n.opType === 'Gather' && o.embeddings !== false) {
      const t = g.initializers.get(n.inputs[0]!);
      if (
        t &&
        t.dtype === 'float32' &&
        t.dims.length === 2 &&
        numel(t.dims) >= 1024 &&
        !g.initializers.has(n.inputs[1]!)
      )
        gathers.push(n);
      continue;
    }
    if (!COMPUTE_OPS.has(n.opType)) continue;
    if (heads.has(n)) {
      skip(n, 'output layer kept in float32 (keepOutputLayer)');
      continue;
    }
    const [a, b, c] = n.inputs;
    let site: QuantSite | undefined;
    if (n.opType === 'Conv') {
      if (!isWeight(b)) {
        skip(n, 'weight is not a constant');
        continue;
      }
      site = { node: n, activations: [a!], weight: { index: 1, axis: 0 }, ...(c && isWeight(c) ? { bias: 2 } : {}) };
      if (c && !isWeight(c)) {
        skip(n, 'bias is not a constant');
        continue;
      }
    } else if (n.opType === 'MatMul') {
      if (g.initializers.has(a!)) {
        skip(n, 'first input is a constant');
        continue;
      }
      if (isWeight(b)) {
        if (g.initializers.get(b!)!.dims.length !== 2) {
          skip(n, 'weight is not 2-D');
          continue;
        }
        site = { node: n, activations: [a!], weight: { index: 1, axis: 1 } };
      } else if (!g.initializers.has(b!)) site = { node: n, activations: [a!, b!] };
      else {
        skip(n, 'weight is not float32');
        continue;
      }
    } else {
      if (attrInt(n, 'transA', 0) !== 0) {
        skip(n, 'transA');
        continue;
      }
      if (!isWeight(b)) {
        skip(n, 'weight is not a constant');
        continue;
      }
      const okBias =
        c &&
        isWeight(c) &&
        attrFloat(n, 'alpha', 1) === 1 &&
        attrFloat(n, 'beta', 1) === 1 &&
        g.initializers.get(c)!.dims.length === 1;
      site = {
        node: n,
        activations: [a!],
        weight: { index: 1, axis: attrInt(n, 'transB', 0) ? 0 : 1 },
        ...(okBias ? { bias: 2 } : {}),
      };
    }
    if (!site) continue;
    if (site.activations.some((v) => g.initializers.has(v))) {
      skip(n, 'activation is a constant');
      continue;
    }
    sites.push(site);
    for (const v of site.activations) values.add(v);
    if (n.opType === 'Conv') {
      // The output is quantized after a ReLU/Clip that is its only consumer (the activation folds into the range).
      let out = n.outputs[0]!;
      const cs = consumers.get(out) ?? [];
      if (
        cs.length === 1 &&
        FUSED_ACTIVATIONS.has(cs[0]!.opType) &&
        cs[0]!.inputs.slice(1).every((i) => !i || g.initializers.has(i)) &&
        !outputs.has(out)
      )
        out = cs[0]!.outputs[0]!;
      if (!outputs.has(out)) {
        values.add(out);
        allConsumers.add(out);
      }
    }
  }
  return { sites, gathers, values: [...values], allConsumers: [...allConsumers], skipped };
}

/* ------------------------------------------------------------------ the rewrite */

export interface QuantizeGraphOptions {
  activations?: ActivationType;
  /** Weights on 7 bits ([−64, 63]): for x86 CPUs without VNNI, where u8×s8 products can saturate. */
  reduceRange?: boolean;
  /**
   * A weight that already lies on a uint8 grid (weightGrid: an imported quantized TFLite model) keeps
   * that grid's step as its int8 scale in every channel whose values fit −128…127, so those channels
   * are stored exactly (default true). Weights stay int8 with zero point 0 either way: onnxruntime's
   * x86 kernels for uint8 weights, or int8 weights with a non-zero zero point, ran slower than fp32
   * (bench/README.md, int8 section).
   */
  exactGrids?: boolean;
}

export interface QuantizeSummary {
  /** Quantized compute nodes per operator type. */
  quantized: Record<string, number>;
  /** Embedding tables stored as int8. */
  embeddings: number;
  /** Quantize/Dequantize pairs on activations. */
  activations: number;
  /** Weights that lay on a uint8 grid (weightGrid) and kept its step as their scale where it fits. */
  exactGrids: number;
  /** Of those weights' output channels: how many were stored exactly (the rest were rounded). */
  exactChannels: number;
  gridChannels: number;
  /** Compute nodes left in float32, with the reason. */
  float: { node: string; op: string; reason: string }[];
  /** Constant scales after a product of two activations folded into its dequantization (foldProductScales). */
  scalesFolded?: number;
}

/**
 * Per-channel int8 of a float32 weight along `axis`, zero point 0 (symmetric scale, the full int8
 * range −128…127). Given `gridScale` (the step of a uniform grid the weight already lies on, see
 * weightGrid), every channel whose values are k · gridScale with k in −128…127 keeps that scale and
 * is stored exactly. Any other channel gets the scale max|w|/n, n = 1…128, with the least squared
 * rounding error: n ≈ 127 for most trained weights, while a channel that already lies on a coarser
 * grid gets that grid back exactly instead of a second rounding, which quantization-aware networks
 * (a model imported from a quantized TFLite file) do not tolerate.
 */
export function quantizeWeight(
  w: Tensor,
  axis: number,
  reduceRange = false,
  gridScale?: number,
): { q: Int8Array; scales: Float32Array; exactChannels: number } {
  const data = w.data as Float32Array;
  const C = w.dims[axis]!;
  const inner = w.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = data.length / (C * inner);
  const qmax = reduceRange ? 63 : 127,
    qmin = -qmax - 1;
  const absMax = new Float64Array(C),
    kMin = new Float64Array(C),
    kMax = new Float64Array(C),
    offGrid = new Uint8Array(C);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % C;
    const v = data[i]!;
    if (Math.abs(v) > absMax[c]!) absMax[c] = Math.abs(v);
    if (gridScale) {
      const k = Math.round(v / gridScale);
      if (Math.abs(k * gridScale - v) > 1e-5 * Math.abs(v)) offGrid[c] = 1;
      if (k < kMin[c]!) kMin[c] = k;
      if (k > kMax[c]!) kMax[c] = k;
    }
  }
  const round = (v: number, s: number) => Math.max(qmin, Math.min(qmax, Math.round(v / s)));
  const scales = new Float32Array(C);
  let exactChannels = 0;
  for (let c = 0; c < C; c++) {
    const m = absMax[c]!;
    if (gridScale && !offGrid[c] && kMin[c]! >= qmin && kMax[c]! <= qmax) {
      scales[c] = gridScale;
      exactChannels++;
      continue;
    }
    if (!(m > 0)) {
      scales[c] = 1;
      continue;
    }
    let best = m / qmax,
      bestErr = Infinity;
    for (let n = qmax + 1; n >= 1; n--) {
      const s = Math.fround(m / n);
      let err = 0;
      for (let o = 0; o < outer && err < bestErr; o++) {
        const base = (o * C + c) * inner;
        for (let k = 0; k < inner; k++) {
          const v = data[base + k]!;
          const d = v - round(v, s) * s;
          err += d * d;
        }
      }
      if (err < bestErr) {
        bestErr = err;
        best = s;
      }
      if (err === 0) break;
    }
    scales[c] = best;
  }
  const q = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) q[i] = round(data[i]!, scales[Math.floor(i / inner) % C]!);
  return { q, scales, exactChannels };
}

/**
 * The uniform grid a weight already lies on, if any: every value is scale · (q − zeroPoint) for some
 * q in 0…255 (as in a uint8 TFLite model). Such a weight is stored uint8 per tensor with that exact
 * scale and zero point: nothing is rounded a second time.
 */
export function weightGrid(w: Tensor): { scale: number; zeroPoint: number } | undefined {
  const data = w.data as Float32Array;
  const seen = new Set<number>();
  for (let i = 0; i < data.length; i++) {
    seen.add(data[i]!);
    if (seen.size > 256) return undefined;
  }
  const u = [...seen].sort((a, b) => a - b);
  if (u.length < 3) return undefined;
  let step = Infinity;
  for (let i = 1; i < u.length; i++) step = Math.min(step, u[i]! - u[i - 1]!);
  const span = Math.round((u.at(-1)! - u[0]!) / step);
  if (span > 255) return undefined;
  const scale = Math.fround((u.at(-1)! - u[0]!) / span); // the step, from the widest gap (least rounding)
  const zp = Math.round(-u[0]! / scale);
  if (zp < 0 || zp > 255) return undefined;
  const tol = 1e-5 * Math.max(Math.abs(u[0]!), Math.abs(u.at(-1)!));
  for (const v of u) {
    const q = Math.round(v / scale) + zp;
    if (q < 0 || q > 255 || Math.abs((q - zp) * scale - v) > tol) return undefined;
  }
  return { scale, zeroPoint: zp };
}

/**
 * The QDQ graph: `g` (constants already folded) with the plan's weights quantized and every value
 * that has a range in `ranges` behind a Q/DQ pair. A site whose activations lack a range stays float.
 */
export function quantizeGraph(
  g0: Graph,
  plan: QuantPlan,
  ranges: Map<string, Range>,
  o: QuantizeGraphOptions = {},
): { graph: Graph; summary: QuantizeSummary } {
  const g = g0.clone();
  if (g.opset < 13)
    throw new GraftError(
      `int8 export needs ONNX opset ≥ 13 (per-channel DequantizeLinear); the model has opset ${g.opset}`,
    );
  const type = o.activations ?? 'uint8';
  const b = new Builder(g);
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const qp = new Map<string, QParams>();
  for (const [v, r] of ranges) qp.set(v, qparams(r, type));
  const summary: QuantizeSummary = {
    quantized: {},
    embeddings: 0,
    activations: 0,
    exactGrids: 0,
    exactChannels: 0,
    gridChannels: 0,
    float: [...plan.skipped],
  };
  const zpTensor = (zp: number): Tensor =>
    type === 'uint8'
      ? { dtype: 'uint8', dims: [], data: Uint8Array.from([zp]) }
      : { dtype: 'int8', dims: [], data: Int8Array.from([zp]) };
  const newNodes: Node[] = [];
  const dq = (x: string, scale: string, zp: string, axis?: number, base = x) => {
    const out = b.name(`${base}_dq`);
    newNodes.push({
      name: b.name(`${base}_DQ`),
      opType: 'DequantizeLinear',
      domain: '',
      inputs: zp ? [x, scale, zp] : [x, scale],
      outputs: [out],
      attrs: axis === undefined ? {} : { axis: A.i(axis) },
    });
    return out;
  };
  const weightDq = new Map<string, string>();

  for (const site of plan.sites) {
    const n = byName.get(site.node.name)!;
    const missing = site.activations.find((v) => !qp.has(v));
    if (missing) {
      summary.float.push({ node: n.name, op: n.opType, reason: `no calibrated range for '${missing}'` });
      continue;
    }
    let wScales: Float32Array | undefined;
    if (site.weight) {
      const wName = n.inputs[site.weight.index]!;
      const w = g.initializers.get(wName)!;
      const grid = o.exactGrids === false ? undefined : weightGrid(w);
      const { q, scales, exactChannels } = quantizeWeight(w, site.weight.axis, o.reduceRange, grid?.scale);
      wScales = scales;
      const key = `${wName}|${site.weight.axis}`;
      let out: string | undefined = weightDq.get(key);
      if (!out) {
        // one scale for the whole tensor when every channel has the same one (a grid that fits int8):
        // a scalar scale, and a scalar bias scale below, instead of a vector each
        const perTensor = scales.every((v) => v === scales[0]);
        const qName = b.name(`${wName}_i8`);
        g.initializers.set(qName, { dtype: 'int8', dims: [...w.dims], data: q });
        const sName = b.name(`${wName}_s`);
        g.initializers.set(
          sName,
          perTensor
            ? { dtype: 'float32', dims: [], data: Float32Array.from([scales[0]!]) }
            : { dtype: 'float32', dims: [scales.length], data: scales },
        );
        // symmetric: no zero point input (DequantizeLinear's default is 0, of the int8 input's type)
        out = dq(qName, sName, '', perTensor ? undefined : site.weight.axis, wName);
        weightDq.set(key, out);
        if (grid) {
          summary.exactGrids++;
          summary.exactChannels += exactChannels;
          summary.gridChannels += scales.length;
        }
      }
      n.inputs[site.weight.index] = out!;
    }
    if (site.bias !== undefined && wScales) {
      const bName = n.inputs[site.bias]!;
      const bias = g.initializers.get(bName)!;
      const sx = qp.get(site.activations[0]!)!.scale;
      const bd = bias.data as Float32Array;
      if (bd.length === wScales.length) {
        const s = Float32Array.from(wScales, (sw) => Math.fround(sx * sw));
        const perTensor = s.every((v) => v === s[0]);
        const qb = Int32Array.from(bd, (v, i) => Math.max(-2147483647, Math.min(2147483647, Math.round(v / s[i]!))));
        const qName = b.name(`${bName}_i32`);
        g.initializers.set(qName, { dtype: 'int32', dims: [...bias.dims], data: qb });
        const sName = b.name(`${bName}_s`);
        g.initializers.set(
          sName,
          perTensor
            ? { dtype: 'float32', dims: [], data: Float32Array.from([s[0]!]) }
            : { dtype: 'float32', dims: [s.length], data: s },
        );
        // int32 bias: no zero point input (it is 0 by definition)
        n.inputs[site.bias] = dq(qName, sName, '', perTensor ? undefined : 0, bName);
      }
    }
    summary.quantized[n.opType] = (summary.quantized[n.opType] ?? 0) + 1;
  }

  for (const gn of plan.gathers) {
    const n = byName.get(gn.name)!;
    const tName = n.inputs[0]!;
    const t = g.initializers.get(tName)!;
    const { q, scales } = quantizeWeight({ ...t, dims: [1, numel(t.dims)] }, 0, o.reduceRange);
    const qName = b.name(`${tName}_i8`);
    g.initializers.set(qName, { dtype: 'int8', dims: [...t.dims], data: q });
    const gathered = b.name(`${n.outputs[0]!}_q`);
    const sName = b.constant({ dtype: 'float32', dims: [], data: Float32Array.from([scales[0]!]) }, `${tName}_s`);
    const zName = b.constant({ dtype: 'int8', dims: [], data: new Int8Array(1) }, `${tName}_zp`);
    const out = n.outputs[0]!;
    n.inputs[0] = qName;
    n.outputs[0] = gathered;
    newNodes.push({
      name: b.name(`${tName}_DQ`),
      opType: 'DequantizeLinear',
      domain: '',
      inputs: [gathered, sName, zName],
      outputs: [out],
      attrs: {},
    });
    summary.embeddings++;
  }

  // Q/DQ pairs on activations. Which consumers read the dequantized copy (the others keep the float value):
  //  - the quantized compute nodes (their QDQ group fuses into an integer kernel);
  //  - every consumer of a Conv output (`plan.allConsumers`: its ReLU, pooling and residual Adds run on
  //    the quantized grid, as QLinearAdd, QLinearGlobalAveragePool…);
  //  - an Add or Mul all of whose non-constant inputs are quantized values (it fuses into QLinearAdd/Mul).
  // A transformer's residual Add or a Shape that reads an activation quantized in front of a MatMul keeps
  // the float value: a dequantized copy there only adds rounding error on the residual path and a
  // DequantizeLinear that onnxruntime cannot fuse away.
  const quantizedValues = new Set(plan.values.filter((v) => qp.has(v)));
  const fusedSites = new Set(
    plan.sites.filter((s) => s.activations.every((v) => qp.has(v))).map((s) => byName.get(s.node.name)!),
  );
  const allConsumers = new Set(plan.allConsumers ?? plan.values);
  // decided on the inputs as they were before any is rewritten to its dequantized copy
  const pairwise = new Set(
    g.nodes.filter(
      (n) =>
        PAIRWISE_QUANTIZED.has(n.opType) &&
        n.inputs.every((i) => !i || g.initializers.has(i) || quantizedValues.has(i)),
    ),
  );
  const readsDq = (n: Node, v: string): boolean => fusedSites.has(n) || allConsumers.has(v) || pairwise.has(n);
  for (const v of plan.values) {
    const p = qp.get(v);
    if (!p) continue;
    const sName = b.constant({ dtype: 'float32', dims: [], data: Float32Array.from([p.scale]) }, `${v}_s`);
    const zName = b.constant(zpTensor(p.zeroPoint), `${v}_zp`);
    const qOut = b.name(`${v}_q`);
    const qNode: Node = {
      name: b.name(`${v}_Q`),
      opType: 'QuantizeLinear',
      domain: '',
      inputs: [v, sName, zName],
      outputs: [qOut],
      attrs: {},
    };
    const dOut = dq(qOut, sName, zName, undefined, v);
    // (graph outputs keep reading the float value)
    for (const n of g.nodes) if (readsDq(n, v)) n.inputs = n.inputs.map((i) => (i === v ? dOut : i));
    newNodes.push(qNode);
    summary.activations++;
  }
  g.nodes.push(...newNodes);
  summary.scalesFolded = foldProductScales(g, fusedSites, b);
  g.nodes = g.topoSort();
  g.prune();
  return { graph: g, summary };
}

/**
 * A quantized product of two activations followed by a constant scalar Mul or Div (attention's
 * Q·Kᵀ · 1/√d): the constant moves into the dequantization scale of the product's first input (a
 * DequantizeLinear of its own), and the Mul goes. Exact up to the float rounding of scale × constant;
 * it saves a kernel over the whole scores tensor per attention block (a float model gets the same from
 * onnxruntime's FusedMatMul, which the quantized product does not have). Returns how many were folded.
 */
function foldProductScales(g: Graph, sites: Set<Node>, b: Builder): number {
  const prod = g.producers(),
    cons = g.consumers();
  const graphOut = new Set(g.outputs.map((v) => v.name));
  let folded = 0;
  for (const n of sites) {
    if (n.opType !== 'MatMul' || g.initializers.has(n.inputs[1]!)) continue;
    const out = n.outputs[0]!;
    const users = cons.get(out) ?? [];
    const m = users[0];
    if (users.length !== 1 || !m || (m.opType !== 'Mul' && m.opType !== 'Div')) continue;
    if (graphOut.has(out) || graphOut.has(m.outputs[0]!)) continue;
    const k = m.inputs[0] === out ? 1 : 0;
    if (m.opType === 'Div' && k !== 1) continue;
    const c = g.initializers.get(m.inputs[k]!);
    if (c?.dtype !== 'float32' || numel(c.dims) !== 1) continue;
    const alpha = (c.data as Float32Array)[0]!;
    const dq = prod.get(n.inputs[0]!);
    if (!(alpha !== 0 && Number.isFinite(alpha)) || dq?.opType !== 'DequantizeLinear' || dq.inputs.length !== 3)
      continue;
    const s = g.initializers.get(dq.inputs[1]!);
    if (!s || numel(s.dims) !== 1) continue;
    const scaled = Math.fround((s.data as Float32Array)[0]! * (m.opType === 'Mul' ? alpha : 1 / alpha));
    const sName = b.constant({ dtype: 'float32', dims: [], data: Float32Array.from([scaled]) }, `${n.name}_s`);
    const x = b.op('DequantizeLinear', [dq.inputs[0]!, sName, dq.inputs[2]!], {}, `${n.inputs[0]}_scaled`);
    n.inputs[0] = x;
    // the Mul's readers read the product itself
    for (const r of cons.get(m.outputs[0]!) ?? []) r.inputs = r.inputs.map((i) => (i === m.outputs[0] ? out : i));
    g.nodes = g.nodes.filter((v) => v !== m);
    folded++;
  }
  return folded;
}

/* ------------------------------------------------------------------ calibrate + rewrite */

export interface QuantizeOptions extends QuantizeGraphOptions, PlanOptions {
  method?: CalibrationMethod;
  /** 'percentile': kept percentile on each side (default 99.99). */
  percentile?: number;
  runtime?: RuntimeOptions;
  onBatch?: (done: number) => void;
}

export interface QuantizeResult {
  graph: Graph;
  summary: QuantizeSummary;
  method: CalibrationMethod;
  activations: ActivationType;
  examples: number;
  calibrationSeconds: number;
  ranges: Map<string, Range>;
}

/** Fold constants, plan, calibrate on `batches` (model feeds), and rewrite to QDQ. */
export async function quantizeStatic(
  model: Graph,
  batches: Iterable<Feeds> | AsyncIterable<Feeds>,
  o: QuantizeOptions = {},
): Promise<QuantizeResult> {
  const method = o.method ?? 'minmax';
  const g = foldConstants(model);
  const plan = planQuantization(g, o);
  if (plan.sites.length === 0 && plan.gathers.length === 0)
    throw new GraftError(`${model.name}: nothing to quantize (no Conv, MatMul or Gemm with constant weights)`);
  const cal = await calibrate(g, plan.values, batches, {
    method,
    ...(o.percentile !== undefined ? { percentile: o.percentile } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
    ...(o.onBatch ? { onBatch: o.onBatch } : {}),
  });
  const { graph, summary } = quantizeGraph(g, plan, cal.ranges, o);
  const activations = o.activations ?? 'uint8';
  graph.metadata[QUANTIZATION_METADATA] = JSON.stringify({
    format: 'QDQ',
    weights: 'int8 per-channel symmetric',
    activations,
    method,
    ...(method === 'percentile' ? { percentile: o.percentile ?? 99.99 } : {}),
    examples: cal.examples,
  });
  return {
    graph,
    summary,
    method,
    activations,
    examples: cal.examples,
    calibrationSeconds: cal.seconds,
    ranges: cal.ranges,
  };
}

/* ------------------------------------------------------------------ classifier folders */

/** Calibration examples: images (paths or encoded bytes) for an image classifier, texts for a text one. */
export type CalibrationSet = { images: (string | Uint8Array)[] } | { texts: string[] };

export interface Int8ExportOptions extends QuantizeOptions {
  /** Calibration examples drawn (seeded, at random) from the set (default 200). */
  samples?: number;
  /** Examples per calibration run (default 16). */
  batchSize?: number;
  seed?: number;
}

export interface Int8Report {
  path: string;
  kind: 'image' | 'text';
  method: CalibrationMethod;
  activations: ActivationType;
  calibrationExamples: number;
  calibrationSeconds: number;
  summary: QuantizeSummary;
  bytes: { float: number; int8: number; ratio: number };
  /** On the first calibration batch: top-1 agreement with the float model and the largest |Δ| of its first output. */
  check: { examples: number; agreement: number; maxAbsDiff: number };
  files: string[];
}

function draw<T>(xs: readonly T[], n: number, seed: number): T[] {
  if (xs.length <= n) return [...xs];
  return new Rng(seed)
    .shuffle([...xs.keys()])
    .slice(0, n)
    .map((i) => xs[i]!);
}

function* chunks<T>(xs: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < xs.length; i += size) yield xs.slice(i, i + size);
}

/** Feeds for a classifier folder's model from a calibration set, one batch at a time. */
export function classifierFeeds(dir: string, g: Graph, data: CalibrationSet, batchSize: number): AsyncIterable<Feeds> {
  if ('texts' in data) {
    const c = loadTextClassifier(dir);
    return (async function* () {
      for (const texts of chunks(data.texts, batchSize))
        yield textFeeds(g, c.tokenizer.encodeBatch(texts, { maxLength: c.settings.maxLength }));
    })();
  }
  const pre = getPreprocess(g);
  if (!pre) throw new GraftError(`${dir}/model.onnx records no image preprocessing: cannot prepare calibration images`);
  const input = g.dataInputs()[0]!.name;
  return (async function* () {
    for (const imgs of chunks(data.images, batchSize)) yield { [input]: await imagesToTensor(imgs, pre) };
  })();
}

/**
 * Quantize a classifier folder (image: `graft train --mode features`/finetune; text: `graft train
 * --text-column`) into `out`: model.onnx in QDQ form with the same metadata (preprocessing, class
 * names, text settings) plus `graft.quantization`, labels.json and the tokenizer files copied, and
 * quantization.json (this report). The folder is written as one unit (writeFolderAtomic): an export
 * that fails part-way leaves whatever was at `out` before as it was.
 */
export async function exportInt8(
  modelDir: string,
  out: string,
  data: CalibrationSet,
  o: Int8ExportOptions = {},
): Promise<Int8Report> {
  const src = join(modelDir, 'model.onnx');
  if (!existsSync(src))
    throw new GraftError(`${modelDir}: no model.onnx (give a classifier folder written by graft train)`);
  if (resolve(out) === resolve(modelDir))
    throw new GraftError(`the int8 export would overwrite ${modelDir}: give another output folder`);
  const text = isTextClassifierFolder(modelDir);
  if (text !== 'texts' in data)
    throw new GraftError(
      text
        ? `${modelDir} is a text classifier: calibrate it on texts`
        : `${modelDir} is an image classifier: calibrate it on images`,
    );
  const g = readOnnx(src);
  const pool = 'texts' in data ? data.texts : data.images;
  if (pool.length === 0) throw new GraftError('the calibration set is empty');
  const picked = draw<string | Uint8Array>(pool, o.samples ?? 200, o.seed ?? 0);
  const set: CalibrationSet = 'texts' in data ? { texts: picked as string[] } : { images: picked };
  const bs = o.batchSize ?? 16;
  const r = await quantizeStatic(g, classifierFeeds(modelDir, g, set, bs), o);

  // check: float and int8 on the first calibration batch
  let check = { examples: 0, agreement: 1, maxAbsDiff: 0 };
  const first = await classifierFeeds(
    modelDir,
    g,
    'texts' in set ? { texts: set.texts.slice(0, bs) } : { images: set.images.slice(0, bs) },
    bs,
  )
    [Symbol.asyncIterator]()
    .next();
  if (!first.done) {
    const name = g.outputs[0]!.name;
    const sf = await Session.fromGraph(g, o.runtime ?? {}, 'float model');
    const sq = await Session.fromBytes(encodeOnnx(r.graph), o.runtime ?? {}, 'int8 model');
    try {
      const a = (await sf.run(first.value, [name]))[name]!,
        q = (await sq.run(first.value, [name]))[name]!;
      const pa = argmaxRows(a),
        pq = argmaxRows(q);
      let m = 0;
      const da = a.data as Float32Array,
        dq = q.data as Float32Array;
      for (let i = 0; i < da.length; i++) m = Math.max(m, Math.abs(da[i]! - dq[i]!));
      check = { examples: pa.length, agreement: pa.filter((p, i) => p === pq[i]).length / pa.length, maxAbsDiff: m };
    } finally {
      await sf.release();
      await sq.release();
    }
  }

  // the folder is staged complete and swapped in as one unit: a failure (full disk, kill) part-way
  // leaves a previous export at `out` as it was, never old and new files mixed
  const bytes = encodeOnnx(r.graph);
  const dst = join(out, 'model.onnx');
  const names: string[] = ['model.onnx'];
  const fl = statSync(src).size;
  const report: Int8Report = {
    path: dst,
    kind: text ? 'text' : 'image',
    method: r.method,
    activations: r.activations,
    calibrationExamples: r.examples,
    calibrationSeconds: r.calibrationSeconds,
    summary: r.summary,
    bytes: { float: fl, int8: bytes.length, ratio: fl / bytes.length },
    check,
    files: [],
  };
  writeFolderAtomic(
    out,
    (stage) => {
      atomicWrite(join(stage, 'model.onnx'), bytes);
      for (const f of readdirSync(modelDir)) {
        if (f === 'model.onnx' || f === 'model.onnx.data' || f.startsWith('report.') || f === 'quantization.json')
          continue;
        const p = join(modelDir, f);
        if (!statSync(p).isFile()) continue;
        atomicWrite(join(stage, f), readFileSync(p));
        names.push(f);
      }
      if (!names.includes('labels.json')) {
        atomicWrite(
          join(stage, 'labels.json'),
          new TextEncoder().encode(JSON.stringify(getLabels(g) ?? [], null, 2) + '\n'),
        );
        names.push('labels.json');
      }
      report.files = [...names, 'quantization.json'].map((f) => join(out, f));
      atomicWrite(join(stage, 'quantization.json'), new TextEncoder().encode(JSON.stringify(report, null, 2) + '\n'));
    },
    { replaces: [...MODEL_FOLDER_FILES, 'quantization.json'] },
  );
  return report;
}
