/**
 * L-BFGS on Float64Array: two-loop recursion over the last m (s, y) pairs, with a line search
 * that satisfies the strong Wolfe conditions (bracketing + zoom by safeguarded cubic interpolation,
 * Nocedal & Wright algorithms 3.5/3.6).
 */

/** Value and gradient at x; writes the gradient into g and returns the value. */
export type Objective = (x: Float64Array, g: Float64Array) => number;

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

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function minimize(fg: Objective, x0: Float64Array, o: LbfgsOptions = {}): LbfgsResult {
  const m = o.m ?? 10, maxIter = o.maxIter ?? 500, gtol = o.gtol ?? 1e-6, ftol = o.ftol ?? 1e-15;
  const c1 = o.c1 ?? 1e-4, c2 = o.c2 ?? 0.9;
  const n = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(n);
  let f = fg(x, g);
  let evaluations = 1;
  const S: Float64Array[] = [], Y: Float64Array[] = [], RHO: number[] = [];
  const d = new Float64Array(n);
  const alpha = new Float64Array(m);
  let xNew = new Float64Array(n), gNew = new Float64Array(n);
  let reason: LbfgsResult['reason'] = 'maxIter';
  let iter = 0;

  for (; iter < maxIter; iter++) {
    const gnorm = Math.sqrt(dot(g, g));
    if (!(gnorm > gtol)) { reason = 'gtol'; break; }
    // two-loop recursion: d = −H g
    for (let i = 0; i < n; i++) d[i] = -g[i]!;
    const k = S.length;
    for (let j = k - 1; j >= 0; j--) {
      const a = RHO[j]! * dot(S[j]!, d);
      alpha[j] = a;
      const yj = Y[j]!;
      for (let i = 0; i < n; i++) d[i]! -= a * yj[i]!;
    }
    if (k > 0) {
      const gamma = dot(S[k - 1]!, Y[k - 1]!) / dot(Y[k - 1]!, Y[k - 1]!);
      for (let i = 0; i < n; i++) d[i]! *= gamma;
    }
    for (let j = 0; j < k; j++) {
      const b = RHO[j]! * dot(Y[j]!, d);
      const sj = S[j]!, a = alpha[j]!;
      for (let i = 0; i < n; i++) d[i]! += (a - b) * sj[i]!;
    }
    let dg = dot(d, g);
    if (!(dg < 0)) {
      // not a descent direction (numerical trouble): restart from steepest descent
      S.length = Y.length = RHO.length = 0;
      for (let i = 0; i < n; i++) d[i] = -g[i]!;
      dg = -gnorm * gnorm;
    }
    const t0 = k === 0 ? Math.min(1, 1 / gnorm) : 1;

    // strong Wolfe line search
    const phi = (t: number): [number, number] => {
      for (let i = 0; i < n; i++) xNew[i] = x[i]! + t * d[i]!;
      const v = fg(xNew, gNew);
      evaluations++;
      return [v, dot(gNew, d)];
    };
    let found = false;
    let tPrev = 0, fPrev = f, dPrev = dg;
    let t = t0;
    let fT = 0;
    const zoom = (lo: number, flo: number, dlo: number, hi: number, fhi: number, dhi: number): boolean => {
      for (let z = 0; z < 40; z++) {
        let tz = cubicMin(lo, flo, dlo, hi, fhi, dhi);
        const a = Math.min(lo, hi), b = Math.max(lo, hi);
        if (!Number.isFinite(tz) || tz <= a + 0.1 * (b - a) || tz >= b - 0.1 * (b - a)) tz = (lo + hi) / 2;
        const [fz, dz] = phi(tz);
        if (fz > f + c1 * tz * dg || fz >= flo) {
          hi = tz; fhi = fz; dhi = dz;
        } else {
          if (Math.abs(dz) <= -c2 * dg) { t = tz; fT = fz; return true; }
          if (dz * (hi - lo) >= 0) { hi = lo; fhi = flo; dhi = dlo; }
          lo = tz; flo = fz; dlo = dz;
        }
        if (Math.abs(hi - lo) < 1e-16 * Math.max(1, Math.abs(lo))) break;
      }
      // accept the best point seen if it decreases f enough
      if (flo < f + c1 * lo * dg && lo > 0) { const [fl] = phi(lo); t = lo; fT = fl; return true; }
      return false;
    };
    for (let ls = 0; ls < 40; ls++) {
      const [ft, dt] = phi(t);
      if (!Number.isFinite(ft) || ft > f + c1 * t * dg || (ls > 0 && ft >= fPrev)) {
        if (!Number.isFinite(ft)) { t = (tPrev + t) / 2; continue; }
        found = zoom(tPrev, fPrev, dPrev, t, ft, dt);
        break;
      }
      if (Math.abs(dt) <= -c2 * dg) { fT = ft; found = true; break; }
      if (dt >= 0) { found = zoom(t, ft, dt, tPrev, fPrev, dPrev); break; }
      tPrev = t; fPrev = ft; dPrev = dt;
      t *= 2;
    }
    if (!found) { reason = 'lineSearch'; break; }

    // xNew/gNew hold the accepted point (zoom re-evaluates lo when it falls back)
    const s = new Float64Array(n), y = new Float64Array(n);
    for (let i = 0; i < n; i++) { s[i] = xNew[i]! - x[i]!; y[i] = gNew[i]! - g[i]!; }
    const sy = dot(s, y);
    if (sy > 1e-10 * dot(y, y)) {
      if (S.length === m) { S.shift(); Y.shift(); RHO.shift(); }
      S.push(s); Y.push(y); RHO.push(1 / sy);
    }
    const fOld = f;
    [x, xNew] = [xNew, x];
    [g, gNew] = [gNew, g];
    f = fT;
    if (fOld - f <= ftol * Math.max(Math.abs(f), 1)) { iter++; reason = Math.sqrt(dot(g, g)) <= gtol ? 'gtol' : 'ftol'; break; }
  }
  const gradNorm = Math.sqrt(dot(g, g));
  return { x, f, gradNorm, iterations: iter, evaluations, converged: reason === 'gtol' || gradNorm <= gtol, reason };
}

/** Minimizer of the cubic through (a, fa, da) and (b, fb, db); NaN when it has none. */
function cubicMin(a: number, fa: number, da: number, b: number, fb: number, db: number): number {
  const d1 = da + db - 3 * (fa - fb) / (a - b);
  const disc = d1 * d1 - da * db;
  if (disc < 0) return NaN;
  const d2 = Math.sign(b - a) * Math.sqrt(disc);
  return b - (b - a) * ((db + d2 - d1) / (db - da + 2 * d2));
}
