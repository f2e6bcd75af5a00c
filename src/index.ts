/**
 * Graft's public API. One call on top (finetuneImageCsv, fit); every layer underneath importable:
 * the graph, formats, autodiff, training graphs, optimizers and the onnxruntime session.
 */
export { Graph, type Node, type ValueInfo, type Attr, type Dim } from './graph/graph.js';
export { type Tensor, type DType, float32, int64, toNumbers } from './graph/tensor.js';
export { Builder, A } from './graph/builder.js';
export { upgradeOpset, makeBatchDynamic } from './graph/rewrites.js';
export { readOnnx, writeOnnx, encodeOnnx, decodeOnnx } from './formats/onnx.js';
export { readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors } from './formats/safetensors.js';
export { loadModel } from './formats/load.js';
export { Session, type Feeds, type RuntimeOptions } from './runtime/session.js';
export { buildBackward, type BackwardOptions } from './autodiff/backward.js';
export { gradCheck, weightedSumGradGraph, promoteToInputs } from './autodiff/grad-graph.js';
export { checkModel, modelGradients, type ModelCheck } from './autodiff/check-model.js';
export { probeShapes, type ShapeMap } from './autodiff/shapes.js';
export { RULES, hasRule } from './autodiff/rules/index.js';
export { type GradRule, type GradCtx, NoGradientRule } from './autodiff/rule.js';
export { compileTraining, selectTrainable, type TrainingOptions, type TrainingGraph, type TrainableSpec } from './train/training-graph.js';
export { addLoss, type LossSpec } from './train/losses.js';
export { Trainer, type TrainerOptions } from './train/trainer.js';
export { fit, predictLabels, accuracy, type Examples, type FitOptions } from './train/fit.js';
export { AdamW, SGD, clipGradNorm, makeOptimizer, type Optimizer, type OptimizerSpec } from './optim/optimizer.js';
export { finetuneImageCsv, evaluateModel, type FinetuneOptions, type FinetuneReport } from './finetune/classifier.js';
export { stratifiedSplit } from './data/splits.js';
export { GraftError } from './util/errors.js';
export { readTflite, decodeTflite } from './formats/tflite.js';
export { convertModel } from './formats/convert.js';
export { classifyImages } from './eval/classify.js';
export { imagesToTensor } from './data/image.js';
export { getPreprocess, setPreprocess, getLabels, setLabels, type ImagePreprocess } from './formats/preprocess.js';
export { readTfjs, readNsfwjs } from './formats/tfjs.js';
export { readIdx, readIdxDataset } from './data/idx.js';
export { listImageFolder } from './data/image-folder.js';
export { FeatureCache, cacheKey } from './features/cache.js';
export { extractFeatures, defaultFeatureNode } from './features/extract.js';
export * as logistic from './heads/logistic.js';
export {
  trainFeatureClassifier, exportFeatureClassifier, evaluateClassifier, saveClassifier,
  type FeatureTrainOptions, type FeatureTrainReport, type FeatureTrainResult, type Evaluation,
} from './features/classifier.js';
export { loadLabelledImages, type LabelledImages } from './data/labelled-images.js';
export { classificationMetrics, confusionMatrix, formatMetrics, type Metrics, type ClassMetrics } from './eval/metrics.js';
export { writeReport, reportHtml, reportJson } from './eval/report.js';
