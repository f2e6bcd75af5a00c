/**
 * Optimizers run in TypeScript over Float32Arrays: onnxruntime computes gradients, this updates the
 * weights in place. (A fused update loop here measured faster than feeding optimizer state through
 * the graph: bench/optimizer.ts.) State is plain arrays so checkpoints can save it.
 */

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
}

export interface SgdOptions { momentum?: number; weightDecay?: number; nesterov?: boolean; groups?: Map<string, ParamGroup> }

/** SGD with momentum and (coupled, L2) weight decay, as torch.optim.SGD. */
export class SGD implements Optimizer {
  readonly kind = 'sgd';
  private buf = new Map<string, Float32Array>();
  constructor(private o: SgdOptions = {}) {}

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

  state() { return { kind: this.kind, buf: Object.fromEntries([...this.buf].map(([k, v]) => [k, Array.from(v)])) }; }
  loadState(s: Record<string, unknown>) {
    this.buf = new Map(Object.entries((s['buf'] ?? {}) as Record<string, number[]>).map(([k, v]) => [k, Float32Array.from(v)]));
  }
}

export interface AdamWOptions { beta1?: number; beta2?: number; eps?: number; weightDecay?: number; groups?: Map<string, ParamGroup> }

/** AdamW (decoupled weight decay), as torch.optim.AdamW. */
export class AdamW implements Optimizer {
  readonly kind = 'adamw';
  private m = new Map<string, Float32Array>();
  private v = new Map<string, Float32Array>();
  private t = 0;
  constructor(private o: AdamWOptions = {}) {}

  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    const b1 = this.o.beta1 ?? 0.9;
    const b2 = this.o.beta2 ?? 0.999;
    const eps = this.o.eps ?? 1e-8;
    this.t++;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    for (const [k, p] of params) {
      const g = grads.get(k);
      if (!g) continue;
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
    return { kind: this.kind, t: this.t, m: dump(this.m), v: dump(this.v) };
  }
  loadState(s: Record<string, unknown>) {
    const load = (x: unknown) => new Map(Object.entries((x ?? {}) as Record<string, number[]>).map(([k, v]) => [k, Float32Array.from(v)]));
    this.t = Number(s['t'] ?? 0);
    this.m = load(s['m']);
    this.v = load(s['v']);
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
