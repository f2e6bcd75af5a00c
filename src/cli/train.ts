/**
 * `graft train`: one command, one file per mode (train-finetune.ts, train-features.ts); this file
 * holds the flags they share and picks the mode.
 */
import type { TrainableSpec } from '../train/training-graph.js';
import { GraftError } from '../util/errors.js';
import { finetuneCommand } from './train-finetune.js';
import { featuresCommand } from './train-features.js';
import { textCommand } from './train-text.js';
import { autoCommand } from './train-auto.js';

export interface TrainFlags {
  model: string; data: string; mode: string; out?: string; labelsData?: string; cache?: string; node?: string; valFraction: string; maxPerClass?: string; epochs: string; batchSize: string; lr: string; optimizer: 'adamw' | 'sgd';
  momentum: string; weightDecay: string; clipNorm?: string; labelSmoothing: string; trainable: string; labelsPerClass?: string;
  testFraction?: string; preprocess: 'mnist' | 'stretch'; pixelMax: string; seed: string; json?: boolean;
  /** Flags added by a mode's own file. */
  [flag: string]: unknown;
}

export function parseTrainable(s: string): TrainableSpec {
  if (s === 'all') return 'all';
  if (s.startsWith('after:')) return { after: s.slice(6) };
  return { pattern: s };
}

/** Flags (without defaults) only image/CSV `--mode finetune` reads: given to another mode they would be silently ignored. */
const FINETUNE_ONLY: [key: string, flag: string][] = [
  ['schedule', '--schedule'], ['warmup', '--warmup'], ['lrFind', '--lr-find'], ['earlyStopping', '--early-stopping'],
  ['classWeights', '--class-weights'], ['lrDecay', '--lr-decay'], ['layerGroups', '--layer-groups'], ['unfreezeEvery', '--unfreeze-every'],
  ['checkpointDir', '--checkpoint-dir'], ['resume', '--resume'], ['keepCheckpoints', '--keep-checkpoints'], ['newHead', '--new-head/--no-new-head'],
  ['cut', '--cut'], ['topBlocks', '--top-blocks'], ['full', '--full'], ['augment', '--augment'], ['views', '--views'],
  ['loraAlpha', '--lora-alpha'], ['loraMatch', '--lora-match'], ['untie', '--untie'],
];

function rejectFinetuneFlags(o: TrainFlags, mode: string, alsoLora: boolean): void {
  const given = [...FINETUNE_ONLY, ...(alsoLora ? [['loraRank', '--lora-rank'] as [string, string]] : [])].filter(([k]) => o[k] !== undefined).map(([, f]) => f);
  if (given.length) throw new GraftError(`${given.join(', ')} ${given.length > 1 ? 'apply' : 'applies'} to image fine-tuning (--mode finetune), not to ${mode}`);
}

/** Flags only text `--mode prompt` reads (src/cli/train-text.ts). */
const PROMPT_ONLY: [key: string, flag: string][] = [['template', '--template'], ['labelWords', '--label-words']];

export async function trainCommand(o: TrainFlags) {
  const autoFlags = [['budget', '--budget'], ['folds', '--folds']].filter(([k]) => o[k!] !== undefined).map(([, f]) => f);
  if (o.mode !== 'auto' && autoFlags.length) throw new GraftError(`${autoFlags.join(', ')} ${autoFlags.length > 1 ? 'apply' : 'applies'} to --mode auto (the default), not to --mode ${o.mode}`);
  const promptFlags = PROMPT_ONLY.filter(([k]) => o[k] !== undefined).map(([, f]) => f);
  if (o.mode !== 'prompt' && promptFlags.length)
    throw new GraftError(`${promptFlags.join(', ')} ${promptFlags.length > 1 ? 'apply' : 'applies'} to text prompt classification (--mode prompt), not to --mode ${o.mode}`);
  if (o.mode === 'prompt' && o['textColumn'] === undefined) throw new GraftError('--mode prompt is for text classification: give --text-column');
  if (o['textColumn'] !== undefined) {
    rejectFinetuneFlags(o, 'text classification', false);
    return o.mode === 'auto' ? autoCommand(o) : textCommand(o);
  }
  // --mode auto on images: the finetune flags configure its fine-tuned candidate
  if (o.mode === 'auto') return autoCommand(o);
  if (o.mode === 'setfit') throw new GraftError('--mode setfit is for text classification: give --text-column');
  if (o.mode === 'features') {
    rejectFinetuneFlags(o, '--mode features', true);
    return featuresCommand(o);
  }
  return finetuneCommand(o);
}
