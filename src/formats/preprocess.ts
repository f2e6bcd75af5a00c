/**
 * Preprocessing that travels with a model: what an image must become before it enters the graph,
 * and the names of the output classes. Stored in the ONNX file's metadata under `graft.preprocess`
 * and `graft.labels`, so later commands need no guessing.
 */
import type { Graph } from '../graph/graph.js';

export interface ImagePreprocess {
  /** Input tensor layout after import (Graft's graphs are NCHW). */
  layout: 'NCHW';
  width: number;
  height: number;
  channels: 1 | 3;
  channelOrder: 'RGB' | 'BGR' | 'GRAY';
  /** value = (pixel / 255 − mean) / std, per channel, with pixel in 0–255. */
  mean: number[];
  std: number[];
  /** How the image is fitted to width × height: 'stretch' (resize both axes) or 'center-crop' (shorter side, then crop). */
  resize: 'stretch' | 'center-crop';
  /**
   * Transformers.js-style fitting (from a preprocessor_config.json), when set: first resize to
   * `width`×`height` here (both axes) or so the shorter side is `shortestEdge` (aspect kept), then,
   * with resize 'center-crop', cut the centre width × height (black padding where smaller).
   */
  fit?: { shortestEdge: number } | { width: number; height: number };
  /** Resampling kernel for the resize (default: sharp's lanczos3). */
  resample?: 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';
  /** Where the values came from: 'file' when the model file says so, 'flag' when given by the user, 'default' otherwise. */
  source: 'file' | 'flag' | 'default';
}

export function setPreprocess(g: Graph, p: ImagePreprocess): void {
  g.metadata['graft.preprocess'] = JSON.stringify(p);
}

export function getPreprocess(g: Graph): ImagePreprocess | undefined {
  const s = g.metadata['graft.preprocess'];
  return s ? (JSON.parse(s) as ImagePreprocess) : undefined;
}

export function setLabels(g: Graph, labels: string[]): void {
  g.metadata['graft.labels'] = JSON.stringify(labels);
}

export function getLabels(g: Graph): string[] | undefined {
  const s = g.metadata['graft.labels'];
  return s ? (JSON.parse(s) as string[]) : undefined;
}
