/**
 * Resize: linear in x for every mode (nearest, linear, cubic, with or without antialias)
 * and separable by axis, so y = x ×_a W_a over the resized axes a, and dx = dy ×_a W_aᵀ. Each W_a is
 * read off onnxruntime's own Resize, run on an identity matrix laid along axis a (and a second axis kept
 * at scale 1): no coordinate-transformation mode or rounding rule is re-implemented here.
 */
import type { Attr } from '../../graph/graph.js';
import type { GradCtx, GradRule } from '../rule.js';
import { constOf, normAxis, range } from './helpers.js';

function resizeGrad(c: GradCtx): string[] {
  const b = c.b;
  const [x, y] = [c.x[0], c.y[0]];
  const xd = c.shape(x).dims;
  const yd = c.shape(y).dims;
  const r = xd.length;
  if (xd.some((d) => d === null) || yd.some((d) => d === null))
    throw new Error(`${c.node.opType} gradient needs static input and output shapes`);
  const [xn, yn] = [xd as number[], yd as number[]];
  if (c.str('coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize')
    throw new Error(`${c.node.opType} with coordinate_transformation_mode tf_crop_and_resize has no rule`);
  let scales = constOf(c, c.x[b.opset < 11 ? 1 : 2]);
  let sizes = b.opset >= 11 ? constOf(c, c.x[3]) : undefined;
  if (scales?.length === 0) scales = undefined;
  if (sizes?.length === 0) sizes = undefined;
  if (!scales && !sizes) throw new Error(`${c.node.opType} scales or sizes must be constants to differentiate`);
  if (sizes && c.str('keep_aspect_ratio_policy', 'stretch') !== 'stretch')
    throw new Error(`${c.node.opType} with keep_aspect_ratio_policy other than stretch has no rule`);
  // full-rank scales (1 on axes not named by the axes attribute)
  const axesAttr = c.ints('axes')?.map((a) => normAxis(a, r));
  const full = (v: number[] | undefined) => {
    if (!v) return undefined;
    if (!axesAttr) return v;
    const f = Array<number>(r).fill(1);
    axesAttr.forEach((a, k) => {
      f[a] = v[k]!;
    });
    return f;
  };
  const sc = full(scales);
  const resized = range(r).filter((a) => xn[a] !== yn[a] || (sc && sc[a] !== 1));
  const attrs: Record<string, Attr> = { ...c.node.attrs };
  delete attrs['axes'];
  let g = c.dy;
  for (const a of resized) {
    const h = range(r).find((k) => k !== a && !resized.includes(k));
    if (h === undefined) throw new Error(`${c.node.opType} resizes every axis; its gradient needs one axis at scale 1`);
    const [n, m] = [xn[a]!, yn[a]!];
    const pd = Array<number>(r).fill(1);
    pd[h] = n;
    pd[a] = n;
    const eye = new Float32Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const P = b.constant({ dtype: 'float32', dims: pd, data: eye }, 'resize_eye');
    let inputs: string[];
    if (b.opset < 11) {
      const s = Array<number>(r).fill(1);
      s[a] = sc![a]!;
      inputs = [P, b.f32(s)];
    } else if (sc) {
      const s = Array<number>(r).fill(1);
      s[a] = sc[a]!;
      inputs = [P, '', b.f32(s)];
    } else {
      const s = Array<number>(r).fill(1);
      s[h] = n;
      s[a] = m;
      inputs = [P, '', '', b.i64(s)];
    }
    const Wa = b.op('Resize', inputs, attrs); // [.., n at h, .., m at a, ..]
    // W [m, n]: W[o, i] = weight of input i in output o
    const W = h < a ? b.transpose(b.reshape(Wa, [n, m]), [1, 0]) : b.reshape(Wa, [m, n]);
    // contract axis a of g (size m) with W: move a last, MatMul, move back
    const perm = range(r)
      .filter((k) => k !== a)
      .concat([a]);
    const inv = perm.map((_, k) => perm.indexOf(k));
    g = b.transpose(b.op('MatMul', [b.transpose(g, perm), W]), inv);
  }
  return [g];
}

export const resize: Record<string, GradRule> = { Resize: resizeGrad };
