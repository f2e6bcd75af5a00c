/**
 * Layer groups of a model's trainable parameters, in depth order: the basis of discriminative
 * learning rates (lower rates for earlier groups) and gradual unfreezing (the last group first).
 * Each weight layer (Conv, ConvTranspose, Gemm, MatMul) starts a layer; parameters of other nodes
 * (biases added after a MatMul, BatchNormalization scale and shift, LayerNormalization) join the
 * weight layer before them. A parameter's node is the first node where it meets the data, so a weight
 * reshaped or transposed before its MatMul counts at the MatMul.
 */
import type { Graph } from '../graph/graph.js';
import { GraftError } from '../util/errors.js';

const WEIGHT_OPS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/**
 * The parameters `params` of `g` split into layers in topological order (earliest first); with
 * `groups`, consecutive layers are merged into that many groups of near-equal layer counts.
 */
export function layerGroups(g: Graph, params: string[], groups?: number): string[][] {
  const order = g.topoSort();
  // Values computed from initializers alone (weights reshaped, transposed, cast…).
  const constant = new Set<string>(g.initializers.keys());
  const derivedFrom = new Map<string, Set<string>>();
  for (const p of g.initializers.keys()) derivedFrom.set(p, new Set([p]));
  const home = new Map<string, number>();
  order.forEach((n, i) => {
    const consts = n.inputs.filter((x) => x && constant.has(x));
    const sources = new Set(consts.flatMap((x) => [...(derivedFrom.get(x) ?? [])]));
    const dataIn = n.inputs.some((x) => x && !constant.has(x));
    // no data input (Constant nodes included: a Reshape of a weight by a Constant shape stays constant)
    if (!dataIn) {
      for (const o of n.outputs) {
        constant.add(o);
        derivedFrom.set(o, sources);
      }
      return;
    }
    for (const p of sources) if (!home.has(p)) home.set(p, i);
  });
  const want = new Set(params);
  const layers: { at: number; params: string[] }[] = [];
  const byNode = [...want].filter((p) => home.has(p)).sort((a, b) => home.get(a)! - home.get(b)! || a.localeCompare(b));
  for (const p of byNode) {
    const at = home.get(p)!;
    const op = order[at]!.opType;
    const last = layers[layers.length - 1];
    if (!last || (WEIGHT_OPS.has(op) && last.at !== at)) layers.push({ at, params: [p] });
    else last.params.push(p);
  }
  const missing = params.filter((p) => !home.has(p));
  if (missing.length)
    throw new GraftError(`parameter '${missing[0]}' feeds no node that reads data; it cannot be placed in a layer`);
  if (groups !== undefined && (!Number.isInteger(groups) || groups < 1))
    throw new GraftError(`the number of layer groups must be a positive integer, got ${groups}`);
  if (!groups || groups >= layers.length) return layers.map((l) => l.params);
  const out: string[][] = [];
  for (let k = 0; k < groups; k++) {
    const a = Math.round((k * layers.length) / groups);
    const b = Math.round(((k + 1) * layers.length) / groups);
    out.push(layers.slice(a, b).flatMap((l) => l.params));
  }
  return out;
}

/**
 * Learning-rate multipliers for discriminative fine-tuning: the last group 1, each earlier group
 * `decay` times the next (fastai's discriminative rates; ULMFiT used 1/2.6).
 */
export function discriminativeScales(groups: string[][], decay: number): Map<string, number> {
  if (!(decay > 0 && decay <= 1))
    throw new GraftError(`the learning-rate decay per layer group must be in (0, 1], got ${decay}`);
  const out = new Map<string, number>();
  groups.forEach((grp, i) => {
    const s = decay ** (groups.length - 1 - i);
    for (const p of grp) out.set(p, s);
  });
  return out;
}
