/** Load a model from a path: an .onnx file, or a Hugging Face-style folder holding onnx/model.onnx. */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { readOnnx } from './onnx.js';
import { GraftError } from '../util/errors.js';

export function resolveModelFile(path: string): string {
  if (!existsSync(path)) throw new GraftError(`model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    for (const c of ['onnx/model.onnx', 'model.onnx']) if (existsSync(join(path, c))) return join(path, c);
    throw new GraftError(`${path} is a folder without onnx/model.onnx or model.onnx`);
  }
  return path;
}

export function loadModel(path: string): Graph {
  const file = resolveModelFile(path);
  if (file.endsWith('.onnx')) return readOnnx(file);
  throw new GraftError(`${file}: unsupported model format (supported: .onnx files and folders with onnx/model.onnx)`);
}
