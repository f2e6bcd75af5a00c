/**
 * Load a model from a path, whatever its format: an .onnx file, a .tflite file, a TF.js model.json,
 * or a folder holding one of them (Hugging Face-style onnx/model.onnx, model.onnx, model.json).
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Graph } from '../graph/graph.js';
import { readOnnx } from './onnx.js';
import { readTflite } from './tflite.js';
import { GraftError } from '../util/errors.js';

type Reader = (path: string) => Graph;

/**
 * The TF.js importer (./tfjs.ts, readTfjs) is loaded when it is there, so this file does not depend
 * on it being present.
 */
async function optionalReader(file: string, exportName: string): Promise<Reader | undefined> {
  const here = dirname(fileURLToPath(import.meta.url));
  if (!existsSync(join(here, `${file}.ts`)) && !existsSync(join(here, `${file}.js`))) return undefined;
  const spec = `./${file}.js`;
  const m = (await import(spec)) as Record<string, unknown>;
  const f = m[exportName];
  return typeof f === 'function' ? (f as Reader) : undefined;
}
const readTfjs = await optionalReader('tfjs', 'readTfjs');

const FOLDER_FILES = ['onnx/model.onnx', 'model.onnx', ...(readTfjs ? ['model.json'] : [])];

export function resolveModelFile(path: string): string {
  if (!existsSync(path)) throw new GraftError(`model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    for (const c of FOLDER_FILES) if (existsSync(join(path, c))) return join(path, c);
    throw new GraftError(`${path} is a folder without ${FOLDER_FILES.join(' or ')}`);
  }
  return path;
}

export function supportedFormats(): string {
  return ['.onnx files', '.tflite files', ...(readTfjs ? ['TF.js model.json files'] : []), `folders with ${FOLDER_FILES.join(' or ')}`].join(', ');
}

export function loadModel(path: string): Graph {
  const file = resolveModelFile(path);
  const lower = file.toLowerCase();
  if (lower.endsWith('.onnx')) return readOnnx(file);
  if (lower.endsWith('.tflite')) return readTflite(file);
  if (readTfjs && (basename(lower) === 'model.json' || lower.endsWith('.json'))) return readTfjs(file);
  throw new GraftError(`${file}: unsupported model format (supported: ${supportedFormats()})`);
}
