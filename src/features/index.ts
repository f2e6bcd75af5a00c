/**
 * `graft/features`: Frozen-feature transfer: feature extraction and its cache, trainFeatureClassifier (one call from images to a saved classifier), multi-task heads.
 */
export { FeatureCache, cacheKey } from './cache.js';
export { extractFeatures, defaultFeatureNode } from './extract.js';
export {
  trainFeatureClassifier,
  exportFeatureClassifier,
  evaluateClassifier,
  saveClassifier,
  type FeatureTrainOptions,
  type FeatureTrainReport,
  type FeatureTrainResult,
  type Evaluation,
} from './classifier.js';
export {
  withNewHead,
  featureNodeOf,
  outputClasses,
  trainMultiTask,
  exportMultiTask,
  type Task,
  type MultiTaskOptions,
  type MultiTaskResult,
} from './multi-task.js';
