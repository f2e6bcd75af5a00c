/**
 * `graft train prompt`: prompt-based text classification: each text becomes a cloze (--template)
 * that the pretrained masked-LM head scores at one label word per class (--label-words); zero-shot
 * with --epochs 0, else the whole graph fine-tuned. One call into trainTextClassifier.
 */
import { Command } from 'commander';
import { DEFAULT_TEMPLATE } from '../text/prompt.js';
import { TEXT_TRAIN_DEFAULTS } from '../text/train-text.js';
import { int, num } from './parse.js';
import { textDataFlags, textDataOptions, runTextTraining, type TextDataFlags } from './train-text.js';

const D = TEXT_TRAIN_DEFAULTS;

interface PromptFlags extends TextDataFlags {
  template?: string;
  labelWords?: string;
  epochs: string;
  batchSize: string;
  lr: string;
  weightDecay: string;
  clipNorm?: string;
}

async function trainPrompt(o: PromptFlags): Promise<void> {
  await runTextTraining(
    o,
    'prompt',
    {
      ...textDataOptions(o),
      ...(o.template !== undefined ? { template: o.template } : {}),
      ...(o.labelWords !== undefined ? { labelWords: o.labelWords.split(',').map((w) => w.trim()) } : {}),
      epochs: int(o.epochs, '--epochs'),
      batchSize: int(o.batchSize, '--batch-size'),
      lr: num(o.lr, '--lr'),
      weightDecay: num(o.weightDecay, '--weight-decay'),
      ...(o.clipNorm !== undefined ? { clipNorm: num(o.clipNorm, '--clip-norm') } : {}),
    },
    ({ report: t }) => {
      const words = (t['labelWords'] as string[]).map((w, k) => `${w} → ${t.classes[k]}`).join(', ');
      return [
        `text prompt (${t['epochs'] === 0 ? 'zero-shot' : `${String(t['steps'])} fine-tuning steps`}): ${t.train} training texts, ${t.test?.n ?? 0} test texts, max length ${t.maxLength}, template ${JSON.stringify(t['template'])}, label words ${words}`,
      ];
    },
  );
}

export function trainPromptCommand(): Command {
  const cmd = new Command('prompt').description(
    'prompt-based text classification: a cloze template scored by the masked-LM head at one label word per class, zero-shot (--epochs 0) or fine-tuned; saves model.onnx, the tokenizer, labels.json, report.html, report.json',
  );
  textDataFlags(cmd)
    .option(
      '--template <text>',
      `cloze template holding {text} and the tokenizer's mask token once each (default "${DEFAULT_TEMPLATE}")`,
    )
    .option(
      '--label-words <list>',
      'comma-separated label words, one per class in the order of the class names (numeric labels ascending, others alphabetical), each one token of the vocabulary',
    )
    .option('--epochs <n>', 'passes over the training texts (0: zero-shot, nothing trains)', String(D.prompt.epochs))
    .option('--batch-size <n>', 'texts per step', String(D.prompt.batchSize))
    .option('--lr <x>', 'peak learning rate', String(D.prompt.lr))
    .option('--weight-decay <x>', 'AdamW weight decay', String(D.shared.weightDecay))
    .option('--clip-norm <x>', 'clip the global gradient norm')
    .addHelpText(
      'after',
      '\nExample:\n  graft train prompt --model bert-mini --data reviews.csv --text-column review --label-words bad,good --epochs 0 --out reviews-prompt\n',
    )
    .action(trainPrompt);
  return cmd;
}
