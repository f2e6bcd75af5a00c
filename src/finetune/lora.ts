/**
 * LoRA as a graph rewrite: each matched weight W (a MatMul/Gemm weight initializer, or a 1×1
 * convolution's kernel) is replaced, where the node reads it, by
 *
 *   W_eff = W + (α/r) · A·B      (A: [p, r] small random, B: [r, q] zeros, W: [p, q]; a 1×1 kernel
 *                                 [O, I, 1, 1] is treated as [O, I] and reshaped back)
 *
 * so training only A and B (`compileTraining(g, { trainable: { names: params } })`) leaves the base
 * weights frozen and starts exactly at the pretrained model (B = 0). The rewrite is recorded in the
 * graph's metadata (`graft.lora`), and mergeLora folds A·B back into plain weights, leaving a graph
 * with no LoRA nodes, inputs or initializers.
 *
 * A weight reached through Transpose/Identity nodes from an initializer (PyTorch exports
 * `MatMul(x, Transpose(W))`) is adapted at the initializer: the delta is added before the Transpose.
 */
import type { Graph, Node } from '../graph/graph.js';
import { Builder } from '../graph/builder.js';
import { numel, type Tensor } from '../graph/tensor.js';
import { Rng } from '../util/random.js';
import { userRegExp } from '../train/training-graph.js';
import { GraftError } from '../util/errors.js';

export type LoraTarget = 'MatMul' | 'Gemm' | 'Conv1x1';

export interface LoraOptions {
  rank: number;
  /** Scale numerator: the delta is (alpha / rank) · A·B (default alpha = rank, a scale of 1). */
  alpha?: number;
  /** Only weights whose initializer name or consuming node name matches (default: all of `targets`). */
  match?: RegExp | string;
  targets?: LoraTarget[];
  /** Weight initializer names never to adapt (e.g. a new classifier head that trains in full). */
  exclude?: string[];
  /** Seed for A's initial values (default 0). */
  seed?: number;
}

export interface LoraResult {
  graph: Graph;
  /** The new trainable initializers (A and B of every adapted weight). */
  params: string[];
}

/** One adapted weight, as recorded in the `graft.lora` metadata. */
export interface LoraSite {
  /** The node whose input was rewritten, and which input. */
  node: string;
  input: number;
  weight: string;
  a: string;
  b: string;
  scale: number;
  /** The value that replaced `weight` at the site (W_eff). */
  effective: string;
  /** Names of the nodes the rewrite added. */
  nodes: string[];
}

export const LORA_METADATA = 'graft.lora';

const PASS_THROUGH = new Set(['Transpose', 'Identity']);

/** The site (node, input index) where the weight feeding `n.inputs[i]` is read from an initializer. */
function findSite(g: Graph, prod: Map<string, Node>, n: Node, i: number): { node: Node; input: number } | undefined {
  let node = n,
    input = i;
  for (let hops = 0; hops < 4; hops++) {
    const v = node.inputs[input];
    if (!v) return undefined;
    if (g.initializers.has(v)) return { node, input };
    const p = prod.get(v);
    if (!p || !PASS_THROUGH.has(p.opType)) return undefined;
    node = p;
    input = 0;
  }
  return undefined;
}

function targetOf(g: Graph, n: Node): { target: LoraTarget; input: number } | undefined {
  if (n.opType === 'MatMul') return { target: 'MatMul', input: 1 };
  if (n.opType === 'Gemm') return { target: 'Gemm', input: 1 };
  if (n.opType === 'Conv') {
    const group = n.attrs['group'];
    if (group && group.type === 'int' && group.value !== 1) return undefined;
    const w = g.initializers.get(n.inputs[1] ?? '');
    if (!w || w.dims.length < 3 || !w.dims.slice(2).every((d) => d === 1)) return undefined;
    return { target: 'Conv1x1', input: 1 };
  }
  return undefined;
}

/** Rewrite matched weights into W + (α/r)·A·B. The input graph is not modified. */
export function addLora(graph: Graph, o: LoraOptions): LoraResult {
  const r = o.rank;
  if (!Number.isInteger(r) || r < 1) throw new GraftError(`LoRA rank must be a positive integer, got ${r}`);
  const alpha = o.alpha ?? r;
  if (!Number.isFinite(alpha)) throw new GraftError(`LoRA alpha must be a number, got ${o.alpha}`);
  const scale = alpha / r;
  const targets = new Set<LoraTarget>(o.targets ?? ['MatMul', 'Gemm', 'Conv1x1']);
  const re =
    o.match === undefined ? undefined : typeof o.match === 'string' ? userRegExp(o.match, '--lora-match') : o.match;
  const g = graph.clone();
  const prod = g.producers();
  const rng = new Rng(o.seed ?? 0);
  const b = new Builder(g, 'lora/');
  const sites: LoraSite[] = [];
  const seen = new Set<string>();
  const existing = loraSites(graph);
  const params: string[] = [];
  for (const n of [...g.nodes]) {
    const t = targetOf(g, n);
    if (!t || !targets.has(t.target)) continue;
    const site = findSite(g, prod, n, t.input);
    if (!site) continue;
    const weight = site.node.inputs[site.input]!;
    const W = g.initializers.get(weight)!;
    if (W.dtype !== 'float32') continue;
    if (t.target !== 'Conv1x1' && W.dims.length !== 2) continue;
    if (re && !re.test(weight) && !re.test(n.name)) continue;
    if (o.exclude?.includes(weight)) continue;
    const key = `${site.node.name}\u0000${site.input}`;
    if (seen.has(key) || existing.some((s) => s.node === site.node.name && s.input === site.input)) continue;
    seen.add(key);
    const [p, q] = [W.dims[0]!, numel(W.dims.slice(1))];
    if (r > Math.min(p, q))
      throw new GraftError(
        `LoRA rank ${r} exceeds the smaller side of '${weight}' [${W.dims}]; use a rank of at most ${Math.min(p, q)}`,
      );
    const std = 1 / Math.sqrt(p);
    const aName = b.name(`${weight}/lora_A`);
    const bName = b.name(`${weight}/lora_B`);
    g.initializers.set(aName, {
      dtype: 'float32',
      dims: [p, r],
      data: Float32Array.from({ length: p * r }, () => rng.normal() * std),
    });
    g.initializers.set(bName, { dtype: 'float32', dims: [r, q], data: new Float32Array(r * q) });
    const start = b.emitted.length;
    let delta = b.mul(b.op('MatMul', [aName, bName], {}, `${weight}/lora_AB`), b.f32(scale));
    if (W.dims.length !== 2) delta = b.reshape(delta, W.dims);
    const effective = b.op('Add', [weight, delta], {}, `${weight}/lora_effective`);
    site.node.inputs[site.input] = effective;
    sites.push({
      node: site.node.name,
      input: site.input,
      weight,
      a: aName,
      b: bName,
      scale,
      effective,
      nodes: b.emitted.slice(start).map((x) => x.name),
    });
    params.push(aName, bName);
  }
  if (!sites.length)
    throw new GraftError(
      `LoRA: no ${[...targets].join('/')} weight ${re ? `matching /${re.source}/ ` : ''}found in ${graph.name}`,
    );
  // The new nodes read the weights: keep node order topological by placing each site's nodes before it.
  g.nodes = g.topoSort();
  g.metadata[LORA_METADATA] = JSON.stringify([...existing, ...sites]);
  return { graph: g, params };
}

/** The LoRA sites recorded in a graph's metadata (empty when none). */
export function loraSites(g: Graph): LoraSite[] {
  const s = g.metadata[LORA_METADATA];
  return s ? (JSON.parse(s) as LoraSite[]) : [];
}

/** W + scale · A·B, accumulated in float64. */
function merged(W: Tensor, Ax: Tensor, Bx: Tensor, scale: number): Tensor {
  const [p, r] = Ax.dims as [number, number];
  const q = Bx.dims[1]!;
  if (Bx.dims[0] !== r || p * q !== numel(W.dims))
    throw new GraftError(`LoRA: A [${Ax.dims}] and B [${Bx.dims}] do not fit weight [${W.dims}]`);
  const w = W.data as Float32Array,
    a = Ax.data as Float32Array,
    bb = Bx.data as Float32Array;
  const out = new Float32Array(p * q);
  const row = new Float64Array(q);
  for (let i = 0; i < p; i++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const aik = a[i * r + k]!;
      if (aik === 0) continue;
      for (let j = 0; j < q; j++) row[j]! += aik * bb[k * q + j]!;
    }
    for (let j = 0; j < q; j++) out[i * q + j] = w[i * q + j]! + scale * row[j]!;
  }
  return { dtype: 'float32', dims: [...W.dims], data: out };
}

/** Fold every recorded LoRA delta into its weight; the result has no LoRA nodes or initializers. */
export function mergeLora(graph: Graph): Graph {
  const sites = loraSites(graph);
  const g = graph.clone();
  delete g.metadata[LORA_METADATA];
  if (!sites.length) return g;
  for (const s of sites) {
    const [W, Ax, Bx] = [s.weight, s.a, s.b].map((k) => g.initializers.get(k));
    if (!W || !Ax || !Bx)
      throw new GraftError(
        `LoRA merge: initializer '${!W ? s.weight : !Ax ? s.a : s.b}' is missing from ${graph.name}`,
      );
    const site = g.nodes.find((n) => n.name === s.node);
    if (!site || site.inputs[s.input] !== s.effective)
      throw new GraftError(`LoRA merge: node '${s.node}' no longer reads '${s.effective}'`);
    const value = merged(W, Ax, Bx, s.scale);
    const drop = new Set(s.nodes);
    g.nodes = g.nodes.filter((n) => !drop.has(n.name));
    // Overwrite W in place unless something else still reads it (a tied weight); then a new initializer.
    const stillUsed =
      g.nodes.some((n) => n !== site && n.inputs.includes(s.weight)) || g.outputs.some((v) => v.name === s.weight);
    const name = stillUsed ? g.uniqueName(`${s.weight}/merged`) : s.weight;
    g.initializers.set(name, value);
    site.inputs[s.input] = name;
  }
  const loraNames = new Set(sites.flatMap((s) => [s.a, s.b]));
  for (const k of loraNames) g.initializers.delete(k);
  g.inputs = g.inputs.filter((v) => !loraNames.has(v.name));
  g.prune();
  return g;
}
