/**
 * Import speed: how long converting each real model takes (TFLite, TF.js layers, TF.js graph), with the
 * importers of this tree, against a peer: another Graft tree's importers (for example the commit before
 * the importers were rebuilt on one core, extracted with `git archive`), timed in the same run,
 * alternating, by process CPU time (steady on a shared machine).
 *
 *   npx tsx bench/importers.ts                                  # this tree only
 *   mkdir /tmp/graft-peer && git archive c13f2ee src package.json | tar -x -C /tmp/graft-peer &&
 *     ln -s "$PWD/node_modules" /tmp/graft-peer/   # a peer tree: its src/, package.json (ESM) and our node_modules
 *   npx tsx bench/importers.ts --peer /tmp/graft-peer --rounds 5
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { assetPath } from '../src/data/assets.js';
import * as mine from '../src/formats/load.js';
import * as mineTfjs from '../src/formats/tfjs.js';
import type { Graph } from '../src/graph/graph.js';

const { values: o } = parseArgs({
  options: { peer: { type: 'string' }, rounds: { type: 'string', default: '3' }, help: { type: 'boolean' } },
});
if (o.help) {
  console.log('npx tsx bench/importers.ts [--peer DIR (a Graft tree holding src/)] [--rounds N]');
  process.exit(0);
}
const rounds = Number(o.rounds);

interface Impl {
  load: (p: string) => Graph;
  nsfwjs: (m: 'MobileNetV2' | 'InceptionV3' | 'MobileNetV2Mid') => Graph;
}
const impls: [string, Impl][] = [['this tree', { load: mine.loadModel, nsfwjs: (m) => mineTfjs.readNsfwjs(m) }]];
if (o.peer) {
  const src = resolve(o.peer, 'src', 'formats');
  if (!existsSync(join(src, 'load.ts'))) throw new Error(`${o.peer} has no src/formats/load.ts`);
  const load = (await import(pathToFileURL(join(src, 'load.ts')).href)) as typeof mine;
  const tfjs = (await import(pathToFileURL(join(src, 'tfjs.ts')).href)) as typeof mineTfjs;
  impls.push(['peer', { load: load.loadModel, nsfwjs: (m) => tfjs.readNsfwjs(m) }]);
}

const models: [string, (i: Impl) => Graph][] = [
  ...['mobilenet_v1_0.25_128_quant', 'mobilenet_v2_1.0_224_quant', 'tf2_mobilenet_v2_1.0_224_ptq'].map(
    (f): [string, (i: Impl) => Graph] => [`coral/${f}`, (i) => i.load(assetPath(`models/coral/${f}.tflite`))],
  ),
  ['ml5/darknettiny', (i) => i.load(assetPath('models/ml5/darknettiny'))],
  ['ml5/doodlenet', (i) => i.load(assetPath('models/ml5/doodlenet'))],
  ['nsfwjs/MobileNetV2', (i) => i.nsfwjs('MobileNetV2')],
  ['nsfwjs/InceptionV3', (i) => i.nsfwjs('InceptionV3')],
  ['nsfwjs/MobileNetV2Mid', (i) => i.nsfwjs('MobileNetV2Mid')],
];

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
console.log(
  `| model | ${impls.map(([n]) => `${n} (ms, best of ${rounds})`).join(' | ')}${impls.length > 1 ? ' | ratio |' : ''}`,
);
console.log(`| --- | ${impls.map(() => '---:').join(' | ')}${impls.length > 1 ? ' | ---: |' : ''}`);
for (const [name, make] of models) {
  const best = impls.map(() => Infinity);
  for (let r = 0; r < rounds; r++) {
    impls.forEach(([, impl], k) => {
      const t0 = cpuMs();
      const g = make(impl);
      best[k] = Math.min(best[k]!, cpuMs() - t0);
      if (!g.nodes.length) throw new Error(`${name}: empty graph`);
    });
  }
  const ratio = impls.length > 1 ? ` | ${(best[0]! / best[1]!).toFixed(2)} |` : '';
  console.log(`| ${name} | ${best.map((b) => b.toFixed(0)).join(' | ')}${ratio}`);
}
