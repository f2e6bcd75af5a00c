/**
 * What the `graft train` subcommands share: the flags every one of them takes (declared here once,
 * with their defaults), small parsers, the summary printer, and the error for a flag a subcommand does
 * not have (it names the subcommands that do, instead of a per-command deny-list).
 */
import type { CommanderError, Command } from 'commander';
import type { TrainableSpec } from '../train/training-graph.js';
import { GraftError } from '../util/errors.js';
import { int, num } from './parse.js';

/** Flags of every `graft train` subcommand. */
export interface CommonTrainFlags {
  model: string;
  data: string;
  out?: string;
  seed: string;
  labelsPerClass?: string;
  testFraction?: string;
  json?: boolean;
}

/** The flags every subcommand takes. `what` describes --data and --out for this subcommand; `testFraction` its default. */
export function commonTrainFlags(
  cmd: Command,
  what: { model: string; data: string; out: string; testFraction: number | string },
): Command {
  return cmd
    .requiredOption('--model <path>', what.model)
    .requiredOption('--data <path>', what.data)
    .option('--out <path>', what.out)
    .option('--labels-per-class <n>', 'use at most this many training labels per class')
    .option('--test-fraction <x>', `fraction of each class held out for testing (default ${what.testFraction})`)
    .option('--seed <n>', 'random seed for splits and shuffling', '0')
    .option('--json', 'print a JSON summary (stdout); progress and warnings go to stderr');
}

/** Checkpoint flags (images, text --finetune, setfit), declared once. */
export interface CheckpointFlags {
  checkpointDir?: string;
  resume?: boolean;
  keepCheckpoints?: string;
}

export function checkpointFlags(cmd: Command, per = 'epoch'): Command {
  return cmd
    .option(
      '--checkpoint-dir <dir>',
      `write a checkpoint per ${per} into this folder (weights, optimizer, schedule and shuffling state)`,
    )
    .option(
      '--resume',
      'continue from the newest checkpoint in --checkpoint-dir: the same weights, bit for bit, as a run never interrupted',
    )
    .option('--keep-checkpoints <n>', 'keep only the newest N checkpoints');
}

/** The checkpoint flags parsed (library RunOptions). */
export function checkpointsOf(f: CheckpointFlags): {
  checkpointDir?: string;
  resume?: boolean;
  keepCheckpoints?: number;
} {
  if (f.resume && !f.checkpointDir)
    throw new GraftError('--resume needs --checkpoint-dir (the folder holding the checkpoints)');
  return {
    ...(f.checkpointDir !== undefined ? { checkpointDir: f.checkpointDir } : {}),
    ...(f.resume ? { resume: true } : {}),
    ...(f.keepCheckpoints !== undefined
      ? { keepCheckpoints: positiveInt(f.keepCheckpoints, '--keep-checkpoints') }
      : {}),
  };
}

/** The split flags parsed. */
export function splitOf(o: CommonTrainFlags): { seed: number; labelsPerClass?: number; testFraction?: number } {
  return {
    seed: int(o.seed, '--seed'),
    ...(o.labelsPerClass !== undefined ? { labelsPerClass: positiveInt(o.labelsPerClass, '--labels-per-class') } : {}),
    ...(o.testFraction !== undefined ? { testFraction: fraction(o.testFraction, '--test-fraction') } : {}),
  };
}

export function positiveInt(v: string, flag: string): number {
  const n = int(v, flag);
  if (n < 1) throw new GraftError(`${flag} must be at least 1, got ${v}`);
  return n;
}

export function fraction(v: string, flag: string): number {
  const x = num(v, flag);
  if (!(x >= 0 && x < 1)) throw new GraftError(`${flag} must be at least 0 and below 1, got ${v}`);
  return x;
}

export function parseTrainable(s: string): TrainableSpec {
  if (s === 'all') return 'all';
  if (s.startsWith('after:')) return { after: s.slice(6) };
  return { pattern: s };
}

/** The `--foo-bar` spelling of an option's attribute name (`fooBar`). */
export function flagOf(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/** Flags given on the command line (not defaults) among `keys`, as `--flag` names. */
export function givenFlags(cmd: Command, keys: readonly string[]): string[] {
  return keys.filter((k) => cmd.getOptionValueSource(k) === 'cli').map(flagOf);
}

/** Print the summary: one write to stdout, after the run (progress went to stderr before it). */
export function printSummary(json: boolean | undefined, report: unknown, lines: string[]): void {
  process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : lines.join('\n') + '\n');
}

/**
 * A flag this subcommand does not have fails with a message naming the subcommands that do have it
 * (e.g. `--budget` given to `graft train features`), instead of commander's bare "unknown option".
 */
export function explainUnknownFlags(parent: Command): void {
  for (const sub of parent.commands) {
    sub.configureOutput({
      outputError: (s, write) => {
        if (!/unknown option/.test(s)) write(s);
      },
    });
    // other errors (and help) go on as CommanderError: graft's main exits with their code, commander has printed them
    sub.exitOverride((e: CommanderError) => {
      if (e.code !== 'commander.unknownOption') throw e;
      const flag = /'([^']+)'/.exec(e.message)?.[1]?.split('=')[0] ?? '';
      const owners = parent.commands
        .filter((c) => c !== sub && c.options.some((opt) => opt.long === flag || (opt.negate && opt.long === flag)))
        .map((c) => `graft ${parent.name()} ${c.name()}`);
      throw new GraftError(
        `graft ${parent.name()} ${sub.name()} has no ${flag} option` +
          (owners.length ? `; ${flag} belongs to ${owners.join(', ')}` : ''),
        `graft ${parent.name()} ${sub.name()} --help lists its options`,
      );
    });
  }
}
