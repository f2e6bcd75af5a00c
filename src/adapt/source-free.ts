/**
 * Source-free adaptation of a trained classifier to unlabelled target examples, with label-free
 * hyperparameter and checkpoint selection: AdaBN, entropy minimization (TENT, with the class-
 * diversity term by default) and network self-training. Every candidate (a hyperparameter setting
 * at a checkpoint) is scored by information maximization on the target examples themselves, at a
 * temperature calibrated once on the unadapted model's target predictions; the best is returned.
 * Target labels never enter; a caller that has them scores the returned model for its report.
 */
import type { Graph } from '../graph/graph.js';
import type { TrainableSpec } from '../train/training-graph.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { adaBn } from './adabn.js';
import { entropyMinimize } from './entropy.js';
import { selfTrainNetwork } from './self-train-net.js';
import { calibrateTemperature, predictLogits, probabilities } from './predict.js';
import {
  informationMaximization,
  selectBest,
  selectOverUnadapted,
  NO_HARM_MARGIN,
  type Candidate,
} from './selection.js';
import { GraftError } from '../util/errors.js';

export type NetworkMethod = 'adabn' | 'entropy' | 'self-training';
export const NETWORK_METHODS: readonly NetworkMethod[] = ['adabn', 'entropy', 'self-training'];

export interface AdaptNetworkOptions {
  /** Hyperparameter settings to try (default per method: see defaultNetworkGrid). */
  grid?: Record<string, number>[];
  /** Temperature for losses, confidences and the score (default: calibrated so the unadapted model's mean target entropy is ¼·ln K). */
  temperature?: number;
  /** Entropy: steps at which checkpoints are scored (default 25, 50, 100; the last is the run's length). */
  checkpoints?: number[];
  /** Self-training: rounds (each round is a checkpoint; default 3). */
  rounds?: number;
  trainable?: TrainableSpec;
  batchSize?: number;
  seed?: number;
  runtime?: RuntimeOptions;
  onCandidate?: (c: { params: Record<string, number>; score: number }) => void;
  /** Keep every candidate's model in `candidates` (for studies of the criterion; default false). */
  keepModels?: boolean;
  /**
   * Do no harm (default true): the unadapted model is a candidate too, and an adapted one is
   * returned only when its score beats the unadapted model's by more than `margin`.
   */
  noHarm?: boolean;
  /** Information-maximization margin of the no-harm rule (default NO_HARM_MARGIN.informationMaximization). */
  margin?: number;
}

export interface AdaptNetworkResult {
  method: NetworkMethod;
  model: Graph;
  chosen: Record<string, number>;
  temperature: number;
  /** Label-free score of the unadapted model and of every candidate. */
  before: number;
  candidates: {
    params: Record<string, number>;
    score: number;
    meanEntropy: number;
    diversity: number;
    model?: Graph;
  }[];
  /** True when the no-harm rule kept the unadapted model (then `model` is the input and `chosen` is {}). */
  keptUnadapted: boolean;
  /** The no-harm rule's margin and its verdict in words (absent with noHarm false). */
  noHarm?: { margin: number; reason: string; best: Record<string, number> };
  seconds: number;
}

export function defaultNetworkGrid(method: NetworkMethod): Record<string, number>[] {
  switch (method) {
    case 'adabn':
      return [{ alpha: 1 }];
    case 'entropy':
      return [3e-4, 1e-3, 3e-3, 1e-2].map((lr) => ({ lr, diversity: 1 }));
    case 'self-training':
      return [1e-3, 3e-3].flatMap((lr) => [0.5, 0.8].map((threshold) => ({ lr, threshold })));
  }
}

export async function adaptNetwork(
  method: NetworkMethod,
  model: Graph,
  target: Float32Array[],
  o: AdaptNetworkOptions = {},
): Promise<AdaptNetworkResult> {
  if (!NETWORK_METHODS.includes(method))
    throw new GraftError(`unknown network method '${method}' (known: ${NETWORK_METHODS.join(', ')})`);
  const t0 = performance.now();
  const rt = o.runtime ? { runtime: o.runtime } : {};
  const temperature = o.temperature ?? calibrateTemperature(await predictLogits(model, target, rt));
  const score = async (g: Graph) =>
    informationMaximization(probabilities(await predictLogits(g, target, rt), temperature));
  const before = (await score(model)).score;
  const cands: Candidate<Graph>[] = [];
  const candidates: AdaptNetworkResult['candidates'] = [];
  const add = async (params: Record<string, number>, g: Graph) => {
    const s = await score(g);
    cands.push({ params, value: g, score: s.score });
    candidates.push({ params, ...s, ...(o.keepModels ? { model: g } : {}) });
    o.onCandidate?.({ params, score: s.score });
  };
  for (const p of o.grid ?? defaultNetworkGrid(method)) {
    if (method === 'adabn') {
      await add(
        p,
        (await adaBn(model, target, { ...(p['alpha'] !== undefined ? { alpha: p['alpha'] } : {}), ...rt })).model,
      );
    } else if (method === 'entropy') {
      const cps = o.checkpoints ?? [25, 50, 100];
      const steps = p['steps'] ?? Math.max(...cps);
      const r = await entropyMinimize(model, target, {
        steps,
        lr: p['lr'] ?? 1e-3,
        diversity: p['diversity'] ?? 1,
        temperature,
        checkpoints: cps.filter((c) => c < steps),
        ...(o.trainable ? { trainable: o.trainable } : {}),
        ...(o.batchSize ? { batchSize: o.batchSize } : {}),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...rt,
      });
      for (const [s, g] of r.checkpoints) await add({ ...p, steps: s }, g);
      await add({ ...p, steps }, r.model);
    } else {
      const r = await selfTrainNetwork(model, target, {
        lr: p['lr'] ?? 1e-3,
        threshold: p['threshold'] ?? 0.8,
        temperature,
        rounds: p['rounds'] ?? o.rounds ?? 3,
        epochs: p['epochs'] ?? 3,
        ...(o.trainable ? { trainable: o.trainable } : {}),
        ...(o.batchSize ? { batchSize: o.batchSize } : {}),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...rt,
      });
      for (const [i, g] of r.rounds.entries()) await add({ ...p, round: i + 1 }, g);
    }
  }
  if (o.noHarm === false) {
    const best = selectBest(cands);
    return {
      method,
      model: best.value,
      chosen: best.params as Record<string, number>,
      temperature,
      before,
      candidates,
      keptUnadapted: false,
      seconds: (performance.now() - t0) / 1000,
    };
  }
  const margin = o.margin ?? NO_HARM_MARGIN.informationMaximization;
  const g = selectOverUnadapted({ params: {}, value: model, score: before }, cands, margin, 'information maximization');
  return {
    method,
    model: g.chosen.value,
    chosen: g.chosen.params as Record<string, number>,
    temperature,
    before,
    candidates,
    keptUnadapted: g.keptUnadapted,
    noHarm: { margin, reason: g.reason, best: g.best.params as Record<string, number> },
    seconds: (performance.now() - t0) / 1000,
  };
}
