/**
 * Key/value-cached decoding. From a decoder graph that re-reads its whole prefix (GPT-2-style causal LM
 * exports: input_ids, attention_mask → logits; or Graft's encoder-decoder from seq2seq.ts) this module
 * builds, by graph rewrite, the two graphs Optimum/Transformers.js ship as decoder_model.onnx and
 * decoder_with_past_model.onnx:
 *
 *   prefill: the original graph, plus outputs present.{i}.key/value (each self-attention block's keys
 *            and values after the split into heads, [batch, heads, seq, head_dim]) and, for an
 *            encoder-decoder, the values the decoder reads from the encoder side (computed once);
 *   step:    inputs past_key_values.{i}.key/value, position_ids and an attention_mask over past+new
 *            positions; K and V are the past concatenated with the new tokens' along the sequence axis,
 *            the position-embedding lookup reads position_ids, and the causal mask is rebuilt as
 *            [new, past+new]; outputs the next-token logits and present.{i}.key/value.
 *
 * The attention subgraph is found by pattern: Softmax over MatMul(Q, Transpose(K)) (through scale,
 * mask and cast ops), then MatMul(probabilities, V); a block whose K does not depend on the decoder's
 * tokens (cross-attention) is left alone. A graph that does not match is reported with the reason, and
 * every rewrite is checked numerically against the uncached graph on a probe batch before it is used.
 * The step graph is then specialized to one new token per row (`specializeStep`: shape arithmetic folded
 * into constants from probe runs, no causal mask), which cuts GPT-2-mini's step from 855 nodes to 198;
 * if the specialized graph fails the check, the step graph as rewritten is used.
 * Model folders that already ship a cached decoder (decoder_model_merged.onnx with use_cache_branch,
 * decoder_with_past_model.onnx) are used as they are (`shippedDecoder`).
 *
 * KvDecoder runs either kind: start a batch (prefill), step it one token per row, drop finished rows.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { attrInt, attrInts, type Graph, type Node } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { readOnnx } from '../formats/onnx.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';

/** Names of the decoder-side inputs of a graph. */
export interface DecoderInputs {
  /** Token ids of the decoder (GPT-2: input_ids; seq2seq: decoder_input_ids). */
  ids: string;
  /** The decoder's attention mask (GPT-2: attention_mask; seq2seq: decoder_attention_mask). */
  mask: string;
  /** Inputs of the encoder side, computed once per batch (seq2seq: input_ids, attention_mask). */
  encoder?: string[];
}

export const LM_INPUTS: DecoderInputs = { ids: 'input_ids', mask: 'attention_mask' };
export const SEQ2SEQ_INPUTS: DecoderInputs = {
  ids: 'decoder_input_ids',
  mask: 'decoder_attention_mask',
  encoder: ['input_ids', 'attention_mask'],
};

export const pastKey = (i: number) => `past_key_values.${i}.key`;
export const pastValue = (i: number) => `past_key_values.${i}.value`;
export const presentKey = (i: number) => `present.${i}.key`;
export const presentValue = (i: number) => `present.${i}.value`;
const NEXT = 'next_logits';
const LAST = 'last_position';
const POSITIONS = 'position_ids';

/** The graphs of a successful rewrite (not yet checked numerically: KvDecoder.fromGraph does that). */
export interface KvRewrite {
  prefill: Graph;
  /** Step graph without its encoder-side inputs typed yet (they are typed from the prefill's outputs). */
  step: Graph;
  layers: number;
  /** Values computed on the encoder side that the step graph takes as inputs (seq2seq only). */
  encoderValues: string[];
  inputs: DecoderInputs;
  /** The step graph's attention-visibility value (causal ∧ mask) and the mask-only part it reduces to for one new token. */
  visibility: { allowed: string; visible: string };
}

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Where', 'Cast']);
const PASS = new Set(['Unsqueeze', 'Reshape', 'Cast', 'Squeeze', 'Expand', 'Slice', 'Identity']);

/** Each row's logits at its last_position, as the output next_logits. */
function gatherLast(g: Graph, logits: string): string {
  g.nodes.push({
    name: 'kv/next_logits',
    opType: 'GatherND',
    domain: '',
    inputs: [logits, LAST],
    outputs: [NEXT],
    attrs: { batch_dims: A.i(1) },
  });
  return NEXT;
}

/** Values depending (transitively) on any of `roots`. */
function dependents(g: Graph, roots: Iterable<string>): Set<string> {
  const dep = new Set(roots);
  for (const n of g.topoSort()) if (n.inputs.some((i) => i && dep.has(i))) for (const o of n.outputs) dep.add(o);
  return dep;
}

/**
 * Rewrite a decoder graph for cached decoding. Returns the graphs, or a reason why the graph does not
 * match the attention pattern this rewrite knows (the caller then decodes without a cache).
 */
export function kvRewrite(model: Graph, inputs: DecoderInputs = LM_INPUTS): KvRewrite | { reason: string } {
  const g = model.clone();
  const names = g.dataInputs().map((v) => v.name);
  for (const need of [inputs.ids, inputs.mask, ...(inputs.encoder ?? [])])
    if (!names.includes(need)) return { reason: `the graph has no '${need}' input` };
  if (names.some((n) => n.startsWith('past_key_values.'))) return { reason: 'the graph already takes past_key_values' };
  const logits = g.outputs[0]?.name;
  if (!logits) return { reason: 'the graph has no outputs' };
  const prod = g.producers();
  const cons = g.consumers();
  const dep = dependents(g, [inputs.ids]);
  const inputSet = new Set(names);
  const constMemo = new Map<string, boolean>();
  const isConst = (v: string): boolean => {
    const hit = constMemo.get(v);
    if (hit !== undefined) return hit;
    const p = prod.get(v);
    const r =
      g.initializers.has(v) ||
      (!p
        ? !inputSet.has(v)
        : p.opType === 'Constant' || (p.inputs.length > 0 && p.inputs.every((i) => !i || isConst(i))));
    constMemo.set(v, r);
    return r;
  };
  const reachesScores = (v: string, depth: number): boolean => {
    const p = prod.get(v);
    if (!p) return false;
    if (p.opType === 'MatMul') return p.inputs.every((i) => !isConst(i));
    return depth > 0 && ELEMENTWISE.has(p.opType) && p.inputs.some((i) => i && reachesScores(i, depth - 1));
  };

  interface Block {
    scores: Node;
    pv: Node;
    kT: string;
    k: string;
    v: string;
    maskAdds: [Node, number][];
    maskWheres: Node[];
  }
  const blocks: Block[] = [];
  const order = new Map(g.topoSort().map((n, i) => [n, i]));
  for (const sm of g.nodes.filter((n) => n.opType === 'Softmax' && dep.has(n.inputs[0]!))) {
    // back from the softmax to Q·Kᵀ, through scale, mask and cast ops
    const maskAdds: [Node, number][] = [],
      maskWheres: Node[] = [];
    let cur = sm.inputs[0]!;
    let scores: Node | undefined;
    for (let hops = 0; hops < 8; hops++) {
      const p = prod.get(cur);
      if (!p) break;
      if (p.opType === 'MatMul') {
        scores = p;
        break;
      }
      if (!ELEMENTWISE.has(p.opType)) break;
      const path = p.inputs.findIndex((i) => i && reachesScores(i, 8));
      if (path < 0) break;
      for (let k = 0; k < p.inputs.length; k++) {
        const x = p.inputs[k]!;
        if (k === path || !x || isConst(x)) continue;
        if (p.opType === 'Add') maskAdds.push([p, k]);
        else if (p.opType === 'Where' && k === 0) maskWheres.push(p);
        else
          return {
            reason: `attention block before '${sm.name}': ${p.opType} '${p.name}' mixes a non-constant input into the scores in a way this rewrite does not know`,
          };
      }
      cur = p.inputs[path]!;
    }
    if (!scores) return { reason: `softmax '${sm.name}' does not follow a MatMul of queries and keys` };
    const kT = scores.inputs[1]!;
    if (!dep.has(kT)) continue; // cross-attention: keys from the encoder, nothing to cache
    if (!maskAdds.length && !maskWheres.length)
      return { reason: `attention block '${scores.name}' has no mask (not a causal decoder?)` };
    // forward from the softmax to probabilities·V
    let pv: Node | undefined;
    let out = sm.outputs[0]!;
    for (let hops = 0; hops < 4 && !pv; hops++) {
      const users = cons.get(out) ?? [];
      if (users.length !== 1) break;
      const u = users[0]!;
      if (u.opType === 'MatMul' && u.inputs[0] === out) pv = u;
      else if (u.opType === 'Cast' || u.opType === 'Identity' || u.opType === 'Dropout') out = u.outputs[0]!;
      else break;
    }
    if (!pv) return { reason: `the attention probabilities of '${sm.name}' do not feed a MatMul with V` };
    const t = prod.get(kT);
    const perm = t?.opType === 'Transpose' && t.attrs['perm']?.type === 'ints' ? t.attrs['perm'].value : undefined;
    if (!t || !perm || perm.length !== 4)
      return {
        reason: `the keys of '${scores.name}' are not a 4-D Transpose (the split into heads was not recognized)`,
      };
    blocks.push({ scores, pv, kT, k: t.inputs[0]!, v: pv.inputs[1]!, maskAdds, maskWheres });
  }
  if (!blocks.length)
    return { reason: 'no self-attention block (Softmax over MatMul of queries and keys) depends on the tokens' };
  blocks.sort((a, b) => order.get(a.scores)! - order.get(b.scores)!);

  // present.{i}.key/value in [batch, heads, seq, head_dim], in the prefill graph and the step graph alike
  const b = new Builder(g, 'kv/');
  const kv = blocks.map((bl, i) => {
    const perm = (prod.get(bl.kT)!.attrs['perm'] as { value: number[] }).value;
    const q = [perm[0]!, perm[1]!, perm[3]!, perm[2]!];
    const k = q.every((x, j) => x === j) ? bl.k : b.transpose(bl.k, q);
    return { k, v: bl.v, i };
  });
  const prefill = g.clone();
  prefill.inputs.push({ name: LAST, dtype: 'int64', shape: ['batch', 1] });
  prefill.outputs = [{ name: gatherLast(prefill, logits), dtype: 'float32', shape: ['batch', null] }];
  for (const { k, v, i } of kv) {
    prefill.nodes.push({
      name: `kv/present_${i}_key`,
      opType: 'Identity',
      domain: '',
      inputs: [k],
      outputs: [presentKey(i)],
      attrs: {},
    });
    prefill.nodes.push({
      name: `kv/present_${i}_value`,
      opType: 'Identity',
      domain: '',
      inputs: [v],
      outputs: [presentValue(i)],
      attrs: {},
    });
    prefill.outputs.push(
      { name: presentKey(i), dtype: 'float32', shape: ['batch', null, 'sequence', null] },
      { name: presentValue(i), dtype: 'float32', shape: ['batch', null, 'sequence', null] },
    );
  }

  // step graph: past concatenated along the sequence axis
  for (const { k, v, i } of kv) {
    const bl = blocks[i]!;
    for (const [name, kind] of [
      [pastKey(i), 'past_sequence'],
      [pastValue(i), 'past_sequence'],
    ] as const)
      g.inputs.push({ name, dtype: 'float32', shape: ['batch', null, kind, null] });
    g.nodes.push({
      name: `kv/concat_${i}_key`,
      opType: 'Concat',
      domain: '',
      inputs: [pastKey(i), k],
      outputs: [presentKey(i)],
      attrs: { axis: A.i(2) },
    });
    g.nodes.push({
      name: `kv/concat_${i}_value`,
      opType: 'Concat',
      domain: '',
      inputs: [pastValue(i), v],
      outputs: [presentValue(i)],
      attrs: { axis: A.i(2) },
    });
    bl.scores.inputs[1] = b.transpose(presentKey(i), [0, 1, 3, 2]);
    bl.pv.inputs[1] = presentValue(i);
  }
  // positions: the position-embedding lookup reads position_ids [batch, new]
  const maskDep = dependents(g, [inputs.ids, inputs.mask]);
  const origin = (v: string): string => {
    let cur = v;
    for (let hops = 0; hops < 8; hops++) {
      const p = prod.get(cur);
      if (!p || !PASS.has(p.opType)) return cur;
      cur = p.inputs[0]!;
    }
    return cur;
  };
  const posGathers = g.nodes.filter(
    (n) =>
      n.opType === 'Gather' &&
      g.initializers.get(n.inputs[0]!)?.dims.length === 2 &&
      maskDep.has(n.inputs[1]!) &&
      origin(n.inputs[1]!) !== inputs.ids,
  );
  if (posGathers.length !== 1)
    return {
      reason: posGathers.length
        ? `${posGathers.length} position-embedding lookups found, expected one`
        : 'no learned position embedding (Gather of a table by positions made from the tokens) found',
    };
  posGathers[0]!.inputs[1] = POSITIONS;
  g.inputs.push({ name: POSITIONS, dtype: 'int64', shape: ['batch', 'sequence'] });
  // the causal mask over [new, past + new]: key slot j is visible to new token i when j ≤ past + i and the mask says so
  const shapeAt = (x: string, axis: number) => b.op('Gather', [b.shapeOf(x), b.i64(axis)], { axis: A.i(0) });
  const total = shapeAt(inputs.mask, 1),
    fresh = shapeAt(inputs.ids, 1);
  const kpos = b.op('Range', [b.i64(0), total, b.i64(1)]);
  const qpos = b.op('Range', [b.sub(total, fresh), total, b.i64(1)]);
  const causal = b.op('LessOrEqual', [b.unsqueeze(kpos, [0]), b.unsqueeze(qpos, [1])]);
  const visible = b.op('Cast', [b.unsqueeze(inputs.mask, [1, 2])], { to: A.i(9) });
  const allowed = b.op('And', [causal, visible], {}, 'allowed');
  const bias = b.op('Where', [allowed, b.f32(0), b.f32(-3.4028234663852886e38)], {}, 'mask_bias');
  for (const bl of blocks) {
    for (const [n, k] of bl.maskAdds) n.inputs[k] = bias;
    for (const n of bl.maskWheres) n.inputs[0] = allowed;
  }
  g.inputs.push({ name: LAST, dtype: 'int64', shape: ['batch', 1] });
  g.outputs = [{ name: gatherLast(g, logits), dtype: 'float32', shape: ['batch', null] }];
  for (const { i } of kv)
    g.outputs.push(
      { name: presentKey(i), dtype: 'float32', shape: ['batch', null, 'total_sequence', null] },
      { name: presentValue(i), dtype: 'float32', shape: ['batch', null, 'total_sequence', null] },
    );
  g.nodes = g.topoSort();
  g.prune();
  // the mask input must now be read by the new mask only
  const mine = new Set(b.emitted);
  const stray = g.nodes.find((n) => !mine.has(n) && n.inputs.includes(inputs.mask));
  if (stray)
    return {
      reason: `the attention mask is also used by '${stray.name}' (${stray.opType}), which this rewrite does not know how to extend to past positions`,
    };

  // encoder side: values the decoder reads that depend only on encoder inputs become step inputs
  let encoderValues: string[] = [];
  let step = g;
  if (inputs.encoder?.length) {
    const decDep = dependents(g, [
      inputs.ids,
      inputs.mask,
      POSITIONS,
      ...kv.flatMap(({ i }) => [pastKey(i), pastValue(i)]),
    ]);
    const encDep = dependents(g, inputs.encoder);
    const frontier = new Set<string>();
    for (const n of g.nodes)
      if (n.outputs.some((o) => decDep.has(o)))
        for (const x of n.inputs) if (x && encDep.has(x) && !decDep.has(x)) frontier.add(x);
    encoderValues = [...frontier].sort();
    step = g.cutAfter(
      encoderValues,
      encoderValues.map((name) => ({ name })),
    );
    for (const e of inputs.encoder)
      if (step.inputs.some((v) => v.name === e))
        return { reason: `the decoder reads the encoder input '${e}' directly` };
    step.inputs.push(
      ...g.inputs.filter(
        (v) =>
          !step.inputs.some((s) => s.name === v.name) &&
          !inputs.encoder!.includes(v.name) &&
          !g.initializers.has(v.name) &&
          step.nodes.some((n) => n.inputs.includes(v.name)),
      ),
    );
    for (const v of encoderValues) {
      prefill.nodes.push({
        name: `kv/encoder_${v}`,
        opType: 'Identity',
        domain: '',
        inputs: [v],
        outputs: [`encoder/${v}`],
        attrs: {},
      });
      prefill.outputs.push({ name: `encoder/${v}` });
    }
  }
  prefill.nodes = prefill.topoSort();
  prefill.prune();
  return { prefill, step, layers: kv.length, encoderValues, inputs, visibility: { allowed, visible } };
}

/** What specializeStep did (node counts before and after, values folded into constants). */
export interface StepSpecialization {
  graph: Graph;
  nodesBefore: number;
  nodesAfter: number;
  /** Shape values replaced by constants. */
  folded: number;
  /** Transposes that only move axes of size 1, now Reshapes. */
  transposes: number;
}

const SHAPE_SOURCES = new Set(['Shape', 'Size']);
/** Largest shape value folded into a constant (elements). */
const FOLD_LIMIT = 4096;

function sameTensor(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.dims.length !== b.dims.length || a.dims.some((d, i) => d !== b.dims[i])) return false;
  const x = a.data as ArrayLike<unknown>,
    y = b.data as ArrayLike<unknown>;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * The step graph of a rewrite specialized to what KvDecoder.step feeds it: one new token per row.
 *  - The causal mask reduces to the attention mask (one new token sees every earlier slot), so the
 *    Range/LessOrEqual/And construction over [new, past + new] goes.
 *  - The export's shape arithmetic (values computed from Shape/Size and constants alone: the
 *    Shape → Gather → Unsqueeze → Concat chains around every Reshape) is evaluated on `probes`, step
 *    feeds that differ in batch size, past length and (seq2seq) source length. A value equal in every
 *    probe depends on none of those and becomes a constant; a Reshape target that differs in exactly one
 *    entry (the batch size) becomes a constant with -1 there (onnxruntime infers it from the element
 *    count, which is the same value). Everything else is left as it was.
 * The result is checked numerically by KvDecoder.fromGraph before it is used.
 */
export async function specializeStep(
  r: KvRewrite,
  probes: Feeds[],
  runtime?: RuntimeOptions,
): Promise<StepSpecialization> {
  if (probes.length < 2) throw new GraftError('specializeStep needs at least two probe feeds of different sizes');
  const g = r.step.clone();
  const nodesBefore = g.nodes.length;
  for (const v of g.inputs) {
    if (v.name === r.inputs.ids || v.name === POSITIONS) v.shape = ['batch', 1];
    else if (v.name === r.inputs.mask) v.shape = ['batch', 'total_sequence'];
  }
  const and = g.nodes.find((n) => n.outputs[0] === r.visibility.allowed);
  if (and) Object.assign(and, { opType: 'Identity', inputs: [r.visibility.visible], attrs: {} });
  g.nodes = g.topoSort();
  g.prune();

  // values computed from shapes and constants alone, and those of them that other values read
  const consts = new Set(g.initializers.keys());
  const derived = new Set<string>();
  for (const n of g.nodes) {
    const ins = n.inputs.filter((i) => i);
    if (n.opType === 'Constant' || (ins.length && ins.every((i) => consts.has(i))))
      n.outputs.forEach((o) => consts.add(o));
    else if (
      SHAPE_SOURCES.has(n.opType) ||
      (ins.length && ins.every((i) => derived.has(i) || consts.has(i)) && ins.some((i) => derived.has(i)))
    )
      for (const o of n.outputs) if (o) derived.add(o);
  }
  const frontier = new Set<string>();
  for (const n of g.nodes)
    if (!n.outputs.every((o) => !o || derived.has(o)))
      for (const i of n.inputs) if (i && derived.has(i)) frontier.add(i);
  const wanted = [...frontier].filter((v) => !g.outputs.some((o) => o.name === v));

  // Reshapes whose target is shape arithmetic or constant, and Transposes: their sizes in the probes
  // decide constant targets (and which Transposes only move axes of size 1, i.e. are Reshapes)
  const isKnown = (v: string) => derived.has(v) || consts.has(v);
  const reshapes = g.nodes.filter(
    (n) => n.opType === 'Reshape' && isKnown(n.inputs[1]!) && attrInt(n, 'allowzero', 0) === 0,
  );
  const transposes = g.nodes.filter((n) => n.opType === 'Transpose');
  const probeGraph = g.clone();
  const produced = new Set(g.nodes.flatMap((n) => n.outputs));
  probeGraph.outputs = [
    ...new Set([
      ...wanted,
      ...reshapes.map((n) => n.outputs[0]!),
      ...transposes.flatMap((n) => [n.inputs[0]!, n.outputs[0]!]),
    ]),
  ]
    .filter((v) => produced.has(v))
    .map((name) => ({ name }));
  probeGraph.prune();
  const session = await Session.fromGraph(
    probeGraph,
    { ...runtime, optimization: 'disabled' },
    `${g.name} (shape probe)`,
  );
  let results: Record<string, Tensor>[];
  try {
    results = [];
    for (const f of probes) results.push(await session.run(f));
  } finally {
    await session.release();
  }
  const cons = g.consumers();
  const taken = g.allNames();
  const constant = (t: Tensor, base: string): string => {
    const name = g.uniqueName(`kv/fold/${base}`, taken);
    g.initializers.set(name, { dtype: t.dtype, dims: [...t.dims], data: (t.data as BigInt64Array).slice() });
    return name;
  };
  let folded = 0,
    asReshape = 0;
  for (const v of wanted) {
    const ts = results.map((x) => x[v]!);
    const t0 = ts[0]!;
    if (t0.data.length > FOLD_LIMIT || typeof t0.data[0] === 'string' || !ts.every((x) => sameTensor(x, t0))) continue;
    const name = constant(t0, v);
    for (const n of cons.get(v) ?? []) n.inputs = n.inputs.map((i) => (i === v ? name : i));
    folded++;
  }
  // a target read off the probes' output sizes: the sizes equal in every probe, -1 for the one that varies
  const target = (out: string): Tensor | undefined => {
    const dims = results.map((x) => x[out]!.dims);
    if (!dims.every((d) => d.length === dims[0]!.length)) return undefined;
    const varying = dims[0]!.map((_, k) => k).filter((k) => dims.some((d) => d[k] !== dims[0]![k]));
    if (varying.length > 1 || dims[0]!.some((d, k) => !varying.includes(k) && !(d > 0))) return undefined;
    return {
      dtype: 'int64',
      dims: [dims[0]!.length],
      data: BigInt64Array.from(dims[0]!, (d, k) => (varying.includes(k) ? -1n : BigInt(d))),
    };
  };
  for (const n of reshapes) {
    const t = target(n.outputs[0]!);
    if (!t) continue;
    n.inputs = [n.inputs[0]!, constant(t, n.outputs[0]!)];
    folded++;
  }
  for (const n of transposes) {
    const perm = attrInts(n, 'perm');
    const t = target(n.outputs[0]!);
    if (!perm || !t) continue;
    if (!results.every((x) => x[n.inputs[0]!])) continue;
    const big = perm.filter((axis) => results.some((x) => x[n.inputs[0]!]!.dims[axis] !== 1));
    if (big.some((axis, k) => k > 0 && axis < big[k - 1]!)) continue;
    Object.assign(n, { opType: 'Reshape', inputs: [n.inputs[0]!, constant(t, n.outputs[0]!)], attrs: {} });
    asReshape++;
  }
  // consecutive Reshapes (the first read by the second only) are one Reshape
  const readers = g.consumers();
  const graphOut = new Set(g.outputs.map((o) => o.name));
  const prod = g.producers();
  for (const n of g.topoSort()) {
    if (n.opType !== 'Reshape' || !g.initializers.has(n.inputs[1]!)) continue;
    const shape = g.initializers.get(n.inputs[1]!)!.data as BigInt64Array;
    if (shape.some((d) => d === 0n)) continue;
    for (
      let p = prod.get(n.inputs[0]!);
      p?.opType === 'Reshape' && (readers.get(p.outputs[0]!) ?? []).length === 1 && !graphOut.has(p.outputs[0]!);
      p = prod.get(n.inputs[0]!)
    )
      n.inputs[0] = p.inputs[0]!;
  }
  g.nodes = g.topoSort();
  g.prune();
  return { graph: g, nodesBefore, nodesAfter: g.nodes.length, folded, transposes: asReshape };
}

/** A cached decoder shipped in a model folder (Optimum / Transformers.js layout), if there is one. */
export function shippedDecoder(dir: string): { path: string; kind: 'merged' | 'with-past' } | undefined {
  for (const sub of ['onnx', '.'])
    for (const [file, kind] of [
      ['decoder_model_merged.onnx', 'merged'],
      ['decoder_with_past_model.onnx', 'with-past'],
    ] as const) {
      const p = join(dir, sub, file);
      if (existsSync(p)) return { path: p, kind };
    }
  return undefined;
}

/** Decoding state of one batch: the cache, each row's visible slots and next position. */
export interface KvState {
  past: Tensor[];
  /** Per row: 1 for cache slots that hold a real token, 0 for padding. */
  mask: number[][];
  /** Per row: the position of the next token fed. */
  pos: number[];
  /** Encoder-side values (seq2seq), batch-first. */
  encoder: Record<string, Tensor>;
}

/** Rows `keep` of a batch-first tensor (other tensors are returned as they are). */
function selectRows(t: Tensor, batch: number, keep: number[]): Tensor {
  if (t.dims[0] !== batch || keep.length === batch) return t;
  const per = t.dims.slice(1).reduce((a, c) => a * c, 1);
  const src = t.data as Float32Array;
  const out = new (src.constructor as Float32ArrayConstructor)(keep.length * per);
  keep.forEach((r, k) => out.set(src.subarray(r * per, (r + 1) * per), k * per));
  return { dtype: t.dtype, dims: [keep.length, ...t.dims.slice(1)], data: out };
}

/** Runs a prefill + step pair (built by kvRewrite) or a shipped cached decoder. */
export class KvDecoder {
  private constructor(
    private prefillSession: Session | undefined,
    private stepSession: Session,
    private inputs: DecoderInputs,
    readonly layers: number,
    private heads: number,
    private headDim: number,
    private encoderValues: string[],
    private stepHasPositions: boolean,
    private useCacheBranch: string | undefined,
    /** How the cache was obtained, for messages. */
    readonly source: string,
  ) {}

  /**
   * Build from an uncached decoder graph: rewrite, specialize the step graph to one new token
   * (specializeStep; `specialize: false` keeps it as rewritten, for comparison), load both sessions,
   * and check on a probe batch that cached logits equal the uncached ones. Returns the reason instead
   * when any of it fails.
   */
  static async fromGraph(
    model: Graph,
    inputs: DecoderInputs = LM_INPUTS,
    runtime?: RuntimeOptions,
    o: { specialize?: boolean } = {},
  ): Promise<KvDecoder | { reason: string }> {
    const r = kvRewrite(model, inputs);
    if ('reason' in r) return r;
    let prefill: Session | undefined, step: Session | undefined;
    try {
      prefill = await Session.fromGraph(r.prefill, runtime, `${model.name} (prefill)`);
      // a probe run gives the cache's head count and width and the encoder values' types
      const probe = await prefill.run(KvDecoder.probeFeeds(inputs, [[1, 2]], [[1, 2, 3, 4]]));
      const k0 = probe[presentKey(0)]!;
      for (const v of r.encoderValues) {
        const t = probe[`encoder/${v}`]!;
        const info = r.step.inputs.find((x) => x.name === v)!;
        info.dtype = t.dtype;
        info.shape = t.dims.map((_, j) => (j === 0 && t.dims[0] === 1 ? 'batch' : `${v}_${j}`));
      }
      // the step graph specialized to one new token (constant shapes), else as rewritten
      const candidates: { graph: Graph; note: string }[] = [];
      let unspecialized = 'step graph as rewritten';
      if (o.specialize !== false)
        try {
          const spec = await specializeStep(r, await KvDecoder.stepProbes(prefill, r), runtime);
          candidates.push({
            graph: spec.graph,
            note: `step graph specialized to one token: ${spec.nodesBefore} → ${spec.nodesAfter} nodes, ${spec.folded} shape values constant, ${spec.transposes} transposes of size-1 axes as reshapes`,
          });
          unspecialized += ' (the specialized one failed its check)';
        } catch (e) {
          unspecialized += ` (not specialized: ${(e as Error).message})`;
        }
      candidates.push({ graph: r.step, note: unspecialized });
      let diff = NaN;
      for (const c of candidates) {
        step = await Session.fromGraph(c.graph, runtime, `${model.name} (cached step)`);
        const dec = new KvDecoder(
          prefill,
          step,
          inputs,
          r.layers,
          k0.dims[1]!,
          k0.dims[3]!,
          r.encoderValues,
          true,
          undefined,
          `rewritten from the uncached graph; ${c.note}`,
        );
        diff = await dec.verify();
        if (diff <= 1e-3) return dec;
        await step.release();
        step = undefined;
      }
      await prefill.release();
      return {
        reason: `the rewritten graph's logits differ from the uncached graph's by ${diff.toExponential(2)} on a probe batch`,
      };
    } catch (e) {
      await prefill?.release();
      await step?.release();
      return { reason: `the rewritten graph could not be run (${(e as Error).message})` };
    }
  }

  /**
   * Step feeds of different sizes for specializeStep: batch 1, 2, 3 with 3, 5, 9 cached positions
   * (right-padded rows) and, for an encoder-decoder, sources of 4, 7, 5 tokens, from prefill runs.
   */
  static async stepProbes(prefill: Session, r: KvRewrite): Promise<Feeds[]> {
    const probe = new KvDecoder(prefill, prefill, r.inputs, r.layers, 0, 0, r.encoderValues, true, undefined, 'probe');
    const out: Feeds[] = [];
    for (const [batch, past, source] of [
      [1, 3, 4],
      [2, 5, 7],
      [3, 9, 5],
    ] as const) {
      const rows = Array.from({ length: batch }, (_, i) =>
        Array.from({ length: past - i }, (_, j) => ((i * 7 + j) % 5) + 1),
      );
      const enc: Feeds = {};
      if (r.inputs.encoder) {
        const f = KvDecoder.probeFeeds(
          r.inputs,
          [[1]],
          Array.from({ length: batch }, (_, i) => Array.from({ length: source - (i % 2) }, (_, j) => (j % 4) + 1)),
        );
        for (const e of r.inputs.encoder) enc[e] = f[e]!;
      }
      const { state } = await probe.start(rows, enc);
      out.push(
        probe.stepFeeds(
          state,
          rows.map((_, i) => i + 1),
        ),
      );
    }
    return out;
  }

  /** Use a shipped cached decoder (decoder_model_merged.onnx or decoder_with_past_model.onnx) as it is. */
  static async fromShipped(
    g: Graph,
    o: { heads?: number; headDim?: number; runtime?: RuntimeOptions; label?: string } = {},
  ): Promise<KvDecoder> {
    const names = g.dataInputs().map((v) => v.name);
    const layers = names.filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
    if (!layers) throw new GraftError(`${o.label ?? g.name}: no past_key_values.<i>.key inputs: not a cached decoder`);
    for (const need of ['input_ids', 'attention_mask'])
      if (!names.includes(need))
        throw new GraftError(`${o.label ?? g.name}: the cached decoder has no '${need}' input`);
    const shape = g.inputs.find((v) => v.name === pastKey(0))!.shape ?? [];
    const heads = typeof shape[1] === 'number' ? shape[1] : o.heads;
    const headDim = typeof shape[3] === 'number' ? shape[3] : o.headDim;
    if (!heads || !headDim)
      throw new GraftError(
        `${o.label ?? g.name}: the past_key_values inputs do not say the number of heads and their width`,
        'give config.json with n_head and n_embd',
      );
    const logits = g.outputs.find((v) => v.name === 'logits')?.name ?? g.outputs[0]!.name;
    const w = g.clone();
    w.inputs.push({ name: LAST, dtype: 'int64', shape: ['batch', 1] });
    w.outputs = [
      { name: gatherLast(w, logits) },
      ...g.outputs.filter((v) => /^present\.\d+\.(key|value)$/.test(v.name)),
    ];
    if (w.outputs.length !== 1 + 2 * layers)
      throw new GraftError(`${o.label ?? g.name}: expected outputs present.<i>.key/value for ${layers} layers`);
    const step = await Session.fromGraph(w, o.runtime, o.label ?? `${g.name} (cached decoder)`);
    const branch = names.includes('use_cache_branch') ? 'use_cache_branch' : undefined;
    return new KvDecoder(
      undefined,
      step,
      LM_INPUTS,
      layers,
      heads,
      headDim,
      [],
      names.includes(POSITIONS),
      branch,
      `shipped ${o.label ?? 'cached decoder'}`,
    );
  }

  private static probeFeeds(inputs: DecoderInputs, rows: number[][], sources: number[][]): Feeds {
    const f: Feeds = {};
    const pack = (rs: number[][]) => {
      const s = Math.max(...rs.map((r) => r.length));
      const ids = new BigInt64Array(rs.length * s),
        att = new BigInt64Array(rs.length * s);
      rs.forEach((r, i) =>
        r.forEach((t, j) => {
          ids[i * s + j] = BigInt(t);
          att[i * s + j] = 1n;
        }),
      );
      return [
        { dtype: 'int64', dims: [rs.length, s], data: ids },
        { dtype: 'int64', dims: [rs.length, s], data: att },
      ] as Tensor[];
    };
    const [ids, mask] = pack(rows);
    f[inputs.ids] = ids!;
    f[inputs.mask] = mask!;
    if (inputs.encoder) {
      const [sIds, sMask] = pack(sources);
      f[inputs.encoder[0]!] = sIds!;
      f[inputs.encoder[1]!] = sMask!;
    }
    f[LAST] = {
      dtype: 'int64',
      dims: [rows.length, 1],
      data: BigInt64Array.from(rows.map((r) => BigInt(r.length - 1))),
    };
    return f;
  }

  /** Largest |cached − uncached| logit on a probe: two rows of different lengths, prefill then two steps. */
  private async verify(): Promise<number> {
    const full = [
      [5, 1, 4, 2, 3, 1],
      [2, 6, 1, 3],
    ];
    const src = [
      [1, 2, 3, 4, 5],
      [1, 3, 2],
    ];
    const encFeeds: Feeds = {};
    if (this.inputs.encoder) {
      const f = KvDecoder.probeFeeds(this.inputs, [[1]], src);
      encFeeds[this.inputs.encoder[0]!] = f[this.inputs.encoder[0]!]!;
      encFeeds[this.inputs.encoder[1]!] = f[this.inputs.encoder[1]!]!;
    }
    const { logits: first, state } = await this.start([full[0]!.slice(0, 4), full[1]!.slice(0, 2)], encFeeds);
    const got = [first];
    got.push(await this.step(state, [full[0]![4]!, full[1]![2]!]));
    got.push(await this.step(state, [full[0]![5]!, full[1]![3]!]));
    let worst = 0;
    for (let s = 0; s < 3; s++)
      for (let r = 0; r < 2; r++) {
        const len = (r === 0 ? 4 : 2) + s;
        const ref = (
          await this.prefillSession!.run(KvDecoder.probeFeeds(this.inputs, [full[r]!.slice(0, len)], [src[r]!]))
        )[NEXT]!.data as Float32Array;
        const a = got[s]![r]!;
        for (let j = 0; j < ref.length; j++)
          worst = Math.max(worst, Math.abs(ref[j]! - a[j]!) / Math.max(1, Math.abs(ref[j]!)));
      }
    return worst;
  }

  /**
   * Prefill: run the prompts (right-padded), returning each row's next-token logits and the state.
   * `encoder` holds the encoder-side inputs (seq2seq: input_ids, attention_mask of the sources).
   */
  async start(rows: number[][], encoder: Feeds = {}, pad = 0): Promise<{ logits: Float32Array[]; state: KvState }> {
    const n = rows.length;
    const s = Math.max(...rows.map((r) => r.length));
    if (!(s >= 1)) throw new GraftError('every prompt needs at least one token');
    const ids = new BigInt64Array(n * s).fill(BigInt(pad)),
      att = new BigInt64Array(n * s);
    rows.forEach((r, i) =>
      r.forEach((t, j) => {
        ids[i * s + j] = BigInt(t);
        att[i * s + j] = 1n;
      }),
    );
    const feeds: Feeds = {
      ...encoder,
      [this.inputs.ids]: { dtype: 'int64', dims: [n, s], data: ids },
      [this.inputs.mask]: { dtype: 'int64', dims: [n, s], data: att },
      [LAST]: { dtype: 'int64', dims: [n, 1], data: BigInt64Array.from(rows.map((r) => BigInt(r.length - 1))) },
    };
    let res: Record<string, Tensor>;
    if (this.prefillSession) res = await this.prefillSession.run(feeds);
    else {
      Object.assign(feeds, this.emptyPast(n));
      if (this.stepHasPositions)
        feeds[POSITIONS] = {
          dtype: 'int64',
          dims: [n, s],
          data: BigInt64Array.from({ length: n * s }, (_, k) => BigInt(k % s)),
        };
      if (this.useCacheBranch) feeds[this.useCacheBranch] = { dtype: 'bool', dims: [1], data: Uint8Array.of(0) };
      res = await this.stepSession.run(feeds);
    }
    const state: KvState = {
      past: this.presentOf(res),
      mask: rows.map((r) => Array.from({ length: s }, (_, j) => (j < r.length ? 1 : 0))),
      pos: rows.map((r) => r.length),
      encoder: Object.fromEntries(this.encoderValues.map((v) => [v, res[`encoder/${v}`]!])),
    };
    return { logits: this.split(res[NEXT]!, n), state };
  }

  /** The step graph's feeds for one token per row (at its next position); extends each row's mask by one slot. */
  private stepFeeds(state: KvState, tokens: number[]): Feeds {
    const n = tokens.length;
    for (const m of state.mask) m.push(1);
    const t = state.mask[0]!.length;
    const mask = new BigInt64Array(n * t);
    state.mask.forEach((m, r) =>
      m.forEach((x, j) => {
        if (x) mask[r * t + j] = 1n;
      }),
    );
    const feeds: Feeds = {
      ...state.encoder,
      [this.inputs.ids]: { dtype: 'int64', dims: [n, 1], data: BigInt64Array.from(tokens.map(BigInt)) },
      [this.inputs.mask]: { dtype: 'int64', dims: [n, t], data: mask },
      [LAST]: { dtype: 'int64', dims: [n, 1], data: new BigInt64Array(n) },
    };
    state.past.forEach((p, k) => (feeds[k % 2 ? pastValue(k >> 1) : pastKey(k >> 1)] = p));
    if (this.stepHasPositions)
      feeds[POSITIONS] = { dtype: 'int64', dims: [n, 1], data: BigInt64Array.from(state.pos.map(BigInt)) };
    if (this.useCacheBranch) feeds[this.useCacheBranch] = { dtype: 'bool', dims: [1], data: Uint8Array.of(1) };
    return feeds;
  }

  /** Feed one token per row (at its next position); returns each row's next-token logits. */
  async step(state: KvState, tokens: number[]): Promise<Float32Array[]> {
    const res = await this.stepSession.run(this.stepFeeds(state, tokens));
    state.past = this.presentOf(res);
    state.pos = state.pos.map((p) => p + 1);
    return this.split(res[NEXT]!, tokens.length);
  }

  /** Keep only rows `keep` (indices into the current batch), e.g. when the others have finished. */
  keep(state: KvState, keep: number[]): void {
    const n = state.mask.length;
    if (keep.length === n) return;
    state.past = state.past.map((p) => selectRows(p, n, keep));
    state.encoder = Object.fromEntries(Object.entries(state.encoder).map(([k, v]) => [k, selectRows(v, n, keep)]));
    state.mask = keep.map((r) => state.mask[r]!);
    state.pos = keep.map((r) => state.pos[r]!);
  }

  private emptyPast(n: number): Feeds {
    const f: Feeds = {};
    for (let i = 0; i < this.layers; i++)
      for (const name of [pastKey(i), pastValue(i)])
        f[name] = { dtype: 'float32', dims: [n, this.heads, 0, this.headDim], data: new Float32Array(0) };
    return f;
  }

  private presentOf(res: Record<string, Tensor>): Tensor[] {
    const out: Tensor[] = [];
    for (let i = 0; i < this.layers; i++) out.push(res[presentKey(i)]!, res[presentValue(i)]!);
    return out;
  }

  private split(y: Tensor, n: number): Float32Array[] {
    const v = y.dims[y.dims.length - 1]!;
    const data = y.data as Float32Array;
    return Array.from({ length: n }, (_, i) => data.subarray(i * v, (i + 1) * v));
  }

  /** The uncached prefill session, when this decoder was built by rewrite (it is the original graph). */
  get uncached(): Session | undefined {
    return this.prefillSession;
  }

  async release(): Promise<void> {
    await this.prefillSession?.release();
    await this.stepSession.release();
  }
}

/** Load a shipped cached decoder from a model folder, if it has one. */
export async function loadShippedDecoder(
  dir: string,
  o: { heads?: number; headDim?: number; runtime?: RuntimeOptions } = {},
): Promise<KvDecoder | undefined> {
  const s = shippedDecoder(dir);
  if (!s) return undefined;
  return KvDecoder.fromShipped(readOnnx(s.path), { ...o, label: s.path });
}
