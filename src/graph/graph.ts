/**
 * The in-memory ONNX graph: nodes, values, initializers. Everything Graft does to a model
 * (import, cut, add a head, differentiate, export) is a rewrite of this structure.
 */
import type { DType, Tensor } from './tensor.js';

export type Attr =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'tensor'; value: Tensor }
  /** Anything else (subgraphs, sparse tensors, type protos) kept as the decoded protobuf object. */
  | { type: 'raw'; value: unknown };

export interface Node {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
  docString?: string;
}

/** A dimension: a number when fixed, a string when symbolic, null when unknown. */
export type Dim = number | string | null;

export interface ValueInfo {
  name: string;
  dtype?: DType;
  shape?: Dim[];
  /** A non-tensor TypeProto, kept as decoded. */
  rawType?: unknown;
  docString?: string;
}

export class Graph {
  name = 'graph';
  nodes: Node[] = [];
  inputs: ValueInfo[] = [];
  outputs: ValueInfo[] = [];
  valueInfo: ValueInfo[] = [];
  initializers = new Map<string, Tensor>();
  /** Operator set versions by domain ('' is the default ONNX domain). */
  opsets: Record<string, number> = { '': 17 };
  irVersion = 8;
  producerName = 'graft';
  producerVersion = '';
  docString = '';
  metadata: Record<string, string> = {};
  /** Model-level protobuf fields Graft does not interpret (functions, training_info…), kept for round trips. */
  extra: Record<string, unknown> = {};

  clone(): Graph {
    const g = new Graph();
    g.name = this.name;
    g.nodes = this.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: { ...n.attrs } }));
    g.inputs = this.inputs.map((v) => ({ ...v }));
    g.outputs = this.outputs.map((v) => ({ ...v }));
    g.valueInfo = this.valueInfo.map((v) => ({ ...v }));
    g.initializers = new Map(this.initializers);
    g.opsets = { ...this.opsets };
    g.irVersion = this.irVersion;
    g.producerName = this.producerName;
    g.producerVersion = this.producerVersion;
    g.docString = this.docString;
    g.metadata = { ...this.metadata };
    g.extra = { ...this.extra };
    return g;
  }

  get opset(): number {
    return this.opsets[''] ?? this.opsets['ai.onnx'] ?? 1;
  }

  /** Graph inputs that are real data inputs (not initializers listed as inputs, as old exporters do). */
  dataInputs(): ValueInfo[] {
    return this.inputs.filter((v) => !this.initializers.has(v.name));
  }

  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n);
    return m;
  }

  consumers(): Map<string, Node[]> {
    const m = new Map<string, Node[]>();
    for (const n of this.nodes)
      for (const i of n.inputs) {
        if (!i) continue;
        let l = m.get(i);
        if (!l) m.set(i, (l = []));
        if (!l.includes(n)) l.push(n);
      }
    return m;
  }

  /** Nodes in an order where each node comes after the producers of its inputs. Throws on cycles. */
  topoSort(): Node[] {
    const prod = this.producers();
    const state = new Map<Node, number>();
    const order: Node[] = [];
    const visit = (root: Node) => {
      const stack: [Node, number][] = [[root, 0]];
      while (stack.length) {
        const top = stack[stack.length - 1]!;
        const [n, i] = top;
        if (i === 0) {
          const s = state.get(n);
          if (s === 2) {
            stack.pop();
            continue;
          }
          state.set(n, 1);
        }
        if (i < n.inputs.length) {
          top[1]++;
          const p = prod.get(n.inputs[i]!);
          if (p && p !== n) {
            const ps = state.get(p);
            if (ps === 1) throw new Error(`graph has a cycle through node '${p.name}'`);
            if (ps !== 2) stack.push([p, 0]);
          }
        } else {
          state.set(n, 2);
          order.push(n);
          stack.pop();
        }
      }
    };
    for (const n of this.nodes) if (state.get(n) !== 2) visit(n);
    return order;
  }

  /** Rename every use of a value (node inputs and graph outputs). */
  replaceUses(from: string, to: string): void {
    for (const n of this.nodes) n.inputs = n.inputs.map((i) => (i === from ? to : i));
    for (const o of this.outputs) if (o.name === from) o.name = to;
  }

  /** Drop nodes, initializers and value infos that no graph output depends on. */
  prune(): this {
    const prod = this.producers();
    const needed = new Set<string>();
    const keep = new Set<Node>();
    const stack = this.outputs.map((o) => o.name);
    while (stack.length) {
      const v = stack.pop()!;
      if (needed.has(v)) continue;
      needed.add(v);
      const p = prod.get(v);
      if (p && !keep.has(p)) {
        keep.add(p);
        for (const i of p.inputs) if (i) stack.push(i);
      }
    }
    this.nodes = this.nodes.filter((n) => keep.has(n));
    this.inputs = this.inputs.filter((v) => needed.has(v.name) || !this.initializers.has(v.name));
    for (const k of [...this.initializers.keys()]) if (!needed.has(k)) this.initializers.delete(k);
    const produced = new Set(this.nodes.flatMap((n) => n.outputs));
    this.valueInfo = this.valueInfo.filter((v) => produced.has(v.name));
    return this;
  }

  /**
   * The part of the graph that computes `values` from the inputs: a new graph whose outputs are
   * `values`. Cutting at a node's output gives a frozen backbone whose activations can be cached.
   */
  cutBefore(values: string[]): Graph {
    const g = this.clone();
    this.requireValues(values);
    g.outputs = values.map((v) => this.valueInfoOf(v) ?? { name: v });
    return g.prune();
  }

  /**
   * The part of the graph after `values`: a new graph that takes `values` as inputs and computes
   * the original outputs. Together with cutBefore it splits a model at a cut point.
   */
  cutAfter(values: string[], infos?: ValueInfo[]): Graph {
    this.requireValues(values);
    const g = this.clone();
    const cut = new Set(values);
    g.nodes = g.nodes.filter((n) => !n.outputs.some((o) => cut.has(o)));
    g.inputs = values.map((v) => infos?.find((i) => i.name === v) ?? this.valueInfoOf(v) ?? { name: v });
    g.prune();
    // Every remaining data input must be reachable: any original input still used stays an input.
    const used = new Set(g.nodes.flatMap((n) => n.inputs));
    for (const inp of this.dataInputs()) if (used.has(inp.name) && !cut.has(inp.name)) g.inputs.push({ ...inp });
    return g;
  }

  valueInfoOf(name: string): ValueInfo | undefined {
    return (
      this.inputs.find((v) => v.name === name) ??
      this.outputs.find((v) => v.name === name) ??
      this.valueInfo.find((v) => v.name === name)
    );
  }

  private requireValues(values: string[]) {
    const known = new Set<string>([...this.inputs.map((i) => i.name), ...this.initializers.keys()]);
    for (const n of this.nodes) for (const o of n.outputs) known.add(o);
    for (const v of values) if (!known.has(v)) throw new Error(`no value named '${v}' in graph '${this.name}'`);
  }

  /** A name not yet used by any value or node in the graph, starting from `base`. */
  uniqueName(base: string, taken?: Set<string>): string {
    const used = taken ?? this.allNames();
    if (!used.has(base)) {
      used.add(base);
      return base;
    }
    for (let i = 1; ; i++) {
      const n = `${base}_${i}`;
      if (!used.has(n)) {
        used.add(n);
        return n;
      }
    }
  }

  allNames(): Set<string> {
    const s = new Set<string>();
    for (const v of this.inputs) s.add(v.name);
    for (const k of this.initializers.keys()) s.add(k);
    for (const n of this.nodes) {
      s.add(n.name);
      for (const o of n.outputs) s.add(o);
    }
    return s;
  }

  /** Operator types used, with counts. */
  opCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const n of this.nodes) {
      const k = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
      m.set(k, (m.get(k) ?? 0) + 1);
    }
    return m;
  }
}

export function attrInt(n: Node, name: string, dflt: number): number {
  const a = n.attrs[name];
  return a && a.type === 'int' ? a.value : dflt;
}
export function attrFloat(n: Node, name: string, dflt: number): number {
  const a = n.attrs[name];
  return a && a.type === 'float' ? a.value : dflt;
}
export function attrInts(n: Node, name: string): number[] | undefined {
  const a = n.attrs[name];
  return a && a.type === 'ints' ? a.value : undefined;
}
export function attrString(n: Node, name: string, dflt: string): string {
  const a = n.attrs[name];
  return a && a.type === 'string' ? a.value : dflt;
}
