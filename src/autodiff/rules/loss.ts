/**
 * Loss operators: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (opset 12/13), with class
 * weights, ignore_index and every reduction. Gradients go to the scores (or log-probabilities) and to
 * the class weights; the labels are integers.
 */
import { A } from '../../graph/builder.js';
import type { GradCtx, GradRule } from '../rule.js';

/**
 * The per-sample pieces both losses share, for input x [N, C, d…] and labels [N, d…]:
 * onehot [N, C, d…] of the label (zero where it is ignore_index), w [N, d…] the sample's weight
 * (weight[label], or 1; 0 where ignored), and dl [N, d…] the gradient reaching each sample's loss
 * (dy itself for reduction none, dy for sum, dy / Σw for mean).
 */
function samples(c: GradCtx) {
  const b = c.b;
  const [x, labels, weight] = [c.x[0], c.x[1], c.x[2]];
  const C = c.shape(x).dims[1];
  if (typeof C !== 'number') throw new Error(`${c.node.opType} needs a static class count (axis 1 of '${x}')`);
  const ignore = c.node.attrs['ignore_index'] ? c.int('ignore_index', 0) : null;
  const lab = c.dtype(labels) === 'int64' ? labels : b.op('Cast', [labels], { to: A.i(7) });
  let valid: string | null = null;
  let safe = lab;
  if (ignore !== null) {
    const ig = b.equal(lab, b.i64(ignore));
    valid = b.cast(b.not(ig));
    safe = b.where(ig, b.i64(0), lab);
  }
  const onehot0 = b.op('OneHot', [safe, b.i64([C]), b.f32([0, 1])], { axis: A.i(1) });
  let w = weight ? b.op('Gather', [weight, safe]) : null;
  if (valid) w = w ? b.mul(w, valid) : valid;
  const onehot = valid ? b.mul(onehot0, b.unsqueeze(valid, [1])) : onehot0;
  const reduction = c.str('reduction', 'mean');
  const dy = c.dy;
  let dl = dy;
  if (reduction === 'mean') {
    const total = w ? b.reduceAll('ReduceSum', w) : b.op('Cast', [b.op('Size', [lab])], { to: A.i(1) });
    dl = b.div(dy, total);
  }
  // the weighted per-sample gradient, [N, 1, d…] to broadcast along the classes (a scalar stays one)
  const wdl = w ? b.unsqueeze(b.mul(w, dl), [1]) : reduction === 'none' ? b.unsqueeze(dl, [1]) : dl;
  return { onehot, w, dl, wdl, mean: reduction === 'mean' };
}

/** Sum of a per-sample term [N, d…] into the classes of the labels: [C]. */
function perClass(c: GradCtx, onehot: string, t: string): string {
  const r = c.rank(c.x[0]);
  const axes = [0, ...Array.from({ length: r - 2 }, (_, k) => k + 2)];
  return c.b.reduce('ReduceSum', c.b.mul(onehot, c.b.unsqueeze(t, [1])), axes, false);
}

/**
 * d weight[k] for loss_i = w_i·ℓ_i (ℓ_i the unweighted loss): Σ_{label_i = k} dl_i·ℓ_i, and for mean
 * reduction (L = Σ w_i ℓ_i / Σ w_i) Σ_{label_i = k} dl_i·(ℓ_i − L), with dl already divided by Σw.
 */
function dWeight(c: GradCtx, onehot: string, dl: string, ell: string, mean: boolean): string {
  const b = c.b;
  const t = mean ? b.mul(dl, b.sub(ell, c.y[0])) : b.mul(dl, ell);
  return perClass(c, onehot, t);
}

export const loss: Record<string, GradRule> = {
  // loss_i = −w_i · x[i, label_i]: dx = −onehot · w · dl
  NegativeLogLikelihoodLoss: (c) => {
    const {
      b,
      x: [x],
    } = c;
    const { onehot, dl, wdl, mean } = samples(c);
    const ell = () => b.neg(b.reduce('ReduceSum', b.mul(onehot, x), [1], false));
    return [() => b.neg(b.mul(onehot, wdl)), null, () => dWeight(c, onehot, dl, ell(), mean)];
  },

  // loss_i = −w_i · log softmax(x)[i, label_i]: dx = (softmax − onehot) · w · dl; the optional
  // log_prob output adds its own gradient through log-softmax: g − softmax · Σ_C g.
  SoftmaxCrossEntropyLoss: (c) => {
    const b = c.b;
    const { onehot, dl, wdl, mean } = samples(c);
    const logp = c.forwardOutput(1, 'log_prob');
    const p = b.exp(logp);
    const dx = () => {
      const d = b.mul(b.sub(p, onehot), wdl);
      const g = c.dyOf(1);
      return g ? b.add(d, b.sub(g, b.mul(p, b.reduce('ReduceSum', g, [1], true)))) : d;
    };
    const ell = () => b.neg(b.reduce('ReduceSum', b.mul(onehot, logp), [1], false));
    return [dx, null, () => dWeight(c, onehot, dl, ell(), mean)];
  },
};
