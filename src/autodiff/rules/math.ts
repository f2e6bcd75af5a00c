/**
 * Trigonometric and hyperbolic functions, Mod, and the smaller activations exporters emit:
 * Sin Cos Tan Sinh Cosh Asin Acos Atan Asinh Acosh Atanh Mod PRelu Selu Celu Softsign ThresholdedRelu.
 */
import type { Builder } from '../../graph/builder.js';
import { broadcasting, type GradRule } from '../rule.js';

/** dx = dy · f'(x), with f'(x) built from x (and y) by `d`. */
const pointwise =
  (d: (b: Builder, x: string, y: string) => string): GradRule =>
  ({ b, dy, x: [x], y: [y] }) => [b.mul(dy, d(b, x, y))];
/** 1 − x², 1 + x², x² − 1, 1/√v. */
const oneMinusSq = (b: Builder, x: string) => b.sub(b.f32(1), b.mul(x, x));
const onePlusSq = (b: Builder, x: string) => b.add(b.f32(1), b.mul(x, x));
const sqMinusOne = (b: Builder, x: string) => b.sub(b.mul(x, x), b.f32(1));
const rsqrt = (b: Builder, v: string) => b.recip(b.sqrt(v));

export const math: Record<string, GradRule> = {
  Sin: pointwise((b, x) => b.op('Cos', [x])),
  Cos: pointwise((b, x) => b.neg(b.op('Sin', [x]))),
  // d tan = 1 + tan²
  Tan: pointwise((b, _x, y) => onePlusSq(b, y)),
  Sinh: pointwise((b, x) => b.op('Cosh', [x])),
  Cosh: pointwise((b, x) => b.op('Sinh', [x])),
  Asin: pointwise((b, x) => rsqrt(b, oneMinusSq(b, x))),
  Acos: pointwise((b, x) => b.neg(rsqrt(b, oneMinusSq(b, x)))),
  Atan: pointwise((b, x) => b.recip(onePlusSq(b, x))),
  Asinh: pointwise((b, x) => rsqrt(b, onePlusSq(b, x))),
  Acosh: pointwise((b, x) => rsqrt(b, sqMinusOne(b, x))),
  Atanh: pointwise((b, x) => b.recip(oneMinusSq(b, x))),

  // r = a − m·q with q = trunc(a/m) (fmod=1; floats) or floor(a/m) (integers, which carry no gradient):
  // da = dy, dm = −dy·q = −dy·(a − r)/m.
  Mod: broadcasting(({ b, dy, x: [a, m], y: [r] }) => [dy, () => b.neg(b.mul(dy, b.div(b.sub(a, r), m)))]),

  // y = x (x > 0), slope·x otherwise; slope broadcasts to x (unidirectionally).
  PRelu: broadcasting(
    ({ b, dy, x: [x, slope] }) => {
      const pos = b.greater(x, b.f32(0));
      return [b.where(pos, dy, b.mul(dy, slope)), () => b.where(pos, b.f32(0), b.mul(dy, x))];
    },
    [1],
  ),

  // y = γ·x (x > 0), γ·α·(eˣ − 1) otherwise: dy/dx = γ, or y + γ·α
  Selu: ({ b, dy, x: [x], y: [y], float }) => {
    const alpha = float('alpha', Math.fround(1.6732632423543772));
    const gamma = float('gamma', Math.fround(1.0507009873554805));
    return [b.mul(dy, b.where(b.greater(x, b.f32(0)), b.f32(gamma), b.add(y, b.f32(gamma * alpha))))];
  },

  // y = max(0, x) + min(0, α·(e^(x/α) − 1)): dy/dx = 1 (x > 0), e^(x/α) otherwise
  Celu: ({ b, dy, x: [x], float }) => {
    const alpha = float('alpha', 1);
    return [b.mul(dy, b.where(b.greater(x, b.f32(0)), b.f32(1), b.exp(b.mul(x, b.f32(1 / alpha)))))];
  },

  // y = x / (1 + |x|): dy/dx = 1 / (1 + |x|)²
  Softsign: pointwise((b, x) => {
    const s = b.add(b.f32(1), b.op('Abs', [x]));
    return b.recip(b.mul(s, s));
  }),

  // y = x (x > α), 0 otherwise
  ThresholdedRelu: ({ b, dy, x: [x], float }) => [b.mul(dy, b.cast(b.greater(x, b.f32(float('alpha', 1)))))],
};
