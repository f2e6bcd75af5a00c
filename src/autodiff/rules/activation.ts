/** Activations: Relu LeakyRelu Clip(ReLU6) Sigmoid Tanh Erf Gelu HardSigmoid HardSwish Softplus Elu Softmax LogSoftmax. */
import { broadcasting, type GradCtx, type GradRule } from '../rule.js';
import { gate, normAxis } from './helpers.js';

export const activation: Record<string, GradRule> = {
  Relu: (c) => [gate(c, c.b.greater(c.y[0], c.b.f32(0)))],

  LeakyRelu: ({ b, dy, x: [x], float }) => [
    b.where(b.greater(x, b.f32(0)), dy, b.mul(dy, b.f32(float('alpha', 0.01)))),
  ],

  // Clip(x, min, max): the gradient passes where the value was not clipped, i.e. where y = x
  // (one comparison instead of two and an And; x exactly on a bound is a measure-zero tie).
  // The bounds (inputs, opset 11) take the gradient where they clipped: dmin = Σ dy·[x < min], dmax = Σ dy·[x > max].
  Clip: broadcasting(
    (c) => {
      const {
        b,
        dy,
        node,
        x: [x, min, max],
        y: [y],
        float,
      } = c;
      if (!min && !max && !node.attrs['min'] && !node.attrs['max']) return [dy];
      if (b.opset < 11) {
        // Equal has no float kernel before opset 11: compare with the bounds (Clip-6 attributes).
        return [gate(c, b.and(b.greater(x, b.f32(float('min', -3.4e38))), b.less(x, b.f32(float('max', 3.4e38)))))];
      }
      const inside = b.equal(x, y);
      const clipped = (bound: string, cmp: 'Less' | 'Greater') => () =>
        gate(c, b.and(b.not(inside), b.op(cmp, [x, bound])));
      return [gate(c, inside), clipped(min, 'Less'), clipped(max, 'Greater')];
    },
    [1, 2],
  ),

  Sigmoid: ({ b, dy, y: [y] }) => [b.mul(dy, b.mul(y, b.sub(b.f32(1), y)))],

  Tanh: ({ b, dy, y: [y] }) => [b.mul(dy, b.sub(b.f32(1), b.mul(y, y)))],

  // d erf(x) = 2/√π · exp(−x²)
  Erf: ({ b, dy, x: [x] }) => [b.mul(dy, b.mul(b.f32(2 / Math.sqrt(Math.PI)), b.exp(b.neg(b.mul(x, x)))))],

  // ONNX Gelu (opset 20): exact (erf) or tanh approximation.
  Gelu: ({ b, dy, x: [x], str }) => {
    if (str('approximate', 'none') === 'tanh') {
      // y = 0.5 x (1 + tanh(u)), u = k (x + 0.044715 x³), k = √(2/π)
      const k = Math.sqrt(2 / Math.PI);
      const x2 = b.mul(x, x);
      const u = b.mul(b.f32(k), b.add(x, b.mul(b.f32(0.044715), b.mul(x2, x))));
      const t = b.op('Tanh', [u]);
      const du = b.mul(b.f32(k), b.add(b.f32(1), b.mul(b.f32(3 * 0.044715), x2)));
      const dt = b.sub(b.f32(1), b.mul(t, t));
      return [b.mul(dy, b.add(b.mul(b.f32(0.5), b.add(b.f32(1), t)), b.mul(b.mul(b.f32(0.5), x), b.mul(dt, du))))];
    }
    // y = x Φ(x): dy/dx = Φ(x) + x φ(x)
    const cdf = b.mul(b.f32(0.5), b.add(b.f32(1), b.op('Erf', [b.mul(x, b.f32(Math.SQRT1_2))])));
    const pdf = b.mul(b.f32(1 / Math.sqrt(2 * Math.PI)), b.exp(b.mul(b.f32(-0.5), b.mul(x, x))));
    return [b.mul(dy, b.add(cdf, b.mul(x, pdf)))];
  },

  // y = max(0, min(1, αx + β)): dy/dx = α inside (0, 1), else 0
  HardSigmoid: ({ b, dy, x: [x], float }) => {
    const alpha = float('alpha', 0.2);
    const z = b.add(b.mul(x, b.f32(alpha)), b.f32(float('beta', 0.5)));
    return [b.where(b.and(b.greater(z, b.f32(0)), b.less(z, b.f32(1))), b.mul(dy, b.f32(alpha)), b.f32(0))];
  },

  // y = x · relu6(x + 3) / 6: dy/dx = 0 below −3, 1 above 3, (2x + 3)/6 between.
  HardSwish: ({ b, dy, x: [x] }) => {
    const mid = b.add(b.mul(x, b.f32(1 / 3)), b.f32(0.5));
    return [b.mul(dy, b.where(b.less(x, b.f32(-3)), b.f32(0), b.where(b.greater(x, b.f32(3)), b.f32(1), mid)))];
  },

  // y = ln(1 + eˣ): dy/dx = sigmoid(x)
  Softplus: ({ b, dy, x: [x] }) => [b.mul(dy, b.op('Sigmoid', [x]))],

  // y = x (x > 0), α(eˣ − 1) otherwise: dy/dx = 1 or y + α
  Elu: ({ b, dy, x: [x], y: [y], float }) => [
    b.mul(dy, b.where(b.greater(x, b.f32(0)), b.f32(1), b.add(y, b.f32(float('alpha', 1))))),
  ],

  // dx = y · (dy − Σ dy·y)
  Softmax: (c) => {
    const {
      b,
      dy,
      y: [y],
    } = c;
    return [b.mul(y, b.sub(dy, b.reduce('ReduceSum', b.mul(dy, y), [softmaxAxis(c)], true)))];
  },

  // dx = dy − softmax · Σ dy
  LogSoftmax: (c) => {
    const {
      b,
      dy,
      y: [y],
    } = c;
    const s = b.reduce('ReduceSum', dy, [softmaxAxis(c)], true);
    return [b.sub(dy, b.mul(b.exp(y), s))];
  },
};

/** The (Log)Softmax axis; before opset 13 it flattens from its axis on, which only the last axis matches. */
function softmaxAxis(c: GradCtx): number {
  const axis = c.int('axis', -1);
  const r = c.rank(c.x[0]);
  if (c.b.opset < 13 && r > 2 && axis !== r - 1 && axis !== -1)
    throw new Error(
      `${c.node.opType} before opset 13 with axis ${axis} on rank ${r} input (upgrade the model's opset)`,
    );
  return normAxis(axis, r);
}
