/**
 * `graft/text`: Text: tokenizers, encoder model folders, text classification (features, fine-tuning, SetFit, prompts, TF-IDF; trainTextClassifier is the one call), causal LM fine-tuning and generation, warm-started translation, BLEU.
 */
export {
  loadTokenizer,
  loadTokenizerSync,
  TextTokenizer,
  type EncodeBatchOptions,
  type EncodedBatch,
} from './tokenizer.js';
export { loadModelFolder, loadModelFolderSync, isTextModelFolder, type TextModelFolder } from './model-folder.js';
export { addPooling, addClassifierHead, withProbabilities, textFeeds, type Pooling } from './encoder.js';
export {
  TextFeatureExtractor,
  fitTextHead,
  finetuneText,
  predictTextProba,
  gemmFromLogistic,
  type TextFinetuneOptions,
  type TextFinetuneResult,
} from './classify.js';
export { trainSetFit, pairBatches, cosinePairLoss, type SetFitOptions, type SetFitResult } from './setfit.js';
export { TfidfVectorizer, trainTfidfClassifier, tfidfClassifierGraph } from './tfidf.js';
export {
  TopLayerSplit,
  finetuneTopCached,
  type TokenStates,
  type TopFinetuneOptions,
  type TopFinetuneResult,
} from './top-layers.js';
export {
  finetunePrompt,
  promptClassifier,
  predictPromptProba,
  promptLogits,
  parseTemplate,
  labelWordIds,
  encodePrompts,
  readMlmHead,
  buildPromptGraph,
  DEFAULT_TEMPLATE,
  type PromptSpec,
  type PromptModel,
  type PromptClassifier,
  type PromptFinetuneOptions,
  type PromptFinetuneResult,
  type MlmHead,
  type HeadActivation,
  type ParsedTemplate,
} from './prompt.js';
export {
  saveTextClassifier,
  savePromptClassifier,
  loadTextClassifier,
  predictTexts,
  textClassifierProba,
  isTextClassifierFolder,
  type TextSettings,
  type TextClassifier,
  type TextPrediction,
  type TextProbaOptions,
} from './saved.js';
export {
  lmLoss,
  buildLmLoss,
  makeWindows,
  lmBatch,
  lmEvalGraph,
  perplexity,
  finetuneLm,
  saveTextModelFolder,
  LM_LABELS,
  LM_MASK,
  type LmFinetuneOptions,
  type PerplexityResult,
  type WindowOptions,
} from './lm.js';
export { readCorpus, type CorpusOptions } from './lm-corpus.js';
export {
  CausalLm,
  generateText,
  pickToken,
  isSampling,
  type GenerateOptions,
  type SamplingOptions,
  type GeneratedText,
} from './generate.js';
export {
  buildSeq2Seq,
  reinitialize,
  seq2seqBatch,
  crossAttentionParams,
  type Seq2SeqOptions,
  type Seq2SeqPair,
} from './seq2seq.js';
export {
  trainSeq2Seq,
  seq2seqLoss,
  Seq2SeqDecoder,
  saveTranslationFolder,
  loadTranslator,
  translateTexts,
  readParallelJsonl,
  type TranslationConfig,
  type Seq2SeqTrainOptions,
} from './translate.js';
export { corpusBleu, tokenize13a, formatBleu, type BleuResult } from './bleu.js';
export { readTextData } from '../data/text-table.js';
export {
  trainTextClassifier,
  TEXT_METHODS,
  TEXT_TRAIN_DEFAULTS,
  type TextMethod,
  type TrainTextOptions,
  type TrainTextReport,
  type TrainTextResult,
} from './train-text.js';
export { finetuneLmFolder, type LmFolderOptions, type LmFolderReport } from './lm-folder.js';
export {
  trainTranslationFolder,
  type TranslationFolderOptions,
  type TranslationFolderReport,
} from './translation-folder.js';
export { openCausalLm, tokenizerDirOf, type OpenLmOptions } from './open-lm.js';
