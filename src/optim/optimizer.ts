/**
 * Optimizers run in TypeScript over Float32Arrays: onnxruntime computes gradients, this updates the
 * weights in place. (A fused update loop here measured faster than feeding optimizer state through
 * the graph: bench/optimizer.ts.) State is plain arrays so checkpoints can save it.
 */
import { GraftError } from '../util/errors.js';

export interface ParamGroup {
  /** Multiplier on the base learning rate (discriminative learning rates). */
  lrScale?: number;
  weightDecay?: number;
}

export interface Optimizer {
  readonly kind: string;
  /** Update `params` in place from `grads`. */
  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void;
  state(): Record<string, unknown>;
  loadState(s: Record<string, unknown>): void;
  /** Per-parameter settings (learning-rate multipliers, weight decay); replaces the current ones. */
  setGroups(groups: Map<string, ParamGroup> | undefined): void;
  /** State as JSON-able scalars plus float tensors by name (for checkpoints: tensors go to safetensors). */
  exportState(): OptimizerState;
  importState(s: OptimizerState): void;
}

export interface OptimizerState {
  kind: string;
  meta: Record<string, unknown>;
  tensors: Map<string, Float32Array>;
}

function exportMaps(maps: Record<string, Map<string, Float32Array>>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [prefix, m] of Object.entries(maps))
    for (const [k, v] of m) out.set(`${prefix}/${k}`, Float32Array.from(v));
  return out;
}

function importMap(tensors: Map<string, Float32Array>, prefix: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of tensors)
    if (k.startsWith(`${prefix}/`)) out.set(k.slice(prefix.length + 1), Float32Array.from(v));
  return out;
}

export interface SgdOptions {
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
  groups?: Map<string, ParamGroup>;
}

/** SGD with momentum and (coupled, L2) weight decay, as torch.optim.SGD. */
export class SGD implements Optimizer {
  readonly kind = 'sgd';
  private buf = new Map<string, Float32Array>();
  constructor(private o: SgdOptions = {}) {}

  setGroups(groups: Map<string, ParamGroup> | undefined): void {
    this.o = { ...this.o, ...(groups ? { groups } : { groups: new Map() }) };
  }

  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    const mom = this.o.momentum ?? 0;
    for (const [k, p] of params) {
      const g = grads.get(k);
      if (!g) continue;
      const grp = this.o.groups?.get(k);
      const a = lr * (grp?.lrScale ?? 1);
      const wd = grp?.weightDecay ?? this.o.weightDecay ?? 0;
      if (mom === 0) {
        for (let i = 0; i < p.length; i++) p[i]! -= a * (g[i]! + wd * p[i]!);
        continue;
      }
      let b = this.buf.get(k);
      const first = !b;
      if (!b) this.buf.set(k, (b = new Float32Array(p.length)));
      for (let i = 0; i < p.length; i++) {
        const d = g[i]! + wd * p[i]!;
        const v = first ? d : mom * b[i]! + d;
        b[i] = v;
        p[i]! -= a * (this.o.nesterov ? d + mom * v : v);
      }
    }
  }

  state() {
    return { kind: this.kind, buf: Object.fromEntries([...this.buf].map(([k, v]) => [k, Array.from(v)])) };
  }
  loadState(s: Record<string, unknown>) {
    this.buf = new Map(
      Object.entries((s['buf'] ?? {}) as Record<string, number[]>).map(([k, v]) => [k, Float32Array.from(v)]),
    );
  }
  exportState(): OptimizerState {
    return { kind: this.kind, meta: {}, tensors: exportMaps({ buf: this.buf }) };
  }
  importState(s: OptimizerState): void {
    if (s.kind !== this.kind) throw new GraftError(`optimizer state is for ${s.kind}, not ${this.kind}`);
    this.buf = importMap(s.tensors, 'buf');
  }
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  groups?: Map<string, ParamGroup>;
}

/** AdamW (decoupled weight decay), as torch.optim.AdamW. */
export class AdamW implements Optimizer {
  readonly kind = 'adamw';
  private m = new Map<string, Float32Array>();
  private v = new Map<string, Float32Array>();
  private t = 0;
  /** Steps taken by each parameter (as torch: a parameter unfrozen later starts its own bias correction). */
  private tp = new Map<string, number>();
  constructor(private o: AdamWOptions = {}) {}

  setGroups(groups: Map<string, ParamGroup> | undefined): void {
    this.o = { ...this.o, ...(groups ? { groups } : { groups: new Map() }) };
  }

  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    const b1 = this.o.beta1 ?? 0.9;
    const b2 = this.o.beta2 ?? 0.999;
    const eps = this.o.eps ?? 1e-8;
    this.t++;
    for (const [k, p] of params) {
      const g = grads.get(k);
      if (!g) continue;
      const t = (this.tp.get(k) ?? 0) + 1;
      this.tp.set(k, t);
      const c1 = 1 - b1 ** t;
      const c2 = 1 - b2 ** t;
      const grp = this.o.groups?.get(k);
      const a = lr * (grp?.lrScale ?? 1);
      const decay = 1 - a * (grp?.weightDecay ?? this.o.weightDecay ?? 0.01);
      let m = this.m.get(k);
      let v = this.v.get(k);
      if (!m) this.m.set(k, (m = new Float32Array(p.length)));
      if (!v) this.v.set(k, (v = new Float32Array(p.length)));
      const step = a / c1;
      const sc2 = Math.sqrt(c2);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i]! * decay - (step * mi) / (Math.sqrt(vi) / sc2 + eps);
      }
    }
  }

  state() {
    const dump = (x: Map<string, Float32Array>) => Object.fromEntries([...x].map(([k, v]) => [k, Array.from(v)]));
    return { kind: this.kind, t: this.t, steps: Object.fromEntries(this.tp), m: dump(this.m), v: dump(this.v) };
  }
  loadState(s: Record<string, unknown>) {
    const load = (x: unknown) =>
      new Map(Object.entries((x ?? {}) as Record<string, number[]>).map(([k, v]) => [k, Float32Array.from(v)]));
    this.t = Number(s['t'] ?? 0);
    this.m = load(s['m']);
    this.v = load(s['v']);
    const steps = s['steps'] as Record<string, number> | undefined;
    this.tp = new Map([...this.m.keys()].map((k) => [k, Number(steps?.[k] ?? this.t)]));
  }
  exportState(): OptimizerState {
    return {
      kind: this.kind,
      meta: { t: this.t, steps: Object.fromEntries(this.tp) },
      tensors: exportMaps({ m: this.m, v: this.v }),
    };
  }
  importState(s: OptimizerState): void {
    if (s.kind !== this.kind) throw new GraftError(`optimizer state is for ${s.kind}, not ${this.kind}`);
    this.t = Number(s.meta['t'] ?? 0);
    this.tp = new Map(
      Object.entries((s.meta['steps'] ?? {}) as Record<string, number>).map(([k, v]) => [k, Number(v)]),
    );
    this.m = importMap(s.tensors, 'm');
    this.v = importMap(s.tensors, 'v');
  }
}

/** Scale all gradients so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(grads: Map<string, Float32Array>, maxNorm: number): number {
  let sq = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
  const norm = Math.sqrt(sq);
  if (norm > maxNorm && norm > 0) {
    const s = maxNorm / (norm + 1e-6);
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= s;
  }
  return norm;
}

export type OptimizerSpec = ({ kind: 'adamw' } & AdamWOptions) | ({ kind: 'sgd' } & SgdOptions);

export function makeOptimizer(spec: OptimizerSpec): Optimizer {
  return spec.kind === 'sgd' ? new SGD(spec) : new AdamW(spec);
}
