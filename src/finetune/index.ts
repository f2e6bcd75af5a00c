/**
 * `graft/finetune`: Fine-tuning pretrained image networks: whole-network (CSV pixels), top blocks on cached activations, LoRA, the auto comparison, and trainImageClassifier (one call from data to a saved classifier).
 */
export {
  finetuneImageCsv,
  lrFindImageCsv,
  evaluateModel,
  type FinetuneOptions,
  type FinetuneReport,
  type NewHeadInfo,
} from './classifier.js';
export {
  addLora,
  mergeLora,
  loraSites,
  type LoraOptions,
  type LoraResult,
  type LoraSite,
  type LoraTarget,
} from './lora.js';
export {
  blockCuts,
  resolveCut,
  splitTopBlocks,
  cacheActivations,
  trainTopBlocks,
  predictStore,
  frozenFeatures,
  assembleTopBlocks,
  ActivationStore,
  type TopBlocksModel,
  type TopBlocksTrainOptions,
  type TopBlocksTrainResult,
  type ActivationOptions,
  type BlockCut,
} from './top-blocks.js';
export {
  finetuneImages,
  topBlocksForward,
  type ImageFinetuneOptions,
  type ImageFinetuneReport,
  type ImageFinetuneResult,
} from './image-finetune.js';
export { lrFindImages } from './image-finetune.js';
export {
  trainAuto,
  trainTextAuto,
  chooseByFolds,
  switchBar,
  type ImageAutoOptions,
  type ImageAutoResult,
  type TextAutoOptions,
  type TextAutoResult,
  type AutoSelection,
  type AutoCandidate,
} from './auto.js';
export { lrFindTopBlocks, storeExamples, tailTraining } from './top-blocks.js';
export {
  trainImageClassifier,
  trainImageAuto,
  lrFindImageData,
  isImageData,
  IMAGE_TRAIN_DEFAULTS,
  type TrainImagesOptions,
  type TrainImagesResult,
} from './train-images.js';
