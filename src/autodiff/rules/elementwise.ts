/** Arithmetic and pointwise math: Add Sub Mul Div Neg Pow Sqrt Exp Log Abs Reciprocal Sum Mean Max Min. */
import { broadcasting, type GradCtx, type GradRule } from '../rule.js';

export const elementwise: Record<string, GradRule> = {
  Add: broadcasting(({ dy }) => [dy, dy]),

  Sub: broadcasting(({ b, dy }) => [dy, () => b.neg(dy)]),

  Mul: broadcasting(({ b, dy, x: [u, v] }) => [() => b.mul(dy, v), () => b.mul(dy, u)]),

  // y = u / v: du = dy / v, dv = −du · y
  Div: broadcasting(({ b, dy, x: [, v], y: [y] }) => {
    const du = b.div(dy, v);
    return [du, () => b.neg(b.mul(du, y))];
  }),

  Neg: ({ b, dy }) => [b.neg(dy)],

  // y = a ^ p: da = dy · p · a^(p − 1), dp = dy · y · ln(a)
  Pow: broadcasting((c) => {
    const {
      b,
      dy,
      x: [a, p],
      y: [y],
    } = c;
    return [
      () => {
        const one = b.constant({
          dtype: c.dtype(p),
          dims: [],
          data:
            c.dtype(p) === 'float64'
              ? Float64Array.from([1])
              : c.dtype(p) === 'int64'
                ? BigInt64Array.from([1n])
                : c.dtype(p) === 'int32'
                  ? Int32Array.from([1])
                  : Float32Array.from([1]),
        });
        const pf = c.dtype(p) === c.dtype(a) ? p : b.cast(p);
        return b.mul(dy, b.mul(pf, b.op('Pow', [a, b.sub(p, one)])));
      },
      () => b.mul(dy, b.mul(y, b.log(a))),
    ];
  }),

  // y = √x: dx = dy / (2y)
  Sqrt: ({ b, dy, y: [y] }) => [b.div(dy, b.mul(y, b.f32(2)))],

  Exp: ({ b, dy, y: [y] }) => [b.mul(dy, y)],

  Log: ({ b, dy, x: [x] }) => [b.div(dy, x)],

  Abs: ({ b, dy, x: [x] }) => [b.mul(dy, b.sign(x))],

  // y = 1/x: dx = −dy · y²
  Reciprocal: ({ b, dy, y: [y] }) => [b.neg(b.mul(dy, b.mul(y, y)))],

  Sum: broadcasting(({ dy, node }) => node.inputs.map(() => dy)),

  Mean: broadcasting(({ b, dy, node }) => {
    const share = b.div(dy, b.f32(node.inputs.length));
    return node.inputs.map(() => share);
  }),

  // The gradient goes to the inputs equal to the result (ties share it, as in PyTorch's amax backward).
  Max: broadcasting((c) => minMax(c)),
  Min: broadcasting((c) => minMax(c)),
};

function minMax({ b, dy, node, y: [y] }: GradCtx): (() => string)[] {
  const masks = node.inputs.map((x) => b.cast(b.equal(x, y)));
  const count = b.sum(masks.map((m) => b.op('Expand', [m, b.shapeOf(y)])));
  const share = b.div(dy, count);
  return masks.map((m) => () => b.mul(share, m));
}
