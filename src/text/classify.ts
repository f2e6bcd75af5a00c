/**
 * Text classification with encoder models: pooled sentence features (cached in the FeatureCache,
 * keyed by model, pooling, max length and text) with a logistic head, and fine-tuning of the encoder
 * with a Gemm head on the pooled output through the Trainer (full, top layers by name pattern, or
 * LoRA on the attention and feed-forward MatMuls). Fine-tuning can start from the fitted logistic
 * head (linear probe, then fine-tune) — the remedy for fine-tuning a weak encoder on few labels.
 */
import type { Graph } from '../graph/graph.js';
import { encodeOnnx } from '../formats/onnx.js';
import { Session, type Feeds } from '../runtime/session.js';
import { Trainer } from '../train/trainer.js';
import type { TrainableSpec } from '../train/training-graph.js';
import type { ParamGroup } from '../optim/optimizer.js';
import { cacheKey, sha256, type FeatureCache } from '../features/cache.js';
import { fitCV, type LogisticRegression } from '../heads/logistic.js';
import { addLora, mergeLora } from '../finetune/lora.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import type { TextTokenizer, EncodedBatch } from './tokenizer.js';
import {
  addPooling,
  addClassifierHead,
  encoderLayerCount,
  textFeeds,
  LOGITS,
  POOLED,
  type Pooling,
} from './encoder.js';
import { trainLoop, shuffledBatches } from '../train/loop.js';
import { LearningRate, Logger, runCallbacks, type RunOptions } from '../train/callbacks.js';
import { labelsTensor } from '../train/fit.js';
import { softmax } from '../util/vectors.js';

export interface TextModel {
  graph: Graph;
  tokenizer: TextTokenizer;
}

export interface TextProgress {
  done: number;
  total: number;
  cached?: number;
}

export interface TextFeatureOptions {
  pooling?: Pooling;
  maxLength?: number;
  batchSize?: number;
  cache?: FeatureCache;
  /** Row number of texts[0] and the file, for truncation warnings. */
  source?: string;
  /** Row (file line) of each text, for truncation warnings (default: the index). */
  rows?: readonly number[];
  warn?: (m: string) => void;
  onProgress?: (p: TextProgress) => void;
}

/** A pooled-feature extractor over one encoder: one session, reused across calls. */
export class TextFeatureExtractor {
  private session?: Session;
  private modelHash?: string;
  readonly graph: Graph;

  constructor(
    readonly model: TextModel,
    readonly pooling: Pooling = 'mean',
  ) {
    this.graph = addPooling(model.graph, pooling);
  }

  private hash(): string {
    this.modelHash ??= sha256(encodeOnnx(this.graph));
    return this.modelHash;
  }

  /** One pooled vector per text. */
  async extract(texts: readonly string[], o: TextFeatureOptions = {}): Promise<Float32Array[]> {
    const maxLength = o.maxLength ?? this.model.tokenizer.modelMaxLength;
    const bs = o.batchSize ?? 64;
    const out = new Array<Float32Array>(texts.length);
    let todo = texts.map((_, i) => i);
    let keys: string[] = [];
    let cached = 0;
    if (o.cache) {
      const prep = `text:${this.model.tokenizer.fingerprint}:pool=${this.pooling}:max=${maxLength}`;
      keys = texts.map((t) => cacheKey({ model: this.hash(), node: POOLED, preprocess: prep, input: t }));
      const hits = o.cache.getMany(keys);
      todo = [];
      hits.forEach((h, i) => (h ? (out[i] = h) : todo.push(i)));
      cached = texts.length - todo.length;
    }
    o.onProgress?.({ done: cached, total: texts.length, cached });
    if (todo.length) this.session ??= await Session.fromGraph(this.graph, {}, 'text features');
    // Sort by length so batches pad little; restore order on output.
    const lens = todo.map((i) => texts[i]!.length);
    const order = todo.map((_, k) => k).sort((a, b) => lens[a]! - lens[b]!);
    for (let s = 0; s < order.length; s += bs) {
      const idx = order.slice(s, s + bs).map((k) => todo[k]!);
      const enc = this.model.tokenizer.encodeBatch(
        idx.map((i) => texts[i]!),
        { maxLength, source: o.source, warn: o.warn, rows: idx.map((i) => o.rows?.[i] ?? i) },
      );
      const res = await this.session!.run(textFeeds(this.graph, enc));
      const p = res[POOLED]!;
      const d = p.dims[1]!;
      const data = p.data as Float32Array;
      const entries = idx.map((i, r) => {
        out[i] = data.slice(r * d, (r + 1) * d);
        return { key: keys[i]!, vector: out[i]! };
      });
      if (o.cache) o.cache.putMany(entries);
      o.onProgress?.({ done: cached + Math.min(s + bs, order.length), total: texts.length, cached });
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session?.release();
    this.session = undefined;
  }
}

/** A fitted logistic head as a MatMul weight [hidden, classes] on raw features (standardization folded in). */
export function gemmFromLogistic(head: LogisticRegression): {
  weight: Float32Array;
  bias: Float32Array;
  hidden: number;
  classes: number;
} {
  const K = head.numClasses,
    D = head.dim;
  const f = head.folded(); // [K, D]
  const weight = new Float32Array(D * K);
  for (let k = 0; k < K; k++) for (let j = 0; j < D; j++) weight[j * K + k] = f.weight[k * D + j]!;
  return { weight, bias: f.bias, hidden: D, classes: K };
}

/** A small random head (used when fine-tuning starts without a linear probe). */
export function randomHead(
  hidden: number,
  classes: number,
  seed = 0,
): { weight: Float32Array; bias: Float32Array; hidden: number; classes: number } {
  const rng = new Rng(seed + 7);
  return {
    weight: Float32Array.from({ length: hidden * classes }, () => 0.02 * rng.normal()),
    bias: new Float32Array(classes),
    hidden,
    classes,
  };
}

export type FinetuneMode = 'full' | 'top' | 'lora';

export interface TextFinetuneOptions extends RunOptions {
  mode?: FinetuneMode;
  pooling?: Pooling;
  maxLength?: number;
  /** Initial head: a fitted logistic head (linear probe, then fine-tune) or random (default). */
  head?: LogisticRegression;
  classes: number;
  epochs?: number;
  /** At least this many optimizer steps (epochs are raised to reach it; default 0). */
  minSteps?: number;
  batchSize?: number;
  /** Encoder learning rate (default 2e-5). */
  lr?: number;
  /** Learning-rate multiplier for the head (default 1: same as the encoder). */
  headLrScale?: number;
  weightDecay?: number;
  /** Linear warmup fraction of the steps (default 0.1), then linear decay to 0. */
  warmup?: number;
  /** Word dropout: each step hides this fraction of the real (non-special) tokens from attention and pooling (default 0). */
  tokenDropout?: number;
  /** Keep the head fixed at its initial value (only the encoder trains; useful with a probe head). */
  freezeHead?: boolean;
  /** 'top' mode: parameter-name pattern of what trains beside the head (default: the last encoder layer). */
  trainable?: string;
  loraRank?: number;
  loraAlpha?: number;
  /** LoRA: which weights (default: attention query/key/value/output and the feed-forward dense layers). */
  loraMatch?: string;
  seed?: number;
  clipNorm?: number;
  source?: string;
  /** Row (file line) of each text, for truncation warnings (default: the index). */
  rows?: readonly number[];
  warn?: (m: string) => void;
  onStep?: (s: { step: number; steps: number; loss: number; epoch: number }) => void;
}

export interface TextFinetuneResult {
  /** Encoder + pooling + head → logits, with trained weights (LoRA merged). */
  graph: Graph;
  steps: number;
  losses: number[];
  /** The epoch a resumed run continued after (0: none). */
  resumedFrom?: number;
}

const DEFAULT_LORA_MATCH = '(attention|intermediate|output).*(query|key|value|dense)';

/** A user-given parameter-name pattern as a RegExp, or a GraftError naming it. */
function patternOf(src: string, what: string): RegExp {
  try {
    return new RegExp(src);
  } catch (e) {
    throw new GraftError(
      `${what} pattern /${src}/ is not a valid regular expression: ${(e as Error).message}`,
      what === 'trainable' ? 'check --trainable' : undefined,
    );
  }
}

/** A pattern matching the last encoder layer's parameters (`encoder.layer.3.…`). */
function lastLayerPattern(g: Graph): string {
  const n = encoderLayerCount(g);
  if (!n) throw new GraftError('cannot find encoder layers by name; give a trainable pattern');
  return `layer[._]${n - 1}[._]`;
}

/** Fine-tune an encoder with a classification head on (texts, y). */
export async function finetuneText(
  model: TextModel,
  texts: readonly string[],
  y: readonly number[],
  o: TextFinetuneOptions,
): Promise<TextFinetuneResult> {
  const pooling = o.pooling ?? 'mean';
  const maxLength = o.maxLength ?? model.tokenizer.modelMaxLength;
  const pooled = addPooling(model.graph, pooling);
  const hidden = guessHidden(model.graph);
  const head = o.head ? gemmFromLogistic(o.head) : randomHead(hidden, o.classes, o.seed ?? 0);
  if (head.hidden !== hidden) throw new GraftError(`head expects ${head.hidden} features, the encoder gives ${hidden}`);
  let g = addClassifierHead(pooled, head);
  const mode = o.mode ?? 'full';
  let trainable: TrainableSpec = 'all';
  const headParams = ['head.weight', 'head.bias'];
  if (mode === 'top') {
    const pat = patternOf(o.trainable ?? lastLayerPattern(model.graph), 'trainable');
    trainable = {
      names: [
        ...headParams,
        ...[...g.initializers.keys()].filter((k) => pat.test(k) && g.initializers.get(k)!.dtype === 'float32'),
      ],
    };
  } else if (mode === 'lora') {
    const r = addLora(g, {
      rank: o.loraRank ?? 8,
      alpha: o.loraAlpha ?? 2 * (o.loraRank ?? 8),
      match: patternOf(o.loraMatch ?? DEFAULT_LORA_MATCH, 'LoRA match'),
      targets: ['MatMul'],
      seed: o.seed ?? 0,
    });
    g = r.graph;
    trainable = { names: [...headParams, ...r.params] };
  }
  if (o.freezeHead) {
    if (trainable === 'all') trainable = { pattern: /^(?!head\.)/ };
    else if ('names' in trainable) trainable = { names: trainable.names.filter((k) => !headParams.includes(k)) };
  }
  const groups = new Map<string, ParamGroup>();
  if (o.headLrScale && o.headLrScale !== 1) for (const p of headParams) groups.set(p, { lrScale: o.headLrScale });
  const trainer = await Trainer.create(g, {
    trainable,
    output: LOGITS,
    lr: o.lr ?? 2e-5,
    optimizer: { kind: 'adamw', weightDecay: o.weightDecay ?? 0.01, ...(groups.size ? { groups } : {}) },
    clipNorm: o.clipNorm ?? 1,
  });
  try {
    const config = {
      data: sha256(texts.join('\u0000')),
      mode,
      pooling,
      maxLength,
      classes: o.classes,
      head: o.head ? 'probe' : 'random',
      headLrScale: o.headLrScale ?? 1,
      weightDecay: o.weightDecay ?? 0.01,
      tokenDropout: o.tokenDropout ?? 0,
      freezeHead: !!o.freezeHead,
      trainable: o.trainable ?? null,
      loraRank: o.loraRank ?? null,
      loraAlpha: o.loraAlpha ?? null,
      loraMatch: o.loraMatch ?? null,
      clipNorm: o.clipNorm ?? 1,
    };
    const { steps, losses, resumedFrom } = await runTextEpochs(
      trainer,
      y,
      { ...o, config },
      o.lr ?? 2e-5,
      (idx, epoch, rng) => {
        const enc = model.tokenizer.encodeBatch(
          idx.map((i) => texts[i]!),
          {
            maxLength,
            source: o.source,
            warn: epoch === 0 ? o.warn : () => {},
            rows: idx.map((i) => o.rows?.[i] ?? i),
          },
        );
        if (o.tokenDropout) dropTokens(enc, o.tokenDropout, rng);
        return textFeeds(g, enc);
      },
    );
    let out = trainer.toGraph();
    if (mode === 'lora') out = mergeLora(out);
    return { graph: out, steps, losses, ...(resumedFrom ? { resumedFrom } : {}) };
  } finally {
    await trainer.release();
  }
}

/**
 * Text fine-tuning on the one training loop (src/train/loop.ts), shared by whole-encoder and cached
 * top-layer training: a seeded shuffle per epoch, mini-batches, warmup then linear decay of the rate
 * (`base` at its peak; the 'linear' schedule of src/train/schedule.ts). `feeds` builds a batch's
 * inputs; it may draw from `rng` (after that epoch's shuffle). With `checkpointDir` every epoch is
 * checkpointed, and `resume` continues bit for bit; `config` names the settings a resume must match.
 */
export async function runTextEpochs(
  trainer: Trainer,
  y: readonly number[],
  o: Pick<TextFinetuneOptions, 'epochs' | 'minSteps' | 'batchSize' | 'seed' | 'warmup' | 'onStep'> &
    RunOptions & { config?: Record<string, unknown> },
  base: number,
  feeds: (idx: number[], epoch: number, rng: Rng) => Feeds,
): Promise<{ steps: number; losses: number[]; resumedFrom: number }> {
  const bs = o.batchSize ?? 16,
    n = y.length;
  if (n === 0) throw new GraftError('no training texts: fine-tuning needs at least one labelled text');
  if (!(Number.isInteger(bs) && bs >= 1)) throw new GraftError(`batch size must be a whole number ≥ 1, got ${bs}`);
  const perEpoch = Math.ceil(n / bs);
  const epochs = Math.max(o.epochs ?? 3, Math.ceil((o.minSteps ?? 0) / perEpoch));
  const steps = epochs * perEpoch;
  const source = shuffledBatches(n, bs, epochs, (idx, epoch, rng) => ({
    feeds: feeds(idx, epoch - 1, rng),
    target: labelsTensor(idx.map((i) => y[i]!)),
    size: idx.length,
  }));
  const config = {
    texts: n,
    labels: sha256(new Uint8Array(Int32Array.from(y).buffer)),
    batchSize: bs,
    epochs,
    seed: o.seed ?? 0,
    lr: base,
    warmup: o.warmup ?? 0.1,
    ...o.config,
  };
  const r = await trainLoop(trainer, source, {
    seed: o.seed ?? 0,
    lr: base,
    releaseOnError: false,
    callbacks: [
      LearningRate.of({ kind: 'linear', warmupFraction: o.warmup ?? 0.1 }, base, {
        totalSteps: steps,
        stepsPerEpoch: perEpoch,
      }),
      ...(o.onStep
        ? [new Logger({ onStep: (_c, s) => o.onStep!({ step: s.step, steps, loss: s.loss, epoch: s.epoch - 1 }) })]
        : []),
      ...runCallbacks(o, config, 'fine-tuning'),
    ],
  });
  return { steps, losses: r.losses, resumedFrom: r.resumedFrom };
}

/** Zero the attention mask at a random `p` of each row's real tokens, keeping the first and last (special) ones. */
export function dropTokens(enc: EncodedBatch, p: number, rng: Rng): void {
  const [n, len] = enc.attentionMask.dims as [number, number];
  const mask = BigInt64Array.from(enc.attentionMask.data as BigInt64Array);
  for (let i = 0; i < n; i++) {
    const L = enc.lengths[i]!;
    for (let j = 1; j < L - 1; j++) if (rng.uniform() < p) mask[i * len + j] = 0n;
  }
  enc.attentionMask = { ...enc.attentionMask, data: mask };
}

function guessHidden(g: Graph): number {
  const w = g.initializers.get('embeddings.word_embeddings.weight');
  if (w) return w.dims[1]!;
  for (const t of g.initializers.values()) if (t.dims.length === 2 && t.dtype === 'float32') return t.dims[1]!;
  throw new GraftError('cannot tell the encoder width');
}

/** Class probabilities (softmax of logits) of a classifier graph (encoder + head → logits or probabilities). */
export async function predictTextProba(
  classifier: Graph,
  tokenizer: TextTokenizer,
  texts: readonly string[],
  o: {
    maxLength?: number;
    batchSize?: number;
    source?: string;
    rows?: readonly number[];
    warn?: (m: string) => void;
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<Float32Array[]> {
  const session = await Session.fromGraph(classifier, {}, 'text classifier');
  const out = outputName(classifier);
  const maxLength = o.maxLength ?? tokenizer.modelMaxLength;
  const bs = o.batchSize ?? 64;
  const res: Float32Array[] = new Array(texts.length);
  const order = texts.map((_, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length);
  try {
    for (let s = 0; s < order.length; s += bs) {
      const idx = order.slice(s, s + bs);
      const enc = tokenizer.encodeBatch(
        idx.map((i) => texts[i]!),
        { maxLength, source: o.source, warn: o.warn, rows: idx.map((i) => o.rows?.[i] ?? i) },
      );
      const r = (await session.run(textFeeds(classifier, enc)))[out]!;
      const K = r.dims[1]!;
      const d = r.data as Float32Array;
      idx.forEach((i, k) => {
        const row = d.slice(k * K, (k + 1) * K);
        res[i] = out === LOGITS ? Float32Array.from(softmax(row)) : row;
      });
      o.onProgress?.(Math.min(s + bs, order.length), order.length);
    }
  } finally {
    await session.release();
  }
  return res;
}

function outputName(g: Graph): string {
  return g.outputs[0]?.name ?? LOGITS;
}

/** Fit the logistic head on pooled features by cross-validated L2 (fitCV). */
export async function fitTextHead(features: Float32Array[], y: number[], seed = 0): Promise<LogisticRegression> {
  return (await fitCV(features, y, { seed })).model;
}
