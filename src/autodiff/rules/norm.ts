/** Normalization and regularization: BatchNormalization LayerNormalization InstanceNormalization Dropout. */
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

export const norm: Record<string, GradRule> = {
  // y = x̂·scale + B. Frozen statistics: x̂ = (x − mean)/sqrt(var + eps), dx = dy·scale·rstd.
  // Batch statistics (training_mode=1): dx = (scale·rstd/M)·(M·dy − Σdy − x̂·Σ(dy·x̂)).
  // dscale = Σ dy·x̂, dB = Σ dy (over all axes but 1); mean/var get none.
  BatchNormalization: (c) => {
    const b = c.b;
    const [x, scale] = [c.x(0), c.x(1)];
    const dy = c.dy(0)!;
    const r = c.rank(x);
    const eps = attrFloat(c.node, 'epsilon', 1e-5);
    const training = b.opset >= 14 && attrInt(c.node, 'training_mode', 0) === 1;
    const axes = [0, ...range(2, r)];
    let dx: string | null = null;
    const sc = perChannel(c, scale, r);
    if (training) {
      const s = stats(c, x, axes, eps);
      if (c.needs(0)) dx = normBackward(c, b.mul(dy, sc), s.xhat, s.rstd, axes);
      const dscale = c.needs(1) ? sumPerChannel(c, b.mul(dy, s.xhat), r) : null;
      return [dx, dscale, c.needs(2) ? sumPerChannel(c, dy, r) : null, null, null];
    }
    // Frozen statistics: rstd and mean are per-channel constants, so the per-element work is one
    // product for dx and one for dscale = rstd·(Σ dy·x − mean·Σ dy), never x̂ itself.
    const rstd = rsqrt(c, c.x(4), eps);
    if (c.needs(0)) dx = b.mul(dy, perChannel(c, b.mul(scale, rstd), r));
    const sumDy = c.needs(1) || c.needs(2) ? sumPerChannel(c, dy, r) : '';
    const dscale = c.needs(1) ? b.mul(rstd, b.sub(sumPerChannel(c, b.mul(dy, x), r), b.mul(c.x(3), sumDy))) : null;
    return [dx, dscale, c.needs(2) ? sumDy : null, null, null];
  },

  // y = x̂·scale + bias over axes [axis, r): dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·scale;
  // dscale = Σ_leading dy·x̂, dbias = Σ_leading dy.
  LayerNormalization: (c) => {
    const b = c.b;
    const x = c.x(0);
    const dy = c.dy(0)!;
    const r = c.rank(x);
    let axis = attrInt(c.node, 'axis', -1);
    if (axis < 0) axis += r;
    const axes = range(axis, r);
    const { xhat, rstd } = stats(c, x, axes, attrFloat(c.node, 'epsilon', 1e-5));
    const dx = c.needs(0) ? normBackward(c, b.mul(dy, c.x(1)), xhat, rstd, axes) : null;
    const dscale = c.needs(1) ? c.unbroadcast(b.mul(dy, xhat), c.x(1)) : null;
    const dbias = c.needs(2) ? c.unbroadcast(dy, c.x(2)) : null;
    return [dx, dscale, dbias];
  },

  // y = x̂·scale[c] + B[c], statistics per (n, c) over the spatial axes: as LayerNorm over axes 2…r-1.
  InstanceNormalization: (c) => {
    const b = c.b;
    const x = c.x(0);
    const dy = c.dy(0)!;
    const r = c.rank(x);
    const axes = range(2, r);
    const { xhat, rstd } = stats(c, x, axes, attrFloat(c.node, 'epsilon', 1e-5));
    const dx = c.needs(0) ? normBackward(c, b.mul(dy, perChannel(c, c.x(1), r)), xhat, rstd, axes) : null;
    const dscale = c.needs(1) ? sumPerChannel(c, b.mul(dy, xhat), r) : null;
    const dB = c.needs(2) ? sumPerChannel(c, dy, r) : null;
    return [dx, dscale, dB];
  },

  // Inference: y = x, dx = dy. Training: y = x·mask/(1 − ratio), dx = dy·mask/(1 − ratio).
  Dropout: (c) => {
    const b = c.b;
    const dy = c.dy(0)!;
    const tm = b.opset >= 12 ? c.x(2) : '';
    if (!tm) return [dy];
    const tmConst = b.graph.initializers.get(tm);
    if (tmConst && !toNumbers(tmConst)[0]) return [dy];
    const ratioName = b.opset >= 12 ? c.x(1) : '';
    const ratioConst = ratioName ? b.graph.initializers.get(ratioName) : undefined;
    const to = { type: 'int' as const, value: ONNX_DTYPE[c.dtype(c.x(0))] };
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
