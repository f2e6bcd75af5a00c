/**
 * Prompt-based classification with a BERT-style encoder's pretrained masked-LM head (PET, LM-BFF):
 * each text becomes a cloze (`{text} it was [MASK] .`), and the score of class k is the MLM logit of
 * its label word at the [MASK] position. This file owns the template (parsed and tokenized by the
 * model's tokenizer; the text is truncated, never the template), the label-word check (one token
 * each), the classifier graph (encoder + hidden state at [MASK] + the MLM head from
 * `model.safetensors`: dense → config.json's hidden_act (GELU by default) → LayerNorm → tied
 * word-embedding rows of the label words + their output bias → `logits` [batch, classes]),
 * prediction, and fine-tuning the whole graph through the Trainer with the text fine-tuning loop of
 * classify.ts.
 *
 * The [MASK] position is found inside the graph (input_ids == mask id, a one-hot row used in a
 * batched MatMul), so the classifier needs only the usual text inputs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Builder, A } from '../graph/builder.js';
import { readSafetensors } from '../formats/safetensors.js';
import { Session, type Feeds } from '../runtime/session.js';
import { Trainer } from '../train/trainer.js';
import { GraftError } from '../util/errors.js';
import { softmax } from '../util/vectors.js';
import type { TextTokenizer, EncodedBatch } from './tokenizer.js';
import { hiddenStateOf, textFeeds, LOGITS } from './encoder.js';
import { runTextEpochs, type TextFinetuneOptions } from './classify.js';
import type { RunOptions } from '../train/callbacks.js';
import { sha256 } from '../features/cache.js';

export const TEXT_SLOT = '{text}';

/** A cloze template and one label word per class. */
export interface PromptSpec {
  /** Holds `{text}` once and the tokenizer's mask token (e.g. `[MASK]`) once; default `{text} it was [MASK] .` */
  template?: string;
  /** One word per class, each a single token of the vocabulary (class k ↔ labelWords[k]). */
  labelWords: readonly string[];
}

export const DEFAULT_TEMPLATE = `${TEXT_SLOT} it was [MASK] .`;

/** A template split into token ids around the text slot. */
export interface ParsedTemplate {
  template: string;
  before: number[];
  after: number[];
  maskId: number;
}

/** Tokenize a template with the model's tokenizer: ids before and after `{text}`; exactly one mask token. */
export function parseTemplate(tokenizer: TextTokenizer, template = DEFAULT_TEMPLATE): ParsedTemplate {
  const parts = template.split(TEXT_SLOT);
  if (parts.length !== 2)
    throw new GraftError(
      `prompt template "${template}" must hold ${TEXT_SLOT} exactly once`,
      'e.g. --template "{text} it was [MASK] ."',
    );
  const maskId = tokenizer.maskId;
  if (maskId === undefined)
    throw new GraftError('the tokenizer has no mask token: prompt classification needs a masked language model');
  const enc = (s: string) => (s.trim() ? tokenizer.encode(s, { addSpecialTokens: false }) : []);
  const before = enc(parts[0]!),
    after = enc(parts[1]!);
  const masks = [...before, ...after].filter((i) => i === maskId).length;
  const maskTok = tokenizer.idToToken(maskId) ?? '[MASK]';
  if (masks !== 1)
    throw new GraftError(
      `prompt template "${template}" must hold the mask token ${maskTok} exactly once (found ${masks})`,
    );
  return { template, before, after, maskId };
}

/** The vocabulary id of each label word; a GraftError names any word that is not exactly one token. */
export function labelWordIds(tokenizer: TextTokenizer, words: readonly string[]): number[] {
  if (words.length < 2)
    throw new GraftError(`prompt classification needs one label word per class (at least 2), got ${words.length}`);
  const ids = words.map((w) => {
    const pieces = tokenizer.tokenize(w);
    const id = pieces.length === 1 ? tokenizer.tokenToId(pieces[0]!) : undefined;
    if (id === undefined || id === tokenizer.unkId)
      throw new GraftError(
        `label word "${w}" is not one token of the vocabulary (it splits into ${pieces.length ? pieces.map((p) => `"${p}"`).join(' ') : 'nothing'})`,
        'choose label words that the tokenizer keeps whole',
      );
    return id;
  });
  const dup = ids.findIndex((id, k) => ids.indexOf(id) !== k);
  if (dup >= 0) {
    const first = ids.indexOf(ids[dup]!);
    throw new GraftError(
      words[first] === words[dup]
        ? `label word "${words[dup]}" is given for two classes`
        : `label words "${words[first]}" and "${words[dup]}" are the same token "${tokenizer.idToToken(ids[dup]!) ?? ids[dup]}" of the tokenizer, so they cannot tell two classes apart`,
    );
  }
  return ids;
}

/**
 * Encode texts as clozes: [prefix] before text after [suffix], the text's tokens cut so the whole
 * fits maxLength (with a warning naming the rows cut); a mask token inside a text becomes unknown.
 */
export function encodePrompts(
  tokenizer: TextTokenizer,
  texts: readonly string[],
  t: ParsedTemplate,
  o: { maxLength?: number; source?: string; rows?: readonly number[]; warn?: (m: string) => void } = {},
): EncodedBatch {
  const maxLength = o.maxLength ?? tokenizer.modelMaxLength;
  const fixed = tokenizer.prefixIds.length + tokenizer.suffixIds.length + t.before.length + t.after.length;
  const room = maxLength - fixed;
  if (room < 1)
    throw new GraftError(
      `max length ${maxLength} leaves no room for text after the prompt template's ${fixed} tokens`,
      'raise --max-length or shorten the template',
    );
  const unk = tokenizer.unkId ?? tokenizer.padId;
  const rows: number[][] = [];
  const cut: string[] = [];
  texts.forEach((text, i) => {
    if (typeof text !== 'string')
      throw new GraftError(`${o.source ?? 'text'} row ${o.rows?.[i] ?? i}: text is not a string`);
    let ids = tokenizer.encode(text, { addSpecialTokens: false }).map((v) => (v === t.maskId ? unk : v));
    if (ids.length > room) {
      cut.push(`row ${o.rows?.[i] ?? i} (${ids.length + fixed} tokens)`);
      ids = ids.slice(0, room);
    }
    rows.push([...tokenizer.prefixIds, ...t.before, ...ids, ...t.after, ...tokenizer.suffixIds]);
  });
  if (cut.length) {
    const more = cut.length > 8 ? ` and ${cut.length - 8} more` : '';
    (o.warn ?? ((m: string) => console.warn(m)))(
      `warning: ${o.source ? o.source + ': ' : ''}truncated the text of ${cut.length} prompt(s) to fit ${maxLength} tokens (template kept): ${cut.slice(0, 8).join(', ')}${more}`,
    );
  }
  const n = rows.length,
    len = Math.max(1, ...rows.map((r) => r.length));
  const ids = new BigInt64Array(n * len).fill(BigInt(tokenizer.padId));
  const mask = new BigInt64Array(n * len);
  rows.forEach((r, i) => r.forEach((v, j) => ((ids[i * len + j] = BigInt(v)), (mask[i * len + j] = 1n))));
  return {
    inputIds: { dtype: 'int64', dims: [n, len], data: ids },
    attentionMask: { dtype: 'int64', dims: [n, len], data: mask },
    tokenTypeIds: { dtype: 'int64', dims: [n, len], data: new BigInt64Array(n * len) },
    lengths: rows.map((r) => r.length),
    truncated: [],
  };
}

/** The masked-LM head of a BERT-style checkpoint (PyTorch layout: dense weight [out, in]). */
export interface MlmHead {
  denseWeight: Tensor;
  denseBias: Tensor;
  lnWeight: Tensor;
  lnBias: Tensor;
  /** Output bias over the vocabulary [vocab]. */
  bias: Tensor;
  /** Decoder weight [vocab, hidden] when it is not tied to the input word embeddings. */
  decoder?: Tensor;
  eps: number;
  /** The transform's activation, config.json's hidden_act (default 'gelu', the erf form). */
  act?: HeadActivation;
}

/** The activations a BERT MLM head transform may use (Hugging Face names). */
const ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'relu', 'silu', 'swish'] as const;
export type HeadActivation = (typeof ACTIVATIONS)[number];

/** config.json's hidden_act as a head activation; a GraftError for one the head cannot apply. */
export function headActivation(value: unknown, where = 'config.json'): HeadActivation {
  if (value === undefined || value === null) return 'gelu';
  const a = ACTIVATIONS.find((k) => k === value);
  if (!a)
    throw new GraftError(
      `${where}: hidden_act ${JSON.stringify(value)} is not supported by the masked-LM head (supported: ${ACTIVATIONS.join(', ')})`,
    );
  return a;
}

/** act(d) as graph nodes. */
function activate(b: Builder, d: string, act: HeadActivation): string {
  if (act === 'relu') return b.op('Relu', [d]);
  if (act === 'silu' || act === 'swish') return b.mul(d, b.op('Sigmoid', [d]));
  if (act === 'gelu') return b.mul(b.mul(d, b.f32(0.5)), b.add(b.op('Erf', [b.div(d, b.f32(Math.SQRT2))]), b.f32(1)));
  // tanh forms: 0.5·d·(1 + tanh(√(2/π)·(d + 0.044715·d³)))
  const inner = b.mul(b.add(d, b.mul(b.mul(b.mul(d, d), d), b.f32(0.044715))), b.f32(Math.sqrt(2 / Math.PI)));
  return b.mul(b.mul(d, b.f32(0.5)), b.add(b.op('Tanh', [inner]), b.f32(1)));
}

const HEAD = 'cls.predictions.';

/** Read the MLM head from a model folder's model.safetensors (the ONNX export holds the encoder only). */
export function readMlmHead(
  dir: string,
  o: { eps?: number; wordEmbeddings?: Tensor; act?: HeadActivation } = {},
): MlmHead {
  const file = join(dir, 'model.safetensors');
  if (!existsSync(file))
    throw new GraftError(
      `${file} not found: prompt classification needs the masked-LM head (cls.predictions.*) from the model's safetensors weights`,
    );
  const { tensors } = readSafetensors(file);
  const get = (k: string): Tensor => {
    const t = tensors.get(HEAD + k);
    if (!t || t.dtype !== 'float32')
      throw new GraftError(`${file}: no float32 tensor ${HEAD}${k} (not a BERT masked-LM checkpoint?)`);
    return t;
  };
  let decoder = tensors.get(HEAD + 'decoder.weight');
  const we = o.wordEmbeddings;
  if (decoder && we && sameData(decoder, we)) decoder = undefined; // tied: use the encoder's own rows
  return {
    denseWeight: get('transform.dense.weight'),
    denseBias: get('transform.dense.bias'),
    lnWeight: get('transform.LayerNorm.weight'),
    lnBias: get('transform.LayerNorm.bias'),
    bias: tensors.get(HEAD + 'bias') ?? get('decoder.bias'),
    ...(decoder ? { decoder } : {}),
    eps: o.eps ?? 1e-12,
    ...(o.act ? { act: o.act } : {}),
  };
}

function sameData(a: Tensor, b: Tensor): boolean {
  if (a.dims.join() !== b.dims.join()) return false;
  const x = a.data as Float32Array,
    y = b.data as Float32Array;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

const WORD_EMBEDDINGS = /(^|\.)embeddings\.word_embeddings\.weight$/;

/**
 * Encoder + MLM head at the [MASK] position → `logits` [batch, classes] (class k: label id k).
 * Parameters added: cls.predictions.transform.* and cls.predictions.bias (and the decoder when untied);
 * the label words' output rows are the encoder's own word-embedding initializer (tied), so tuning
 * the classifier tunes them too.
 */
export function buildPromptGraph(encoder: Graph, head: MlmHead, labelIds: readonly number[], maskId: number): Graph {
  const g = encoder.clone();
  const h = hiddenStateOf(g);
  const b = new Builder(g, 'prompt/');
  const wordName = [...g.initializers.keys()].find((k) => WORD_EMBEDDINGS.test(k));
  if (!wordName && !head.decoder)
    throw new GraftError(
      'cannot find the word-embedding initializer (…embeddings.word_embeddings.weight) the MLM head is tied to',
    );
  const vocab = (head.decoder ?? g.initializers.get(wordName!)!).dims[0]!;
  const bad = labelIds.find((i) => i < 0 || i >= vocab);
  if (bad !== undefined) throw new GraftError(`label token id ${bad} is outside the vocabulary (${vocab})`);
  const set = (k: string, t: Tensor) =>
    g.initializers.set(HEAD + k, {
      dtype: 'float32',
      dims: [...t.dims],
      data: Float32Array.from(t.data as Float32Array),
    });
  set('transform.dense.weight', head.denseWeight);
  set('transform.dense.bias', head.denseBias);
  set('transform.LayerNorm.weight', head.lnWeight);
  set('transform.LayerNorm.bias', head.lnBias);
  set('bias', head.bias);
  if (head.decoder) set('decoder.weight', head.decoder);
  // hidden state at the mask: one-hot(input_ids == mask) [B, 1, T] @ h [B, T, H] → [B, H]
  const onehot = b.unsqueeze(b.op('Cast', [b.op('Equal', ['input_ids', b.i64(maskId)])], { to: A.i(1) }), [1]);
  const x = b.squeeze(b.op('MatMul', [onehot, h]), [1]);
  const d = b.op('Gemm', [x, HEAD + 'transform.dense.weight', HEAD + 'transform.dense.bias'], { transB: A.i(1) });
  const t = b.op(
    'LayerNormalization',
    [activate(b, d, head.act ?? 'gelu'), HEAD + 'transform.LayerNorm.weight', HEAD + 'transform.LayerNorm.bias'],
    { axis: A.i(-1), epsilon: A.f(head.eps) },
  );
  const ids = b.i64([...labelIds], [labelIds.length]);
  const rows = b.op('Gather', [head.decoder ? HEAD + 'decoder.weight' : wordName!, ids], { axis: A.i(0) }); // [K, H]
  const bias = b.op('Gather', [HEAD + 'bias', ids], { axis: A.i(0) }); // [K]
  const logits = b.op('Gemm', [t, rows, bias], { transB: A.i(1) });
  g.nodes.push({ name: 'prompt/out', opType: 'Identity', domain: '', inputs: [logits], outputs: [LOGITS], attrs: {} });
  g.outputs = [{ name: LOGITS, dtype: 'float32', shape: [g.inputs[0]?.shape?.[0] ?? 'batch', labelIds.length] }];
  g.prune();
  return g;
}

/** A text model with what prompting needs: its folder (for model.safetensors) and its config's LayerNorm eps. */
export interface PromptModel {
  graph: Graph;
  tokenizer: TextTokenizer;
  dir: string;
  config?: { [k: string]: unknown };
}

/** A prompt classifier: the graph (→ logits over the label words), the parsed template and label ids. */
export interface PromptClassifier {
  graph: Graph;
  template: ParsedTemplate;
  labelWords: string[];
  labelIds: number[];
}

/** Build the (untrained, zero-shot) prompt classifier of a model folder. */
export function promptClassifier(model: PromptModel, spec: PromptSpec): PromptClassifier {
  const template = parseTemplate(model.tokenizer, spec.template);
  const labelIds = labelWordIds(model.tokenizer, spec.labelWords);
  const eps = Number(model.config?.layer_norm_eps);
  const act = headActivation(model.config?.['hidden_act'], join(model.dir, 'config.json'));
  const wordName = [...model.graph.initializers.keys()].find((k) => WORD_EMBEDDINGS.test(k));
  const head = readMlmHead(model.dir, {
    eps: Number.isFinite(eps) && eps > 0 ? eps : 1e-12,
    act,
    ...(wordName ? { wordEmbeddings: model.graph.initializers.get(wordName)! } : {}),
  });
  return {
    graph: buildPromptGraph(model.graph, head, labelIds, template.maskId),
    template,
    labelWords: [...spec.labelWords],
    labelIds,
  };
}

export interface PromptPredictOptions {
  /** Longest input in tokens; longer texts are truncated (never the template) with a warning. */
  maxLength?: number;
  /** Texts per onnxruntime run (default 64). */
  batchSize?: number;
  /** Names the data in truncation warnings (a file name, 'input'). */
  source?: string;
  /** Row (line) of each text, for warnings. */
  rows?: readonly number[];
  warn?: (m: string) => void;
  /** Texts done so far and the total, after each batch. */
  onProgress?: (done: number, total: number) => void;
}

/** Label-word logits [classes] per text (a session per call; batches sorted by length). */
export async function promptLogits(
  c: PromptClassifier,
  tokenizer: TextTokenizer,
  texts: readonly string[],
  o: PromptPredictOptions = {},
  run?: (f: Feeds) => Promise<Tensor>,
): Promise<Float32Array[]> {
  const session = run ? undefined : await Session.fromGraph(c.graph, {}, 'prompt classifier');
  const bs = o.batchSize ?? 64;
  const out = new Array<Float32Array>(texts.length);
  const order = texts.map((_, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length);
  try {
    for (let s = 0; s < order.length; s += bs) {
      const idx = order.slice(s, s + bs);
      const enc = encodePrompts(
        tokenizer,
        idx.map((i) => texts[i]!),
        c.template,
        { ...o, rows: idx.map((i) => o.rows?.[i] ?? i) },
      );
      const f = textFeeds(c.graph, enc);
      const r = run ? await run(f) : (await session!.run(f))[LOGITS]!;
      const K = r.dims[1]!;
      idx.forEach((i, k) => (out[i] = (r.data as Float32Array).slice(k * K, (k + 1) * K)));
      o.onProgress?.(Math.min(s + bs, order.length), order.length);
    }
  } finally {
    await session?.release();
  }
  return out;
}

/** Class probabilities (softmax over the label words' logits). */
export async function predictPromptProba(
  c: PromptClassifier,
  tokenizer: TextTokenizer,
  texts: readonly string[],
  o: PromptPredictOptions = {},
): Promise<Float32Array[]> {
  return (await promptLogits(c, tokenizer, texts, o)).map((r) => Float32Array.from(softmax(r)));
}

/** Fine-tuning options: the text loop's (lr, epochs, minSteps, batch, warmup, decay, clipping, seed). */
export type PromptFinetuneOptions = PromptSpec &
  PromptPredictOptions &
  RunOptions &
  Pick<
    TextFinetuneOptions,
    'epochs' | 'minSteps' | 'batchSize' | 'lr' | 'weightDecay' | 'warmup' | 'clipNorm' | 'seed' | 'onStep'
  >;

export interface PromptFinetuneResult extends PromptClassifier {
  steps: number;
  losses: number[];
}

/**
 * Fine-tune encoder + MLM head as a prompt classifier on (texts, y): cross-entropy over the label
 * words' logits, AdamW (lr 3e-5, weight decay 0.01), 10 % warmup then linear decay, gradient norm
 * clipped at 1, batch 16, at least 70 steps (the recipe chosen on the review snippets' validation
 * split at 50 labels per class).
 */
export async function finetunePrompt(
  model: PromptModel,
  texts: readonly string[],
  y: readonly number[],
  o: PromptFinetuneOptions,
): Promise<PromptFinetuneResult> {
  if (texts.length !== y.length) throw new GraftError(`${texts.length} texts but ${y.length} labels`);
  if (!texts.length) throw new GraftError(`${o.source ?? 'prompt fine-tuning'}: no training texts`);
  const c = promptClassifier(model, o);
  const K = c.labelIds.length;
  const badY = y.findIndex((v) => !Number.isInteger(v) || v < 0 || v >= K);
  if (badY >= 0)
    throw new GraftError(
      `${o.source ?? 'labels'} row ${o.rows?.[badY] ?? badY}: label ${y[badY]} has no label word (${K} given)`,
    );
  const lr = o.lr ?? 3e-5;
  const trainer = await Trainer.create(c.graph, {
    trainable: 'all',
    output: LOGITS,
    lr,
    optimizer: { kind: 'adamw', weightDecay: o.weightDecay ?? 0.01 },
    clipNorm: o.clipNorm ?? 1,
  });
  try {
    const config = {
      data: sha256(texts.join('\u0000')),
      template: JSON.stringify(c.template),
      labelIds: c.labelIds,
      maxLength: o.maxLength ?? null,
      weightDecay: o.weightDecay ?? 0.01,
      clipNorm: o.clipNorm ?? 1,
    };
    const { steps, losses } = await runTextEpochs(
      trainer,
      y,
      { ...o, epochs: o.epochs ?? 1, minSteps: o.minSteps ?? 70, config },
      lr,
      (idx, epoch) =>
        textFeeds(
          c.graph,
          encodePrompts(
            model.tokenizer,
            idx.map((i) => texts[i]!),
            c.template,
            { ...o, rows: idx.map((i) => o.rows?.[i] ?? i), warn: epoch === 0 ? o.warn : () => {} },
          ),
        ),
    );
    return { ...c, graph: trainer.toGraph(), steps, losses };
  } finally {
    await trainer.release();
  }
}
