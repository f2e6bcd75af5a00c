/**
 * Data movement: Identity Cast CastLike Flatten Reshape Squeeze Unsqueeze Transpose Expand Concat Split
 * Slice Gather GatherElements Pad Where Tile DepthToSpace SpaceToDepth. Every gradient puts dy back
 * where the forward op took its elements from (adding where one element was used several times).
 */
import { A } from '../../graph/builder.js';
import type { Attr } from '../../graph/graph.js';
import { ONNX_DTYPE, isFloat, type DType } from '../../graph/tensor.js';
import { broadcasting, type GradCtx, type GradRule } from '../rule.js';
import {
  constOf,
  dyOrZeros,
  needConst,
  normAxis,
  pad,
  range as iota,
  slice,
  zero,
  zerosLike,
  type Ints,
} from './helpers.js';

/** "To the end" for Slice ends. */
const END = Number.MAX_SAFE_INTEGER;

/** Ints from input i when it is given (newer opsets), else from attribute `attr`. */
function intsArg(c: GradCtx, i: number, attr: string): number[] | undefined {
  return c.x[i] ? needConst(c, i, attr) : c.ints(attr);
}

const to = (d: DType) => A.i(ONNX_DTYPE[d]);

/** Size of axis a of x as an int64 [1] tensor (a constant when fixed). */
function dimVec(c: GradCtx, x: string, a: number): string {
  const d = c.shape(x).dims[a];
  return d != null ? c.b.i64([d]) : c.b.op('Gather', [c.b.shapeOf(x), c.b.i64([a])], { axis: A.i(0) });
}

/** Size of axis a of x as a number when fixed, else an int64 [1] tensor. */
function dimOr(c: GradCtx, x: string, a: number): number | string {
  return c.shape(x).dims[a] ?? dimVec(c, x, a);
}

/** Product of x's dims [from, to) as a number, or an int64 [1] tensor when one is dynamic. */
function dimProd(c: GradCtx, x: string, from: number, to: number): number | string {
  const dims = c.shape(x).dims.slice(from, to);
  if (dims.every((d) => d != null)) return (dims as number[]).reduce((p, d) => p * d, 1);
  const part = slice(c.b, c.b.shapeOf(x), [from], [to], [0]);
  return c.b.reduce('ReduceProd', part, [0], true);
}

/** An int64 1-D tensor from pieces that are numbers or int64 [1] tensors. */
function vec(c: GradCtx, parts: (number | string)[]): Ints {
  if (parts.every((p) => typeof p === 'number')) return parts as number[];
  return c.b.op(
    'Concat',
    parts.map((p) => (typeof p === 'number' ? c.b.i64([p]) : p)),
    { axis: A.i(0) },
  );
}

/** g reshaped to x's shape (a constant target when all of x's dims are fixed). */
function reshapeLike(c: GradCtx, g: string, x: string): string {
  const dims = c.shape(x).dims;
  if (dims.every((d) => d != null && d > 0)) return c.b.reshape(g, dims as number[]);
  // a 0 in the shape means "copy that dim" unless allowzero (opset 14): x may really have a size-0 dim
  return c.b.op('Reshape', [g, c.b.shapeOf(x)], c.b.opset >= 14 && dims.includes(0) ? { allowzero: A.i(1) } : {});
}

/** Zero-pad x along one axis of a rank-r tensor. */
function padAxis(c: GradCtx, x: string, r: number, a: number, begin: number, end: number): string {
  const p = Array<number>(2 * r).fill(0);
  p[a] = begin;
  p[a + r] = end;
  return pad(c.b, x, p);
}

/** The indices Slice takes along an axis of size D (ONNX clamping rules). */
function sliceIndices(start: number, end: number, step: number, D: number): number[] {
  if (step === 0) throw new Error('Slice step 0');
  let s = start < 0 ? start + D : start;
  let e = end < 0 ? end + D : end;
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  if (step > 0) [s, e] = [clamp(s, 0, D), clamp(e, 0, D)];
  else [s, e] = [clamp(s, 0, D - 1), clamp(e, -1, D - 1)];
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}

/** A Slice bound clamped to [0, D] for a dynamic D (an int64 [1] tensor). */
function boundDyn(c: GradCtx, v: number, D: string): string {
  const b = c.b;
  if (v >= END / 2) return D;
  const clamp = b.opset >= 12;
  if (v >= 0) return clamp ? b.op('Min', [b.i64([v]), D]) : b.i64([v]);
  const s = b.add(D, b.i64([v]));
  return clamp ? b.op('Max', [s, b.i64([0])]) : s;
}

/**
 * Slice gradient when starts/ends are computed at run time (e.g. torch's chunk() of a packed
 * attention projection: Shape → Gather → Div → Mul): dy padded back with pads computed in the graph,
 * pads = [clamp(start), D − clamp(end)] per sliced axis. Needs constant axes and steps of 1.
 */
function sliceGradRuntimeBounds(c: GradCtx): string {
  const b = c.b;
  const x = c.x[0];
  const r = c.rank(x);
  const n = c.shape(c.x[1]).dims[0];
  if (n == null) throw new Error(`Slice '${c.node.name}': the number of sliced axes must be fixed`);
  const axes = (intsArg(c, 3, 'axes') ?? iota(n)).map((a) => normAxis(a, r));
  const steps = intsArg(c, 4, 'steps') ?? axes.map(() => 1);
  if (steps.some((st) => st !== 1))
    throw new Error(
      `Slice '${c.node.name}' with run-time bounds and step ${steps.join(',')}: only step 1 has a gradient`,
    );
  const i64 = (v: string) => (c.dtype(v) === 'int64' ? v : b.op('Cast', [v], { to: to('int64') }));
  const [starts, ends] = [i64(c.x[1]), i64(c.x[2])];
  const zero = b.i64([0]);
  const clamped = (bounds: string, k: number, D: string) => {
    const v = b.op('Gather', [bounds, b.i64([k])], { axis: A.i(0) });
    const wrapped = b.op('Where', [b.op('Less', [v, zero]), b.add(v, D), v]);
    return b.op('Min', [b.op('Max', [wrapped, zero]), D]);
  };
  const pads: (number | string)[] = Array<number>(2 * r).fill(0);
  axes.forEach((a, k) => {
    const D = dimVec(c, x, a);
    pads[a] = clamped(starts, k, D);
    pads[a + r] = b.sub(D, clamped(ends, k, D));
  });
  return pad(c.b, c.dy, vec(c, pads));
}

/** Cast a float gradient back to the (float) input's type; non-float inputs get none. */
function castBack({ b, dy, x: [x], y: [y], dtype }: GradCtx): string | null {
  if (!isFloat(dtype(x))) return null;
  return dtype(x) === dtype(y) ? dy : b.op('Cast', [dy], { to: to(dtype(x)) });
}

/** dx = dy reshaped back to x's shape. */
const reshapeBack: GradRule = (c) => [reshapeLike(c, c.dy, c.x[0])];

/** Scatter-add dy into zeros of data's shape at `indices` along `axis` (GatherElements' layout). */
function scatterAdd(c: GradCtx, data: string, indices: string, dy: string, axis: number): string {
  return c.b.op('ScatterElements', [zerosLike(c, data), indices, dy], { axis: A.i(axis), reduction: A.s('add') });
}

/** A float one-hot of integer `indices` with `depth` classes, the class axis at `axis`. */
function oneHot(c: GradCtx, indices: string, depth: string, axis: number): string {
  return c.b.op('OneHot', [indices, depth, c.b.f32([0, 1])], { axis: A.i(axis) });
}

export const shape: Record<string, GradRule> = {
  Identity: ({ dy }) => [dy],

  // y = cast(x): dx = cast(dy) back to x's float type
  Cast: (c) => [() => castBack(c)],
  CastLike: (c) => [() => castBack(c), null],

  // Pure re-views: dx = reshape(dy, shape(x))
  Flatten: reshapeBack,
  Reshape: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,

  // y = transpose(x, p): dx = transpose(dy, p⁻¹)
  Transpose: ({ b, dy, x: [x], rank, ints }) => {
    const perm = ints('perm') ?? iota(rank(x)).reverse();
    const inv = Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [b.transpose(dy, inv)];
  },

  // y = broadcast(x): dx = Σ dy over the broadcast axes
  Expand: broadcasting(({ dy }) => [dy, null], [0]),

  // y = concat(x₀, x₁, …): dxᵢ = dy[offsetᵢ : offsetᵢ + sizeᵢ] along the axis
  Concat: (c) => {
    const {
      b,
      dy,
      node,
      y: [y],
    } = c;
    const n = node.inputs.length;
    const axis = normAxis(c.int('axis', 0), c.rank(y));
    const vecOf = (v: number | string): Ints => (typeof v === 'number' ? [v] : v);
    // offsets along the axis: numbers while the sizes are fixed, int64 [1] tensors after a dynamic one
    const offsets: (number | string)[] = [0];
    for (const x of node.inputs.slice(0, -1)) {
      const off = offsets[offsets.length - 1]!;
      const size = c.shape(x).dims[axis];
      offsets.push(
        typeof off === 'number' && size != null
          ? off + size
          : b.add(typeof off === 'number' ? b.i64([off]) : off, dimVec(c, x, axis)),
      );
    }
    return node.inputs.map(
      (_, i) => () => slice(b, dy, vecOf(offsets[i]!), i === n - 1 ? [END] : vecOf(offsets[i + 1]!), [axis]),
    );
  },

  // (y₀, y₁, …) = split(x): dx = concat(dy₀, dy₁, …), zeros for outputs without gradient
  Split: (c) => {
    const axis = normAxis(c.int('axis', 0), c.rank(c.x[0]));
    return [
      c.b.op(
        'Concat',
        c.node.outputs.map((_, i) => dyOrZeros(c, i)),
        { axis: A.i(axis) },
      ),
      null,
    ];
  },

  // y = x[starts:ends:steps]: dx = zeros with dy written back at the sliced positions
  // (Pad for step 1; a Gather of [dy, 0] at the inverse positions for other steps).
  Slice: (c) => {
    const b = c.b;
    const x = c.x[0];
    const r = c.rank(x);
    const dims = c.shape(x).dims;
    const old = b.opset < 10;
    if (!old && (!constOf(c, c.x[1]) || !constOf(c, c.x[2]))) return [sliceGradRuntimeBounds(c)];
    const starts = (old ? c.ints('starts') : needConst(c, 1, 'starts')) ?? [];
    const ends = (old ? c.ints('ends') : needConst(c, 2, 'ends')) ?? [];
    const axes = ((old ? c.ints('axes') : intsArg(c, 3, 'axes')) ?? iota(starts.length)).map((a) => normAxis(a, r));
    const steps = (old ? undefined : intsArg(c, 4, 'steps')) ?? axes.map(() => 1);
    let g = c.dy;
    const pads: (number | string)[] = Array<number>(2 * r).fill(0);
    for (let k = 0; k < axes.length; k++) {
      const [a, s, e, st] = [axes[k]!, starts[k]!, ends[k]!, steps[k]!];
      const D = dims[a];
      if (D == null) {
        if (st !== 1)
          throw new Error(`Slice with step ${st} along dynamic axis ${a}: no gradient (needs a fixed size)`);
        const Dv = dimVec(c, x, a);
        const lo = boundDyn(c, s, Dv);
        pads[a] = lo;
        pads[a + r] = b.sub(Dv, boundDyn(c, e, Dv));
        continue;
      }
      const idx = sliceIndices(s, e, st, D);
      if (idx.length === 0) return [zerosLike(c, x)];
      if (st === 1) {
        pads[a] = idx[0]!;
        pads[a + r] = D - idx[idx.length - 1]! - 1;
      } else {
        // position p of x takes dy[k] where idx[k] = p, else the appended zero at index n
        const inv = Array<number>(D).fill(idx.length);
        idx.forEach((p, j) => (inv[p] = j));
        g = b.op('Gather', [padAxis(c, g, r, a, 0, 1), b.i64(inv)], { axis: A.i(a) });
      }
    }
    if (pads.some((p) => p !== 0)) g = pad(c.b, g, vec(c, pads));
    return [g];
  },

  // y = take(x, idx, axis): dx = zeros with dy added at the gathered positions (repeats accumulate)
  Gather: (c) => {
    const b = c.b;
    const [x, idx] = [c.x[0], c.x[1]];
    const dy = c.dy;
    const r = c.rank(x);
    const axis = normAxis(c.int('axis', 0), r);
    if (b.opset >= 16) {
      // dy: pre + idx.shape + post → pre + [n] + post; idx → [1…, n, 1…] expanded to it
      const dims = iota(r).map((a) => (a === axis ? -1 : dimOr(c, x, a)));
      const dyR = b.reshape(dy, vec(c, dims));
      const idxR = b.reshape(idx, [...Array<number>(axis).fill(1), -1, ...Array<number>(r - axis - 1).fill(1)]);
      return [scatterAdd(c, x, b.op('Expand', [idxR, b.shapeOf(dyR)]), dyR, axis), null];
    }
    // Before opset 16 (no scatter-add): dx[P, D, S] = onehot(idx)ᵀ @ dy[P, n, S]
    const oh = oneHot(c, b.reshape(idx, [-1]), dimVec(c, x, axis), -1);
    const dyR = b.reshape(dy, vec(c, [dimProd(c, x, 0, axis), -1, dimProd(c, x, axis + 1, r)]));
    return [reshapeLike(c, b.op('MatMul', [b.transpose(oh, [1, 0]), dyR]), x), null];
  },

  // y[…, k, …] = x[…, idx[…, k, …], …]: dx = scatter-add of dy at idx along the axis
  GatherElements: (c) => {
    const b = c.b;
    const [x, idx] = [c.x[0], c.x[1]];
    const dy = c.dy;
    const r = c.rank(x);
    const axis = normAxis(c.int('axis', 0), r);
    if (b.opset >= 16) return [scatterAdd(c, x, idx, dy, axis), null];
    // Before opset 16: dx = Σ_k onehot(idx)[…, k, p, …]·dy[…, k, …] (one-hot axis after the gather axis)
    const oh = oneHot(c, idx, dimVec(c, x, axis), axis + 1);
    let g = b.reduce('ReduceSum', b.mul(oh, b.unsqueeze(dy, [axis + 1])), [axis], false);
    // indices may be shorter than x on the other axes
    const [xd, id] = [c.shape(x).dims, c.shape(idx).dims];
    const ends = xd.map((d, a) => (a !== axis && d != null && id[a] != null ? d - id[a]! : 0));
    if (ends.some((e) => e > 0)) g = pad(c.b, g, [...Array<number>(r).fill(0), ...ends]);
    return [g, null];
  },

  // constant: dx = dy with the padding sliced off (cropped parts come back as zeros);
  // edge/reflect: the padding's gradient is added onto the border elements it copied.
  Pad: (c) => {
    const b = c.b;
    const x = c.x[0];
    const r = c.rank(x);
    const mode = c.str('mode', 'constant');
    let pads = (b.opset >= 11 ? needConst(c, 1, 'pads') : (c.ints('pads') ?? c.ints('paddings'))) ?? [];
    if (b.opset >= 18 && c.x[3]) {
      const axes = needConst(c, 3, 'axes').map((a) => normAxis(a, r));
      const full = Array<number>(2 * r).fill(0);
      axes.forEach((a, k) => ([full[a], full[a + r]] = [pads[k]!, pads[k + axes.length]!]));
      pads = full;
    }
    const dy = c.dy;
    if (mode === 'constant') {
      const neg = pads.map((p) => Math.max(0, -p));
      const g = neg.some((p) => p) ? pad(c.b, dy, neg) : dy;
      const pos = pads.map((p) => Math.max(0, p));
      const ax = iota(r).filter((a) => pos[a] || pos[a + r]);
      const dx = ax.length
        ? slice(
            c.b,
            g,
            ax.map((a) => pos[a]!),
            ax.map((a) => (pos[a + r] ? -pos[a + r]! : END)),
            ax,
          )
        : g;
      // the pad value's gradient: everything that did not come from x
      const dv = () =>
        b.reshape(
          b.sub(b.reduce('ReduceSum', dy, iota(r), false), b.reduce('ReduceSum', dx, iota(r), false)),
          c.shape(c.x[2]).dims.map(() => 1),
        );
      return [dx, null, dv, null];
    }
    if (mode !== 'edge' && mode !== 'reflect')
      throw new Error(`Pad mode '${mode}' has no gradient rule (constant, edge and reflect do)`);
    let g = dy;
    for (let a = 0; a < r; a++) {
      const [pb, pe, D] = [pads[a]!, pads[a + r]!, c.shape(x).dims[a]];
      if (!pb && !pe) continue;
      if (pb < 0 || pe < 0 || D == null)
        throw new Error(`Pad mode '${mode}' gradient needs non-negative pads and a fixed size on axis ${a}`);
      const terms = [slice(c.b, g, [pb], [pb + D], [a])];
      if (mode === 'edge') {
        // y[0..pb) copy x[0], y[pb+D..) copy x[D-1]
        if (pb) terms.push(padAxis(c, b.reduce('ReduceSum', slice(c.b, g, [0], [pb], [a]), [a], true), r, a, 0, D - 1));
        if (pe)
          terms.push(padAxis(c, b.reduce('ReduceSum', slice(c.b, g, [pb + D], [END], [a]), [a], true), r, a, D - 1, 0));
      } else {
        // y[pb-k] = x[k] and y[pb+D-1+k] = x[D-1-k] for k ≥ 1: reversed borders land on x[1..pb] and x[D-1-pe..D-2]
        if (pb) terms.push(padAxis(c, slice(c.b, g, [pb - 1], [-END], [a], [-1]), r, a, 1, D - 1 - pb));
        if (pe) terms.push(padAxis(c, slice(c.b, g, [pb + D + pe - 1], [pb + D - 1], [a], [-1]), r, a, D - 1 - pe, 1));
      }
      g = b.sum(terms);
    }
    return [g, null, null, null];
  },

  // y = cond ? a : b: da = dy where cond, db = dy elsewhere (each summed back to its shape)
  Where: broadcasting(
    (c) => {
      const {
        b,
        dy,
        x: [cond],
        y: [y],
      } = c;
      const z = zero(c, c.dtype(y));
      return [null, () => b.where(cond, dy, z), () => b.where(cond, z, dy)];
    },
    [1, 2],
  ),

  // y = tile(x, reps): dx = Σ over the copies, dy viewed as [r₀, d₀, r₁, d₁, …] summed on the r axes
  Tile: (c) => {
    const x = c.x[0];
    const r = c.rank(x);
    const reps = needConst(c, 1, 'repeats');
    const parts = iota(r).flatMap((a) => [reps[a]!, dimOr(c, x, a)]);
    const g = c.b.reshape(c.dy, vec(c, parts));
    return [
      c.b.reduce(
        'ReduceSum',
        g,
        iota(r).map((a) => 2 * a),
        false,
      ),
      null,
    ];
  },

  // DCR mode is undone by SpaceToDepth; CRD by the inverse reshape/transpose
  DepthToSpace: (c) => {
    const b = c.b;
    const bs = c.int('blocksize', 1);
    const dy = c.dy;
    if (c.str('mode', 'DCR') !== 'CRD') return [b.op('SpaceToDepth', [dy], { blocksize: A.i(bs) })];
    const [, C, H, W] = c.shape(c.x[0]).dims;
    if (C == null || (H == null && W == null))
      throw new Error('DepthToSpace (CRD) gradient needs fixed channels and one fixed spatial size');
    const t = b.reshape(dy, [0, C / (bs * bs), H ?? -1, bs, W ?? -1, bs]);
    return [reshapeLike(c, b.transpose(t, [0, 1, 3, 5, 2, 4]), c.x[0])];
  },

  // SpaceToDepth is undone by DepthToSpace in DCR mode
  SpaceToDepth: (c) => {
    const mode: Record<string, Attr> = c.b.opset >= 11 ? { mode: A.s('DCR') } : {};
    return [c.b.op('DepthToSpace', [c.dy], { blocksize: A.i(c.int('blocksize', 1)), ...mode })];
  },
};
