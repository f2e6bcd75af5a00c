/**
 * L-BFGS on Float64Array: two-loop recursion over the last m (s, y) pairs, with a line search
 * that satisfies the strong Wolfe conditions (bracketing + zoom by safeguarded cubic interpolation,
 * Nocedal & Wright algorithms 3.5/3.6).
 */

/** Value and gradient at x; writes the gradient into g and returns the value (or a promise of it, when onnxruntime computes it). */
export type Objective = (x: Float64Array, g: Float64Array) => number | Promise<number>;

export interface LbfgsOptions {
  /** History size (default 10). */
  m?: number;
  /** Iterations at most (default 500). */
  maxIter?: number;
  /** Stop when the gradient's 2-norm is below this (default 1e-6). */
  gtol?: number;
  /** Stop when an iteration lowers f by less than ftol × max(|f|, 1) (default 1e-15). */
  ftol?: number;
  /** Wolfe constants (defaults 1e-4, 0.9). */
  c1?: number;
  c2?: number;
}

export interface LbfgsResult {
  x: Float64Array;
  f: number;
  gradNorm: number;
  iterations: number;
  evaluations: number;
  converged: boolean;
  reason: 'gtol' | 'ftol' | 'maxIter' | 'lineSearch';
}

/** Dot product of two equal-length vectors (also used by the similarity heads). */
export function dot(a: Float64Array, b: Float64Array): number {
  // four accumulators: independent chains the CPU can overlap
  let s0 = 0,
    s1 = 0,
    s2 = 0,
    s3 = 0;
  const n = a.length,
    n4 = n - (n % 4);
  let i = 0;
  for (; i < n4; i += 4) {
    s0 += a[i]! * b[i]!;
    s1 += a[i + 1]! * b[i + 1]!;
    s2 += a[i + 2]! * b[i + 2]!;
    s3 += a[i + 3]! * b[i + 3]!;
  }
  for (; i < n; i++) s0 += a[i]! * b[i]!;
  return s0 + s1 + s2 + s3;
}

/* Vector kernels as small synchronous functions (fast in V8, unlike loops in the async body). */

/** y += a·x */
function axpy(y: Float64Array, a: number, x: Float64Array): void {
  for (let i = 0; i < y.length; i++) y[i]! += a * x[i]!;
}

/** out = x + t·d */
function step(out: Float64Array, x: Float64Array, t: number, d: Float64Array): void {
  for (let i = 0; i < out.length; i++) out[i] = x[i]! + t * d[i]!;
}

/** out = a − b */
function diff(out: Float64Array, a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! - b[i]!;
}

/** out = s·x */
function scaled(out: Float64Array, s: number, x: Float64Array): void {
  for (let i = 0; i < out.length; i++) out[i] = s * x[i]!;
}

export async function minimize(fg: Objective, x0: Float64Array, o: LbfgsOptions = {}): Promise<LbfgsResult> {
  const m = o.m ?? 10,
    maxIter = o.maxIter ?? 500,
    gtol = o.gtol ?? 1e-6,
    ftol = o.ftol ?? 1e-15;
  const c1 = o.c1 ?? 1e-4,
    c2 = o.c2 ?? 0.9;
  const n = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(n);
  let f = await fg(x, g);
  let evaluations = 1;
  const S: Float64Array[] = [],
    Y: Float64Array[] = [],
    RHO: number[] = [];
  const d = new Float64Array(n);
  const alpha = new Float64Array(m);
  let xNew = new Float64Array(n),
    gNew = new Float64Array(n);
  let reason: LbfgsResult['reason'] = 'maxIter';
  let iter = 0;

  for (; iter < maxIter; iter++) {
    const gnorm = Math.sqrt(dot(g, g));
    if (!(gnorm > gtol)) {
      reason = 'gtol';
      break;
    }
    // two-loop recursion: d = −H g
    scaled(d, -1, g);
    const k = S.length;
    for (let j = k - 1; j >= 0; j--) {
      const a = RHO[j]! * dot(S[j]!, d);
      alpha[j] = a;
      axpy(d, -a, Y[j]!);
    }
    if (k > 0) scaled(d, dot(S[k - 1]!, Y[k - 1]!) / dot(Y[k - 1]!, Y[k - 1]!), d);
    for (let j = 0; j < k; j++) {
      const b = RHO[j]! * dot(Y[j]!, d);
      axpy(d, alpha[j]! - b, S[j]!);
    }
    let dg = dot(d, g);
    if (!(dg < 0)) {
      // not a descent direction (numerical trouble): restart from steepest descent
      S.length = Y.length = RHO.length = 0;
      scaled(d, -1, g);
      dg = -gnorm * gnorm;
    }
    const t0 = k === 0 ? Math.min(1, 1 / gnorm) : 1;

    // strong Wolfe line search
    const phi = async (t: number): Promise<[number, number]> => {
      step(xNew, x, t, d);
      const v = await fg(xNew, gNew);
      evaluations++;
      return [v, dot(gNew, d)];
    };
    let found = false;
    let tPrev = 0,
      fPrev = f,
      dPrev = dg;
    let t = t0;
    let fT = 0;
    const zoom = async (
      lo: number,
      flo: number,
      dlo: number,
      hi: number,
      fhi: number,
      dhi: number,
    ): Promise<boolean> => {
      for (let z = 0; z < 40; z++) {
        let tz = cubicMin(lo, flo, dlo, hi, fhi, dhi);
        const a = Math.min(lo, hi),
          b = Math.max(lo, hi);
        if (!Number.isFinite(tz) || tz <= a + 0.1 * (b - a) || tz >= b - 0.1 * (b - a)) tz = (lo + hi) / 2;
        const [fz, dz] = await phi(tz);
        if (fz > f + c1 * tz * dg || fz >= flo) {
          hi = tz;
          fhi = fz;
          dhi = dz;
        } else {
          if (Math.abs(dz) <= -c2 * dg) {
            t = tz;
            fT = fz;
            return true;
          }
          if (dz * (hi - lo) >= 0) {
            hi = lo;
            fhi = flo;
            dhi = dlo;
          }
          lo = tz;
          flo = fz;
          dlo = dz;
        }
        if (Math.abs(hi - lo) < 1e-16 * Math.max(1, Math.abs(lo))) break;
      }
      // accept the best point seen if it decreases f enough
      if (flo < f + c1 * lo * dg && lo > 0) {
        const [fl] = await phi(lo);
        t = lo;
        fT = fl;
        return true;
      }
      return false;
    };
    for (let ls = 0; ls < 40; ls++) {
      const [ft, dt] = await phi(t);
      if (!Number.isFinite(ft) || ft > f + c1 * t * dg || (ls > 0 && ft >= fPrev)) {
        if (!Number.isFinite(ft)) {
          t = (tPrev + t) / 2;
          continue;
        }
        found = await zoom(tPrev, fPrev, dPrev, t, ft, dt);
        break;
      }
      if (Math.abs(dt) <= -c2 * dg) {
        fT = ft;
        found = true;
        break;
      }
      if (dt >= 0) {
        found = await zoom(t, ft, dt, tPrev, fPrev, dPrev);
        break;
      }
      tPrev = t;
      fPrev = ft;
      dPrev = dt;
      t *= 2;
    }
    if (!found) {
      reason = 'lineSearch';
      break;
    }

    // xNew/gNew hold the accepted point (zoom re-evaluates lo when it falls back)
    // reuse the oldest pair's buffers once the history is full
    const full = S.length === m;
    const s = full ? S[0]! : new Float64Array(n),
      y = full ? Y[0]! : new Float64Array(n);
    diff(s, xNew, x);
    diff(y, gNew, g);
    const sy = dot(s, y);
    if (sy > 1e-10 * dot(y, y)) {
      if (full) {
        S.shift();
        Y.shift();
        RHO.shift();
      }
      S.push(s);
      Y.push(y);
      RHO.push(1 / sy);
    }
    const fOld = f;
    [x, xNew] = [xNew, x];
    [g, gNew] = [gNew, g];
    f = fT;
    if (fOld - f <= ftol * Math.max(Math.abs(f), 1)) {
      iter++;
      reason = Math.sqrt(dot(g, g)) <= gtol ? 'gtol' : 'ftol';
      break;
    }
  }
  const gradNorm = Math.sqrt(dot(g, g));
  return { x, f, gradNorm, iterations: iter, evaluations, converged: reason === 'gtol' || gradNorm <= gtol, reason };
}

/** Minimizer of the cubic through (a, fa, da) and (b, fb, db); NaN when it has none. */
function cubicMin(a: number, fa: number, da: number, b: number, fb: number, db: number): number {
  const d1 = da + db - (3 * (fa - fb)) / (a - b);
  const disc = d1 * d1 - da * db;
  if (disc < 0) return NaN;
  const d2 = Math.sign(b - a) * Math.sqrt(disc);
  return b - (b - a) * ((db + d2 - d1) / (db - da + 2 * d2));
}
