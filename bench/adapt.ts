/**
 * Feature-level adaptation at 10k examples: the time each method takes on cached features, and the
 * target accuracy it reaches. Real features: mnist.onnx's 256-d features (the input of its final
 * layer) of N Fashion-MNIST training images (labelled source) and of N Fashion-MNIST test images
 * under a documented shift (target; default 'dim-noisy', see src/data/shifts.ts).
 *
 * For each method: one run at fixed hyperparameters (the time a user pays per setting), and the
 * full run with label-free selection over the method's grid (reverse validation on held-out source
 * labels, then a refit on all the source). Target labels are read only for the accuracy column.
 * A NumPy/scikit-learn peer (bench/adapt_peer.py) runs source-only and CORAL on the very same
 * features in the same run, so times are quoted as ratios.
 *
 *   GRAFT_THREADS=1 npx tsx bench/adapt.ts                   # 10,000 source + 10,000 target
 *   GRAFT_THREADS=1 npx tsx bench/adapt.ts --n 2000 --no-peer
 * Options: --n N (10000), --shift dim-noisy|invert|noise, --methods a,b,… , --python PATH, --no-peer,
 * --write-docs (rewrite the adapt-bench block of docs/adaptation.md with this run's table).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fashionFeaturePair } from '../src/adapt/experiments.js';
import { adaptFeatures, runFeatureMethod, FEATURE_METHODS, type FeatureMethod } from '../src/adapt/features.js';
import { PIXEL_SHIFTS, type PixelShift } from '../src/data/shifts.js';
import { argmax, accuracy } from '../src/util/vectors.js';

const argv = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1]! : d;
};
if (argv.includes('--help')) {
  console.log(
    'GRAFT_THREADS=1 npx tsx bench/adapt.ts [--n 10000] [--shift dim-noisy] [--methods source-only,coral,subspace,self-training] [--python PATH] [--no-peer]',
  );
  process.exit(0);
}
const n = Number(opt('n', '10000'));
const shift = opt('shift', 'dim-noisy') as PixelShift;
if (!PIXEL_SHIFTS.includes(shift)) throw new Error(`--shift must be one of ${PIXEL_SHIFTS.join(', ')}`);
const methods = opt('methods', FEATURE_METHODS.join(',')).split(',') as FeatureMethod[];
const FIXED: Record<FeatureMethod, Record<string, number>> = {
  'source-only': {},
  coral: { lambda: 0.1 },
  subspace: { dims: 32 },
  'self-training': { threshold: 0.9 },
  'coral-self-training': { lambda: 1, threshold: 0.9 },
};

let t0 = performance.now();
const { source, target } = await fashionFeaturePair(n, shift);
const d = source.x[0]!.length;
console.log(
  `features: ${n} source + ${n} target (${shift}), ${d}-d, extracted in ${((performance.now() - t0) / 1000).toFixed(1)} s; GRAFT_THREADS=${process.env['GRAFT_THREADS'] ?? '(default)'}`,
);
console.log('method          fixed: s   target acc | selected: s   target acc  chosen');
const rows: { method: string; fixed: number; selected: number }[] = [];
const md: string[] = [
  `${n} source + ${n} target feature vectors (${shift}), ${d}-d; GRAFT_THREADS=${process.env['GRAFT_THREADS'] ?? '(default)'}; one run.`,
  '',
  '| method | fixed setting: s | target acc. | with label-free selection: s | target acc. | chosen |',
  '| --- | ---: | ---: | ---: | ---: | --- |',
];
for (const m of methods) {
  t0 = performance.now();
  const f = await runFeatureMethod(m, source, target.x, FIXED[m], {});
  const fixedS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const s = await adaptFeatures(m, source, target.x);
  const selS = (performance.now() - t0) / 1000;
  rows.push({ method: m, fixed: fixedS, selected: selS });
  md.push(
    `| ${m} ${JSON.stringify(FIXED[m])} | ${fixedS.toFixed(2)} | ${accuracy(f.targetProba.map(argmax), target.y).toFixed(3)} | ${selS.toFixed(2)} | ${accuracy(s.targetProba.map(argmax), target.y).toFixed(3)} | ${JSON.stringify(s.chosen)} |`,
  );
  console.log(
    `${m.padEnd(15)} ${fixedS.toFixed(2).padStart(8)}   ${accuracy(f.targetProba.map(argmax), target.y).toFixed(3).padStart(10)} | ${selS.toFixed(2).padStart(11)}   ${accuracy(s.targetProba.map(argmax), target.y).toFixed(3).padStart(10)}  ${JSON.stringify(s.chosen)}`,
  );
}

if (!argv.includes('--no-peer')) {
  const dir = mkdtempSync(join(tmpdir(), 'graft-adapt-bench-'));
  try {
    const dump = (X: ArrayLike<number>[]) => {
      const a = new Float32Array(X.length * d);
      X.forEach((x, i) => a.set(x, i * d));
      return Buffer.from(a.buffer);
    };
    writeFileSync(join(dir, 'xs.f32'), dump(source.x));
    writeFileSync(join(dir, 'ys.i32'), Buffer.from(Int32Array.from(source.y).buffer));
    writeFileSync(join(dir, 'xt.f32'), dump(target.x));
    writeFileSync(join(dir, 'yt.i32'), Buffer.from(Int32Array.from(target.y).buffer));
    const py = opt('python', process.env['GRAFT_BENCH_PYTHON'] ?? '/usr/bin/python3');
    const r = spawnSync(
      py,
      [
        'bench/adapt_peer.py',
        '--dir',
        dir,
        '--dim',
        String(d),
        '--lambda',
        '0.1',
        '--l2',
        '0.01',
        '--threads',
        process.env['GRAFT_THREADS'] ?? '1',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) console.log(`peer failed: ${r.stderr || r.error}`);
    else {
      const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, { seconds: number; accuracy: number }>;
      for (const [m, v] of Object.entries(p)) {
        const ours = rows.find((x) => x.method === m);
        md.push(
          `${md.length && md[md.length - 1]!.startsWith('|') ? '\n' : ''}Peer (NumPy + scikit-learn) ${m}: ${v.seconds.toFixed(2)} s, target acc. ${v.accuracy.toFixed(3)}${ours ? `; Graft's fixed-setting time is ${(ours.fixed / v.seconds).toFixed(2)}× the peer's` : ''}.`,
        );
        console.log(
          `peer (NumPy + scikit-learn) ${m}: ${v.seconds.toFixed(2)} s, target acc ${v.accuracy.toFixed(3)}${ours ? `; Graft fixed-setting time / peer = ${(ours.fixed / v.seconds).toFixed(2)}×` : ''}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (argv.includes('--write-docs')) {
  const DOC = 'docs/adaptation.md',
    BEGIN = '<!-- adapt-bench:begin (bench/adapt.ts --write-docs) -->',
    END = '<!-- adapt-bench:end -->';
  const doc = readFileSync(DOC, 'utf8');
  const i = doc.indexOf(BEGIN),
    j = doc.indexOf(END);
  if (i < 0 || j < i) throw new Error(`${DOC}: markers not found`);
  writeFileSync(`${DOC}.tmp`, doc.slice(0, i + BEGIN.length) + '\n' + md.join('\n') + '\n' + doc.slice(j));
  renameSync(`${DOC}.tmp`, DOC);
  console.log(`rewrote the benchmark block of ${DOC}`);
}
