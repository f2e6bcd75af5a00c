/**
 * bench/train-step: images/s of MobileNetV2 and ResNet-18 (224×224, batch 16) for
 *   (a) plain onnxruntime inference of the exported model,
 *   (b) Graft's forward (+ loss) inside the training graph (parameters as inputs, BatchNorm as trained),
 *   (c) a full Graft training step (Trainer.step: forward, backward, AdamW update in JS),
 *   (d) a PyTorch training step of the same model on the same machine, in the same run,
 * and the ratios against the targets: step ≤ 3.5× inference time, Graft step ≥ 3× PyTorch's throughput.
 *
 *   npx tsx bench/train-step.ts [--models mobilenetv2,resnet18] [--batch 16] [--iters 10] [--profile]
 *
 * Measurements alternate (one iteration of every mode per round, rotating the order) and report
 * medians, because the machine is small and noisy. PyTorch runs in a child process
 * (bench/torch_train_step.py --serve, Debian's /usr/bin/python3 with python3-torch), which also
 * exports the torchvision models to ONNX on first use. See bench/README.md.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { readOnnx, encodeOnnx } from '../src/formats/onnx.js';
import { makeBatchDynamic } from '../src/graph/rewrites.js';
import { attrInt, attrInts, type Graph, type Node } from '../src/graph/graph.js';
import type { Tensor } from '../src/graph/tensor.js';
import { Session, resolvedSessionOptions, toOrt, type Feeds, type RuntimeOptions } from '../src/runtime/session.js';
import { Trainer } from '../src/train/trainer.js';
import type { TrainingGraph } from '../src/train/training-graph.js';
import { makeOptimizer, type OptimizerSpec } from '../src/optim/optimizer.js';
import { RULES, hasRule } from '../src/autodiff/rules/index.js';
import { NoGradientRule, type GradCtx, type GradRule } from '../src/autodiff/rule.js';
import { Rng } from '../src/util/random.js';
import { resolveDevice, type ResolvedDevice } from '../src/runtime/device.js';
import { GraftError } from '../src/util/errors.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const TARGET_STEP_OVER_INFERENCE = 3.5;
const TARGET_OVER_TORCH = 3;
/** Profiled runs that are not counted (the first runs of a session plan memory and are slower). */
const PROFILE_WARMUP = 2;

// ───────────────────────────── options ─────────────────────────────

const HELP = `usage: npx tsx bench/train-step.ts [options]
  --models LIST       comma-separated, from mobilenetv2,resnet18 (default both)
  --batch N           batch size (default 16)
  --size N            image side (default 224)
  --iters N           timed rounds; each round times one iteration of every mode (default 10)
  --warmup N          untimed iterations of every mode first (default 2)
  --threads N         intra-op threads for onnxruntime and torch (default GRAFT_THREADS, else 2)
  --bn batch|frozen   BatchNorm in training: batch statistics (as PyTorch's train()) or running ones (default batch)
  --fold on|off|ab    with --bn frozen: fold Conv → BatchNorm in the training graph (default on, the library's
                      default), not (off), or both (ab: a second trainer without the fold is timed in the same
                      rounds as (c′), and the two trainers' first-step gradients are compared)
  --optimizer adamw|sgd   AdamW, or SGD with momentum 0.9; lr 1e-3 (default adamw, both sides)
  --opset N           ONNX opset of the export, 13..17 (default 17)
  --clock wall|cpu    time by wall clock (default) or by process CPU time (Graft in this process, PyTorch in
                      its own); with --threads 1 CPU time is the compute time, unaffected by waiting for a
                      core on a busy machine (with more threads it sums them: compare ratios at 1 thread)
  --no-torch          skip PyTorch (d); models must already be exported or are exported first
  --profile           also profile the training step with onnxruntime's profiler and summarize
  --profile-iters N   profiled steps after two warm-up steps (default 3)
  --python PATH       python with torch (default GRAFT_BENCH_PYTHON, else /usr/bin/python3)
  --out DIR           results, profiles (default .graft-cache/bench)
  --models-dir DIR    exported ONNX models (default .graft-cache/bench/models)
  --device NAME       onnxruntime execution provider for Graft's sessions: cpu, cuda, tensorrt, webgpu, auto
                      (default GRAFT_DEVICE, else cpu); one that cannot start stops the bench with the reason.
                      PyTorch (d) runs on the CPU whatever this says (torch_train_step.py has no device option)`;

interface Args {
  models: string[];
  batch: number;
  size: number;
  iters: number;
  warmup: number;
  threads: number;
  bn: 'batch' | 'frozen';
  fold: 'on' | 'off' | 'ab';
  optimizer: 'adamw' | 'sgd';
  opset: number;
  torch: boolean;
  profile: boolean;
  clock: 'wall' | 'cpu';
  profileIters: number;
  python: string;
  out: string;
  modelsDir: string;
  device: string;
}

function parseCli(): Args {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'mobilenetv2,resnet18' },
      batch: { type: 'string', default: '16' },
      size: { type: 'string', default: '224' },
      iters: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      threads: { type: 'string' },
      bn: { type: 'string', default: 'batch' },
      fold: { type: 'string', default: 'on' },
      optimizer: { type: 'string', default: 'adamw' },
      opset: { type: 'string', default: '17' },
      clock: { type: 'string', default: 'wall' },
      'no-torch': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'profile-iters': { type: 'string', default: '3' },
      python: { type: 'string', default: process.env['GRAFT_BENCH_PYTHON'] ?? '/usr/bin/python3' },
      out: { type: 'string', default: join(ROOT, '.graft-cache', 'bench') },
      'models-dir': { type: 'string' },
      device: { type: 'string', default: process.env['GRAFT_DEVICE'] ?? 'cpu' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer ≥ ${min}, got '${v}'`);
    return n;
  };
  const models = values.models
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const m of models)
    if (!['mobilenetv2', 'resnet18'].includes(m)) fail(`unknown model '${m}' (mobilenetv2, resnet18)`);
  if (values.bn !== 'batch' && values.bn !== 'frozen') fail(`--bn must be batch or frozen`);
  if (values.fold !== 'on' && values.fold !== 'off' && values.fold !== 'ab') fail(`--fold must be on, off or ab`);
  if (values.optimizer !== 'adamw' && values.optimizer !== 'sgd') fail(`--optimizer must be adamw or sgd`);
  if (values.clock !== 'wall' && values.clock !== 'cpu') fail(`--clock must be wall or cpu`);
  const out = resolve(values.out);
  return {
    models,
    batch: int('batch', values.batch, 1),
    size: int('size', values.size, 32),
    iters: int('iters', values.iters, 1),
    warmup: int('warmup', values.warmup, 0),
    threads: int('threads', values.threads ?? process.env['GRAFT_THREADS'] ?? '2', 1),
    bn: values.bn,
    fold: values.fold,
    optimizer: values.optimizer,
    opset: int('opset', values.opset, 13),
    torch: !values['no-torch'],
    clock: values.clock,
    profile: values.profile,
    profileIters: int('profile-iters', values['profile-iters'], 1),
    python: values.python,
    out,
    modelsDir: resolve(values['models-dir'] ?? join(out, 'models')),
    device: values.device,
  };
}

function fail(msg: string): never {
  console.error(`train-step: ${msg}`);
  process.exit(2);
}

// ───────────────────────────── statistics ─────────────────────────────

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : '—');

function table(head: string[], rows: string[][], right = new Set<number>()): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (right.has(i) ? c.padStart(w[i]!) : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), w.map((n) => '─'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

// ───────────────────────────── PyTorch child ─────────────────────────────

interface TorchReady {
  ready: true;
  torch: string;
  threads: number;
  models: { model: string; onnx: string; params: number }[];
}

/** bench/torch_train_step.py --serve: one JSON request per line in, one JSON answer per line out. */
class TorchServer {
  private waiting: ((v: Record<string, unknown>) => void)[] = [];
  private lines: Record<string, unknown>[] = [];
  private exited: string | null = null;

  private constructor(private proc: ChildProcessWithoutNullStreams) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        process.stderr.write(`[torch] ${line}\n`);
        return;
      }
      const w = this.waiting.shift();
      if (w) w(msg);
      else this.lines.push(msg);
    });
    proc.stderr.on('data', (d: Buffer) => process.stderr.write(`[torch] ${d.toString()}`));
    proc.on('exit', (code, sig) => {
      this.exited = `exited (${code ?? sig})`;
      for (const w of this.waiting.splice(0)) w({ error: `PyTorch helper ${this.exited}` });
    });
  }

  static start(a: Args): TorchServer {
    const proc = spawn(a.python, [join(HERE, 'torch_train_step.py'), '--serve', ...pyArgs(a)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    proc.on('error', (e) => fail(`cannot start ${a.python}: ${e.message}`));
    return new TorchServer(proc);
  }

  next(): Promise<Record<string, unknown>> {
    const l = this.lines.shift();
    if (l) return Promise.resolve(l);
    if (this.exited) return Promise.resolve({ error: `PyTorch helper ${this.exited}` });
    return new Promise((res) => this.waiting.push(res));
  }

  async request(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.proc.stdin.write(JSON.stringify(req) + '\n');
    const r = await this.next();
    if (typeof r['error'] === 'string') throw new Error(`PyTorch helper: ${r['error']}`);
    return r;
  }

  /** Time `iters` PyTorch training steps (after `warmup` untimed ones); per-step ms. */
  async steps(model: string, iters: number, warmup = 0): Promise<number[]> {
    return (await this.request({ model, iters, warmup }))['ms'] as number[];
  }

  close(): void {
    if (!this.exited) this.proc.stdin.end(JSON.stringify({ quit: true }) + '\n');
  }
}

function pyArgs(a: Args): string[] {
  return [
    '--models',
    a.models.join(','),
    '--batch',
    String(a.batch),
    '--size',
    String(a.size),
    '--threads',
    String(a.threads),
    '--bn',
    a.bn,
    '--optimizer',
    a.optimizer,
    '--opset',
    String(a.opset),
    '--export-dir',
    a.modelsDir,
    '--clock',
    a.clock,
  ];
}

// ───────────────────────────── gradient-node attribution (for --profile) ─────────────────────────────

/** Where a gradient node comes from: the rule of a forward node, or the summing of several contributions. */
interface Origin {
  node: Node;
  accumulation: boolean;
}

/** Gradient node name → origin. Filled while the training graph is built (with --profile). */
let attribution: Map<string, Origin> | null = null;

/**
 * Wrap every gradient rule so the nodes it emits are recorded against the forward node (bench only;
 * nothing in src/ changes). Contributions to a value's gradient are summed lazily when a rule first
 * asks for dy, so nodes emitted inside dy/dyOf() are marked as accumulation.
 */
function recordGradientOrigins(): void {
  for (const [op, rule] of Object.entries(RULES)) {
    const wrapped: GradRule = (c) => {
      if (!attribution) return rule(c);
      const rec = attribution;
      const mark = (from: number, accumulation: boolean) => {
        for (const n of c.b.emitted.slice(from)) if (!rec.has(n.name)) rec.set(n.name, { node: c.node, accumulation });
      };
      const lazily = <T>(f: () => T): T => {
        const before = c.b.emitted.length;
        const v = f();
        mark(before, true);
        return v;
      };
      const before = c.b.emitted.length;
      // the rule sees the same context, with dy and dyOf(i) recorded as accumulation
      const ctx: GradCtx = Object.create(c, {
        dy: { get: () => lazily(() => c.dy) },
        dyOf: { value: (i: number) => lazily(() => c.dyOf(i)) },
      });
      const out = rule(ctx).map((g) =>
        typeof g === 'function'
          ? () => {
              const at = c.b.emitted.length;
              const v = g();
              mark(at, false);
              return v;
            }
          : g,
      );
      mark(before, false);
      return out;
    };
    if (rule.broadcast) wrapped.broadcast = rule.broadcast;
    RULES[op] = wrapped;
  }
}

/** "Conv depthwise 3×3 s2", "Conv 1×1", "MaxPool 3×3 s2", or the op type. */
function nodeKind(n: Node, tg: TrainingGraph): string {
  const s = (attrInts(n, 'strides') ?? []).some((v) => v > 1) ? ` s${Math.max(...attrInts(n, 'strides')!)}` : '';
  if (n.opType === 'Conv') {
    const w = tg.shapes.get(n.inputs[1]!)?.dims ?? tg.initial.get(n.inputs[1]!)?.dims ?? [];
    const k = (attrInts(n, 'kernel_shape') ?? (w.slice(2) as number[])).join('×');
    const g = attrInt(n, 'group', 1);
    const kind = g > 1 && w[1] === 1 ? 'depthwise ' : g > 1 ? `grouped(${g}) ` : '';
    return `Conv ${kind}${k}${s}`;
  }
  if (n.opType === 'MaxPool' || n.opType === 'AveragePool')
    return `${n.opType} ${(attrInts(n, 'kernel_shape') ?? []).join('×')}${s}`;
  return n.opType;
}

// ───────────────────────────── Graft side ─────────────────────────────

interface ModelRun {
  model: string;
  onnx: string;
  compileMs: number;
  trainingNodes: number;
  params: number;
  ms: Record<Mode, number[]>;
  profile?: ProfileSummary;
  foldCheck?: FoldCheck;
  error?: string;
}

/** Relative L2 differences of gradient sets `a` against `b`: over all tensors, and the worst tensor. */
interface GradDiff {
  globalRelL2: number;
  worstRelL2: number;
  worst: string;
}

/**
 * --fold ab: the loss and gradients of the folded and the unfolded trainer at the same weights, and as
 * float32 noise floors, the unfolded trainer's gradients again with every weight moved by half a unit in
 * the last place (×(1 ± 2⁻²⁴), random signs) and by two (×(1 ± 2⁻²²)): differences of that size are
 * float32 rounding (amplified by ReLU/ReLU6 gates that flip), not the fold.
 */
interface FoldCheck {
  lossA: number;
  lossB: number;
  tensors: number;
  fold: GradDiff;
  noiseFloor: GradDiff;
  noiseFloor4: GradDiff;
}

function gradDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): GradDiff {
  let [num, den, worstRelL2, worst] = [0, 0, 0, ''];
  for (const [k, v] of b) {
    const u = a.get(k)!;
    let [d, s] = [0, 0];
    for (let i = 0; i < v.length; i++) {
      d += (u[i]! - v[i]!) ** 2;
      s += v[i]! ** 2;
    }
    num += d;
    den += s;
    const r = Math.sqrt(d / Math.max(s, 1e-30));
    if (r > worstRelL2) [worstRelL2, worst] = [r, k];
  }
  return { globalRelL2: Math.sqrt(num / den), worstRelL2, worst };
}

async function compareFirstStep(a: Trainer, b: Trainer, data: Feeds, labels: Tensor): Promise<FoldCheck> {
  /** One step's loss and gradients, the optimizer's update skipped (the weights stay as they are). */
  const capture = async (t: Trainer) => {
    const grads = new Map<string, Float32Array>();
    const step = t.optimizer.step;
    t.optimizer.step = (_p, g) => {
      for (const [k, v] of g) grads.set(k, Float32Array.from(v));
    };
    try {
      return { loss: (await t.step(data, labels)).loss, grads };
    } finally {
      t.optimizer.step = step;
    }
  };
  const [ga, gb] = [await capture(a), await capture(b)];
  const saved = new Map([...b.params].map(([k, v]) => [k, Float32Array.from(v)]));
  const perturbed = async (rel: number) => {
    const rng = new Rng(3);
    for (const v of b.params.values())
      for (let i = 0; i < v.length; i++) v[i] = v[i]! * (1 + (rng.uniform() < 0.5 ? -1 : 1) * rel);
    const gn = await capture(b);
    for (const [k, v] of saved) b.params.get(k)!.set(v);
    return gradDiff(gn.grads, gb.grads);
  };
  return {
    lossA: ga.loss,
    lossB: gb.loss,
    tensors: gb.grads.size,
    fold: gradDiff(ga.grads, gb.grads),
    noiseFloor: await perturbed(2 ** -24),
    noiseFloor4: await perturbed(2 ** -22),
  };
}

type Mode = 'inference' | 'forward' | 'step' | 'stepUnfolded' | 'torch';
const MODE_LABEL: Record<Mode, string> = {
  inference: '(a) onnxruntime inference',
  forward: '(b) Graft forward+loss (training graph)',
  step: '(c) Graft training step',
  stepUnfolded: "(c') Graft training step, BatchNorm not folded",
  torch: '(d) PyTorch training step',
};

/** The training graph cut down to the loss: forward + loss with parameters as inputs, as inside a step. */
function forwardGraph(tg: TrainingGraph): Graph {
  const g = tg.graph.clone();
  g.outputs = [{ name: tg.loss }];
  return g.prune();
}

function batchFeeds(tg: TrainingGraph, a: Args, seed: number): { data: Feeds; labels: Tensor } {
  const rng = new Rng(seed);
  const [input] = tg.dataInputs;
  if (!input || tg.dataInputs.length !== 1) throw new Error(`expected one data input, got ${tg.dataInputs.join(', ')}`);
  const dims = [a.batch, 3, a.size, a.size];
  const x = new Float32Array(dims.reduce((p, q) => p * q, 1));
  for (let i = 0; i < x.length; i++) x[i] = rng.normal();
  const classes = tg.classes ?? 1000;
  const y = BigInt64Array.from({ length: a.batch }, () => BigInt(rng.int(classes)));
  return {
    data: { [input]: { dtype: 'float32', dims, data: x } },
    labels: { dtype: 'int64', dims: [a.batch], data: y },
  };
}

function trainerFeeds(tr: Trainer): Feeds {
  const f: Feeds = {};
  for (const [k, v] of tr.params) f[k] = { dtype: 'float32', dims: tr.tg.initial.get(k)!.dims, data: v };
  for (const [k, v] of tr.stateValues) f[k] = { dtype: 'float32', dims: tr.tg.stateInitial.get(k)!.dims, data: v };
  return f;
}

/** The same optimizer as the PyTorch side: AdamW (lr 1e-3), or SGD with momentum 0.9. */
function optimizerSpec(a: Args): OptimizerSpec {
  return a.optimizer === 'sgd' ? { kind: 'sgd', momentum: 0.9 } : { kind: 'adamw' };
}

/** Wall time, or (--clock cpu) this process's CPU time, of one call, in ms. */
let cpuClock = false;
async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  if (cpuClock) {
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000;
  }
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function benchModel(model: string, onnx: string, a: Args, torch: TorchServer | null): Promise<ModelRun> {
  const runtime: RuntimeOptions = { threads: a.threads, optimization: 'all' };
  const g = makeBatchDynamic(readOnnx(onnx));
  const missing = [...new Set(g.nodes.map((n) => n.opType))].filter((op) => !hasRule(op));
  if (missing.length) console.log(`\n${model}: operators without a gradient rule: ${missing.join(', ')}`);
  const infer = await Session.fromGraph(g, runtime, `${model} (inference)`);
  if (a.profile) attribution = new Map();
  const t0 = performance.now();
  const trainer = await Trainer.create(g, {
    trainable: 'all',
    batchNorm: a.bn,
    foldBatchNorm: a.fold !== 'off',
    optimizer: optimizerSpec(a),
    lr: 1e-3,
    runtime,
  });
  const compileMs = performance.now() - t0;
  const origins = attribution;
  attribution = null;
  // --fold ab: the same training without the Conv → BatchNorm fold, timed in the same rounds
  const unfolded =
    a.fold === 'ab' && a.bn === 'frozen'
      ? await Trainer.create(g, {
          trainable: 'all',
          batchNorm: a.bn,
          foldBatchNorm: false,
          optimizer: optimizerSpec(a),
          lr: 1e-3,
          runtime,
        })
      : null;
  const tg = trainer.tg;
  const fwd = await Session.fromGraph(forwardGraph(tg), runtime, `${model} (forward+loss)`);
  const { data, labels } = batchFeeds(tg, a, 7);
  const run: ModelRun = {
    model,
    onnx,
    compileMs,
    trainingNodes: tg.graph.nodes.length,
    params: tg.params.length,
    ms: { inference: [], forward: [], step: [], stepUnfolded: [], torch: [] },
  };
  const once: Record<Mode, () => Promise<number>> = {
    inference: () => timeIt(() => infer.run(data)),
    forward: () => timeIt(() => fwd.run({ ...data, [tg.target]: labels, ...trainerFeeds(trainer) }, [tg.loss])),
    step: () => timeIt(() => trainer.step(data, labels)),
    stepUnfolded: () => timeIt(() => unfolded!.step(data, labels)),
    torch: async () => (await torch!.steps(model, 1))[0]!,
  };
  const modes: Mode[] = [
    'inference',
    'forward',
    'step',
    ...(unfolded ? ['stepUnfolded' as const] : []),
    ...(torch ? ['torch' as const] : []),
  ];
  console.log(
    `\n${model}: training graph ${run.trainingNodes} nodes, ${run.params} trainable tensors, compiled in ${fmt(compileMs / 1000, 2)} s`,
  );
  if (unfolded) {
    console.log(`  without the BatchNorm fold: ${unfolded.tg.graph.nodes.length} nodes`);
    run.foldCheck = await compareFirstStep(trainer, unfolded, data, labels);
    const c = run.foldCheck;
    const d = (v: GradDiff) =>
      `relative L2 ${v.globalRelL2.toExponential(2)} over all, worst tensor ${v.worstRelL2.toExponential(2)} (${v.worst})`;
    console.log(
      `  same weights, folded vs not: loss ${c.lossA} vs ${c.lossB}; gradients of ${c.tensors} tensors: ${d(c.fold)}`,
    );
    console.log(`  float32 noise floor (unfolded, weights ×(1 ± 2⁻²⁴)): ${d(c.noiseFloor)}`);
    console.log(`  float32 noise floor (unfolded, weights ×(1 ± 2⁻²²)): ${d(c.noiseFloor4)}`);
  }
  for (const m of modes) {
    if (m === 'torch') await torch!.steps(model, 0, a.warmup);
    else for (let i = 0; i < a.warmup; i++) await once[m]();
  }
  for (let r = 0; r < a.iters; r++) {
    const order = modes.map((_, i) => modes[(i + r) % modes.length]!);
    const got: string[] = [];
    for (const m of order) {
      const ms = await once[m]();
      run.ms[m].push(ms);
      got.push(`${m} ${fmt(ms, 0)}`);
    }
    console.log(`  round ${r + 1}/${a.iters}: ${got.join(', ')} ms`);
  }
  // Profile with nothing else alive: the timed sessions hold gigabytes of activations between runs.
  await Promise.all([infer.release(), fwd.release(), trainer.release(), unfolded?.release()]);
  if (a.profile)
    run.profile = await profileStep(model, trainer, data, labels, a, origins ?? new Map(), median(run.ms.step));
  return run;
}

// ───────────────────────────── profiling ─────────────────────────────

interface Agg {
  ms: number;
  count: number;
}
interface ProfileSummary {
  file: string;
  forwardOnlyFile: string;
  forwardOnlyRunMs: number;
  /** Forward kernels (loss excluded) by op type when the forward+loss graph runs alone. */
  forwardOnlyByOp: Record<string, Agg>;
  steps: number;
  runMs: number;
  kernelMs: number;
  stepMedianMs: number;
  optimizerMs: number;
  sections: Record<string, Agg>;
  forwardByOp: [string, Agg][];
  backwardByOp: [string, Agg][];
  backwardByOrigin: [string, Agg & { ops: Record<string, number> }][];
  topBackwardNodes: { node: string; op: string; origin: string; shape: string; ms: number }[];
}

interface OrtEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; output_type_shape?: Record<string, number[]>[] };
}

/** Profile the training graph's session (onnxruntime's profiler) and aggregate kernel time. */
/** A session of `g` with onnxruntime's profiler on, writing `<dir>/<stem>_<timestamp>.json`. */
async function profiledSession(g: Graph, dir: string, stem: string, a: Args) {
  const started = Date.now();
  const sess = await ort.InferenceSession.create(encodeOnnx(g), {
    ...(await resolvedSessionOptions({ threads: a.threads, optimization: 'all' })),
    enableProfiling: true,
    profileFilePrefix: join(dir, stem),
  });
  /** Stop profiling; the kernel events of every run after the PROFILE_WARMUP first ones. */
  const finish = async () => {
    sess.endProfiling();
    await sess.release();
    const file = readdirSync(dir)
      .filter((f) => f.startsWith(stem + '_') && f.endsWith('.json'))
      .map((f) => join(dir, f))
      .filter((f) => statSync(f).mtimeMs >= started - 1000)
      .sort((x, y) => statSync(y).mtimeMs - statSync(x).mtimeMs)[0];
    if (!file) throw new Error(`onnxruntime wrote no profile ${stem}_*.json under ${dir}`);
    const events = JSON.parse(readFileSync(file, 'utf8')) as OrtEvent[];
    const runs = events
      .filter((e) => e.cat === 'Session' && e.name === 'model_run')
      .sort((x, y) => x.ts - y.ts)
      .slice(PROFILE_WARMUP);
    const inRun = (e: OrtEvent) => runs.some((r) => e.ts >= r.ts && e.ts <= r.ts + r.dur);
    const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && inRun(e));
    return { file, steps: runs.length, runMs: runs.reduce((t, r) => t + r.dur, 0) / 1000 / runs.length, kernels };
  };
  return { sess, finish };
}

/**
 * Profile the training graph's session (onnxruntime's profiler) and aggregate kernel time; the
 * forward+loss graph is profiled afterwards to compare forward kernels in and out of the training step.
 */
async function profileStep(
  model: string,
  trainer: Trainer,
  data: Feeds,
  labels: Tensor,
  a: Args,
  origins: Map<string, Origin>,
  stepMedianMs: number,
): Promise<ProfileSummary> {
  const tg = trainer.tg;
  const dir = join(a.out, 'profiles');
  mkdirSync(dir, { recursive: true });
  const all: Feeds = { ...data, [tg.target]: labels, ...trainerFeeds(trainer) };
  const profile = async (g: Graph, stem: string) => {
    const p = await profiledSession(g, dir, stem, a);
    const feeds = Object.fromEntries(p.sess.inputNames.map((k) => [k, toOrt(all[k]!)]));
    for (let i = 0; i < PROFILE_WARMUP + a.profileIters; i++) await p.sess.run(feeds);
    return p.finish();
  };
  // one session at a time, each with its own warm-up
  const { file, steps, runMs, kernels } = await profile(tg.graph, `${model}-train-step`);
  const fwdProfile = await profile(forwardGraph(tg), `${model}-forward`);
  const perStep = (us: number) => us / 1000 / steps;
  const forwardOnlyByOp = new Map<string, Agg>();
  for (const e of fwdProfile.kernels) {
    if (e.name.startsWith('loss/')) continue;
    const v = forwardOnlyByOp.get(e.args?.op_name ?? '?') ?? { ms: 0, count: 0 };
    v.ms += e.dur / 1000 / fwdProfile.steps;
    v.count += 1 / fwdProfile.steps;
    forwardOnlyByOp.set(e.args?.op_name ?? '?', v);
  }

  // Names in the training graph; onnxruntime keeps them, or derives fused/inserted names from them.
  const byName = new Map(tg.graph.nodes.map((n) => [n.name, n]));
  const lookup = (name: string): Node | undefined => {
    const n = byName.get(name);
    if (n) return n;
    // fused nodes are named after the node they replace plus a suffix, e.g. '<name>_fused_…'
    let best: Node | undefined;
    for (const [k, v] of byName) if (name.startsWith(k) && (!best || k.length > best.name.length)) best = v;
    return best;
  };
  const section = (name: string, n: Node | undefined) =>
    name.startsWith('grad/') || n?.name.startsWith('grad/')
      ? 'backward'
      : name.startsWith('loss/') || n?.name.startsWith('loss/')
        ? 'loss'
        : n
          ? 'forward'
          : 'onnxruntime-inserted';

  const add = <T extends Agg>(m: Map<string, T>, k: string, us: number, make: () => T) => {
    const v = m.get(k) ?? make();
    v.ms += perStep(us);
    v.count += 1 / steps;
    m.set(k, v);
    return v;
  };
  const sections = new Map<string, Agg>();
  const fwdOps = new Map<string, Agg>();
  const bwdOps = new Map<string, Agg>();
  const bwdOrigin = new Map<string, Agg & { ops: Record<string, number> }>();
  const bwdNodes = new Map<string, { node: string; op: string; origin: string; shape: string; ms: number }>();
  let kernelUs = 0;
  for (const e of kernels) {
    const name = e.name.slice(0, -'_kernel_time'.length);
    const op = e.args?.op_name ?? '?';
    const n = lookup(name);
    const sec = section(name, n);
    kernelUs += e.dur;
    add(sections, sec, e.dur, () => ({ ms: 0, count: 0 }));
    if (sec === 'forward') add(fwdOps, op, e.dur, () => ({ ms: 0, count: 0 }));
    if (sec !== 'backward') continue;
    add(bwdOps, op, e.dur, () => ({ ms: 0, count: 0 }));
    const o0 = n ? origins.get(n.name) : undefined;
    const src = o0?.node;
    const origin = !src
      ? 'unattributed'
      : o0.accumulation
        ? 'gradient accumulation (fan-out)'
        : src.name.startsWith('loss/')
          ? `loss (${src.opType})`
          : nodeKind(src, tg);
    const o = add(bwdOrigin, origin, e.dur, () => ({ ms: 0, count: 0, ops: {} as Record<string, number> }));
    o.ops[op] = (o.ops[op] ?? 0) + perStep(e.dur);
    const shape = (e.args?.output_type_shape ?? []).map((s) => `[${Object.values(s)[0]?.join(',') ?? ''}]`).join(' ');
    const row = bwdNodes.get(name) ?? { node: name, op, origin: src ? `${origin}: ${src.name}` : origin, shape, ms: 0 };
    row.ms += perStep(e.dur);
    bwdNodes.set(name, row);
  }
  const sorted = <T extends Agg>(m: Map<string, T>) => [...m].sort((x, y) => y[1].ms - x[1].ms);

  // The JS side of a step: one optimizer update over all parameters (fresh state, random gradients).
  const opt = makeOptimizer(optimizerSpec(a));
  const params = new Map([...trainer.params].map(([k, v]) => [k, Float32Array.from(v)]));
  const grads = new Map([...params].map(([k, v]) => [k, v.map((_, i) => ((i * 2654435761) % 1000) / 1e6)]));
  const optMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    opt.step(params, grads, 1e-3);
    optMs.push(performance.now() - t);
  }
  return {
    file,
    steps,
    runMs,
    kernelMs: kernelUs / 1000 / steps,
    forwardOnlyFile: fwdProfile.file,
    forwardOnlyRunMs: fwdProfile.runMs,
    forwardOnlyByOp: Object.fromEntries(forwardOnlyByOp),
    stepMedianMs,
    optimizerMs: median(optMs.slice(1)),
    sections: Object.fromEntries(sections),
    forwardByOp: sorted(fwdOps),
    backwardByOp: sorted(bwdOps),
    backwardByOrigin: sorted(bwdOrigin),
    topBackwardNodes: [...bwdNodes.values()].sort((x, y) => y.ms - x.ms).slice(0, 10),
  };
}

function printProfile(model: string, p: ProfileSummary): void {
  const pct = (v: number, of: number) => `${fmt((100 * v) / of)}%`;
  const bwd = p.sections['backward']?.ms ?? 0;
  console.log(`\nProfile of the ${model} training step (${p.steps} steps, ${p.file})`);
  console.log(
    table(
      ['part', 'ms/step', 'share'],
      [
        ...Object.entries(p.sections)
          .sort((x, y) => y[1].ms - x[1].ms)
          .map(([k, v]) => [`kernels: ${k}`, fmt(v.ms), pct(v.ms, p.kernelMs)]),
        ['kernels, all', fmt(p.kernelMs), '100%'],
        ['session run (model_run)', fmt(p.runMs), ''],
        ['Trainer.step median (timed above)', fmt(p.stepMedianMs), ''],
        ['JS optimizer update (measured alone)', fmt(p.optimizerMs), ''],
      ],
      new Set([1, 2]),
    ),
  );
  console.log('\nBackward kernel time by operator type (top 10)');
  console.log(
    table(
      ['op', 'nodes', 'ms/step', '% bwd'],
      p.backwardByOp.slice(0, 10).map(([k, v]) => [k, fmt(v.count, 0), fmt(v.ms), pct(v.ms, bwd)]),
      new Set([1, 2, 3]),
    ),
  );
  console.log('\nBackward kernel time by the forward node it differentiates (top 10)');
  console.log(
    table(
      ['forward kind', 'grad nodes', 'ms/step', '% bwd', 'main ops'],
      p.backwardByOrigin.slice(0, 10).map(([k, v]) => [
        k,
        fmt(v.count, 0),
        fmt(v.ms),
        pct(v.ms, bwd),
        Object.entries(v.ops)
          .sort((x, y) => y[1] - x[1])
          .slice(0, 3)
          .map(([o, ms]) => `${o} ${fmt(ms)}`)
          .join(', '),
      ]),
      new Set([1, 2, 3]),
    ),
  );
  console.log('\nSlowest backward nodes (top 10)');
  console.log(
    table(
      ['node', 'op', 'ms/step', 'output', 'differentiates'],
      p.topBackwardNodes.map((r) => [r.node, r.op, fmt(r.ms), r.shape, r.origin]),
      new Set([2]),
    ),
  );
  const fwdTotal = p.sections['forward']?.ms ?? 0;
  const alone = Object.values(p.forwardOnlyByOp).reduce((t, v) => t + v.ms, 0);
  console.log(
    `\nForward kernel time by operator type (top 10): inside the training step vs the forward+loss graph alone (run ${fmt(p.forwardOnlyRunMs)} ms)`,
  );
  console.log(
    table(
      ['op', 'nodes', 'ms/step', '% fwd', 'alone ms', 'alone nodes'],
      [
        ...p.forwardByOp
          .slice(0, 10)
          .map(([k, v]) => [
            k,
            fmt(v.count, 0),
            fmt(v.ms),
            pct(v.ms, fwdTotal),
            fmt(p.forwardOnlyByOp[k]?.ms ?? 0),
            fmt(p.forwardOnlyByOp[k]?.count ?? 0, 0),
          ]),
        ['all', '', fmt(fwdTotal), '100%', fmt(alone), ''],
      ],
      new Set([1, 2, 3, 4, 5]),
    ),
  );
}

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<void> {
  const a = parseCli();
  process.env['GRAFT_THREADS'] = String(a.threads);
  // every Graft session (inference, training graph, profiler) runs on this device
  let device: ResolvedDevice;
  try {
    device = await resolveDevice(a.device);
  } catch (e) {
    if (e instanceof GraftError) fail(`--device ${a.device}: ${e.message}${e.hint ? `\n${e.hint}` : ''}`);
    throw e;
  }
  process.env['GRAFT_DEVICE'] = a.device;
  cpuClock = a.clock === 'cpu';
  mkdirSync(a.out, { recursive: true });
  if (a.profile) recordGradientOrigins();
  console.log(
    `bench/train-step: ${a.models.join(', ')}, batch ${a.batch}, ${a.size}×${a.size}, ${a.threads} thread(s), ` +
      `BatchNorm ${a.bn}${a.bn === 'frozen' ? ` (fold ${a.fold})` : ''}, ${a.optimizer}, ${a.warmup} warm-up + ${a.iters} timed rounds, ${a.clock === 'cpu' ? 'CPU time' : 'wall clock'}, ` +
      `onnxruntime-node ${ort.env.versions.common}, device ${device.device}${device.requested !== device.device ? ` (asked: ${device.requested})` : ''}` +
      (device.device !== 'cpu' && a.torch ? '; PyTorch (d) runs on the CPU' : ''),
  );

  const load = () =>
    loadavg()
      .map((v) => v.toFixed(2))
      .join(' ');
  const loadStart = load();
  console.log(
    `load average at start: ${loadStart}` +
      (loadavg()[0]! > 0.5
        ? ' — other processes are using the CPU; expect noisy numbers (medians of alternating rounds soften it)'
        : ''),
  );
  let torch: TorchServer | null = null;
  const onnx = new Map<string, string>();
  if (a.torch) {
    torch = TorchServer.start(a);
    const ready = (await torch.next()) as unknown as TorchReady | { error: string };
    if ('error' in ready) fail(`PyTorch helper failed to start: ${ready.error}`);
    console.log(`PyTorch ${ready.torch}, ${ready.threads} thread(s)`);
    for (const m of ready.models) onnx.set(m.model, m.onnx);
  } else {
    const r = spawnSync(a.python, [join(HERE, 'torch_train_step.py'), '--export-only', ...pyArgs(a)], {
      encoding: 'utf8',
    });
    if (r.status !== 0) fail(`exporting the models failed (${a.python}): ${r.error?.message ?? r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { exports: { model: string; onnx: string }[] };
    for (const m of out.exports) onnx.set(m.model, m.onnx);
  }

  const runs: ModelRun[] = [];
  try {
    for (const m of a.models) {
      try {
        runs.push(await benchModel(m, onnx.get(m)!, a, torch));
      } catch (e) {
        const msg = e instanceof NoGradientRule ? `missing gradient rule: ${e.message}` : (e as Error).message;
        console.error(`\n${m}: FAILED: ${msg}`);
        runs.push({
          model: m,
          onnx: onnx.get(m)!,
          compileMs: NaN,
          trainingNodes: 0,
          params: 0,
          error: msg,
          ms: { inference: [], forward: [], step: [], stepUnfolded: [], torch: [] },
        });
      }
    }
  } finally {
    torch?.close();
  }

  // Results table
  const rows: string[][] = [];
  for (const r of runs) {
    for (const mode of Object.keys(MODE_LABEL) as Mode[]) {
      const v = r.ms[mode];
      if (!v.length) continue;
      const med = median(v);
      rows.push([
        r.model,
        MODE_LABEL[mode],
        fmt((a.batch * 1000) / med, 2),
        fmt(med, 0),
        fmt(Math.min(...v), 0),
        String(v.length),
      ]);
    }
  }
  console.log(
    `\nResults (batch ${a.batch}, ${a.size}×${a.size}, ${a.threads} thread(s); ${a.clock === 'cpu' ? 'CPU time, ' : ''}median of alternating rounds)`,
  );
  console.log(table(['model', 'mode', 'images/s', 'ms/batch', 'min ms', 'n'], rows, new Set([2, 3, 4, 5])));

  // Ratios against the targets
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const paired = (x: number[], y: number[]) =>
    median(x.slice(0, Math.min(x.length, y.length)).map((v, i) => v / y[i]!));
  const ratioRows: string[][] = [];
  const summary: Record<string, Record<string, number | boolean>> = {};
  for (const r of runs) {
    if (r.error || !r.ms.step.length) {
      ratioRows.push([r.model, 'not measured', '', '', '', '', 'FAIL']);
      continue;
    }
    const [inf, fw, st, th] = [
      median(r.ms.inference),
      median(r.ms.forward),
      median(r.ms.step),
      r.ms.torch.length ? median(r.ms.torch) : NaN,
    ];
    const stepOverInf = st / inf;
    ratioRows.push([
      r.model,
      'step time / inference time',
      fmt(stepOverInf, 2) + '×',
      fmt(paired(r.ms.step, r.ms.inference), 2) + '×',
      fmt(Math.min(...r.ms.step) / Math.min(...r.ms.inference), 2) + '×',
      `≤ ${TARGET_STEP_OVER_INFERENCE}×`,
      verdict(stepOverInf <= TARGET_STEP_OVER_INFERENCE),
    ]);
    ratioRows.push([
      r.model,
      'forward+loss time / inference time',
      fmt(fw / inf, 2) + '×',
      fmt(paired(r.ms.forward, r.ms.inference), 2) + '×',
      fmt(Math.min(...r.ms.forward) / Math.min(...r.ms.inference), 2) + '×',
      '(info)',
      '',
    ]);
    const s: Record<string, number | boolean> = {
      inferenceMs: inf,
      forwardMs: fw,
      stepMs: st,
      stepOverInference: stepOverInf,
      stepOverInferencePass: stepOverInf <= TARGET_STEP_OVER_INFERENCE,
    };
    if (r.ms.torch.length) {
      const overTorch = th / st;
      ratioRows.push([
        r.model,
        'Graft step images/s / PyTorch step images/s',
        fmt(overTorch, 2) + '×',
        fmt(paired(r.ms.torch, r.ms.step), 2) + '×',
        fmt(Math.min(...r.ms.torch) / Math.min(...r.ms.step), 2) + '×',
        `≥ ${TARGET_OVER_TORCH}×`,
        verdict(overTorch >= TARGET_OVER_TORCH),
      ]);
      Object.assign(s, {
        torchStepMs: th,
        graftOverTorch: overTorch,
        graftOverTorchPass: overTorch >= TARGET_OVER_TORCH,
      });
    }
    if (r.ms.stepUnfolded.length) {
      const su = median(r.ms.stepUnfolded);
      ratioRows.push([
        r.model,
        "unfolded step time / inference time (c')",
        fmt(su / inf, 2) + '×',
        fmt(paired(r.ms.stepUnfolded, r.ms.inference), 2) + '×',
        fmt(Math.min(...r.ms.stepUnfolded) / Math.min(...r.ms.inference), 2) + '×',
        '(info)',
        '',
      ]);
      ratioRows.push([
        r.model,
        'folded step time / unfolded step time',
        fmt(st / su, 3) + '×',
        fmt(paired(r.ms.step, r.ms.stepUnfolded), 3) + '×',
        fmt(Math.min(...r.ms.step) / Math.min(...r.ms.stepUnfolded), 3) + '×',
        '(info)',
        '',
      ]);
      if (r.ms.torch.length)
        ratioRows.push([
          r.model,
          "unfolded Graft step images/s / PyTorch's",
          fmt(th / su, 2) + '×',
          fmt(paired(r.ms.torch, r.ms.stepUnfolded), 2) + '×',
          fmt(Math.min(...r.ms.torch) / Math.min(...r.ms.stepUnfolded), 2) + '×',
          '(info)',
          '',
        ]);
      Object.assign(s, { unfoldedStepMs: su, foldedOverUnfolded: st / su });
    }
    summary[r.model] = s;
  }
  console.log('\nRatios (medians; "paired" is the median of per-round ratios, "best" uses each mode\'s fastest round)');
  console.log(table(['model', 'ratio', 'median', 'paired', 'best', 'target', 'result'], ratioRows, new Set([2, 3, 4])));

  for (const r of runs) if (r.profile) printProfile(r.model, r.profile);

  const file = join(a.out, `train-step-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const loadEnd = load();
  console.log(`load average at end: ${loadEnd}`);
  writeFileSync(
    file,
    JSON.stringify(
      { args: a, onnxruntime: ort.env.versions.common, load: { start: loadStart, end: loadEnd }, runs, summary },
      null,
      1,
    ),
  );
  console.log(`\nraw results: ${file}`);
}

await main();
