/**
 * Graft's public API. `import … from 'graft'` gives every name; each area is also its own entry
 * point, whose barrel (src/<area>/index.ts) lists what it offers:
 *
 *   graft/graph      the graph IR, Builder, rewrites          graft/formats   ONNX, TFLite, TF.js, safetensors, conversion
 *   graft/runtime    the onnxruntime Session                  graft/autodiff  gradient rules, buildBackward, checks
 *   graft/train      training graphs, fit, schedules, optims  graft/finetune  image fine-tuning, LoRA, auto, trainImageClassifier
 *   graft/features   frozen features, trainFeatureClassifier  graft/heads     logistic, MLP, nearest-mean, kNN heads
 *   graft/text       tokenizers, text classification, LM, MT  graft/data      splits, images, IDX, text tables, augmentation
 *   graft/eval       metrics, reports, curves                 graft/export    standalone export, int8 quantization
 *   graft/adapt      domain adaptation                        graft/hub       model downloads and the catalog
 *   graft/server     `graft serve` as a library (registry, batching, the Fastify app)
 *
 * One verb per idea, in every area:
 *   fit…       fit parameters to given examples: `fit` (on the one loop, `trainLoop`, with its batch
 *              sources and callbacks), and heads on fixed feature vectors (fitMlp, fitNcm, fitKnn,
 *              fitTextHead, logistic.fit…).
 *   finetune…  continue training a pretrained network's weights on new data (finetuneImageCsv,
 *              finetuneImages, finetuneText, finetunePrompt, finetuneLm).
 *   train…     one call from a dataset to a trained model by a named method; the …Classifier ones
 *              save a classifier folder with its report (trainImageClassifier, trainTextClassifier,
 *              trainFeatureClassifier, trainAuto, trainSetFit, trainTopBlocks, trainSeq2Seq).
 * Names are exported once, under the name their module gives them (no renamed re-exports).
 */
export * from './graph/index.js';
export * from './formats/index.js';
export * from './runtime/index.js';
export * from './autodiff/index.js';
export * from './train/index.js';
export * from './finetune/index.js';
export * from './features/index.js';
export * from './heads/index.js';
export * from './text/index.js';
export * from './data/index.js';
export * from './eval/index.js';
export * from './export/index.js';
export * from './adapt/index.js';
export * from './hub/index.js';
export * from './server/index.js';
export * from './explain/index.js';
export * from './scale/index.js';
export { GraftError } from './util/errors.js';
