/**
 * Model folders in the layout Transformers.js uses (what `graft pull` fetches from the hub):
 * `onnx/model.onnx` beside its quantized variants (`model_quantized.onnx`, `model_fp16.onnx`,
 * `model_int8.onnx`, `model_uint8.onnx`, `model_q4.onnx`, `model_q4f16.onnx`, `model_bnb4.onnx`),
 * `config.json` (class names in `id2label`) and `preprocessor_config.json` (image preprocessing).
 * This module owns choosing the ONNX file, reading the preprocessing as Transformers.js reads it into
 * Graft's ImagePreprocess, and refusing to train quantized-only weights with a message saying what to
 * download.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { getLabels, getPreprocess, setLabels, setPreprocess, type ImagePreprocess } from './preprocess.js';
import { GraftError } from '../util/errors.js';
import { insideFolder } from '../util/paths.js';

/** Full-precision ONNX files of a folder, in the order they are chosen. */
export const FP32_FILES = ['onnx/model.onnx', 'model.onnx', 'onnx/decoder_model.onnx'];

/**
 * Transformers.js's variant suffixes (its `dtype` option), in the order a quantized-only folder's file
 * is chosen for inference: float32 inputs first (dynamic int8/uint8, 4-bit), float16 inputs last.
 */
export const QUANTIZED_SUFFIXES = ['_quantized', '_int8', '_uint8', '_q4', '_bnb4', '_fp16', '_q4f16'];

/** Metadata key marking a graph loaded from quantized-only weights (JSON: QuantizedMark). */
export const QUANTIZED_KEY = 'graft.quantized';

export interface QuantizedMark {
  /** The folder the model came from. */
  dir: string;
  /** The quantized file loaded, relative to dir. */
  file: string;
  /** The full-precision file that is missing, relative to dir. */
  missing: string;
  /** The hub repository, when the folder sits in the Hugging Face cache (models--ORG--NAME). */
  repo?: string;
}

export interface FolderModel {
  /** The ONNX file to load. */
  file: string;
  /** Set when only quantized variants were found. */
  quantized?: QuantizedMark;
}

/** The hub repository a folder in the Hugging Face cache layout belongs to (…/models--ORG--NAME/snapshots/REV). */
export function repoOfCacheFolder(dir: string): string | undefined {
  const parts = dir.split(sep).filter(Boolean);
  for (let i = parts.length - 1; i >= 0; i--) {
    const m = /^models--(.+)$/.exec(parts[i]!);
    if (m && parts[i + 1] === 'snapshots') return m[1]!.split('--').join('/');
  }
  return undefined;
}

/**
 * The ONNX file of a Transformers.js-layout folder: the full-precision one when present (whatever
 * variants sit beside it), else a quantized variant, marked as such; undefined when the folder has
 * neither.
 */
export function chooseFolderOnnx(dir: string): FolderModel | undefined {
  // the folder's model file must be in the folder, symlinks included (a hub snapshot links into its blobs/)
  for (const f of FP32_FILES) if (existsSync(join(dir, f))) return { file: insideFolder(dir, f, 'model file') };
  for (const fp32 of FP32_FILES) {
    const sub = dirname(fp32) === '.' ? '' : dirname(fp32);
    const stem = basename(fp32, '.onnx');
    const here = join(dir, sub);
    if (!existsSync(here)) continue;
    const names = new Set(readdirSync(here));
    for (const suffix of QUANTIZED_SUFFIXES) {
      const name = `${stem}${suffix}.onnx`;
      if (!names.has(name)) continue;
      const repo = repoOfCacheFolder(dir);
      return {
        file: insideFolder(dir, sub ? `${sub}/${name}` : name, 'model file'),
        quantized: { dir, file: sub ? `${sub}/${name}` : name, missing: fp32, ...(repo ? { repo } : {}) },
      };
    }
  }
  return undefined;
}

/** Refuse to train a graph loaded from quantized-only weights, saying why and what to download. */
export function assertTrainableWeights(g: Graph): void {
  const s = g.metadata[QUANTIZED_KEY];
  if (!s) return;
  const q = JSON.parse(s) as QuantizedMark;
  throw new GraftError(
    `${q.dir} has only quantized weights (${q.file}): training needs the full-precision ${q.missing}, because ` +
      'quantized weights are integers (or float16) that gradient steps cannot update, and their quantize/dequantize operators have no useful gradient',
    `download it: graft pull ${q.repo ?? 'ORG/NAME'} --include ${q.missing}` +
      (q.repo ? '' : ' (ORG/NAME: the hub repository the folder came from)'),
  );
}

type Json = Record<string, unknown>;

function readJson(file: string): Json | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new GraftError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

function dims(
  v: unknown,
  what: string,
  file: string,
): { width: number; height: number } | { shortestEdge: number } | number | undefined {
  if (v === undefined || v === null) return undefined;
  if (isInt(v)) return v;
  if (typeof v === 'object') {
    const o = v as Json;
    if (isInt(o['height']) && isInt(o['width'])) return { width: o['width'], height: o['height'] };
    if (isInt(o['shortest_edge'])) return { shortestEdge: o['shortest_edge'] };
  }
  throw new GraftError(
    `${file}: unsupported ${what} ${JSON.stringify(v)} (expected a number, {height, width} or {shortest_edge})`,
  );
}

function perChannel(v: unknown, fallback: number, channels: number, what: string, file: string): number[] {
  if (v === undefined || v === null) return Array(channels).fill(fallback) as number[];
  if (typeof v === 'number') return Array(channels).fill(v) as number[];
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) {
    if (v.length === channels) return v as number[];
    if (v.length === 1) return Array(channels).fill(v[0]) as number[];
  }
  throw new GraftError(`${file}: ${what} ${JSON.stringify(v)} does not match the model's ${channels} input channels`);
}

/** PIL resampling codes as Transformers.js maps them (box and hamming fall back to bilinear there too). */
const RESAMPLE: Record<number, ImagePreprocess['resample']> = {
  0: 'nearest',
  1: 'lanczos',
  2: 'bilinear',
  3: 'bicubic',
  4: 'bilinear',
  5: 'bilinear',
};

/**
 * A preprocessor_config.json as Transformers.js's image processors read it, as Graft's preprocessing.
 * Resize: `size` {height, width} stretches, {shortest_edge} keeps the aspect ratio (ConvNeXt: to
 * shortest_edge / crop_pct, then a centre crop of shortest_edge, or a plain stretch from 384 up); then
 * `do_center_crop` cuts `crop_size`. Values: pixel × rescale_factor (when do_rescale, default 1/255),
 * then (v − image_mean) / image_std when do_normalize (EfficientNet with include_top: std squared, as
 * Transformers.js does); `do_flip_channel_order` gives BGR. A bare number as size is a square when
 * nothing is cropped, else the shortest edge (Graft's inputs have one fixed size).
 * `inputSize` is the model's spatial input size when its graph fixes it (used when nothing is resized).
 */
export function preprocessFromHfConfig(
  cfg: Json,
  channels: 1 | 3,
  file = 'preprocessor_config.json',
  inputSize?: { width: number; height: number },
): ImagePreprocess {
  const type = String(cfg['image_processor_type'] ?? cfg['feature_extractor_type'] ?? '');
  let std = perChannel(cfg['image_std'] ?? cfg['std'], 1, channels, 'image_std', file);
  const mean = perChannel(cfg['image_mean'] ?? cfg['mean'], 0, channels, 'image_mean', file);
  if (/^EfficientNet/.test(type) && (cfg['include_top'] ?? true)) std = std.map((x) => x * x);
  const doRescale = cfg['do_rescale'] ?? true;
  const factor = typeof cfg['rescale_factor'] === 'number' ? cfg['rescale_factor'] : 1 / 255;
  const doNormalize = cfg['do_normalize'] === true;
  // Graft computes (pixel/255 − M) / S; Transformers.js (k · pixel/255 − m) / s with k = 255 · factor.
  const k = doRescale ? 255 * factor : 255;
  const M = doNormalize ? mean.map((m) => m / k) : mean.map(() => 0);
  const S = doNormalize ? std.map((s) => s / k) : std.map(() => 1 / k);

  const size = dims(cfg['size'] ?? cfg['image_size'], 'size', file);
  const doResize = cfg['do_resize'] ?? size !== undefined;
  const cropSize = dims(cfg['crop_size'], 'crop_size', file);
  const doCrop = cfg['do_center_crop'] === true && cropSize !== undefined;
  if (doCrop && typeof cropSize === 'object' && 'shortestEdge' in cropSize)
    throw new GraftError(`${file}: crop_size must be a number or {height, width}`);
  const crop = doCrop
    ? typeof cropSize === 'number'
      ? { width: cropSize, height: cropSize }
      : (cropSize as { width: number; height: number })
    : undefined;

  let fit: ImagePreprocess['fit'];
  let out: { width: number; height: number } | undefined = crop;
  let resize: ImagePreprocess['resize'] = crop ? 'center-crop' : 'stretch';
  if (doResize && size !== undefined) {
    if (/^ConvNext/.test(type)) {
      const se = typeof size === 'number' ? size : 'shortestEdge' in size ? size.shortestEdge : undefined;
      if (se === undefined) throw new GraftError(`${file}: a ConvNeXt image processor needs size {shortest_edge}`);
      const pct = typeof cfg['crop_pct'] === 'number' ? cfg['crop_pct'] : 224 / 256;
      if (se < 384) {
        fit = { shortestEdge: Math.floor(se / pct) };
        out = { width: se, height: se };
        resize = 'center-crop';
      } else {
        fit = { width: se, height: se };
        out = { width: se, height: se };
        resize = 'stretch';
      }
    } else if (typeof size === 'number') {
      fit = crop ? { shortestEdge: size } : { width: size, height: size };
      out ??= { width: size, height: size };
    } else if ('shortestEdge' in size) {
      fit = { shortestEdge: size.shortestEdge };
      // nothing cropped: Transformers.js would keep the aspect ratio; a fixed-size input needs a square
      if (!out) {
        out = inputSize ?? { width: size.shortestEdge, height: size.shortestEdge };
        resize = 'center-crop';
      }
    } else {
      fit = { width: size.width, height: size.height };
      out ??= { width: size.width, height: size.height };
    }
  }
  out ??= inputSize;
  if (!out)
    throw new GraftError(
      `${file}: says neither a resize size nor a crop size, and the model's input size is not fixed`,
    );
  const resample = RESAMPLE[typeof cfg['resample'] === 'number' ? cfg['resample'] : 2];
  return {
    layout: 'NCHW',
    width: out.width,
    height: out.height,
    channels,
    channelOrder: channels === 1 ? 'GRAY' : cfg['do_flip_channel_order'] === true ? 'BGR' : 'RGB',
    mean: M,
    std: S,
    resize,
    ...(fit ? { fit } : {}),
    ...(resample ? { resample } : {}),
    source: 'file',
  };
}

/**
 * Class names from a config.json's id2label, in index order; undefined when absent, when the indices
 * are not 0…n−1, or when every name is a placeholder (LABEL_0, LABEL_1…).
 */
export function labelsFromHfConfig(config: Json): string[] | undefined {
  const m = config['id2label'];
  if (!m || typeof m !== 'object' || Array.isArray(m)) return undefined;
  const entries = Object.entries(m as Record<string, unknown>);
  const labels: string[] = [];
  for (const [k, v] of entries) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i >= entries.length || typeof v !== 'string') return undefined;
    labels[i] = v;
  }
  if (labels.length !== entries.length || labels.some((l) => l === undefined)) return undefined;
  if (labels.every((l, i) => l === `LABEL_${i}`)) return undefined;
  return labels;
}

/** The model folder an ONNX file belongs to: its own folder, or the parent of an `onnx/` folder. */
export function folderOfOnnx(file: string): string {
  const d = dirname(file);
  return basename(d) === 'onnx' ? dirname(d) : d;
}

/** The graph's image input: channels and (when fixed) spatial size, from an NCHW shape. */
function imageInput(g: Graph): { channels: 1 | 3; size?: { width: number; height: number } } | undefined {
  const input = g.dataInputs()[0];
  const shape = input?.shape;
  if (!shape || shape.length !== 4) return undefined;
  const c = shape[1];
  const channels = c === 1 ? 1 : c === 3 || typeof c !== 'number' ? 3 : undefined;
  if (!channels) return undefined;
  const [h, w] = [shape[2], shape[3]];
  return { channels, ...(isInt(h) && isInt(w) ? { size: { width: w, height: h } } : {}) };
}

/**
 * Record what a Transformers.js-layout folder says about a graph loaded from it: the image
 * preprocessing (preprocessor_config.json) and class names (config.json id2label), unless the ONNX
 * file records its own (Graft's metadata wins), and the quantized-only mark.
 */
export function applyFolderMetadata(g: Graph, dir: string, quantized?: QuantizedMark): void {
  if (quantized) g.metadata[QUANTIZED_KEY] = JSON.stringify(quantized);
  const preFile = insideFolder(dir, 'preprocessor_config.json', 'preprocessor config');
  const pre = readJson(preFile);
  const img = imageInput(g);
  if (pre && img && !getPreprocess(g)) setPreprocess(g, preprocessFromHfConfig(pre, img.channels, preFile, img.size));
  const config = readJson(insideFolder(dir, 'config.json', 'model config'));
  // class names only for image classifiers (text folders keep theirs in Graft's own files)
  const labels = img && config && labelsFromHfConfig(config);
  if (labels && !getLabels(g)) setLabels(g, labels);
}
