/**
 * A causal language model from a path, ready to generate (`graft generate`): `openCausalLm` finds the
 * tokenizer (the folder itself, or beside / above the .onnx file), reads the positions and head sizes
 * from config.json, and opens the model key/value-cached unless `cache: false`: a folder's shipped
 * cached decoder (decoder_model_merged.onnx / decoder_with_past_model.onnx) as it is, else the graph
 * rewritten (./generate.ts CausalLm).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadModel } from '../formats/load.js';
import { GraftError } from '../util/errors.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';
import { readTextConfig } from './model-folder.js';
import { CausalLm } from './generate.js';
import { loadShippedDecoder } from './kv-cache.js';

export interface OpenLmOptions {
  /** The tokenizer folder or tokenizer.json (default: found from the model path). */
  tokenizer?: string;
  /** false: every token re-reads the whole prefix (default true: key/value-cached). */
  cache?: boolean;
  /** Told when the graph cannot be rewritten for the cache (it then runs uncached). */
  warn?: (m: string) => void;
}

/** The tokenizer folder for a model path: the folder itself, or the folder above an onnx/ subfolder. */
export function tokenizerDirOf(model: string): string {
  if (!existsSync(model)) throw new GraftError(`model not found: ${model}`);
  if (statSync(model).isDirectory()) return model;
  const d = dirname(model);
  if (existsSync(join(d, 'tokenizer.json'))) return d;
  if (existsSync(join(d, '..', 'tokenizer.json'))) return join(d, '..');
  throw new GraftError(`no tokenizer.json beside ${model}`, 'pass --tokenizer <folder or tokenizer.json>');
}

/** The model at `model` (a folder or an .onnx file) and its tokenizer; release() the model when done. */
export async function openCausalLm(
  model: string,
  o: OpenLmOptions = {},
): Promise<{ lm: CausalLm; tokenizer: TextTokenizer }> {
  const tokDir = o.tokenizer ?? tokenizerDirOf(model);
  const tokenizer = await loadTokenizer(tokDir);
  const isDir = existsSync(model) && statSync(model).isDirectory();
  const cfg = isDir ? readTextConfig(model) : readTextConfig(tokDir.endsWith('.json') ? dirname(tokDir) : tokDir);
  const maxPos = Number(cfg.n_positions ?? cfg.max_position_embeddings) || undefined;
  const heads = Number(cfg.n_head ?? cfg.num_attention_heads) || undefined;
  const width = Number(cfg.n_embd ?? cfg.hidden_size) || undefined;
  const shipped = isDir
    ? await loadShippedDecoder(model, heads && width ? { heads, headDim: width / heads } : {})
    : undefined;
  const lm = shipped
    ? await CausalLm.create(undefined, {
        cached: shipped,
        cache: o.cache !== false,
        ...(maxPos ? { maxPositions: maxPos } : {}),
      })
    : await CausalLm.create(loadModel(model), {
        cache: o.cache !== false,
        ...(o.warn ? { warn: o.warn } : {}),
        ...(maxPos ? { maxPositions: maxPos } : {}),
      });
  return { lm, tokenizer };
}
