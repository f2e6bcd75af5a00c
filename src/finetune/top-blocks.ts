/**
 * Fine-tuning the top of a network on activations cached at a cut: the model is split at a value
 * (named, or "the top N blocks" resolved to one), the frozen bottom runs once per image (and per
 * augmented view) into an fp16 activation store (optionally backed by an on-disk FeatureCache),
 * and only the tail plus a new classifier head trains, so each epoch costs only the tail.
 *
 *   input ─▶ bottom (frozen, run once) ─▶ cut value ══ cache ══▶ tail (trainable) ─▶ pooled feature
 *         ─▶ [Flatten] ─▶ Gemm (new head, K classes) ─▶ logits
 *
 * The head starts from a linear probe (a logistic regression fitted on the frozen tail's pooled
 * features, standardization folded into the weights), so fine-tuning starts where the frozen-feature
 * classifier ends (the "linear probe, then fine-tune" recipe).
 */
import type { Graph, Node } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { encodeOnnx } from '../formats/onnx.js';
import { getPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import type { Trainer } from '../train/trainer.js';
import { fit, type FitOptions, type ExampleBatches, type StepInfo, type EpochInfo } from '../train/fit.js';
import { listCheckpoints } from '../train/checkpoint.js';
import { findLr, type LrFindOptions, type LrFindResult } from '../train/lr-finder.js';
import { selectTrainable } from '../train/training-graph.js';
import { upgradeOpset } from '../graph/rewrites.js';
import type { OptimizerSpec, ParamGroup } from '../optim/optimizer.js';
import { defaultFeatureNode } from '../features/extract.js';
import { cacheKey, sha256, toHalf, fromHalf, type FeatureCache } from '../features/cache.js';
import { readFileSync } from 'node:fs';
import { fitCV, fit as fitLogistic } from '../heads/logistic.js';
import { augmentKey, viewsToTensor, type AugmentOptions } from '../data/augment.js';
import { addLora, type LoraOptions } from './lora.js';
import type { TrainableSpec } from '../train/training-graph.js';
import { GraftError } from '../util/errors.js';
import { argmaxRows } from '../util/vectors.js';

/* ------------------------------------------------------------------ cut points */

export interface BlockCut {
  /** The value to cut at: everything after it is the tail. */
  value: string;
  /** The block that starts right after the cut (name prefix of its first node). */
  next: string;
}

/**
 * The block of each node, from names: the path segments after the prefix all nodes share (the last
 * segment, the op's own name, aside), cut to the first segment, or to two when one gives fewer than
 * four blocks (BERT-like `encoder/layer.3/...`).
 */
export function blockNames(nodes: Node[]): Map<Node, string> {
  const parts = nodes.map((n) =>
    n.name
      .split('/')
      .filter((s) => s !== '')
      .slice(0, -1),
  );
  let common = 0;
  if (parts.length) {
    const first = parts[0]!;
    while (common < first.length && parts.every((p) => p.length > common + 1 && p[common] === first[common])) common++;
  }
  const at = (depth: number) => parts.map((p) => p.slice(common, common + depth).join('/'));
  let names = at(1);
  if (new Set(names).size < 4) names = at(2);
  return new Map(nodes.map((n, i) => [n, names[i]!]));
}

/**
 * Values where the network can be cut (the only live activation at that point: every path from the
 * input to the feature node goes through it) and where a new block starts. In order, input side first.
 */
export function blockCuts(g: Graph, featureNode = defaultFeatureNode(g)): BlockCut[] {
  const order = g.topoSort();
  const isConst = new Set<string>([...g.initializers.keys()]);
  for (const n of order) if (n.opType === 'Constant') n.outputs.forEach((o) => isConst.add(o));
  const last = new Map<string, number>();
  order.forEach((n, i) =>
    n.inputs.forEach((v) => {
      if (v && !isConst.has(v)) last.set(v, i);
    }),
  );
  const end = order.findIndex((n) => n.outputs.includes(featureNode));
  if (end < 0) throw new GraftError(`${g.name}: no node produces '${featureNode}'`);
  const block = blockNames(order);
  const live = new Set<string>(g.dataInputs().map((v) => v.name));
  const cuts: BlockCut[] = [];
  for (let i = 0; i < end; i++) {
    const n = order[i]!;
    for (const v of n.inputs) if (v && last.get(v) === i) live.delete(v);
    for (const o of n.outputs) if (o && !isConst.has(o) && (last.get(o) ?? -1) > i) live.add(o);
    if (n.opType === 'Constant' || live.size !== 1) continue;
    const v = [...live][0]!;
    const next = order[i + 1]!;
    if (v === n.outputs[0] && block.get(next) !== block.get(n)) cuts.push({ value: v, next: block.get(next)! });
  }
  // a cut right before the feature node's own block would leave nothing to train but the head
  const headBlock = block.get(order[end]!);
  return cuts.filter((c) => c.next !== headBlock);
}

/**
 * The cut value for `cut` (a value, or a node whose first output is taken) or for the top N blocks
 * before the feature node (N = 1: only the last block trains).
 */
export function resolveCut(g: Graph, o: { cut?: string; topBlocks?: number; featureNode?: string }): string {
  if (o.cut !== undefined && o.topBlocks !== undefined)
    throw new GraftError('give either a cut (--cut) or a number of top blocks (--top-blocks), not both');
  if (o.cut !== undefined) {
    const node = g.nodes.find((n) => n.name === o.cut);
    if (node) return node.outputs[0]!;
    if (g.nodes.some((n) => n.outputs.includes(o.cut!)) || g.dataInputs().some((v) => v.name === o.cut)) return o.cut;
    throw new GraftError(`--cut: no node or value named '${o.cut}' in ${g.name}`);
  }
  const n = o.topBlocks ?? 1;
  if (!Number.isInteger(n) || n < 1)
    throw new GraftError(`--top-blocks must be a positive integer, got ${o.topBlocks}`);
  const cuts = blockCuts(g, o.featureNode);
  if (n > cuts.length)
    throw new GraftError(
      `${g.name} has ${cuts.length} blocks that can be cut before its feature node; --top-blocks ${n} is too many`,
    );
  return cuts[cuts.length - n]!.value;
}

/* ------------------------------------------------------------------ split */

export interface TopBlocksModel {
  /** The original model. */
  model: Graph;
  /** input → cut value (frozen). */
  bottom: Graph;
  /** cut value → logits (trainable tail + new head). */
  tail: Graph;
  /** cut value → pooled feature (the frozen tail, for the linear probe). */
  tailFeature: Graph;
  cut: string;
  featureNode: string;
  /** Per-example dims of the cut value, and of the feature. */
  cutDims: number[];
  featureDim: number;
  classes: number;
  preprocess: ImagePreprocess;
  /** Names of the head's weight and bias initializers, and of the logits value. */
  head: { weight: string; bias: string; logits: string };
}

export interface SplitOptions {
  cut?: string;
  topBlocks?: number;
  /** The pooled feature the head reads (default: the input of the model's final classifier). */
  featureNode?: string;
  preprocess?: ImagePreprocess;
  runtime?: RuntimeOptions;
}

/** Split a model at the cut and give the tail a new K-class head (zeros until trained or probed). */
export async function splitTopBlocks(model: Graph, classes: number, o: SplitOptions = {}): Promise<TopBlocksModel> {
  const featureNode = o.featureNode ?? defaultFeatureNode(model);
  const cut = resolveCut(model, { ...o, featureNode });
  const pre = o.preprocess ?? getPreprocess(model);
  if (!pre) throw new GraftError(`${model.name}: the model records no image preprocessing; pass one`);
  const inputs = model.dataInputs();
  if (inputs.length !== 1)
    throw new GraftError(
      `${model.name}: top-block fine-tuning needs a model with one data input, this one has ${inputs.length}`,
    );
  // Learn the dims of the cut and the feature from one blank image.
  const atInput = cut === inputs[0]!.name;
  const probe = model.clone();
  probe.outputs = atInput ? [{ name: featureNode }] : [{ name: cut }, { name: featureNode }];
  probe.prune();
  if (
    !probe.nodes.some((n) => n.outputs.includes(featureNode)) ||
    (!atInput && model.cutAfter([cut]).nodes.every((n) => !n.outputs.includes(featureNode)))
  )
    throw new GraftError(
      `the cut '${cut}' is at or after the feature node '${featureNode}': nothing would train below the head`,
    );
  const s = await Session.fromGraph(probe, o.runtime, `${model.name} (shape probe)`);
  let cutDims: number[], featureDim: number;
  try {
    const x: Tensor = {
      dtype: 'float32',
      dims: [1, pre.channels, pre.height, pre.width],
      data: new Float32Array(pre.channels * pre.height * pre.width),
    };
    const r = await s.run({ [inputs[0]!.name]: x }, atInput ? [featureNode] : [cut, featureNode]);
    cutDims = atInput ? x.dims.slice(1) : r[cut]!.dims.slice(1);
    featureDim = r[featureNode]!.dims.slice(1).reduce((a, b) => a * b, 1);
    if (r[featureNode]!.dims.slice(2).some((d) => d !== 1))
      throw new GraftError(
        `feature node '${featureNode}' is not pooled (dims [${r[featureNode]!.dims}]); name a pooled value`,
      );
  } finally {
    await s.release();
  }
  const bottom = atInput ? model.cutBefore([cut]) : model.cutBefore([cut]);
  const tailFeature = atInput ? model.clone() : model.cutAfter([cut]);
  tailFeature.inputs = [{ name: cut, dtype: 'float32', shape: ['batch', ...cutDims] }];
  tailFeature.outputs = [{ name: featureNode }];
  tailFeature.prune();
  tailFeature.metadata = {};
  const tail = tailFeature.clone();
  tail.name = `${model.name} (top blocks from ${cut})`;
  const taken = model.allNames();
  const b = new Builder(tail, 'head/');
  const uniq = (base: string) => model.uniqueName(b.name(base), taken);
  const flat = b.op('Flatten', [featureNode], { axis: A.i(1) }, 'features');
  const weight = uniq('weight'),
    bias = uniq('bias'),
    logits = uniq('logits');
  tail.initializers.set(weight, {
    dtype: 'float32',
    dims: [classes, featureDim],
    data: new Float32Array(classes * featureDim),
  });
  tail.initializers.set(bias, { dtype: 'float32', dims: [classes], data: new Float32Array(classes) });
  tail.nodes.push({
    name: uniq('gemm'),
    opType: 'Gemm',
    domain: '',
    inputs: [flat, weight, bias],
    outputs: [logits],
    attrs: { transB: A.i(1) },
  });
  tail.outputs = [{ name: logits, dtype: 'float32', shape: ['batch', classes] }];
  return {
    model,
    bottom,
    tail,
    tailFeature,
    cut,
    featureNode,
    cutDims,
    featureDim,
    classes,
    preprocess: pre,
    head: { weight, bias, logits },
  };
}

/* ------------------------------------------------------------------ activation store */

/** Cached activations at the cut: fp16, one per (image, view). */
export class ActivationStore {
  constructor(
    readonly dims: number[],
    readonly rows: Uint16Array[][],
  ) {}
  get size(): number {
    return this.rows.length;
  }
  get views(): number {
    return this.rows[0]?.length ?? 0;
  }
  /** A batch of (image, view) pairs as one float32 tensor [n, ...dims]. */
  batch(idx: number[], views?: number[]): Tensor {
    const per = this.dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(idx.length * per);
    idx.forEach((i, k) => data.set(fromHalf(this.rows[i]![views?.[k] ?? 0]!), k * per));
    return { dtype: 'float32', dims: [idx.length, ...this.dims], data };
  }
  /** Bytes held in memory. */
  get bytes(): number {
    return this.rows.reduce((a, r) => a + r.reduce((b, v) => b + v.byteLength, 0), 0);
  }
}

export interface CacheProgress {
  done: number;
  total: number;
  cached: number;
  computed: number;
}

export interface ActivationOptions {
  /** Views per image (default 1): view 0 is the plain image, views ≥ 1 augmented. */
  views?: number;
  augment?: AugmentOptions;
  seed?: number;
  /** On-disk cache: activations computed once are reused by later runs. */
  cache?: FeatureCache;
  /** Images per onnxruntime run (default 32). */
  batchSize?: number;
  runtime?: RuntimeOptions;
  onProgress?: (p: CacheProgress) => void;
  /** A session of m.bottom made by the caller and kept for many calls (a queue worker's shards); not released here. */
  session?: Session;
}

/**
 * Run the frozen bottom over every (image, view) not already cached and return the store. Values
 * are rounded to fp16 whether computed now or read from the cache, so results do not depend on hits.
 */
export async function cacheActivations(
  m: TopBlocksModel,
  inputs: (string | Uint8Array)[],
  o: ActivationOptions = {},
): Promise<ActivationStore> {
  const V = o.views ?? 1;
  if (!Number.isInteger(V) || V < 1) throw new GraftError(`--views must be a positive integer, got ${o.views}`);
  const seed = o.seed ?? 0;
  const bs = o.batchSize ?? 32;
  const aug = augmentKey(o.augment);
  const preJson = JSON.stringify(m.preprocess);
  const modelHash = o.cache ? sha256(encodeOnnx(m.bottom)) : '';
  const per = m.cutDims.reduce((a, b) => a * b, 1);
  const rows: Uint16Array[][] = inputs.map(() => new Array<Uint16Array>(V));
  const pairs: [number, number][] = [];
  for (let i = 0; i < inputs.length; i++) for (let v = 0; v < V; v++) pairs.push([i, v]);
  const keyOf = (i: number, v: number) => {
    const x = inputs[i]!;
    return cacheKey({
      model: modelHash,
      node: m.cut,
      preprocess: v === 0 ? preJson : `${preJson}|view ${v}|seed ${seed}|${aug}`,
      input: typeof x === 'string' ? readFileSync(x) : x,
    });
  };
  const progress: CacheProgress = { done: 0, total: pairs.length, cached: 0, computed: 0 };
  let missing = pairs;
  const keys = new Map<string, string>();
  if (o.cache) {
    const ks = pairs.map(([i, v]) => keyOf(i, v));
    pairs.forEach(([i, v], k) => keys.set(`${i}:${v}`, ks[k]!));
    const hits = o.cache.getMany(ks);
    missing = [];
    hits.forEach((h, k) => {
      const [i, v] = pairs[k]!;
      if (h && h.length === per) rows[i]![v] = toHalf(h);
      else missing.push(pairs[k]!);
    });
    progress.cached = pairs.length - missing.length;
    progress.done = progress.cached;
    o.onProgress?.({ ...progress });
  }
  if (missing.length) {
    const input = m.model.dataInputs()[0]!.name;
    // cut at the data input (full fine-tuning): the store holds the prepared images themselves
    const s =
      m.cut === input
        ? undefined
        : (o.session ?? (await Session.fromGraph(m.bottom, o.runtime, `${m.model.name} (bottom, cut at ${m.cut})`)));
    try {
      for (let k = 0; k < missing.length; k += bs) {
        const chunk = missing.slice(k, k + bs);
        const x = await viewsToTensor(
          chunk.map(([i]) => inputs[i]!),
          chunk.map(([, v]) => v),
          m.preprocess,
          o.augment ?? {},
          seed,
        );
        const out = s ? (await s.run({ [input]: x }, [m.cut]))[m.cut]! : x;
        const d = out.data as Float32Array;
        if (d.length !== chunk.length * per)
          throw new GraftError(`${m.model.name}: the bottom returned [${out.dims}] for ${chunk.length} images`);
        const entries: { key: string; vector: Float32Array }[] = [];
        chunk.forEach(([i, v], r) => {
          const vec = d.subarray(r * per, (r + 1) * per);
          rows[i]![v] = toHalf(vec);
          if (o.cache) entries.push({ key: keys.get(`${i}:${v}`)!, vector: vec });
        });
        o.cache?.putMany(entries);
        progress.computed += chunk.length;
        progress.done += chunk.length;
        o.onProgress?.({ ...progress });
      }
    } finally {
      if (!o.session) await s?.release();
    }
  }
  return new ActivationStore(m.cutDims, rows);
}

/* ------------------------------------------------------------------ training */

export interface TopBlocksTrainOptions extends Omit<FitOptions, 'validation' | 'onStep' | 'onEpoch' | 'trainable'> {
  /** What trains in the tail (default all of it; the head always trains). */
  trainable?: TrainableSpec;
  /** Learning rate of the head, relative to lr (default 1): an optimizer parameter group. */
  headLrMult?: number;
  /** 'linear-probe' (default): start the head from a logistic regression on frozen features; 'zeros'. */
  headInit?: 'linear-probe' | 'zeros';
  /** Train LoRA adapters on the tail's MatMul/Gemm/1×1 conv weights (base frozen) instead of the tail itself; the head trains in full. */
  lora?: Omit<LoraOptions, 'exclude'>;
  /** L2 penalties tried by the linear probe's cross-validation (default 1e-2, 1e-1, 1). */
  probeGrid?: number[];
  validation?: { store: ActivationStore; labels: number[] };
  onStep?: (info: StepInfo & { totalSteps: number }) => void;
  onEpoch?: (info: EpochInfo) => void;
}

export interface TopBlocksTrainResult {
  trainer: Trainer;
  losses: number[];
  probe?: { l2: number; trainAccuracy: number; valAccuracy?: number };
  /** The LoRA parameters trained (when `lora` was given). */
  loraParams?: string[];
  valAccuracy?: number;
  /** Epochs trained (early stopping may end sooner); the epoch a resumed run started after; the best epoch kept. */
  epochs: number;
  resumedFrom: number;
  bestEpoch?: number;
  /** Seconds spent in training (excluding the probe). */
  seconds: number;
}

/** Pooled frozen features of view 0 of every stored image (through the frozen tail). */
export async function frozenFeatures(
  m: TopBlocksModel,
  store: ActivationStore,
  runtime?: RuntimeOptions,
  batchSize = 64,
): Promise<Float32Array[]> {
  const s = await Session.fromGraph(m.tailFeature, runtime, `${m.model.name} (frozen tail)`);
  const out: Float32Array[] = [];
  try {
    for (let i = 0; i < store.size; i += batchSize) {
      const idx = [...Array(Math.min(batchSize, store.size - i)).keys()].map((k) => i + k);
      const f = (await s.run({ [m.cut]: store.batch(idx) }, [m.featureNode]))[m.featureNode]!.data as Float32Array;
      idx.forEach((_, k) => out.push(f.slice(k * m.featureDim, (k + 1) * m.featureDim)));
    }
  } finally {
    await s.release();
  }
  return out;
}

/** Fit the head on frozen features and write it (standardization folded in) into the tail. */
async function linearProbe(m: TopBlocksModel, store: ActivationStore, labels: number[], o: TopBlocksTrainOptions) {
  const X = await frozenFeatures(m, store, o.runtime);
  const grid = o.probeGrid ?? [1e-2, 1e-1, 1];
  const head =
    grid.length === 1
      ? await fitLogistic(X, labels, { numClasses: m.classes, l2: grid[0]!, gtol: 1e-4 })
      : (await fitCV(X, labels, { numClasses: m.classes, grid, folds: 3, gtol: 1e-4, seed: o.seed ?? 0 })).model;
  const K = m.classes,
    D = m.featureDim;
  const { weight: W, bias: C } = head.folded();
  m.tail.initializers.set(m.head.weight, { dtype: 'float32', dims: [K, D], data: W });
  m.tail.initializers.set(m.head.bias, { dtype: 'float32', dims: [K], data: C });
  const vX = o.validation ? await frozenFeatures(m, o.validation.store, o.runtime) : undefined;
  return {
    l2: head.l2,
    trainAccuracy: head.accuracy(X, labels),
    ...(vX ? { valAccuracy: head.accuracy(vX, o.validation!.labels) } : {}),
  };
}

/** Predicted class of view 0 of every stored image. */
export async function predictStore(
  trainer: Trainer,
  m: TopBlocksModel,
  store: ActivationStore,
  batchSize = 64,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < store.size; i += batchSize) {
    const idx = [...Array(Math.min(batchSize, store.size - i)).keys()].map((k) => i + k);
    out.push(...argmaxRows(await trainer.predict({ [m.cut]: store.batch(idx) })));
  }
  return out;
}

/** The store (and its labels) as fit()'s batched examples: fp16 rows expanded per batch, K views each. */
export function storeExamples(store: ActivationStore, labels: number[]): ExampleBatches {
  return { y: labels, views: store.views, batch: (idx, views) => store.batch(idx, views) };
}

/** The tail with LoRA adapters (when asked) and what trains in it, for fit() or the learning-rate finder. */
export function tailTraining(
  m: TopBlocksModel,
  o: Pick<TopBlocksTrainOptions, 'lora' | 'trainable' | 'headLrMult' | 'optimizer'>,
): { tail: Graph; trainable: TrainableSpec; optimizer: OptimizerSpec; loraParams?: string[] } {
  const head = [m.head.weight, m.head.bias];
  let tail = m.tail;
  let trainable: TrainableSpec = o.trainable ?? 'all';
  let loraParams: string[] | undefined;
  if (o.lora) {
    const r = addLora(m.tail, { ...o.lora, exclude: [m.head.weight] });
    tail = r.graph;
    loraParams = r.params;
    trainable = { names: [...r.params, ...head] };
  } else if (trainable !== 'all')
    trainable = { names: [...new Set([...selectTrainable(upgradeOpset(tail), trainable), ...head])] };
  const spec: OptimizerSpec = o.optimizer ?? { kind: 'adamw', weightDecay: 1e-4 };
  const mult = o.headLrMult ?? 1;
  if (!(mult > 0)) throw new GraftError(`--head-lr-mult must be positive, got ${mult}`);
  const optimizer: OptimizerSpec =
    mult === 1
      ? spec
      : {
          ...spec,
          groups: new Map([
            ...(spec.groups ?? new Map<string, ParamGroup>()),
            ...head.map(
              (k) => [k, { ...spec.groups?.get(k), lrScale: (spec.groups?.get(k)?.lrScale ?? 1) * mult }] as const,
            ),
          ]),
        };
  return { tail, trainable, optimizer, ...(loraParams ? { loraParams } : {}) };
}

/**
 * Train the tail and head on cached activations through fit() (so schedules, early stopping, class
 * weights, discriminative rates, gradual unfreezing, BN modes and checkpoints all apply): each epoch
 * visits every image once, in a seeded order, through one of its views drawn at random. The default
 * schedule is a cosine decay to 0 without warmup.
 */
export async function trainTopBlocks(
  m: TopBlocksModel,
  store: ActivationStore,
  labels: number[],
  o: TopBlocksTrainOptions = {},
): Promise<TopBlocksTrainResult> {
  if (store.size !== labels.length) throw new GraftError(`${store.size} cached images but ${labels.length} labels`);
  if (!store.size) throw new GraftError('no training examples');
  const bad = labels.find((y) => !(Number.isInteger(y) && y >= 0 && y < m.classes));
  if (bad !== undefined) throw new GraftError(`label ${bad} is outside 0…${m.classes - 1}`);
  // resuming: the head in the checkpoint replaces the probe's anyway, so the probe is skipped
  const resuming = !!o.checkpoint?.resume && listCheckpoints(o.checkpoint.dir).length > 0;
  const probe =
    (o.headInit ?? 'linear-probe') === 'linear-probe' && !resuming ? await linearProbe(m, store, labels, o) : undefined;
  const { headLrMult: _h, headInit: _i, lora: _l, probeGrid: _p, validation, onStep, onEpoch, ...rest } = o;
  const { tail, trainable, optimizer, loraParams } = tailTraining(m, o);
  const bs = o.batchSize ?? 32;
  const epochs = o.epochs ?? 5;
  const totalSteps = epochs * Math.ceil(store.size / bs);
  const t0 = performance.now();
  const r = await fit(tail, storeExamples(store, labels), {
    ...rest,
    epochs,
    batchSize: bs,
    lr: o.lr ?? 1e-3,
    trainable,
    optimizer,
    schedule: o.schedule ?? { kind: 'cosine', warmupSteps: 0 },
    ...(validation?.store.size ? { validation: storeExamples(validation.store, validation.labels) } : {}),
    ...(onStep ? { onStep: (s) => onStep({ ...s, totalSteps }) } : {}),
    ...(onEpoch ? { onEpoch } : {}),
  });
  return {
    trainer: r.trainer,
    losses: r.losses,
    epochs: r.epochs,
    resumedFrom: r.resumedFrom,
    ...(r.bestEpoch !== undefined ? { bestEpoch: r.bestEpoch } : {}),
    ...(loraParams ? { loraParams } : {}),
    ...(probe ? { probe } : {}),
    ...(r.valAccuracy !== undefined ? { valAccuracy: r.valAccuracy } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The learning-rate range test on the tail (head linear-probed first, as trainTopBlocks starts), with its options. */
export async function lrFindTopBlocks(
  m: TopBlocksModel,
  store: ActivationStore,
  labels: number[],
  o: TopBlocksTrainOptions & LrFindOptions = {},
): Promise<LrFindResult> {
  const { validation: _v, onStep: _s, onEpoch: _e, ...rest } = o;
  if ((o.headInit ?? 'linear-probe') === 'linear-probe') await linearProbe(m, store, labels, rest);
  const { tail, trainable, optimizer } = tailTraining(m, o);
  return findLr(tail, storeExamples(store, labels), { ...rest, trainable, optimizer });
}

/**
 * The whole fine-tuned network as one graph: the frozen bottom, the trained tail and the head, with
 * the logits as output (export adds the softmax and metadata).
 */
export function assembleTopBlocks(m: TopBlocksModel, trainedTail: Graph): Graph {
  const atInput = m.model.dataInputs()[0]!.name === m.cut;
  const g = m.model.cutBefore([m.cut]);
  if (atInput) g.nodes = [];
  if (trainedTail.metadata['graft.lora']) g.metadata['graft.lora'] = trainedTail.metadata['graft.lora'];
  const have = new Set(g.nodes.map((n) => n.name));
  for (const n of trainedTail.nodes) {
    if (have.has(n.name))
      throw new GraftError(`cannot assemble: node name '${n.name}' is in both the bottom and the tail`);
    g.nodes.push({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: { ...n.attrs } });
  }
  for (const [k, t] of trainedTail.initializers) g.initializers.set(k, t);
  g.valueInfo = g.valueInfo.filter((v) => v.name !== m.cut);
  g.outputs = [{ name: m.head.logits, dtype: 'float32', shape: [g.dataInputs()[0]!.shape?.[0] ?? 'batch', m.classes] }];
  g.opsets = { ...g.opsets, ...trainedTail.opsets };
  g.name = `${m.model.name} (fine-tuned from ${m.cut})`;
  return g.prune();
}
