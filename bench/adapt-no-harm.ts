/**
 * Calibrates and checks the no-harm rule of label-free adaptation (src/adapt/selection.ts,
 * NO_HARM_MARGIN): on the shared shift pairs of docs/adaptation.md, every `graft adapt` method runs
 * once with all its candidates kept; each candidate's label-free score and (held-out or transductive)
 * target accuracy are recorded, with the unadapted model's (source-free: the input network;
 * feature-level: the source-only head; dann/mmd/deep-coral: source-only training, same settings).
 * Then, for a range of margins, the selection is replayed: "before" is the old rule (best adapted
 * candidate), "after" the no-harm rule. Target labels only fill the accuracy columns.
 *
 * Pairs: mnist.onnx → 8×8 digits and the BN CNN Fashion → dim-noisy (source-free); mnist.onnx
 * features Fashion → dim-noisy, n = 2000 (feature-level); small CNN on 1,000 Fashion images → 1,000
 * test images with the noise shift, 6 epochs, lr 2e-3 (dann, mmd, deep-coral: the CLI rows).
 *
 * Run: GRAFT_THREADS=1 node --import tsx bench/adapt-no-harm.ts [--stages source-free,features,with-source]
 *      [--feature-n 2000,10000] [--json FILE] [--replay FILE]  (--replay: the tables from a saved --json, no runs)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Graph } from '../src/graph/graph.js';
import { digitsTask, fashionBnTask, fashionFeaturePair, fashionMnist } from '../src/adapt/experiments.js';
import { adaptNetwork, type NetworkMethod } from '../src/adapt/source-free.js';
import { adaptFeatures, type FeatureMethod } from '../src/adapt/features.js';
import { adaptWithSource, type SourceNetworkMethod } from '../src/adapt/with-source.js';
import { predictClassProba } from '../src/adapt/predict.js';
import { shiftImages } from '../src/data/shifts.js';
import { smallCnn } from '../src/heads/scratch-cnn.js';
import { NO_HARM_MARGIN } from '../src/adapt/selection.js';
import type { Examples } from '../src/train/fit.js';
import { argmax, accuracy } from '../src/util/vectors.js';

interface Cand {
  params: string;
  score: number;
  acc: number;
  im?: number;
}
interface Run {
  pair: string;
  method: string;
  criterion: 'im' | 'rv' | 'rvf';
  base: { score: number; acc: number; im?: number };
  cands: Cand[];
  seconds: number;
}
const runs: Run[] = [];
const args = process.argv.slice(2);
const acc = async (g: Graph, t: Examples) => accuracy((await predictClassProba(g, t.x)).map(argmax), t.y);
const fmt = (p: Record<string, number>) =>
  Object.entries(p)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
const log = (r: Run) =>
  process.stderr.write(
    `${r.pair} ${r.method}: base ${r.base.score.toFixed(3)}/${r.base.acc.toFixed(3)}; ${r.cands.map((c) => `${c.score.toFixed(3)}/${c.acc.toFixed(3)}`).join(' ')} (${r.seconds.toFixed(0)} s)\n`,
  );
const t0 = performance.now();

async function sourceFree(
  pair: string,
  model: Graph,
  target: Float32Array[],
  test: Examples,
  methods: NetworkMethod[],
) {
  const base = await acc(model, test);
  for (const m of methods) {
    const s0 = performance.now();
    const r = await adaptNetwork(m, model, target, { keepModels: true, noHarm: false });
    const cands: Cand[] = [];
    for (const c of r.candidates) cands.push({ params: fmt(c.params), score: c.score, acc: await acc(c.model!, test) });
    runs.push({
      pair,
      method: m,
      criterion: 'im',
      base: { score: r.before, acc: base },
      cands,
      seconds: (performance.now() - s0) / 1000,
    });
    log(runs.at(-1)!);
  }
}

const flagOf = (k: string, d: string) => (args.includes(k) ? args[args.indexOf(k) + 1]! : d);
const replay = args.includes('--replay') ? flagOf('--replay', '').split(',') : [];
for (const f of replay)
  for (const r of JSON.parse(readFileSync(f, 'utf8')) as Run[])
    if (!r.pair.startsWith('mnist.onnx features') || r.base.im !== undefined) runs.push(r); // feature rows before IM was recorded are dropped
const stages = replay.length ? [] : flagOf('--stages', 'source-free,features,with-source').split(',');
if (stages.includes('source-free')) {
  const digits = await digitsTask();
  await sourceFree('mnist.onnx → digits', digits.model, digits.target, digits.test, ['entropy', 'self-training']);
  const bn = await fashionBnTask();
  await sourceFree('BN CNN Fashion → dim-noisy', bn.model, bn.target, bn.test, ['adabn', 'entropy', 'self-training']);
}

for (const n of stages.includes('features') ? flagOf('--feature-n', '2000').split(',').map(Number) : []) {
  const fp = await fashionFeaturePair(n, 'dim-noisy');
  for (const m of flagOf('--feature-methods', 'coral,subspace,self-training,coral-self-training').split(
    ',',
  ) as FeatureMethod[]) {
    const s0 = performance.now();
    const r = await adaptFeatures(m, fp.source, fp.target.x, { keepPredictions: true, margin: 0 });
    runs.push({
      pair: `mnist.onnx features Fashion → dim-noisy, n ${n}`,
      method: m,
      criterion: 'rvf' as const,
      base: {
        score: r.unadapted!.reverseValidation,
        acc: accuracy(r.unadapted!.targetProba!.map(argmax), fp.target.y),
        im: r.unadapted!.informationMaximization,
      },
      cands: r.candidates.map((c) => ({
        params: fmt(c.params),
        score: c.reverseValidation,
        acc: accuracy(c.targetProba!.map(argmax), fp.target.y),
        im: c.informationMaximization,
      })),
      seconds: (performance.now() - s0) / 1000,
    });
    log(runs.at(-1)!);
  }
}

if (stages.includes('with-source')) {
  const { train, test } = fashionMnist();
  const unit = (u: Uint8Array) => Float32Array.from(u, (v) => v / 255);
  const source = { x: train.images.slice(0, 1000).map(unit), y: train.labels.slice(0, 1000) };
  const target = { x: shiftImages(test.images.slice(0, 1000).map(unit), 'noise', 0), y: test.labels.slice(0, 1000) };
  for (const m of ['dann', 'mmd', 'deep-coral'] as SourceNetworkMethod[]) {
    const s0 = performance.now();
    const r = await adaptWithSource(m, smallCnn({ channels: 1, size: 28, classes: 10, seed: 0 }), source, target.x, {
      epochs: 6,
      lr: 2e-3,
      batchSize: 128,
      seed: 0,
      keepModels: true,
      margin: 0,
    });
    const cands: Cand[] = [];
    for (const c of r.candidates)
      cands.push({ params: fmt(c.params), score: c.score, acc: await acc(c.model!, target) });
    runs.push({
      pair: 'small CNN Fashion → noise (CLI rows)',
      method: m,
      criterion: 'rv',
      base: { score: r.unadapted!.score, acc: await acc(r.unadapted!.model, target) },
      cands,
      seconds: (performance.now() - s0) / 1000,
    });
    log(runs.at(-1)!);
  }
}

/**
 * The replayed choice at a margin (margin −∞: the old rule, the best adapted candidate). Feature-level
 * runs: the best candidate by reverse validation, kept only when its IM beats the source-only head's.
 */
function choose(r: Run, margin: number): { acc: number; kept: boolean; params: string } {
  const best = r.cands.reduce((b, c) => (c.score > b.score ? c : b));
  const gain = r.criterion === 'rvf' ? best.im! - r.base.im! : best.score - r.base.score;
  return gain > margin
    ? { acc: best.acc, kept: false, params: best.params }
    : { acc: r.base.acc, kept: true, params: 'unadapted' };
}
const margins = {
  im: [0, 0.02, 0.05, 0.1, 0.2, 0.4],
  rv: [-0.02, 0, 0.005, 0.01, 0.02, 0.05],
  rvf: [0, 0.01, 0.02, 0.05, 0.1, 0.2],
};
const NAMES = {
  im: 'information maximization (source-free)',
  rv: 'reverse validation (dann, mmd, deep-coral)',
  rvf: 'feature-level: IM of the reverse-validation choice vs the source-only head',
};
const marginOf = (c: Run['criterion']) =>
  c === 'im'
    ? NO_HARM_MARGIN.informationMaximization
    : c === 'rv'
      ? NO_HARM_MARGIN.reverseValidation
      : NO_HARM_MARGIN.informationMaximizationFeatures;
console.log(
  '| criterion | margin | worst change vs unadapted | methods that helped before and still help | kept unadapted |',
);
console.log('| --- | ---: | ---: | --- | ---: |');
for (const crit of ['im', 'rv', 'rvf'] as const) {
  const rs = runs.filter((r) => r.criterion === crit);
  const helped = rs.filter((r) => choose(r, -Infinity).acc - r.base.acc > 0.005);
  for (const m of margins[crit]) {
    const worst = Math.min(...rs.map((r) => choose(r, m).acc - r.base.acc));
    const still = helped.filter((r) => choose(r, m).acc - r.base.acc > 0.005).length;
    if (!rs.length) continue;
    console.log(
      `| ${NAMES[crit]} | ${m} | ${worst >= 0 ? '+' : ''}${worst.toFixed(3)} | ${still} of ${helped.length} | ${rs.filter((r) => choose(r, m).kept).length} of ${rs.length} |`,
    );
  }
}
console.log();
console.log(`Before/after at the shipped margins (NO_HARM_MARGIN: ${JSON.stringify(NO_HARM_MARGIN)}):`);
console.log();
console.log(
  '| pair | method | unadapted acc. | before: chosen → acc. | after (no harm): chosen → acc. | change after |',
);
console.log('| --- | --- | ---: | --- | --- | ---: |');
for (const r of runs) {
  const b = choose(r, -Infinity),
    a = choose(r, marginOf(r.criterion));
  const d = a.acc - r.base.acc;
  console.log(
    `| ${r.pair} | ${r.method} | ${r.base.acc.toFixed(3)} | ${b.params} → ${b.acc.toFixed(3)} (${b.acc - r.base.acc >= 0 ? '+' : ''}${(b.acc - r.base.acc).toFixed(3)}) | ${a.params} → ${a.acc.toFixed(3)} | ${d >= 0 ? '+' : ''}${d.toFixed(3)} |`,
  );
}
console.log(`\nTotal ${((performance.now() - t0) / 1000).toFixed(0)} s.`);
const j = args.indexOf('--json');
if (j >= 0) writeFileSync(args[j + 1]!, JSON.stringify(runs, null, 2) + '\n');
