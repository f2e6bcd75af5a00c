/**
 * Fine-tuning against frozen features on the review snippets, on one fixed test set of 2,000
 * snippets (1,000 per class; standard error of an accuracy ≈ 0.011) that no training draw and no
 * recipe choice saw; training labels come from the other 2,000. One pass of the frozen lower layers
 * (cached in memory) gives both the frozen pooled features and the inputs of top-layer tuning.
 * - 500 labels per class: linear probe, then fine-tune the whole encoder for one epoch (LP-FT)
 *   beats frozen mean-pooled features + logistic regression (the one-sided McNemar z on the paired
 *   predictions is printed: 1.60 when measured, just short of the 5 % level).
 * - 50 labels per class, 3 training draws: LP-FT of the top layer holds the frozen features'
 *   accuracy (mean within one test-set standard error). That it *beats* them is not asserted: on a
 *   validation split carved from the training pool no recipe did so consistently (docs/text.md).
 * Recipes were fixed on that validation split, not on this test set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asset, needs, unlessSkipped } from '../helpers/assets.js';
import { loadModelFolderSync } from '../../src/text/model-folder.js';
import { readTextTable } from '../../src/data/text-table.js';
import { fitTextHead, finetuneText, predictTextProba } from '../../src/text/classify.js';
import { TopLayerSplit, finetuneTopCached, type TokenStates } from '../../src/text/top-layers.js';
import { Rng } from '../../src/util/random.js';
import { argmax } from '../../src/util/vectors.js';

const skip = needs('models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv');
const model = unlessSkipped(skip, () => loadModelFolderSync(asset('models/text/bert-mini-debian')));
const t = unlessSkipped(skip, () => readTextTable(asset('datasets/reviews/polarity-en-pang&lee2.csv')));
const MAX = 48;
const quiet = () => {};

// Fixed split: 1,000 test snippets per class; the training pool is the rest (1,000 per class).
const rng0 = new Rng(0);
const testIdx: number[] = [],
  pool: number[][] = [];
for (const c of skip ? [] : [0, 1]) {
  const idx = rng0.shuffle(t.y.map((v, i) => (v === c ? i : -1)).filter((i) => i >= 0));
  testIdx.push(...idx.slice(0, 1000));
  pool.push(idx.slice(1000));
}
const teY = testIdx.map((i) => t.y[i]!);
/** `per` training snippets per class, drawn from the pool (draw `seed`). */
const draw = (per: number, seed: number) => {
  const rng = new Rng(1000 + seed);
  return pool.flatMap((p) => rng.shuffle([...p]).slice(0, per));
};

// One pass of the frozen lower layers over the test set and the whole pool.
const split = unlessSkipped(skip, () => new TopLayerSplit(model, 1));
const states = new Map<number, TokenStates>();
let testFeatures: Float32Array[] = [];
async function prepare() {
  if (testFeatures.length) return;
  const all = [...testIdx, ...pool.flat()];
  const s = await split.states(
    all.map((i) => t.texts[i]!),
    { maxLength: MAX, warn: quiet },
  );
  all.forEach((i, k) => states.set(i, s[k]!));
  testFeatures = await split.pooled(testIdx.map((i) => states.get(i)!));
}
const st = (ix: number[]) => ix.map((i) => states.get(i)!);
const accuracy = (pred: number[]) => pred.filter((p, i) => p === teY[i]).length / teY.length;

/** One-sided McNemar z for "a is more accurate than b" on the same test rows. */
function mcnemarZ(a: number[], b: number[]): number {
  let onlyA = 0,
    onlyB = 0;
  a.forEach((p, i) => {
    const ra = p === teY[i],
      rb = b[i] === teY[i];
    if (ra && !rb) onlyA++;
    if (rb && !ra) onlyB++;
  });
  return (onlyA - onlyB) / Math.sqrt(Math.max(1, onlyA + onlyB));
}

test('500 labels per class: fine-tuning (LP-FT) beats frozen features', { skip }, async () => {
  await prepare();
  const train = draw(500, 0);
  const trX = train.map((i) => t.texts[i]!),
    trY = train.map((i) => t.y[i]!);
  const head = await fitTextHead(await split.pooled(st(train)), trY);
  const frozen = head.predict(testFeatures);
  const ft = await finetuneText(model, trX, trY, {
    classes: 2,
    maxLength: MAX,
    head,
    lr: 1e-4,
    epochs: 1,
    warn: quiet,
  });
  const tuned = (
    await predictTextProba(
      ft.graph,
      model.tokenizer,
      testIdx.map((i) => t.texts[i]!),
      { maxLength: MAX, warn: quiet },
    )
  ).map(argmax);
  const z = mcnemarZ(tuned, frozen);
  console.log(
    `# 500 labels/class, 2,000 test: frozen ${accuracy(frozen).toFixed(3)}, LP-FT ${accuracy(tuned).toFixed(3)}, McNemar z ${z.toFixed(2)}`,
  );
  assert.ok(accuracy(tuned) > accuracy(frozen), `LP-FT ${accuracy(tuned)} vs frozen ${accuracy(frozen)}, z = ${z}`);
});

test('50 labels per class (3 draws): top-layer LP-FT holds frozen-feature accuracy', { skip }, async () => {
  await prepare();
  const frozen: number[] = [],
    lpft: number[] = [];
  for (const seed of [0, 1, 2]) {
    const train = draw(50, seed);
    const trY = train.map((i) => t.y[i]!);
    const head = await fitTextHead(await split.pooled(st(train)), trY, seed);
    frozen.push(accuracy(head.predict(testFeatures)));
    const ft = await finetuneTopCached(split, st(train), trY, {
      classes: 2,
      head,
      lr: 1e-4,
      epochs: 10,
      minSteps: 60,
      seed,
    });
    lpft.push(accuracy((await ft.predictProba(st(testIdx))).map(argmax)));
    await ft.release();
  }
  const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
  const f = (x: number[]) => x.map((v) => v.toFixed(3)).join(' ');
  console.log(
    `# 50 labels/class, 2,000 test, per draw: frozen ${f(frozen)}; LP-FT (top layer) ${f(lpft)}; mean difference ${(mean(lpft) - mean(frozen)).toFixed(4)}`,
  );
  // Non-inferiority with a margin of one test-set standard error (≈ 0.011).
  assert.ok(mean(lpft) > mean(frozen) - 0.011, `LP-FT ${mean(lpft)} vs frozen ${mean(frozen)}`);
});

test.after(() => split?.release());
