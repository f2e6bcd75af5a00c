/**
 * Where should the optimizer run? AdamW over MobileNetV2-sized parameters (≈3.5 M values in 158
 * tensors), (a) as Graft's TypeScript loop over Float32Arrays, (b) as an ONNX graph run by
 * onnxruntime (parameters, gradients and both moments fed in, updated tensors fetched back).
 *   npx tsx bench/optimizer.ts [--iters 20]
 */
import { Graph } from '../src/graph/graph.js';
import { Builder } from '../src/graph/builder.js';
import { Session, type Feeds } from '../src/runtime/session.js';
import { AdamW } from '../src/optim/optimizer.js';
import { Rng } from '../src/util/random.js';

const iters = Number(process.argv[process.argv.indexOf('--iters') + 1] || 20) || 20;
const rng = new Rng(1);
// MobileNetV2's parameter tensor sizes, roughly: many small, a few large
const sizes: number[] = [];
for (let i = 0; i < 52; i++) sizes.push(32 * 9, 96 * 24 * (1 + (i % 7)), 144 * 16 + i * 400);
sizes.push(1280 * 320, 1280 * 1000, 1000);
const total = sizes.reduce((a, b) => a + b, 0);
const rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal() * 0.01);
const params = new Map(sizes.map((n, i) => [`p${i}`, rand(n)]));
const grads = new Map(sizes.map((n, i) => [`p${i}`, rand(n)]));

function median(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// (a) TypeScript
const opt = new AdamW({ weightDecay: 0.01 });
const ts: number[] = [];
for (let i = 0; i < iters + 3; i++) {
  const t0 = performance.now();
  opt.step(params, grads, 1e-3);
  if (i >= 3) ts.push(performance.now() - t0);
}

// (b) the same update as an ONNX graph: m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g²; p' = p·(1-lr·wd) - lr/c1 · m' / (sqrt(v'/c2) + eps)
const g = new Graph();
g.opsets = { '': 17 };
const b = new Builder(g);
for (const v of ['lr_c1', 'c2', 'decay']) g.inputs.push({ name: v, dtype: 'float32', shape: [] });
sizes.forEach((n, i) => {
  for (const k of ['p', 'g', 'm', 'v']) g.inputs.push({ name: `${k}${i}`, dtype: 'float32', shape: [n] });
  const m = b.add(b.mul(`m${i}`, b.f32(0.9)), b.mul(`g${i}`, b.f32(0.1)));
  const v = b.add(b.mul(`v${i}`, b.f32(0.999)), b.mul(b.mul(`g${i}`, `g${i}`), b.f32(0.001)));
  const denom = b.add(b.op('Sqrt', [b.div(v, 'c2')]), b.f32(1e-8));
  const p = b.sub(b.mul(`p${i}`, 'decay'), b.mul('lr_c1', b.div(m, denom)));
  g.outputs.push({ name: p }, { name: m }, { name: v });
});
const s = await Session.fromGraph(g);
const feeds: Feeds = {
  lr_c1: { dtype: 'float32', dims: [], data: Float32Array.from([1e-3]) },
  c2: { dtype: 'float32', dims: [], data: Float32Array.from([0.001]) },
  decay: { dtype: 'float32', dims: [], data: Float32Array.from([1 - 1e-5]) },
};
sizes.forEach((n, i) => {
  feeds[`p${i}`] = { dtype: 'float32', dims: [n], data: params.get(`p${i}`)! };
  feeds[`g${i}`] = { dtype: 'float32', dims: [n], data: grads.get(`p${i}`)! };
  feeds[`m${i}`] = { dtype: 'float32', dims: [n], data: rand(n) };
  feeds[`v${i}`] = { dtype: 'float32', dims: [n], data: Float32Array.from(rand(n), Math.abs) };
});
const ort: number[] = [];
for (let i = 0; i < iters + 3; i++) {
  const t0 = performance.now();
  await s.run(feeds);
  if (i >= 3) ort.push(performance.now() - t0);
}
const [a, o] = [median(ts), median(ort)];
console.log(`AdamW step over ${total.toLocaleString('en')} parameters in ${sizes.length} tensors (median of ${iters})`);
console.log('| where | ms/step |');
console.log('| --- | --- |');
console.log(`| TypeScript loop (Graft) | ${a.toFixed(1)} |`);
console.log(`| ONNX graph in onnxruntime | ${o.toFixed(1)} |`);
console.log(
  `ratio onnxruntime / TypeScript: ${(o / a).toFixed(2)}× — ${a <= o ? 'TypeScript is faster: keep the optimizer in TS' : 'the graph is faster: move the optimizer into the graph'}`,
);
