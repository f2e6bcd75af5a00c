/**
 * `graft generate`: continue text prompts with a causal language model (greedy, or sampled with
 * temperature, top-k, top-p), key/value-cached unless --no-cache: a folder's shipped cached decoder
 * (decoder_model_merged.onnx / decoder_with_past_model.onnx) as it is, else the graph rewritten. The
 * flags, one call into openCausalLm (src/text/open-lm.ts) and generateText, the texts.
 */
import { generateText, type GenerateOptions } from '../text/generate.js';
import { openCausalLm } from '../text/open-lm.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';

export interface GenerateFlags {
  model: string;
  tokenizer?: string;
  prompt: string[];
  maxNewTokens: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed: string;
  greedy?: boolean;
  json?: boolean;
  /** false with --no-cache: every token re-reads the whole prefix. */
  cache?: boolean;
}

export async function generateCommand(o: GenerateFlags) {
  if (!o.prompt?.length) throw new GraftError('give at least one --prompt');
  const opts: GenerateOptions = { maxNewTokens: int(o.maxNewTokens, '--max-new-tokens'), seed: int(o.seed, '--seed') };
  const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);
  if (o.temperature !== undefined) opts.temperature = num(o.temperature, '--temperature');
  if (o.topK !== undefined) opts.topK = int(o.topK, '--top-k');
  if (o.topP !== undefined) opts.topP = num(o.topP, '--top-p');
  if (o.greedy) {
    const sampling = (['temperature', 'topK', 'topP'] as const).filter(
      (k) => o[k] !== undefined && !(k === 'temperature' && Number(o[k]) === 0),
    );
    if (sampling.length)
      throw new GraftError(
        `--greedy cannot be combined with ${sampling.map((k) => `--${k.replace(/[A-Z]/, (c) => `-${c.toLowerCase()}`)}`).join(', ')}`,
      );
    opts.greedy = true;
  }
  if (opts.temperature !== undefined && opts.temperature < 0)
    throw new GraftError(`--temperature must be ≥ 0, got ${opts.temperature}`);
  if (opts.topK !== undefined && opts.topK < 1) throw new GraftError(`--top-k must be ≥ 1, got ${opts.topK}`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1))
    throw new GraftError(`--top-p must be in (0, 1], got ${opts.topP}`);
  const { lm, tokenizer } = await openCausalLm(o.model, {
    ...(o.tokenizer !== undefined ? { tokenizer: o.tokenizer } : {}),
    cache: o.cache !== false,
    warn,
  });
  try {
    const res = await generateText(lm, tokenizer, o.prompt, { ...opts, warn });
    if (o.json) process.stdout.write(`${JSON.stringify({ model: o.model, options: opts, results: res }, null, 2)}\n`);
    else for (const r of res) process.stdout.write(`${r.text}\n`);
  } finally {
    await lm.release();
  }
}
