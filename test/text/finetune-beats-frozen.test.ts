/**
 * Fine-tuning against frozen features on the review snippets (same training texts, same 500 test
 * texts, same max length):
 * - 500 labels per class: linear probe, then fine-tune (LP-FT) beats frozen mean-pooled features +
 *   logistic regression.
 * - 50 labels per class: LP-FT beats plain fine-tuning (random head), the failure the PyTorch
 *   reference runs found; against frozen features LP-FT is within noise at this budget (multi-seed
 *   numbers in docs/text.md), so that comparison is printed, not asserted.
 * The heaviest test of the text suite (a few minutes on a busy 2-core machine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asset } from '../helpers/assets.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import { TextFeatureExtractor, fitTextHead, finetuneText, predictTextProba, argmaxF } from '../../src/text/classify.js';
import { Rng } from '../../src/util/random.js';

const model = loadModelFolderSync(asset('models/text/bert-mini-debian'));
const t = readTextTable(asset('datasets/reviews/polarity-en-pang&lee2.csv'));
const MAX = 48;
const quiet = () => {};

/** 250 test texts per class, fixed; `per` training texts per class from the rest. */
function split(per: number) {
  const rng = new Rng(0);
  const test: number[] = [], train: number[] = [];
  for (const c of [0, 1]) {
    const idx = rng.shuffle(t.y.map((v, i) => (v === c ? i : -1)).filter((i) => i >= 0));
    test.push(...idx.slice(0, 250));
    train.push(...idx.slice(250, 250 + per));
  }
  return { train, test };
}

async function compare(per: number, epochs: number, plain = false) {
  const { train, test } = split(per);
  const trX = train.map((i) => t.texts[i]!), trY = train.map((i) => t.y[i]!);
  const teX = test.map((i) => t.texts[i]!), teY = test.map((i) => t.y[i]!);
  const ex = new TextFeatureExtractor(model, 'mean');
  const head = await fitTextHead(await ex.extract(trX, { maxLength: MAX, warn: quiet }), trY);
  const frozen = head.accuracy(await ex.extract(teX, { maxLength: MAX, warn: quiet }), teY);
  await ex.release();
  const tuned = async (probe: boolean) => {
    const ft = await finetuneText(model, trX, trY, { classes: 2, maxLength: MAX, ...(probe ? { head } : {}), lr: 1e-4, epochs, minSteps: 60, warn: quiet });
    const P = await predictTextProba(ft.graph, model.tokenizer, teX, { maxLength: MAX, warn: quiet });
    return argmaxF(P).filter((p, i) => p === teY[i]).length / teY.length;
  };
  const lpft = await tuned(true);
  const random = plain ? await tuned(false) : NaN;
  console.log(`# ${per} labels/class: frozen ${frozen.toFixed(3)}, LP-FT ${lpft.toFixed(3)}${plain ? `, plain FT ${random.toFixed(3)}` : ''}`);
  return { frozen, lpft, random };
}

test('500 labels per class: fine-tuning (LP-FT) beats frozen features', async () => {
  const r = await compare(500, 2);
  assert.ok(r.lpft > r.frozen, `LP-FT ${r.lpft} vs frozen ${r.frozen}`);
});

test('50 labels per class: LP-FT beats plain fine-tuning from a random head', async () => {
  const r = await compare(50, 10, true);
  assert.ok(r.lpft > r.random, `LP-FT ${r.lpft} vs plain ${r.random}`);
});
