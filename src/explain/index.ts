/** `graft/explain`: why a classifier decides: Grad-CAM heatmaps for image models, token attributions for text classifiers. */
export {
  explainImages,
  GradCam,
  gradCam,
  lastConvActivation,
  type ImageExplanation,
  type ExplainImageOptions,
  type GradCamOptions,
  type GradCamTensors,
  type Heatmap,
} from './gradcam.js';
export { explainTexts, wordEmbeddingValue, type TextExplanation, type ExplainTextOptions } from './text.js';
export { attributionsHtml } from './html.js';
export { overlayPng, resizeBilinear, jet } from './overlay.js';
export { scoreValue, resolveClass, scoreGradGraph, type ScoreValue, type ScoreGradGraph } from './target.js';
export { explainToFolder, type ExplainFolderOptions, type FolderExplanation } from './folder.js';
