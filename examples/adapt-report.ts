/**
 * Measures every number of the "Source-free adaptation" and "Feature-level adaptation" sections of
 * docs/adaptation.md and writes them there (between the adapt-report markers; the rest of the file
 * is left as it is). Hyperparameters and checkpoints are chosen by the label-free criteria; target
 * labels are read only to fill the accuracy columns.
 *
 *   GRAFT_THREADS=1 npx tsx examples/adapt-report.ts             # print, and rewrite the docs section
 *   GRAFT_THREADS=1 npx tsx examples/adapt-report.ts --no-write  # print only
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import type { Graph } from '../src/graph/graph.js';
import { digitsTask, fashionBnTask, fashionFeaturePair } from '../src/adapt/experiments.js';
import { adaptNetwork, type NetworkMethod } from '../src/adapt/source-free.js';
import { adaptFeatures, FEATURE_METHODS } from '../src/adapt/features.js';
import { predictClassProba } from '../src/adapt/predict.js';
import type { Examples } from '../src/train/fit.js';
import { argmax, accuracy } from '../src/util/vectors.js';

const DOC = 'docs/adaptation.md';
const BEGIN = '<!-- adapt-report:begin (examples/adapt-report.ts) -->';
const END = '<!-- adapt-report:end -->';
const fmt = (p: Record<string, number | string>) =>
  Object.entries(p)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
const acc = async (g: Graph, t: Examples) => accuracy((await predictClassProba(g, t.x)).map(argmax), t.y);
const lines: string[] = [];
const out = (s = '') => {
  lines.push(s);
  console.log(s);
};

async function sourceFreeTable(
  title: string,
  model: Graph,
  target: Float32Array[],
  test: Examples,
  runs: [string, NetworkMethod, Record<string, number>[] | undefined][],
) {
  const base = await acc(model, test);
  out(
    `| ${title} | chosen without target labels (IM score) | held-out target acc. | change | best candidate by held-out labels (oracle, not used) | seconds |`,
  );
  out('| --- | --- | ---: | ---: | ---: | ---: |');
  out(`| unadapted | — | ${base.toFixed(3)} | | | |`);
  for (const [name, method, grid] of runs) {
    const r = await adaptNetwork(method, model, target, { ...(grid ? { grid } : {}), keepModels: true });
    const a = await acc(r.model, test);
    const score = r.candidates.reduce((m, c) => Math.max(m, c.score), -Infinity);
    let oracle = -1;
    for (const c of r.candidates) oracle = Math.max(oracle, await acc(c.model!, test));
    out(
      `| ${name} | ${fmt(r.chosen)} (${score.toFixed(3)}; unadapted ${r.before.toFixed(3)}) | ${a.toFixed(3)} | ${a >= base ? '+' : ''}${(a - base).toFixed(3)} | ${oracle.toFixed(3)} of ${r.candidates.length} | ${r.seconds.toFixed(0)} |`,
    );
  }
}

const t0 = performance.now();
out(
  `Measured by \`examples/adapt-report.ts\` (GRAFT_THREADS=${process.env['GRAFT_THREADS'] ?? 'default'}, seed 0, one run each).`,
);
out();
out('### mnist.onnx → 8×8 digits (source-free)');
out();
const digits = await digitsTask();
out(
  `Target: ${digits.target.length} digits (70 % of each class, labels unused), held-out test: ${digits.test.x.length} digits (30 %). mnist.onnx has no BatchNormalization, so AdaBN does not apply (\`adaBn\` refuses it); entropy minimization and self-training train all its parameters.`,
);
out();
await sourceFreeTable('method', digits.model, digits.target, digits.test, [
  ['entropy minimization (entropy − diversity)', 'entropy', undefined],
  [
    'plain TENT entropy (diversity 0), for comparison',
    'entropy',
    [3e-4, 1e-3, 3e-3, 1e-2].map((lr) => ({ lr, diversity: 0 })),
  ],
  ['self-training (pseudo-labels)', 'self-training', undefined],
]);
out();
out('### BatchNorm CNN, Fashion-MNIST → washed-out noisy Fashion-MNIST (source-free)');
out();
const bn = await fashionBnTask();
out(
  `The small BN CNN of \`src/adapt/bn-cnn.ts\`, trained from scratch on 3,000 Fashion-MNIST training images (3 epochs, batch statistics), scores ${(await acc(bn.model, bn.sourceTest)).toFixed(3)} on 1,000 unshifted test images. Target: 1,000 other test images under the 'dim-noisy' shift (labels unused); held-out test: those 1,000 unshifted images, shifted. Entropy minimization trains only the BN scale and shift, with batch statistics (TENT).`,
);
out();
await sourceFreeTable('method', bn.model, bn.target, bn.test, [
  ['AdaBN (target BN statistics)', 'adabn', undefined],
  ['entropy minimization, BN affine (TENT + diversity)', 'entropy', undefined],
  ['self-training (pseudo-labels)', 'self-training', undefined],
]);
out();
out('### Feature-level methods: mnist.onnx features, Fashion-MNIST → washed-out noisy Fashion-MNIST');
out();
const pair = await fashionFeaturePair(2000, 'dim-noisy');
out(
  "Source: 2,000 labelled Fashion-MNIST training images; target: the first 2,000 test images under the 'dim-noisy' shift; features: mnist.onnx's 256-d input to its last layer. Each method's hyperparameter is chosen by reverse validation on 20 % of the source held out; accuracy is on the 2,000 target images themselves (transductive, labels unused by the methods).",
);
out();
out(
  '| method | chosen without target labels (reverse-validation acc.) | target acc. | best candidate by target labels (oracle, not used; candidates fitted on 80 % of the source) | seconds (with selection) |',
);
out('| --- | --- | ---: | ---: | ---: |');
for (const m of FEATURE_METHODS) {
  const r = await adaptFeatures(m, pair.source, pair.target.x, { keepPredictions: true });
  const rv = r.candidates.find((c) => c.params === r.chosen)?.reverseValidation;
  const oracle = r.candidates.length
    ? `${Math.max(...r.candidates.map((c) => accuracy(c.targetProba!.map(argmax), pair.target.y))).toFixed(3)} of ${r.candidates.length}`
    : '—';
  out(
    `| ${m} | ${Object.keys(r.chosen).length ? fmt(r.chosen) : '—'}${rv !== undefined ? ` (${rv.toFixed(3)})` : ''} | ${accuracy(r.targetProba.map(argmax), pair.target.y).toFixed(3)} | ${oracle} | ${r.seconds.toFixed(1)} |`,
  );
}
out();
out(`Total ${((performance.now() - t0) / 1000).toFixed(0)} s.`);

if (!process.argv.includes('--no-write')) {
  const doc = readFileSync(DOC, 'utf8');
  const i = doc.indexOf(BEGIN),
    j = doc.indexOf(END);
  if (i < 0 || j < i) throw new Error(`${DOC}: markers ${BEGIN} … ${END} not found`);
  const next = doc.slice(0, i + BEGIN.length) + '\n' + lines.join('\n') + '\n' + doc.slice(j);
  writeFileSync(`${DOC}.tmp`, next);
  renameSync(`${DOC}.tmp`, DOC);
  console.log(`rewrote the measured section of ${DOC}`);
}
