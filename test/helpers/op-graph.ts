/** Builds one-operator graphs with random inputs, and checks their gradients against finite differences. */
import assert from 'node:assert/strict';
import { Graph, type Attr, type Node } from '../../src/graph/graph.js';
import { type Tensor, numel } from '../../src/graph/tensor.js';
import { gradCheck } from '../../src/autodiff/grad-graph.js';
import { Rng } from '../../src/util/random.js';
import type { Feeds } from '../../src/runtime/session.js';

export type InputSpec =
  | { name: string; dims: number[]; init?: (rng: Rng, i: number) => number; constant?: false }
  /** A fixed (non-differentiated) initializer, e.g. a shape or axes tensor. */
  | { name: string; constant: true; tensor: Tensor };

export interface OpCase {
  op: string;
  inputs: InputSpec[];
  attrs?: Record<string, Attr>;
  outputs?: number;
  opset?: number;
  /** Names (among inputs) to differentiate; default all non-constant inputs. */
  wrt?: string[];
  seed?: number;
}

export function opGraph(c: OpCase): { graph: Graph; feeds: Feeds } {
  const g = new Graph();
  g.name = c.op;
  g.opsets = { '': c.opset ?? 17 };
  const rng = new Rng(c.seed ?? 1);
  const feeds: Feeds = {};
  for (const s of c.inputs) {
    if (s.constant) {
      g.initializers.set(s.name, s.tensor);
      continue;
    }
    const data = new Float32Array(numel(s.dims));
    for (let i = 0; i < data.length; i++) data[i] = s.init ? s.init(rng, i) : rng.normal();
    g.inputs.push({ name: s.name, dtype: 'float32', shape: s.dims });
    feeds[s.name] = { dtype: 'float32', dims: s.dims, data };
  }
  const outs = Array.from({ length: c.outputs ?? 1 }, (_, k) => `y${k}`);
  g.nodes.push({
    name: `${c.op}_node`,
    opType: c.op,
    domain: '',
    inputs: c.inputs.map((i) => i.name),
    outputs: outs,
    attrs: c.attrs ?? {},
  });
  g.outputs = outs.map((name) => ({ name }));
  return { graph: g, feeds };
}

/** Build the case, run the finite-difference check, and assert the worst relative error is below tol. */
export async function checkOp(c: OpCase, tol = 2e-2): Promise<void> {
  const { graph, feeds } = opGraph(c);
  const wrt = c.wrt ?? c.inputs.filter((i) => !i.constant).map((i) => i.name);
  const r = await gradCheck(graph, { feeds, samples: 24, wrt, seed: c.seed ?? 1 });
  const detail = r.entries
    .map((e) => `${e.name}: ${e.maxRelError.toExponential(2)} (|g|max ${e.maxAbsGrad.toPrecision(3)})`)
    .join(', ');
  assert.ok(r.entries.length > 0, 'nothing was checked');
  assert.ok(
    r.entries.every((e) => e.maxAbsGrad > 0),
    `a gradient is identically zero: ${detail}`,
  );
  assert.ok(r.worst < tol, `${c.op}: worst relative error ${r.worst} ≥ ${tol}: ${detail}`);
}

/** A node of the default ONNX domain, for graphs a test writes out by hand. */
export const node = (
  name: string,
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Node['attrs'] = {},
): Node => ({
  name,
  opType,
  domain: '',
  inputs,
  outputs,
  attrs,
});

export const I = (value: number): Attr => ({ type: 'int', value });
export const IS = (value: number[]): Attr => ({ type: 'ints', value });
export const F = (value: number): Attr => ({ type: 'float', value });
export const S = (value: string): Attr => ({ type: 'string', value });
export const i64 = (values: number[], dims = [values.length]): Tensor => ({
  dtype: 'int64',
  dims,
  data: BigInt64Array.from(values.map(BigInt)),
});
export const f32c = (values: number[], dims = [values.length]): Tensor => ({
  dtype: 'float32',
  dims,
  data: Float32Array.from(values),
});
/** Values kept away from 0 (for ops with a kink or pole there). */
export const awayFromZero = (rng: Rng) => (rng.uniform() < 0.5 ? -1 : 1) * (0.3 + rng.uniform());
export const positive = (rng: Rng) => 0.5 + rng.uniform() * 1.5;
