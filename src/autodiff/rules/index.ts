/** The table from operator type to gradient rule, assembled from one file per operator family. */
import type { GradRule } from '../rule.js';
import { elementwise } from './elementwise.js';
import { activation } from './activation.js';
import { matmul } from './matmul.js';
import { conv } from './conv.js';
import { pool } from './pool.js';
import { norm } from './norm.js';
import { shape } from './shape.js';
import { reduce } from './reduce.js';
import { math } from './math.js';
import { select } from './select.js';
import { loss } from './loss.js';
import { einsum } from './einsum.js';
import { resize } from './resize.js';

export const RULES: Record<string, GradRule> = {
  ...elementwise,
  ...activation,
  ...matmul,
  ...conv,
  ...pool,
  ...norm,
  ...shape,
  ...reduce,
  ...math,
  ...select,
  ...loss,
  ...einsum,
  ...resize,
};

/** Operators whose outputs never carry gradient (integer/boolean results, shape computations). */
export const NON_DIFFERENTIABLE = new Set([
  'Shape',
  'Size',
  'Constant',
  'ConstantOfShape',
  'Range',
  'NonZero',
  'ArgMax',
  'ArgMin',
  'Equal',
  'Less',
  'LessOrEqual',
  'Greater',
  'GreaterOrEqual',
  'And',
  'Or',
  'Not',
  'Xor',
  'IsNaN',
  'IsInf',
  'Sign',
  'Floor',
  'Ceil',
  'Round',
  'OneHot',
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'Bernoulli',
  'EyeLike',
  'Multinomial',
  // integer results, or piecewise constant (a zero gradient almost everywhere)
  'NonMaxSuppression',
  'Hardmax',
  'BitShift',
  'BitwiseAnd',
  'BitwiseOr',
  'BitwiseXor',
  'BitwiseNot',
]);

/** Float inputs, by position, that rules never differentiate: parameters of the operator, constants in exported models. */
export const CONSTANT_INPUTS: Record<string, number[]> = { Resize: [1, 2], Dropout: [1] };

/** Operators with a gradient rule, for `graft check`. */
export function hasRule(opType: string): boolean {
  return opType in RULES || NON_DIFFERENTIABLE.has(opType);
}
