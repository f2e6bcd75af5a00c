/** Gradient rules: norm family (to be filled). */
import type { GradRule } from '../rule.js';

export const norm: Record<string, GradRule> = {};
