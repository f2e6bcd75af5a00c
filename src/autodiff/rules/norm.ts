/** Normalization and regularization: BatchNormalization LayerNormalization InstanceNormalization GroupNormalization Dropout. */
import { toNumbers } from '../../graph/tensor.js';
import { broadcasting, type Grad, type GradCtx, type GradRule } from '../rule.js';
import { normAxis, once, prod, span } from './helpers.js';

/** A per-channel vector [C] reshaped to broadcast along axis 1 of a rank-r tensor: [C, 1, …]. */
function perChannel(c: GradCtx, v: string, r: number): string {
  return r <= 2 ? v : c.b.reshape(v, [-1, ...Array<number>(r - 2).fill(1)]);
}

/** 1/sqrt(v + eps). */
function rsqrt(c: GradCtx, v: string, eps: number): string {
  return c.b.recip(c.b.sqrt(c.b.add(v, c.b.f32(eps))));
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
  return c.b.reduce('ReduceSum', v, [0, ...span(2, r)], false);
}

/** 1/M for the M = numel(x)/C values each channel's statistics cover (static when x's shape is). */
function invCount(c: GradCtx, x: string, C: number): string {
  const b = c.b;
  const dims = c.shape(x).dims;
  if (dims.every((d) => d !== null)) return b.f32(C / prod(dims as number[]));
  return b.recip(b.div(b.cast(b.op('Size', [x])), b.f32(C)));
}

/** 1/N for the N values of x that axes cover (static when those dims are). */
function invCountOver(c: GradCtx, x: string, axes: number[]): string {
  const b = c.b;
  const dims = c.shape(x).dims;
  const sel = axes.map((a) => dims[a]);
  if (sel.every((d) => d !== null)) return b.f32(1 / prod(sel as number[]));
  return b.recip(b.cast(b.reduce('ReduceProd', b.op('Gather', [b.shapeOf(x), b.i64(axes)]), [0], false)));
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
function batchStatsBackward(c: GradCtx, x: string, scale: string, dy: string, r: number, eps: number): Grad[] {
  const b = c.b;
  const axes = [0, ...span(2, r)];
  const C = c.shape(scale).dims[0];
  if (typeof C !== 'number') throw new Error(`BatchNormalization gradient needs a static channel count ('${scale}')`);
  const invM = invCount(c, x, C);
  // With momentum 0 the node's outputs 1 and 2 are the batch mean and (population) variance, exactly:
  // reuse them (compileTraining's batch mode runs BatchNorm so) instead of two more passes over x.
  const m = c.float('momentum', 0.9);
  const batchStats = m === 0 && !!c.node.outputs[1] && !!c.node.outputs[2];
  const mean = batchStats ? perChannel(c, c.y[1], r) : b.reduce('ReduceMean', x, axes, true);
  const d = b.sub(x, mean);
  // ReduceSum(d·d), not ReduceSumSquare: onnxruntime's ReduceSumSquare over axes [0, 2, …] alone is 1.6–2.7× slower
  const variance = batchStats ? perChannel(c, c.y[2], r) : b.mul(b.reduce('ReduceSum', b.mul(d, d), axes, true), invM);
  const rstd = rsqrt(c, variance, eps);
  const flat = (v: string) => b.reshape(v, [C]);
  const T = b.reduce('ReduceSum', b.mul(dy, d), axes, true);
  const S = once(() => b.reduce('ReduceSum', dy, axes, true));
  const dxhat = b.mul(T, rstd); // Σ dy·x̂
  // running_mean = m·input_mean + (1 − m)·mean, running_var = m·input_var + (1 − m)·var (population variance)
  const [dRM, dRV] = [c.dyOf(1), c.dyOf(2)];
  const dx = () => {
    const a = b.mul(perChannel(c, scale, r), rstd);
    const beta = b.neg(b.mul(b.mul(a, rstd), b.mul(dxhat, invM)));
    const gamma = b.neg(b.mul(a, b.mul(S(), invM)));
    const zeros = b.constant({ dtype: 'float32', dims: [C], data: new Float32Array(C) });
    const ones = b.constant({ dtype: 'float32', dims: [C], data: new Float32Array(C).fill(1) });
    const affine = b.op('BatchNormalization', [d, flat(beta), flat(gamma), zeros, ones], {
      epsilon: { type: 'float', value: 0 },
    });
    const dxBatch = b.add(b.mul(dy, a), affine);
    if (!dRM && !dRV) return dxBatch;
    const terms: string[] = [];
    if (dRM) terms.push(perChannel(c, dRM, r));
    if (dRV) terms.push(b.mul(b.mul(perChannel(c, dRV, r), b.f32(2)), d));
    return b.add(dxBatch, b.mul(b.sum(terms), b.mul(invM, b.f32(1 - m))));
  };
  const dIn = (dR: string | null) => () => (dR ? b.mul(dR, b.f32(m)) : null);
  return [dx, () => flat(dxhat), () => flat(S()), dIn(dRM), dIn(dRV)];
}

export const norm: Record<string, GradRule> = {
  // y = x̂·scale + B. Frozen statistics: x̂ = (x − mean)/sqrt(var + eps), dx = dy·scale·rstd.
  // Batch statistics (training_mode=1): dx = (scale·rstd/M)·(M·dy − Σdy − x̂·Σ(dy·x̂)).
  // dscale = Σ dy·x̂, dB = Σ dy (over all axes but 1); mean/var get none.
  BatchNormalization: (c) => {
    const {
      b,
      dy,
      x: [x, scale, , mean, variance],
    } = c;
    const r = c.rank(x);
    const eps = c.float('epsilon', 1e-5);
    if (b.opset >= 14 && c.int('training_mode', 0) === 1) return batchStatsBackward(c, x, scale, dy, r, eps);
    // Frozen statistics: rstd and mean are per-channel constants, so the per-element work is one
    // product for dx and one for dscale = rstd·(Σ dy·x − mean·Σ dy), never x̂ itself.
    const rstd = rsqrt(c, variance, eps);
    const dx = () => b.mul(dy, perChannel(c, b.mul(scale, rstd), r));
    const sumDy = once(() => sumPerChannel(c, dy, r));
    return [
      dx,
      () => b.mul(rstd, b.sub(sumPerChannel(c, b.mul(dy, x), r), b.mul(mean, sumDy()))),
      sumDy,
      // frozen statistics as inputs (never trained, but differentiable): dmean = −scale·rstd·Σdy,
      // dvar = −½·scale·rstd³·Σ dy·(x − mean)
      () => b.neg(b.mul(b.mul(scale, rstd), sumDy())),
      () =>
        b.mul(
          b.mul(b.mul(scale, b.mul(rstd, b.mul(rstd, rstd))), b.f32(-0.5)),
          b.sub(sumPerChannel(c, b.mul(dy, x), r), b.mul(mean, sumDy())),
        ),
    ];
  },

  // y = x̂·scale + bias over axes [axis, r): dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·scale;
  // dscale = Σ_leading dy·x̂, dbias = Σ_leading dy.
  LayerNormalization: broadcasting(
    (c) => {
      const {
        b,
        dy,
        x: [x, scale],
      } = c;
      const r = c.rank(x);
      const axes = span(normAxis(c.int('axis', -1), r), r);
      const { xhat, rstd } = stats(c, x, axes, c.float('epsilon', 1e-5));
      const dx = () => {
        const d = normBackward(c, b.mul(dy, scale), xhat, rstd, axes);
        // the optional outputs Mean = mean(x) and InvStdDev = rstd: dx += (dMean − dInvStdDev·rstd²·x̂)/N
        const [dMean, dInv] = [c.dyOf(1), c.dyOf(2)];
        if (!dMean && !dInv) return d;
        let extra = dMean ? b.cast(dMean) : null;
        if (dInv) {
          const t = b.neg(b.mul(b.mul(b.cast(dInv), b.mul(rstd, rstd)), xhat));
          extra = extra ? b.add(extra, t) : t;
        }
        return b.add(d, b.mul(extra!, invCountOver(c, x, axes)));
      };
      return [dx, () => b.mul(dy, xhat), dy];
    },
    [1, 2],
  ),

  // y = x̂·scale[c] + B[c], statistics per (n, c) over the spatial axes: as LayerNorm over axes 2…r-1.
  InstanceNormalization: (c) => {
    const {
      b,
      dy,
      x: [x, scale],
    } = c;
    const r = c.rank(x);
    const axes = span(2, r);
    const { xhat, rstd } = stats(c, x, axes, c.float('epsilon', 1e-5));
    return [
      () => normBackward(c, b.mul(dy, perChannel(c, scale, r)), xhat, rstd, axes),
      () => sumPerChannel(c, b.mul(dy, xhat), r),
      () => sumPerChannel(c, dy, r),
    ];
  },

  // Statistics per (n, group) over the group's channels and the spatial axes: on x viewed as [N, G, M],
  // as LayerNorm over the last axis. Opset 18 scales and shifts per group ([G]), opset 21 per channel ([C]).
  GroupNormalization: (c) => {
    const {
      b,
      dy,
      x: [x, scale],
    } = c;
    const r = c.rank(x);
    const G = c.int('num_groups', 1);
    const grouped = (v: string) => b.reshape(v, [0, G, -1]);
    const { xhat, rstd } = stats(c, grouped(x), [2], c.float('epsilon', 1e-5));
    const perGroup = b.opset < 21;
    const dyg = grouped(dy);
    return [
      () => {
        const g = perGroup ? b.mul(dyg, b.reshape(scale, [G, 1])) : grouped(b.mul(dy, perChannel(c, scale, r)));
        return b.op('Reshape', [normBackward(c, g, xhat, rstd, [2]), b.shapeOf(x)]);
      },
      () =>
        perGroup
          ? b.reduce('ReduceSum', b.mul(dyg, xhat), [0, 2], false)
          : sumPerChannel(c, b.mul(dy, b.op('Reshape', [xhat, b.shapeOf(x)])), r),
      () => (perGroup ? b.reduce('ReduceSum', dyg, [0, 2], false) : sumPerChannel(c, dy, r)),
    ];
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
    const dtype = c.dtype(c.x[0]);
    const mask = b.cast(c.forwardOutput(1, 'mask'), dtype);
    // 1/(1 − ratio), from the constant ratio (default 0.5) or computed from a fed one.
    let inv =
      ratioName && !ratioConst
        ? b.recip(b.sub(b.f32(1), b.cast(ratioName)))
        : b.f32(1 / (1 - (ratioConst ? toNumbers(ratioConst)[0]! : 0.5)));
    if (dtype !== 'float32') inv = b.cast(inv, dtype);
    const dx = b.mul(dy, b.mul(mask, inv));
    // training_mode fed at run time: pick the branch in the graph.
    return [tmConst ? dx : b.where(tm, dx, dy)];
  },
};
