/**
 * `graft train images|features|text|setfit|prompt|auto` as users meet them: every subcommand's help,
 * the old `--mode` form mapped onto them (every `graft train` example in the README still parses,
 * or fails naming the new form), a flag given to the wrong subcommand naming the right one, the same
 * four files saved by each subcommand that trains, and the summary printed after the progress lines
 * when stdout and stderr share one pipe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { asset, assetPath, needs } from '../helpers/assets.js';
import { graft, graftFails, GRAFT_CLI } from '../helpers/cli.js';
import { writeReviewSnippets } from '../helpers/review-csv.js';
import { trainCommand, legacyTrainArgv, TRAIN_SUBCOMMANDS } from '../../src/cli/train.js';
import { GraftError } from '../../src/util/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'graft-train-sub-'));
const mnist = asset('models/onnxjs-demo/mnist.onnx');
const digits = asset('datasets/digits-8x8/digits.csv.gz');
const FILES = ['labels.json', 'model.onnx', 'report.html', 'report.json'];

/** The train command with every action replaced by one that records what it was given. */
function parsedTrain(): { cmd: Command; got: { sub?: string; opts?: Record<string, unknown> } } {
  const got: { sub?: string; opts?: Record<string, unknown> } = {};
  const cmd = trainCommand().exitOverride();
  for (const c of cmd.commands)
    c.action((opts: Record<string, unknown>) => {
      got.sub = c.name();
      got.opts = opts;
    });
  return { cmd, got };
}

/** argv after legacy mapping, as `graft …` would see it (the note collected, not printed). */
function mapped(args: string[]): { args: string[]; notes: string[] } {
  const notes: string[] = [];
  const argv = legacyTrainArgv(['node', 'graft', ...args], (s) => notes.push(s));
  return { args: argv.slice(2), notes };
}

async function parse(args: string[]): Promise<{ sub?: string; opts?: Record<string, unknown> }> {
  const { cmd, got } = parsedTrain();
  const a = mapped(args).args;
  assert.equal(a[0], 'train');
  await cmd.parseAsync(a.slice(1), { from: 'user' });
  return got;
}

test('every train subcommand has its own help with its own flags; graft train --help lists them', async () => {
  const cmd = trainCommand();
  assert.deepEqual(
    cmd.commands.map((c) => c.name()),
    [...TRAIN_SUBCOMMANDS],
  );
  const help = Object.fromEntries(cmd.commands.map((c) => [c.name(), c.helpInformation()]));
  for (const [name, h] of Object.entries(help)) {
    assert.match(h, new RegExp(`Usage: train ${name} \\[options\\]`));
    assert.match(h, /--model <path>/);
    assert.match(h, /--data <path>/);
  }
  assert.match(help['images']!, /--lr-find/);
  assert.match(help['images']!, /--checkpoint-dir/);
  assert.match(help['images']!, /--top-blocks <n>.*--tolerance <x>.*--pixel-max <x>/s);
  assert.match(help['text']!, /--checkpoint-dir/);
  assert.doesNotMatch(help['features']!, /--checkpoint-dir|--text-column|--budget/);
  assert.match(help['features']!, /--head <kind>/);
  assert.match(help['text']!, /--finetune/);
  assert.match(help['text']!, /--lr <x> .*\(default: "0\.0001"\)/s);
  assert.match(help['setfit']!, /--epochs <n> .*\(default: "1"\)/s);
  assert.match(help['prompt']!, /--label-words/);
  assert.match(help['prompt']!, /--lr <x> .*\(default: "0\.00003"\)/s);
  assert.doesNotMatch(help['prompt']!, /--pooling|--lora-rank/);
  assert.match(help['auto']!, /--budget/);
  // the real command line: `graft train --help` and a subcommand's help, exit code 0
  const top = await graft(['train', '--help']);
  for (const name of TRAIN_SUBCOMMANDS) assert.match(top.stdout, new RegExp(`^\\s+${name} \\[options\\]`, 'm'));
  const sub = await graft(['train', 'setfit', '--help']);
  assert.match(sub.stdout, /Usage: graft train setfit \[options\]/);
});

test('the old --mode form maps onto the subcommands, with a note naming the new form', async () => {
  const cases: [string[], string[]][] = [
    [['--mode', 'finetune', '--model', 'm', '--data', 'd.csv'], ['images']],
    [['--model', 'm', '--data', 'd.csv'], ['images']], // auto on a CSV of pixels: fine-tuning, as before
    [['--model', 'm', '--data', tmp], ['auto']], // auto on an image folder
    [['--mode', 'features', '--model', 'm', '--data', tmp], ['features']],
    [['--mode=features', '--model', 'm', '--data', 'x-idx3-ubyte.gz'], ['features']],
    [['--model', 'm', '--data', 'r.csv', '--text-column', 'review'], ['auto']],
    [['--mode', 'features', '--model', 'm', '--data', 'r.csv', '--text-column', 'review'], ['text']],
    [
      ['--mode', 'finetune', '--model', 'm', '--data', 'r.csv', '--text-column', 'review'],
      ['text', '--finetune'],
    ],
    [['--mode', 'setfit', '--model', 'm', '--data', 'r.csv', '--text-column', 'review'], ['setfit']],
    [['--mode', 'prompt', '--model', 'm', '--data', 'r.csv', '--text-column', 'review'], ['prompt']],
  ];
  for (const [old, sub] of cases) {
    const m = mapped(['--threads', '1', 'train', ...old]);
    assert.deepEqual(m.args.slice(0, 3 + sub.length), ['--threads', '1', 'train', ...sub], old.join(' '));
    assert.ok(!m.args.some((a) => a === '--mode' || a.startsWith('--mode=')), 'no --mode left');
    assert.match(m.notes[0]!, new RegExp(`is now \`graft train ${sub.join(' ')}\``));
  }
  // the old CSV fine-tuning default output (one .onnx file) is kept for the old form
  assert.deepEqual(mapped(['train', '--model', 'm', '--data', 'd.csv']).args.slice(-2), ['--out', 'graft-model.onnx']);
  // the new form and help pass through untouched
  for (const a of [['train', 'images', '--model', 'm'], ['train', '--help'], ['train'], ['check', 'm.onnx']])
    assert.deepEqual(mapped(a), { args: a, notes: [] });
  // old forms that cannot run fail with a message naming the new form
  assert.throws(
    () => mapped(['train', '--mode', 'setfit', '--model', 'm', '--data', 'd.csv']),
    (e: GraftError) =>
      e instanceof GraftError &&
      /--mode setfit is for text classification: give --text-column/.test(e.message) &&
      /graft train setfit --model MODEL --data FILE --text-column/.test(e.hint ?? ''),
  );
  assert.throws(
    () => mapped(['train', '--mode', 'magic', '--model', 'm', '--data', 'd.csv']),
    /graft train now takes a subcommand: graft train images\|features\|text\|setfit\|prompt\|auto/,
  );
  // the mapped form reaches the right subcommand with its typed flags
  const got = await parse([
    'train',
    '--mode',
    'finetune',
    '--model',
    'm',
    '--data',
    'r.csv',
    '--text-column',
    'review',
    '--lora-rank',
    '4',
    '--epochs',
    '2',
  ]);
  assert.equal(got.sub, 'text');
  assert.equal(got.opts!['finetune'], true);
  assert.equal(got.opts!['loraRank'], '4');
  assert.equal(got.opts!['lr'], '0.0001'); // the text default, declared once in src/text/train-text.ts
});

test('every `graft train` example in the README and docs parses as the subcommand it maps to', async () => {
  const examples: string[] = [];
  for (const file of ['README.md', ...readdirSync('docs').map((f) => join('docs', f))]) {
    if (!file.endsWith('.md')) continue;
    const text = readFileSync(file, 'utf8').replace(/\\\n\s*/g, ' ');
    for (const m of text.matchAll(/^(?:npx )?graft train (.*)$/gm))
      if (!m[1]!.includes('…')) examples.push(m[1]!.replace(/\s+#.*$/, ''));
  }
  assert.ok(examples.length >= 15, `found ${examples.length} examples`);
  for (const ex of examples) {
    const words = [...ex.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
    const got = await parse(['train', ...words]);
    assert.ok(got.sub && TRAIN_SUBCOMMANDS.includes(got.sub as never), ex);
  }
});

test('a flag given to the wrong subcommand fails naming the subcommands that have it', async () => {
  const r = await graftFails(['train', 'features', '--model', mnist, '--data', tmp, '--budget', '2']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /graft train features has no --budget option; --budget belongs to graft train auto/);
  assert.match(r.stderr, /graft train features --help lists its options/);
  const t = await graftFails([
    'train',
    'text',
    '--model',
    mnist,
    '--data',
    'r.csv',
    '--text-column',
    'x',
    '--epochs',
    '3',
  ]);
  assert.match(t.stderr, /--epochs configures fine-tuning: add --finetune/);
});

test('graft train images on CSV pixels saves model.onnx, labels.json, report.html, report.json; the summary follows the epoch lines in one pipe', async () => {
  const out = join(tmp, 'digits');
  const log = join(tmp, 'both.log');
  const fd = openSync(log, 'w');
  const code = await new Promise<number | null>((res) => {
    const child = spawn(
      process.execPath,
      [
        ...GRAFT_CLI,
        'train',
        'images',
        '--model',
        mnist,
        '--data',
        digits,
        '--pixel-max',
        '16',
        '--labels-per-class',
        '10',
        '--epochs',
        '3',
        '--out',
        out,
      ],
      { stdio: ['ignore', fd, fd] },
    );
    child.on('exit', res);
  });
  closeSync(fd);
  const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
  assert.equal(code, 0, lines.join('\n'));
  assert.deepEqual(readdirSync(out).sort(), FILES);
  const epochs = lines.map((l, i) => (/^epoch \d+: mean loss/.test(l) ? i : -1)).filter((i) => i >= 0);
  const summary = lines.findIndex((l) => l.startsWith('trained on '));
  assert.equal(epochs.length, 3);
  assert.ok(
    summary > epochs.at(-1)!,
    `summary at line ${summary}, last epoch line at ${epochs.at(-1)}:\n${lines.join('\n')}`,
  );
  assert.match(lines.at(-1)!, /^saved .*model\.onnx, .*labels\.json, .*report\.html, .*report\.json$/);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
    metrics: { accuracy: number; n: number; labels: string[] };
  };
  assert.equal(report.metrics.labels.length, 10);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')), report.metrics.labels);
  assert.ok(report.metrics.n > 400 && report.metrics.accuracy > 0.5, JSON.stringify(report.metrics.accuracy));
  // the old form still writes its single .onnx file
  const old = join(tmp, 'old.onnx');
  await graft([
    'train',
    '--mode',
    'finetune',
    '--model',
    mnist,
    '--data',
    digits,
    '--pixel-max',
    '16',
    '--labels-per-class',
    '10',
    '--epochs',
    '1',
    '--out',
    old,
  ]);
  assert.ok(existsSync(old));
});

const bert = assetPath('models/text/bert-mini-debian');
const skipText = needs('models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv');
const csv = join(tmp, 'reviews.csv');
if (!skipText) writeReviewSnippets(csv, 0, 24);

test('graft train text, setfit, prompt and auto each save model.onnx, labels.json, report.html, report.json beside the tokenizer', {
  skip: skipText,
}, async () => {
  const base = [
    '--model',
    bert,
    '--data',
    csv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--max-length',
    '16',
    '--json',
  ];
  const runs: [string, string[]][] = [
    ['text', []],
    ['setfit', ['--labels-per-class', '2']],
    ['prompt', ['--label-words', 'bad,good', '--epochs', '0']],
    ['auto', ['--folds', '2', '--budget', '0.0001']], // the frozen-feature candidate only: the budget is spent
  ];
  for (const [sub, extra] of runs) {
    const out = join(tmp, `text-${sub}`);
    const r = JSON.parse((await graft(['train', sub, ...base, ...extra, '--out', out])).stdout) as {
      method: string;
      files: string[];
      test: { n: number };
    };
    assert.equal(r.method, sub === 'text' ? 'features' : sub);
    assert.deepEqual(r.files.map((f) => f.slice(out.length + 1)).sort(), FILES);
    for (const f of [...FILES, 'tokenizer.json']) assert.ok(existsSync(join(out, f)), `${sub}: ${f}`);
    const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
      metrics: { n: number; labels: string[] };
      training: { method: string };
    };
    assert.equal(rep.metrics.n, r.test.n);
    assert.deepEqual(rep.metrics.labels, ['neg', 'pos']);
    assert.equal(rep.training.method, r.method);
  }
});

test('graft train text --finetune --checkpoint-dir, then --resume after the last checkpoint is lost: the same model, byte for byte', {
  skip: skipText,
}, async () => {
  const ckpt = join(tmp, 'text-ckpt');
  const args = (out: string) => [
    'train',
    'text',
    '--model',
    bert,
    '--data',
    csv,
    '--text-column',
    'review',
    '--label-column',
    'sentiment',
    '--max-length',
    '16',
    '--labels-per-class',
    '6',
    '--finetune',
    '--epochs',
    '2',
    '--checkpoint-dir',
    ckpt,
    '--out',
    out,
  ];
  await graft(args(join(tmp, 'tuned-a')));
  assert.deepEqual(readdirSync(ckpt).sort(), [
    'epoch-0001.json',
    'epoch-0001.safetensors',
    'epoch-0002.json',
    'epoch-0002.safetensors',
  ]);
  for (const f of ['epoch-0002.json', 'epoch-0002.safetensors']) rmSync(join(ckpt, f));
  const { stdout } = await graft([...args(join(tmp, 'tuned-b')), '--resume']);
  assert.match(stdout, /^text finetune \(full\), resumed after epoch 1:/m);
  assert.ok(
    readFileSync(join(tmp, 'tuned-a', 'model.onnx')).equals(readFileSync(join(tmp, 'tuned-b', 'model.onnx'))),
    'resumed model differs',
  );
  const e = await graftFails(['train', 'text', '--model', bert, '--data', csv, '--text-column', 'review', '--resume']);
  assert.match(e.stderr, /--resume configures fine-tuning: add --finetune/);
});
