/**
 * Deep MMD (Long et al. 2015, DAN) and deep CORAL (Sun & Saenko 2016) as custom losses: source
 * cross-entropy plus a term that pulls the source and target distributions of a feature value
 * together. Batches and inputs are those of ./dann.ts (labels, is_source; adaptFit trains them).
 *
 * With m = is_source, nₛ = Σm, nₜ = Σ(1 − m) and f the flattened features [N, D]:
 *
 *   MMD² = vᵀ K v,   v = m/nₛ − (1 − m)/nₜ,   K = Σₖ exp(−‖fᵢ − fⱼ‖² / (βₖ · σ²))
 *     (the biased estimator: mean source–source + target–target − 2 source–target kernel values;
 *     σ² is the batch's mean pairwise squared distance, held constant for the gradient, and
 *     βₖ ∈ {¼, ½, 1, 2, 4} by default: DAN's multi-bandwidth Gaussian kernel)
 *
 *   CORAL = ‖Cₛ − Cₜ‖²_F / (4 D²),   Cₛ = (Σ mᵢ fᵢ fᵢᵀ − nₛ μₛ μₛᵀ) / (nₛ − 1)  (likewise Cₜ)
 *
 *   loss = CE(source rows) + weight · term
 */
import type { Graph } from '../graph/graph.js';
import type { Builder } from '../graph/builder.js';
import type { Examples } from '../train/fit.js';
import type { Trainer } from '../train/trainer.js';
import { defaultFeatureNode } from '../features/extract.js';
import {
  adaptFit,
  adaptProbeFeeds,
  featureDim,
  flatFeatures,
  sourceCrossEntropy,
  IS_SOURCE,
  LABELS,
  type AdaptFitOptions,
  type AdaptLoss,
} from './dann.js';

export interface AlignOptions {
  /** The feature value to align (default: the input of the final classifier). */
  feature: string;
  /** Weight of the alignment term (default 1). */
  weight?: number;
  /** MMD only: bandwidth multipliers βₖ (default [0.25, 0.5, 1, 2, 4]). */
  bandwidths?: number[];
}

/** Row weights for the source and target means: m/nₛ and (1 − m)/nₜ, each [N]. */
function domainWeights(b: Builder): { m: string; t: string; ns: string; nt: string } {
  const m = IS_SOURCE;
  const t = b.sub(b.f32(1), m);
  const ns = b.op('Max', [b.reduce('ReduceSum', m, [0], false), b.f32(1)]);
  const nt = b.op('Max', [b.reduce('ReduceSum', t, [0], false), b.f32(1)]);
  return { m, t, ns, nt };
}

/** The MMD² term between source and target rows of f [N, D]; `stopped` collects values whose gradient is cut. */
export function mmdTerm(b: Builder, f: string, bandwidths: number[], stopped: string[]): string {
  const { m, t, ns, nt } = domainWeights(b);
  const v = b.sub(b.div(m, ns), b.div(t, nt));
  const sq = b.reduce('ReduceSum', b.mul(f, f), [1], true); // [N, 1]
  const gram = b.op('MatMul', [f, b.transpose(f, [1, 0])]);
  const d2 = b.op('Relu', [b.sub(b.add(sq, b.transpose(sq, [1, 0])), b.mul(gram, b.f32(2)))]);
  const n = b.add(b.reduce('ReduceSum', m, [0], false), b.reduce('ReduceSum', t, [0], false)); // N
  const pairs = b.op('Max', [b.sub(b.mul(n, n), n), b.f32(1)]);
  const sigma2raw = b.add(b.div(b.reduceAll('ReduceSum', d2), pairs), b.f32(1e-6));
  const sigma2 = b.op('Identity', [sigma2raw], {}, 'mmd_bandwidth');
  stopped.push(sigma2);
  const kernels = bandwidths.map((beta) => b.op('Exp', [b.neg(b.div(d2, b.mul(sigma2, b.f32(beta))))]));
  const K = b.sum(kernels);
  const vv = b.mul(b.unsqueeze(v, [1]), b.unsqueeze(v, [0]));
  return b.reduceAll('ReduceSum', b.mul(K, vv));
}

/** The CORAL term ‖Cₛ − Cₜ‖²_F / (4 D²) between source and target rows of f [N, D] (D known). */
export function coralTerm(b: Builder, f: string, D: number): string {
  const { m, t, ns, nt } = domainWeights(b);
  const cov = (w: string, n: string) => {
    const fw = b.mul(f, b.unsqueeze(w, [1]));
    const S = b.op('MatMul', [b.transpose(fw, [1, 0]), f]); // Σ wᵢ fᵢ fᵢᵀ
    const mu = b.div(b.reduce('ReduceSum', fw, [0], true), n); // [1, D]
    const outer = b.op('MatMul', [b.transpose(mu, [1, 0]), mu]);
    const denom = b.op('Max', [b.sub(n, b.f32(1)), b.f32(1)]);
    return b.div(b.sub(S, b.mul(outer, n)), denom);
  };
  const d = b.sub(cov(m, ns), cov(t, nt));
  return b.div(b.reduceAll('ReduceSum', b.mul(d, d)), b.f32(4 * D * D));
}

function alignLoss(kind: 'mmd' | 'coral', o: AlignOptions & { featureDim?: number }): AdaptLoss {
  return {
    kind: 'custom',
    build(_g: Graph, output: string, b: Builder) {
      const ce = sourceCrossEntropy(b, output);
      const f = flatFeatures(b, o.feature);
      const stopped: string[] = [];
      const term =
        kind === 'mmd' ? mmdTerm(b, f, o.bandwidths ?? [0.25, 0.5, 1, 2, 4], stopped) : coralTerm(b, f, o.featureDim!);
      const w = o.weight ?? 1;
      const loss = b.add(ce, w === 1 ? term : b.mul(term, b.f32(w)));
      return {
        loss,
        targets: [LABELS, IS_SOURCE],
        outputs: [ce, term],
        ...(stopped.length ? { gradScale: new Map(stopped.map((s) => [s, 0])) } : {}),
      };
    },
    probeFeeds: (dims) => adaptProbeFeeds(dims, false),
  };
}

/** Source CE + weight · multi-bandwidth Gaussian MMD² at `feature`. */
export function mmdLoss(o: AlignOptions): AdaptLoss {
  return alignLoss('mmd', o);
}

/** Source CE + weight · CORAL distance at `feature` (featureDim: its flattened size). */
export function deepCoralLoss(o: AlignOptions & { featureDim: number }): AdaptLoss {
  return alignLoss('coral', o);
}

/** Deep MMD or deep CORAL end to end (feature defaults to the model's classifier input). */
export async function alignFit(
  kind: 'mmd' | 'coral',
  model: Graph,
  source: Examples,
  target: Float32Array[],
  o: AdaptFitOptions & Partial<AlignOptions> & { featureDim?: number } = {},
): Promise<Trainer> {
  const feature = o.feature ?? defaultFeatureNode(model);
  const D = o.featureDim ?? (kind === 'coral' ? await featureDim(model, feature) : 0);
  const loss =
    kind === 'mmd'
      ? mmdLoss({
          feature,
          ...(o.weight !== undefined ? { weight: o.weight } : {}),
          ...(o.bandwidths ? { bandwidths: o.bandwidths } : {}),
        })
      : deepCoralLoss({ feature, featureDim: D, ...(o.weight !== undefined ? { weight: o.weight } : {}) });
  return adaptFit(model, loss, source, target, o);
}
