/**
 * `graft train`: a group of subcommands, one per way to make a classifier, each in its own file with
 * its own typed flags and help, each one call into the library:
 *   images    fine-tune an image network (CSV pixel rows, image folder, IDX)      train-images.ts
 *   features  a head on the frozen image backbone's features                       train-features.ts
 *   text      a text classifier: head on frozen features, or --finetune          train-text.ts
 *   setfit    SetFit text classification (few labels)                             train-setfit.ts
 *   prompt    cloze-prompt text classification (zero-shot or fine-tuned)          train-prompt.ts
 *   auto      compare methods on folds and keep the best (images or text)        train-auto.ts
 * The old one-command form (`graft train [--mode M] [--text-column C] …`) is mapped onto these by
 * `legacyTrainArgv` before parsing, with a note on stderr naming the new form.
 */
import { Command } from 'commander';
import { isImageData } from '../finetune/train-images.js';
import { GraftError } from '../util/errors.js';
import { explainUnknownFlags } from './train-common.js';
import { trainImagesCommand } from './train-images.js';
import { trainFeaturesCommand } from './train-features.js';
import { trainTextCommand } from './train-text.js';
import { trainSetFitCommand } from './train-setfit.js';
import { trainPromptCommand } from './train-prompt.js';
import { trainAutoCommand } from './train-auto.js';

export const TRAIN_SUBCOMMANDS = ['images', 'features', 'text', 'setfit', 'prompt', 'auto'] as const;

export function trainCommand(): Command {
  const train = new Command('train')
    .description(
      'train a classifier on a labelled dataset and save it (model.onnx, labels.json, report.html, report.json): graft train images|features|text|setfit|prompt|auto',
    )
    .addCommand(trainImagesCommand())
    .addCommand(trainFeaturesCommand())
    .addCommand(trainTextCommand())
    .addCommand(trainSetFitCommand())
    .addCommand(trainPromptCommand())
    .addCommand(trainAutoCommand())
    .addHelpText(
      'after',
      '\nThe old form `graft train --mode auto|finetune|features|setfit|prompt [--text-column C] …` still works: it runs the subcommand above that does the same.\n',
    );
  explainUnknownFlags(train);
  return train;
}

/** Options of `graft` itself that take a value (they may stand before `train`). */
const GLOBAL_WITH_VALUE = new Set(['--threads', '--device']);

function flagValue(args: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i]!.startsWith(flag + '=')) return args[i]!.slice(flag.length + 1);
  }
  return undefined;
}

/**
 * The old one-command form mapped onto a subcommand: `graft train --mode finetune …` becomes
 * `graft train images …` (text: `graft train text --finetune …`), `--mode features` becomes
 * `features` (text: `text`), setfit and prompt their own subcommands, and the default auto becomes
 * `auto` (a CSV of pixel rows: `images`, as it did). Returns argv unchanged when it is not that form.
 */
export function legacyTrainArgv(
  argv: readonly string[],
  note: (s: string) => void = (s) => process.stderr.write(s + '\n'),
): string[] {
  let i = 2;
  while (i < argv.length && argv[i]!.startsWith('-')) i += GLOBAL_WITH_VALUE.has(argv[i]!) ? 2 : 1;
  if (argv[i] !== 'train') return [...argv];
  const rest = argv.slice(i + 1);
  const first = rest[0];
  if (first === undefined || !first.startsWith('-') || first === '--help' || first === '-h') return [...argv];
  const mode = flagValue(rest, '--mode');
  const given = mode !== undefined;
  const args = rest.filter((a, k) => a !== '--mode' && rest[k - 1] !== '--mode' && !a.startsWith('--mode='));
  const text = flagValue(rest, '--text-column') !== undefined;
  const data = flagValue(rest, '--data') ?? '';
  const images = isImageData(data, flagValue(rest, '--labels-data'));
  const old = `graft train${given ? ` --mode ${mode}` : ''}${text ? ' --text-column …' : ''}`;
  let sub: string[];
  switch (mode ?? 'auto') {
    case 'auto':
      sub = text || images ? ['auto'] : ['images'];
      break;
    case 'finetune':
      sub = text ? ['text', '--finetune'] : ['images'];
      break;
    case 'features':
      sub = text ? ['text'] : ['features'];
      break;
    case 'setfit':
    case 'prompt':
      if (!text)
        throw new GraftError(
          `--mode ${mode} is for text classification: give --text-column`,
          `the new form: graft train ${mode} --model MODEL --data FILE --text-column COLUMN …`,
        );
      sub = [mode!];
      break;
    default:
      throw new GraftError(
        `--mode ${mode}: graft train now takes a subcommand: graft train ${TRAIN_SUBCOMMANDS.join('|')}`,
        'graft train --help describes each',
      );
  }
  // the old CSV fine-tuning default: one .onnx file
  if (sub[0] === 'images' && !images && flagValue(rest, '--out') === undefined) args.push('--out', 'graft-model.onnx');
  note(`graft: \`${old}\` is now \`graft train ${sub.join(' ')}\` (running that)`);
  return [...argv.slice(0, i + 1), ...sub, ...args];
}
