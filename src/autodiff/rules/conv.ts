/** Gradient rules: conv family (to be filled). */
import type { GradRule } from '../rule.js';

export const conv: Record<string, GradRule> = {};
