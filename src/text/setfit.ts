/**
 * Few-shot text classification in the SetFit manner: contrastive fine-tuning of the encoder on
 * sentence pairs (same label → cosine similarity 1, different → 0, squared error), then a logistic
 * head on the tuned encoder's pooled features.
 *
 * Pairs come from a streaming sampler: each step draws `pairsPerStep` (anchor, partner) pairs on the
 * fly, half positive and half negative, and encodes only the texts they touch, so memory is O(batch)
 * whatever the number of examples — never the n² list of all pairs that SetFit materializes.
 * The loss is a CustomLoss over the pooled output of one batch: L2-normalize the rows, Gather the two
 * sides of each pair by index, sum their product (cosine), mean squared error against the target.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import type { CustomLoss } from '../train/losses.js';
import { Trainer } from '../train/trainer.js';
import { trainLoop, steppedBatches } from '../train/loop.js';
import { LearningRate, Logger, runCallbacks, type RunOptions } from '../train/callbacks.js';
import { sha256 } from '../features/cache.js';
import { A } from '../graph/builder.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import { addPooling, textFeeds, withWeights, POOLED, type Pooling } from './encoder.js';
import type { TextModel } from './classify.js';
import { TextFeatureExtractor, fitTextHead } from './classify.js';
import type { LogisticRegression } from '../heads/logistic.js';

export interface PairBatch {
  /** Indices (into the dataset) of the distinct texts the batch encodes. */
  texts: number[];
  /** Each pair's two positions in `texts`, and its target similarity (1 same label, 0 different). */
  a: number[];
  b: number[];
  sim: number[];
}

/**
 * Streaming pair sampler: batches of `pairs` pairs, half positive (same label), half negative,
 * drawn with replacement. Holds only the per-class index lists (O(n)) and the current batch.
 */
export function* pairBatches(
  y: readonly number[],
  o: { pairs: number; steps: number; seed?: number },
): Generator<PairBatch> {
  const rng = new Rng(o.seed ?? 0);
  const draw = pairSampler(y, o.pairs);
  for (let s = 0; s < o.steps; s++) yield draw(rng);
}

/** The sampler behind pairBatches: one batch of `pairs` pairs per call, drawn from `rng`. */
export function pairSampler(y: readonly number[], pairs: number): (rng: Rng) => PairBatch {
  const byClass = new Map<number, number[]>();
  y.forEach((c, i) => {
    let l = byClass.get(c);
    if (!l) byClass.set(c, (l = []));
    l.push(i);
  });
  const classes = [...byClass.keys()];
  if (classes.length < 2) throw new GraftError('contrastive pairs need at least two classes');
  return (rng) => {
    const pos = new Map<number, number>();
    const batch: PairBatch = { texts: [], a: [], b: [], sim: [] };
    const at = (i: number): number => {
      let k = pos.get(i);
      if (k === undefined) {
        k = batch.texts.length;
        batch.texts.push(i);
        pos.set(i, k);
      }
      return k;
    };
    for (let p = 0; p < pairs; p++) {
      const i = rng.int(y.length);
      const own = byClass.get(y[i]!)!;
      let j: number, sim: number;
      if (p % 2 === 0 && own.length > 1) {
        do j = own[rng.int(own.length)]!;
        while (j === i);
        sim = 1;
      } else {
        let c: number;
        do c = classes[rng.int(classes.length)]!;
        while (c === y[i]);
        const other = byClass.get(c)!;
        j = other[rng.int(other.length)]!;
        sim = 0;
      }
      batch.a.push(at(i));
      batch.b.push(at(j));
      batch.sim.push(sim);
    }
    return batch;
  };
}

/** Cosine-similarity MSE over pairs of rows of the pooled output (inputs pair_a, pair_b, pair_sim). */
export function cosinePairLoss(): CustomLoss {
  return {
    kind: 'custom',
    build(_g, output, b) {
      const sq = b.reduce('ReduceSum', b.mul(output, output), [1], true);
      const unit = b.div(output, b.op('Sqrt', [b.add(sq, b.f32(1e-12))]));
      const ua = b.op('Gather', [unit, 'pair_a'], { axis: A.i(0) });
      const ub = b.op('Gather', [unit, 'pair_b'], { axis: A.i(0) });
      const cos = b.reduce('ReduceSum', b.mul(ua, ub), [1], false);
      const d = b.sub(cos, 'pair_sim');
      return { loss: b.reduceAll('ReduceMean', b.mul(d, d)), targets: ['pair_a', 'pair_b', 'pair_sim'] };
    },
    probeFeeds: (dims) => {
      const n = dims[0]!;
      return {
        pair_a: { dtype: 'int64', dims: [n], data: new BigInt64Array(n) },
        pair_b: { dtype: 'int64', dims: [n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)) },
        pair_sim: { dtype: 'float32', dims: [n], data: new Float32Array(n) },
      };
    },
  };
}

export interface SetFitOptions extends RunOptions {
  /** Steps between checkpoints (an 'epoch' of the loop; default SetFit's pair budget of one epoch). */
  checkpointEvery?: number;
  pooling?: Pooling;
  maxLength?: number;
  /** Pairs per step (default 16, SetFit's batch size). */
  pairsPerStep?: number;
  /**
   * Passes over SetFit's pair budget of 20 iterations · 2 pairs per training text (SetFit's
   * num_epochs; default 1). Ignored when `steps` is given.
   */
  epochs?: number;
  /** Contrastive steps (default: setfitSteps(texts, epochs, pairsPerStep)). */
  steps?: number;
  lr?: number;
  seed?: number;
  source?: string;
  /** Row (file line) of each text, for truncation warnings (default: the index). */
  rows?: readonly number[];
  /** Where truncation warnings go (given once, for the final feature pass over every text). */
  warn?: (m: string) => void;
  onStep?: (s: { step: number; steps: number; loss: number }) => void;
}

export interface SetFitResult {
  /** The contrastively tuned encoder (same inputs and outputs as the original). */
  encoder: Graph;
  head: LogisticRegression;
  extractor: TextFeatureExtractor;
  steps: number;
  losses: number[];
  /** Largest number of texts encoded in one step (memory is O(this), not O(n²)); of this process's steps after a resume. */
  maxBatchTexts: number;
  /** The checkpoint a resumed run continued after, in steps·checkpointEvery (0: none). */
  resumedFrom?: number;
}

/** Contrastive steps for `texts` training texts: epochs · 20 iterations · 2 pairs per text, `pairsPerStep` pairs a step (at least 1). */
export function setfitSteps(texts: number, epochs = 1, pairsPerStep = 16): number {
  if (!(epochs > 0)) throw new GraftError(`SetFit epochs must be positive, got ${epochs}`);
  if (!(pairsPerStep >= 1)) throw new GraftError(`SetFit pairs per step must be at least 1, got ${pairsPerStep}`);
  return Math.max(1, Math.ceil((epochs * 20 * 2 * texts) / pairsPerStep));
}

/** Contrastive fine-tuning on streamed pairs, then a logistic head on the tuned encoder's features. */
export async function trainSetFit(
  model: TextModel,
  texts: readonly string[],
  y: number[],
  o: SetFitOptions = {},
): Promise<SetFitResult> {
  const pooling = o.pooling ?? 'mean';
  const maxLength = o.maxLength ?? model.tokenizer.modelMaxLength;
  const pairs = o.pairsPerStep ?? 16;
  const steps = o.steps ?? setfitSteps(texts.length, o.epochs ?? 1, pairs);
  const every = o.checkpointEvery ?? setfitSteps(texts.length, 1, pairs);
  if (!(Number.isInteger(every) && every >= 1))
    throw new GraftError(`checkpointEvery must be a positive number of steps, got ${every}`);
  const base = o.lr ?? 2e-5;
  const config = {
    texts: texts.length,
    data: sha256(texts.join('\u0000')),
    labels: y.join(','),
    pooling,
    maxLength,
    pairs,
    steps,
    lr: base,
    seed: o.seed ?? 0,
    checkpointEvery: every,
  };
  const callbacks = runCallbacks(o, config, 'contrastive');
  const draw = pairSampler(y, pairs);
  const g = addPooling(model.graph, pooling);
  const trainer = await Trainer.create(g, {
    output: POOLED,
    loss: cosinePairLoss(),
    lr: base,
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    clipNorm: 1,
  });
  let maxBatchTexts = 0;
  const source = steppedBatches(steps, every, (_step, rng) => {
    const batch = draw(rng);
    maxBatchTexts = Math.max(maxBatchTexts, batch.texts.length);
    const enc = model.tokenizer.encodeBatch(
      batch.texts.map((i) => texts[i]!),
      { maxLength, warn: () => {} },
    ); // every text is warned about once, in the feature pass below
    const feeds: Record<string, Tensor> = {
      ...textFeeds(g, enc),
      pair_a: { dtype: 'int64', dims: [pairs], data: BigInt64Array.from(batch.a.map(BigInt)) },
      pair_b: { dtype: 'int64', dims: [pairs], data: BigInt64Array.from(batch.b.map(BigInt)) },
      pair_sim: { dtype: 'float32', dims: [pairs], data: Float32Array.from(batch.sim) },
    };
    return { feeds, size: pairs };
  });
  const r = await trainLoop(trainer, source, {
    seed: o.seed ?? 0,
    lr: base,
    callbacks: [
      LearningRate.of({ kind: 'linear', warmupFraction: 0.1 }, base, { totalSteps: steps, stepsPerEpoch: every }),
      ...(o.onStep ? [new Logger({ onStep: (_c, s) => o.onStep!({ step: s.step, steps, loss: s.loss }) })] : []),
      ...callbacks,
    ],
  });
  const losses = r.losses;
  let encoder: Graph;
  try {
    // Back to the plain encoder: the trained weights in the original graph (pooling is re-added by the extractor).
    encoder = withWeights(model.graph, r.trainer.toGraph());
  } finally {
    await r.trainer.release();
  }
  const extractor = new TextFeatureExtractor({ graph: encoder, tokenizer: model.tokenizer }, pooling);
  const F = await extractor.extract(texts, {
    maxLength,
    source: o.source,
    ...(o.rows ? { rows: o.rows } : {}),
    ...(o.warn ? { warn: o.warn } : {}),
  });
  const head = await fitTextHead(F, y, o.seed ?? 0);
  return {
    encoder,
    head,
    extractor,
    steps,
    losses,
    maxBatchTexts,
    ...(r.resumedFrom ? { resumedFrom: r.resumedFrom } : {}),
  };
}
