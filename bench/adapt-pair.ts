/**
 * Labelled source → shifted target: Fashion-MNIST → Fashion-MNIST with a documented shift
 * (src/data/shifts.ts; default Gaussian noise σ = 80 of 255). The small CNN of
 * src/heads/scratch-cnn.ts is trained through Graft's engine with:
 *
 *   source-only        CE on the labelled source (the adaptation loop with target rows ignored)
 *   DANN               + domain classifier behind gradient reversal (λ ramp of the paper)
 *   deep MMD           + multi-bandwidth Gaussian MMD² at the classifier's input
 *   deep CORAL         + covariance distance at the classifier's input
 *   target-supervised  CE on the target training images WITH their labels (upper bound)
 *
 * Selection without target labels: for each adaptation method the alignment weight (small grid) and
 * the checkpoint (every 2nd epoch) are chosen by the information-maximization score of the model's
 * predictions on the unlabelled target training images (src/adapt/selection.ts). Source-only and
 * target-supervised use their last epoch. Target test labels are read only to report accuracy.
 *
 * Run: GRAFT_THREADS=1 node --import tsx bench/adapt-pair.ts [--shift noise:80] [--per-class 300]
 *      [--epochs 10] [--seed 0] [--write-docs]   (--write-docs replaces the section in docs/adaptation.md)
 */
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { fashionShiftPair, parseShift, DEFAULT_SHIFT } from '../src/data/shifts.js';
import { smallCnn } from '../src/heads/scratch-cnn.js';
import { fit, predictLabels } from '../src/train/fit.js';
import { adaptFit, dannLoss, sourceOnlyLoss, featureDim, type AdaptLoss } from '../src/adapt/dann.js';
import { mmdLoss, deepCoralLoss } from '../src/adapt/mmd.js';
import { predictClassProba } from '../src/adapt/predict.js';
import { informationMaximization } from '../src/adapt/selection.js';
import { defaultFeatureNode } from '../src/features/extract.js';
import type { Trainer } from '../src/train/trainer.js';
import { accuracy } from '../src/util/vectors.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const shift = args.includes('--shift') ? parseShift(flag('--shift', '')) : DEFAULT_SHIFT;
const perClass = Number(flag('--per-class', '300'));
const epochs = Number(flag('--epochs', '10'));
const seed = Number(flag('--seed', '0'));
const pair = fashionShiftPair({ shift, sourcePerClass: perClass, targetPerClass: perClass, testPerClass: 100, seed });
const net = () => smallCnn({ channels: 1, size: 28, classes: 10, seed: seed + 1 });
const feature = defaultFeatureNode(net());
const D = await featureDim(net(), feature);
const train = { batchSize: 64, lr: 2e-3, seed: seed + 1 };

async function testAcc(tr: Trainer, which: 'source' | 'target'): Promise<number> {
  const t = pair[which].test;
  return accuracy(await predictLabels(tr, tr.tg.model, t.x), t.y);
}

interface Row {
  method: string;
  chosen: string;
  source: number;
  target: number;
  seconds: number;
  imScore?: number;
}
const rows: Row[] = [];

/** Train with each weight; score checkpoints by information maximization on the target train images. */
async function adapted(method: string, make: (w: number) => AdaptLoss, weights: number[]) {
  let best: { score: number; chosen: string; source: number; target: number } | undefined;
  const t0 = performance.now();
  for (const w of weights) {
    await adaptFit(net(), make(w), pair.source.train, pair.target.train.x, {
      ...train,
      epochs,
      onEpoch: async ({ epoch, trainer }) => {
        if (epoch % 2 !== 0 && epoch !== epochs) return;
        const P = await predictClassProba(trainer.toGraph(), pair.target.train.x);
        const score = informationMaximization(P).score;
        process.stderr.write(`${method} weight ${w} epoch ${epoch}: IM ${score.toFixed(3)}\n`);
        if (!best || score > best.score)
          best = {
            score,
            chosen: `weight ${w}, epoch ${epoch}`,
            source: await testAcc(trainer, 'source'),
            target: await testAcc(trainer, 'target'),
          };
      },
    }).then((tr) => tr.release());
  }
  rows.push({
    method,
    chosen: best!.chosen,
    source: best!.source,
    target: best!.target,
    seconds: (performance.now() - t0) / 1000,
    imScore: best!.score,
  });
}

{
  const t0 = performance.now();
  const tr = await adaptFit(net(), sourceOnlyLoss(), pair.source.train, pair.target.train.x, { ...train, epochs });
  rows.push({
    method: 'source-only',
    chosen: `epoch ${epochs}`,
    source: await testAcc(tr, 'source'),
    target: await testAcc(tr, 'target'),
    seconds: (performance.now() - t0) / 1000,
  });
  await tr.release();
}
await adapted('DANN', (w) => dannLoss({ feature, featureDim: D, domainWeight: w, seed }), [1]);
await adapted('deep MMD', (w) => mmdLoss({ feature, weight: w }), [1, 3]);
await adapted('deep CORAL', (w) => deepCoralLoss({ feature, featureDim: D, weight: w }), [30, 300]);
{
  const t0 = performance.now();
  const r = await fit(net(), pair.target.train, { ...train, epochs, batchSize: 32 });
  rows.push({
    method: 'target-supervised (upper bound)',
    chosen: `epoch ${epochs}`,
    source: await testAcc(r.trainer, 'source'),
    target: await testAcc(r.trainer, 'target'),
    seconds: (performance.now() - t0) / 1000,
  });
  await r.trainer.release();
}

const n = pair.target.test.y.length;
const table = [
  `Source: ${perClass} labelled Fashion-MNIST training images per class (first half of the training file). ` +
    `Target: ${perClass} other training images per class with the shift **${pair.description}** (labels unused except by the upper bound). ` +
    `Test: the same ${n} test-file images (${n / 10} per class), clean (source column) and shifted (target column). ` +
    `Network: smallCnn (conv 16 → conv 32 → linear, ${D}-d features at '${feature}'), AdamW 2e-3, ${epochs} epochs, batches of 32 source + 32 target, seed ${seed}, GRAFT_THREADS=1.`,
  '',
  '| method | chosen without target labels | source test acc. | target test acc. | seconds |',
  '| --- | --- | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.method} | ${r.chosen}${r.imScore !== undefined ? ` (IM ${r.imScore.toFixed(3)})` : ''} | ${r.source.toFixed(3)} | ${r.target.toFixed(3)} | ${r.seconds.toFixed(0)} |`,
  ),
].join('\n');
process.stdout.write(table + '\n');
process.stdout.write(JSON.stringify({ shift: pair.description, perClass, epochs, seed, rows }) + '\n');

if (args.includes('--write-docs')) {
  const file = new URL('../docs/adaptation.md', import.meta.url).pathname;
  const begin = '<!-- adapt-pair:begin (bench/adapt-pair.ts --write-docs) -->',
    end = '<!-- adapt-pair:end -->';
  const block = `${begin}\n${table}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Domain adaptation\n';
  if (text.includes(begin) && text.includes(end))
    text = text.slice(0, text.indexOf(begin)) + block + text.slice(text.indexOf(end) + end.length);
  else text = text.trimEnd() + `\n\n## Labelled source → shifted target\n\n${block}\n`;
  writeFileSync(file + '.tmp', text);
  renameSync(file + '.tmp', file);
  process.stderr.write(`updated ${file}\n`);
}
