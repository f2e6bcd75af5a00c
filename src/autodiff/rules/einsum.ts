/**
 * Einsum: the gradient of each operand is another Einsum, of the output gradient with the other
 * operands, onto the operand's subscripts; letters summed within the operand alone come back by Expand.
 * Ellipses are expanded to letters; repeated letters within one operand (diagonals, traces) are refused.
 */
import { A } from '../../graph/builder.js';
import type { GradCtx, GradRule } from '../rule.js';

/** The equation with '...' replaced by letters (ranks from the operands) and its output made explicit. */
export function parseEinsum(eq: string, ranks: number[]): { ins: string[]; out: string } {
  const e = eq.replace(/\s+/g, '');
  const [lhs, rhs] = e.includes('->') ? (e.split('->') as [string, string]) : [e, null];
  const parts = lhs.split(',');
  if (parts.length !== ranks.length)
    throw new Error(`Einsum '${eq}' names ${parts.length} operands, the node has ${ranks.length}`);
  const used = new Set(e.replace(/[^A-Za-z]/g, ''));
  const free = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'].filter((l) => !used.has(l));
  let ell = '';
  const ins = parts.map((p, k) => {
    if (!p.includes('...')) return p;
    const n = ranks[k]! - (p.length - 3);
    if (n > ell.length) ell = ell + free.slice(ell.length, n).join('');
    return p.replace('...', ell.slice(ell.length - n));
  });
  let out: string;
  if (rhs !== null) out = rhs.replace('...', ell);
  else {
    const count = new Map<string, number>();
    for (const l of ins.join('')) count.set(l, (count.get(l) ?? 0) + 1);
    out =
      ell +
      [...count]
        .filter(([l, n]) => n === 1 && !ell.includes(l))
        .map(([l]) => l)
        .sort()
        .join('');
  }
  return { ins, out };
}

export const einsum: Record<string, GradRule> = {
  Einsum: (c) => {
    const b = c.b;
    const eq = c.str('equation', '');
    const xs = c.node.inputs;
    const { ins, out } = parseEinsum(
      eq,
      xs.map((x) => c.rank(x)),
    );
    const dy = c.dy;
    return xs.map((x, k) => () => {
      const sub = ins[k]!;
      if (new Set(sub).size !== sub.length)
        throw new Error(`Einsum '${eq}': operand ${k} repeats a letter (a diagonal), which has no rule`);
      const others = ins.filter((_, j) => j !== k);
      const avail = new Set(out + others.join(''));
      const kept = [...sub].filter((l) => avail.has(l)).join('');
      const dims = c.shape(x).dims;
      const g = b.op('Einsum', [dy, ...xs.filter((_, j) => j !== k)], {
        equation: A.s(`${[out, ...others].join(',')}->${kept}`),
      });
      if (kept === sub) return reduceBroadcast(c, g, x, sub, dims);
      // letters summed inside this operand only: the gradient is constant along them
      const missing = [...sub].map((l, i) => (avail.has(l) ? -1 : i)).filter((i) => i >= 0);
      return b.op('Expand', [b.unsqueeze(g, missing), b.shapeOf(x)]);
    });
  },
};

/** Where the operand has size 1 on a letter that is larger elsewhere (broadcast), the gradient Einsum gave the larger size: sum it back. */
function reduceBroadcast(c: GradCtx, g: string, x: string, sub: string, dims: (number | null)[]): string {
  const ones = [...sub].map((_, i) => (dims[i] === 1 ? i : -1)).filter((i) => i >= 0);
  if (ones.length === 0) return g;
  return c.b.reduce('ReduceSum', g, ones, true);
}
