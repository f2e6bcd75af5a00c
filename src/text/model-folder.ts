/**
 * Hugging Face-style text model folders, loaded offline by path: `config.json`, `tokenizer.json`
 * (+ `tokenizer_config.json`) and the ONNX graph (`onnx/model.onnx` or `model.onnx`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { readOnnx } from '../formats/onnx.js';
import { GraftError } from '../util/errors.js';
import { insideFolder } from '../util/paths.js';
import { loadTokenizerSync, type TextTokenizer } from './tokenizer.js';

export interface TextModelConfig {
  model_type?: string;
  hidden_size?: number;
  n_embd?: number;
  num_hidden_layers?: number;
  n_layer?: number;
  num_attention_heads?: number;
  max_position_embeddings?: number;
  n_positions?: number;
  vocab_size?: number;
  [k: string]: unknown;
}

export interface TextModelFolder {
  dir: string;
  config: TextModelConfig;
  tokenizer: TextTokenizer;
  graph: Graph;
  /** The ONNX file the graph came from. */
  onnxPath: string;
  /** Longest input the model takes (max positions), when the config says. */
  maxPositions: number | undefined;
  /** Hidden width, when the config says. */
  hiddenSize: number | undefined;
}

const ONNX_CANDIDATES = ['onnx/model.onnx', 'model.onnx'];

export function textModelOnnxPath(dir: string): string {
  for (const c of ONNX_CANDIDATES) if (existsSync(join(dir, c))) return insideFolder(dir, c, 'model file');
  throw new GraftError(
    `${dir}: no ${ONNX_CANDIDATES.join(' or ')}`,
    'a text model folder needs the model exported to ONNX',
  );
}

export function readTextConfig(dir: string): TextModelConfig {
  const file = insideFolder(dir, 'config.json', 'model config');
  if (!existsSync(file)) return {};
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new GraftError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new GraftError(`${file}: not a JSON object`);
  return v as TextModelConfig;
}

/** The model's positions (BERT: max_position_embeddings, GPT-2: n_positions), if the config gives them. */
export function configPositions(config: TextModelConfig): number | undefined {
  return num(config.max_position_embeddings ?? config.n_positions);
}

/** Is this path a text model folder (a folder holding tokenizer.json)? */
export function isTextModelFolder(path: string): boolean {
  return existsSync(join(path, 'tokenizer.json'));
}

export async function loadModelFolder(dir: string): Promise<TextModelFolder> {
  return loadModelFolderSync(dir);
}

export function loadModelFolderSync(dir: string): TextModelFolder {
  if (!existsSync(dir)) throw new GraftError(`model folder not found: ${dir}`);
  const config = readTextConfig(dir);
  const maxPositions = configPositions(config);
  const tokenizer = loadTokenizerSync(
    dir,
    maxPositions ? { maxLength: Math.min(maxPositions, tokenizerMax(dir) ?? maxPositions) } : {},
  );
  const onnxPath = textModelOnnxPath(dir);
  const graph = readOnnx(onnxPath);
  return {
    dir,
    config,
    tokenizer,
    graph,
    onnxPath,
    maxPositions,
    hiddenSize: num(config.hidden_size ?? config.n_embd),
  };
}

function tokenizerMax(dir: string): number | undefined {
  const f = insideFolder(dir, 'tokenizer_config.json', 'tokenizer config');
  if (!existsSync(f)) return undefined;
  try {
    return num((JSON.parse(readFileSync(f, 'utf8')) as { model_max_length?: number }).model_max_length);
  } catch {
    return undefined;
  }
}

function num(v: unknown): number | undefined {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 && n < 1e6 ? n : undefined;
}
