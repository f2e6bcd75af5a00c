/**
 * What a gradient rule sees. A rule is a small function from a forward node and the gradients of its
 * outputs to the gradients of its inputs, written as new ONNX nodes through `ctx.b`.
 */
import type { Node } from '../graph/graph.js';
import type { Builder } from '../graph/builder.js';
import type { DType } from '../graph/tensor.js';
import type { ValueShape } from './shapes.js';

export interface GradCtx {
  readonly b: Builder;
  readonly node: Node;
  /** Name of input i ('' when absent). */
  x(i: number): string;
  /** Name of output i. */
  y(i: number): string;
  /** Gradient flowing into output i, or null when nothing downstream needs it. */
  dy(i: number): string | null;
  /** Gradient of output i, or zeros of its shape when none flows. */
  dyOrZeros(i: number): string;
  /** Whether the gradient of input i is wanted. */
  needs(i: number): boolean;
  shape(name: string): ValueShape;
  rank(name: string): number;
  dtype(name: string): DType;
  /** Reduce a gradient computed at the broadcast output shape back to the shape of input `x`. */
  unbroadcast(grad: string, x: string): string;
  /** Ask the forward node for an optional output (e.g. Dropout's mask); returns its name. */
  forwardOutput(i: number, base: string): string;
}

/** Gradients of the node's inputs by index; null/undefined where none is produced. */
export type GradRule = (ctx: GradCtx) => (string | null | undefined)[];

export class NoGradientRule extends Error {
  constructor(readonly opType: string, readonly nodeName: string) {
    super(`no gradient rule for operator ${opType} (node '${nodeName}')`);
  }
}
