/**
 * `graft/eval`: Evaluation: metrics, HTML/JSON reports, image classification, text classifier evaluation, and data-efficiency curves.
 */
export { classifyImages } from './classify.js';
export { classificationMetrics, confusionMatrix, formatMetrics, type Metrics, type ClassMetrics } from './metrics.js';
export { writeReport, reportHtml, reportJson } from './report.js';
export { evaluateTextClassifier, classifierClassIndices, type TextEvalOptions, type TextEvaluation } from './text.js';
export {
  dataEfficiencyCurve,
  writeCurve,
  curveMarkdown,
  curveSvg,
  CURVE_METHODS,
  type CurveMethod,
  type CurveOptions,
  type CurveResult,
} from './curve.js';
export {
  evaluateSavedClassifier,
  condensedWarnings,
  type EvaluateSavedOptions,
  type SavedEvaluation,
} from './saved.js';
export { curveFromFiles, type CurveFilesOptions } from './curve-files.js';
