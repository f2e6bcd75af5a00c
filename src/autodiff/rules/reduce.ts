/** Reductions: ReduceSum ReduceMean ReduceSumSquare ReduceMax ReduceMin ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceProd. */
import { attrInt, attrInts } from '../../graph/graph.js';
import type { GradCtx, GradRule } from '../rule.js';
import { constOf } from './shape.js';

/** The reduced axes (normalized to be non-negative), from the axes input or attribute. */
export function reduceAxes(c: GradCtx): number[] {
  const r = c.rank(c.x[0]);
  let axes: number[] | undefined = attrInts(c.node, 'axes');
  if (c.x[1]) {
    axes = constOf(c, c.x[1]);
    if (!axes) throw new Error(`${c.node.opType} axes input '${c.x[1]}' must be a constant to differentiate`);
  }
  if (!axes || axes.length === 0) {
    if (attrInt(c.node, 'noop_with_empty_axes', 0)) return [];
    axes = [...Array(r).keys()];
  }
  return axes.map((a) => (a < 0 ? a + r : a)).sort((a, b) => a - b);
}

/** Bring a reduced gradient back to keepdims form, then broadcast it to the input's shape. */
function spread(c: GradCtx, g: string, axes: number[]): string {
  const keep = attrInt(c.node, 'keepdims', 1);
  const gk = keep || axes.length === 0 ? g : c.b.unsqueeze(g, axes);
  return c.b.op('Expand', [gk, c.b.shapeOf(c.x[0])]);
}

/** The reduced output in keepdims form (so it broadcasts against the input). */
function keptY(c: GradCtx, axes: number[]): string {
  return attrInt(c.node, 'keepdims', 1) || axes.length === 0 ? c.y[0] : c.b.unsqueeze(c.y[0], axes);
}

/** Number of elements reduced into each output element, as a float tensor (dynamic-shape safe). */
function count(c: GradCtx, axes: number[]): string {
  const dims = c.shape(c.x[0]).dims;
  const fixed = axes.map((a) => dims[a]);
  if (fixed.every((d) => d != null)) return c.b.f32(fixed.reduce((p, d) => p! * d!, 1)!);
  const b = c.b;
  const sizes = b.op('Gather', [b.shapeOf(c.x[0]), b.i64(axes)], { axis: { type: 'int', value: 0 } });
  return b.op('Cast', [b.reduce('ReduceProd', sizes, [0], false)], { to: { type: 'int', value: 1 } });
}

export const reduce: Record<string, GradRule> = {
  ReduceSum: (c) => [spread(c, c.dy, reduceAxes(c))],

  ReduceMean: (c) => {
    const axes = reduceAxes(c);
    return [spread(c, c.b.div(c.dy, count(c, axes)), axes)];
  },

  // y = Σ x²: dx = 2 x dy
  ReduceSumSquare: (c) => {
    const axes = reduceAxes(c);
    return [c.b.mul(spread(c, c.dy, axes), c.b.mul(c.x[0], c.b.f32(2)))];
  },

  // y = sqrt(Σ x²): dx = x dy / y
  ReduceL2: (c) => {
    const axes = reduceAxes(c);
    const b = c.b;
    return [b.mul(spread(c, c.dy, axes), b.div(c.x[0], keptY(c, axes)))];
  },

  // y = log Σ e^x: dx = dy e^(x − y)
  ReduceLogSumExp: (c) => {
    const axes = reduceAxes(c);
    const b = c.b;
    return [b.mul(spread(c, c.dy, axes), b.op('Exp', [b.sub(c.x[0], keptY(c, axes))]))];
  },

  // y = Σ |x|: dx = sign(x) dy
  ReduceL1: (c) => {
    const axes = reduceAxes(c);
    return [c.b.mul(spread(c, c.dy, axes), c.b.op('Sign', [c.x[0]]))];
  },

  // y = log Σ x: dx = dy / Σ x = dy e^(−y)
  ReduceLogSum: (c) => {
    const axes = reduceAxes(c);
    const b = c.b;
    return [spread(c, b.mul(c.dy, b.op('Exp', [b.neg(c.y[0])])), axes)];
  },

  // y = Π x: dx_i = dy Π_{j≠i} x_j, which is y/x_i where no factor is 0; with exactly one zero factor
  // only that element gets a gradient (the product of the others), with two or more none does.
  ReduceProd: (c) => {
    const axes = reduceAxes(c);
    const b = c.b;
    const x = c.x[0];
    const zero = b.op('Equal', [x, b.f32(0)]);
    const zf = b.op('Cast', [zero], { to: { type: 'int', value: 1 } });
    const zeros = b.reduce('ReduceSum', zf, axes, true);
    const others = b.reduce('ReduceProd', b.op('Where', [zero, b.f32(1), x]), axes, true); // product of the non-zero factors
    const dyk = attrInt(c.node, 'keepdims', 1) || axes.length === 0 ? c.dy : b.unsqueeze(c.dy, axes);
    const noZero = b.div(b.mul(others, b.sub(b.f32(1), zf)), b.op('Where', [zero, b.f32(1), x])); // Π_{j≠i} x_j when nothing is 0
    const oneZero = b.mul(zf, others); // at the single zero factor
    const d = b.op('Where', [b.op('Equal', [zeros, b.f32(0)]), noZero, b.op('Where', [b.op('Equal', [zeros, b.f32(1)]), oneZero, b.mul(zf, b.f32(0))])]);
    return [b.mul(d, b.op('Expand', [dyk, b.shapeOf(x)]))];
  },

  // The gradient goes to the elements equal to the extreme value, split between ties.
  ReduceMax: (c) => extreme(c),
  ReduceMin: (c) => extreme(c),
};

function extreme(c: GradCtx): (string | null)[] {
  const axes = reduceAxes(c);
  const b = c.b;
  const mask = b.op('Cast', [b.op('Equal', [c.x[0], keptY(c, axes)])], { to: { type: 'int', value: 1 } });
  const ties = b.reduce('ReduceSum', mask, axes, true);
  const dyk = attrInt(c.node, 'keepdims', 1) ? c.dy : b.unsqueeze(c.dy, axes);
  return [b.mul(mask, b.div(dyk, ties))];
}
