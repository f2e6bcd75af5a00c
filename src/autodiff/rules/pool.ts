/** Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (1-D/2-D/3-D). */
import { A } from '../../graph/builder.js';
import type { GradCtx, GradRule } from '../rule.js';
import { type ConvGeom, autoHeadPads, scatterConvT } from './conv.js';
import { prod, range, slice, span } from './helpers.js';

/** Pool geometry as a single-channel conv (x big, y small) plus the end pads. */
function poolGeom(c: GradCtx): ConvGeom & { pe: number[] } {
  const dims = (v: string) => {
    const d = c.shape(v).dims.slice(2);
    if (d.some((n) => n === null))
      throw new Error(`${c.node.opType} gradient needs static spatial sizes ('${v}' has ${JSON.stringify(d)})`);
    return d as number[];
  };
  const [L, l] = [dims(c.x[0]), dims(c.y[0])];
  const r = L.length;
  const k = c.ints('kernel_shape')!;
  const s = c.ints('strides') ?? Array(r).fill(1);
  const d = c.ints('dilations') ?? Array(r).fill(1);
  const pb = autoHeadPads(c, L, l, k, s, d);
  const ap = c.str('auto_pad', 'NOTSET');
  const pe =
    ap === 'NOTSET'
      ? (c.ints('pads') ?? Array(2 * r).fill(0)).slice(r)
      : ap === 'VALID'
        ? Array(r).fill(0)
        : range(r).map((i) => Math.max(0, (l[i]! - 1) * s[i]! + (k[i]! - 1) * d[i]! + 1 - L[i]!) - pb[i]!);
  return { N: null, G: 1, Cb: 1, Cs: 1, L, l, k, s, d, pb, pe };
}

/** Fold batch and channels together ([N, C, ...sp] → [N·C, 1, ...sp]) so one single-channel kernel serves all. */
const perPlane = (c: GradCtx, v: string, sp: number[]) => c.b.reshape(v, [-1, 1, ...sp]);

/** Row-major offsets of the input positions each window tap reads, −1 where the tap falls in padding: [K, ...l]. */
function tapPositions(g: ConvGeom): number[] {
  const r = g.k.length;
  const taps = prod(g.k);
  const outs = prod(g.l);
  const pos: number[] = [];
  for (let t = 0; t < taps; t++)
    for (let o = 0; o < outs; o++) {
      let [tr, or, flat] = [t, o, 0];
      let inside = true;
      for (let i = r - 1, stride = 1; i >= 0; i--) {
        const ki = tr % g.k[i]!;
        const oi = or % g.l[i]!;
        tr = Math.floor(tr / g.k[i]!);
        or = Math.floor(or / g.l[i]!);
        const p = oi * g.s[i]! + ki * g.d[i]! - g.pb[i]!;
        if (p < 0 || p >= g.L[i]!) inside = false;
        flat += p * stride;
        stride *= g.L[i]!;
      }
      pos.push(inside ? flat : -1);
    }
  return pos;
}

/** MaxPool's Indices as row-major offsets within each input plane (storage_order 1 counts columns first). */
function planeIndices(c: GradCtx, g: ConvGeom): string {
  const b = c.b;
  const idx = c.forwardOutput(1, 'indices');
  const hw = b.i64(prod(g.L));
  const local = b.sub(idx, b.mul(b.div(idx, hw), hw));
  if (!c.int('storage_order', 0)) return local;
  if (g.L.length !== 2) throw new Error('MaxPool storage_order=1 gradient is supported for 2-D pooling only');
  const [H, W] = [b.i64(g.L[0]!), b.i64(g.L[1]!)];
  const col = b.div(local, H);
  return b.add(b.mul(b.sub(local, b.mul(col, H)), W), col);
}

/**
 * Each output's gradient goes to the input its window's maximum came from (the Indices output), and
 * accumulates where windows overlap: a scatter-add (opset ≥ 16), or, before that, a one-hot mask per
 * window tap followed by a ConvTranspose with one-hot kernels. (Asking for Indices makes onnxruntime's
 * forward MaxPool slower; recomputing the argmax in the backward measured slower still, see bench/conv-grad.ts.)
 */
function maxPoolGrad(c: GradCtx): string {
  const b = c.b;
  if (b.opset < 8) throw new Error('MaxPool gradient needs opset 8 or later (for its Indices output)');
  const x = c.x[0];
  const dy = c.dy;
  if (b.opset >= 16 && !c.int('storage_order', 0)) {
    // Indices count over the whole tensor: dx.flat[idx[o]] += dy[o]
    const flat = (v: string) => b.reshape(v, [-1]);
    const z = flat(
      b.op('ConstantOfShape', [b.shapeOf(x)], {
        value: A.t({ dtype: 'float32', dims: [1], data: new Float32Array(1) }),
      }),
    );
    const sc = b.op('ScatterElements', [z, flat(c.forwardOutput(1, 'indices')), flat(dy)], {
      axis: A.i(0),
      reduction: A.s('add'),
    });
    return b.op('Reshape', [sc, b.shapeOf(x)]);
  }
  const g = poolGeom(c);
  const K = prod(g.k);
  const local = planeIndices(c, g);
  if (b.opset >= 16) {
    // dx[n·c, p] += dy[n·c, o] at p = local(o)
    const rows = (v: string, n: number) => b.reshape(v, [-1, n]);
    const z = rows(
      b.op('ConstantOfShape', [b.shapeOf(x)], {
        value: A.t({ dtype: 'float32', dims: [1], data: new Float32Array(1) }),
      }),
      prod(g.L),
    );
    const sc = b.op('ScatterElements', [z, rows(local, prod(g.l)), rows(dy, prod(g.l))], {
      axis: A.i(1),
      reduction: A.s('add'),
    });
    return b.op('Reshape', [sc, b.shapeOf(x)]);
  }
  // tap t of window o holds the max: mask[n·c, t, o]; dx = ConvTranspose(mask · dy, onehot(t))
  const taps = b.constant({ dtype: 'int64', dims: [K, ...g.l], data: BigInt64Array.from(tapPositions(g).map(BigInt)) });
  const mask = b.op('Equal', [b.unsqueeze(b.reshape(local, [-1, ...g.l]), [1]), taps]);
  const dyp = b.unsqueeze(b.reshape(dy, [-1, ...g.l]), [1]);
  const routed = b.opset >= 9 ? b.op('Where', [mask, dyp, b.f32(0)]) : b.mul(b.cast(mask), dyp);
  const onehot = new Float32Array(K * K);
  for (let t = 0; t < K; t++) onehot[t * K + t] = 1;
  const w = b.constant({ dtype: 'float32', dims: [K, 1, ...g.k], data: onehot });
  const dx = scatterConvT(b, { ...g, Cs: K }, routed, w);
  return b.op('Reshape', [dx, b.shapeOf(x)]);
}

/** Divisor of each AveragePool output: the taps inside the input (count_include_pad=0) or inside input + pads. */
function avgDivisors(g: ConvGeom & { pe: number[] }, includePad: boolean): Float32Array {
  const r = g.k.length;
  const perDim = range(r).map((i) =>
    range(g.l[i]!).map((o) => {
      const [lo, hi] = includePad ? [-g.pb[i]!, g.L[i]! + g.pe[i]!] : [0, g.L[i]!];
      return range(g.k[i]!).filter((t) => {
        const p = o * g.s[i]! + t * g.d[i]! - g.pb[i]!;
        return p >= lo && p < hi;
      }).length;
    }),
  );
  const out = new Float32Array(prod(g.l));
  for (let o = 0; o < out.length; o++) {
    let [rest, div] = [o, 1];
    for (let i = r - 1; i >= 0; i--) {
      div *= perDim[i]![rest % g.l[i]!]!;
      rest = Math.floor(rest / g.l[i]!);
    }
    out[o] = 1 / div;
  }
  return out;
}

export const pool: Record<string, GradRule> = {
  // y[o] = max of window o: dx[argmax(o)] += dy[o]
  MaxPool: (c) => [maxPoolGrad(c)],

  // y[o] = Σ_taps x / divisor(o): dx = ConvTranspose(dy / divisor, ones) per plane
  AveragePool: (c) => {
    const b = c.b;
    const g = poolGeom(c);
    const inv = b.constant({ dtype: 'float32', dims: g.l, data: avgDivisors(g, c.int('count_include_pad', 0) === 1) });
    const ones = b.constant({ dtype: 'float32', dims: [1, 1, ...g.k], data: new Float32Array(prod(g.k)).fill(1) });
    const dx = scatterConvT(b, g, perPlane(c, b.mul(c.dy, inv), g.l), ones);
    return [b.op('Reshape', [dx, b.shapeOf(c.x[0])])];
  },

  // y = mean over space: dx = dy / (ΠL) broadcast
  GlobalAveragePool: ({ b, dy, x: [x], shape }) => {
    const sp = shape(x).dims.slice(2);
    const n = sp.every((d) => d !== null)
      ? b.f32(prod(sp as number[]))
      : b.cast(b.reduce('ReduceProd', slice(b, b.shapeOf(x), [2], [Number.MAX_SAFE_INTEGER], [0]), [0], false));
    return [b.op('Expand', [b.div(dy, n), b.shapeOf(x)])];
  },

  // y = max over space: dx = dy where x equals the max, split between ties
  GlobalMaxPool: ({ b, dy, x: [x], y: [y], rank }) => {
    const mask = b.cast(b.equal(x, y));
    return [b.mul(mask, b.div(dy, b.reduce('ReduceSum', mask, span(2, rank(x)), true)))];
  },
};
