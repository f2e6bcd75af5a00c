/**
 * Load a model from a path, whatever its format: an .onnx file, a .tflite file, a TF.js model.json,
 * or a folder holding one of them (Hugging Face-style onnx/model.onnx, model.onnx, model.json).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { readOnnx } from './onnx.js';
import { readTflite } from './tflite.js';
import { readTfjs } from './tfjs.js';
import { GraftError } from '../util/errors.js';

const FOLDER_FILES = ['onnx/model.onnx', 'model.onnx', 'model.json', 'model.min.js'];

export function resolveModelFile(path: string): string {
  if (!existsSync(path)) throw new GraftError(`model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    for (const c of FOLDER_FILES) if (existsSync(join(path, c))) return join(path, c);
    throw new GraftError(`${path} is a folder without ${FOLDER_FILES.join(' or ')}`);
  }
  return path;
}

export function supportedFormats(): string {
  return ['.onnx files', '.tflite files', 'TF.js model.json (or model.min.js) files', `folders with ${FOLDER_FILES.join(' or ')}`].join(', ');
}

export function loadModel(path: string): Graph {
  const file = resolveModelFile(path);
  const lower = file.toLowerCase();
  if (lower.endsWith('.onnx')) return readOnnx(file);
  if (lower.endsWith('.tflite')) return readTflite(file);
  if (lower.endsWith('.json') || lower.endsWith('.min.js')) return readTfjs(file);
  throw new GraftError(`${file}: unsupported model format (supported: ${supportedFormats()})`);
}
