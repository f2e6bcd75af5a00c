/** Reductions: ReduceSum ReduceMean ReduceSumSquare ReduceMax ReduceMin ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceProd. */
import type { GradCtx, GradRule } from '../rule.js';
import { constOf, normAxis, range } from './helpers.js';

/** The reduced axes (normalized to be non-negative), from the axes input or attribute. */
export function reduceAxes(c: GradCtx): number[] {
  const r = c.rank(c.x[0]);
  let axes = c.ints('axes');
  if (c.x[1]) {
    axes = constOf(c, c.x[1]);
    if (!axes) throw new Error(`${c.node.opType} axes input '${c.x[1]}' must be a constant to differentiate`);
  }
  if (!axes || axes.length === 0) {
    if (c.int('noop_with_empty_axes', 0)) return [];
    axes = range(r);
  }
  return axes.map((a) => normAxis(a, r)).sort((a, b) => a - b);
}

/** v (shaped like the output) in keepdims form, so that it broadcasts against the input. */
function kept(c: GradCtx, v: string, axes: number[]): string {
  return c.int('keepdims', 1) || axes.length === 0 ? v : c.b.unsqueeze(v, axes);
}

/** A reduced gradient brought back to keepdims form, then broadcast to the input's shape. */
function spread(c: GradCtx, g: string, axes: number[]): string {
  return c.b.op('Expand', [kept(c, g, axes), c.b.shapeOf(c.x[0])]);
}

/** Number of elements reduced into each output element, as a float tensor (dynamic-shape safe). */
function count(c: GradCtx, axes: number[]): string {
  const dims = c.shape(c.x[0]).dims;
  const fixed = axes.map((a) => dims[a]);
  if (fixed.every((d) => d != null)) return c.b.f32(fixed.reduce((p, d) => p! * d!, 1)!);
  const b = c.b;
  const sizes = b.op('Gather', [b.shapeOf(c.x[0]), b.i64(axes)], { axis: { type: 'int', value: 0 } });
  return b.cast(b.reduce('ReduceProd', sizes, [0], false));
}

/** A rule dx = spread(dy) · f(x, y), with y in keepdims form; `f` absent means dx = spread(dy). */
const reduction =
  (f?: (c: GradCtx, x: string, y: string, axes: number[]) => string): GradRule =>
  (c) => {
    const axes = reduceAxes(c);
    const g = spread(c, c.dy, axes);
    return [f ? c.b.mul(g, f(c, c.x[0], kept(c, c.y[0], axes), axes)) : g];
  };

export const reduce: Record<string, GradRule> = {
  ReduceSum: reduction(),

  ReduceMean: (c) => {
    const axes = reduceAxes(c);
    return [spread(c, c.b.div(c.dy, count(c, axes)), axes)];
  },

  // y = Σ x²: dx = 2x · dy
  ReduceSumSquare: reduction(({ b }, x) => b.mul(x, b.f32(2))),

  // y = √(Σ x²): dx = dy · x / y
  ReduceL2: reduction(({ b }, x, y) => b.div(x, y)),

  // y = log Σ eˣ: dx = dy · e^(x − y)
  ReduceLogSumExp: reduction(({ b }, x, y) => b.exp(b.sub(x, y))),

  // y = Σ |x|: dx = dy · sign(x)
  ReduceL1: reduction(({ b }, x) => b.sign(x)),

  // y = log Σ x: dx = dy / Σ x = dy · e^(−y)
  ReduceLogSum: (c) => [spread(c, c.b.mul(c.dy, c.b.exp(c.b.neg(c.y[0]))), reduceAxes(c))],

  // y = Π x: dx_i = dy Π_{j≠i} x_j, which is y/x_i where no factor is 0; with exactly one zero factor
  // only that element gets a gradient (the product of the others), with two or more none does.
  ReduceProd: (c) => {
    const axes = reduceAxes(c);
    const {
      b,
      x: [x],
    } = c;
    const zero = b.equal(x, b.f32(0));
    const zf = b.cast(zero);
    const zeros = b.reduce('ReduceSum', zf, axes, true);
    const others = b.reduce('ReduceProd', b.where(zero, b.f32(1), x), axes, true); // product of the non-zero factors
    const dyk = kept(c, c.dy, axes);
    const noZero = b.div(b.mul(others, b.sub(b.f32(1), zf)), b.where(zero, b.f32(1), x)); // Π_{j≠i} x_j when nothing is 0
    const oneZero = b.mul(zf, others); // at the single zero factor
    const d = b.where(
      b.equal(zeros, b.f32(0)),
      noZero,
      b.where(b.equal(zeros, b.f32(1)), oneZero, b.mul(zf, b.f32(0))),
    );
    return [b.mul(d, b.op('Expand', [dyk, b.shapeOf(x)]))];
  },

  // The gradient goes to the elements equal to the extreme value, split between ties.
  ReduceMax: (c) => extreme(c),
  ReduceMin: (c) => extreme(c),
};

function extreme(c: GradCtx): string[] {
  const axes = reduceAxes(c);
  const b = c.b;
  const mask = b.cast(b.equal(c.x[0], kept(c, c.y[0], axes)));
  const ties = b.reduce('ReduceSum', mask, axes, true);
  const dyk = c.int('keepdims', 1) ? c.dy : b.unsqueeze(c.dy, axes);
  return [b.mul(mask, b.div(dyk, ties))];
}
