/** Matrix products: MatMul (batched, broadcast, 1-D operands) and Gemm. */
import { broadcasting, type GradCtx, type GradRule } from '../rule.js';

/** Swap the last two axes of a rank-r tensor. */
function swapLast(c: GradCtx, x: string, r: number): string {
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return c.b.transpose(x, perm);
}

export const matmul: Record<string, GradRule> = {
  // Y = A @ B. 1-D operands are promoted (A: [1,k], B: [k,1]) and the promoted axis removed again.
  MatMul: (c) => {
    const {
      b,
      x: [A, B],
    } = c;
    const [ra, rb] = [c.rank(A), c.rank(B)];
    // ranks after promotion, and of the output
    const [pa, pb] = [ra === 1 ? 2 : ra, rb === 1 ? 2 : rb];
    const ry = Math.max(pa, pb);
    let dy = c.dy;
    let [a, bb] = [A, B];
    if (ra === 1) {
      a = b.unsqueeze(A, [0]);
      dy = b.unsqueeze(dy, [-2]);
    }
    if (rb === 1) {
      bb = b.unsqueeze(B, [1]);
      dy = b.unsqueeze(dy, [-1]);
    }
    const unpromote = (g: string, r: number) => (r === 1 ? b.reshape(g, [-1]) : g);
    // dA = dy @ Bᵀ, summed over broadcast batch axes
    const dA = () => unpromote(reduceBatch(c, b.op('MatMul', [dy, swapLast(c, bb, pb)]), ry, pa, a, A), ra);
    const dB = () => {
      if (rb === 2 && ra > 2 && c.shape(A).dims.slice(-1)[0] !== null) {
        // Common case (a weight matrix): fold batch axes into one GEMM, dB = Aᵀ @ dy over all rows.
        const k = c.shape(A).dims[ra - 1]!;
        const n = c.shape(B).dims[1]!;
        return b.op('Gemm', [b.reshape(a, [-1, k as number]), b.reshape(dy, [-1, n as number])], {
          transA: { type: 'int', value: 1 },
        });
      }
      return unpromote(reduceBatch(c, b.op('MatMul', [swapLast(c, a, pa), dy]), ry, pb, bb, B), rb);
    };
    return [dA, dB];
  },

  // Y = α · A' @ B' + β · C, with A' = transA ? Aᵀ : A, B' likewise.
  Gemm: broadcasting(
    ({ b, dy, x: [A, B], float, int }) => {
      const [alpha, beta, tA, tB] = [float('alpha', 1), float('beta', 1), int('transA', 0), int('transB', 0)];
      const I = (v: number) => ({ type: 'int' as const, value: v });
      const F = (v: number) => ({ type: 'float' as const, value: v });
      return [
        // dA' = dy @ B'ᵀ; dA = tA ? (dA')ᵀ : dA'
        () =>
          tA
            ? b.op('Gemm', [B, dy], { transA: I(tB), transB: I(1), alpha: F(alpha) })
            : b.op('Gemm', [dy, B], { transA: I(0), transB: I(tB ? 0 : 1), alpha: F(alpha) }),
        // dB' = A'ᵀ @ dy; dB = tB ? (dB')ᵀ : dB'
        () =>
          tB
            ? b.op('Gemm', [dy, A], { transA: I(1), transB: I(tA), alpha: F(alpha) })
            : b.op('Gemm', [A, dy], { transA: I(tA ? 0 : 1), transB: I(0), alpha: F(alpha) }),
        // dC = β · dy, summed back to C's shape
        () => (beta === 1 ? dy : b.mul(dy, b.f32(beta))),
      ];
    },
    [2],
  ),
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
