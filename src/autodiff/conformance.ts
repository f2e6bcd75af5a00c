/**
 * The ONNX backend node tests (`onnx/backend/test/data/node`, shipped by Debian's libonnx-testdata) as
 * a conformance run of Graft: each model must survive Graft's ONNX read → write with bit-identical
 * onnxruntime outputs, and each test whose operators have gradient rules must pass `graft check` with
 * the test's floating-point inputs as the differentiated values. Tests that cannot say anything (the
 * model does not run in onnxruntime, no floating-point inputs, an operator without a rule) are counted
 * under their reason, never dropped.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeOnnx, encodeOnnx, tensorFromProto, TensorProtoT } from '../formats/onnx.js';
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Session, type Feeds } from '../runtime/session.js';
import { checkModel, gradcheckTolerance } from './check-model.js';
import { weightedSumGradGraph, drawsRandom } from './grad-graph.js';
import { RULES, NON_DIFFERENTIABLE, CONSTANT_INPUTS } from './rules/index.js';

/** Where Debian's libonnx-testdata puts the node tests. */
export const DEBIAN_NODE_TESTS = '/usr/share/libonnx-testdata/data/node';

export type RoundTrip = 'identical' | 'differs' | 'onnxruntime cannot run' | 'unreadable';
export type GradOutcome =
  | 'passed'
  | 'failed'
  | 'onnxruntime cannot run'
  | 'no floating-point inputs'
  | 'no gradient rule'
  | 'not differentiable'
  | 'not deterministic'
  | 'non-finite outputs'
  | 'unreadable';

export interface ConformanceCase {
  test: string;
  /** Operator the test is about: the single node's type, or '<op> (expanded)' for function expansions. */
  op: string;
  roundTrip: RoundTrip;
  grad: GradOutcome;
  /** Worst relative error of the finite-difference check, and the precision it ran in. */
  worst?: number;
  precision?: string;
  /** Why a round trip or check failed, or which operators lack rules. */
  detail?: string;
}

export interface NodeTest {
  name: string;
  dir: string;
}

/** Every node test folder (those with a model.onnx and a test_data_set_0), sorted by name. */
export function listNodeTests(root = DEBIAN_NODE_TESTS): NodeTest[] {
  return readdirSync(root)
    .filter((d) => existsSync(join(root, d, 'model.onnx')) && existsSync(join(root, d, 'test_data_set_0')))
    .sort()
    .map((name) => ({ name, dir: join(root, name) }));
}

/** The operator a test is about (see ConformanceCase.op); needs the list of all tests for expansions. */
export function testOperator(t: NodeTest, g: Graph, all: Map<string, NodeTest>): string {
  if (g.nodes.length === 1) return g.nodes[0]!.opType;
  const base = t.name.replace(/_expanded(_ver\d+)?$/, '');
  const sib = base !== t.name ? all.get(base) : undefined;
  if (sib) {
    try {
      const sg = decodeOnnx(readFileSync(join(sib.dir, 'model.onnx')));
      if (sg.nodes.length === 1) return `${sg.nodes[0]!.opType} (expanded)`;
    } catch {
      /* fall through */
    }
  }
  return [...new Set(g.nodes.map((n) => n.opType))].join('+');
}

function readTensor(path: string): Tensor {
  return tensorFromProto(TensorProtoT.decode(readFileSync(path)));
}

/** The test's inputs by graph-input name (data set 0); throws on sequences and optionals. */
export function readInputs(t: NodeTest, g: Graph): Feeds {
  const feeds: Feeds = {};
  const data = join(t.dir, 'test_data_set_0');
  g.dataInputs().forEach((v, i) => {
    const p = join(data, `input_${i}.pb`);
    if (!existsSync(p)) return; // an optional input left out
    if (!v.dtype) throw new Error(`input '${v.name}' is not a tensor`);
    feeds[v.name] = readTensor(p);
  });
  return feeds;
}

const isFloatTensor = (t: Tensor) => t.dtype === 'float32' || t.dtype === 'float64';

function sameTensor(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.dims.length !== b.dims.length || a.dims.some((d, i) => d !== b.dims[i])) return false;
  const x = a.data as ArrayLike<unknown>;
  const y = b.data as ArrayLike<unknown>;
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    const u = x[i];
    const v = y[i];
    if (u !== v && !(typeof u === 'number' && typeof v === 'number' && Number.isNaN(u) && Number.isNaN(v)))
      return false;
  }
  return true;
}

export interface RunOptions {
  /** Skip the gradient check (round trips only). */
  noGrad?: boolean;
  /** Samples per differentiated input for the check (default 6). */
  samples?: number;
}

/** Run one node test: the round trip, then the gradient check. */
export async function runNodeTest(
  t: NodeTest,
  all: Map<string, NodeTest>,
  o: RunOptions = {},
): Promise<ConformanceCase> {
  const bytes = readFileSync(join(t.dir, 'model.onnx'));
  let g: Graph;
  try {
    g = decodeOnnx(bytes, { baseDir: t.dir }, t.name);
  } catch (e) {
    return { test: t.name, op: '?', roundTrip: 'unreadable', grad: 'unreadable', detail: (e as Error).message };
  }
  const op = testOperator(t, g, all);
  const c: ConformanceCase = { test: t.name, op, roundTrip: 'onnxruntime cannot run', grad: 'onnxruntime cannot run' };
  let feeds: Feeds;
  try {
    feeds = readInputs(t, g);
  } catch (e) {
    c.detail = `inputs: ${(e as Error).message}`;
    return c;
  }
  // onnxruntime on the original bytes; a model it cannot load or run says nothing about Graft.
  let expected: Record<string, Tensor>;
  const unstable: string[] = [];
  try {
    const s = await Session.fromBytes(bytes, { optimization: 'disabled' }, t.name);
    expected = await s.run(feeds);
    // a second run in the same session: outputs that change (Dropout's randomness, BatchNormalization's
    // running statistics in training mode, which onnxruntime carries over between runs) cannot be checked
    const again = await s.run(feeds);
    for (const k of Object.keys(expected)) if (!sameTensor(expected[k]!, again[k]!)) unstable.push(k);
    await s.release();
  } catch (e) {
    c.detail = (e as Error).message.slice(0, 200);
    return c;
  }
  try {
    const s = await Session.fromBytes(
      encodeOnnx(decodeOnnx(encodeOnnx(g))),
      { optimization: 'disabled' },
      `${t.name} (written by Graft)`,
    );
    const got = await s.run(feeds);
    await s.release();
    const bad = Object.keys(expected).filter((k) => !got[k] || !sameTensor(expected[k]!, got[k]!));
    c.roundTrip = bad.length ? 'differs' : 'identical';
    if (bad.length) c.detail = `outputs differ after the round trip: ${bad.join(', ')}`;
  } catch (e) {
    c.roundTrip = 'differs';
    c.detail = (e as Error).message.slice(0, 200);
  }
  if (o.noGrad) return c;
  // float inputs in a slot no rule differentiates (Resize's scales, Dropout's ratio) are constants, as in exported models
  const fixed = new Set(
    g.nodes.flatMap((n) => (CONSTANT_INPUTS[n.opType] ?? []).map((i) => n.inputs[i]).filter((v): v is string => !!v)),
  );
  const wrt = g
    .dataInputs()
    .map((v) => v.name)
    .filter((n) => feeds[n] && isFloatTensor(feeds[n]!) && !fixed.has(n));
  const ops = [...new Set(g.nodes.map((n) => n.opType))];
  if (wrt.length === 0) {
    c.grad = 'no floating-point inputs';
    return c;
  }
  if (ops.every((x) => NON_DIFFERENTIABLE.has(x))) {
    c.grad = 'not differentiable';
    return c;
  }
  const noRule = ops.filter((x) => !(x in RULES) && !NON_DIFFERENTIABLE.has(x));
  if (noRule.length) {
    c.grad = 'no gradient rule';
    c.detail = noRule.join(', ');
    return c;
  }
  // outputs of random operators (training-mode Dropout) stay: the check holds the draws of its gradient run fixed
  if (g.nodes.some(drawsRandom)) unstable.length = 0;
  if (unstable.length) {
    const stable = g.outputs.filter((v) => !unstable.includes(v.name));
    if (stable.length === 0) {
      c.grad = 'not deterministic';
      c.detail = `onnxruntime gives new values on each run: ${unstable.join(', ')}`;
      return c;
    }
    g = g.clone();
    g.outputs = stable;
  }
  const nonFinite = Object.entries(expected).filter(
    ([, t]) => isFloatTensor(t) && (t.data as Float32Array).some((v) => !Number.isFinite(v)),
  );
  if (nonFinite.length) {
    c.grad = 'non-finite outputs';
    c.detail = nonFinite.map(([k]) => k).join(', ');
    return c;
  }
  // The test's other inputs (axes, shapes, indices…) are constants, as they are in exported models.
  g = g.clone();
  const dataFeeds: Feeds = {};
  for (const [k, t] of Object.entries(feeds)) {
    if (wrt.includes(k)) dataFeeds[k] = t;
    else {
      g.initializers.set(k, t);
      g.inputs = g.inputs.filter((v) => v.name !== k);
    }
  }
  // Inputs the rules give no gradient (Dropout's ratio, Resize's scales) are left out, and named.
  let checked = wrt;
  try {
    const gg = await weightedSumGradGraph(g, wrt, dataFeeds);
    checked = wrt.filter((w) => gg.grads.get(w));
    const none = wrt.filter((w) => !gg.grads.get(w));
    if (none.length) c.detail = `no gradient by rule: ${none.join(', ')}`;
  } catch {
    /* the check below reports it */
  }
  if (checked.length === 0) {
    c.grad = 'not differentiable';
    return c;
  }
  try {
    const r = await checkModel(g, { feeds: dataFeeds, wrt: checked, params: checked.length, samples: o.samples ?? 6 });
    if (r.missing.length) {
      c.grad = 'no gradient rule';
      c.detail = r.missing.join(', ');
      return c;
    }
    if (!r.gradcheck) {
      c.grad = 'not differentiable';
      c.detail = 'no output depends on a floating-point input';
      return c;
    }
    c.worst = r.gradcheck.worst;
    c.precision = r.precision;
    c.grad = r.gradcheck.passed ? 'passed' : 'failed';
    if (unstable.length)
      c.detail = `${c.detail ? `${c.detail}; ` : ''}outputs left out (onnxruntime gives new values on each run): ${unstable.join(', ')}`;
    if (!r.gradcheck.passed)
      c.detail =
        (c.detail ? `${c.detail}; ` : '') +
        r.gradcheck.entries.map((e) => `${e.name}: ${e.maxRelError.toExponential(2)}`).join(', ') +
        ` (tolerance ${gradcheckTolerance(r.precision!)})`;
  } catch (e) {
    const m = (e as Error).message.split('\n')[0]!.slice(0, 300);
    c.grad = /different loss on every run/.test(m)
      ? 'not deterministic'
      : /has no rule/.test(m)
        ? 'no gradient rule'
        : /an output is not finite/.test(m)
          ? 'non-finite outputs'
          : 'failed';
    c.detail = m;
  }
  return c;
}

/** Up to `perOp` tests of each operator, spread evenly over its tests (all when perOp is Infinity). */
export function samplePerOperator(tests: NodeTest[], opOf: (t: NodeTest) => string, perOp: number): NodeTest[] {
  const by = new Map<string, NodeTest[]>();
  for (const t of tests) {
    const k = opOf(t);
    let l = by.get(k);
    if (!l) by.set(k, (l = []));
    l.push(t);
  }
  const out: NodeTest[] = [];
  for (const l of by.values()) {
    if (l.length <= perOp) {
      out.push(...l);
      continue;
    }
    for (let i = 0; i < perOp; i++) out.push(l[Math.round((i * (l.length - 1)) / Math.max(1, perOp - 1))]!);
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

export interface Summary {
  op: string;
  tests: number;
  roundTrips: number;
  /** Tests the gradient check ran on, and those that passed it. */
  checked: number;
  passed: number;
  /** Count of the other outcomes (no rule, cannot run…). */
  other: Partial<Record<GradOutcome, number>>;
}

export function summarize(cases: ConformanceCase[]): Summary[] {
  const by = new Map<string, Summary>();
  for (const c of cases) {
    let s = by.get(c.op);
    if (!s) by.set(c.op, (s = { op: c.op, tests: 0, roundTrips: 0, checked: 0, passed: 0, other: {} }));
    s.tests++;
    if (c.roundTrip === 'identical') s.roundTrips++;
    if (c.grad === 'passed' || c.grad === 'failed') s.checked++;
    if (c.grad === 'passed') s.passed++;
    else if (c.grad !== 'failed') s.other[c.grad] = (s.other[c.grad] ?? 0) + 1;
  }
  return [...by.values()].sort((a, b) => (a.op < b.op ? -1 : 1));
}
