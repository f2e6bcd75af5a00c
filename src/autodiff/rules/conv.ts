/**
 * Convolutions: Conv and ConvTranspose (1-D/2-D/3-D, groups, strides, dilations, pads, auto_pad).
 *
 * Both are described by one geometry: a "big" tensor (spatial size L) and a "small" one (size l),
 * linked by small[o] = Σ_k big[o·s + k·d − pb] · W[k] with W of shape [Cs, Cb/G, K...]. Conv maps big
 * to small (x is big), ConvTranspose maps small to big (x is small). Every gradient is one of: a
 * gather (Conv), a scatter (ConvTranspose or a flipped-kernel Conv) or a weight correlation. Where
 * several formulations exist, bench/conv-grad.ts times them; the choices below follow its results.
 */
import { A, type Builder } from '../../graph/builder.js';
import type { GradCtx, GradRule } from '../rule.js';
import { pad, prod, range, slice } from './helpers.js';

export interface ConvGeom {
  /** Batch size, null when dynamic. */
  N: number | null;
  /** Groups, channels of the big and the small tensor. */
  G: number;
  Cb: number;
  Cs: number;
  /** Spatial sizes of the big and the small tensor, kernel, strides, dilations, head pads. */
  L: number[];
  l: number[];
  k: number[];
  s: number[];
  d: number[];
  pb: number[];
}

/** Dilated kernel extent along axis i. */
export const dk = (g: ConvGeom, i: number) => (g.k[i]! - 1) * g.d[i]! + 1;
/** Big positions the last window reaches past the end along axis i: (l−1)s + dk − pb − L (negative: never read). */
export const tail = (g: ConvGeom, i: number) => (g.l[i]! - 1) * g.s[i]! + dk(g, i) - g.pb[i]! - g.L[i]!;
/** The r spatial axes, numbered from `from` (2 in [N, C, ...spatial]). */
const spatialAxes = (r: number, from = 2) => range(r).map((i) => i + from);
const i64c = (b: Builder, v: number[]) =>
  b.constant({ dtype: 'int64', dims: [v.length], data: BigInt64Array.from(v.map(BigInt)) });

/** Zero-pad the trailing spatial axes of a rank-`rank` tensor by `head`/`end`. */
export function padSpatial(b: Builder, x: string, rank: number, head: number[], end: number[]): string {
  const z = Array(rank - head.length).fill(0);
  return pad(b, x, [...z, ...head, ...z, ...end]);
}

/** Keep the first `sizes` elements of the trailing spatial axes where the tensor (of `have` sizes) is larger. */
export function cropTo(b: Builder, x: string, rank: number, have: number[], sizes: number[]): string {
  const axes = range(sizes.length).filter((i) => have[i]! > sizes[i]!);
  if (axes.length === 0) return x;
  const r0 = rank - sizes.length;
  return slice(
    b,
    x,
    axes.map(() => 0),
    axes.map((i) => sizes[i]!),
    axes.map((i) => r0 + i),
  );
}

const convAttrs = (g: ConvGeom, strides: number[], dil: number[], pads: number[]) => ({
  group: A.i(g.G),
  strides: A.is(strides),
  dilations: A.is(dil),
  pads: A.is(pads),
});

/* ---------------------------------------------- primitives ---------------------------------------------- */

/** small = Conv(big, W): the forward of Conv, the input gradient of ConvTranspose. */
export function gatherConv(b: Builder, g: ConvGeom, big: string, w: string): string {
  const r = g.k.length;
  const pe = range(r).map((i) => Math.max(0, tail(g, i)));
  const y = b.op('Conv', [big, w], convAttrs(g, g.s, g.d, [...g.pb, ...pe]));
  const have = range(r).map((i) => Math.floor((g.L[i]! + g.pb[i]! + pe[i]! - dk(g, i)) / g.s[i]!) + 1);
  return cropTo(b, y, r + 2, have, g.l);
}

/** big = ConvTranspose(small, W), sized exactly L: the input gradient of Conv, the forward of ConvTranspose. */
export function scatterConvT(b: Builder, g: ConvGeom, small: string, w: string): string {
  const r = g.k.length;
  const t = range(r).map((i) => tail(g, i));
  // tail ≥ 0: cut it off with the end pad; tail < 0: the last −tail positions get nothing, added as
  // output_padding (kept below the stride) or as zero padding.
  const pe = t.map((v) => Math.max(0, v));
  const op = t.map((v, i) => (v < 0 && -v < Math.max(g.s[i]!, g.d[i]!) ? -v : 0));
  const extra = t.map((v, i) => (v < 0 ? -v - op[i]! : 0));
  const y = b.op('ConvTranspose', [small, w], {
    ...convAttrs(g, g.s, g.d, [...g.pb, ...pe]),
    output_padding: A.is(op),
  });
  return extra.some((v) => v > 0)
    ? padSpatial(
        b,
        y,
        r + 2,
        extra.map(() => 0),
        extra,
      )
    : y;
}

/** W [G·cs, cb, K] → [G·cb, cs, K] reversed in space: the kernel of the adjoint as a plain Conv. */
export function flippedWeight(b: Builder, g: ConvGeom, w: string): string {
  const r = g.k.length;
  const [cs, cb] = [g.Cs / g.G, g.Cb / g.G];
  let t = w;
  if (g.G === 1 && cs > 1 && cb > 1) t = b.transpose(w, [1, 0, ...spatialAxes(r)]);
  else if (cs > 1 && cb > 1)
    t = b.reshape(b.transpose(b.reshape(w, [g.G, cs, cb, ...g.k]), [0, 2, 1, ...spatialAxes(r, 3)]), [
      g.Cb,
      cs,
      ...g.k,
    ]);
  else if (cs !== cb) t = b.reshape(w, [g.Cb, cs, ...g.k]);
  for (let i = 0; i < r; i++)
    if (g.k[i]! > 1) t = b.op('Gather', [t, i64c(b, range(g.k[i]!).reverse())], { axis: A.i(i + 2) });
  return t;
}

/** Stride-1 big = ConvTranspose(small, W) as a Conv of small with the flipped kernel, head-padded by dk−1−pb. */
export function flipConv(b: Builder, g: ConvGeom, small: string, w: string): string {
  const r = g.k.length;
  const head = range(r).map((i) => dk(g, i) - 1 - g.pb[i]!);
  const end = range(r).map((i) => g.L[i]! - g.l[i]! + g.pb[i]!);
  const y = b.op('Conv', [small, flippedWeight(b, g, w)], {
    group: A.i(g.G),
    dilations: A.is(g.d),
    pads: A.is([...head, ...end.map((v) => Math.max(0, v))]),
  });
  return cropTo(
    b,
    y,
    r + 2,
    range(r).map((i) => g.L[i]! - Math.min(0, end[i]!)),
    g.L,
  );
}

/**
 * dW[g·cs+m, c, k] = Σ_{n,o} small[n, g·cs+m, o] · big[n, g·cb+c, o·s + k·d − pb]: a Conv whose batch is
 * the big tensor's channels within a group and whose weight is the small tensor, with the roles of
 * stride and dilation swapped. Returns W's layout [Cs, Cb/G, K...].
 */
export function weightCorr(b: Builder, g: ConvGeom, big: string, small: string): string {
  const r = g.k.length;
  const sp = spatialAxes(r, 3);
  const swap01 = (v: string) => b.transpose(v, [1, 0, ...spatialAxes(r)]);
  const [cb, cs] = [g.Cb / g.G, g.Cs / g.G];
  // big [N, G·cb, L] → [cb, G·N, L];  small [N, G·cs, l] → [G·cs, N, l]
  const bigT =
    g.G === 1
      ? swap01(big)
      : cb === 1
        ? b.reshape(swap01(big), [1, -1, ...g.L])
        : b.reshape(b.transpose(b.reshape(big, [0, g.G, cb, ...g.L]), [2, 1, 0, ...sp]), [cb, -1, ...g.L]);
  const smallT =
    g.G === 1 || cs === 1
      ? swap01(small)
      : b.reshape(b.transpose(b.reshape(small, [0, g.G, cs, ...g.l]), [1, 2, 0, ...sp]), [g.Cs, -1, ...g.l]);
  const pe = range(r).map((i) => Math.max(0, tail(g, i)));
  const z = b.op('Conv', [bigT, smallT], convAttrs(g, g.d, g.s, [...g.pb, ...pe]));
  const have = range(r).map((i) => g.k[i]! + Math.floor((pe[i]! - tail(g, i)) / g.d[i]!));
  const zc = cropTo(b, z, r + 2, have, g.k);
  // [cb, G·cs, K] → [G·cs, cb, K]
  return cb === 1 ? b.reshape(zc, [g.Cs, 1, ...g.k]) : swap01(zc);
}

/** Depthwise dW (cb = 1, static batch N): the correlation with one group per (image, channel) plane, summed over images. */
export function planeCorr(b: Builder, g: ConvGeom, N: number, big: string, small: string): string {
  const r = g.k.length;
  const pe = range(r).map((i) => Math.max(0, tail(g, i)));
  const z = b.op('Conv', [b.reshape(big, [1, -1, ...g.L]), b.reshape(small, [-1, 1, ...g.l])], {
    group: A.i(N * g.G),
    strides: A.is(g.d),
    dilations: A.is(g.s),
    pads: A.is([...g.pb, ...pe]),
  });
  const have = range(r).map((i) => g.k[i]! + Math.floor((pe[i]! - tail(g, i)) / g.d[i]!));
  const zc = cropTo(b, z, r + 2, have, g.k);
  return b.reshape(b.reduce('ReduceSum', b.reshape(zc, [N, g.Cs, ...g.k]), [0], false), [g.Cs, 1, ...g.k]);
}

/** Row-major offsets into the padded big plane (sizes Lp) of tap t of output position o, as [P·K]. */
function im2colIndex(g: ConvGeom, Lp: number[]): number[] {
  const r = g.k.length;
  const idx: number[] = [];
  for (let o = 0; o < prod(g.l); o++)
    for (let t = 0; t < prod(g.k); t++) {
      let [or, tr, flat] = [o, t, 0];
      for (let i = r - 1, stride = 1; i >= 0; i--) {
        flat += ((or % g.l[i]!) * g.s[i]! + (tr % g.k[i]!) * g.d[i]!) * stride;
        or = Math.floor(or / g.l[i]!);
        tr = Math.floor(tr / g.k[i]!);
        stride *= Lp[i]!;
      }
      idx.push(flat);
    }
  return idx;
}

/**
 * dW by an explicit im2col (G = 1): x channels-last and zero-padded, one Gather of the K taps of every
 * output position ([N, P, K·C]), then dW = Σ_n dy[n] (M×P) @ cols[n] (P×K·C).
 */
export function im2colWeightGrad(b: Builder, g: ConvGeom, big: string, small: string): string {
  const r = g.k.length;
  const [P, K] = [prod(g.l), prod(g.k)];
  const pe = range(r).map((i) => Math.max(0, tail(g, i)));
  const Lp = g.L.map((v, i) => v + g.pb[i]! + pe[i]!);
  const nhwc = pad(b, b.transpose(big, [0, ...spatialAxes(r), 1]), [0, ...g.pb, 0, 0, ...pe, 0]);
  const cols = b.op('Gather', [b.reshape(nhwc, [0, -1, g.Cb]), i64c(b, im2colIndex(g, Lp))], { axis: A.i(1) });
  // One GEMM with the batch folded into the inner dimension: dy as [Cs, N·P] @ cols as [N·P, K·C]
  // (measured faster than a batched MatMul followed by a ReduceSum over N, see bench/README.md).
  const dyT = b.reshape(b.transpose(b.reshape(small, [0, g.Cs, P]), [1, 0, 2]), [g.Cs, -1]);
  const dw = b.op('MatMul', [dyT, b.reshape(cols, [-1, K * g.Cb])]);
  return b.transpose(b.reshape(dw, [g.Cs, ...g.k, g.Cb]), [0, r + 1, ...spatialAxes(r, 1)]);
}

/** 1×1 stride-1 unpadded Conv: dW = Σ_n dy[n] @ x[n]ᵀ, transposing whichever of x, dy has fewer channels. */
export function pointwiseWeightGrad(b: Builder, g: ConvGeom, big: string, small: string): string {
  const P = prod(g.l);
  const [xr, dyr] = [b.reshape(big, [0, g.Cb, P]), b.reshape(small, [0, g.Cs, P])];
  const ones = g.k.map(() => 1);
  const sumN = (v: string) => b.reduce('ReduceSum', v, [0], false);
  if (P <= 784) {
    // small planes: one GEMM over [C, N·P] views beats N small products and a reduction
    const flat = (v: string, ch: number) => b.reshape(b.transpose(b.reshape(v, [0, ch, P]), [1, 0, 2]), [ch, -1]);
    return b.reshape(b.op('Gemm', [flat(small, g.Cs), flat(big, g.Cb)], { transB: A.i(1) }), [g.Cs, g.Cb, ...ones]);
  }
  if (g.Cs <= g.Cb)
    return b.reshape(b.transpose(sumN(b.op('MatMul', [xr, b.transpose(dyr, [0, 2, 1])])), [1, 0]), [
      g.Cs,
      g.Cb,
      ...ones,
    ]);
  return b.reshape(sumN(b.op('MatMul', [dyr, b.transpose(xr, [0, 2, 1])])), [g.Cs, g.Cb, ...ones]);
}

/* ------------------------------------- choices (see bench/conv-grad.ts) ------------------------------------- */

/** dx of a Conv: a flipped-kernel Conv for stride 1 (faster than ConvTranspose), ConvTranspose otherwise. */
export function convInputGrad(b: Builder, g: ConvGeom, dy: string, w: string): string {
  const stride1 = g.s.every((v) => v === 1) && range(g.k.length).every((i) => g.pb[i]! <= dk(g, i) - 1);
  return stride1 ? flipConv(b, g, dy, w) : scatterConvT(b, g, dy, w);
}

/**
 * dW of a Conv (or of a ConvTranspose, dy being the big tensor): a MatMul for 1×1, Gather-im2col + MatMul
 * for ungrouped convs with enough channels to fill a GEMM (and a bounded im2col), one group per plane for
 * depthwise with a known batch, the grouped correlation otherwise (few channels, groups, dynamic batch).
 */
export function convWeightGrad(b: Builder, g: ConvGeom, big: string, small: string): string {
  const r = g.k.length;
  if (g.G === 1) {
    const plain = range(r).every((i) => g.k[i] === 1 && g.s[i] === 1 && g.pb[i] === 0 && g.L[i] === g.l[i]);
    if (plain) return pointwiseWeightGrad(b, g, big, small);
    const colsPerImage = prod(g.l) * prod(g.k) * g.Cb;
    if (g.Cb >= 16 && colsPerImage <= 1 << 22 && prod(g.l) * prod(g.k) <= 1 << 20)
      return im2colWeightGrad(b, g, big, small);
  } else if (g.Cb === g.G && g.N !== null) return planeCorr(b, g, g.N, big, small);
  return weightCorr(b, g, big, small);
}

/* ----------------------------------------------- geometry ----------------------------------------------- */

/** Spatial dims of a value, which must be static. */
function spatial(c: GradCtx, v: string): number[] {
  const dims = c.shape(v).dims.slice(2);
  if (dims.some((d) => d === null))
    throw new Error(`${c.node.opType} gradient needs static spatial sizes ('${v}' has ${JSON.stringify(dims)})`);
  return dims as number[];
}

/** Head pads of a Conv or pool: explicit, or auto_pad SAME split with the odd one at the end (SAME_UPPER) or front. */
export function autoHeadPads(c: GradCtx, L: number[], l: number[], k: number[], s: number[], d: number[]): number[] {
  const ap = c.str('auto_pad', 'NOTSET');
  const r = k.length;
  if (ap === 'VALID') return Array(r).fill(0);
  if (ap === 'SAME_UPPER' || ap === 'SAME_LOWER')
    return range(r).map((i) => {
      const total = Math.max(0, (l[i]! - 1) * s[i]! + (k[i]! - 1) * d[i]! + 1 - L[i]!);
      return ap === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
    });
  return (c.ints('pads') ?? Array(2 * r).fill(0)).slice(0, r);
}

/** The geometry of a Conv (x big, y small) or ConvTranspose (x small, y big) node. */
export function convGeom(c: GradCtx): ConvGeom {
  const transposed = c.node.opType === 'ConvTranspose';
  const {
    x: [x, w],
    y: [y],
  } = c;
  const wd = c.shape(w).dims as number[];
  const r = wd.length - 2;
  const k = c.ints('kernel_shape') ?? wd.slice(2);
  const s = c.ints('strides') ?? Array(r).fill(1);
  const d = c.ints('dilations') ?? Array(r).fill(1);
  const G = c.int('group', 1);
  const [L, l] = transposed ? [spatial(c, y), spatial(c, x)] : [spatial(c, x), spatial(c, y)];
  const ap = c.str('auto_pad', 'NOTSET');
  let pb: number[];
  if (!transposed) pb = autoHeadPads(c, L, l, k, s, d);
  else if (c.ints('output_shape') || ap === 'SAME_UPPER' || ap === 'SAME_LOWER') {
    // onnxruntime: total = s(l−1) + output_padding + dk − L; the head gets the smaller half for SAME_UPPER
    const op = c.ints('output_padding') ?? Array(r).fill(0);
    pb = range(r).map((i) => {
      const total = s[i]! * (l[i]! - 1) + op[i]! + (k[i]! - 1) * d[i]! + 1 - L[i]!;
      return ap === 'SAME_UPPER' ? Math.floor(total / 2) : total - Math.floor(total / 2);
    });
  } else pb = ap === 'VALID' ? Array(r).fill(0) : (c.ints('pads') ?? Array(2 * r).fill(0)).slice(0, r);
  return { N: c.shape(x).dims[0] ?? null, G, Cb: wd[1]! * G, Cs: wd[0]!, L, l, k, s, d, pb };
}

/** Bias gradient: dy summed over batch and spatial axes. */
const biasGrad = ({ b, dy, y: [y], rank }: GradCtx) =>
  b.reduce('ReduceSum', dy, [0, ...spatialAxes(rank(y) - 2)], false);

export const conv: Record<string, GradRule> = {
  // y = conv(x, W) + B: dx = convT(dy, W), dW = corr(x, dy), dB = Σ dy
  Conv: (c) => {
    const {
      b,
      dy,
      x: [x, w],
    } = c;
    const g = convGeom(c);
    return [() => convInputGrad(b, g, dy, w), () => convWeightGrad(b, g, x, dy), () => biasGrad(c)];
  },

  // y = convT(x, W) + B: dx = conv(dy, W), dW = corr(dy, x) (dy is the big tensor), dB = Σ dy
  ConvTranspose: (c) => {
    const {
      b,
      dy,
      x: [x, w],
    } = c;
    const g = convGeom(c);
    return [() => gatherConv(b, g, dy, w), () => convWeightGrad(b, g, dy, x), () => biasGrad(c)];
  },
};
