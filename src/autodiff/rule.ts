/**
 * What a gradient rule sees. A rule is a small function from a forward node to the gradients of its
 * inputs, written as new ONNX nodes through `ctx.b`, reading like the formula it implements:
 *
 *   Mul: broadcasting(({ b, dy, x: [u, v] }) => [b.mul(dy, v), b.mul(dy, u)])
 *
 * The context does the bookkeeping once for every rule: `dy` is the output's gradient (zeros when none
 * flows); a rule returns a gradient for every input it can differentiate, and only those the caller
 * needs are kept (a gradient may be given as a function, evaluated only when needed; nodes built for
 * gradients nobody needs are removed afterwards); for the inputs a rule declares `broadcasting`, the
 * gradient it gives at the output's shape is summed back to the input's shape.
 */
import type { Node } from '../graph/graph.js';
import type { Builder } from '../graph/builder.js';
import type { DType } from '../graph/tensor.js';
import type { ValueShape } from './shapes.js';

/** Value names by position; positions past the node's last input or output read ''. */
export type Names = readonly [string, string, string, string, string, string, string, string, ...string[]];

export interface GradCtx {
  readonly b: Builder;
  readonly node: Node;
  /** The gradient of the node's (first) output: zeros of its shape when nothing flows into it. */
  readonly dy: string;
  /** Input names by position ('' where an optional input is absent, or past the last one). */
  readonly x: Names;
  /** Output names by position ('' past the last one). */
  readonly y: Names;
  /** The gradient of output i, or null when nothing downstream needs it (operators with several outputs). */
  dyOf(i: number): string | null;
  /** Whether the gradient of input i is wanted (for rules whose work for one input depends on another's). */
  needs(i: number): boolean;
  shape(name: string): ValueShape;
  rank(name: string): number;
  dtype(name: string): DType;
  /** The node's attributes, with defaults. */
  int(name: string, dflt: number): number;
  float(name: string, dflt: number): number;
  ints(name: string): number[] | undefined;
  str(name: string, dflt: string): string;
  /** Reduce a gradient computed at the output's (broadcast) shape back to the shape of input `x`. */
  unbroadcast(grad: string, x: string): string;
  /** Ask the forward node for an optional output (e.g. Dropout's mask); returns its name. */
  forwardOutput(i: number, base: string): string;
}

/** One input's gradient: a value name, a function building it (called only when it is needed), or none. */
export type Grad = string | null | undefined | (() => string | null | undefined);

/** Gradients of the node's inputs by position. */
export interface GradRule {
  (ctx: GradCtx): Grad[];
  /**
   * Inputs whose gradient the rule gives at the output's shape, to be summed over the axes they were
   * broadcast along (all inputs when true). Set with `broadcasting`.
   */
  broadcast?: true | readonly number[];
}

/** Mark a rule's gradients as given at the output's shape for `inputs` (default: all): the context unbroadcasts them. */
export function broadcasting(rule: (ctx: GradCtx) => Grad[], inputs?: readonly number[]): GradRule {
  const r: GradRule = (ctx) => rule(ctx);
  r.broadcast = inputs ?? true;
  return r;
}

export class NoGradientRule extends Error {
  constructor(
    readonly opType: string,
    readonly nodeName: string,
  ) {
    super(`no gradient rule for operator ${opType} (node '${nodeName}')`);
  }
}
