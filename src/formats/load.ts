/**
 * Load a model from a path, whatever its format: an .onnx file, a .tflite file, a TF.js model.json,
 * or a folder holding one of them. Folders in the Transformers.js layout (onnx/model.onnx beside
 * quantized variants, config.json, preprocessor_config.json) load as they are: the full-precision
 * file is chosen, and the folder's preprocessing and class names are recorded on the graph
 * (src/formats/hf-folder.ts). The same happens for an .onnx file given inside such a folder. A plain
 * catalog file (src/hub/catalog.ts) gets the preprocessing its catalog entry states.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { readOnnx } from './onnx.js';
import { readTflite } from './tflite.js';
import { readTfjs } from './tfjs.js';
import { applyFolderMetadata, chooseFolderOnnx, folderOfOnnx, FP32_FILES, type QuantizedMark } from './hf-folder.js';
import { getPreprocess, setPreprocess } from './preprocess.js';
import { catalogEntryForFile } from '../hub/catalog.js';
import { GraftError } from '../util/errors.js';

const OTHER_FOLDER_FILES = ['model.json', 'model.min.js'];
const FOLDER_FILES = [...FP32_FILES, ...OTHER_FOLDER_FILES];

interface Resolved {
  file: string;
  /** The model folder, when the path was one (or an .onnx file inside one). */
  dir?: string;
  quantized?: QuantizedMark;
}

function resolve(path: string): Resolved {
  if (!existsSync(path)) throw new GraftError(`model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    const onnx = chooseFolderOnnx(path);
    if (onnx) return { file: onnx.file, dir: path, ...(onnx.quantized ? { quantized: onnx.quantized } : {}) };
    for (const c of OTHER_FOLDER_FILES) if (existsSync(join(path, c))) return { file: join(path, c) };
    throw new GraftError(`${path} is a folder without ${FOLDER_FILES.join(' or ')} (or a quantized onnx/model_*.onnx)`);
  }
  return path.toLowerCase().endsWith('.onnx') ? { file: path, dir: folderOfOnnx(path) } : { file: path };
}

export function resolveModelFile(path: string): string {
  return resolve(path).file;
}

export function supportedFormats(): string {
  return [
    '.onnx files',
    '.tflite files',
    'TF.js model.json (or model.min.js) files',
    `folders with ${FOLDER_FILES.join(' or ')}`,
  ].join(', ');
}

export function loadModel(path: string): Graph {
  const r = resolve(path);
  const lower = r.file.toLowerCase();
  if (lower.endsWith('.onnx')) {
    const g = readOnnx(r.file);
    if (r.dir) applyFolderMetadata(g, r.dir, r.quantized);
    // a catalog file (e.g. mobilenetv2-12.onnx from the ONNX Model Zoo) gets the preprocessing its publisher states
    const entry = catalogEntryForFile(basename(r.file));
    if (entry?.imagePreprocess && !getPreprocess(g)) setPreprocess(g, entry.imagePreprocess);
    return g;
  }
  if (lower.endsWith('.tflite')) return readTflite(r.file);
  if (lower.endsWith('.json') || lower.endsWith('.min.js')) return readTfjs(r.file);
  throw new GraftError(`${r.file}: unsupported model format (supported: ${supportedFormats()})`);
}
