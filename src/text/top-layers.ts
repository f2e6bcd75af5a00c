/**
 * Fine-tuning the top layers of a text encoder on cached activations: the encoder is cut below its
 * last `layers` transformer layers, the frozen bottom runs once per text (its token states are kept
 * in memory, unpadded), and training and evaluation run only the top layers + pooling + head on
 * them. Same result as `finetuneText(… mode: 'top')` with the same trainable weights, at a fraction
 * of the cost; the frozen pooled features come from the same cached states, so a frozen-vs-tuned
 * comparison shares one encoder pass.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Session, type Feeds } from '../runtime/session.js';
import { Trainer } from '../train/trainer.js';
import { GraftError } from '../util/errors.js';
import {
  addPooling,
  addClassifierHead,
  encoderLayerCount,
  textFeeds,
  withWeights,
  LOGITS,
  POOLED,
  type Pooling,
} from './encoder.js';
import { gemmFromLogistic, randomHead, runTextEpochs, type TextModel, type TextFinetuneOptions } from './classify.js';
import { softmax } from '../util/vectors.js';
import type { RunOptions } from '../train/callbacks.js';

/** Unpadded token states of one text below the cut: [length × hidden]. */
export interface TokenStates {
  data: Float32Array;
  length: number;
}

/** The value a BERT-style graph computes as the output of encoder layer `k` (k = −1: the embeddings). */
function layerOutput(g: Graph, k: number): string {
  const w =
    k < 0 ? /(^|\.)embeddings\.LayerNorm\.weight$/ : new RegExp(`layer[._]${k}[._]output[._]LayerNorm[._]weight$`);
  const n = g.nodes.find((n) => n.opType === 'LayerNormalization' && n.inputs[1] !== undefined && w.test(n.inputs[1]));
  if (!n)
    throw new GraftError(
      `cannot find the output of encoder layer ${k} (a LayerNormalization with weight like encoder.layer.${k}.output.LayerNorm.weight)`,
    );
  return n.outputs[0]!;
}

function layerCount(g: Graph): number {
  const n = encoderLayerCount(g);
  if (!n) throw new GraftError('cannot find encoder layers by name');
  return n;
}

/** An encoder split below its top `layers` layers: a frozen bottom and a trainable top (→ pooled). */
export class TopLayerSplit {
  readonly cut: string;
  readonly bottom: Graph;
  /** Cut value + attention_mask → pooled. */
  readonly topPooled: Graph;
  readonly hidden: number;
  private session?: Session;

  constructor(
    readonly model: TextModel,
    readonly layers = 1,
    readonly pooling: Pooling = 'mean',
  ) {
    const L = layerCount(model.graph);
    if (layers < 1 || layers > L) throw new GraftError(`top layers must be 1…${L}, got ${layers}`);
    this.cut = layerOutput(model.graph, L - layers - 1);
    this.bottom = model.graph.cutBefore([this.cut]);
    const w = model.graph.initializers.get('embeddings.word_embeddings.weight');
    this.hidden = w?.dims[1] ?? 0;
    if (!this.hidden) throw new GraftError('cannot tell the encoder width');
    this.topPooled = addPooling(model.graph, pooling).cutAfter(
      [this.cut],
      [{ name: this.cut, dtype: 'float32', shape: ['batch', 'sequence', this.hidden] }],
    );
  }

  /** The bottom's token states for each text (one encoder pass; sorted by length so batches pad little). */
  async states(
    texts: readonly string[],
    o: {
      maxLength?: number;
      batchSize?: number;
      source?: string;
      rows?: readonly number[];
      warn?: (m: string) => void;
    } = {},
  ): Promise<TokenStates[]> {
    this.session ??= await Session.fromGraph(this.bottom, {}, 'text encoder (frozen layers)');
    const maxLength = o.maxLength ?? this.model.tokenizer.modelMaxLength;
    const bs = o.batchSize ?? 64;
    const out = new Array<TokenStates>(texts.length);
    const order = texts.map((_, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length);
    for (let s = 0; s < order.length; s += bs) {
      const idx = order.slice(s, s + bs);
      const enc = this.model.tokenizer.encodeBatch(
        idx.map((i) => texts[i]!),
        { maxLength, source: o.source, warn: o.warn, rows: idx.map((i) => o.rows?.[i] ?? i) },
      );
      const h = (await this.session.run(textFeeds(this.bottom, enc)))[this.cut]!;
      const T = h.dims[1]!,
        H = this.hidden;
      const d = h.data as Float32Array;
      idx.forEach(
        (i, r) => (out[i] = { data: d.slice(r * T * H, (r * T + enc.lengths[r]!) * H), length: enc.lengths[r]! }),
      );
    }
    return out;
  }

  /** Feeds for a top graph from cached states: zero-padded [B, T, H] and the attention mask. */
  feeds(states: readonly TokenStates[], idx: readonly number[]): Feeds {
    const T = Math.max(...idx.map((i) => states[i]!.length));
    const H = this.hidden;
    const x = new Float32Array(idx.length * T * H);
    const mask = new BigInt64Array(idx.length * T);
    idx.forEach((i, r) => {
      const s = states[i]!;
      x.set(s.data, r * T * H);
      for (let t = 0; t < s.length; t++) mask[r * T + t] = 1n;
    });
    return {
      [this.cut]: { dtype: 'float32', dims: [idx.length, T, H], data: x },
      attention_mask: { dtype: 'int64', dims: [idx.length, T], data: mask },
    };
  }

  /** Frozen pooled features from cached states (equal to TextFeatureExtractor's up to float rounding). */
  async pooled(states: readonly TokenStates[], batchSize = 128): Promise<Float32Array[]> {
    return runRows(this.topPooled, POOLED, (idx) => this.feeds(states, idx), states.length, batchSize);
  }

  async release(): Promise<void> {
    await this.session?.release();
    this.session = undefined;
  }
}

async function runRows(
  g: Graph,
  output: string,
  feeds: (idx: number[]) => Feeds,
  n: number,
  bs: number,
  run?: (f: Feeds) => Promise<Tensor>,
): Promise<Float32Array[]> {
  const session = run ? undefined : await Session.fromGraph(g, {}, 'text top layers');
  const out: Float32Array[] = [];
  try {
    for (let s = 0; s < n; s += bs) {
      const idx = Array.from({ length: Math.min(bs, n - s) }, (_, k) => s + k);
      const r = run ? await run(feeds(idx)) : (await session!.run(feeds(idx)))[output]!;
      const d = r.dims[1]!;
      idx.forEach((_, k) => out.push((r.data as Float32Array).slice(k * d, (k + 1) * d)));
    }
  } finally {
    await session?.release();
  }
  return out;
}

/** The fine-tuning options that apply when only the top layers train on saved lower-layer outputs. */
export type TopFinetuneOptions = RunOptions &
  Pick<
    TextFinetuneOptions,
    | 'head'
    | 'classes'
    | 'epochs'
    | 'minSteps'
    | 'batchSize'
    | 'lr'
    | 'weightDecay'
    | 'warmup'
    | 'clipNorm'
    | 'seed'
    | 'onStep'
  >;

export interface TopFinetuneResult {
  /** The whole classifier (encoder with tuned top layers + pooling + head → logits). */
  graph: Graph;
  /** Class probabilities for cached states with the tuned weights. */
  predictProba(states: readonly TokenStates[]): Promise<Float32Array[]>;
  steps: number;
  losses: number[];
  release(): Promise<void>;
}

/** Fine-tune the split's top layers and a head on cached token states (AdamW, warmup then linear decay, clipped). */
export async function finetuneTopCached(
  split: TopLayerSplit,
  states: readonly TokenStates[],
  y: readonly number[],
  o: TopFinetuneOptions,
): Promise<TopFinetuneResult> {
  if (states.length !== y.length) throw new GraftError(`${states.length} texts but ${y.length} labels`);
  const head = o.head ? gemmFromLogistic(o.head) : randomHead(split.hidden, o.classes, o.seed ?? 0);
  const top = addClassifierHead(split.topPooled, head);
  const base = o.lr ?? 1e-4;
  const trainer = await Trainer.create(top, {
    trainable: 'all',
    output: LOGITS,
    lr: base,
    optimizer: { kind: 'adamw', weightDecay: o.weightDecay ?? 0.01 },
    clipNorm: o.clipNorm ?? 1,
  });
  let steps: number, losses: number[];
  try {
    const config = {
      layers: split.layers,
      pooling: split.pooling,
      classes: o.classes,
      head: o.head ? 'probe' : 'random',
      weightDecay: o.weightDecay ?? 0.01,
      clipNorm: o.clipNorm ?? 1,
    };
    ({ steps, losses } = await runTextEpochs(trainer, y, { ...o, config }, base, (idx) => split.feeds(states, idx)));
  } catch (err) {
    await trainer.release();
    throw err;
  }
  const tunedTop = trainer.toGraph();
  const graph = withWeights(addClassifierHead(addPooling(split.model.graph, split.pooling), head), tunedTop);
  return {
    graph,
    steps,
    losses,
    predictProba: async (st) =>
      (
        await runRows(
          tunedTop,
          LOGITS,
          (idx) => split.feeds(st, idx),
          st.length,
          128,
          (f) => trainer.predict(f),
        )
      ).map((v) => Float32Array.from(softmax(v))),
    release: () => trainer.release(),
  };
}
