/**
 * Tiny real text trainings for the loop's resume tests (test/train/text-resume.test.ts and its child
 * process resume-child.ts): text classification fine-tuning and SetFit on bert-mini-debian, LM
 * fine-tuning on gpt2-mini-debian, translation training on the encoder-decoder built from both.
 * Each returns its final float weights and every step's loss.
 */
import { join } from 'node:path';
import { readOnnx } from '../../src/formats/onnx.js';
import type { Graph } from '../../src/graph/graph.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import { loadReviewTexts } from '../../src/text/lm-corpus.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { finetuneText } from '../../src/text/classify.js';
import { trainSetFit } from '../../src/text/setfit.js';
import { finetuneLm, makeWindows } from '../../src/text/lm.js';
import { trainSeq2Seq, readParallelJsonl } from '../../src/text/translate.js';
import { buildSeq2Seq, type Seq2SeqPair } from '../../src/text/seq2seq.js';
import type { RunOptions } from '../../src/train/callbacks.js';
import { assetPath } from '../helpers/assets.js';

export const TEXT_TASKS = ['classify', 'setfit', 'lm', 'translate'] as const;
export type TextTask = (typeof TEXT_TASKS)[number];

/** The assets each task needs (for needs()). */
export const taskAssets: Record<TextTask, string[]> = {
  classify: ['models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv'],
  setfit: ['models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv'],
  lm: ['models/text/gpt2-mini-debian', 'datasets/reviews/polarity-en-pang&lee1.csv'],
  translate: [
    'models/text/bert-mini-debian',
    'models/text/gpt2-mini-debian',
    'datasets/debian-translations/debian-descriptions-en-de.jsonl.gz',
  ],
};

export interface TaskRun {
  weights: Map<string, Float32Array>;
  losses: number[];
  /** The epoch (checkpoint) a resumed run continued after; 0 when it started afresh. */
  resumedFrom: number;
}

const floats = (g: Graph) =>
  new Map([...g.initializers].filter(([, t]) => t.dtype === 'float32').map(([k, t]) => [k, t.data as Float32Array]));

function reviews(n: number): { texts: string[]; y: number[] } {
  const t = readTextTable(assetPath('datasets/reviews/polarity-en-pang&lee2.csv'));
  const idx = [0, 1].flatMap((c) => t.y.flatMap((v, i) => (v === c ? [i] : [])).slice(0, n));
  return { texts: idx.map((i) => t.texts[i]!), y: idx.map((i) => t.y[i]!) };
}

/** Run one task with loop options (checkpointDir, resume, callbacks); 3 checkpoints' worth of steps. */
export async function runTask(task: TextTask, opts: RunOptions = {}): Promise<TaskRun> {
  let resumedFrom = 0;
  const r = await train(task, {
    ...opts,
    callbacks: [
      ...(opts.callbacks ?? []),
      { name: 'probe', onTrainBegin: (ctx) => void (resumedFrom = ctx.resumedFrom) },
    ],
  });
  return { ...r, resumedFrom };
}

async function train(task: TextTask, o: RunOptions): Promise<Omit<TaskRun, 'resumedFrom'>> {
  const quiet = () => {};
  if (task === 'classify') {
    const model = loadModelFolderSync(assetPath('models/text/bert-mini-debian'));
    const { texts, y } = reviews(6);
    const r = await finetuneText(model, texts, y, {
      classes: 2,
      maxLength: 24,
      epochs: 3,
      batchSize: 4,
      lr: 2e-4,
      tokenDropout: 0.1,
      seed: 1,
      warn: quiet,
      ...o,
    });
    return { weights: floats(r.graph), losses: r.losses };
  }
  if (task === 'setfit') {
    const model = loadModelFolderSync(assetPath('models/text/bert-mini-debian'));
    const { texts, y } = reviews(6);
    const r = await trainSetFit(model, texts, y, {
      maxLength: 24,
      steps: 6,
      checkpointEvery: 2,
      pairsPerStep: 8,
      lr: 1e-4,
      seed: 2,
      warn: quiet,
      ...o,
    });
    await r.extractor.release();
    return { weights: floats(r.encoder), losses: r.losses };
  }
  if (task === 'lm') {
    const dir = assetPath('models/text/gpt2-mini-debian');
    const tok = await loadTokenizer(dir);
    const texts = loadReviewTexts(assetPath('datasets/reviews/polarity-en-pang&lee1.csv')).slice(0, 4);
    const windows = makeWindows(
      texts.map((t) => tok.encode(t, { addSpecialTokens: false })),
      { window: 24, eos: tok.eosId! },
    ).slice(0, 8);
    const tr = await finetuneLm(readOnnx(join(dir, 'onnx/model.onnx')), windows, {
      epochs: 3,
      batchSize: 4,
      lr: 1e-3,
      seed: 3,
      ...o,
    });
    const g = tr.toGraph();
    await tr.release();
    return { weights: floats(g), losses: [] };
  }
  const bertDir = assetPath('models/text/bert-mini-debian');
  const tok = await loadTokenizer(bertDir);
  const raw = readParallelJsonl(
    assetPath('datasets/debian-translations/debian-descriptions-en-de.jsonl.gz'),
    'en_short',
    'de_short',
  );
  const pairs: Seq2SeqPair[] = [];
  for (const p of raw) {
    const source = tok.encode(p.source),
      target = tok.encode(p.target, { addSpecialTokens: false });
    if (source.length <= 12 && target.length <= 12) pairs.push({ source, target });
    if (pairs.length === 10) break;
  }
  const enc = readOnnx(join(bertDir, 'onnx/model.onnx'));
  const dec = readOnnx(join(assetPath('models/text/gpt2-mini-debian'), 'onnx/model.onnx'));
  const tr = await trainSeq2Seq(
    buildSeq2Seq(enc, dec, { seed: 1 }),
    pairs,
    { start: 3, eos: 3, pad: 0 },
    { steps: 6, batchSize: 4, checkpointEvery: 2, lr: 5e-4, seed: 4, ...o },
  );
  const g = tr.toGraph();
  await tr.release();
  return { weights: floats(g), losses: [] };
}
