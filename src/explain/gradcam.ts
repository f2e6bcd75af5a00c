/**
 * Grad-CAM for image classifiers: the gradient of a class score with respect to the last
 * convolutional activations (Graft's autodiff writes it as ONNX; onnxruntime runs it), channel weights
 * = the gradient's spatial mean, CAM = ReLU(Σ_k w_k·A_k) normalised to [0, 1] and upsampled to the
 * model's input size, and a PNG overlay of the map over the image (src/explain/overlay.ts).
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { loadModel } from '../formats/load.js';
import { getLabels, getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { loadPixels, normalize } from '../data/image.js';
import { probeShapes, type ShapeMap } from '../autodiff/shapes.js';
import { topK, type ClassScore } from '../eval/classify.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { GraftError } from '../util/errors.js';
import { oneHot, resolveClass, scoreGradGraph, scoreValue, type ScoreGradGraph } from './target.js';
import { overlayPng, resizeBilinear, type Heatmap } from './overlay.js';
import { softmax } from '../util/vectors.js';

export type { Heatmap } from './overlay.js';

export interface GradCamOptions {
  /** The activations to explain (a value name); default: the last convolution's output with spatial size, its activation function included. */
  layer?: string;
  runtime?: RuntimeOptions;
}

export interface ExplainImageOptions {
  /** The class to explain: an index or a label name (default: each image's top class). */
  class?: number | string;
  /** Make the PNG overlay (default true). */
  overlay?: boolean;
  /** Longest side of the overlay in pixels; larger images are scaled down (default 1024). */
  maxOverlaySide?: number;
}

export interface ImageExplanation {
  /** The path given, or `image N` for bytes. */
  image: string;
  /** The class explained, with the model's probability for it. */
  class: ClassScore;
  /** The top 5 classes of the image. */
  top: ClassScore[];
  /** The activations the map was computed from, and their spatial size. */
  layer: string;
  /** CAM at the activations' resolution (normalised, 0–1). */
  cam: Heatmap;
  /** CAM upsampled (bilinear) to the model's input size, 0–1. */
  heatmap: Heatmap;
  /** The largest ReLU(Σ w·A) before normalising (0: nothing in the image speaks for the class). */
  camMax: number;
  /** A PNG of the heatmap in a colour map blended over the image. */
  overlay?: Buffer;
}

/** Elementwise operators that an activation's value goes through before the next layer. */
const ACTIVATIONS = new Set([
  'Relu',
  'Clip',
  'LeakyRelu',
  'Elu',
  'Selu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'Softplus',
  'Mish',
  'Gelu',
  'PRelu',
  'BatchNormalization',
]);

/**
 * The last convolutional activations before global pooling: the output of the last Conv (among
 * those the score depends on) whose output is [N, C, H, W] with H·W > 1, followed through the
 * elementwise activations it feeds alone (ReLU, ReLU6 as Clip, swish as x·Sigmoid(x), …).
 */
export function lastConvActivation(g: Graph, shapes: ShapeMap, score = scoreValue(g).score): string {
  const spatial = convCandidates(g, shapes, score);
  if (!spatial.length)
    throw new GraftError(
      `${g.name}: no convolution with a spatial output leads to the class score`,
      'Grad-CAM needs a convolutional image model; give --layer VALUE to pick [N, C, H, W] activations',
    );
  let v = spatial[spatial.length - 1]!;
  const consumers = g.consumers();
  const same = (a: string, b: string) => shapes.get(a)?.dims.join() === shapes.get(b)?.dims.join();
  for (;;) {
    const cs = consumers.get(v) ?? [];
    const only = cs.length === 1 ? cs[0]! : undefined;
    if (only && ACTIVATIONS.has(only.opType) && only.inputs[0] === v && same(only.outputs[0]!, v)) {
      v = only.outputs[0]!;
      continue;
    }
    // swish / SiLU: x · Sigmoid(x)
    const sig = cs.find((n) => n.opType === 'Sigmoid');
    const mul = cs.find((n) => n.opType === 'Mul' && sig && n.inputs.includes(v) && n.inputs.includes(sig.outputs[0]!));
    if (cs.length === 2 && sig && mul && same(mul.outputs[0]!, v)) {
      v = mul.outputs[0]!;
      continue;
    }
    return v;
  }
}

/** Outputs of the Conv nodes the score depends on whose output has a spatial size above 1, in graph order. */
function convCandidates(g: Graph, shapes: ShapeMap, score: string): string[] {
  const need = ancestors(g, score);
  return g
    .topoSort()
    .filter((n) => (n.opType === 'Conv' || n.opType === 'ConvTranspose') && need.has(n.outputs[0]!))
    .map((n) => n.outputs[0]!)
    .filter((v) => isSpatial(shapes, v));
}

function isSpatial(shapes: ShapeMap, v: string): boolean {
  const d = shapes.get(v)?.dims;
  if (!d || d.length !== 4) return false;
  return d[2] === null || d[3] === null || d[2]! * d[3]! > 1;
}

function ancestors(g: Graph, v: string): Set<string> {
  const prod = g.producers();
  const seen = new Set<string>();
  const stack = [v];
  while (stack.length) {
    const x = stack.pop()!;
    if (seen.has(x)) continue;
    seen.add(x);
    for (const i of prod.get(x)?.inputs ?? []) if (i) stack.push(i);
  }
  return seen;
}

/** What one Grad-CAM run returns before any map is drawn: the activations A, ∂score/∂A and the scores. */
export interface GradCamTensors {
  activations: Tensor;
  gradient: Tensor;
  /** Class scores (logits when the model ends in Softmax) and the model's probabilities, one row. */
  scores: Float32Array;
  probabilities: Float32Array;
  classIndex: number;
}

/**
 * A Grad-CAM explainer for one model: the gradient graph and its onnxruntime session are built once
 * (create), then each image costs one or two runs (two when the class is the image's top class).
 * Release it when done.
 */
export class GradCam {
  private constructor(
    readonly model: Graph,
    readonly preprocess: ImagePreprocess,
    readonly labels: string[] | undefined,
    readonly layer: string,
    readonly classes: number,
    private readonly built: ScoreGradGraph,
    private readonly session: Session,
    private readonly input: string,
  ) {}

  static async create(model: Graph | string, o: GradCamOptions = {}): Promise<GradCam> {
    const g = typeof model === 'string' ? loadModel(model) : model;
    const pre = getPreprocess(g);
    if (!pre)
      throw new GraftError(
        `${g.name}: the model records no image preprocessing`,
        'convert it with `graft convert MODEL OUT.onnx --size WxH --mean a,b,c --std a,b,c` to record one',
      );
    const inputs = g.dataInputs();
    if (inputs.length !== 1)
      throw new GraftError(`${g.name}: expected one image input, the model has ${inputs.length}`);
    const shapes = await probeShapes(g, o.runtime ?? {});
    const score = scoreValue(g);
    let layer: string;
    if (o.layer) {
      layer = o.layer;
      if (!shapes.has(layer))
        throw new GraftError(
          `${g.name}: no value named '${layer}'`,
          `the last convolutions' outputs are: ${convCandidates(g, shapes, score.score).slice(-5).join(', ')}`,
        );
      if (shapes.get(layer)!.dims.length !== 4)
        throw new GraftError(
          `${g.name}: '${layer}' has shape [${shapes.get(layer)!.dims.join(', ')}]; Grad-CAM needs [N, C, H, W] activations`,
        );
      if (!ancestors(g, score.score).has(layer))
        throw new GraftError(`${g.name}: the class score does not depend on '${layer}'`);
    } else layer = lastConvActivation(g, shapes, score.score);
    const built = await scoreGradGraph(g, layer, { shapes });
    const classes = shapes.get(score.score)!.dims[1];
    if (typeof classes !== 'number')
      throw new GraftError(`${g.name}: the number of classes of '${score.score}' is not fixed`);
    const session = await Session.fromGraph(built.graph, o.runtime ?? {}, `${g.name} (Grad-CAM)`);
    return new GradCam(g, pre, getLabels(g), layer, classes, built, session, inputs[0]!.name);
  }

  /** The index of a class given by index or label name (a GraftError when there is none). */
  classIndex(c: number | string): number {
    return resolveClass(c, this.labels, this.classes);
  }

  /** A, ∂score_k/∂A and the scores for one preprocessed image [1, C, H, W]; k defaults to the top class. */
  async tensors(x: Tensor, cls?: number | string): Promise<GradCamTensors> {
    const { seed, score, value, grad } = this.built;
    const run = (k: number) => this.session.run({ [this.input]: x, [seed]: oneHot(this.classes, k) });
    let k = cls === undefined ? -1 : resolveClass(cls, this.labels, this.classes);
    let res = await run(k);
    const scores = Float32Array.from(res[score.score]!.data as Float32Array);
    if (k < 0) {
      k = 0;
      for (let j = 1; j < scores.length; j++) if (scores[j]! > scores[k]!) k = j;
      res = await run(k);
    }
    const out = res[score.output]!.data as Float32Array;
    const probabilities = score.softmax ? Float32Array.from(out) : Float32Array.from(softmax(scores));
    return { activations: res[value]!, gradient: res[grad]!, scores, probabilities, classIndex: k };
  }

  /** Explain one image (a path or encoded bytes). */
  async explain(
    image: string | Uint8Array,
    o: ExplainImageOptions = {},
    name = typeof image === 'string' ? image : 'image',
  ): Promise<ImageExplanation> {
    const pre = this.preprocess;
    const pixels = await loadPixels(image, pre);
    const x: Tensor = {
      dtype: 'float32',
      dims: [1, pre.channels, pre.height, pre.width],
      data: normalize(pixels, pre),
    };
    const t = await this.tensors(x, o.class);
    const { cam, max } = gradCam(t.activations, t.gradient);
    const heatmap = resizeBilinear(cam, pre.width, pre.height);
    const top = topK(t.probabilities, 5, this.labels);
    const k = t.classIndex;
    const explanation: ImageExplanation = {
      image: name,
      class: {
        index: k,
        ...(this.labels?.[k] != null ? { label: this.labels[k] } : {}),
        probability: t.probabilities[k]!,
      },
      top,
      layer: this.layer,
      cam,
      heatmap,
      camMax: max,
    };
    if (o.overlay !== false)
      explanation.overlay = await overlayPng(image, cam, pre, { maxSide: o.maxOverlaySide ?? 1024 });
    return explanation;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Grad-CAM from activations A [1, K, h, w] and the gradient G of a class score with respect to them:
 * w_k = mean over (h, w) of G_k, CAM = ReLU(Σ_k w_k A_k), divided by its maximum (all zeros when
 * nothing is positive). Returns the map and the maximum before dividing.
 */
export function gradCam(A: Tensor, G: Tensor): { cam: Heatmap; max: number } {
  if (A.dims.length !== 4 || A.dims.join() !== G.dims.join())
    throw new GraftError(`Grad-CAM: activations [${A.dims}] and gradient [${G.dims}] must be one [1, K, h, w]`);
  const [, K, h, w] = A.dims as [number, number, number, number];
  const a = A.data as Float32Array,
    gr = G.data as Float32Array;
  const hw = h * w;
  const cam = new Float64Array(hw);
  for (let k = 0; k < K; k++) {
    let wk = 0;
    for (let i = 0; i < hw; i++) wk += gr[k * hw + i]!;
    wk /= hw;
    if (wk === 0) continue;
    for (let i = 0; i < hw; i++) cam[i]! += wk * a[k * hw + i]!;
  }
  let max = 0;
  for (let i = 0; i < hw; i++) max = Math.max(max, cam[i]!);
  const data = new Float32Array(hw);
  if (max > 0) for (let i = 0; i < hw; i++) data[i] = Math.max(0, cam[i]!) / max;
  return { cam: { data, width: w, height: h }, max };
}

/**
 * Grad-CAM for each image (paths or encoded bytes) with a model (a loaded graph or a path: an image
 * classifier folder, .onnx, .tflite, TF.js). For many calls on one model, keep a GradCam instead.
 */
export async function explainImages(
  model: Graph | string,
  images: readonly (string | Uint8Array)[],
  o: ExplainImageOptions & GradCamOptions = {},
): Promise<ImageExplanation[]> {
  const cam = await GradCam.create(model, o);
  try {
    const out: ImageExplanation[] = [];
    for (const [i, im] of images.entries())
      out.push(await cam.explain(im, o, typeof im === 'string' ? im : `image ${i + 1}`));
    return out;
  } finally {
    await cam.release();
  }
}
