/** Gradient rules: shape family (to be filled). */
import type { GradRule } from '../rule.js';

export const shape: Record<string, GradRule> = {};
