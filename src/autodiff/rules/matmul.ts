/** Matrix products: MatMul (batched, broadcast, 1-D operands) and Gemm. */
import { attrFloat, attrInt } from '../../graph/graph.js';
import type { GradCtx, GradRule } from '../rule.js';

/** Swap the last two axes of a rank-r tensor. */
function swapLast(c: GradCtx, x: string, r: number): string {
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return c.b.transpose(x, perm);
}

export const matmul: Record<string, GradRule> = {
  // Y = A @ B. 1-D operands are promoted (A: [1,k], B: [k,1]) and the promoted axis removed again.
  MatMul: (c) => {
    const b = c.b;
    const [A, B] = [c.x[0], c.x[1]];
    const ra = c.rank(A);
    const rb = c.rank(B);
    let dy = c.dy;
    let a = A;
    let bb = B;
    if (ra === 1) { a = b.unsqueeze(A, [0]); dy = b.unsqueeze(dy, [-2]); }
    if (rb === 1) { bb = b.unsqueeze(B, [1]); dy = b.unsqueeze(dy, [-1]); }
    const ya = Math.max(ra === 1 ? 2 : ra, rb === 1 ? 2 : rb);
    let dA: string | null = null;
    let dB: string | null = null;
    if (c.needs(0)) {
      // dA = dy @ B^T, summed over broadcast batch axes
      let g = b.op('MatMul', [dy, swapLast(c, bb, rb === 1 ? 2 : rb)]);
      g = reduceBatch(c, g, ya, ra === 1 ? 2 : ra, a, A);
      dA = ra === 1 ? b.reshape(g, [-1]) : g;
    }
    if (c.needs(1)) {
      let g: string;
      if (rb === 2 && ra > 2 && c.shape(A).dims.slice(-1)[0] !== null) {
        // Common case (a weight matrix): fold batch axes into one GEMM, dB = A^T @ dy over all rows.
        const k = c.shape(A).dims[ra - 1]!;
        const n = c.shape(B).dims[1]!;
        const a2 = b.reshape(a, [-1, k as number]);
        const dy2 = b.reshape(dy, [-1, n as number]);
        g = b.op('Gemm', [a2, dy2], { transA: { type: 'int', value: 1 } });
      } else {
        g = b.op('MatMul', [swapLast(c, a, ra === 1 ? 2 : ra), dy]);
        g = reduceBatch(c, g, ya, rb === 1 ? 2 : rb, bb, B);
      }
      dB = rb === 1 ? b.reshape(g, [-1]) : g;
    }
    return [dA, dB];
  },

  // Y = alpha * A' @ B' + beta * C, with A' = transA ? A^T : A, B' likewise.
  Gemm: (c) => {
    const b = c.b;
    const alpha = attrFloat(c.node, 'alpha', 1);
    const beta = attrFloat(c.node, 'beta', 1);
    const tA = attrInt(c.node, 'transA', 0);
    const tB = attrInt(c.node, 'transB', 0);
    const dy = c.dy;
    const I = (v: number) => ({ type: 'int' as const, value: v });
    const F = (v: number) => ({ type: 'float' as const, value: v });
    let dA: string | null = null;
    let dB: string | null = null;
    let dC: string | null = null;
    // dA' = dy @ B'^T ; dA = tA ? (dA')^T : dA'
    if (c.needs(0)) {
      dA = tA
        ? b.op('Gemm', [c.x[1], dy], { transA: I(tB), transB: I(1), alpha: F(alpha) })
        : b.op('Gemm', [dy, c.x[1]], { transA: I(0), transB: I(tB ? 0 : 1), alpha: F(alpha) });
    }
    // dB' = A'^T @ dy ; dB = tB ? (dB')^T : dB'
    if (c.needs(1)) {
      dB = tB
        ? b.op('Gemm', [dy, c.x[0]], { transA: I(1), transB: I(tA), alpha: F(alpha) })
        : b.op('Gemm', [c.x[0], dy], { transA: I(tA ? 0 : 1), transB: I(0), alpha: F(alpha) });
    }
    if (c.needs(2)) {
      const g = beta === 1 ? dy : b.mul(dy, b.f32(beta));
      dC = c.unbroadcast(g, c.x[2]);
    }
    return [dA, dB, dC];
  },
};

/** Sum a batched-matmul gradient (rank `ry`) over the batch axes the operand (rank `rx`) was broadcast along. */
function reduceBatch(c: GradCtx, g: string, ry: number, rx: number, xPromoted: string, x: string): string {
  const b = c.b;
  const lead = ry - rx;
  const xs = c.shape(x).dims;
  const axes: number[] = [];
  for (let i = 0; i < lead; i++) axes.push(i);
  // broadcast batch axes of size 1 in x
  const batchDims = rx - 2;
  const yShape = c.shape(c.y[0]).dims;
  for (let i = 0; i < batchDims; i++) {
    const xd = xs.length === rx ? xs[i] : null;
    const yd = yShape[lead + i];
    if (xd === 1 && yd !== 1) axes.push(lead + i);
  }
  if (axes.length === 0) return g;
  const r = b.reduce('ReduceSum', g, axes, true);
  return b.op('Reshape', [r, b.shapeOf(xPromoted)]);
}
