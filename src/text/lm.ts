/**
 * Causal language modelling: the next-token cross-entropy over logits [batch, seq, vocab] with padding
 * masked (a CustomLoss), token windows cut from a corpus, batches for it, held-out perplexity, and
 * fine-tuning a GPT-style ONNX model (input_ids, attention_mask → logits) on the one training loop.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { atomicWrite, writeOnnx } from '../formats/onnx.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import type { CustomLoss } from '../train/losses.js';
import { Trainer, type TrainerOptions } from '../train/trainer.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { trainLoop, shuffledBatches } from '../train/loop.js';
import { LearningRate, Logger, runCallbacks, type RunOptions } from '../train/callbacks.js';
import { sha256 } from '../features/cache.js';
import { GraftError } from '../util/errors.js';

/** Names of the loss's inputs: the next token at each position and 1 where that prediction counts. */
export const LM_LABELS = 'lm_labels';
export const LM_MASK = 'lm_mask';

/**
 * Append −Σ mask·log softmax(logits)[label] / Σ mask to the graph. `logits` is [batch, seq, vocab];
 * labels int64 [batch, seq] (already shifted: the token that follows each position); mask float
 * [batch, seq]. Returns the loss, the summed negative log-likelihood and the token count.
 */
export function buildLmLoss(
  b: Builder,
  logits: string,
  labels = LM_LABELS,
  mask = LM_MASK,
): { loss: string; nll: string; count: string } {
  const logp = b.op('LogSoftmax', [logits], { axis: A.i(-1) });
  const picked = b.squeeze(b.op('GatherElements', [logp, b.unsqueeze(labels, [2])], { axis: A.i(2) }), [2]);
  const nll = b.neg(b.reduceAll('ReduceSum', b.mul(picked, mask)));
  const count = b.reduceAll('ReduceSum', mask);
  // max(count, 1): an all-padding batch gives 0, not NaN
  const loss = b.div(nll, b.op('Max', [count, b.f32(1)]));
  return { loss, nll, count };
}

/** The masked next-token cross-entropy as a CustomLoss for Trainer; also reports the NLL sum and token count. */
export function lmLoss(): CustomLoss {
  return {
    kind: 'custom',
    build(_g, output, b) {
      const { loss, nll, count } = buildLmLoss(b, output);
      return { loss, targets: [LM_LABELS, LM_MASK], outputs: [nll, count] };
    },
    probeFeeds(dims) {
      const [bt, s] = [dims[0]!, dims[1]!];
      return {
        [LM_LABELS]: { dtype: 'int64', dims: [bt, s], data: new BigInt64Array(bt * s) },
        [LM_MASK]: { dtype: 'float32', dims: [bt, s], data: new Float32Array(bt * s).fill(1) },
      };
    },
  };
}

export interface WindowOptions {
  /** Model positions per window (default 128); each window holds window + 1 tokens, shifted by one for the labels. */
  window?: number;
  /** Token appended after each document (end of text); none when undefined. */
  eos?: number;
}

/**
 * Concatenate tokenized documents (each followed by `eos`) and cut the stream into windows of
 * window + 1 tokens that overlap by one, so every token after the first is predicted exactly once.
 */
export function makeWindows(docs: number[][], opts: WindowOptions = {}): number[][] {
  const w = opts.window ?? 128;
  if (w < 2) throw new GraftError(`window must be at least 2 tokens, got ${w}`);
  const stream: number[] = [];
  for (const d of docs) {
    for (const t of d) stream.push(t);
    if (opts.eos !== undefined) stream.push(opts.eos);
  }
  const out: number[][] = [];
  for (let s = 0; s + 1 < stream.length; s += w) out.push(stream.slice(s, s + w + 1));
  return out;
}

/** Feeds for a batch of windows (right-padded with `pad`): input_ids, attention_mask, lm_labels, lm_mask. */
export function lmBatch(windows: number[][], pad = 0): Feeds {
  const bt = windows.length;
  const s = Math.max(...windows.map((w) => w.length - 1));
  if (!(s >= 1)) throw new GraftError('every language-model window needs at least 2 tokens');
  const ids = new BigInt64Array(bt * s).fill(BigInt(pad));
  const att = new BigInt64Array(bt * s);
  const labels = new BigInt64Array(bt * s);
  const mask = new Float32Array(bt * s);
  windows.forEach((w, r) => {
    for (let t = 0; t < w.length - 1; t++) {
      ids[r * s + t] = BigInt(w[t]!);
      att[r * s + t] = 1n;
      labels[r * s + t] = BigInt(w[t + 1]!);
      mask[r * s + t] = 1;
    }
  });
  return {
    input_ids: { dtype: 'int64', dims: [bt, s], data: ids },
    attention_mask: { dtype: 'int64', dims: [bt, s], data: att },
    [LM_LABELS]: { dtype: 'int64', dims: [bt, s], data: labels },
    [LM_MASK]: { dtype: 'float32', dims: [bt, s], data: mask },
  };
}

/** The model plus the LM loss, outputting only the NLL sum and token count (a forward-only evaluation graph). */
export function lmEvalGraph(model: Graph, output?: string): Graph {
  const g = model.clone();
  const logits = output ?? g.outputs[0]?.name;
  if (!logits) throw new GraftError('the language model has no outputs');
  const b = new Builder(g, 'lm_eval/');
  const { nll, count } = buildLmLoss(b, logits);
  g.inputs.push({ name: LM_LABELS, dtype: 'int64', shape: ['batch', 'sequence'] });
  g.inputs.push({ name: LM_MASK, dtype: 'float32', shape: ['batch', 'sequence'] });
  g.outputs = [{ name: nll }, { name: count }];
  return g.prune();
}

export interface PerplexityResult {
  perplexity: number;
  nll: number;
  tokens: number;
}

/** Held-out perplexity exp(Σ NLL / tokens) of a causal LM over windows, in batches. */
export async function perplexity(
  model: Graph,
  windows: number[][],
  opts: {
    batchSize?: number;
    pad?: number;
    runtime?: RuntimeOptions;
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<PerplexityResult> {
  if (!windows.length) throw new GraftError('no held-out windows to compute perplexity on');
  const g = lmEvalGraph(model);
  const [nllName, countName] = [g.outputs[0]!.name, g.outputs[1]!.name];
  const session = await Session.fromGraph(g, opts.runtime, `${model.name} (perplexity)`);
  const bs = opts.batchSize ?? 8;
  let nll = 0,
    tokens = 0;
  try {
    for (let i = 0; i < windows.length; i += bs) {
      const res = await session.run(lmBatch(windows.slice(i, i + bs), opts.pad));
      nll += Number(res[nllName]!.data[0]);
      tokens += Number(res[countName]!.data[0]);
      opts.onProgress?.(Math.min(i + bs, windows.length), windows.length);
    }
  } finally {
    await session.release();
  }
  return { perplexity: Math.exp(nll / tokens), nll, tokens };
}

export interface LmFinetuneOptions extends RunOptions {
  epochs?: number;
  batchSize?: number;
  /** Peak learning rate (default 3e-4), linear warmup over `warmup` of the steps then linear decay to 0. */
  lr?: number;
  warmup?: number;
  weightDecay?: number;
  clipNorm?: number;
  seed?: number;
  pad?: number;
  /** Stop after this many steps (default: all epochs). */
  maxSteps?: number;
  trainable?: TrainerOptions['trainable'];
  runtime?: RuntimeOptions;
  onStep?: (info: { step: number; steps: number; epoch: number; loss: number; lr: number }) => void;
}

export { linearSchedule } from '../train/schedule.js';

/**
 * Fine-tune a causal LM on windows on the one training loop (a seeded shuffle of the windows per
 * epoch, warmup then linear decay); returns the Trainer (call toGraph() for the trained model, then
 * release()). With `checkpointDir` every epoch is checkpointed and `resume` continues bit for bit.
 */
export async function finetuneLm(model: Graph, windows: number[][], opts: LmFinetuneOptions = {}): Promise<Trainer> {
  return (await finetuneLmRun(model, windows, opts)).trainer;
}

/** finetuneLm, also saying where a resumed run continued from. */
export async function finetuneLmRun(
  model: Graph,
  windows: number[][],
  opts: LmFinetuneOptions = {},
): Promise<{ trainer: Trainer; losses: number[]; resumedFrom: number }> {
  if (!windows.length) throw new GraftError('no training windows: the corpus is empty');
  const bs = opts.batchSize ?? 8;
  if (!(Number.isInteger(bs) && bs >= 1)) throw new GraftError(`batch size must be a whole number ≥ 1, got ${bs}`);
  const epochs = opts.epochs ?? 1;
  const perEpoch = Math.ceil(windows.length / bs);
  const steps = Math.min(opts.maxSteps ?? Infinity, perEpoch * epochs);
  const lr = opts.lr ?? 3e-4;
  const config = {
    windows: windows.length,
    data: sha256(new Uint8Array(Int32Array.from(windows.flat()).buffer)),
    batchSize: bs,
    epochs,
    steps,
    lr,
    warmup: opts.warmup ?? 0.05,
    weightDecay: opts.weightDecay ?? 0.01,
    clipNorm: opts.clipNorm ?? 1,
    seed: opts.seed ?? 1,
    pad: opts.pad ?? 0,
    trainable: opts.trainable
      ? String(JSON.stringify(opts.trainable, (_k, v) => (v instanceof RegExp ? String(v) : v)))
      : null,
  };
  const callbacks = runCallbacks(opts, config, 'fine-tuning');
  const trainer = await Trainer.create(model, {
    loss: lmLoss(),
    optimizer: { kind: 'adamw', weightDecay: opts.weightDecay ?? 0.01 },
    lr,
    ...(opts.clipNorm !== undefined ? { clipNorm: opts.clipNorm } : { clipNorm: 1 }),
    ...(opts.trainable ? { trainable: opts.trainable } : {}),
    ...(opts.runtime ? { runtime: opts.runtime } : {}),
  });
  const source = shuffledBatches(
    windows.length,
    bs,
    epochs,
    (idx) => ({
      feeds: lmBatch(
        idx.map((k) => windows[k]!),
        opts.pad,
      ),
      size: idx.length,
    }),
    { maxSteps: steps },
  );
  const r = await trainLoop(trainer, source, {
    seed: opts.seed ?? 1,
    lr,
    callbacks: [
      LearningRate.of({ kind: 'linear', warmupFraction: opts.warmup ?? 0.05 }, lr, {
        totalSteps: steps,
        stepsPerEpoch: perEpoch,
      }),
      ...(opts.onStep
        ? [
            new Logger({
              onStep: (_c, s) => opts.onStep!({ step: s.step, steps, epoch: s.epoch, loss: s.loss, lr: s.lr }),
            }),
          ]
        : []),
      ...callbacks,
    ],
  });
  return { trainer: r.trainer, losses: r.losses, resumedFrom: r.resumedFrom };
}

/** A [batch, seq] int64 tensor from rows of equal length. */
export function idsTensor(rows: number[][]): Tensor {
  const s = rows[0]?.length ?? 0;
  return { dtype: 'int64', dims: [rows.length, s], data: BigInt64Array.from(rows.flat().map((x) => BigInt(x))) };
}

const FOLDER_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
  'vocab.txt',
];

/**
 * Save a trained text model as a Hugging Face-style folder: `onnx/model.onnx` (written atomically)
 * plus the tokenizer and config files copied from the folder it was trained from, so `graft generate`
 * and `loadModelFolder` read it like the original.
 */
export function saveTextModelFolder(
  g: Graph,
  fromDir: string,
  outDir: string,
  extra: Record<string, unknown> = {},
): void {
  mkdirSync(join(outDir, 'onnx'), { recursive: true });
  for (const f of FOLDER_FILES)
    if (existsSync(join(fromDir, f))) atomicWrite(join(outDir, f), readFileSync(join(fromDir, f)));
  if (Object.keys(extra).length)
    atomicWrite(join(outDir, 'graft_training.json'), new TextEncoder().encode(JSON.stringify(extra, null, 1) + '\n'));
  writeOnnx(g, join(outDir, 'onnx', 'model.onnx'));
}
