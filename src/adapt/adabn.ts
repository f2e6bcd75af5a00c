/**
 * AdaBN (Li et al. 2016): adapt a network with BatchNormalization to a new domain by replacing each
 * BN layer's running mean and variance with the statistics of its input on target data; no labels,
 * no gradient. Layers are done in topological order, each from the outputs of the network whose
 * earlier BN layers already carry target statistics, so every layer's statistics are exact
 * (population mean and biased variance over all target examples and positions) for the adapted
 * network, not the batch-statistics approximation. One onnxruntime pass per BN layer, each over
 * the network cut at that layer's input.
 */
import type { Graph } from '../graph/graph.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { exampleDims, stack } from '../train/fit.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { GraftError } from '../util/errors.js';

export interface AdaBnOptions {
  batchSize?: number;
  runtime?: RuntimeOptions;
  /** Mix with the source statistics: new = (1 − alpha)·source + alpha·target (default 1: target only). */
  alpha?: number;
  onLayer?: (info: { layer: number; layers: number; name: string }) => void;
}

export interface AdaBnResult {
  model: Graph;
  /** Per BN layer: mean absolute change of its running mean and of its running variance. */
  layers: { node: string; meanShift: number; varRatio: number }[];
}

export async function adaBn(model: Graph, target: Float32Array[], o: AdaBnOptions = {}): Promise<AdaBnResult> {
  if (target.length === 0) throw new GraftError('AdaBN needs target examples');
  const g = upgradeOpset(model).clone();
  const bns = g.topoSort().filter((n) => n.opType === 'BatchNormalization');
  if (bns.length === 0)
    throw new GraftError(
      `${model.name}: the model has no BatchNormalization layer, so AdaBN has nothing to adapt`,
      'use entropy minimization or self-training instead',
    );
  const dims = exampleDims(g);
  const inputName = g.dataInputs()[0]!.name;
  const bs = o.batchSize ?? 128;
  const alpha = o.alpha ?? 1;
  const layers: AdaBnResult['layers'] = [];
  for (const [li, bn] of bns.entries()) {
    o.onLayer?.({ layer: li + 1, layers: bns.length, name: bn.name });
    const x = bn.inputs[0]!;
    const [meanName, varName] = [bn.inputs[3]!, bn.inputs[4]!];
    const mean0 = g.initializers.get(meanName),
      var0 = g.initializers.get(varName);
    if (!mean0 || !var0) throw new GraftError(`BatchNormalization '${bn.name}': running statistics are not constants`);
    const cut = g.clone();
    cut.outputs = [{ name: x }];
    cut.prune();
    const s = await Session.fromGraph(cut, o.runtime, `${model.name} (to ${bn.name})`);
    const C = mean0.dims[0]!;
    const sum = new Float64Array(C),
      sq = new Float64Array(C);
    let count = 0;
    try {
      for (let i = 0; i < target.length; i += bs) {
        const t = (await s.run({ [inputName]: stack(target.slice(i, i + bs), dims) }, [x]))[x]!;
        const d = t.data as Float32Array;
        const n = t.dims[0]!,
          c = t.dims[1]!;
        if (c !== C)
          throw new GraftError(`BatchNormalization '${bn.name}': input has ${c} channels, statistics have ${C}`);
        const sp = t.dims.slice(2).reduce((a, b) => a * b, 1);
        for (let e = 0; e < n; e++)
          for (let k = 0; k < C; k++) {
            const base = (e * C + k) * sp;
            let s1 = 0,
              s2 = 0;
            for (let j = 0; j < sp; j++) {
              const v = d[base + j]!;
              s1 += v;
              s2 += v * v;
            }
            sum[k]! += s1;
            sq[k]! += s2;
          }
        count += n * sp;
      }
    } finally {
      await s.release();
    }
    const m0 = mean0.data as Float32Array,
      v0 = var0.data as Float32Array;
    const mean = new Float32Array(C),
      vr = new Float32Array(C);
    let shift = 0,
      ratio = 0;
    for (let k = 0; k < C; k++) {
      const mu = sum[k]! / count;
      const va = Math.max(sq[k]! / count - mu * mu, 0);
      mean[k] = (1 - alpha) * m0[k]! + alpha * mu;
      vr[k] = (1 - alpha) * v0[k]! + alpha * va;
      shift += Math.abs(mean[k]! - m0[k]!) / C;
      ratio += vr[k]! / Math.max(v0[k]!, 1e-12) / C;
    }
    g.initializers.set(meanName, { dtype: 'float32', dims: [...mean0.dims], data: mean });
    g.initializers.set(varName, { dtype: 'float32', dims: [...var0.dims], data: vr });
    layers.push({ node: bn.name, meanShift: shift, varRatio: ratio });
  }
  return { model: g, layers };
}
