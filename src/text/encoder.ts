/**
 * Encoder graphs for text classification: pooling (mean over the attention mask, or the [CLS]
 * position) added to a BERT-style ONNX encoder with Builder, a Gemm classification head on the
 * pooled output, and the feeds a batch of tokenized texts gives such a graph.
 */
import type { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import type { Feeds } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import type { EncodedBatch } from './tokenizer.js';

export type Pooling = 'mean' | 'cls';

export const POOLED = 'pooled';
export const LOGITS = 'logits';
export const PROBABILITIES = 'probabilities';

/** The encoder's token-level output: 'last_hidden_state', else the first output. */
export function hiddenStateOf(g: Graph): string {
  const o = g.outputs.find((v) => v.name === 'last_hidden_state') ?? g.outputs[0];
  if (!o) throw new GraftError('the text model has no outputs');
  return o.name;
}

/** Is the graph a text encoder (reads input_ids)? */
export function isTextEncoder(g: Graph): boolean {
  return g.inputs.some((i) => i.name === 'input_ids');
}

/**
 * A copy of the encoder whose only output is the pooled sentence vector `pooled` [batch, hidden]:
 * mean of the token states where attention_mask is 1, or the state at position 0 ([CLS]).
 */
export function addPooling(encoder: Graph, pooling: Pooling = 'mean'): Graph {
  const g = encoder.clone();
  const h = hiddenStateOf(g);
  if (!g.inputs.some((i) => i.name === 'attention_mask') && pooling === 'mean')
    throw new GraftError('mean pooling needs an attention_mask input');
  const b = new Builder(g, 'pool/');
  let pooled: string;
  if (pooling === 'cls') {
    pooled = b.op('Gather', [h, b.i64(0)], { axis: A.i(1) });
  } else {
    const m = b.unsqueeze(b.op('Cast', ['attention_mask'], { to: A.i(1) }), [2]); // [B, T, 1]
    const s = b.reduce('ReduceSum', b.mul(h, m), [1], false); // [B, H]
    const c = b.op('Max', [b.reduce('ReduceSum', m, [1], false), b.f32(1e-9)]); // [B, 1]
    pooled = b.div(s, c);
  }
  g.nodes.push({ name: 'pool/out', opType: 'Identity', domain: '', inputs: [pooled], outputs: [POOLED], attrs: {} });
  g.outputs = [{ name: POOLED, dtype: 'float32', shape: [g.inputs[0]?.shape?.[0] ?? 'batch', null] }];
  g.prune();
  return g;
}

/**
 * Encoder + pooling + a Gemm head (W [hidden, classes], b [classes]) → `logits`; with
 * `probabilities`, a Softmax after it as the only output (for export).
 */
export function addClassifierHead(
  pooledGraph: Graph,
  head: { weight: Float32Array; bias: Float32Array; hidden: number; classes: number },
  o: { probabilities?: boolean } = {},
): Graph {
  const g = pooledGraph.clone();
  g.initializers.set('head.weight', {
    dtype: 'float32',
    dims: [head.hidden, head.classes],
    data: Float32Array.from(head.weight),
  });
  g.initializers.set('head.bias', { dtype: 'float32', dims: [head.classes], data: Float32Array.from(head.bias) });
  g.nodes.push({
    name: 'head/gemm',
    opType: 'Gemm',
    domain: '',
    inputs: [POOLED, 'head.weight', 'head.bias'],
    outputs: [LOGITS],
    attrs: {},
  });
  const batch = g.inputs[0]?.shape?.[0] ?? 'batch';
  if (o.probabilities) {
    g.nodes.push({
      name: 'head/softmax',
      opType: 'Softmax',
      domain: '',
      inputs: [LOGITS],
      outputs: [PROBABILITIES],
      attrs: { axis: A.i(-1) },
    });
    g.outputs = [{ name: PROBABILITIES, dtype: 'float32', shape: [batch, head.classes] }];
  } else g.outputs = [{ name: LOGITS, dtype: 'float32', shape: [batch, head.classes] }];
  return g;
}

/** A classifier graph ending in `logits` given a Softmax → `probabilities` as its only output (for export). */
export function withProbabilities(classifier: Graph): Graph {
  const g = classifier.clone();
  if (g.outputs[0]?.name === PROBABILITIES) return g;
  g.nodes.push({
    name: 'head/softmax',
    opType: 'Softmax',
    domain: '',
    inputs: [LOGITS],
    outputs: [PROBABILITIES],
    attrs: { axis: A.i(-1) },
  });
  const classes = g.initializers.get('head.bias')?.dims[0] ?? null;
  g.outputs = [{ name: PROBABILITIES, dtype: 'float32', shape: [g.inputs[0]?.shape?.[0] ?? 'batch', classes] }];
  return g;
}

/** A copy of `base` with every initializer that `tuned` also has taken from `tuned` (the encoder inside a trained classifier). */
export function withWeights(base: Graph, tuned: Graph, mix = 1): Graph {
  const g = base.clone();
  for (const [k, t] of g.initializers) {
    const u = tuned.initializers.get(k);
    if (!u || u.dtype !== 'float32' || t.dtype !== 'float32') continue;
    if (mix === 1) g.initializers.set(k, u);
    else {
      const a = t.data as Float32Array,
        b = u.data as Float32Array;
      g.initializers.set(k, { ...t, data: a.map((v, i) => (1 - mix) * v + mix * b[i]!) });
    }
  }
  return g;
}

/** Feeds for the graph's text inputs from an encoded batch (only the inputs the graph has). */
export function textFeeds(g: Graph, enc: EncodedBatch): Feeds {
  const all: Record<string, Tensor> = {
    input_ids: enc.inputIds,
    attention_mask: enc.attentionMask,
    token_type_ids: enc.tokenTypeIds,
  };
  const f: Feeds = {};
  for (const i of g.inputs) {
    if (g.initializers.has(i.name)) continue;
    const t = all[i.name];
    if (t) f[i.name] = t;
  }
  return f;
}

/** The text input names a graph reads (input_ids, attention_mask, token_type_ids). */
export function textInputNames(g: Graph): string[] {
  return g.inputs
    .filter((i) => ['input_ids', 'attention_mask', 'token_type_ids'].includes(i.name) && !g.initializers.has(i.name))
    .map((i) => i.name);
}

/** The number of encoder layers, from parameter names like `encoder.layer.3.…` (0 when none are named so). */
export function encoderLayerCount(g: Graph): number {
  let last = -1;
  for (const k of g.initializers.keys()) {
    const m = /layer[._](\d+)[._]/.exec(k);
    if (m) last = Math.max(last, Number(m[1]));
  }
  return last + 1;
}
