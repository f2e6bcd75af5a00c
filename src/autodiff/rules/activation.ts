/** Activations: Relu LeakyRelu Clip(ReLU6) Sigmoid Tanh Erf Gelu HardSigmoid HardSwish Softplus Elu Softmax LogSoftmax. */
import { attrFloat, attrInt, attrString } from '../../graph/graph.js';
import type { GradCtx, GradRule } from '../rule.js';

/** dy where `cond` holds, else 0: dy · float(cond), which onnxruntime runs about 2× faster than Where. */
const gate = (c: GradCtx, cond: string) => c.b.mul(c.dy, c.b.op('Cast', [cond], { to: { type: 'int', value: 1 } }));

export const activation: Record<string, GradRule> = {
  Relu: (c) => [gate(c, c.b.op('Greater', [c.y[0], c.b.f32(0)]))],

  LeakyRelu: (c) => {
    const alpha = attrFloat(c.node, 'alpha', 0.01);
    const dy = c.dy;
    return [c.b.op('Where', [c.b.op('Greater', [c.x[0], c.b.f32(0)]), dy, c.b.mul(dy, c.b.f32(alpha))])];
  },

  // Clip(x, min, max): the gradient passes where the value was not clipped, i.e. where y = x
  // (one comparison instead of two and an And; x exactly on a bound is a measure-zero tie).
  Clip: (c) => {
    const b = c.b;
    if (!c.x[1] && !c.x[2] && !c.node.attrs['min'] && !c.node.attrs['max']) return [c.dyOf(0)];
    if (b.opset >= 11) {
      const inside = b.op('Equal', [c.x[0], c.y[0]]);
      // the bounds (inputs, opset 11) take the gradient where they clipped: dmin = Σ dy·[x < min], dmax = Σ dy·[x > max]
      const bound = (i: number, cmp: 'Less' | 'Greater') =>
        c.needs(i) ? c.unbroadcast(gate(c, b.op('And', [b.op('Not', [inside]), b.op(cmp, [c.x[0], c.x[i]!])])), c.x[i]!) : null;
      return [gate(c, inside), bound(1, 'Less'), bound(2, 'Greater')];
    }
    // Equal has no float kernel before opset 11: compare with the bounds (Clip-6 attributes).
    const lo = b.op('Greater', [c.x[0], b.f32(attrFloat(c.node, 'min', -3.4e38))]);
    const hi = b.op('Less', [c.x[0], b.f32(attrFloat(c.node, 'max', 3.4e38))]);
    return [gate(c, b.op('And', [lo, hi]))];
  },

  Sigmoid: (c) => {
    const b = c.b;
    const y = c.y[0];
    return [b.mul(c.dy, b.mul(y, b.sub(b.f32(1), y)))];
  },

  Tanh: (c) => {
    const b = c.b;
    const y = c.y[0];
    return [b.mul(c.dy, b.sub(b.f32(1), b.mul(y, y)))];
  },

  // d erf(x) = 2/sqrt(pi) exp(-x^2)
  Erf: (c) => {
    const b = c.b;
    const x = c.x[0];
    return [b.mul(c.dy, b.mul(b.f32(2 / Math.sqrt(Math.PI)), b.op('Exp', [b.neg(b.mul(x, x))])))];
  },

  // ONNX Gelu (opset 20): exact (erf) or tanh approximation.
  Gelu: (c) => {
    const b = c.b;
    const x = c.x[0];
    const dy = c.dy;
    if (attrString(c.node, 'approximate', 'none') === 'tanh') {
      // y = 0.5 x (1 + tanh(u)), u = k (x + 0.044715 x^3), k = sqrt(2/pi)
      const k = Math.sqrt(2 / Math.PI);
      const x2 = b.mul(x, x);
      const u = b.mul(b.f32(k), b.add(x, b.mul(b.f32(0.044715), b.mul(x2, x))));
      const t = b.op('Tanh', [u]);
      const du = b.mul(b.f32(k), b.add(b.f32(1), b.mul(b.f32(3 * 0.044715), x2)));
      const dt = b.sub(b.f32(1), b.mul(t, t));
      const d = b.add(b.mul(b.f32(0.5), b.add(b.f32(1), t)), b.mul(b.mul(b.f32(0.5), x), b.mul(dt, du)));
      return [b.mul(dy, d)];
    }
    // y = x Φ(x): dy/dx = Φ(x) + x φ(x)
    const cdf = b.mul(b.f32(0.5), b.add(b.f32(1), b.op('Erf', [b.mul(x, b.f32(Math.SQRT1_2))])));
    const pdf = b.mul(b.f32(1 / Math.sqrt(2 * Math.PI)), b.op('Exp', [b.mul(b.f32(-0.5), b.mul(x, x))]));
    return [b.mul(dy, b.add(cdf, b.mul(x, pdf)))];
  },

  // y = max(0, min(1, alpha x + beta))
  HardSigmoid: (c) => {
    const b = c.b;
    const alpha = attrFloat(c.node, 'alpha', 0.2);
    const beta = attrFloat(c.node, 'beta', 0.5);
    const z = b.add(b.mul(c.x[0], b.f32(alpha)), b.f32(beta));
    const inside = b.op('And', [b.op('Greater', [z, b.f32(0)]), b.op('Less', [z, b.f32(1)])]);
    return [b.op('Where', [inside, b.mul(c.dy, b.f32(alpha)), b.f32(0)])];
  },

  // y = x * relu6(x + 3) / 6: dy/dx = 0 below -3, 1 above 3, (2x + 3)/6 between.
  HardSwish: (c) => {
    const b = c.b;
    const x = c.x[0];
    const mid = b.add(b.mul(x, b.f32(1 / 3)), b.f32(0.5));
    const d = b.op('Where', [b.op('Less', [x, b.f32(-3)]), b.f32(0), b.op('Where', [b.op('Greater', [x, b.f32(3)]), b.f32(1), mid])]);
    return [b.mul(c.dy, d)];
  },

  // y = ln(1 + e^x): dy/dx = sigmoid(x)
  Softplus: (c) => [c.b.mul(c.dy, c.b.op('Sigmoid', [c.x[0]]))],

  // y = x (x > 0), alpha (e^x - 1) otherwise: dy/dx = 1 or y + alpha
  Elu: (c) => {
    const b = c.b;
    const alpha = attrFloat(c.node, 'alpha', 1);
    const d = b.op('Where', [b.op('Greater', [c.x[0], b.f32(0)]), b.f32(1), b.add(c.y[0], b.f32(alpha))]);
    return [b.mul(c.dy, d)];
  },

  // dx = y * (dy - sum(dy * y))
  Softmax: (c) => {
    const b = c.b;
    const axis = normAxis(c, attrInt(c.node, 'axis', -1));
    const y = c.y[0];
    const dy = c.dy;
    const s = b.reduce('ReduceSum', b.mul(dy, y), [axis], true);
    return [b.mul(y, b.sub(dy, s))];
  },

  // dx = dy - softmax * sum(dy)
  LogSoftmax: (c) => {
    const b = c.b;
    const axis = normAxis(c, attrInt(c.node, 'axis', -1));
    const dy = c.dy;
    const s = b.reduce('ReduceSum', dy, [axis], true);
    return [b.sub(dy, b.mul(b.op('Exp', [c.y[0]]), s))];
  },
};

function normAxis(c: GradCtx, axis: number): number {
  const r = c.rank(c.x[0]);
  if (c.b.opset < 13 && r > 2 && axis !== r - 1 && axis !== -1)
    throw new Error(`${c.node.opType} before opset 13 with axis ${axis} on rank ${r} input (upgrade the model's opset)`);
  return axis < 0 ? axis + r : axis;
}
