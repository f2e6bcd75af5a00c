/** Scans and selections: CumSum Trilu TopK. */
import { attrInt } from '../../graph/graph.js';
import { A } from '../../graph/builder.js';
import type { GradCtx, GradRule } from '../rule.js';

/** Zeros of x's shape and float type. */
export function zerosLike(c: GradCtx, x: string): string {
  return c.b.op('ConstantOfShape', [c.b.shapeOf(x)], { value: A.t({ dtype: 'float32', dims: [1], data: Float32Array.from([0]) }) });
}

export const select: Record<string, GradRule> = {
  // y_j = Σ_{i ≤ j} x_i (or i < j when exclusive; the mirror image when reverse): each x_i reaches the
  // y_j on its other side, so dx is the cumulative sum of dy in the opposite direction, same exclusivity.
  CumSum: (c) => {
    const reverse = attrInt(c.node, 'reverse', 0);
    return [c.b.op('CumSum', [c.dy, c.x[1]], { exclusive: A.i(attrInt(c.node, 'exclusive', 0)), reverse: A.i(reverse ? 0 : 1) })];
  },

  // The kept triangle passes the gradient, the zeroed one does not: the same Trilu of dy.
  Trilu: (c) => [c.b.op('Trilu', c.x[1] ? [c.dy, c.x[1]] : [c.dy], { upper: A.i(attrInt(c.node, 'upper', 1)) })],

  // The selected values' gradients go back to where they were taken from (their indices along axis).
  TopK: (c) => {
    const dy = c.dyOf(0);
    if (!dy) return [null];
    const axis = attrInt(c.node, 'axis', -1);
    const idx = c.forwardOutput(1, 'indices');
    return [c.b.op('ScatterElements', [zerosLike(c, c.x[0]), idx, dy], { axis: A.i(axis) })];
  },
};
