/**
 * Reverse-mode differentiation of an ONNX graph into more ONNX nodes. Walks the nodes that lie on a
 * path from a trainable value to the loss, in reverse order, calling each operator's rule and summing
 * gradients that meet at a value. Everything else (frozen parts) gets no gradient work at all.
 */
import type { Graph, Node } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import { isFloat } from '../graph/tensor.js';
import type { ShapeMap, ValueShape } from './shapes.js';
import { type GradCtx, NoGradientRule } from './rule.js';
import { RULES, NON_DIFFERENTIABLE } from './rules/index.js';
import { GraftError } from '../util/errors.js';

export interface BackwardOptions {
  /** Scalar value to differentiate. */
  loss: string;
  /** Values (parameters or inputs) whose gradients are wanted. */
  wrt: string[];
  /** Name for the seed gradient input; when omitted the seed is the constant 1. */
  seed?: string;
  /**
   * Multiply the gradient arriving at these values by a constant before it flows further back:
   * 0 stops it (a stop-gradient), −λ reverses it (DANN's gradient-reversal layer). The forward pass
   * is unchanged.
   */
  gradScale?: Map<string, number>;
}

export interface BackwardResult {
  /** Gradient value name for each name in wrt (null when the loss does not depend on it). */
  grads: Map<string, string | null>;
  /** Number of forward nodes that received gradient work. */
  nodesDifferentiated: number;
}

/** Which values are floating-point functions of any of `wrt`. */
export function gradientPath(g: Graph, shapes: ShapeMap, wrt: Iterable<string>, loss: string): { onPath: Set<Node>; requires: Set<string> } {
  const requires = new Set<string>(wrt);
  const order = g.topoSort();
  for (const n of order) {
    if (NON_DIFFERENTIABLE.has(n.opType)) continue;
    if (n.inputs.some((i) => i && requires.has(i)))
      for (const o of n.outputs) {
        const s = shapes.get(o);
        if (o && s && isFloat(s.dtype)) requires.add(o);
      }
  }
  // keep only nodes that lead to the loss
  const prod = g.producers();
  const reach = new Set<string>();
  const stack = [loss];
  const onPath = new Set<Node>();
  while (stack.length) {
    const v = stack.pop()!;
    if (reach.has(v) || !requires.has(v)) continue;
    reach.add(v);
    const p = prod.get(v);
    if (p && !onPath.has(p)) {
      onPath.add(p);
      for (const i of p.inputs) if (i && requires.has(i)) stack.push(i);
    }
  }
  return { onPath, requires: reach };
}

export function buildBackward(g: Graph, shapes: ShapeMap, opts: BackwardOptions): BackwardResult {
  const { onPath, requires } = gradientPath(g, shapes, opts.wrt, opts.loss);
  const b = new Builder(g, 'grad/');
  const contributions = new Map<string, string[]>();
  const add = (v: string, gname: string) => {
    let l = contributions.get(v);
    if (!l) contributions.set(v, (l = []));
    l.push(gname);
  };
  const scaled = new Set<string>();
  const gradOf = (v: string): string | null => {
    const l = contributions.get(v);
    if (!l || l.length === 0) return null;
    if (l.length > 1) contributions.set(v, [b.sum(l)]);
    const scale = opts.gradScale?.get(v);
    if (scale !== undefined && !scaled.has(v)) {
      scaled.add(v);
      contributions.set(v, scale === 0 ? [] : [b.mul(contributions.get(v)![0]!, b.f32(scale))]);
    }
    return contributions.get(v)![0] ?? null;
  };
  add(opts.loss, opts.seed ?? b.f32(1));
  const order = g.topoSort().filter((n) => onPath.has(n)).reverse();
  for (const node of order) {
    const rule = RULES[node.opType];
    if (!rule || (node.domain && node.domain !== 'ai.onnx')) throw new NoGradientRule(node.opType, node.name);
    // no gradient reaches any output (e.g. everything downstream of a stop-gradient): nothing to do
    if (node.outputs.every((o) => !o || gradOf(o) === null)) continue;
    const ctx = makeCtx(g, b, shapes, node, requires, gradOf);
    let gins: (string | null | undefined)[];
    try {
      gins = rule(ctx);
    } catch (e) {
      if (e instanceof NoGradientRule || e instanceof GraftError) throw e;
      throw new GraftError(`gradient of node '${node.name}' (${node.opType}) failed: ${(e as Error).message}`);
    }
    node.inputs.forEach((inp, i) => {
      const gi = gins[i];
      if (inp && gi && requires.has(inp)) add(inp, gi);
    });
  }
  const grads = new Map<string, string | null>();
  for (const w of opts.wrt) grads.set(w, gradOf(w));
  return { grads, nodesDifferentiated: order.length };
}

function makeCtx(
  g: Graph, b: Builder, shapes: ShapeMap, node: Node, requires: Set<string>, gradOf: (v: string) => string | null,
): GradCtx {
  const shape = (name: string): ValueShape => {
    const s = shapes.get(name);
    if (!s) throw new GraftError(`no shape known for value '${name}' (node '${node.name}')`);
    return s;
  };
  const ctx: GradCtx = {
    b,
    node,
    x: (i) => node.inputs[i] ?? '',
    y: (i) => node.outputs[i] ?? '',
    dy: (i) => (node.outputs[i] ? gradOf(node.outputs[i]!) : null),
    dyOrZeros: (i) => {
      const d = ctx.dy(i);
      if (d) return d;
      const y = node.outputs[i]!;
      return b.op('Sub', [y, y]); // zeros of y's shape and type (y is finite in practice)
    },
    needs: (i) => !!node.inputs[i] && requires.has(node.inputs[i]!),
    shape,
    rank: (name) => shape(name).dims.length,
    dtype: (name) => shape(name).dtype,
    unbroadcast: (grad, x) => unbroadcast(b, grad, shape(x).dims, shape(node.outputs[0]!).dims, x),
    forwardOutput: (i, base) => {
      while (node.outputs.length <= i) node.outputs.push('');
      if (!node.outputs[i]) node.outputs[i] = b.name(`${node.name}/${base}`);
      return node.outputs[i]!;
    },
  };
  return ctx;
}

/**
 * Sum a gradient over the axes along which `x` (shape xs) was broadcast to the output (shape ys),
 * then give it x's shape. Decided from probed shapes: an axis is reduced when x has a fixed size 1
 * there and the output does not.
 */
export function unbroadcast(b: Builder, grad: string, xs: (number | null)[], ys: (number | null)[], x: string): string {
  const lead = ys.length - xs.length;
  const axes: number[] = [];
  for (let i = 0; i < ys.length; i++) {
    if (i < lead) axes.push(i);
    else if (xs[i - lead] === 1 && ys[i] !== 1) axes.push(i);
  }
  if (axes.length === 0) return grad;
  let r = b.reduce('ReduceSum', grad, axes, true);
  if (lead > 0) r = xs.every((d) => d !== null) ? b.reshape(r, xs as number[]) : b.op('Reshape', [r, b.shapeOf(x)]);
  return r;
}

export { A };
