/**
 * One call from a model file and labelled data to a saved data-efficiency curve (`graft curve`):
 * `curveFromFiles` checks the budgets and methods, reads the data into memory in the model's input
 * scale, runs the curve (./curve.ts dataEfficiencyCurve, or a given runner such as the queue's
 * curveOnQueue) and writes curve.json, curve.md and curve.svg.
 *
 * Data: a CSV of square grey images (pixels then a label; the model must take [batch, 1, S, S]), or
 * any labelled image data `graft train` reads: IDX files (MNIST layout, labels beside them) or an
 * image folder (one subfolder per class), decoded and prepared as the model's preprocessing metadata
 * says (else: resize to its input, pixel × inputMax / 255). Every example is held in memory as a
 * float tensor: cap big datasets with maxPerClass. Errors name the `graft curve` flag.
 */
import { basename } from 'node:path';
import { loadModel } from '../formats/load.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { exampleDims, type Examples } from '../train/fit.js';
import { loadPixelDataset } from '../data/pixel-dataset.js';
import { loadLabelledImages } from '../data/labelled-images.js';
import { imagesToTensor } from '../data/image.js';
import { getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import type { Graph } from '../graph/graph.js';
import { GraftError } from '../util/errors.js';
import {
  dataEfficiencyCurve,
  writeCurve,
  checkCurveLists,
  CURVE_METHODS,
  type CurveMethod,
  type CurveOptions,
  type CurveResult,
} from './curve.js';

export interface CurveFilesOptions extends Omit<CurveOptions, 'methods'> {
  /** Methods by name (default all of CURVE_METHODS); an unknown one is an error. */
  methods?: readonly string[];
  /** Folder for curve.json, curve.md and curve.svg (default 'graft-curve'). */
  out?: string;
  /** IDX data: the labels file; IDX / image folder: only the first N examples of each class. */
  labelsData?: string;
  maxPerClass?: number;
  /** IDX / image folder, model without preprocessing metadata: value of a full-intensity pixel (default 255). */
  inputMax?: number;
  /** CSV data: fit into the MNIST 20/28 box or stretch (default mnist); the largest pixel value (default 16). */
  preprocess?: 'mnist' | 'stretch';
  pixelMax?: number;
  /** Runs the curve on the examples (default dataEfficiencyCurve; e.g. curveOnQueue from graft/scale). */
  run?: (model: Graph, data: Examples, o: CurveOptions) => Promise<CurveResult>;
}

/** IDX files or an image folder as in-memory examples in the model's input scale. */
async function loadImageData(
  model: Graph,
  modelPath: string,
  data: string,
  dims: number[],
  o: CurveFilesOptions,
): Promise<Examples> {
  if (dims.length !== 3 || (dims[0] !== 1 && dims[0] !== 3))
    throw new GraftError(
      `${modelPath}: graft curve on image data needs a model with an image input [batch, 1 or 3, H, W]; this one takes [batch, ${dims}]`,
    );
  const d = loadLabelledImages(data, {
    ...(o.labelsData ? { labelsData: o.labelsData } : {}),
    ...(o.maxPerClass ? { maxPerClass: o.maxPerClass } : {}),
  });
  const inputMax = o.inputMax ?? 255;
  const p: ImagePreprocess = getPreprocess(model) ?? {
    layout: 'NCHW',
    width: dims[2]!,
    height: dims[1]!,
    channels: dims[0] as 1 | 3,
    channelOrder: dims[0] === 1 ? 'GRAY' : 'RGB',
    mean: Array(dims[0]).fill(0),
    std: Array(dims[0]).fill(1 / inputMax),
    resize: 'stretch',
    source: 'flag',
  };
  const per = dims.reduce((a, b) => a * b, 1);
  const x: Float32Array[] = [];
  for (let i = 0; i < d.inputs.length; i += 256) {
    const t = await imagesToTensor(d.inputs.slice(i, i + 256), p);
    const td = t.data as Float32Array;
    for (let k = 0; k < t.dims[0]!; k++) x.push(td.slice(k * per, (k + 1) * per));
  }
  return { x, y: d.labels };
}

/** The curve of `model` (a file) on `data` (CSV, IDX or image folder), saved in `o.out`. */
export async function curveFromFiles(
  model: string,
  data: string,
  o: CurveFilesOptions,
): Promise<{ result: CurveResult; files: string[] }> {
  const methods = (o.methods ?? CURVE_METHODS) as CurveMethod[];
  for (const m of methods)
    if (!CURVE_METHODS.includes(m))
      throw new GraftError(`--methods: unknown method '${m}' (known: ${CURVE_METHODS.join(', ')})`);
  checkCurveLists(o.budgets, methods);
  const g = loadModel(model);
  g.name = basename(model);
  const dims = exampleDims(makeBatchDynamic(g));
  let examples: Examples;
  if (/\.csv(\.gz)?$/i.test(data)) {
    if (dims.length !== 3 || dims[0] !== 1 || dims[1] !== dims[2])
      throw new GraftError(
        `${model}: a CSV --data holds grey square images; the model's input is [batch, ${dims}] (expected [batch, 1, S, S])`,
        'give an image folder or IDX files instead',
      );
    examples = await loadPixelDataset(data, {
      side: dims[1]!,
      preprocess: o.preprocess ?? 'mnist',
      pixelMax: o.pixelMax ?? 16,
    });
  } else examples = await loadImageData(g, model, data, dims, o);
  const {
    out,
    labelsData: _l,
    maxPerClass: _m,
    inputMax: _i,
    preprocess: _p,
    pixelMax: _x,
    run = dataEfficiencyCurve,
    ...curve
  } = o;
  const result = await run(g, examples, { ...curve, methods });
  return { result, files: writeCurve(result, out ?? 'graft-curve') };
}
