/**
 * The models a server answers for: saved classifier folders (image classifiers from `graft train`, as
 * `graft predict` loads them; text classifier folders with model.onnx + tokenizer.json), each under a
 * name checked against NAME_PATTERN (the name is only ever a map key, never part of a path). Each model
 * gets one onnxruntime session (or `instances` of them), created once when it is added, each on a thread
 * of its own (src/server/threaded-session.ts: onnxruntime-node computes on the calling thread, which must
 * stay free for HTTP), and one Batcher (src/server/batcher.ts) that groups concurrent predictions into
 * batches. Models can be added, replaced and removed while
 * the server runs (Graft Studio adds the models it trains); a removed model's queued inputs still run
 * before its session is released.
 */
import { basename, resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import sharp from 'sharp';
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { loadModel } from '../formats/load.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { getLabels, getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { loadPixels, normalize, decodeBmp, type RawImage } from '../data/image.js';
import { outputsProbabilities, topK } from '../eval/classify.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { SessionPool } from './threaded-session.js';
import { isTextClassifierFolder, loadTextClassifier, type TextClassifier } from '../text/saved.js';
import { textFeeds, LOGITS } from '../text/encoder.js';
import { promptLogits } from '../text/prompt.js';
import { Batcher, type BatcherOptions, type BatcherStats } from './batcher.js';
import { GraftError } from '../util/errors.js';
import { softmax } from '../util/vectors.js';

/** What a model name may be: 1–64 of letters, digits, '.', '_' and '-', not only dots. */
export const NAME_PATTERN = /^(?!\.+$)[A-Za-z0-9._-]{1,64}$/;

/** Largest image (width × height, as its header declares) decoded: 40 megapixels. */
export const DEFAULT_MAX_PIXELS = 40_000_000;

export function checkModelName(name: string): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name))
    throw new GraftError(
      `invalid model name ${JSON.stringify(name)}: use 1 to 64 letters, digits, '.', '_' or '-' (not only dots)`,
      'name it explicitly: NAME=DIR',
    );
  return name;
}

/** No model of that name (HTTP 404). */
export class ModelNotFoundError extends GraftError {
  readonly statusCode = 404;
  constructor(name: string) {
    super(`no model named ${JSON.stringify(name)}`, 'GET /v1/models lists the models served');
    this.name = 'ModelNotFoundError';
  }
}

/** An input the model cannot take: a file that does not decode as an image, or the wrong kind of input (HTTP 415). */
export class UnsupportedInputError extends GraftError {
  readonly statusCode = 415;
  constructor(message: string, hint?: string) {
    super(message, hint);
    this.name = 'UnsupportedInputError';
  }
}

/** An input over a size limit, e.g. an image whose header declares too many pixels (HTTP 413). */
export class InputTooLargeError extends GraftError {
  readonly statusCode = 413;
  constructor(message: string, hint?: string) {
    super(message, hint);
    this.name = 'InputTooLargeError';
  }
}

/** A field of the request that is wrong (HTTP 400); the message names it. */
export class BadFieldError extends GraftError {
  readonly statusCode = 400;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'BadFieldError';
  }
}

export interface ClassProbability {
  label: string;
  index: number;
  probability: number;
}

export interface ServedPrediction {
  /** The file name (multipart), 'image' (raw body) or `texts[i]`. */
  input: string;
  top: ClassProbability[];
  /** Text only: the text was longer than the model's maximum length and was cut. */
  truncated?: boolean;
}

export interface ModelInfo {
  name: string;
  kind: 'image' | 'text';
  labels: string[];
  /** Image models: the input size and channels the images are fitted to. */
  image?: { width: number; height: number; channels: number };
  /** Text models: tokens kept per text, and the training mode recorded. */
  text?: { maxLength: number; mode: string };
  /** Batching limits and counters. */
  batching: { maxBatch: number; maxDelayMs: number; maxQueue: number; instances: number } & BatcherStats;
}

export interface ImageInput {
  /** Shown in the answer and in errors (a file name). */
  name: string;
  /** An encoded image (JPEG, PNG, …), or with `pixels` the raw pixels. */
  bytes: Uint8Array;
  /**
   * `bytes` are raw 8-bit pixels, row by row, `channels` interleaved (1 grey, 3 RGB, 4 RGBA): no decoding,
   * and none at all when they already have the model's size and channels.
   */
  pixels?: { width: number; height: number; channels: number };
}

export interface ServePredictOptions {
  /** Classes per input, most probable first (default 5). */
  top?: number;
}

export interface RegistryOptions {
  /** Batching per model (see BatcherOptions). */
  batching?: BatcherOptions;
  /** onnxruntime settings for every session (threads, device; spinning is off unless `config` turns it on). */
  runtime?: RuntimeOptions;
  /** Largest image accepted, in pixels as declared by its header (default 40 megapixels). */
  maxPixels?: number;
  /**
   * Sessions per model (default 1), each on its own thread with `runtime.threads` onnxruntime threads;
   * up to this many batches run at once.
   */
  instances?: number;
}

/** What a batch gives back per input: class probabilities (and, for text, whether it was cut). */
interface Scored {
  scores: Float32Array;
  truncated?: boolean;
}

/** One served model: its session and batcher. */
export class ServedModel {
  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly kind: 'image' | 'text',
    readonly labels: string[],
    private readonly session: SessionPool,
    private readonly batcher: Batcher<RawImage | string, Scored>,
    private readonly meta: { pre?: ImagePreprocess; text?: TextClassifier; maxPixels: number },
  ) {}

  /** Load a classifier folder (or .onnx file for an image classifier): its sessions, created now. */
  static async load(name: string, dir: string, o: RegistryOptions = {}): Promise<ServedModel> {
    checkModelName(name);
    if (!existsSync(dir)) throw new GraftError(`model not found: ${dir}`);
    const maxPixels = o.maxPixels ?? DEFAULT_MAX_PIXELS;
    // onnxruntime's pool threads do not spin-wait between runs: a server is idle between batches, and
    // spinning threads burn the cores that decoding, HTTP and the next batch need (measured: docs/serve.md)
    const runtime: RuntimeOptions = {
      ...o.runtime,
      config: { 'session.intra_op.allow_spinning': '0', ...o.runtime?.config },
    };
    const instances = o.instances ?? 1;
    const batching = { ...o.batching, maxConcurrent: o.batching?.maxConcurrent ?? instances };
    if (statSync(dir).isDirectory() && isTextClassifierFolder(dir)) {
      const c = loadTextClassifier(dir);
      const session = await SessionPool.fromGraph(c.graph, runtime, `${name} (${dir})`, instances);
      const out = c.graph.outputs[0]?.name ?? LOGITS;
      const maxLength = c.settings.maxLength;
      const run = async (texts: (RawImage | string)[]): Promise<Scored[]> => {
        const t = texts as string[];
        if (c.prompt) {
          const logits = await promptLogits(
            c.prompt,
            c.tokenizer,
            t,
            { maxLength, batchSize: t.length, warn: () => {} },
            async (f) => (await session.run(f, [LOGITS]))[LOGITS]!,
          );
          return logits.map((r) => ({ scores: Float32Array.from(softmax(r)) }));
        }
        const enc = c.tokenizer.encodeBatch(t, { maxLength, warn: () => {} });
        const r = (await session.run(textFeeds(c.graph, enc), [out]))[out]!;
        const cut = new Set(enc.truncated);
        return rows(r, t.length, name).map((row, i) => ({
          scores: out === LOGITS ? Float32Array.from(softmax(row)) : row,
          ...(cut.has(i) ? { truncated: true } : {}),
        }));
      };
      const labels = c.labels.length ? c.labels : [];
      return new ServedModel(name, dir, 'text', labels, session, new Batcher(run, batching, name), {
        text: c,
        maxPixels,
      });
    }
    let g: Graph = loadModel(dir);
    const pre = getPreprocess(g);
    if (!pre)
      throw new GraftError(
        `${dir}: the model records no image preprocessing, so images cannot be prepared for it`,
        'save it with `graft train`, or record one with `graft convert MODEL OUT.onnx --size WxH --mean … --std …`',
      );
    const inputs = g.dataInputs();
    if (inputs.length !== 1) throw new GraftError(`${dir}: expected one image input, the model has ${inputs.length}`);
    // a batch size baked into the file (e.g. 1) is made symbolic so that inputs can be batched
    if (typeof inputs[0]!.shape?.[0] === 'number') g = makeBatchDynamic(g);
    const probs = outputsProbabilities(g);
    const input = inputs[0]!.name;
    const out = g.outputs[0]!.name;
    const session = await SessionPool.fromGraph(g, runtime, `${name} (${dir})`, instances);
    const per = pre.channels * pre.height * pre.width;
    const run = async (xs: (RawImage | string)[]): Promise<Scored[]> => {
      // each input is kept as its fitted 8-bit pixels until its batch runs, then normalized straight into
      // the batch tensor: one float copy per image, made once
      const data = new Float32Array(xs.length * per);
      xs.forEach((x, i) => normalize(x as RawImage, pre, data, i * per));
      const t: Tensor = { dtype: 'float32', dims: [xs.length, pre.channels, pre.height, pre.width], data };
      const r = (await session.run({ [input]: t }, [out]))[out]!;
      return rows(r, xs.length, name).map((row) => ({ scores: probs ? row : Float32Array.from(softmax(row)) }));
    };
    const labels = getLabels(g) ?? [];
    return new ServedModel(name, dir, 'image', labels, session, new Batcher(run, batching, name), { pre, maxPixels });
  }

  info(): ModelInfo {
    const b = this.batcher;
    const pre = this.meta.pre,
      text = this.meta.text;
    return {
      name: this.name,
      kind: this.kind,
      labels: this.labels,
      ...(pre ? { image: { width: pre.width, height: pre.height, channels: pre.channels } } : {}),
      ...(text ? { text: { maxLength: text.settings.maxLength, mode: text.settings.mode } } : {}),
      batching: {
        maxBatch: b.maxBatch,
        maxDelayMs: b.maxDelayMs,
        maxQueue: b.maxQueue,
        instances: this.session.size,
        ...b.stats(),
      },
    };
  }

  stats(): BatcherStats {
    return this.batcher.stats();
  }

  /**
   * Top classes for each image. Room in the queue is reserved first (QueueFullError when there is
   * none), then every image is checked and decoded: one that is not an image is an
   * UnsupportedInputError naming it, one over the pixel limit an InputTooLargeError.
   */
  async predictImages(images: ImageInput[], o: ServePredictOptions = {}): Promise<ServedPrediction[]> {
    if (this.kind !== 'image')
      throw new UnsupportedInputError(`model ${this.name} classifies texts, not images`, 'send JSON: {"texts": ["…"]}');
    if (!images.length) throw new BadFieldError('images', 'no image was sent');
    const top = checkTop(o.top);
    const pre = this.meta.pre!;
    const admission = this.batcher.admit(images.length);
    let tensors: RawImage[];
    try {
      tensors = await Promise.all(images.map((im) => fitImage(im, pre, this.meta.maxPixels)));
    } catch (e) {
      admission.release();
      throw e;
    }
    const out = await admission.submit(tensors);
    return out.map((r, i) => ({ input: images[i]!.name, top: this.top(r.scores, top) }));
  }

  /** Top classes for each text (an empty text is a BadFieldError naming it). */
  async predictTexts(texts: string[], o: ServePredictOptions = {}): Promise<ServedPrediction[]> {
    if (this.kind !== 'text')
      throw new UnsupportedInputError(
        `model ${this.name} classifies images, not texts`,
        'send an image (image/* body, or multipart files)',
      );
    if (!texts.length) throw new BadFieldError('texts', 'no text was sent');
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new BadFieldError(`texts[${i}]`, 'must be a string');
      if (!t.trim()) throw new BadFieldError(`texts[${i}]`, 'is an empty text');
    });
    const top = checkTop(o.top);
    const out = await this.batcher.submit(texts);
    return out.map((r, i) => ({
      input: `texts[${i}]`,
      top: this.top(r.scores, top),
      ...(r.truncated ? { truncated: true } : {}),
    }));
  }

  private top(p: Float32Array, k: number): ClassProbability[] {
    return topK(p, k, this.labels).map((c) => ({
      label: c.label ?? `class ${c.index}`,
      index: c.index,
      probability: c.probability,
    }));
  }

  /** Let queued inputs run, then release the sessions. */
  async close(): Promise<void> {
    await this.batcher.close();
    await this.session.release();
  }
}

function checkTop(top: number | undefined): number {
  const k = top ?? 5;
  if (!Number.isInteger(k) || k < 1) throw new BadFieldError('top', `must be a positive integer, got ${k}`);
  return k;
}

function rows(r: Tensor, n: number, name: string): Float32Array[] {
  const K = r.dims[r.dims.length - 1]!;
  const data = r.data as Float32Array;
  if (data.length !== n * K)
    throw new GraftError(`${name}: output of shape [${r.dims}] is not one score vector per input`);
  return Array.from({ length: n }, (_, i) => data.slice(i * K, (i + 1) * K));
}

/** The raster formats sharp may decode for a request (what it reports as `format`). */
const IMAGE_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif', 'heif']);

/**
 * An uploaded file as the model's input row: refused unless its bytes decode as an image (the header
 * read by sharp, or Graft's BMP reader), and unless its declared size is within `maxPixels`.
 */
export async function prepareImage(
  im: ImageInput,
  pre: ImagePreprocess,
  maxPixels = DEFAULT_MAX_PIXELS,
): Promise<Float32Array> {
  return normalize(await fitImage(im, pre, maxPixels), pre);
}

/** prepareImage before normalizing: the upload decoded (when encoded), checked and fitted to the model's size and channels. */
async function fitImage(im: ImageInput, pre: ImagePreprocess, maxPixels = DEFAULT_MAX_PIXELS): Promise<RawImage> {
  const what = JSON.stringify(im.name);
  if (im.pixels) return fitPixels(im, im.pixels, pre, maxPixels);
  let width: number | undefined, height: number | undefined;
  let bmp = false;
  try {
    bmp = decodeBmp(im.bytes) !== undefined; // BMP sizes are bounded by the bytes present (checked there)
  } catch (e) {
    throw new UnsupportedInputError(`${what} is not an image that can be read: ${(e as Error).message}`);
  }
  if (!bmp) {
    let format: string | undefined;
    try {
      const m = await sharp(im.bytes, { limitInputPixels: false }).metadata();
      width = m.width;
      height = m.height;
      format = m.format;
    } catch {
      throw new UnsupportedInputError(
        `${what} is not an image (JPEG, PNG, WebP, GIF, TIFF, AVIF or BMP)`,
        "the file's bytes are checked, not its name or type",
      );
    }
    // raster formats only: no SVG or PDF (documents that can reference other files), no camera raw
    if (!format || !IMAGE_FORMATS.has(format))
      throw new UnsupportedInputError(
        `${what} is ${format ? `a ${format.toUpperCase()} file` : 'of an unknown format'}, not an accepted image (JPEG, PNG, WebP, GIF, TIFF, AVIF or BMP)`,
      );
    if (!width || !height) throw new UnsupportedInputError(`${what} is not an image with a size`);
    if (width * height > maxPixels)
      throw new InputTooLargeError(`${what} is ${width}×${height} pixels, over the limit of ${maxPixels}`);
  }
  try {
    return await loadPixels(im.bytes, pre);
  } catch (e) {
    throw new UnsupportedInputError(
      `${what} could not be decoded as an image: ${(e as Error).message.replace(/^image: /, '')}`,
    );
  }
}

/** Raw pixels checked against the bytes present, and fitted by sharp unless already the model's size and channels. */
async function fitPixels(
  im: ImageInput,
  px: { width: number; height: number; channels: number },
  pre: ImagePreprocess,
  maxPixels: number,
): Promise<RawImage> {
  const what = JSON.stringify(im.name);
  for (const k of ['width', 'height', 'channels'] as const)
    if (!Number.isInteger(px[k]) || px[k] < 1) throw new BadFieldError(k, `must be a positive integer, got ${px[k]}`);
  if (px.channels !== 1 && px.channels !== 3 && px.channels !== 4)
    throw new BadFieldError('channels', `must be 1 (grey), 3 (RGB) or 4 (RGBA), got ${px.channels}`);
  if (px.width * px.height > maxPixels)
    throw new InputTooLargeError(`${what} is ${px.width}×${px.height} pixels, over the limit of ${maxPixels}`);
  const need = px.width * px.height * px.channels;
  if (im.bytes.length !== need)
    throw new BadFieldError(
      'body',
      `${what}: ${px.width}×${px.height}×${px.channels} pixels are ${need} bytes, the body has ${im.bytes.length}`,
    );
  const raw = { data: im.bytes, ...px };
  // already the model's size and channels: nothing to decode or resample (sharp would return them as they are)
  if (px.width === pre.width && px.height === pre.height && px.channels === pre.channels) return raw;
  try {
    return await loadPixels(raw, pre);
  } catch (e) {
    throw new UnsupportedInputError(`${what}: the pixels could not be fitted: ${(e as Error).message}`);
  }
}

/** The served models, by name. */
export class ModelRegistry {
  private models = new Map<string, ServedModel>();
  /** Names being loaded (so that two concurrent adds of one name cannot both succeed). */
  private loading = new Set<string>();

  constructor(readonly options: RegistryOptions = {}) {}

  /**
   * Load a classifier folder under `name` (default: the folder's base name). A name already served is
   * an error unless `replace` is set: then the new model answers as soon as it is loaded, and the old
   * one is closed after its queued inputs ran.
   */
  async add(name: string | undefined, dir: string, o: { replace?: boolean } = {}): Promise<ModelInfo> {
    const n = checkModelName(name ?? basename(resolve(dir)));
    if (this.loading.has(n) || (this.models.has(n) && !o.replace))
      throw new GraftError(
        `a model named ${JSON.stringify(n)} is already served`,
        'give each model its own name: NAME=DIR',
      );
    this.loading.add(n);
    try {
      const m = await ServedModel.load(n, dir, this.options);
      const old = this.models.get(n);
      this.models.set(n, m);
      if (old) await old.close();
      return m.info();
    } finally {
      this.loading.delete(n);
    }
  }

  /** Stop serving `name`: new requests get 404 at once; its queued inputs still run. False when there was none. */
  async remove(name: string): Promise<boolean> {
    const m = this.models.get(name);
    if (!m) return false;
    this.models.delete(name);
    await m.close();
    return true;
  }

  has(name: string): boolean {
    return this.models.has(name);
  }

  /** The model, or ModelNotFoundError (HTTP 404). */
  get(name: string): ServedModel {
    const m = this.models.get(name);
    if (!m) throw new ModelNotFoundError(name);
    return m;
  }

  list(): ModelInfo[] {
    return [...this.models.values()].map((m) => m.info());
  }

  get size(): number {
    return this.models.size;
  }

  /** Remove every model (each after its queued inputs ran). */
  async close(): Promise<void> {
    const all = [...this.models.keys()];
    await Promise.all(all.map((n) => this.remove(n)));
  }
}
