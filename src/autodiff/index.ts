/**
 * `graft/autodiff`: Automatic differentiation as ONNX: gradient rules, buildBackward, gradient checks and model checks.
 */
export { buildBackward, type BackwardOptions } from './backward.js';
export { gradCheck, weightedSumGradGraph, promoteToInputs } from './grad-graph.js';
export { checkModel, modelGradients, type ModelCheck } from './check-model.js';
export { probeShapes, type ShapeMap } from './shapes.js';
export { RULES, hasRule } from './rules/index.js';
export { type GradRule, type GradCtx, type Grad, broadcasting, NoGradientRule } from './rule.js';
