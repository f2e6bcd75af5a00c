/**
 * Conv (and pool) gradient formulations, timed against onnxruntime's forward on representative
 * MobileNetV2 / ResNet-18 layers at batch 16 (plus MaxPool, and BatchNormalization with batch statistics).
 * Each backward graph takes x, W and dy as inputs and computes dx or dW with one formulation; the rules
 * in src/autodiff/rules/conv.ts and norm.ts use the fastest ("*" below).
 *
 *   GRAFT_THREADS=2 npx tsx bench/conv-grad.ts [reps] [layer-name-filter]
 *   GRAFT_THREADS=1 BENCH_CLOCK=cpu npx tsx bench/conv-grad.ts   (CPU time: steadier on a shared machine)
 *
 * The forward is timed twice: with W as an initializer (plain inference, where onnxruntime may prepack
 * W into its NCHWc layout) and with W as an input (as in a training step, where W changes every step).
 */
import { Graph } from '../src/graph/graph.js';
import { A, Builder } from '../src/graph/builder.js';
import { Session, type Feeds } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';
import {
  type ConvGeom,
  tail,
  padSpatial,
  cropTo,
  scatterConvT,
  flipConv,
  weightCorr,
  planeCorr,
  im2colWeightGrad,
  pointwiseWeightGrad,
  convInputGrad,
  convWeightGrad,
} from '../src/autodiff/rules/conv.js';
import { pad, prod, range, slice } from '../src/autodiff/rules/helpers.js';

interface Layer {
  name: string;
  N: number;
  C: number;
  M: number;
  H: number;
  k: number;
  s: number;
  p: number;
  G: number;
}

const N = 16;
const LAYERS: Layer[] = [
  { name: 'conv3x3 s1 64->64 @56', N, C: 64, M: 64, H: 56, k: 3, s: 1, p: 1, G: 1 },
  { name: 'conv3x3 s2 64->64 @56', N, C: 64, M: 64, H: 56, k: 3, s: 2, p: 1, G: 1 },
  { name: 'conv1x1 96->24 @56', N, C: 96, M: 24, H: 56, k: 1, s: 1, p: 0, G: 1 },
  { name: 'dw3x3 s1 144 @56', N, C: 144, M: 144, H: 56, k: 3, s: 1, p: 1, G: 144 },
  { name: 'dw3x3 s2 144 @56', N, C: 144, M: 144, H: 56, k: 3, s: 2, p: 1, G: 144 },
  { name: 'dw3x3 s1 96 @112', N, C: 96, M: 96, H: 112, k: 3, s: 1, p: 1, G: 96 },
  { name: 'dw3x3 s2 96 @112', N, C: 96, M: 96, H: 112, k: 3, s: 2, p: 1, G: 96 },
  { name: 'stem7x7 s2 3->64 @224', N, C: 3, M: 64, H: 224, k: 7, s: 2, p: 3, G: 1 },
];

/* ---------------- alternative formulations that lost (kept here so the comparison can be rerun) ---------------- */

/** dx for stride s > 1: zero-upsample dy by s, then the stride-1 flipped-kernel Conv. */
function upsampleFlipConv(b: Builder, g: ConvGeom, small: string, w: string): string {
  const r = g.k.length;
  const R = 2 + 2 * r;
  const ends = Array(R).fill(0);
  g.s.forEach((v, i) => (ends[3 + 2 * i] = v - 1));
  const up = b.reshape(
    pad(b, b.reshape(small, [0, g.Cs, ...g.l.flatMap((v) => [v, 1])]), [...Array(R).fill(0), ...ends]),
    [0, g.Cs, ...g.l.map((v, i) => v * g.s[i]!)],
  );
  return flipConv(b, { ...g, l: g.l.map((v, i) => v * g.s[i]!), s: g.s.map(() => 1) }, up, w);
}

/**
 * dx for stride s > 1 (2-D, equal strides, dilation 1): one stride-1 Conv into s² phases per channel,
 * interleaved by DepthToSpace: big[q·s + p] = Σ_j small[q + c_p − j] · W[a_p + j·s], a_p = (p + pb) mod s.
 */
function phaseConvT(b: Builder, g: ConvGeom, small: string, w: string): string {
  const s = g.s[0]!;
  const [cs, cb] = [g.Cs / g.G, g.Cb / g.G];
  const dims = range(2).map((i) => {
    const K = g.k[i]!;
    const ph = range(s).map((p) => {
      const a = (p + g.pb[i]!) % s;
      return { a, c: Math.floor((p + g.pb[i]!) / s), J: a < K ? Math.ceil((K - a) / s) : 0 };
    });
    const P = Math.max(0, ...ph.map((q) => q.J - 1 - q.c));
    const Jc = Math.max(1, ...ph.map((q) => q.c + P + 1));
    const tap = (p: number, u: number) => {
      const j = ph[p]!.c + P - u;
      return j >= 0 && j < ph[p]!.J ? ph[p]!.a + j * s : -1;
    };
    const Q = Math.ceil(g.L[i]! / s);
    return { P, Jc, tap, Q, E: Q - g.l[i]! - P + Jc - 1 };
  });
  const [dh, dw] = [dims[0]!, dims[1]!];
  const zero = g.Cs * cb * prod(g.k);
  const idx: number[] = [];
  for (let gi = 0; gi < g.G; gi++)
    for (let c = 0; c < cb; c++)
      for (let p0 = 0; p0 < s; p0++)
        for (let p1 = 0; p1 < s; p1++)
          for (let m = 0; m < cs; m++)
            for (let u0 = 0; u0 < dh.Jc; u0++)
              for (let u1 = 0; u1 < dw.Jc; u1++) {
                const [k0, k1] = [dh.tap(p0, u0), dw.tap(p1, u1)];
                idx.push(k0 < 0 || k1 < 0 ? zero : (((gi * cs + m) * cb + c) * g.k[0]! + k0) * g.k[1]! + k1);
              }
  const wflat = b.op('Concat', [b.reshape(w, [-1]), b.f32([0])], { axis: A.i(0) });
  const index = b.constant({ dtype: 'int64', dims: [idx.length], data: BigInt64Array.from(idx.map(BigInt)) });
  const wp = b.reshape(b.op('Gather', [wflat, index], { axis: A.i(0) }), [g.Cb * s * s, cs, dh.Jc, dw.Jc]);
  const y = b.op('Conv', [small, wp], {
    group: A.i(g.G),
    pads: A.is([dh.P, dw.P, Math.max(0, dh.E), Math.max(0, dw.E)]),
  });
  const yc = cropTo(b, y, 4, [dh.Q - Math.min(0, dh.E), dw.Q - Math.min(0, dw.E)], [dh.Q, dw.Q]);
  return cropTo(b, b.op('DepthToSpace', [yc], { blocksize: A.i(s), mode: A.s('CRD') }), 4, [dh.Q * s, dw.Q * s], g.L);
}

/** dx of a 1×1 stride-1 Conv as a MatMul Wᵀ @ dy. */
function pointwiseInputGrad(b: Builder, g: ConvGeom, small: string, w: string): string {
  const wt = b.transpose(b.reshape(w, [g.Cs, g.Cb]), [1, 0]);
  return b.reshape(b.op('MatMul', [wt, b.reshape(small, [0, g.Cs, prod(g.l)])]), [0, g.Cb, ...g.L]);
}

/** The strided window of the padded input x_pad that meets kernel tap t (row-major over the kernel). */
function tapSlice(b: Builder, g: ConvGeom, xp: string, t: number): string {
  const r = g.k.length;
  const off: number[] = Array(r).fill(0);
  for (let i = r - 1, rest = t; i >= 0; i--) {
    off[i] = (rest % g.k[i]!) * g.d[i]!;
    rest = Math.floor(rest / g.k[i]!);
  }
  return slice(
    b,
    xp,
    off,
    off.map((o, i) => o + (g.l[i]! - 1) * g.s[i]! + 1),
    range(r).map((i) => i + 2),
    g.s,
  );
}

/** Depthwise dW[c, t] = Σ_{n,o} dy[n, c, o] · x_pad[n, c, o·s + t·d]: one strided Slice, Mul and ReduceSum per tap. */
function shiftedWeightGrad(b: Builder, g: ConvGeom, big: string, small: string): string {
  const r = g.k.length;
  const xp = padSpatial(
    b,
    big,
    r + 2,
    g.pb,
    range(r).map((i) => Math.max(0, tail(g, i))),
  );
  const axes = range(r).map((i) => i + 2);
  const cols: string[] = [];
  for (let t = 0; t < prod(g.k); t++) {
    const xs = tapSlice(b, g, xp, t);
    cols.push(b.reduce('ReduceSum', b.mul(xs, small), [0, ...axes], true));
  }
  return b.reshape(b.op('Concat', cols, { axis: A.i(r + 1) }), [g.Cs, 1, ...g.k]);
}

/** Depthwise dW per tap as a batched dot product: MatMul(dy [N·C, 1, P], x_shift [N·C, P, 1]), summed over N. */
function shiftedDotWeightGrad(b: Builder, g: ConvGeom, big: string, small: string): string {
  const r = g.k.length;
  const P = prod(g.l);
  const xp = padSpatial(
    b,
    big,
    r + 2,
    g.pb,
    range(r).map((i) => Math.max(0, tail(g, i))),
  );
  const dyr = b.reshape(small, [-1, 1, P]);
  const cols: string[] = [];
  for (let t = 0; t < prod(g.k); t++) {
    const xs = tapSlice(b, g, xp, t);
    cols.push(b.op('MatMul', [dyr, b.reshape(xs, [-1, P, 1])]));
  }
  const dots = b.reshape(b.op('Concat', cols, { axis: A.i(2) }), [-1, g.Cs, prod(g.k)]);
  return b.reshape(b.reduce('ReduceSum', dots, [0], false), [g.Cs, 1, ...g.k]);
}

/**
 * Depthwise 2-D dW (cb = cs = 1) as one small GEMM per (image, channel) plane, p:
 *   dW[i, j] = Σ_{h,w} dy[p, h, w] · xp[p, h·s + i·d, w·s + j·d]   (xp: x zero-padded).
 * Rows of xp are split into the s row phases (q·s + φ) and each phase is cut into kw column-shifted
 * copies, U[p, j, φ·Hq·l1 + q·l1 + w] = xp[p, q·s + φ, w·s + j·d]; row i of D holds dy placed at phase
 * φ = i·d mod s, row offset ⌊i·d/s⌋. Then dW = Σ_n D [kh, s·Hq·l1] @ Uᵀ [s·Hq·l1, kw]: about 3 copies of x
 * and of dy instead of the 9× im2col onnxruntime runs for the per-plane grouped Conv. Alone it beats the
 * correlation Convs by 25–40% on stride-1 planes of 28² and up (stride 2 is 3× slower: strided Slices), but
 * inside a whole MobileNetV2 step it measured no faster (its [3×K]·[K×3] GEMMs pad to MLAS's 16-wide panels).
 */
function rowShiftWeightGrad(b: Builder, g: ConvGeom, big: string, small: string): string {
  const [kh, kw] = g.k as [number, number];
  const [l0, l1] = g.l as [number, number];
  const [s0, s1] = g.s as [number, number];
  const [d0, d1] = g.d as [number, number];
  const phase = range(kh).map((i) => ({ f: (i * d0) % s0, a: Math.floor((i * d0) / s0) }));
  const Hq = Math.max(...phase.map((t) => t.a)) + l0;
  const pe = range(2).map((i) => Math.max(0, tail(g, i)));
  const [Hp, Wp] = [Hq * s0, g.L[1]! + g.pb[1]! + pe[1]!];
  const xp = b.reshape(padSpatial(b, big, 4, g.pb, [Hp - g.L[0]! - g.pb[0]!, pe[1]!]), [-1, Hp, Wp]);
  const Kq = Hq * l1;
  const parts: string[] = [];
  for (let j = 0; j < kw; j++)
    for (let f = 0; f < s0; f++)
      parts.push(b.reshape(slice(b, xp, [f, j * d1], [Hp, j * d1 + (l1 - 1) * s1 + 1], [1, 2], [s0, s1]), [0, 1, Kq]));
  const U = b.reshape(b.op('Concat', parts, { axis: A.i(1) }), [0, kw, s0 * Kq]);
  const dyr = b.reshape(small, [-1, 1, l0 * l1]);
  const rows = phase.map(({ f, a }) => pad(b, dyr, [0, 0, f * Kq + a * l1, 0, 0, (s0 - f) * Kq - (a + l0) * l1]));
  const D = rows.length === 1 ? rows[0]! : b.op('Concat', rows, { axis: A.i(1) });
  // D @ Uᵀ: onnxruntime fuses the Transpose into the MatMul (FusedMatMul with transB)
  const z = b.op('MatMul', [D, b.transpose(U, [0, 2, 1])]);
  return b.reshape(b.reduce('ReduceSum', b.reshape(z, [-1, g.Cs, kh * kw]), [0], false), [g.Cs, 1, kh, kw]);
}

/* --------------------------------------------------- harness --------------------------------------------------- */

const outSize = (l: Layer) => Math.floor((l.H + 2 * l.p - l.k) / l.s) + 1;

function geom(l: Layer): ConvGeom {
  const h = outSize(l);
  return {
    N: l.N,
    G: l.G,
    Cb: l.C,
    Cs: l.M,
    L: [l.H, l.H],
    l: [h, h],
    k: [l.k, l.k],
    s: [l.s, l.s],
    d: [1, 1],
    pb: [l.p, l.p],
  };
}

const rng = new Rng(1);
const rand = (dims: number[]) => ({
  dtype: 'float32' as const,
  dims,
  data: Float32Array.from({ length: prod(dims) }, () => rng.normal()),
});

/** A one-node forward graph (x input, W an initializer or an input). */
function forward(
  op: string,
  xd: number[],
  attrs: Graph['nodes'][number]['attrs'],
  w?: number[],
  wInput = false,
  nOut = 1,
): { g: Graph; feeds: Feeds } {
  const g = new Graph();
  g.inputs.push({ name: 'x', dtype: 'float32', shape: xd });
  const feeds: Feeds = { x: rand(xd) };
  if (w) {
    const t = rand(w);
    if (wInput) {
      g.inputs.push({ name: 'w', dtype: 'float32', shape: w });
      feeds['w'] = t;
    } else g.initializers.set('w', t);
  }
  const outs = range(nOut).map((i) => `y${i}`);
  g.nodes.push({ name: 'n', opType: op, domain: '', inputs: w ? ['x', 'w'] : ['x'], outputs: outs, attrs });
  g.outputs = outs.map((name) => ({ name }));
  return { g, feeds };
}

/** A backward graph with the given float inputs and one output built by `form`. */
function backward(
  inputs: Record<string, number[]>,
  form: (b: Builder) => string,
  extra?: (g: Graph, feeds: Feeds) => void,
): { g: Graph; feeds: Feeds } {
  const g = new Graph();
  const feeds: Feeds = {};
  for (const [k, d] of Object.entries(inputs)) {
    g.inputs.push({ name: k, dtype: 'float32', shape: d });
    feeds[k] = rand(d);
  }
  extra?.(g, feeds);
  g.outputs.push({ name: form(new Builder(g, 'bwd/')) });
  return { g, feeds };
}

/**
 * Median time of each graph, sampled round-robin so machine noise hits all alike. With GRAFT_THREADS=1
 * the process CPU time of a run is its compute time, free of waiting for a shared core (BENCH_CLOCK=cpu).
 */
async function medians(graphs: { g: Graph; feeds: Feeds }[], reps: number): Promise<number[]> {
  const cpu = process.env['BENCH_CLOCK'] === 'cpu';
  const sessions = [];
  for (const { g, feeds } of graphs) {
    const s = await Session.fromGraph(g);
    await s.run(feeds);
    sessions.push(s);
  }
  const t: number[][] = graphs.map(() => []);
  for (let r = 0; r < reps; r++)
    for (const [i, s] of sessions.entries()) {
      const [t0, c0] = [performance.now(), process.cpuUsage()];
      await s.run(graphs[i]!.feeds);
      const c = process.cpuUsage(c0);
      t[i]!.push(cpu ? (c.user + c.system) / 1000 : performance.now() - t0);
    }
  for (const s of sessions) await s.release();
  return t.map((v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)]!);
}

type Form = (b: Builder, g: ConvGeom) => string;
/** Candidates: [label, applies?, builder]; "*" marks what convInputGrad / convWeightGrad pick. */
const DX: [string, (l: Layer) => boolean, Form][] = [
  ['ConvTranspose', () => true, (b, g) => scatterConvT(b, g, 'dy', 'w')],
  ['flipped Conv', (l) => l.s === 1, (b, g) => flipConv(b, g, 'dy', 'w')],
  ['zero-upsample + flipped Conv', (l) => l.s > 1, (b, g) => upsampleFlipConv(b, g, 'dy', 'w')],
  ['phase Conv + DepthToSpace', (l) => l.s > 1, (b, g) => phaseConvT(b, g, 'dy', 'w')],
  ['MatMul Wᵀ·dy', (l) => l.k === 1 && l.s === 1 && l.G === 1, (b, g) => pointwiseInputGrad(b, g, 'dy', 'w')],
];
const DW: [string, (l: Layer) => boolean, Form][] = [
  ['grouped Conv correlation', () => true, (b, g) => weightCorr(b, g, 'x', 'dy')],
  ['K×K shifted Mul+ReduceSum', (l) => l.G === l.C && l.C === l.M, (b, g) => shiftedWeightGrad(b, g, 'x', 'dy')],
  [
    'K×K shifted Slice + batched dot',
    (l) => l.G === l.C && l.C === l.M,
    (b, g) => shiftedDotWeightGrad(b, g, 'x', 'dy'),
  ],
  ['Gather im2col + MatMul', (l) => l.G === 1, (b, g) => im2colWeightGrad(b, g, 'x', 'dy')],
  ['per-plane grouped Conv', (l) => l.G === l.C, (b, g) => planeCorr(b, g, N, 'x', 'dy')],
  ['row-shifted per-plane GEMM', (l) => l.G === l.C && l.C === l.M, (b, g) => rowShiftWeightGrad(b, g, 'x', 'dy')],
  ['MatMul dy·xᵀ', (l) => l.k === 1 && l.s === 1 && l.G === 1, (b, g) => pointwiseWeightGrad(b, g, 'x', 'dy')],
];

/** Which candidate the rule picks: the one whose graph has the same node types in the same order. */
function picked(l: Layer, cands: typeof DX, choose: Form): string {
  const sig = (f: Form) => {
    const g = new Graph();
    f(new Builder(g), geom(l));
    return g.nodes.map((n) => n.opType).join(',');
  };
  const want = sig(choose);
  return cands.find(([, ok, f]) => ok(l) && sig(f) === want)?.[0] ?? '?';
}

async function main() {
  const reps = Number(process.argv[2] ?? 7);
  const filter = process.argv[3] ?? '';
  const rows: string[] = [];
  const fmt = (ms: number) => ms.toFixed(1);
  for (const l of LAYERS.filter((x) => x.name.includes(filter))) {
    const [dx, dw] = [DX.filter(([, ok]) => ok(l)), DW.filter(([, ok]) => ok(l))];
    const h = outSize(l);
    const io = { x: [l.N, l.C, l.H, l.H], w: [l.M, l.C / l.G, l.k, l.k], dy: [l.N, l.M, h, h] };
    const attrs = { group: A.i(l.G), strides: A.is([l.s, l.s]), pads: A.is([l.p, l.p, l.p, l.p]) };
    const graphs = [
      forward('Conv', io.x, attrs, io.w),
      forward('Conv', io.x, attrs, io.w, true),
      ...[...dx, ...dw].map(([, , form]) => backward(io, (b) => form(b, geom(l)))),
    ];
    const t = await medians(graphs, reps);
    const [tf, tfw] = [t[0]!, t[1]!];
    const [pdx, pdw] = [
      picked(l, dx, (b, g) => convInputGrad(b, g, 'dy', 'w')),
      picked(l, dw, (b, g) => convWeightGrad(b, g, 'x', 'dy')),
    ];
    const timed = (c: typeof DX, off: number, pick: string) =>
      c
        .map(([label], i) => [label, t[off + i]!] as [string, number])
        .sort((a, b) => a[1] - b[1])
        .map(([k, v]) => `${k === pick ? '*' : ''}${k} ${fmt(v)}`)
        .join(' | ');
    const tdx = t[2 + dx.findIndex(([k]) => k === pdx)]!;
    const tdw = t[2 + dx.length + dw.findIndex(([k]) => k === pdw)]!;
    console.log(
      `${l.name}: fwd ${fmt(tf)} ms (W as input ${fmt(tfw)})\n  dx: ${timed(dx, 2, pdx)}\n  dW: ${timed(dw, 2 + dx.length, pdw)}`,
    );
    rows.push(
      `| ${l.name} | ${fmt(tf)} | ${fmt(tfw)} | ${fmt(tdx)} (${pdx}) | ${fmt(tdw)} (${pdw}) | ${((tdx + tdw) / tf).toFixed(2)} | ${(tdw / tf).toFixed(2)} |`,
    );
  }
  if ('batchnorm'.includes(filter) || filter === '') {
    // BatchNormalization backward with batch statistics on MobileNetV2-sized activations: the x̂ form
    // (rule before 2026-11-28) against the per-channel coefficient form in src/autodiff/rules/norm.ts,
    // both recomputing the statistics; and the variance's Σd² as ReduceSumSquare or ReduceSum(d·d).
    for (const dims of [
      [N, 96, 112, 112],
      [N, 144, 56, 56],
      [N, 576, 14, 14],
    ]) {
      const C = dims[1]!;
      const M = prod(dims) / C;
      const axes = [0, 2, 3];
      const pc = (b: Builder, v: string) => b.reshape(v, [-1, 1, 1]);
      const rs = (b: Builder, v: string) => b.op('Reciprocal', [b.op('Sqrt', [b.add(v, b.f32(1e-5))])]);
      const io = { x: dims, dy: dims, scale: [C] };
      const xhatForm = backward(io, (b) => {
        const d = b.sub('x', b.reduce('ReduceMean', 'x', axes, true));
        const rstd = rs(b, b.reduce('ReduceMean', b.mul(d, d), axes, true));
        const xh = b.mul(d, rstd);
        const g = b.mul('dy', pc(b, 'scale'));
        const dx = b.mul(
          rstd,
          b.sub(
            b.sub(g, b.reduce('ReduceMean', g, axes, true)),
            b.mul(xh, b.reduce('ReduceMean', b.mul(g, xh), axes, true)),
          ),
        );
        return b.op('Sum', [
          dx,
          b.reshape(b.reduce('ReduceSum', b.mul('dy', xh), axes, false), [1, C, 1, 1]),
          b.reshape(b.reduce('ReduceSum', 'dy', axes, false), [1, C, 1, 1]),
        ]);
      });
      const coefForm = (sq: 'ReduceSum(d·d)' | 'ReduceSumSquare') =>
        backward(io, (b) => {
          const d = b.sub('x', b.reduce('ReduceMean', 'x', axes, true));
          const ss =
            sq === 'ReduceSumSquare'
              ? b.reduce('ReduceSumSquare', d, axes, true)
              : b.reduce('ReduceSum', b.mul(d, d), axes, true);
          const rstd = rs(b, b.mul(ss, b.f32(1 / M)));
          const T = b.reduce('ReduceSum', b.mul('dy', d), axes, true);
          const S = b.reduce('ReduceSum', 'dy', axes, true);
          const dxh = b.mul(T, rstd);
          const a = b.mul(pc(b, 'scale'), rstd);
          const beta = b.neg(b.mul(b.mul(a, rstd), b.mul(dxh, b.f32(1 / M))));
          const gamma = b.neg(b.mul(a, b.mul(S, b.f32(1 / M))));
          const flat = (v: string) => b.reshape(v, [C]);
          const zeros = b.constant({ dtype: 'float32', dims: [C], data: new Float32Array(C) });
          const ones = b.constant({ dtype: 'float32', dims: [C], data: new Float32Array(C).fill(1) });
          const dx = b.add(
            b.mul('dy', a),
            b.op('BatchNormalization', [d, flat(beta), flat(gamma), zeros, ones], { epsilon: A.f(0) }),
          );
          return b.op('Sum', [dx, dxh, S]);
        });
      const t = await medians([xhatForm, coefForm('ReduceSum(d·d)'), coefForm('ReduceSumSquare')], reps);
      console.log(
        `batchnorm ${dims.join('×')}: x̂ form ${fmt(t[0]!)} ms | *coefficient form ${fmt(t[1]!)} | coefficient form with ReduceSumSquare ${fmt(t[2]!)}`,
      );
    }
  }
  if ('pool'.includes(filter) || filter === '') {
    // ResNet-18's MaxPool 3×3/2 pad 1 on [16, 64, 112, 112]: forward with and without Indices, and the backward.
    const xd = [N, 64, 112, 112];
    const attrs = { kernel_shape: A.is([3, 3]), strides: A.is([2, 2]), pads: A.is([1, 1, 1, 1]) };
    const fw = forward('MaxPool', xd, attrs);
    const fwi = forward('MaxPool', xd, attrs, undefined, false, 2);
    const idx = async () => (await (await Session.fromGraph(fwi.g)).run(fwi.feeds))['y1']!;
    const indices = await idx();
    const yd = [N, 64, 56, 56];
    const scatter = backward(
      { x: xd, dy: yd },
      (b) => {
        const flat = (v: string) => b.reshape(v, [-1]);
        const z = flat(b.op('ConstantOfShape', [b.shapeOf('x')]));
        return b.reshape(
          b.op('ScatterElements', [z, flat('idx'), flat('dy')], { axis: A.i(0), reduction: A.s('add') }),
          b.shapeOf('x'),
        );
      },
      (g, feeds) => {
        g.inputs.push({ name: 'idx', dtype: 'int64', shape: yd });
        feeds['idx'] = indices;
      },
    );
    // argmax recomputed in the backward: the 9 taps of each window by a one-hot Conv over −∞-padded planes
    const taps = (b: Builder) => {
      const onehot = new Float32Array(81);
      for (let t = 0; t < 9; t++) onehot[t * 9 + t] = 1;
      const w = b.constant({ dtype: 'float32', dims: [9, 1, 3, 3], data: onehot });
      const xp = b.op('Pad', [b.reshape('x', [-1, 1, 112, 112]), b.i64([0, 0, 1, 1, 0, 0, 1, 1]), b.f32(-3.4e38)]);
      return {
        w,
        am: b.op('ArgMax', [b.op('Conv', [xp, w], { strides: A.is([2, 2]) })], { axis: A.i(1), keepdims: A.i(1) }),
      };
    };
    const g2: ConvGeom = {
      N: null,
      G: 1,
      Cb: 1,
      Cs: 9,
      L: [112, 112],
      l: [56, 56],
      k: [3, 3],
      s: [2, 2],
      d: [1, 1],
      pb: [1, 1],
    };
    const argmaxConvT = backward({ x: xd, dy: yd }, (b) => {
      const { w, am } = taps(b);
      const routed = b.op('Where', [
        b.op('Equal', [am, b.i64(range(9), [1, 9, 1, 1])]),
        b.reshape('dy', [-1, 1, 56, 56]),
        b.f32(0),
      ]);
      return b.reshape(scatterConvT(b, g2, routed, w), b.shapeOf('x'));
    });
    const argmaxScatter = backward({ x: xd, dy: yd }, (b) => {
      const { am } = taps(b);
      const base: number[] = [];
      for (let i = 0; i < 56; i++) for (let j = 0; j < 56; j++) base.push((2 * i - 1) * 112 + 2 * j - 1);
      const off = b.i64(range(9).map((t) => Math.floor(t / 3) * 112 + (t % 3)));
      const pos = b.add(
        b.op('Gather', [off, am], { axis: A.i(0) }),
        b.constant({ dtype: 'int64', dims: [1, 1, 56, 56], data: BigInt64Array.from(base.map(BigInt)) }),
      );
      const z = b.reshape(b.op('ConstantOfShape', [b.shapeOf('x')]), [-1, 112 * 112]);
      return b.reshape(
        b.op('ScatterElements', [z, b.reshape(pos, [-1, 56 * 56]), b.reshape('dy', [-1, 56 * 56])], {
          axis: A.i(1),
          reduction: A.s('add'),
        }),
        b.shapeOf('x'),
      );
    });
    const t = await medians([fw, fwi, scatter, argmaxConvT, argmaxScatter], reps);
    console.log(
      `maxpool3x3 s2 64 @112: fwd ${fmt(t[0]!)} ms, fwd with Indices ${fmt(t[1]!)}\n  backward: Indices + ScatterElements add ${fmt(t[2]!)} | tap Conv + ArgMax + one-hot ConvTranspose ${fmt(t[3]!)} | tap Conv + ArgMax + ScatterElements ${fmt(t[4]!)}`,
    );
    rows.push(
      `| maxpool3x3 s2 64 @112 | ${fmt(t[0]!)} | ${fmt(t[1]!)} (fwd with Indices) | ${fmt(t[2]!)} (Indices + ScatterElements add) | – | ${((t[1]! - t[0]! + t[2]!) / t[0]!).toFixed(2)} (incl. Indices cost) | – |`,
    );
  }
  console.log(
    '\n| layer (batch 16) | fwd ms | fwd ms, W as input | dx ms (formulation) | dW ms (formulation) | (dx+dW)/fwd | dW/fwd |\n|---|---|---|---|---|---|---|',
  );
  for (const r of rows) console.log(r);
}

await main();
