/** Arithmetic and pointwise math: Add Sub Mul Div Neg Pow Sqrt Exp Log Abs Reciprocal Sum Mean Max Min. */
import type { GradRule } from '../rule.js';

export const elementwise: Record<string, GradRule> = {
  Add: (c) => [c.needs(0) ? c.unbroadcast(c.dy(0)!, c.x(0)) : null, c.needs(1) ? c.unbroadcast(c.dy(0)!, c.x(1)) : null],

  Sub: (c) => [c.needs(0) ? c.unbroadcast(c.dy(0)!, c.x(0)) : null, c.needs(1) ? c.unbroadcast(c.b.neg(c.dy(0)!), c.x(1)) : null],

  Mul: (c) => {
    const dy = c.dy(0)!;
    return [
      c.needs(0) ? c.unbroadcast(c.b.mul(dy, c.x(1)), c.x(0)) : null,
      c.needs(1) ? c.unbroadcast(c.b.mul(dy, c.x(0)), c.x(1)) : null,
    ];
  },

  // y = a / b: da = dy / b, db = -dy * y / b
  Div: (c) => {
    const dy = c.dy(0)!;
    const da = c.needs(0) || c.needs(1) ? c.b.div(dy, c.x(1)) : '';
    return [
      c.needs(0) ? c.unbroadcast(da, c.x(0)) : null,
      c.needs(1) ? c.unbroadcast(c.b.neg(c.b.mul(da, c.y(0))), c.x(1)) : null,
    ];
  },

  Neg: (c) => [c.b.neg(c.dy(0)!)],

  // y = a ^ p: da = dy * p * a^(p-1), dp = dy * y * ln(a)
  Pow: (c) => {
    const b = c.b;
    const dy = c.dy(0)!;
    const [a, p] = [c.x(0), c.x(1)];
    let da: string | null = null;
    if (c.needs(0)) {
      const one = b.constant({ dtype: c.dtype(p), dims: [], data: c.dtype(p) === 'float64' ? Float64Array.from([1]) : c.dtype(p) === 'int64' ? BigInt64Array.from([1n]) : c.dtype(p) === 'int32' ? Int32Array.from([1]) : Float32Array.from([1]) });
      const pm1 = b.sub(p, one);
      const pf = c.dtype(p) === c.dtype(a) ? p : b.op('Cast', [p], { to: { type: 'int', value: 1 } });
      da = c.unbroadcast(b.mul(dy, b.mul(pf, b.op('Pow', [a, pm1]))), a);
    }
    const dp = c.needs(1) ? c.unbroadcast(b.mul(dy, b.mul(c.y(0), b.op('Log', [a]))), p) : null;
    return [da, dp];
  },

  // y = sqrt(x): dx = dy / (2 y)
  Sqrt: (c) => [c.b.div(c.dy(0)!, c.b.mul(c.y(0), c.b.f32(2)))],

  Exp: (c) => [c.b.mul(c.dy(0)!, c.y(0))],

  Log: (c) => [c.b.div(c.dy(0)!, c.x(0))],

  Abs: (c) => [c.b.mul(c.dy(0)!, c.b.op('Sign', [c.x(0)]))],

  // y = 1/x: dx = -dy * y^2
  Reciprocal: (c) => [c.b.neg(c.b.mul(c.dy(0)!, c.b.mul(c.y(0), c.y(0))))],

  Sum: (c) => c.node.inputs.map((x, i) => (c.needs(i) ? c.unbroadcast(c.dy(0)!, x) : null)),

  Mean: (c) => {
    const scaled = c.b.div(c.dy(0)!, c.b.f32(c.node.inputs.length));
    return c.node.inputs.map((x, i) => (c.needs(i) ? c.unbroadcast(scaled, x) : null));
  },

  // The gradient goes to the inputs equal to the result (ties share it, as in PyTorch's amax backward).
  Max: (c) => minMax(c),
  Min: (c) => minMax(c),
};

function minMax(c: Parameters<GradRule>[0]): (string | null)[] {
  const b = c.b;
  const dy = c.dy(0)!;
  const masks = c.node.inputs.map((x) => b.op('Cast', [b.op('Equal', [x, c.y(0)])], { to: { type: 'int', value: 1 } }));
  const count = b.sum(masks.map((m) => b.op('Expand', [m, b.shapeOf(c.y(0))])));
  const share = b.div(dy, count);
  return c.node.inputs.map((x, i) => (c.needs(i) ? c.unbroadcast(b.mul(share, masks[i]!), x) : null));
}
