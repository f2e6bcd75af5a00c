/**
 * `graft generate`: continue text prompts with a causal language model (greedy, or sampled with
 * temperature, top-k, top-p), key/value-cached unless --no-cache: a folder's shipped cached decoder
 * (decoder_model_merged.onnx / decoder_with_past_model.onnx) as it is, else the graph rewritten.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadModel } from '../formats/load.js';
import { loadTokenizer } from '../text/tokenizer.js';
import { readTextConfig } from '../text/model-folder.js';
import { CausalLm, generateText, type GenerateOptions } from '../text/generate.js';
import { loadShippedDecoder } from '../text/kv-cache.js';
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

/** The tokenizer folder for a model path: the folder itself, or the folder above an onnx/ subfolder. */
function tokenizerDirOf(model: string): string {
  if (!existsSync(model)) throw new GraftError(`model not found: ${model}`);
  if (statSync(model).isDirectory()) return model;
  const d = dirname(model);
  if (existsSync(join(d, 'tokenizer.json'))) return d;
  if (existsSync(join(d, '..', 'tokenizer.json'))) return join(d, '..');
  throw new GraftError(`no tokenizer.json beside ${model}`, 'pass --tokenizer <folder or tokenizer.json>');
}

export async function generateCommand(o: GenerateFlags) {
  if (!o.prompt?.length) throw new GraftError('give at least one --prompt');
  const tokDir = o.tokenizer ?? tokenizerDirOf(o.model);
  const tok = await loadTokenizer(tokDir);
  const cfg =
    existsSync(o.model) && statSync(o.model).isDirectory()
      ? readTextConfig(o.model)
      : readTextConfig(tokDir.endsWith('.json') ? dirname(tokDir) : tokDir);
  const maxPos = Number(cfg.n_positions ?? cfg.max_position_embeddings) || undefined;
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
        `--greedy cannot be combined with ${sampling.map((k) => '--' + k.replace(/[A-Z]/, (c) => '-' + c.toLowerCase())).join(', ')}`,
        'drop --greedy to sample',
      );
    opts.greedy = true;
  }
  if (opts.temperature !== undefined && opts.temperature < 0)
    throw new GraftError(`--temperature must be ≥ 0, got ${opts.temperature}`);
  if (opts.topK !== undefined && opts.topK < 1) throw new GraftError(`--top-k must be ≥ 1, got ${opts.topK}`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1))
    throw new GraftError(`--top-p must be in (0, 1], got ${opts.topP}`);
  const isDir = existsSync(o.model) && statSync(o.model).isDirectory();
  const heads = Number(cfg.n_head ?? cfg.num_attention_heads) || undefined;
  const width = Number(cfg.n_embd ?? cfg.hidden_size) || undefined;
  const shipped = isDir
    ? await loadShippedDecoder(o.model, heads && width ? { heads, headDim: width / heads } : {})
    : undefined;
  const lm = shipped
    ? await CausalLm.create(undefined, {
        cached: shipped,
        cache: o.cache !== false,
        ...(maxPos ? { maxPositions: maxPos } : {}),
      })
    : await CausalLm.create(loadModel(o.model), {
        cache: o.cache !== false,
        warn,
        ...(maxPos ? { maxPositions: maxPos } : {}),
      });
  try {
    const res = await generateText(lm, tok, o.prompt, { ...opts, warn });
    if (o.json) process.stdout.write(JSON.stringify({ model: o.model, options: opts, results: res }, null, 2) + '\n');
    else for (const r of res) process.stdout.write(`${r.text}\n`);
  } finally {
    await lm.release();
  }
}
