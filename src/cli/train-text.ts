/**
 * `graft train --text-column …`: text classification with an encoder model folder (Hugging Face
 * layout: config.json, tokenizer.json, onnx/model.onnx) on a CSV/JSONL file. Modes: features
 * (pooled frozen features + logistic head, cached), finetune (linear probe, then fine-tune the
 * encoder — all of it, the layers matching --trainable, or LoRA adapters with --lora-rank),
 * setfit (contrastive pairs, then a logistic head) and prompt (a cloze --template scored by the
 * pretrained masked-LM head at one --label-words word per class; zero-shot with --epochs 0, else the
 * whole graph fine-tuned). Saves a text classifier folder for `graft predict`.
 */
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { column, int, num } from './parse.js';
import type { TrainFlags } from './train.js';
import { readTextTable, subsetTable, loadSpamAssassin } from '../data/text-table.js';
import { stratifiedSplit } from '../data/splits.js';
import { openCache } from '../features/cache.js';
import { classificationMetrics, formatMetrics } from '../eval/metrics.js';
import { loadModelFolderSync } from '../text/model-folder.js';
import { addPooling, addClassifierHead, withProbabilities, type Pooling } from '../text/encoder.js';
import { TextFeatureExtractor, fitTextHead, finetuneText, gemmFromLogistic, predictTextProba, argmaxF, type FinetuneMode } from '../text/classify.js';
import { trainSetFit } from '../text/setfit.js';
import { saveTextClassifier, savePromptClassifier } from '../text/saved.js';
import { int8PostStep } from './export.js';
import { promptClassifier, finetunePrompt, predictPromptProba, parseTemplate, labelWordIds, encodePrompts, DEFAULT_TEMPLATE, type PromptSpec } from '../text/prompt.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import { GraftError } from '../util/errors.js';

/** Text-mode defaults that differ from the image ones (used when the flag was not given). */
const TEXT_DEFAULTS: Record<string, string> = { lr: '1e-4', epochs: '10', batchSize: '16', testFraction: '0.25' };
/** --mode setfit: --epochs counts passes over SetFit's pair budget (SetFit's num_epochs, 1), --batch-size pairs per step (16). */
const SETFIT_DEFAULTS: Record<string, string> = { ...TEXT_DEFAULTS, epochs: '1' };
/** --mode prompt: lr 3e-5 (the recipe chosen on the review snippets' validation split, src/text/prompt.ts). */
const PROMPT_DEFAULTS: Record<string, string> = { ...TEXT_DEFAULTS, lr: '3e-5' };

export async function textCommand(o: TrainFlags) {
  const textColumn = o['textColumn'] as string;
  // No default here: readTextTable uses 'label' for files with a header and guesses it for headerless ones.
  const labelColumn = o['labelColumn'] as string | undefined;
  const pooling = (o['pooling'] as Pooling | undefined) ?? 'mean';
  const mode = o.mode === 'finetune' || o.mode === 'features' || o.mode === 'setfit' || o.mode === 'prompt' ? o.mode : 'features';
  const m = loadModelFolderSync(o.model);
  const maxLength = o['maxLength'] ? int(o['maxLength'] as string, '--max-length') : Math.min(128, m.tokenizer.modelMaxLength);
  if (m.maxPositions && maxLength > m.maxPositions) throw new GraftError(`--max-length ${maxLength} exceeds the model's ${m.maxPositions} positions`);
  // `--data spam-assassin`: the SpamAssassin corpus from the npm package (ham vs spam).
  const table = o.data === 'spam-assassin' ? loadSpamAssassin() : readTextTable(o.data, { textColumn: column(textColumn), ...(labelColumn !== undefined ? { labelColumn: column(labelColumn) } : {}) });
  const seed = int(o.seed, '--seed');
  const split = stratifiedSplit(table.y, {
    testFraction: num(o.testFraction ?? TEXT_DEFAULTS['testFraction']!, '--test-fraction'),
    ...(o.labelsPerClass ? { perClass: int(o.labelsPerClass, '--labels-per-class') } : {}),
    seed,
  });
  const train = subsetTable(table, split.train);
  const test = subsetTable(table, split.test);
  const out = o.out ?? 'graft-text-classifier';
  const source = table.source;
  const warn = (msg: string) => process.stderr.write(msg + '\n');
  const bar = o.json || !process.stderr.isTTY ? null : new cliProgress.SingleBar({ format: '{task} |{bar}| {value}/{total} {unit}', stream: process.stderr }, cliProgress.Presets.shades_classic);
  const progress = (task: string, unit: string) => {
    let started = false;
    return (done: number, total: number) => {
      if (!bar) return;
      if (!started) { bar.start(total, 0, { task, unit }); started = true; }
      bar.update(done);
      if (done >= total) { bar.stop(); started = false; }
    };
  };
  const t0 = Date.now();
  let classifier;
  const report: Record<string, unknown> = { mode, model: o.model, data: o.data, classes: table.classes, train: train.texts.length, test: test.texts.length, maxLength, pooling };
  if (mode === 'prompt') {
    // Check the template, the label words and the numbers before any work.
    if (o['loraRank'] !== undefined) throw new GraftError('--lora-rank does not apply to --mode prompt (it fine-tunes the whole encoder and masked-LM head)');
    if (o.cache !== undefined) throw new GraftError('--cache does not apply to --mode prompt (it caches no features)');
    if (o.trainable !== undefined && o.trainable !== 'all') throw new GraftError('--trainable does not apply to --mode prompt (it fine-tunes the whole encoder and masked-LM head)');
    const spec = promptSpec(o, m.tokenizer, table.classes, maxLength);
    const epochs = int(o.epochs, '--epochs'), batchSize = int(o.batchSize, '--batch-size');
    if (epochs < 0) throw new GraftError(`--epochs must be 0 (zero-shot) or more, got ${epochs}`);
    if (batchSize < 1) throw new GraftError(`--batch-size must be at least 1, got ${batchSize}`);
    delete report['pooling'];
    const tuned = epochs === 0
      ? undefined
      : await finetunePrompt(m, train.texts, train.y, {
        ...spec, maxLength, seed, source, rows: train.rows, warn, epochs, minSteps: 0, batchSize, lr: num(o.lr, '--lr'), weightDecay: num(o.weightDecay, '--weight-decay'),
        ...(o.clipNorm !== undefined ? { clipNorm: num(o.clipNorm, '--clip-norm') } : {}),
        onStep: (s) => progress('fine-tune', 'steps')(s.step, s.steps),
      });
    const c = tuned ?? promptClassifier(m, spec);
    Object.assign(report, { template: c.template.template, labelWords: c.labelWords, epochs, steps: tuned?.steps ?? 0, ...(tuned ? { finalLoss: tuned.losses.at(-1) } : {}) });
    const P = await predictPromptProba(c, m.tokenizer, test.texts, { maxLength, source, rows: test.rows, warn });
    const words = c.labelWords.map((w, k) => `${w} → ${table.classes[k]}`).join(', ');
    return finishText(o, report, P, test.y, table.classes, t0, () => savePromptClassifier(c, out, { from: o.model, labels: table.classes, maxLength }),
      `text prompt (${epochs === 0 ? 'zero-shot' : `${report['steps']} fine-tuning steps`}): ${train.texts.length} training texts, ${test.texts.length} test texts, max length ${maxLength}, template ${JSON.stringify(c.template.template)}, label words ${words}`, out);
  }
  const extractor = new TextFeatureExtractor(m, pooling);
  const feat = (t: typeof train, task: string) =>
    extractor.extract(t.texts, { maxLength, source, rows: t.rows, warn, ...(o.cache ? { cache: openCache(o.cache) } : {}), onProgress: (p) => progress(task, 'texts')(p.done, p.total) });
  if (mode === 'setfit') {
    // --epochs: passes over SetFit's pair budget (20 iterations · 2 pairs per text; default 1); --batch-size: pairs per step.
    const epochs = int(o.epochs, '--epochs'), pairsPerStep = int(o.batchSize, '--batch-size');
    if (epochs < 1) throw new GraftError(`--epochs must be at least 1, got ${epochs}`);
    if (pairsPerStep < 1) throw new GraftError(`--batch-size must be at least 1, got ${pairsPerStep}`);
    const r = await trainSetFit(m, train.texts, train.y, { pooling, maxLength, seed, epochs, pairsPerStep, lr: num(o.lr, '--lr'), source, rows: train.rows, warn, onStep: (s) => progress('contrastive', 'steps')(s.step, s.steps) });
    classifier = addClassifierHead(addPooling(r.encoder, pooling), gemmFromLogistic(r.head), { probabilities: true });
    await r.extractor.release();
    Object.assign(report, { epochs, pairsPerStep, steps: r.steps, pairBatchTexts: r.maxBatchTexts });
  } else {
    const F = await feat(train, 'features');
    const head = await fitTextHead(F, train.y, seed);
    report['probe'] = { l2: head.l2 };
    if (mode === 'features') {
      classifier = addClassifierHead(extractor.graph, gemmFromLogistic(head), { probabilities: true });
    } else {
      const loraRank = o['loraRank'] ? int(o['loraRank'] as string, '--lora-rank') : undefined;
      const ftMode: FinetuneMode = loraRank ? 'lora' : o.trainable !== 'all' ? 'top' : 'full';
      const init = (o['init'] as string | undefined) ?? 'probe';
      const r = await finetuneText(m, train.texts, train.y, {
        mode: ftMode, pooling, maxLength, classes: table.classes.length, seed, source, rows: train.rows, warn,
        ...(init === 'probe' ? { head } : {}),
        ...(ftMode === 'top' ? { trainable: o.trainable } : {}),
        ...(loraRank ? { loraRank, lr: num(o.lr, '--lr') * 5 } : { lr: num(o.lr, '--lr') }),
        epochs: int(o.epochs, '--epochs'), batchSize: int(o.batchSize, '--batch-size'), weightDecay: num(o.weightDecay, '--weight-decay'),
        onStep: (s) => progress('fine-tune', 'steps')(s.step, s.steps),
      });
      classifier = withProbabilities(r.graph);
      Object.assign(report, { finetune: ftMode, init, steps: r.steps, finalLoss: r.losses[r.losses.length - 1] });
    }
  }
  await extractor.release();
  const P = await predictTextProba(classifier, m.tokenizer, test.texts, { maxLength, source, rows: test.rows, warn });
  const saved = classifier;
  finishText(o, report, P, test.y, table.classes, t0, () => saveTextClassifier(saved, out, { from: o.model, labels: table.classes, settings: { maxLength, pooling, mode } }),
    `text ${mode}: ${train.texts.length} training texts, ${test.texts.length} test texts, max length ${maxLength}, ${pooling} pooling`, out);
  // --int8: the saved folder quantized too, calibrated on the training texts, into OUT-int8
  if (o['int8']) await int8PostStep(out, { texts: train.texts }, !!o.json);
}

/** Test metrics into the report, save, then print the report (--json) or a summary. */
function finishText(o: TrainFlags, report: Record<string, unknown>, P: Float32Array[], y: readonly number[], classes: string[], t0: number, save: () => void, summary: string, out: string): void {
  const metrics = classificationMetrics([...y], argmaxF(P), classes);
  report['test'] = metrics;
  report['seconds'] = (Date.now() - t0) / 1000;
  save();
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  process.stdout.write(`${summary}\n` + formatMetrics(metrics, 'test') + `saved ${out}/model.onnx with its tokenizer and labels.json\n`);
}

/** --mode prompt: the template and one label word per class (class k ↔ word k, classes in the table's order), checked against the tokenizer. */
function promptSpec(o: TrainFlags, tokenizer: TextTokenizer, classes: readonly string[], maxLength: number): PromptSpec {
  const order = `the order of the class names (numeric labels ascending, others alphabetical): ${classes.join(', ')}`;
  const raw = o['labelWords'] as string | undefined;
  if (raw === undefined) throw new GraftError(`--mode prompt needs --label-words: one word per class, in ${order}`, 'e.g. --label-words bad,good');
  const words = raw.split(',').map((w) => w.trim());
  if (words.some((w) => !w)) throw new GraftError(`--label-words "${raw}" holds an empty word`);
  if (words.length !== classes.length)
    throw new GraftError(`--label-words gives ${words.length} word${words.length === 1 ? '' : 's'} (${words.join(', ')}) for ${classes.length} classes: give one per class, in ${order}`);
  const template = (o['template'] as string | undefined) ?? DEFAULT_TEMPLATE;
  const flagged = <T>(flag: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof GraftError) throw new GraftError(`${flag}: ${e.message}`, e.hint);
      throw e;
    }
  };
  // the template must leave room for text at --max-length (encoding an empty text checks it)
  flagged('--template', () => encodePrompts(tokenizer, [''], parseTemplate(tokenizer, template), { maxLength }));
  flagged('--label-words', () => labelWordIds(tokenizer, words));
  return { template, labelWords: words };
}

/** Flags only text classification reads; text defaults for shared flags left unset. */
export function textOptions(cmd: Command): Command {
  cmd
    .option('--text-column <name>', 'text classification: the column (CSV header name, 0-based index for headerless files, or JSONL field) holding the text')
    .option('--label-column <name>', 'text classification: the column holding the label (default: label, or guessed for headerless files)')
    .addOption(new Option('--pooling <kind>', 'text: how token states become one vector').choices(['mean', 'cls']).default('mean'))
    .option('--max-length <n>', 'text: longest input in tokens (longer texts are truncated with a warning; default min(128, the model\'s))')
    .option('--lora-rank <r>', 'text finetune: train LoRA adapters of this rank on the attention and feed-forward matrices instead of the weights (at 5× --lr, alpha = 2·rank)')
    .addOption(new Option('--init <head>', 'text finetune: start the head from the fitted logistic probe (linear probe, then fine-tune) or at random').choices(['probe', 'random']).default('probe'))
    .option('--template <text>', `text --mode prompt: cloze template holding {text} and the tokenizer's mask token once each (default "${DEFAULT_TEMPLATE}")`)
    .option('--label-words <list>', 'text --mode prompt: comma-separated label words, one per class in the order of the class names (numeric labels ascending, others alphabetical), each one token of the vocabulary');
  cmd.hook('preAction', (c) => {
    if (c.getOptionValue('textColumn') === undefined) return;
    const mode = c.getOptionValue('mode');
    // Flags with defaults that --mode prompt does not read: refuse them only when given on the command line.
    const unread = mode === 'prompt' ? ['pooling', 'init'].filter((k) => c.getOptionValueSource(k) === 'cli') : [];
    if (unread.length) throw new GraftError(`${unread.map((k) => `--${k}`).join(', ')} ${unread.length > 1 ? 'do' : 'does'} not apply to --mode prompt (it reads the [MASK] position with the masked-LM head, no pooling and no new head)`);
    for (const [k, v] of Object.entries(mode === 'setfit' ? SETFIT_DEFAULTS : mode === 'prompt' ? PROMPT_DEFAULTS : TEXT_DEFAULTS))
      if (c.getOptionValueSource(k) === 'default' || c.getOptionValue(k) === undefined) c.setOptionValue(k, v);
  });
  return cmd;
}
