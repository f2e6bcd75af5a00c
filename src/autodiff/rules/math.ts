/**
 * Trigonometric and hyperbolic functions, Mod, and the smaller activations exporters emit:
 * Sin Cos Tan Sinh Cosh Asin Acos Atan Asinh Acosh Atanh Mod PRelu Selu Celu Softsign ThresholdedRelu.
 */
import { attrFloat } from '../../graph/graph.js';
import type { GradCtx, GradRule } from '../rule.js';

/** dx = dy · f'(x), with f'(x) built from x (and y) by `d`. */
const pointwise = (d: (c: GradCtx, x: string) => string): GradRule => (c) => [c.b.mul(c.dy, d(c, c.x[0]))];
/** 1 − x², 1 + x², x² − 1. */
const oneMinusSq = (c: GradCtx, x: string) => c.b.sub(c.b.f32(1), c.b.mul(x, x));
const onePlusSq = (c: GradCtx, x: string) => c.b.add(c.b.f32(1), c.b.mul(x, x));
const sqMinusOne = (c: GradCtx, x: string) => c.b.sub(c.b.mul(x, x), c.b.f32(1));
const rsqrt = (c: GradCtx, v: string) => c.b.op('Reciprocal', [c.b.op('Sqrt', [v])]);

export const math: Record<string, GradRule> = {
  Sin: pointwise((c, x) => c.b.op('Cos', [x])),
  Cos: pointwise((c, x) => c.b.neg(c.b.op('Sin', [x]))),
  // d tan = 1 + tan²
  Tan: pointwise((c) => onePlusSq(c, c.y[0])),
  Sinh: pointwise((c, x) => c.b.op('Cosh', [x])),
  Cosh: pointwise((c, x) => c.b.op('Sinh', [x])),
  Asin: pointwise((c, x) => rsqrt(c, oneMinusSq(c, x))),
  Acos: pointwise((c, x) => c.b.neg(rsqrt(c, oneMinusSq(c, x)))),
  Atan: pointwise((c, x) => c.b.op('Reciprocal', [onePlusSq(c, x)])),
  Asinh: pointwise((c, x) => rsqrt(c, onePlusSq(c, x))),
  Acosh: pointwise((c, x) => rsqrt(c, sqMinusOne(c, x))),
  Atanh: pointwise((c, x) => c.b.op('Reciprocal', [oneMinusSq(c, x)])),

  // r = a − b·q with q = trunc(a/b) (fmod=1; floats) or floor(a/b) (integers, which carry no gradient):
  // da = dy, db = −dy·q = −dy·(a − r)/b.
  Mod: (c) => {
    const b = c.b;
    const [a, m] = [c.x[0], c.x[1]];
    const dy = c.dy;
    return [
      c.needs(0) ? c.unbroadcast(dy, a) : null,
      c.needs(1) ? c.unbroadcast(b.neg(b.mul(dy, b.div(b.sub(a, c.y[0]), m))), m) : null,
    ];
  },

  // y = x (x > 0), slope·x otherwise; slope broadcasts to x (unidirectionally).
  PRelu: (c) => {
    const b = c.b;
    const [x, slope] = [c.x[0], c.x[1]];
    const dy = c.dy;
    const pos = b.op('Greater', [x, b.f32(0)]);
    return [
      c.needs(0) ? b.op('Where', [pos, dy, b.mul(dy, slope)]) : null,
      c.needs(1) ? c.unbroadcast(b.op('Where', [pos, b.f32(0), b.mul(dy, x)]), slope) : null,
    ];
  },

  // y = γ·x (x > 0), γ·α·(eˣ − 1) otherwise: dy/dx = γ, or y + γ·α
  Selu: (c) => {
    const b = c.b;
    const alpha = attrFloat(c.node, 'alpha', 1.67326319217681884765625);
    const gamma = attrFloat(c.node, 'gamma', 1.05070102214813232421875);
    const d = b.op('Where', [b.op('Greater', [c.x[0], b.f32(0)]), b.f32(gamma), b.add(c.y[0], b.f32(gamma * alpha))]);
    return [b.mul(c.dy, d)];
  },

  // y = max(0, x) + min(0, α·(e^(x/α) − 1)): dy/dx = 1 (x > 0), e^(x/α) otherwise
  Celu: (c) => {
    const b = c.b;
    const alpha = attrFloat(c.node, 'alpha', 1);
    const x = c.x[0];
    const d = b.op('Where', [b.op('Greater', [x, b.f32(0)]), b.f32(1), b.op('Exp', [b.mul(x, b.f32(1 / alpha))])]);
    return [b.mul(c.dy, d)];
  },

  // y = x / (1 + |x|): dy/dx = 1 / (1 + |x|)²
  Softsign: pointwise((c, x) => {
    const s = c.b.add(c.b.f32(1), c.b.op('Abs', [x]));
    return c.b.op('Reciprocal', [c.b.mul(s, s)]);
  }),

  // y = x (x > α), 0 otherwise
  ThresholdedRelu: (c) => {
    const b = c.b;
    const on = b.op('Cast', [b.op('Greater', [c.x[0], b.f32(attrFloat(c.node, 'alpha', 1))])], { to: { type: 'int', value: 1 } });
    return [b.mul(c.dy, on)];
  },
};
