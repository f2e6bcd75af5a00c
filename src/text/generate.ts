/**
 * Text generation with a causal LM ONNX graph (input_ids, attention_mask → logits [batch, seq, vocab]):
 * greedy decoding or sampling with temperature, top-k and top-p (nucleus), seeded; a batch of prompts
 * per onnxruntime run, only each row's last-position logits leaving the graph, finished rows dropped
 * from the batch. By default each new token costs one position: the graph is rewritten into a
 * key/value-cached step graph (kv-cache.ts), or a shipped cached decoder is used; `cache: false` (and a
 * graph the rewrite does not recognize, with one warning) re-runs the full prefix each step.
 */
import type { Graph } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { Rng } from '../util/random.js';
import { GraftError } from '../util/errors.js';
import type { TextTokenizer } from './tokenizer.js';
import { KvDecoder, LM_INPUTS, type KvState } from './kv-cache.js';
import { argmax } from '../util/vectors.js';

export interface SamplingOptions {
  /** 0 (or greedy) picks the most likely token; otherwise logits are divided by it before sampling (default 1). */
  temperature?: number;
  /** Sample among the k most likely tokens only. */
  topK?: number;
  /** Sample among the most likely tokens whose probabilities sum to at least p (nucleus sampling). */
  topP?: number;
  /** Pick the argmax (the default when no temperature, topK or topP is given). */
  greedy?: boolean;
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to add at most (default 40). */
  maxNewTokens?: number;
  /** End-of-text token id: generation of a row stops after it (it is not returned). */
  eos?: number;
  /** Padding id for the batch (default 0). */
  pad?: number;
  onStep?: (step: number, active: number) => void;
  /**
   * Where a note goes when a prompt is longer than the model's context (it keeps its last maxPositions
   * tokens): once per such prompt, naming it and the tokens dropped. Default: silent.
   */
  warn?: (message: string) => void;
}

/** Is this configuration sampling (rather than greedy)? */
export function isSampling(o: SamplingOptions): boolean {
  if (o.greedy || o.temperature === 0) return false;
  return o.temperature !== undefined || o.topK !== undefined || o.topP !== undefined;
}

/** Pick the next token from one row of logits. */
export function pickToken(logits: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  const n = logits.length;
  if (!isSampling(o)) return argmax(logits);
  const t = o.temperature ?? 1;
  if (!(t > 0)) throw new GraftError(`temperature must be positive for sampling, got ${t}`);
  let idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => logits[b]! - logits[a]!);
  if (o.topK !== undefined) {
    if (!(o.topK >= 1)) throw new GraftError(`top-k must be at least 1, got ${o.topK}`);
    idx = idx.slice(0, Math.floor(o.topK));
  }
  const m = logits[idx[0]!]!;
  let p = idx.map((i) => Math.exp((logits[i]! - m) / t));
  let z = p.reduce((a, b) => a + b, 0);
  p = p.map((x) => x / z);
  if (o.topP !== undefined) {
    if (!(o.topP > 0 && o.topP <= 1)) throw new GraftError(`top-p must be in (0, 1], got ${o.topP}`);
    let cum = 0,
      keep = 0;
    while (keep < p.length && cum < o.topP) cum += p[keep++]!;
    idx = idx.slice(0, keep);
    p = p.slice(0, keep);
    z = cum;
  } else z = 1;
  let u = rng.uniform() * z;
  for (let k = 0; k < idx.length; k++) {
    u -= p[k]!;
    if (u <= 0) return idx[k]!;
  }
  return idx[idx.length - 1]!;
}

export interface CausalLmOptions {
  /** Longest context (default 1024): longer prefixes keep their last maxPositions tokens. */
  maxPositions?: number;
  runtime?: RuntimeOptions;
  /** Key/value-cached decoding (default true); false re-runs the whole prefix for every token. */
  cache?: boolean;
  /**
   * A cached decoder to use as it is (e.g. a model folder's decoder_model_merged.onnx, see kv-cache.ts);
   * with `cache: false` it is run on the full prefix every step.
   */
  cached?: KvDecoder;
  /**
   * Specialize the cached step graph to one new token (constant shapes, no causal mask; default true).
   * false keeps the step graph as rewritten: only for measuring what the specialization buys.
   */
  specializeStep?: boolean;
  /** Where the one warning goes when the graph cannot be cached (default: stderr). */
  warn?: (message: string) => void;
}

const stderrWarn = (m: string) => process.stderr.write(`warning: ${m}\n`);

/** A causal LM ready for generation: a key/value-cached decoder, or one session returning each row's last-position logits. */
export class CausalLm {
  private constructor(
    private session: Session | undefined,
    private out: string,
    readonly maxPositions: number,
    private kv: KvDecoder | undefined,
    private useCache = true,
  ) {}

  /**
   * Wrap a causal LM graph (inputs input_ids, attention_mask; first output logits [batch, seq, vocab]).
   * With the cache on (the default) the graph is rewritten into prefill and step graphs; when that
   * fails, one warning names why and generation re-runs the full prefix each step.
   */
  static async create(model: Graph | undefined, opts: CausalLmOptions = {}): Promise<CausalLm> {
    const maxPositions = opts.maxPositions ?? 1024;
    if (opts.cached) return new CausalLm(undefined, '', maxPositions, opts.cached, opts.cache !== false);
    if (!model) throw new GraftError('no language model graph given');
    const logits = model.outputs[0]?.name;
    if (!logits) throw new GraftError('the language model has no outputs');
    for (const need of ['input_ids', 'attention_mask'])
      if (!model.inputs.some((i) => i.name === need))
        throw new GraftError(
          `the language model has no '${need}' input (inputs: ${model.inputs.map((i) => i.name).join(', ')})`,
        );
    if (opts.cache !== false) {
      const kv = await KvDecoder.fromGraph(model, LM_INPUTS, opts.runtime, { specialize: opts.specializeStep });
      if (kv instanceof KvDecoder) return new CausalLm(undefined, '', maxPositions, kv);
      (opts.warn ?? stderrWarn)(
        `no key/value cache for ${model.name}: ${kv.reason}; generating without one (every token re-reads the whole prefix)`,
      );
    }
    const g = model.clone();
    const b = new Builder(g, 'generate/');
    g.inputs.push({ name: 'last_position', dtype: 'int64', shape: ['batch', 1] });
    const next = b.op('GatherND', [logits, 'last_position'], { batch_dims: A.i(1) }, 'next_logits');
    g.outputs = [{ name: next }];
    g.prune();
    const session = await Session.fromGraph(g, opts.runtime, `${model.name} (generate)`);
    return new CausalLm(session, next, maxPositions, undefined);
  }

  /** How the key/value cache was obtained (rewrite, specialization, shipped file), when generation uses one. */
  get cacheSource(): string | undefined {
    return this.cached ? this.kv!.source : undefined;
  }

  /** Does generation use a key/value cache? */
  get cached(): boolean {
    return this.kv !== undefined && this.useCache;
  }

  /** Logits of the token that follows each row (rows may differ in length; right-padded with `pad`), from the full prefix. */
  async nextLogits(rows: number[][], pad = 0): Promise<Float32Array[]> {
    const ctx = rows.map((r) => (r.length > this.maxPositions ? r.slice(r.length - this.maxPositions) : r));
    const s = Math.max(...ctx.map((r) => r.length));
    if (!(s >= 1)) throw new GraftError('every prompt needs at least one token');
    if (this.kv) return (await this.kv.start(ctx, {}, pad)).logits;
    const n = ctx.length;
    const ids = new BigInt64Array(n * s).fill(BigInt(pad));
    const att = new BigInt64Array(n * s);
    const last = new BigInt64Array(n);
    ctx.forEach((r, i) => {
      r.forEach((t, j) => {
        ids[i * s + j] = BigInt(t);
        att[i * s + j] = 1n;
      });
      last[i] = BigInt(r.length - 1);
    });
    const res = await this.session!.run({
      input_ids: { dtype: 'int64', dims: [n, s], data: ids },
      attention_mask: { dtype: 'int64', dims: [n, s], data: att },
      last_position: { dtype: 'int64', dims: [n, 1], data: last },
    });
    const y = res[this.out]!;
    const v = y.dims[1]!;
    const data = y.data as Float32Array;
    return Array.from({ length: n }, (_, i) => data.subarray(i * v, (i + 1) * v));
  }

  /** New tokens for each prompt (ids), without the prompt and without the end-of-text token. */
  async generate(prompts: number[][], o: GenerateOptions = {}): Promise<number[][]> {
    const maxNew = o.maxNewTokens ?? 40;
    if (!(maxNew >= 0)) throw new GraftError(`max new tokens must be ≥ 0, got ${maxNew}`);
    const rng = new Rng(o.seed ?? 1);
    if (o.warn)
      this.warnLongPrompts(
        prompts.map((p, i) => ({ name: `prompt ${i + 1}`, tokens: p.length })),
        o.warn,
      );
    const rows = prompts.map((p) => [...p]);
    const out: number[][] = prompts.map(() => []);
    let active = [...rows.keys()];
    // cached decoding: the prompts once (prefill), then one position per token; a row that outgrows
    // the context makes every later step slide the window, which needs the full prefix (state dropped)
    let state: KvState | undefined;
    let windowed = !this.useCache;
    for (let step = 0; step < maxNew && active.length; step++) {
      // A prompt that fits but grows past the context: say once, when its start first slides out of view.
      for (const i of active)
        if (o.warn && rows[i]!.length === this.maxPositions + 1 && prompts[i]!.length <= this.maxPositions)
          o.warn(
            `prompt ${i + 1}: prompt and generated text passed the model's ${this.maxPositions} positions after ${step} new tokens; from here on only the last ${this.maxPositions} tokens are seen`,
          );
      if (this.kv && !windowed && active.some((i) => rows[i]!.length > this.maxPositions)) {
        windowed = true;
        state = undefined;
      }
      let logits: Float32Array[];
      if (!this.kv || windowed)
        logits = await this.nextLogits(
          active.map((i) => rows[i]!),
          o.pad,
        );
      else if (!state)
        ({ logits, state } = await this.kv.start(
          active.map((i) => rows[i]!),
          {},
          o.pad,
        ));
      else
        logits = await this.kv.step(
          state,
          active.map((i) => rows[i]![rows[i]!.length - 1]!),
        );
      const still: number[] = [],
        kept: number[] = [];
      active.forEach((i, k) => {
        const t = pickToken(logits[k]!, o, rng);
        if (o.eos !== undefined && t === o.eos) return;
        rows[i]!.push(t);
        out[i]!.push(t);
        still.push(i);
        kept.push(k);
      });
      if (state) this.kv!.keep(state, kept);
      active = still;
      o.onStep?.(step + 1, active.length);
    }
    return out;
  }

  /** Warn once per prompt longer than the context: its first tokens are dropped by nextLogits. */
  warnLongPrompts(prompts: { name: string; tokens: number }[], warn: (message: string) => void): void {
    for (const p of prompts)
      if (p.tokens > this.maxPositions)
        warn(
          `${p.name}: ${p.tokens} tokens, longer than the model's ${this.maxPositions} positions; its first ${p.tokens - this.maxPositions} token${p.tokens - this.maxPositions === 1 ? '' : 's'} are dropped (only the last ${this.maxPositions} are seen)`,
        );
  }

  async release(): Promise<void> {
    await this.session?.release();
    await this.kv?.release();
  }
}

export interface GeneratedText {
  prompt: string;
  /** The new tokens decoded. */
  continuation: string;
  /** Prompt and continuation decoded together (word pieces joined correctly). */
  text: string;
  /** New tokens generated (end-of-text excluded). */
  tokens: number;
}

/**
 * Generate continuations of text prompts. The prompt is encoded without special tokens and, when the
 * tokenizer has a beginning-of-text token (GPT-2-style, possibly shared with end-of-text), starts with it.
 */
export async function generateText(
  lm: CausalLm,
  tok: TextTokenizer,
  prompts: string[],
  o: GenerateOptions = {},
): Promise<GeneratedText[]> {
  const bos = tok.bosId ?? tok.eosId;
  const ids = prompts.map((p) => [...(bos !== undefined ? [bos] : []), ...tok.encode(p, { addSpecialTokens: false })]);
  const eos = o.eos ?? tok.eosId;
  const { warn, ...rest } = o;
  if (warn) {
    const quote = (p: string) => JSON.stringify(p.length > 40 ? p.slice(0, 37) + '...' : p);
    lm.warnLongPrompts(
      prompts.map((p, i) => ({ name: `prompt ${i + 1} (${quote(p)})`, tokens: ids[i]!.length })),
      warn,
    );
  }
  const gen = await lm.generate(ids, { pad: tok.padId, ...rest, ...(eos !== undefined ? { eos } : {}) });
  return prompts.map((p, i) => ({
    prompt: p,
    continuation: tok.decode(gen[i]!, { skipSpecialTokens: true }),
    text: tok.decode([...ids[i]!, ...gen[i]!], { skipSpecialTokens: true }),
    tokens: gen[i]!.length,
  }));
}
