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
export { compileTraining, selectTrainable, findTies, untieParameters, type Tie, type TrainingOptions, type TrainingGraph, type TrainableSpec } from './train/training-graph.js';
export { addLoss, type LossSpec } from './train/losses.js';
export { Trainer, type TrainerOptions } from './train/trainer.js';
export { fit, predictLabels, accuracy, type Examples, type FitOptions } from './train/fit.js';
export { evaluate, resolveClassWeights, type FitResult, type EarlyStopping, type StepInfo, type EpochInfo } from './train/fit.js';
export { makeSchedule, type ScheduleSpec, type Schedule } from './train/schedule.js';
export { lrFind, findLr, lrFindSvg, lrFindAscii, writeLrFindSvg, type LrFindOptions, type LrFindResult } from './train/lr-finder.js';
export { writeCheckpoint, readCheckpoint, readLatestCheckpoint, listCheckpoints, type CheckpointState } from './train/checkpoint.js';
export { layerGroups, discriminativeScales } from './train/layer-groups.js';
export { AdamW, SGD, clipGradNorm, makeOptimizer, type Optimizer, type OptimizerSpec } from './optim/optimizer.js';
export { finetuneImageCsv, lrFindImageCsv, evaluateModel, type FinetuneOptions, type FinetuneReport, type NewHeadInfo } from './finetune/classifier.js';
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
export { fitMlp, MlpHead, type MlpOptions } from './heads/mlp.js';
export { fitNcm, fitKnn, NearestClassMean, KNearestNeighbors, type NcmOptions, type KnnOptions } from './heads/neighbors.js';
export { HEAD_KINDS, type FeatureHead, type HeadKind } from './heads/head.js';
export { decodeImages } from './data/image.js';
export {
  trainFeatureClassifier, exportFeatureClassifier, evaluateClassifier, saveClassifier,
  type FeatureTrainOptions, type FeatureTrainReport, type FeatureTrainResult, type Evaluation,
} from './features/classifier.js';
export { loadLabelledImages, type LabelledImages } from './data/labelled-images.js';
export { classificationMetrics, confusionMatrix, formatMetrics, type Metrics, type ClassMetrics } from './eval/metrics.js';
export { writeReport, reportHtml, reportJson } from './eval/report.js';
export { addLora, mergeLora, readSites as loraSites, type LoraOptions, type LoraResult, type LoraSite, type LoraTarget } from './finetune/lora.js';
// Text classification (tokenizers, model folders, text datasets, features/fine-tuning/SetFit, TF-IDF).
export { loadTokenizer, loadTokenizerSync, TextTokenizer, type EncodeBatchOptions, type EncodedBatch } from './text/tokenizer.js';
export { loadModelFolder, loadModelFolderSync, isTextModelFolder, type TextModelFolder } from './text/model-folder.js';
export { readTextTable, loadSpamAssassin, subsetTable, type TextTable, type TextTableOptions } from './data/text-table.js';
export { addPooling, addClassifierHead, withProbabilities, textFeeds, type Pooling } from './text/encoder.js';
export { TextFeatureExtractor, fitTextHead, finetuneText, predictTextProba, gemmFromLogistic, type TextFinetuneOptions, type TextFinetuneResult } from './text/classify.js';
export { trainSetFit, pairBatches, cosinePairLoss, type SetFitOptions, type SetFitResult } from './text/setfit.js';
export { TfidfVectorizer, trainTfidfClassifier, tfidfClassifierGraph } from './text/tfidf.js';
export { TopLayerSplit, finetuneTopCached, type TokenStates, type TopFinetuneOptions, type TopFinetuneResult } from './text/top-layers.js';
export { finetunePrompt, promptClassifier, predictPromptProba, promptLogits, parseTemplate, labelWordIds, encodePrompts, readMlmHead, buildPromptGraph, DEFAULT_TEMPLATE, type PromptSpec, type PromptModel, type PromptClassifier, type PromptFinetuneOptions, type PromptFinetuneResult, type MlmHead, type HeadActivation, type ParsedTemplate } from './text/prompt.js';
export { saveTextClassifier, savePromptClassifier, loadTextClassifier, predictTexts, textClassifierProba, isTextClassifierFolder, type TextSettings, type TextClassifier, type TextPrediction, type TextProbaOptions } from './text/saved.js';
export { evaluateTextClassifier, classifierClassIndices, type TextEvalOptions, type TextEvaluation } from './eval/text.js';
// Causal LM fine-tuning, generation, warm-started translation, BLEU.
export { lmLoss, buildLmLoss, makeWindows, lmBatch, lmEvalGraph, perplexity, finetuneLm, linearSchedule, saveTextModelFolder, LM_LABELS, LM_MASK, type LmFinetuneOptions, type PerplexityResult, type WindowOptions } from './text/lm.js';
export { readCorpus, type CorpusOptions } from './text/lm-corpus.js';
export { CausalLm, generateText, pickToken, isSampling, type GenerateOptions, type SamplingOptions, type GeneratedText } from './text/generate.js';
export { buildSeq2Seq, reinitialize, seq2seqBatch, crossAttentionParams, type Seq2SeqOptions, type Seq2SeqPair } from './text/seq2seq.js';
export { trainSeq2Seq, seq2seqLoss, Seq2SeqDecoder, saveTranslationFolder, loadTranslator, translateTexts, readParallelJsonl, type TranslationConfig, type Seq2SeqTrainOptions } from './text/translate.js';
export { corpusBleu, tokenize13a, formatBleu, type BleuResult } from './text/bleu.js';
export {
  blockCuts, resolveCut, splitTopBlocks, cacheActivations, trainTopBlocks, predictStore, frozenFeatures, assembleTopBlocks, ActivationStore,
  type TopBlocksModel, type TopBlocksTrainOptions, type TopBlocksTrainResult, type ActivationOptions, type BlockCut,
} from './finetune/top-blocks.js';
export { finetuneImages, topBlocksForward, type ImageFinetuneOptions, type ImageFinetuneReport, type ImageFinetuneResult } from './finetune/image-finetune.js';
export { lrFindImages } from './finetune/image-finetune.js';
export { trainAuto, trainTextAuto, chooseByFolds, type ImageAutoOptions, type ImageAutoResult, type TextAutoOptions, type TextAutoResult, type AutoSelection, type AutoCandidate } from './finetune/auto.js';
export { lrFindTopBlocks, storeExamples, tailTraining } from './finetune/top-blocks.js';
export { sizeOf, batchOf, type ExampleBatches, type TrainingData } from './train/fit.js';
export { augmentedPixels, viewsToTensor, cropBox, colourJitter, augmentKey, DEFAULT_AUGMENT, type AugmentOptions } from './data/augment.js';
export { exportFinetuned, exportGraph, stripTraining, type ExportOptions as FinetuneExportOptions, type ExportResult } from './export/export.js';
// Domain adaptation in the network (labelled source → unlabelled target), shifted pairs, inductive transfer, curves.
export { dann, dannLoss, dannLambda, adaptFit, sourceOnlyLoss, featureDim, type AdaptLoss, type AdaptFitOptions, type DannOptions } from './adapt/dann.js';
export { mmdLoss, deepCoralLoss, alignFit, type AlignOptions } from './adapt/mmd.js';
export { adaptWithSource, SOURCE_NETWORK_METHODS, DEFAULT_WEIGHTS as SOURCE_METHOD_WEIGHTS, type SourceNetworkMethod, type AdaptWithSourceOptions, type AdaptWithSourceResult } from './adapt/with-source.js';
export { fashionShiftPair, applyShift, parseShift, describeShift, DEFAULT_SHIFT, type Shift, type DomainPair, type ShiftPairOptions } from './data/shifts.js';
export { withNewHead, featureNodeOf, outputClasses, trainMultiTask, exportMultiTask, type Task, type MultiTaskOptions, type MultiTaskResult } from './features/multi-task.js';
export { dataEfficiencyCurve, writeCurve, curveMarkdown, curveSvg, CURVE_METHODS, type CurveMethod, type CurveOptions, type CurveResult } from './eval/curve.js';
// Domain adaptation: source-free (AdaBN, entropy, network self-training), feature-level (CORAL, subspace, self-training), label-free selection.
export { adaBn, type AdaBnOptions, type AdaBnResult } from './adapt/adabn.js';
export { entropyLoss, entropyMinimize, batchNormAffine, hasBatchNorm, type EntropyOptions, type EntropyResult } from './adapt/entropy.js';
export { selfTrainNetwork, temperedCrossEntropy, type NetSelfTrainOptions, type NetSelfTrainResult } from './adapt/self-train-net.js';
export { adaptNetwork, defaultNetworkGrid, NETWORK_METHODS, type NetworkMethod, type AdaptNetworkOptions, type AdaptNetworkResult } from './adapt/source-free.js';
export { coral, coralMap, type CoralOptions } from './adapt/coral.js';
export { subspaceAlignment, pcaBasis, type SubspaceOptions } from './adapt/subspace.js';
export { selfTrainFeatures, type SelfTrainingOptions } from './adapt/self-training.js';
export { sourceOnly, composeLinear, type LabelledFeatures, type FeatureAdaptResult } from './adapt/feature-head.js';
export { adaptFeatures, runFeatureMethod, defaultGrid, FEATURE_METHODS, type FeatureMethod, type AdaptFeaturesOptions, type AdaptFeaturesResult } from './adapt/features.js';
export { informationMaximization, reverseValidation, selectBest, selectOverUnadapted, NO_HARM_MARGIN, type Candidate, type GuardedSelection } from './adapt/selection.js';
export { predictLogits, predictProba as predictClassProba, calibrateTemperature } from './adapt/predict.js';
export { smallBnCnn, type BnCnnOptions } from './adapt/bn-cnn.js';
export { shiftImages, PIXEL_SHIFTS, type PixelShift } from './data/shifts.js';
// Model hub: downloads into the shared Hugging Face cache, hf:/catalog model references.
export { pull, pullUrl, cachedSnapshot, type PullOptions, type PullResult, type UrlFile } from './hub/pull.js';
export { resolveModelRef, parseHfRef, pullCatalogEntry, type ResolveOptions } from './hub/resolve.js';
export { hubCacheDir, hubEndpoint, hubOffline, repoCacheDir } from './hub/cache.js';
export { MODEL_FILES } from './hub/glob.js';
export { CATALOG, findCatalogEntry, catalogNames, type CatalogEntry, type CatalogSource } from './hub/catalog.js';
// Transformers.js-layout model folders: preprocessing from preprocessor_config.json, fp32 chosen over quantized variants.
export { preprocessFromHfConfig, labelsFromHfConfig, chooseFolderOnnx, assertTrainableWeights } from './formats/hf-folder.js';
export { exportInt8, quantizeStatic, quantizeGraph, planQuantization, foldConstants, quantizeWeight, weightGrid, type Int8ExportOptions, type Int8Report, type CalibrationSet, type QuantizeOptions } from './export/quantize.js';
export { calibrate, Histogram, rangeOf, qparams, entropyThreshold, type CalibrationMethod, type ActivationType } from './export/calibrate.js';
