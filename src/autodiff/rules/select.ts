/** Scans and selections: CumSum Trilu TopK. */
import { A } from '../../graph/builder.js';
import type { GradRule } from '../rule.js';
import { zerosLike } from './helpers.js';

export const select: Record<string, GradRule> = {
  // y_j = Σ_{i ≤ j} x_i (or i < j when exclusive; the mirror image when reverse): each x_i reaches the
  // y_j on its other side, so dx is the cumulative sum of dy in the opposite direction, same exclusivity.
  CumSum: ({ b, dy, x: [, axis], int }) => [
    b.op('CumSum', [dy, axis], { exclusive: A.i(int('exclusive', 0)), reverse: A.i(int('reverse', 0) ? 0 : 1) }),
  ],

  // The kept triangle passes the gradient, the zeroed one does not: the same Trilu of dy.
  Trilu: ({ b, dy, x: [, k], int }) => [b.op('Trilu', k ? [dy, k] : [dy], { upper: A.i(int('upper', 1)) })],

  // The selected values' gradients go back to where they were taken from (their indices along axis).
  TopK: (c) => {
    const dy = c.dyOf(0);
    if (!dy) return [null];
    const idx = c.forwardOutput(1, 'indices');
    return [c.b.op('ScatterElements', [zerosLike(c, c.x[0]), idx, dy], { axis: A.i(c.int('axis', -1)) })];
  },
};
