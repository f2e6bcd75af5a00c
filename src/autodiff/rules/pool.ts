/** Gradient rules: pool family (to be filled). */
import type { GradRule } from '../rule.js';

export const pool: Record<string, GradRule> = {};
