/**
 * Translation with an encoder-decoder graph from seq2seq.ts: teacher-forced fine-tuning through the
 * Trainer (the LM loss on the target side), held-out loss, greedy decoding (a batch of sentences per
 * run, finished rows dropped; by default the encoder runs once per batch and each new token costs one
 * position through a key/value-cached step graph from kv-cache.ts, `cache: false` re-runs the whole
 * graph on the full target prefix each step), and
 * model folders that `graft translate` loads: onnx/model.onnx, the shared tokenizer, and
 * config.json with the decoder's start/end tokens and length limits.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import { atomicWrite, readOnnx, writeOnnx } from '../formats/onnx.js';
import { Trainer, type TrainerOptions } from '../train/trainer.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { trainLoop, steppedBatches } from '../train/loop.js';
import { LearningRate, Logger, runCallbacks, type RunOptions } from '../train/callbacks.js';
import { sha256 } from '../features/cache.js';
import { GraftError } from '../util/errors.js';
import { lmLoss, lmEvalGraph } from './lm.js';
import { seq2seqBatch, type Seq2SeqPair } from './seq2seq.js';
import { loadTokenizerSync, type TextTokenizer } from './tokenizer.js';
import { KvDecoder, SEQ2SEQ_INPUTS } from './kv-cache.js';
import { readTextFile } from '../data/text-table.js';
import { argmax } from '../util/vectors.js';

export interface Seq2SeqTokens {
  start: number;
  eos: number;
  pad: number;
}

export interface Seq2SeqTrainOptions extends RunOptions {
  steps: number;
  /** Steps between checkpoints (an 'epoch' of the loop; default one pass over the pairs). */
  checkpointEvery?: number;
  batchSize?: number;
  lr?: number;
  warmup?: number;
  weightDecay?: number;
  seed?: number;
  trainable?: TrainerOptions['trainable'];
  runtime?: RuntimeOptions;
  onStep?: (info: { step: number; steps: number; loss: number; lr: number }) => void;
}

/**
 * Teacher-forced training for a fixed number of steps over shuffled pairs (a fresh seeded shuffle
 * appended whenever fewer than a batch remain), on the one training loop; returns the Trainer. With
 * `checkpointDir` a checkpoint is written every `checkpointEvery` steps and `resume` continues bit for bit.
 */
export async function trainSeq2Seq(
  model: Graph,
  pairs: Seq2SeqPair[],
  tokens: Seq2SeqTokens,
  o: Seq2SeqTrainOptions,
): Promise<Trainer> {
  if (!pairs.length) throw new GraftError('no training pairs');
  const bs = o.batchSize ?? 32;
  if (!(Number.isInteger(bs) && bs >= 1)) throw new GraftError(`batch size must be a whole number ≥ 1, got ${bs}`);
  if (!(Number.isInteger(o.steps) && o.steps >= 0))
    throw new GraftError(`steps must be a non-negative integer, got ${o.steps}`);
  const lr = o.lr ?? 3e-4;
  const every = o.checkpointEvery ?? Math.ceil(pairs.length / bs);
  if (!(Number.isInteger(every) && every >= 1))
    throw new GraftError(`checkpointEvery must be a positive number of steps, got ${every}`);
  const config = {
    pairs: pairs.length,
    data: sha256(JSON.stringify(pairs)),
    tokens,
    steps: o.steps,
    batchSize: bs,
    lr,
    warmup: o.warmup ?? 0.05,
    weightDecay: o.weightDecay ?? 0.01,
    seed: o.seed ?? 1,
    checkpointEvery: every,
    trainable: o.trainable ? JSON.stringify(o.trainable, (_k, v) => (v instanceof RegExp ? String(v) : v)) : null,
  };
  const callbacks = runCallbacks(o, config, 'training');
  const trainer = await Trainer.create(model, {
    loss: lmLoss(),
    optimizer: { kind: 'adamw', weightDecay: o.weightDecay ?? 0.01 },
    lr,
    clipNorm: 1,
    ...(o.trainable ? { trainable: o.trainable } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
  let order: number[] = [];
  const source = steppedBatches(
    o.steps,
    every,
    (_step, rng) => {
      if (order.length < bs) order = order.concat(rng.shuffle([...pairs.keys()]));
      const batch = order.splice(0, bs).map((k) => pairs[k]!);
      return { feeds: seq2seqBatch(batch, tokens), size: batch.length };
    },
    {
      state: () => order,
      restore: (s) => {
        order = [...(s as number[])];
      },
    },
  );
  const r = await trainLoop(trainer, source, {
    seed: o.seed ?? 1,
    lr,
    callbacks: [
      LearningRate.of({ kind: 'linear', warmupFraction: o.warmup ?? 0.05 }, lr, {
        totalSteps: o.steps,
        stepsPerEpoch: every,
      }),
      ...(o.onStep
        ? [new Logger({ onStep: (_c, s) => o.onStep!({ step: s.step, steps: o.steps, loss: s.loss, lr: s.lr }) })]
        : []),
      ...callbacks,
    ],
  });
  return r.trainer;
}

/** Mean per-token cross-entropy of the targets (teacher forcing) over held-out pairs. */
export async function seq2seqLoss(
  model: Graph,
  pairs: Seq2SeqPair[],
  tokens: Seq2SeqTokens,
  o: { batchSize?: number; runtime?: RuntimeOptions } = {},
): Promise<number> {
  const g = lmEvalGraph(model);
  const s = await Session.fromGraph(g, o.runtime, 'seq2seq (held-out loss)');
  let nll = 0,
    n = 0;
  const bs = o.batchSize ?? 32;
  try {
    for (let i = 0; i < pairs.length; i += bs) {
      const f: Feeds = seq2seqBatch(pairs.slice(i, i + bs), tokens);
      const r = await s.run(f);
      nll += Number(r[g.outputs[0]!.name]!.data[0]);
      n += Number(r[g.outputs[1]!.name]!.data[0]);
    }
  } finally {
    await s.release();
  }
  return nll / n;
}

/** Greedy decoding with an encoder-decoder graph: key/value-cached by default, else one session returning each row's next-token logits. */
export class Seq2SeqDecoder {
  private constructor(
    private session: Session | undefined,
    private out: string,
    private kv: KvDecoder | undefined,
  ) {}

  /**
   * `cache` (default true): rewrite the graph for cached decoding (kv-cache.ts); when the rewrite does
   * not apply, one warning (to `warn`, default stderr) names why and decoding re-runs the full prefix.
   */
  static async create(
    model: Graph,
    o: { runtime?: RuntimeOptions; cache?: boolean; warn?: (m: string) => void } = {},
  ): Promise<Seq2SeqDecoder> {
    const logits = model.outputs[0]?.name;
    if (!logits) throw new GraftError('the translation model has no outputs');
    for (const need of ['input_ids', 'attention_mask', 'decoder_input_ids', 'decoder_attention_mask'])
      if (!model.inputs.some((i) => i.name === need))
        throw new GraftError(`not an encoder-decoder graph: no '${need}' input`);
    if (o.cache !== false) {
      const kv = await KvDecoder.fromGraph(model, SEQ2SEQ_INPUTS, o.runtime);
      if (kv instanceof KvDecoder) return new Seq2SeqDecoder(undefined, '', kv);
      (o.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`)))(
        `no key/value cache for the translation model: ${kv.reason}; decoding without one (every token re-reads the whole prefix)`,
      );
    }
    const g = model.clone();
    const b = new Builder(g, 'decode/');
    g.inputs.push({ name: 'last_position', dtype: 'int64', shape: ['batch', 1] });
    const next = b.op('GatherND', [logits, 'last_position'], { batch_dims: A.i(1) }, 'next_logits');
    g.outputs = [{ name: next }];
    g.prune();
    return new Seq2SeqDecoder(await Session.fromGraph(g, o.runtime, 'seq2seq (decode)'), next, undefined);
  }

  /** Does decoding use a key/value cache? */
  get cached(): boolean {
    return this.kv !== undefined;
  }

  /** Target ids (without start and end tokens) for each source, greedy, at most maxLength tokens. */
  async greedy(sources: number[][], t: Seq2SeqTokens, maxLength = 32, batchSize = 32): Promise<number[][]> {
    const out: number[][] = sources.map(() => []);
    for (let b0 = 0; b0 < sources.length; b0 += batchSize) {
      let active = Array.from({ length: Math.min(batchSize, sources.length - b0) }, (_, k) => b0 + k);
      if (this.kv) {
        // the encoder once (prefill on the start token), then one position per new token
        const f = seq2seqBatch(
          active.map((i) => ({ source: sources[i]!, target: [] })),
          t,
        );
        let { logits, state } = await this.kv.start(
          active.map(() => [t.start]),
          { input_ids: f['input_ids']!, attention_mask: f['attention_mask']! },
          t.pad,
        );
        for (let step = 0; step < maxLength && active.length; step++) {
          if (step > 0)
            logits = await this.kv.step(
              state,
              active.map((i) => out[i]![out[i]!.length - 1]!),
            );
          const still: number[] = [],
            kept: number[] = [];
          active.forEach((i, k) => {
            const best = argmax(logits[k]!);
            if (best === t.eos) return;
            out[i]!.push(best);
            still.push(i);
            kept.push(k);
          });
          this.kv.keep(state, kept);
          active = still;
        }
        continue;
      }
      for (let step = 0; step < maxLength && active.length; step++) {
        const pairs = active.map((i) => ({ source: sources[i]!, target: out[i]! }));
        const f = seq2seqBatch(pairs, t);
        const last = BigInt64Array.from(active.map((i) => BigInt(out[i]!.length)));
        const r = await this.session!.run({
          input_ids: f['input_ids']!,
          attention_mask: f['attention_mask']!,
          decoder_input_ids: f['decoder_input_ids']!,
          decoder_attention_mask: f['decoder_attention_mask']!,
          last_position: { dtype: 'int64', dims: [active.length, 1], data: last },
        });
        const y = r[this.out]!;
        const v = y.dims[1]!;
        const data = y.data as Float32Array;
        const still: number[] = [];
        active.forEach((i, k) => {
          const best = argmax(data.subarray(k * v, (k + 1) * v));
          if (best === t.eos) return;
          out[i]!.push(best);
          still.push(i);
        });
        active = still;
      }
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session?.release();
    await this.kv?.release();
  }
}

export interface TranslationConfig {
  model_type: 'graft-seq2seq';
  decoder_start_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  max_source_length: number;
  max_target_length: number;
  /** Positions of the decoder (its start token plus the translation must fit). */
  decoder_positions?: number;
  source_language?: string;
  target_language?: string;
  [k: string]: unknown;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt'];

/** Save a translation model folder: onnx/model.onnx, the (shared) tokenizer from `tokenizerDir`, config.json. */
export function saveTranslationFolder(g: Graph, tokenizerDir: string, outDir: string, config: TranslationConfig): void {
  mkdirSync(join(outDir, 'onnx'), { recursive: true });
  for (const f of TOKENIZER_FILES)
    if (existsSync(join(tokenizerDir, f))) atomicWrite(join(outDir, f), readFileSync(join(tokenizerDir, f)));
  atomicWrite(join(outDir, 'config.json'), new TextEncoder().encode(JSON.stringify(config, null, 1) + '\n'));
  writeOnnx(g, join(outDir, 'onnx', 'model.onnx'));
}

export interface LoadedTranslator {
  decoder: Seq2SeqDecoder;
  tokenizer: TextTokenizer;
  config: TranslationConfig;
}

export async function loadTranslator(dir: string, o: { runtime?: RuntimeOptions } = {}): Promise<LoadedTranslator> {
  const cfgFile = join(dir, 'config.json');
  if (!existsSync(cfgFile))
    throw new GraftError(
      `${dir}: no config.json`,
      'a translation model folder is written by graft translate-train (or saveTranslationFolder)',
    );
  let config: TranslationConfig;
  try {
    config = JSON.parse(readFileSync(cfgFile, 'utf8')) as TranslationConfig;
  } catch (e) {
    throw new GraftError(`${cfgFile}: not valid JSON (${(e as Error).message})`);
  }
  if (config.model_type !== 'graft-seq2seq')
    throw new GraftError(
      `${cfgFile}: model_type is '${String(config.model_type)}', not a Graft translation model (graft-seq2seq)`,
    );
  const onnx = join(dir, 'onnx', 'model.onnx');
  if (!existsSync(onnx)) throw new GraftError(`${dir}: no onnx/model.onnx`);
  const tokenizer = loadTokenizerSync(dir, { maxLength: config.max_source_length });
  return { decoder: await Seq2SeqDecoder.create(readOnnx(onnx), o), tokenizer, config };
}

/** Translate texts with a loaded model folder (greedy). */
export async function translateTexts(
  t: LoadedTranslator,
  texts: string[],
  o: { maxNewTokens?: number; warn?: (m: string) => void } = {},
): Promise<string[]> {
  const enc = t.tokenizer.encodeBatch(texts, {
    maxLength: t.config.max_source_length,
    ...(o.warn ? { warn: o.warn } : {}),
  });
  const sources = enc.lengths.map((len, i) =>
    Array.from(
      (enc.inputIds.data as BigInt64Array).subarray(i * enc.inputIds.dims[1]!, i * enc.inputIds.dims[1]! + len),
      Number,
    ),
  );
  const maxNew = o.maxNewTokens ?? t.config.max_target_length;
  const limit = t.config.decoder_positions;
  if (!Number.isInteger(maxNew) || maxNew < 1)
    throw new GraftError(`max new tokens must be a positive integer, got ${maxNew}`);
  if (limit && maxNew + 1 > limit)
    throw new GraftError(
      `this decoder has ${limit} positions, so a translation can have at most ${limit - 1} tokens (asked for ${maxNew})`,
    );
  const ids = await t.decoder.greedy(
    sources,
    { start: t.config.decoder_start_token_id, eos: t.config.eos_token_id, pad: t.config.pad_token_id },
    maxNew,
  );
  return ids.map((x) => t.tokenizer.decode(x, { skipSpecialTokens: true }));
}

/** Parallel sentences from a JSONL file (optionally .gz): one object per line with a source and a target field. */
export function readParallelJsonl(
  path: string,
  sourceField: string,
  targetField: string,
): { source: string; target: string }[] {
  if (!existsSync(path)) throw new GraftError(`parallel corpus not found: ${path}`);
  const text = readTextFile(path); // bad gzip or invalid UTF-8: an error naming the file and line
  const out: { source: string; target: string }[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new GraftError(`${path}: line ${i + 1} is not valid JSON`);
    }
    if (!o || typeof o !== 'object' || Array.isArray(o))
      throw new GraftError(`${path}: line ${i + 1} is not a JSON object`);
    const s = o[sourceField],
      t = o[targetField];
    if (typeof s !== 'string' || typeof t !== 'string')
      throw new GraftError(`${path}: line ${i + 1} lacks string fields '${sourceField}' and '${targetField}'`);
    if (!s.trim() || !t.trim()) throw new GraftError(`${path}: line ${i + 1} has an empty text`);
    out.push({ source: s, target: t });
  });
  return out;
}
