/**
 * Warm-started encoder-decoder models (Rothe et al., "Leveraging Pre-trained Checkpoints for Sequence
 * Generation Tasks"): a BERT-style encoder graph and a GPT-2-style decoder graph joined into ONE ONNX
 * graph, with a new cross-attention block (layer norm, Q/K/V/O projections, residual) inserted into
 * each decoder layer after its self-attention, randomly initialized. Also: the same architecture with
 * every weight re-initialized (the from-scratch baseline), and batches for teacher-forced training.
 *
 * Graph inputs: input_ids, attention_mask (encoder; token types are all 0, made inside the graph),
 * decoder_input_ids, decoder_attention_mask; output: logits [batch, target length, vocab].
 */
import { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { candidateParams } from '../train/training-graph.js';
import type { Feeds } from '../runtime/session.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { LM_LABELS, LM_MASK } from './lm.js';

export interface Seq2SeqOptions {
  /** Attention heads of the cross-attention (default: 4). */
  heads?: number;
  /** Seed of the new weights. */
  seed?: number;
  /** Standard deviation of the new projection weights (default 0.02, as BERT/GPT-2 initialize). */
  initStd?: number;
  /** Encoder output to attend to (default: the encoder's first output, e.g. last_hidden_state). */
  encoderOutput?: string;
}

/** Copy every node, value and initializer of `src` into `dst` under `prefix`, except names mapped in `rename`. */
function embed(dst: Graph, src: Graph, prefix: string, rename: Map<string, string>): (name: string) => string {
  const map = (n: string) => (n === '' ? '' : (rename.get(n) ?? prefix + n));
  for (const n of src.nodes)
    dst.nodes.push({
      ...n,
      name: prefix + n.name,
      inputs: n.inputs.map(map),
      outputs: n.outputs.map(map),
      attrs: { ...n.attrs },
    });
  for (const [k, t] of src.initializers) dst.initializers.set(map(k), t);
  return map;
}

/** Width of a [.., .., hidden] value from the weights that produce it: the embedding table's second dim. */
function hiddenOf(g: Graph, name: string): number {
  const t = g.initializers.get(name);
  if (!t || t.dims.length !== 2) throw new GraftError(`cannot find the hidden width from '${name}'`);
  return t.dims[1]!;
}

/**
 * Build the encoder-decoder. `encoder`: inputs input_ids, attention_mask[, token_type_ids] → hidden
 * states first. `decoder`: GPT-2 layout (input_ids, attention_mask → logits, blocks with
 * `h.<i>.ln_2` layer norms whose input is the residual stream after self-attention).
 */
export function buildSeq2Seq(encoder: Graph, decoder: Graph, opts: Seq2SeqOptions = {}): Graph {
  const rng = new Rng(opts.seed ?? 1);
  const std = opts.initStd ?? 0.02;
  const g = new Graph();
  g.name = 'seq2seq';
  g.opsets = { ...decoder.opsets, ...encoder.opsets, '': Math.max(encoder.opset, decoder.opset, 17) };
  // Encoder: hidden states only (pooler pruned).
  const enc = encoder.clone();
  const encOut = opts.encoderOutput ?? enc.outputs[0]?.name;
  if (!encOut) throw new GraftError('the encoder has no outputs');
  enc.outputs = [{ name: encOut }];
  enc.prune();
  const encIn = enc.dataInputs().map((v) => v.name);
  for (const need of ['input_ids', 'attention_mask'])
    if (!encIn.includes(need)) throw new GraftError(`the encoder has no '${need}' input (inputs: ${encIn.join(', ')})`);
  const encRename = new Map([
    ['input_ids', 'input_ids'],
    ['attention_mask', 'attention_mask'],
  ]);
  const encMap = embed(g, enc, 'encoder/', encRename);
  const b = new Builder(g, 'seq2seq/');
  if (encIn.includes('token_type_ids')) {
    const zeros = b.op('ConstantOfShape', [b.shapeOf('input_ids')], {
      value: A.t({ dtype: 'int64', dims: [1], data: new BigInt64Array(1) }),
    });
    g.replaceUses(encMap('token_type_ids'), zeros);
  }
  const hEnc = encMap(encOut);
  // Decoder.
  const dec = decoder.clone();
  const decIn = dec.dataInputs().map((v) => v.name);
  for (const need of ['input_ids', 'attention_mask'])
    if (!decIn.includes(need)) throw new GraftError(`the decoder has no '${need}' input (inputs: ${decIn.join(', ')})`);
  const logits = dec.outputs[0]?.name;
  if (!logits) throw new GraftError('the decoder has no outputs');
  const decMap = embed(
    g,
    dec,
    'decoder/',
    new Map([
      ['input_ids', 'decoder_input_ids'],
      ['attention_mask', 'decoder_attention_mask'],
      [logits, 'logits'],
    ]),
  );
  const decNodes = new Set(g.nodes.slice(g.nodes.length - dec.nodes.length));
  g.inputs = [
    { name: 'input_ids', dtype: 'int64', shape: ['batch', 'source'] },
    { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'source'] },
    { name: 'decoder_input_ids', dtype: 'int64', shape: ['batch', 'target'] },
    { name: 'decoder_attention_mask', dtype: 'int64', shape: ['batch', 'target'] },
  ];
  g.outputs = [{ name: 'logits', dtype: 'float32', shape: ['batch', 'target', null] }];
  // Additive attention bias from the encoder mask: [batch, 1, 1, source], 0 or −10⁴.
  const maskF = b.op('Cast', ['attention_mask'], { to: A.i(1) });
  const bias = b.unsqueeze(b.mul(b.sub(b.f32(1), maskF), b.f32(-1e4)), [1, 2]);
  // One cross-attention block per decoder layer, before its ln_2.
  const lns = [...decNodes].filter(
    (n) => n.opType === 'LayerNormalization' && /h\.(\d+)\.ln_2\.weight$/.test(n.inputs[1] ?? ''),
  );
  if (!lns.length)
    throw new GraftError(
      'the decoder has no GPT-2 blocks (LayerNormalization with h.<i>.ln_2 weights) to insert cross-attention into',
    );
  const width = hiddenOf(
    g,
    decMap(
      dec.initializers.has('transformer.wte.weight')
        ? 'transformer.wte.weight'
        : ([...dec.initializers.keys()].find((k) => /wte/.test(k)) ?? ''),
    ),
  );
  const heads = opts.heads ?? 4;
  if (width % heads) throw new GraftError(`hidden width ${width} is not divisible by ${heads} heads`);
  const encWidth = hiddenOf(g, encMap([...enc.initializers.keys()].find((k) => /word_embeddings/.test(k)) ?? ''));
  const d = width / heads;
  const param = (name: string, dims: number[], fill: 'normal' | 'one' | 'zero'): string => {
    const n = dims.reduce((a, c) => a * c, 1);
    const data = new Float32Array(n);
    if (fill === 'one') data.fill(1);
    else if (fill === 'normal') for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    g.initializers.set(name, { dtype: 'float32', dims, data });
    return name;
  };
  for (const ln of lns) {
    const layer = /h\.(\d+)\.ln_2/.exec(ln.inputs[1]!)![1]!;
    const x = ln.inputs[0]!;
    const users = [...decNodes].filter((n) => n.inputs.includes(x));
    const p = `decoder.h.${layer}.crossattention`;
    const eps = ln.attrs['epsilon'] ?? A.f(1e-5);
    const cb = new Builder(g, `decoder/h.${layer}/crossattention/`);
    const xn = cb.op(
      'LayerNormalization',
      [x, param(`${p}.ln.weight`, [width], 'one'), param(`${p}.ln.bias`, [width], 'zero')],
      { axis: A.i(-1), epsilon: eps },
    );
    const proj = (inp: string, nm: string, inW: number) =>
      cb.add(
        cb.op('MatMul', [inp, param(`${p}.${nm}.weight`, [inW, width], 'normal')]),
        param(`${p}.${nm}.bias`, [width], 'zero'),
      );
    const heads4 = (v: string) => cb.transpose(cb.reshape(v, [0, 0, heads, d]), [0, 2, 1, 3]);
    const q = heads4(proj(xn, 'q', width));
    const kT = cb.transpose(cb.reshape(proj(hEnc, 'k', encWidth), [0, 0, heads, d]), [0, 2, 3, 1]);
    const v = heads4(proj(hEnc, 'v', encWidth));
    const scores = cb.add(cb.mul(cb.op('MatMul', [q, kT]), cb.f32(1 / Math.sqrt(d))), bias);
    const attn = cb.op('Softmax', [scores], { axis: A.i(-1) });
    const ctx = cb.reshape(cb.transpose(cb.op('MatMul', [attn, v]), [0, 2, 1, 3]), [0, 0, width]);
    const out = cb.add(
      cb.op('MatMul', [ctx, param(`${p}.o.weight`, [width, width], 'normal')]),
      param(`${p}.o.bias`, [width], 'zero'),
    );
    const y = cb.add(x, out);
    for (const n of users) n.inputs = n.inputs.map((i) => (i === x ? y : i));
  }
  // Keep a valid topological order: nodes were appended after their users.
  g.nodes = g.topoSort();
  return g;
}

/**
 * The same graph with every trainable weight re-drawn (the from-scratch baseline): layer-norm scales
 * 1, biases and other vectors 0, matrices and embeddings N(0, std²).
 */
export function reinitialize(model: Graph, opts: { seed?: number; std?: number } = {}): Graph {
  const g = model.clone();
  const rng = new Rng(opts.seed ?? 2);
  const std = opts.std ?? 0.02;
  const lnScale = new Set(g.nodes.filter((n) => n.opType === 'LayerNormalization').map((n) => n.inputs[1]!));
  for (const k of candidateParams(g)) {
    const t = g.initializers.get(k)!;
    const n = t.dims.reduce((a, c) => a * c, 1);
    const data = new Float32Array(n);
    if (lnScale.has(k)) data.fill(1);
    else if (t.dims.length >= 2) for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    g.initializers.set(k, { dtype: 'float32', dims: [...t.dims], data });
  }
  return g;
}

/** Names of the parameters the seq2seq build added (the cross-attention blocks). */
export function crossAttentionParams(g: Graph): string[] {
  return [...g.initializers.keys()].filter((k) => k.includes('.crossattention.'));
}

export interface Seq2SeqPair {
  source: number[];
  target: number[];
}

/**
 * Teacher-forcing feeds: encoder input = source ids as given (with the encoder's special tokens);
 * decoder input = [start] + target; labels = target + [eos]; padded right with `pad`.
 */
export function seq2seqBatch(pairs: Seq2SeqPair[], o: { start: number; eos: number; pad?: number }): Feeds {
  const pad = BigInt(o.pad ?? 0);
  const n = pairs.length;
  const s = Math.max(...pairs.map((p) => p.source.length));
  const t = Math.max(...pairs.map((p) => p.target.length + 1));
  const ids = new BigInt64Array(n * s).fill(pad),
    att = new BigInt64Array(n * s);
  const dids = new BigInt64Array(n * t).fill(pad),
    datt = new BigInt64Array(n * t);
  const labels = new BigInt64Array(n * t),
    mask = new Float32Array(n * t);
  pairs.forEach((p, r) => {
    p.source.forEach((x, j) => {
      ids[r * s + j] = BigInt(x);
      att[r * s + j] = 1n;
    });
    const din = [o.start, ...p.target],
      lab = [...p.target, o.eos];
    din.forEach((x, j) => {
      dids[r * t + j] = BigInt(x);
      datt[r * t + j] = 1n;
      labels[r * t + j] = BigInt(lab[j]!);
      mask[r * t + j] = 1;
    });
  });
  const i64 = (data: BigInt64Array, len: number): Tensor => ({ dtype: 'int64', dims: [n, len], data });
  return {
    input_ids: i64(ids, s),
    attention_mask: i64(att, s),
    decoder_input_ids: i64(dids, t),
    decoder_attention_mask: i64(datt, t),
    [LM_LABELS]: i64(labels, t),
    [LM_MASK]: { dtype: 'float32', dims: [n, t], data: mask },
  };
}
