/**
 * In-network domain adaptation with labelled source and unlabelled target examples (DANN, deep MMD,
 * deep CORAL: ./dann.ts, ./mmd.ts), with label-free selection of the alignment weight and of the
 * checkpoint (epoch), as `graft adapt --method dann|mmd|deep-coral` runs it.
 *
 * Every weight of the grid trains one run; at each checkpoint epoch the candidate network is scored
 * without target labels (./selection.ts):
 *
 * - 'reverse-validation' (default): a logistic head fitted on the candidate's target features with
 *   its own target predictions as labels, scored on held-out labelled source examples (a stratified
 *   `valFraction` of the source, kept out of training) through the candidate's features;
 * - 'im': information maximization of the candidate's target predictions (temperature 1).
 *
 * The best candidate's network is returned. When the source task's class count differs from the
 * model's output size, the model first gets a new head (../features/multi-task.ts withNewHead).
 */
import type { Graph } from '../graph/graph.js';
import { makeBatchDynamic } from '../graph/rewrites.js';
import { stack, exampleDims, type Examples } from '../train/fit.js';
import type { Trainer } from '../train/trainer.js';
import { extractFeatures, defaultFeatureNode } from '../features/extract.js';
import { withNewHead, featureNodeOf, outputClasses } from '../features/multi-task.js';
import { stratifiedSplit } from '../data/splits.js';
import { adaptFit, dannLoss, featureDim, sourceOnlyLoss, type AdaptLoss } from './dann.js';
import { mmdLoss, deepCoralLoss } from './mmd.js';
import { predictLogits, probabilities } from './predict.js';
import {
  informationMaximization,
  reverseValidation,
  selectBest,
  selectOverUnadapted,
  NO_HARM_MARGIN,
  type Candidate,
} from './selection.js';
import { GraftError } from '../util/errors.js';
import { classCount } from '../heads/head.js';
import { argmax } from '../util/vectors.js';

export type SourceNetworkMethod = 'dann' | 'mmd' | 'deep-coral' | 'source-only';
export const SOURCE_NETWORK_METHODS: readonly SourceNetworkMethod[] = ['dann', 'mmd', 'deep-coral', 'source-only'];

/** Default alignment weights tried per method (bench/adapt-pair.ts measured these ranges). */
export const SOURCE_METHOD_WEIGHTS: Record<SourceNetworkMethod, number[]> = {
  dann: [0.3, 1],
  mmd: [1, 3],
  'deep-coral': [30, 300],
  'source-only': [0],
};

export interface AdaptWithSourceOptions {
  /** Alignment weights to choose from (DANN: domain-loss weight; MMD/CORAL: term weight). */
  weights?: number[];
  /** Training epochs per run (one epoch = one pass over the training source; default 6). */
  epochs?: number;
  /** Epochs whose checkpoints are scored (default: every 2nd and the last). */
  checkpoints?: number[];
  lr?: number;
  /** Rows per step, half source and half target (default 64). */
  batchSize?: number;
  seed?: number;
  /** The feature value aligned (default: the input of the final classifier). */
  feature?: string;
  select?: 'reverse-validation' | 'im';
  /** Source fraction held out for reverse validation (default 0.2). */
  valFraction?: number;
  onCandidate?: (c: { params: Record<string, number>; score: number }) => void;
  /**
   * Do no harm (default true): a source-only run with the same settings is a candidate too (its
   * last checkpoint, scored by the same criterion), and the adapted network is returned only when
   * its score beats it by more than `margin`.
   */
  noHarm?: boolean;
  /** Margin of the no-harm rule (default NO_HARM_MARGIN for the criterion). */
  margin?: number;
  /** Keep every candidate's network in `candidates` (for studies of the criterion; default false). */
  keepModels?: boolean;
  onStep?: (info: { step: number; total: number; loss: number }) => void;
}

export interface AdaptWithSourceResult {
  model: Graph;
  chosen: Record<string, number>;
  candidates: { params: Record<string, number>; score: number; informationMaximization: number; model?: Graph }[];
  selection: string;
  feature: string;
  featureDim: number;
  /** True when the model got a new head for the source task's classes. */
  newHead: boolean;
  sourceTrainExamples: number;
  /** No-harm rule: the source-only run (its network, score), the margin, and whether it was kept. */
  unadapted?: { model: Graph; score: number; kept: boolean; margin: number; reason: string };
  seconds: number;
}

function lossFor(method: SourceNetworkMethod, weight: number, feature: string, D: number, seed: number): AdaptLoss {
  switch (method) {
    case 'dann':
      return dannLoss({ feature, featureDim: D, domainWeight: weight, seed });
    case 'mmd':
      return mmdLoss({ feature, weight });
    case 'deep-coral':
      return deepCoralLoss({ feature, featureDim: D, weight });
    case 'source-only':
      return sourceOnlyLoss();
  }
}

/** Train `method` on labelled `source` and unlabelled `target`; pick weight and epoch without target labels. */
export async function adaptWithSource(
  method: SourceNetworkMethod,
  model: Graph,
  source: Examples,
  target: Float32Array[],
  o: AdaptWithSourceOptions = {},
): Promise<AdaptWithSourceResult> {
  if (!SOURCE_NETWORK_METHODS.includes(method))
    throw new GraftError(`unknown method '${method}' (known: ${SOURCE_NETWORK_METHODS.join(', ')})`);
  const t0 = performance.now();
  const seed = o.seed ?? 0;
  const K = classCount(source.y);
  let net = makeBatchDynamic(model);
  const newHead = (await outputClasses(net)) !== K;
  if (newHead) net = await withNewHead(net, K, { seed, ...(o.feature ? { node: o.feature } : {}) });
  const feature = o.feature ?? (newHead ? featureNodeOf(net) : defaultFeatureNode(net));
  const D = await featureDim(net, feature);
  const select = o.select ?? 'reverse-validation';
  let train = source,
    val: Examples | undefined;
  if (select === 'reverse-validation') {
    const sp = stratifiedSplit(source.y, { testFraction: o.valFraction ?? 0.2, seed });
    train = { x: sp.train.map((i) => source.x[i]!), y: sp.train.map((i) => source.y[i]!) };
    val = { x: sp.test.map((i) => source.x[i]!), y: sp.test.map((i) => source.y[i]!) };
  }
  const epochs = o.epochs ?? 6;
  const checkpoints = new Set(
    o.checkpoints ?? [...Array(epochs).keys()].map((e) => e + 1).filter((e) => e % 2 === 0 || e === epochs),
  );
  const weights = method === 'source-only' ? [0] : (o.weights ?? SOURCE_METHOD_WEIGHTS[method]);
  const dims = exampleDims(net);
  const feats = async (g: Graph, xs: Float32Array[]) => {
    const batches = [];
    for (let i = 0; i < xs.length; i += 256) batches.push(stack(xs.slice(i, i + 256), dims));
    return extractFeatures(g, feature, batches, { batchSize: 256 });
  };
  const cands: Candidate<Graph>[] = [];
  const candidates: AdaptWithSourceResult['candidates'] = [];
  const scoreOf = async (g: Graph) => {
    const P = probabilities(await predictLogits(g, target));
    const im = informationMaximization(P).score;
    const score =
      select === 'im'
        ? im
        : await reverseValidation(
            await feats(g, target),
            P.map(argmax),
            { x: await feats(g, val!.x), y: val!.y },
            { numClasses: K },
          );
    return { im, score };
  };
  for (const weight of weights) {
    const tr: Trainer = await adaptFit(net, lossFor(method, weight, feature, D, seed), train, target, {
      epochs,
      seed,
      ...(o.lr !== undefined ? { lr: o.lr } : {}),
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
      ...(o.onStep ? { onStep: o.onStep } : {}),
      onEpoch: async ({ epoch, trainer }) => {
        if (!checkpoints.has(epoch)) return;
        const g = trainer.toGraph();
        const { im, score } = await scoreOf(g);
        const params: Record<string, number> = method === 'source-only' ? { epoch } : { weight, epoch };
        cands.push({ params, value: g, score });
        candidates.push({ params, score, informationMaximization: im, ...(o.keepModels ? { model: g } : {}) });
        o.onCandidate?.({ params, score });
      },
    });
    await tr.release();
  }
  if (!cands.length)
    throw new GraftError(
      `no checkpoint scored: checkpoints ${[...checkpoints].join(',')} are outside 1..${epochs} epochs`,
    );
  let best = selectBest(cands);
  let unadapted: AdaptWithSourceResult['unadapted'];
  if ((o.noHarm ?? true) && method !== 'source-only') {
    // the unadapted alternative: source-only training with the same settings, its last epoch
    const tr = await adaptFit(net, sourceOnlyLoss(), train, target, {
      epochs,
      seed,
      ...(o.lr !== undefined ? { lr: o.lr } : {}),
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
    });
    const g0 = tr.toGraph();
    await tr.release();
    const s0 = await scoreOf(g0);
    const margin =
      o.margin ?? (select === 'im' ? NO_HARM_MARGIN.informationMaximization : NO_HARM_MARGIN.reverseValidation);
    const g = selectOverUnadapted(
      { params: { epoch: epochs }, value: g0, score: s0.score },
      cands,
      margin,
      select === 'im' ? 'information maximization' : 'reverse-validation accuracy',
    );
    unadapted = { model: g0, score: s0.score, kept: g.keptUnadapted, margin, reason: g.reason };
    best = g.chosen;
  }
  return {
    model: best.value,
    chosen: best.params as Record<string, number>,
    candidates,
    selection:
      select === 'im'
        ? 'information maximization of the target predictions (no labels)'
        : 'reverse validation: a head fitted on the target pseudo-labels, scored on held-out source labels',
    feature,
    featureDim: D,
    newHead,
    sourceTrainExamples: train.x.length,
    ...(unadapted ? { unadapted } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
}
