/** Normalization and regularization: BatchNormalization LayerNormalization InstanceNormalization GroupNormalization Dropout. */
import { attrFloat, attrInt } from '../../graph/graph.js';
import { ONNX_DTYPE, toNumbers } from '../../graph/tensor.js';
import type { GradCtx, GradRule } from '../rule.js';

const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, k) => a + k);

/** A per-channel vector [C] reshaped to broadcast along axis 1 of a rank-r tensor: [C, 1, …]. */
function perChannel(c: GradCtx, v: string, r: number): string {
  return r <= 2 ? v : c.b.reshape(v, [-1, ...Array<number>(r - 2).fill(1)]);
}

/** 1/sqrt(v + eps). */
function rsqrt(c: GradCtx, v: string, eps: number): string {
  return c.b.op('Reciprocal', [c.b.op('Sqrt', [c.b.add(v, c.b.f32(eps))])]);
}

/** Recomputed statistics of x over `axes` (kept dims): x̂ = (x − mean)·rstd and rstd = 1/sqrt(var + eps). */
function stats(c: GradCtx, x: string, axes: number[], eps: number): { xhat: string; rstd: string } {
  const b = c.b;
  const d = b.sub(x, b.reduce('ReduceMean', x, axes, true));
  const rstd = rsqrt(c, b.reduce('ReduceMean', b.mul(d, d), axes, true), eps);
  return { xhat: b.mul(d, rstd), rstd };
}

/** Backward of x̂ = normalize(x) over `axes` given g = dL/dx̂: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)). */
function normBackward(c: GradCtx, g: string, xhat: string, rstd: string, axes: number[]): string {
  const b = c.b;
  const mg = b.reduce('ReduceMean', g, axes, true);
  const mgx = b.reduce('ReduceMean', b.mul(g, xhat), axes, true);
  return b.mul(rstd, b.sub(b.sub(g, mg), b.mul(xhat, mgx)));
}

/** Sum over every axis but 1, as a [C] vector. */
function sumPerChannel(c: GradCtx, v: string, r: number): string {
  return c.b.reduce('ReduceSum', v, [0, ...range(2, r)], false);
}

/** 1/M for the M = numel(x)/C values each channel's statistics cover (static when x's shape is). */
function invCount(c: GradCtx, x: string, C: number): string {
  const b = c.b;
  const dims = c.shape(x).dims;
  if (dims.every((d) => d !== null)) return b.f32(C / (dims as number[]).reduce((p, q) => p * q, 1));
  const n = b.op('Cast', [b.op('Size', [x])], { to: { type: 'int', value: 1 } });
  return b.op('Reciprocal', [b.div(n, b.f32(C))]);
}

/** 1/N for the N values of x that axes cover (static when those dims are). */
function invCountOver(c: GradCtx, x: string, axes: number[]): string {
  const b = c.b;
  const dims = c.shape(x).dims;
  const sel = axes.map((a) => dims[a]);
  if (sel.every((d) => d !== null)) return b.f32(1 / (sel as number[]).reduce((p, q) => p * q, 1));
  const n = b.reduce('ReduceProd', b.op('Gather', [b.shapeOf(x), b.i64(axes)]), [0], false);
  return b.op('Reciprocal', [b.op('Cast', [n], { to: { type: 'int', value: 1 } })]);
}

/**
 * BatchNormalization with batch statistics, in per-channel coefficient form. With d = x − mean, the
 * sums S = Σdy and T = Σdy·d (over all axes but 1) and a = scale·rstd,
 *   dscale = rstd·T,  dB = S,  dx = a·dy + β·d + γ  with  β = −a·rstd²·T/M,  γ = −a·S/M,
 * so the full-size work is: the statistics (mean, d², Σd²; none when the node hands them over), d, S,
 * dy·d, T, and dx as one Mul, one per-channel affine of d (an inference-mode BatchNormalization with mean 0,
 * var 1, epsilon 0) and one Add, instead of materializing x̂ and g = dy·scale: 22–45% faster than that
 * x̂ form on MobileNetV2-sized activations (bench/conv-grad.ts batchnorm), before the statistics reuse.
 */
function batchStatsBackward(c: GradCtx, x: string, scale: string, dy: string, r: number, eps: number): (string | null)[] {
  const b = c.b;
  const axes = [0, ...range(2, r)];
  const C = c.shape(scale).dims[0];
  if (typeof C !== 'number') throw new Error(`BatchNormalization gradient needs a static channel count ('${scale}')`);
  const invM = invCount(c, x, C);
  // With momentum 0 the node's outputs 1 and 2 are the batch mean and (population) variance, exactly:
  // reuse them (compileTraining's batch mode runs BatchNorm so) instead of two more passes over x.
  const batchStats = attrFloat(c.node, 'momentum', 0.9) === 0 && !!c.node.outputs[1] && !!c.node.outputs[2];
  const mean = batchStats ? perChannel(c, c.y[1], r) : b.reduce('ReduceMean', x, axes, true);
  const d = b.sub(x, mean);
  // ReduceSum(d·d), not ReduceSumSquare: onnxruntime's ReduceSumSquare over axes [0, 2, …] alone is 1.6–2.7× slower
  const variance = batchStats ? perChannel(c, c.y[2], r) : b.mul(b.reduce('ReduceSum', b.mul(d, d), axes, true), invM);
  const rstd = rsqrt(c, variance, eps);
  const flat = (v: string) => b.reshape(v, [C]);
  const T = b.reduce('ReduceSum', b.mul(dy, d), axes, true);
  const S = c.needs(0) || c.needs(2) ? b.reduce('ReduceSum', dy, axes, true) : '';
  const dxhat = b.mul(T, rstd); // Σ dy·x̂
  let dx: string | null = null;
  if (c.needs(0)) {
    const a = b.mul(perChannel(c, scale, r), rstd);
    const beta = b.neg(b.mul(b.mul(a, rstd), b.mul(dxhat, invM)));
    const gamma = b.neg(b.mul(a, b.mul(S, invM)));
    const zeros = b.constant({ dtype: 'float32', dims: [C], data: new Float32Array(C) });
    const ones = b.constant({ dtype: 'float32', dims: [C], data: new Float32Array(C).fill(1) });
    const affine = b.op('BatchNormalization', [d, flat(beta), flat(gamma), zeros, ones], { epsilon: { type: 'float', value: 0 } });
    dx = b.add(b.mul(dy, a), affine);
  }
  // running_mean = m·input_mean + (1 − m)·mean, running_var = m·input_var + (1 − m)·var (population variance)
  const [dRM, dRV] = [c.dyOf(1), c.dyOf(2)];
  const m = attrFloat(c.node, 'momentum', 0.9);
  if (dx && (dRM || dRV)) {
    const terms: string[] = [];
    if (dRM) terms.push(perChannel(c, dRM, r));
    if (dRV) terms.push(b.mul(b.mul(perChannel(c, dRV, r), b.f32(2)), d));
    dx = b.add(dx, b.mul(b.sum(terms), b.mul(invM, b.f32(1 - m))));
  }
  const dIn = (dR: string | null, i: number) => (c.needs(i) && dR ? b.mul(dR, b.f32(m)) : null);
  return [dx, c.needs(1) ? flat(dxhat) : null, c.needs(2) ? flat(S) : null, dIn(dRM, 3), dIn(dRV, 4)];
}

export const norm: Record<string, GradRule> = {
  // y = x̂·scale + B. Frozen statistics: x̂ = (x − mean)/sqrt(var + eps), dx = dy·scale·rstd.
  // Batch statistics (training_mode=1): dx = (scale·rstd/M)·(M·dy − Σdy − x̂·Σ(dy·x̂)).
  // dscale = Σ dy·x̂, dB = Σ dy (over all axes but 1); mean/var get none.
  BatchNormalization: (c) => {
    const b = c.b;
    const [x, scale] = [c.x[0], c.x[1]];
    const dy = c.dy;
    const r = c.rank(x);
    const eps = attrFloat(c.node, 'epsilon', 1e-5);
    const training = b.opset >= 14 && attrInt(c.node, 'training_mode', 0) === 1;
    if (training) return batchStatsBackward(c, x, scale, dy, r, eps);
    let dx: string | null = null;
    // Frozen statistics: rstd and mean are per-channel constants, so the per-element work is one
    // product for dx and one for dscale = rstd·(Σ dy·x − mean·Σ dy), never x̂ itself.
    const rstd = rsqrt(c, c.x[4], eps);
    if (c.needs(0)) dx = b.mul(dy, perChannel(c, b.mul(scale, rstd), r));
    const sumDy = c.needs(1) || c.needs(2) || c.needs(3) || c.needs(4) ? sumPerChannel(c, dy, r) : '';
    const dscale = c.needs(1) ? b.mul(rstd, b.sub(sumPerChannel(c, b.mul(dy, x), r), b.mul(c.x[3], sumDy))) : null;
    // frozen statistics as inputs (never trained, but differentiable): dmean = −scale·rstd·Σdy,
    // dvar = −½·scale·rstd³·Σ dy·(x − mean)
    const dmean = c.needs(3) ? b.neg(b.mul(b.mul(scale, rstd), sumDy || sumPerChannel(c, dy, r))) : null;
    const dvar = c.needs(4)
      ? b.mul(b.mul(b.mul(scale, b.mul(rstd, b.mul(rstd, rstd))), b.f32(-0.5)),
        b.sub(sumPerChannel(c, b.mul(dy, x), r), b.mul(c.x[3], sumDy || sumPerChannel(c, dy, r))))
      : null;
    return [dx, dscale, c.needs(2) ? sumDy : null, dmean, dvar];
  },

  // y = x̂·scale + bias over axes [axis, r): dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·scale;
  // dscale = Σ_leading dy·x̂, dbias = Σ_leading dy.
  LayerNormalization: (c) => {
    const b = c.b;
    const x = c.x[0];
    const dy = c.dy;
    const r = c.rank(x);
    let axis = attrInt(c.node, 'axis', -1);
    if (axis < 0) axis += r;
    const axes = range(axis, r);
    const { xhat, rstd } = stats(c, x, axes, attrFloat(c.node, 'epsilon', 1e-5));
    let dx = c.needs(0) ? normBackward(c, b.mul(dy, c.x[1]), xhat, rstd, axes) : null;
    // the optional outputs Mean = mean(x) and InvStdDev = rstd: dx += (dMean − dInvStdDev·rstd²·x̂)/N
    const [dMean, dInv] = [c.dyOf(1), c.dyOf(2)];
    if (dx && (dMean || dInv)) {
      const f = (v: string) => b.op('Cast', [v], { to: { type: 'int', value: ONNX_DTYPE.float32 } });
      let extra = dMean ? f(dMean) : null;
      if (dInv) {
        const t = b.neg(b.mul(b.mul(f(dInv), b.mul(rstd, rstd)), xhat));
        extra = extra ? b.add(extra, t) : t;
      }
      dx = b.add(dx, b.mul(extra!, invCountOver(c, x, axes)));
    }
    const dscale = c.needs(1) ? c.unbroadcast(b.mul(dy, xhat), c.x[1]) : null;
    const dbias = c.needs(2) ? c.unbroadcast(dy, c.x[2]) : null;
    return [dx, dscale, dbias];
  },

  // y = x̂·scale[c] + B[c], statistics per (n, c) over the spatial axes: as LayerNorm over axes 2…r-1.
  InstanceNormalization: (c) => {
    const b = c.b;
    const x = c.x[0];
    const dy = c.dy;
    const r = c.rank(x);
    const axes = range(2, r);
    const { xhat, rstd } = stats(c, x, axes, attrFloat(c.node, 'epsilon', 1e-5));
    const dx = c.needs(0) ? normBackward(c, b.mul(dy, perChannel(c, c.x[1], r)), xhat, rstd, axes) : null;
    const dscale = c.needs(1) ? sumPerChannel(c, b.mul(dy, xhat), r) : null;
    const dB = c.needs(2) ? sumPerChannel(c, dy, r) : null;
    return [dx, dscale, dB];
  },

  // Statistics per (n, group) over the group's channels and the spatial axes: on x viewed as [N, G, M],
  // as LayerNorm over the last axis. Opset 18 scales and shifts per group ([G]), opset 21 per channel ([C]).
  GroupNormalization: (c) => {
    const b = c.b;
    const x = c.x[0];
    const dy = c.dy;
    const r = c.rank(x);
    const G = attrInt(c.node, 'num_groups', 1);
    const grouped = (v: string) => b.reshape(v, [0, G, -1]);
    const { xhat, rstd } = stats(c, grouped(x), [2], attrFloat(c.node, 'epsilon', 1e-5));
    const perGroup = b.opset < 21;
    const dyg = grouped(dy);
    let dx: string | null = null;
    if (c.needs(0)) {
      const g = perGroup ? b.mul(dyg, b.reshape(c.x[1], [G, 1])) : grouped(b.mul(dy, perChannel(c, c.x[1], r)));
      dx = b.op('Reshape', [normBackward(c, g, xhat, rstd, [2]), b.shapeOf(x)]);
    }
    const dscale = !c.needs(1) ? null : perGroup
      ? b.reduce('ReduceSum', b.mul(dyg, xhat), [0, 2], false)
      : sumPerChannel(c, b.mul(dy, b.op('Reshape', [xhat, b.shapeOf(x)])), r);
    const dbias = !c.needs(2) ? null : perGroup ? b.reduce('ReduceSum', dyg, [0, 2], false) : sumPerChannel(c, dy, r);
    return [dx, dscale, dbias];
  },

  // Inference: y = x, dx = dy. Training: y = x·mask/(1 − ratio), dx = dy·mask/(1 − ratio).
  Dropout: (c) => {
    const b = c.b;
    const dy = c.dy;
    const tm = b.opset >= 12 ? c.x[2] : '';
    if (!tm) return [dy];
    const tmConst = b.graph.initializers.get(tm);
    if (tmConst && !toNumbers(tmConst)[0]) return [dy];
    const ratioName = b.opset >= 12 ? c.x[1] : '';
    const ratioConst = ratioName ? b.graph.initializers.get(ratioName) : undefined;
    const to = { type: 'int' as const, value: ONNX_DTYPE[c.dtype(c.x[0])] };
    const mask = b.op('Cast', [c.forwardOutput(1, 'mask')], { to });
    // 1/(1 − ratio), from the constant ratio (default 0.5) or computed from a fed one.
    let inv = ratioName && !ratioConst
      ? b.op('Reciprocal', [b.sub(b.f32(1), b.op('Cast', [ratioName], { to: { type: 'int', value: 1 } }))])
      : b.f32(1 / (1 - (ratioConst ? toNumbers(ratioConst)[0]! : 0.5)));
    if (to.value !== 1) inv = b.op('Cast', [inv], { to });
    const dx = b.mul(dy, b.mul(mask, inv));
    // training_mode fed at run time: pick the branch in the graph.
    return [tmConst ? dx : b.op('Where', [tm, dx, dy])];
  },
};
