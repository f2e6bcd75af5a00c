/**
 * `--mode auto` against the methods it chooses between, on the shared tasks (docs/auto.md):
 *
 *   image  Fashion-MNIST through the Coral MobileNetV2 (TFLite): a pool of --pool images per class
 *          from the 10k test file, half of each class the test split, N labels per class drawn per
 *          seed for training (trainAuto's own stratified split; --val-fraction 0). Candidates: the
 *          frozen-feature logistic head and the top 2 blocks fine-tuned on cached activations
 *          (--epochs, lr 1e-3, batch 32).
 *   text   the review snippets (polarity-en-pang&lee2.csv) with bert-mini-debian at max length 48:
 *          a fixed test set of 500 snippets per class, N training labels per class drawn per seed
 *          from the rest (as bench/text-classify.ts). Candidates: frozen features + LR, TF-IDF over
 *          the tokenizer's ids + LR, LP-FT, SetFit (≤ 16 per class).
 *
 * For each seed, auto's choice (made on folds of the training split only) and the test accuracy of
 * every candidate fitted on the whole training split; auto's test accuracy is the chosen one's.
 * `--selection-only` skips the fits of the candidates auto did not choose (auto's choice, held-out
 * scores and test accuracy only). `--repeats R` overrides auto's default repeats of the folds.
 *
 *   GRAFT_THREADS=1 node --import tsx bench/auto.ts --task image|text [--per-class 5,10] [--seeds 3]
 *     [--seed-from 0] [--epochs 5] [--pool 40] [--folds K] [--repeats R] [--selection-only] [--json FILE]
 *     text only: [--data datasets/reviews/….csv | spam-assassin] [--test-per-class 500] [--max-length 48]
 */
import { writeFileSync } from 'node:fs';

import { assetPath } from '../src/data/assets.js';
import { loadLabelledImages } from '../src/data/labelled-images.js';
import { trainAuto, trainTextAuto, scoreTextClassifier, type AutoSelection } from '../src/finetune/auto.js';
import { trainFeatureClassifier } from '../src/features/classifier.js';
import { finetuneImages } from '../src/finetune/image-finetune.js';
import { loadModelFolderSync } from '../src/text/model-folder.js';
import { readTextTable, readTextData } from '../src/data/text-table.js';
import { TextFeatureExtractor, fitTextHead, finetuneText, predictTextProba } from '../src/text/classify.js';
import { trainSetFit } from '../src/text/setfit.js';
import { trainTfidfClassifier } from '../src/text/tfidf.js';
import { openCache } from '../src/features/cache.js';
import { Rng } from '../src/util/random.js';
import { argmax } from '../src/util/vectors.js';

const args = process.argv.slice(2);
const flag = (k: string, d: string) => (args.includes(k) ? args[args.indexOf(k) + 1]! : d);
const task = flag('--task', 'image');
const budgets = flag('--per-class', task === 'image' ? '5,10' : '8')
  .split(',')
  .map(Number);
const seeds = Number(flag('--seeds', '3'));
const seedFrom = Number(flag('--seed-from', '0'));
const epochs = Number(flag('--epochs', '5'));
const selectionOnly = args.includes('--selection-only');
const search = {
  ...(args.includes('--folds') ? { folds: Number(flag('--folds', '5')) } : {}),
  ...(args.includes('--repeats') ? { repeats: Number(flag('--repeats', '1')) } : {}),
};
interface Row {
  task: string;
  perClass: number;
  seed: number;
  chosen: string;
  folds: number;
  repeats: number;
  /** Held-out accuracy per candidate (over every repeat of the folds). */
  cv: Record<string, number>;
  /** Accuracy per held-out fold, repeat after repeat, per candidate. */
  foldAccuracies: Record<string, number[]>;
  /** The comparisons: challenger vs incumbent, difference ± standard error. */
  comparisons: string[];
  test: Record<string, number>;
  auto: number;
  seconds: number;
}
const rows: Row[] = [];
const t0 = performance.now();
const emit = (r: Row) => {
  rows.push(r);
  console.log(JSON.stringify(r));
};

if (task === 'image') {
  const model = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
  const data = loadLabelledImages(assetPath('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'), {
    maxPerClass: Number(flag('--pool', '40')),
  });
  const cacheDir = flag('--cache', '/tmp/graft-auto-bench-cache');
  for (const per of budgets)
    for (let seed = seedFrom; seed < seedFrom + seeds; seed++) {
      const s0 = performance.now();
      const common = { labelsPerClass: per, valFraction: 0, testFraction: 0.5, seed, cacheDir };
      const ft = { epochs, lr: 1e-3, batchSize: 32 };
      const r = await trainAuto(model, data, { ...common, ...search, finetune: ft });
      const test: Record<string, number> = { [r.selection.chosen]: r.test!.accuracy };
      if (r.selection.chosen !== 'features' && !selectionOnly)
        test['features'] = (await trainFeatureClassifier(model, data, common)).report.test!.accuracy;
      if (r.selection.chosen !== 'finetune' && !selectionOnly)
        test['finetune'] = (await finetuneImages(model, data, { ...common, ...ft })).report.test!.accuracy;
      emit({
        task,
        perClass: per,
        seed,
        chosen: r.selection.chosen,
        ...selectionColumns(r.selection),
        test,
        auto: r.test!.accuracy,
        seconds: (performance.now() - s0) / 1000,
      });
    }
} else {
  const maxLength = Number(flag('--max-length', '48'));
  const m = loadModelFolderSync(assetPath('models/text/bert-mini-debian'));
  // --data: another shared table (a CSV under ../shared, or spam-assassin) to check auto on a task it was not tuned on
  const data = flag('--data', 'datasets/reviews/polarity-en-pang&lee2.csv');
  const t = data === 'spam-assassin' ? readTextData(data, {}) : readTextTable(assetPath(data));
  const perTestClass = Number(flag('--test-per-class', '500'));
  const cache = openCache(flag('--cache', '/tmp/graft-text-cache'));
  const quiet = () => {};
  const extractor = new TextFeatureExtractor(m, 'mean');
  // fixed test set (500 per class), per-seed training picks from the rest (as bench/text-classify.ts)
  const rng0 = new Rng(0);
  const testIdx: number[] = [],
    pool: number[][] = [];
  for (const c of t.classes.keys()) {
    const idx = rng0.shuffle(t.y.map((v, i) => (v === c ? i : -1)).filter((i) => i >= 0));
    testIdx.push(...idx.slice(0, perTestClass));
    pool.push(idx.slice(perTestClass));
  }
  const teX = testIdx.map((i) => t.texts[i]!),
    teY = testIdx.map((i) => t.y[i]!);
  const acc = (p: number[]) => p.filter((v, i) => v === teY[i]).length / teY.length;
  const teF = await extractor.extract(teX, { maxLength, cache, warn: quiet });
  for (const per of budgets)
    for (let seed = seedFrom; seed < seedFrom + seeds; seed++) {
      const s0 = performance.now();
      const rng = new Rng(1000 + seed);
      const tr = pool.flatMap((p) => rng.shuffle([...p]).slice(0, per));
      const trX = tr.map((i) => t.texts[i]!),
        trY = tr.map((i) => t.y[i]!);
      const r = await trainTextAuto(m, trX, trY, {
        classes: t.classes.length,
        maxLength,
        seed,
        cache,
        ...search,
      });
      const auto = (await scoreTextClassifier(r.classifier, m, teX, teY, t.classes, maxLength)).accuracy;
      const test: Record<string, number> = { [r.mode]: auto };
      const F = await extractor.extract(trX, { maxLength, cache, warn: quiet });
      const head = await fitTextHead(F, trY, seed);
      test['features'] ??= head.accuracy(teF, teY);
      if (!selectionOnly)
        test['tfidf'] ??= acc(
          (await trainTfidfClassifier(trX, trY, { seed, tokenizer: m.tokenizer, maxLength })).predict(teX),
        );
      if (test['finetune'] === undefined && !selectionOnly) {
        const f = await finetuneText(m, trX, trY, {
          classes: t.classes.length,
          maxLength,
          seed,
          head,
          lr: 1e-4,
          epochs: 3,
          minSteps: Math.max(3 * Math.ceil(trX.length / 16), 60),
          warn: quiet,
        });
        test['finetune'] = acc(
          (await predictTextProba(f.graph, m.tokenizer, teX, { maxLength, warn: quiet })).map(argmax),
        );
      }
      if (test['setfit'] === undefined && per <= 16 && !selectionOnly) {
        const s = await trainSetFit(m, trX, trY, {
          maxLength,
          seed,
          lr: 1e-4,
          steps: Math.min(Math.ceil((40 * trX.length) / 16), 120),
        });
        test['setfit'] = s.head.accuracy(await s.extractor.extract(teX, { maxLength, warn: quiet }), teY);
        await s.extractor.release();
      }
      emit({
        task,
        perClass: per,
        seed,
        chosen: r.mode,
        ...selectionColumns(r.selection),
        test,
        auto,
        seconds: (performance.now() - s0) / 1000,
      });
    }
  await extractor.release();
}

function selectionColumns(s: AutoSelection): Pick<Row, 'folds' | 'repeats' | 'cv' | 'foldAccuracies' | 'comparisons'> {
  return {
    folds: s.folds,
    repeats: s.repeats,
    cv: Object.fromEntries(s.candidates.map((c) => [c.method, c.mean ?? NaN])),
    foldAccuracies: Object.fromEntries(s.candidates.map((c) => [c.method, (c.folds ?? []).map((a) => +a.toFixed(4))])),
    comparisons: s.comparisons.map(
      (c) =>
        `${c.challenger} vs ${c.incumbent}: ${c.meanDiff >= 0 ? '+' : ''}${c.meanDiff.toFixed(4)} ± ${c.standardError.toFixed(4)} (${c.statistic}, ${c.pairs} × ${c.repeats})${c.switched ? ' switched' : ''}`,
    ),
  };
}

// summary: per budget, mean test accuracy of auto, of the frozen head, of the better fine-tuned variant per seed and of the best candidate per seed
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(
  `\n| task | labels / class | seeds | auto (chosen) | frozen head | fine-tuned${task === 'text' ? ' (LP-FT)' : ' (top blocks)'} | better of the two (per seed) | auto − frozen | auto − better |`,
);
console.log('| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
for (const per of budgets) {
  const rs = rows.filter((r) => r.perClass === per);
  const a = mean(rs.map((r) => r.auto)),
    f = mean(rs.map((r) => r.test['features']!)),
    ft = mean(rs.map((r) => r.test['finetune']!));
  const better = mean(rs.map((r) => Math.max(r.test['features']!, r.test['finetune']!)));
  const sign = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(3)}`;
  console.log(
    `| ${task} | ${per} | ${rs.length} | ${a.toFixed(3)} (${rs.map((r) => r.chosen).join(', ')}) | ${f.toFixed(3)} | ${ft.toFixed(3)} | ${better.toFixed(3)} | ${sign(a - f)} | ${sign(a - better)} |`,
  );
}
console.log(`\nTotal ${((performance.now() - t0) / 1000).toFixed(0)} s.`);
const out = flag('--json', '');
if (out) writeFileSync(out, JSON.stringify(rows, null, 1) + '\n');
