/**
 * `graft/adapt`: Domain adaptation: in the network (DANN, MMD, Deep CORAL, AdaBN, entropy minimization, self-training) and on features (CORAL, subspace alignment, self-training), with label-free model selection.
 */
export {
  dann,
  dannLoss,
  dannLambda,
  adaptFit,
  sourceOnlyLoss,
  featureDim,
  type AdaptLoss,
  type AdaptFitOptions,
  type DannOptions,
} from './dann.js';
export { mmdLoss, deepCoralLoss, alignFit, type AlignOptions } from './mmd.js';
export {
  adaptWithSource,
  SOURCE_NETWORK_METHODS,
  SOURCE_METHOD_WEIGHTS,
  type SourceNetworkMethod,
  type AdaptWithSourceOptions,
  type AdaptWithSourceResult,
} from './with-source.js';
export { adaBn, type AdaBnOptions, type AdaBnResult } from './adabn.js';
export {
  entropyLoss,
  entropyMinimize,
  batchNormAffine,
  hasBatchNorm,
  type EntropyOptions,
  type EntropyResult,
} from './entropy.js';
export {
  selfTrainNetwork,
  temperedCrossEntropy,
  type NetSelfTrainOptions,
  type NetSelfTrainResult,
} from './self-train-net.js';
export {
  adaptNetwork,
  defaultNetworkGrid,
  NETWORK_METHODS,
  type NetworkMethod,
  type AdaptNetworkOptions,
  type AdaptNetworkResult,
} from './source-free.js';
export { coral, coralMap, type CoralOptions } from './coral.js';
export { subspaceAlignment, pcaBasis, type SubspaceOptions } from './subspace.js';
export { selfTrainFeatures, type SelfTrainingOptions } from './self-training.js';
export { sourceOnly, composeLinear, type LabelledFeatures, type FeatureAdaptResult } from './feature-head.js';
export {
  adaptFeatures,
  runFeatureMethod,
  defaultGrid,
  FEATURE_METHODS,
  type FeatureMethod,
  type AdaptFeaturesOptions,
  type AdaptFeaturesResult,
} from './features.js';
export {
  informationMaximization,
  reverseValidation,
  selectBest,
  selectOverUnadapted,
  NO_HARM_MARGIN,
  type Candidate,
  type GuardedSelection,
} from './selection.js';
export { predictLogits, predictClassProba, calibrateTemperature } from './predict.js';
export { smallBnCnn, type BnCnnOptions } from './bn-cnn.js';
export {
  adaptImages,
  ADAPT_METHODS,
  WITH_SOURCE_METHODS,
  SCRATCH_MODEL,
  type AdaptMethod,
  type AdaptImagesOptions,
  type AdaptImagesResult,
  type AdaptReport,
} from './images.js';
