/**
 * `graft/heads`: Heads fitted on feature vectors: logistic regression (the `logistic` namespace), a small MLP, nearest class mean, k nearest neighbours.
 */
export * as logistic from './logistic.js';
export { fitMlp, MlpHead, type MlpOptions } from './mlp.js';
export { fitNcm, fitKnn, NearestClassMean, KNearestNeighbors, type NcmOptions, type KnnOptions } from './neighbors.js';
export { HEAD_KINDS, type FeatureHead, type HeadKind } from './head.js';
