/**
 * Reverse-mode differentiation of an ONNX graph into more ONNX nodes. Walks the nodes that lie on a
 * path from a trainable value to the loss, in reverse order, calling each operator's rule and summing
 * gradients that meet at a value. Everything else (frozen parts) gets no gradient work at all.
 */
import { attrFloat, attrInt, attrInts, attrString, type Graph, type Node } from '../graph/graph.js';
import { Builder, A } from '../graph/builder.js';
import { isFloat } from '../graph/tensor.js';
import type { ShapeMap, ValueShape } from './shapes.js';
import { type GradCtx, type Names, NoGradientRule } from './rule.js';
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
export function gradientPath(
  g: Graph,
  shapes: ShapeMap,
  wrt: Iterable<string>,
  loss: string,
): { onPath: Set<Node>; requires: Set<string> } {
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
  const initializersBefore = new Set(g.initializers.keys());
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
  const order = g
    .topoSort()
    .filter((n) => onPath.has(n))
    .reverse();
  for (const node of order) {
    const rule = RULES[node.opType];
    if (!rule || (node.domain && node.domain !== 'ai.onnx')) throw new NoGradientRule(node.opType, node.name);
    // no gradient reaches any output (e.g. everything downstream of a stop-gradient): nothing to do
    if (node.outputs.every((o) => !o || gradOf(o) === null)) continue;
    const ctx = makeCtx(g, b, shapes, node, requires, gradOf);
    try {
      const gins = rule(ctx);
      node.inputs.forEach((inp, i) => {
        if (!inp || !requires.has(inp)) return;
        const gi = gins[i];
        let v = typeof gi === 'function' ? gi() : gi;
        if (!v) return;
        if (rule.broadcast === true || rule.broadcast?.includes(i)) v = ctx.unbroadcast(v, inp);
        add(inp, v);
      });
    } catch (e) {
      if (e instanceof NoGradientRule || e instanceof GraftError) throw e;
      throw new GraftError(`gradient of node '${node.name}' (${node.opType}) failed: ${(e as Error).message}`);
    }
  }
  const grads = new Map<string, string | null>();
  for (const w of opts.wrt) grads.set(w, gradOf(w));
  removeUnused(g, b, new Set([...grads.values()].filter((v): v is string => !!v)), initializersBefore);
  return { grads, nodesDifferentiated: order.length };
}

/**
 * Drop the nodes this backward pass built that nothing uses (gradients a rule gave for inputs that
 * needed none), and the constants only they used. Forward nodes and graph outputs are never touched.
 */
function removeUnused(g: Graph, b: Builder, keep: Set<string>, initializersBefore: Set<string>): void {
  const mine = new Set(b.emitted);
  const live = new Set<string>([...keep, ...g.outputs.map((o) => o.name)]);
  for (const n of g.nodes) if (!mine.has(n)) for (const i of n.inputs) if (i) live.add(i);
  const prod = new Map<string, Node>();
  for (const n of b.emitted) for (const o of n.outputs) if (o) prod.set(o, n);
  const used = new Set<Node>();
  const stack = [...live];
  while (stack.length) {
    const n = prod.get(stack.pop()!);
    if (!n || used.has(n)) continue;
    used.add(n);
    for (const i of n.inputs) if (i) stack.push(i);
  }
  if (used.size === mine.size) return;
  g.nodes = g.nodes.filter((n) => !mine.has(n) || used.has(n));
  const inputs = new Set(g.nodes.flatMap((n) => n.inputs));
  for (const k of [...g.initializers.keys()])
    if (!initializersBefore.has(k) && !inputs.has(k) && !live.has(k)) g.initializers.delete(k);
}

function makeCtx(
  g: Graph,
  b: Builder,
  shapes: ShapeMap,
  node: Node,
  requires: Set<string>,
  gradOf: (v: string) => string | null,
): GradCtx {
  const shape = (name: string): ValueShape => {
    const s = shapes.get(name);
    if (!s) throw new GraftError(`no shape known for value '${name}' (node '${node.name}')`);
    return s;
  };
  let dy: string | undefined;
  const ctx: GradCtx = {
    b,
    node,
    get dy() {
      // zeros of y's shape and type when no gradient flows into it (y is finite in practice)
      return (dy ??= gradOf(node.outputs[0]!) ?? b.op('Sub', [node.outputs[0]!, node.outputs[0]!]));
    },
    x: names(node.inputs),
    y: names(node.outputs),
    dyOf: (i) => (node.outputs[i] ? gradOf(node.outputs[i]!) : null),
    needs: (i) => !!node.inputs[i] && requires.has(node.inputs[i]!),
    shape,
    rank: (name) => shape(name).dims.length,
    dtype: (name) => shape(name).dtype,
    int: (name, dflt) => attrInt(node, name, dflt),
    float: (name, dflt) => attrFloat(node, name, dflt),
    ints: (name) => attrInts(node, name),
    str: (name, dflt) => attrString(node, name, dflt),
    unbroadcast: (grad, x) => unbroadcast(b, grad, shape(x).dims, shape(node.outputs[0]!).dims, x),
    forwardOutput: (i, base) => {
      while (node.outputs.length <= i) node.outputs.push('');
      if (!node.outputs[i]) node.outputs[i] = b.name(`${node.name}/${base}`);
      return node.outputs[i]!;
    },
  };
  return ctx;
}

/** Names padded with '' to at least 8 positions. */
function names(v: readonly string[]): Names {
  return [...v.map((n) => n ?? ''), ...Array<string>(Math.max(0, 8 - v.length)).fill('')] as unknown as Names;
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
