/**
 * Saved text classifiers: a folder with model.onnx (encoder + pooling + head → probabilities, class
 * names and text settings in its metadata), the tokenizer files, config.json and labels.json; and
 * prediction from such a folder. A prompt classifier (mode 'prompt', src/text/prompt.ts) is saved the
 * same way: its model.onnx is encoder + MLM head → `logits` over the label words, and its settings
 * record the template and the label words (one per class, in the order of labels.json), so that
 * prediction encodes each text as the cloze and applies the softmax itself.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { atomicWrite, readOnnx, writeOnnx } from '../formats/onnx.js';
import { writeFolderAtomic, MODEL_FOLDER_FILES } from '../util/atomic.js';
import { getLabels, setLabels } from '../formats/preprocess.js';
import { GraftError } from '../util/errors.js';
import { loadTokenizerSync, type TextTokenizer } from './tokenizer.js';
import { isTextEncoder, LOGITS, type Pooling } from './encoder.js';
import { predictTextProba } from './classify.js';
import {
  parseTemplate,
  labelWordIds,
  predictPromptProba,
  type PromptClassifier,
  type PromptPredictOptions,
} from './prompt.js';

export const TEXT_METADATA = 'graft.text';

export interface TextSettings {
  maxLength: number;
  /** How token states become one vector (not used by mode 'prompt'). */
  pooling?: Pooling;
  mode: string;
  /** Mode 'prompt': the cloze template ({text} and the mask token once each). */
  template?: string;
  /** Mode 'prompt': one label word per class, in the order of the labels. */
  labelWords?: string[];
}

/** Write the classifier folder; `from` is the model folder whose tokenizer and config are copied. */
export function saveTextClassifier(
  g: Graph,
  dir: string,
  o: { from: string; labels: string[]; settings: TextSettings },
): void {
  if (o.settings.mode === 'prompt') checkPromptSettings(o.settings, o.labels, dir);
  const out = g.clone();
  setLabels(out, o.labels);
  out.metadata[TEXT_METADATA] = JSON.stringify(o.settings);
  // one unit: a failure part-way leaves the previous folder as it was, never old and new files mixed
  writeFolderAtomic(
    dir,
    (stage) => {
      for (const f of [
        'tokenizer.json',
        'tokenizer_config.json',
        'config.json',
        'special_tokens_map.json',
        'vocab.txt',
      ])
        if (existsSync(join(o.from, f))) atomicWrite(join(stage, f), readFileSync(join(o.from, f)));
      writeOnnx(out, join(stage, 'model.onnx'));
      atomicWrite(join(stage, 'labels.json'), new TextEncoder().encode(JSON.stringify(o.labels, null, 2) + '\n'));
    },
    { replaces: MODEL_FOLDER_FILES },
  );
}

/** Save a prompt classifier (from promptClassifier or finetunePrompt): labels[k] is the class of labelWords[k]. */
export function savePromptClassifier(
  c: PromptClassifier,
  dir: string,
  o: { from: string; labels: string[]; maxLength: number },
): void {
  saveTextClassifier(c.graph, dir, {
    from: o.from,
    labels: o.labels,
    settings: { maxLength: o.maxLength, mode: 'prompt', template: c.template.template, labelWords: [...c.labelWords] },
  });
}

function checkPromptSettings(
  s: TextSettings,
  labels: readonly string[],
  where: string,
): { template: string; labelWords: string[] } {
  if (typeof s.template !== 'string' || !Array.isArray(s.labelWords))
    throw new GraftError(`${where}: a prompt classifier must record its template and label words`);
  if (s.labelWords.length !== labels.length)
    throw new GraftError(
      `${where}: ${s.labelWords.length} label words (${s.labelWords.join(', ')}) for ${labels.length} classes (${labels.join(', ')})`,
    );
  return { template: s.template, labelWords: s.labelWords };
}

/** Is this a folder written by saveTextClassifier (model.onnx reading input_ids, and a tokenizer.json)? */
export function isTextClassifierFolder(path: string): boolean {
  return existsSync(join(path, 'tokenizer.json')) && existsSync(join(path, 'model.onnx'));
}

export interface TextClassifier {
  graph: Graph;
  tokenizer: TextTokenizer;
  labels: string[];
  settings: TextSettings;
  /** Mode 'prompt': the graph with its parsed template and label-word ids. */
  prompt?: PromptClassifier;
}

export function loadTextClassifier(dir: string): TextClassifier {
  if (!isTextClassifierFolder(dir))
    throw new GraftError(`${dir} is not a text classifier folder (model.onnx and tokenizer.json)`);
  const graph = readOnnx(join(dir, 'model.onnx'));
  if (!isTextEncoder(graph)) throw new GraftError(`${dir}/model.onnx does not read input_ids: not a text model`);
  const raw = graph.metadata[TEXT_METADATA];
  const settings: TextSettings = raw
    ? (JSON.parse(raw) as TextSettings)
    : { maxLength: 128, pooling: 'mean', mode: 'unknown' };
  const tokenizer = loadTokenizerSync(dir, { maxLength: settings.maxLength });
  const labels = getLabels(graph) ?? [];
  if (settings.mode !== 'prompt') return { graph, tokenizer, labels, settings };
  const { template, labelWords } = checkPromptSettings(settings, labels, `${dir}/model.onnx`);
  if (!graph.outputs.some((v) => v.name === LOGITS))
    throw new GraftError(`${dir}/model.onnx: a prompt classifier must output ${LOGITS} (the label words' scores)`);
  const prompt: PromptClassifier = {
    graph,
    template: parseTemplate(tokenizer, template),
    labelWords: [...labelWords],
    labelIds: labelWordIds(tokenizer, labelWords),
  };
  return { graph, tokenizer, labels, settings, prompt };
}

export interface TextPrediction {
  text: string;
  top: { label: string; index: number; probability: number }[];
}

/** Top classes for each text. An empty (or whitespace-only) text is a GraftError naming it, as in training. */
export async function predictTexts(
  c: TextClassifier,
  texts: readonly string[],
  o: { top?: number } = {},
): Promise<TextPrediction[]> {
  texts.forEach((t, i) => {
    if (!t.trim())
      throw new GraftError(
        `input ${i + 1} of ${texts.length} is an empty text`,
        'give each text to classify as a non-empty argument',
      );
  });
  const P = await textClassifierProba(c, texts, { source: 'input' });
  return P.map((p, i) => {
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]!).slice(0, o.top ?? p.length);
    return {
      text: texts[i]!,
      top: order.map((k) => ({ label: c.labels[k] ?? `class ${k}`, index: k, probability: p[k]! })),
    };
  });
}

/** Prediction options, the same for every mode (maxLength defaults to the classifier's recorded one). */
export type TextProbaOptions = PromptPredictOptions;

/** Class probabilities [labels] per text from a saved classifier (any mode: prompt classifiers apply the softmax over their label words). */
export async function textClassifierProba(
  c: TextClassifier,
  texts: readonly string[],
  o: TextProbaOptions = {},
): Promise<Float32Array[]> {
  const opts = { ...o, maxLength: o.maxLength ?? c.settings.maxLength };
  return c.prompt
    ? predictPromptProba(c.prompt, c.tokenizer, texts, opts)
    : predictTextProba(c.graph, c.tokenizer, texts, opts);
}
