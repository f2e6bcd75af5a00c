/** One-op gradient graphs built with a symbolic batch must agree with fixed-batch ones. */
import assert from 'node:assert/strict';
import { Graph, type Attr } from '../../src/graph/graph.js';
import { type Tensor, numel } from '../../src/graph/tensor.js';
import { weightedSumGradGraph } from '../../src/autodiff/grad-graph.js';
import { Session, type Feeds } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/random.js';

/**
 * Build the gradient graph once with a symbolic batch (shapes probed at batch 2 and 3, so the rules see
 * N = null and must emit batch-agnostic Reshapes) and once at a fixed batch of 2; both must give the
 * same gradients at batch 2, and the dynamic one must also run at batch 3.
 */
export async function sameGradsWithDynamicBatch(
  op: string,
  xRest: (number | 'N')[],
  params: [string, number[]][],
  attrs: Record<string, Attr>,
  opset = 17,
): Promise<void> {
  const rng = new Rng(11);
  const rand = (dims: number[]): Tensor => ({
    dtype: 'float32',
    dims,
    data: Float32Array.from({ length: numel(dims) }, () => rng.normal()),
  });
  const g = new Graph();
  g.opsets = { '': opset };
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['N', ...xRest] });
  for (const [name, dims] of params) g.initializers.set(name, rand(dims));
  g.nodes.push({ name: 'n', opType: op, domain: '', inputs: ['x', ...params.map(([p]) => p)], outputs: ['y'], attrs });
  g.outputs.push({ name: 'y' });
  const wrt = ['x', ...params.map(([p]) => p)];
  const xAt = (n: number) => [n, ...xRest.map((d) => (d === 'N' ? n : d))];
  const [f2, f3] = [{ x: rand(xAt(2)) }, { x: rand(xAt(3)) }];
  const dyn = await weightedSumGradGraph(g, wrt, [f2, f3]);
  const fix = await weightedSumGradGraph(g, wrt, f2);
  assert.equal(dyn.shapes.get('x')!.dims[0], null, 'the batch should be dynamic');
  const run = async (gg: typeof dyn, feeds: Feeds) => {
    const s = await Session.fromGraph(gg.graph);
    const out = await s.run(feeds);
    await s.release();
    return wrt.map((w) => out[gg.grads.get(w)!]!);
  };
  const base: Feeds = {
    ...f2,
    ...Object.fromEntries(params.map(([p]) => [p, g.initializers.get(p)!])),
    R: rand(fix.shapes.get('R')!.dims as number[]),
  };
  const [a, b] = [await run(dyn, base), await run(fix, base)];
  wrt.forEach((w, i) => {
    const [da, db] = [a[i]!.data as Float32Array, b[i]!.data as Float32Array];
    assert.deepEqual(a[i]!.dims, b[i]!.dims, w);
    const scale = Math.max(...Array.from(db, Math.abs));
    for (let k = 0; k < da.length; k++)
      assert.ok(Math.abs(da[k]! - db[k]!) <= 1e-4 * scale, `${w}[${k}]: ${da[k]} vs ${db[k]}`);
  });
  const r3 = rand((await weightedSumGradGraph(g, wrt, f3)).shapes.get('R')!.dims as number[]);
  const at3 = await run(dyn, { ...base, ...f3, R: r3 });
  assert.equal(at3[0]!.dims[0], 3);
}
