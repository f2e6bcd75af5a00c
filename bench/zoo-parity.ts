/**
 * Graft's gradients on torchvision's model zoo (and the two text models in ../shared), against PyTorch.
 *
 *   npx tsx bench/zoo-parity.ts [--models a,b,…] [--reexport] [--no-export] [--cache DIR] [--doc FILE]
 *                               [--fd-params N] [--fd-samples N] [--text-models DIR] [--no-text]
 *
 * 1. bench/zoo_export.py (run with /usr/bin/python3, which has torch/torchvision/onnx) exports each model to
 *    ONNX and writes a feed (x, R, labels) and PyTorch's gradients of both losses, in float32 and float64,
 *    keyed by ONNX initializer name; skipped when the cache already holds them (--reexport forces it).
 * 2. For each model: `graft check --json` (operators, gradient-rule status, finite-difference check of
 *    sampled parameters) and `graft grad` for each loss, run as the CLI a user would run.
 * 3. Each parameter's gradient is compared with PyTorch's: max|a − b| / max|b| over the tensor (and the
 *    L2 ratio ‖a − b‖ / ‖b‖), against float32 PyTorch and against float64 PyTorch; PyTorch float32 against
 *    float64 gives the float32 noise floor of the same computation.
 * 4. docs/zoo-parity.md gets the table and the method; the cache gets results.json with every number.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../src/formats/safetensors.js';
import type { Tensor } from '../src/graph/tensor.js';
import { FLOAT32_ONLY } from '../src/graph/rewrites.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PY = '/usr/bin/python3';
const LOSSES = { 'weighted-sum': 'ws', 'cross-entropy': 'ce' } as const;
type Loss = keyof typeof LOSSES;
/** A parameter whose gradient differs from float64 PyTorch by more than this (max-norm relative) is reported. */
const TOL = 1e-3;

// ---------------------------------------------------------------------------------------------- arguments
function parseArgs(argv: string[]) {
  const o = {
    models: undefined as string[] | undefined,
    reexport: false,
    export: true,
    text: true,
    cache: join(ROOT, '.graft-cache/zoo'),
    doc: join(ROOT, 'docs/zoo-parity.md'),
    fdParams: 4,
    fdSamples: 6,
    textModels: resolve(ROOT, '../shared/models/text'),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--models') o.models = val().split(',').filter(Boolean);
    else if (a === '--reexport') o.reexport = true;
    else if (a === '--no-export') o.export = false;
    else if (a === '--no-text') o.text = false;
    else if (a === '--cache') o.cache = resolve(val());
    else if (a === '--doc') o.doc = resolve(val());
    else if (a === '--fd-params') o.fdParams = Number(val());
    else if (a === '--fd-samples') o.fdSamples = Number(val());
    else if (a === '--text-models') o.textModels = resolve(val());
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------- types
interface ModelInfo {
  name: string;
  onnx: string;
  opset?: number;
  input: number[];
  output: number[];
  kind?: 'zoo' | 'text';
  feed?: string;
  grad_losses?: Loss[];
  torch_parameters: number;
  torch_parameters_not_in_onnx: string[];
  mapping: Record<string, { torch: string; how: string; transform: string }>;
  unmatched_float_initializers: { name: string; shape: number[] }[];
  redrawn_constants?: string[];
  losses: Record<string, number>;
  slice_inputs_folded?: number | null;
  loss_scale?: Record<string, number>;
  note?: string;
  seconds: Record<string, number>;
}

interface CheckJson {
  ops: { op: string; count: number; status: string }[];
  missing: string[];
  parameters: number;
  parameterValues: number;
  precision?: string;
  gradcheck?: { worst: number; entries: { name: string; checked: number; maxRelError: number; maxAbsGrad: number }[] };
}

interface Cmp {
  maxRel: number;
  l2Rel: number;
  maxAbsRef: number;
  maxAbsDiff: number;
  /** dim-0 rows (output channels) with an element off by more than TOL·max|b|, of `channels` */
  badChannels: number;
  channels: number;
  /** the three rows with the largest difference: [row, max|a − b| / max|b| in that row] */
  top: [number, number][];
}
interface ParamRow {
  name: string;
  vs32: Cmp;
  vs64?: Cmp;
  floor?: Cmp;
}
interface LossResult {
  loss: Loss;
  seconds: number;
  error?: string;
  graftLoss?: number;
  torchLoss?: number;
  torch64Loss?: number;
  compared: number;
  worst32?: { value: number; param: string };
  worst64?: { value: number; param: string };
  worstL2_64?: { value: number; param: string };
  floor?: { value: number; param: string };
  over: ParamRow[];
  /** Parameters whose true (float64) gradient is zero up to 1e-6 of the model's largest: max|Graft| / that largest. */
  zeroGrad: { name: string; graftOverScale: number; torch32OverScale: number }[];
  missingInGraft: string[];
  notInReference: string[];
  verdict: Verdict;
}
/** zoo_export.py --confirm-flips: the decisions flipped, and per loss the worst difference left (see confirm_flips there). */
interface FlipCheck {
  flips: { site: string; channel: number; position?: number[]; kink?: number; distance_over_scale?: number }[];
  losses: Record<string, { worst: number; param: string }>;
  tried: number;
  seconds: number;
  error?: string;
}
type Verdict = 'match' | 'float32 ReLU flip' | 'within float32 noise' | 'MISMATCH' | 'FAILED';
interface ModelResult {
  name: string;
  kind: 'zoo' | 'text';
  file: string;
  info?: ModelInfo;
  check?: CheckJson;
  checkSeconds?: number;
  checkError?: string;
  losses: LossResult[];
  flipCheck?: FlipCheck;
  note?: string;
}

// ---------------------------------------------------------------------------------------------- helpers
function run(
  cmd: string,
  args: string[],
  inherit = false,
): { rc: number; stdout: string; stderr: string; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    stdio: inherit ? 'inherit' : 'pipe',
  });
  return {
    rc: r.status ?? -1,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    seconds: (performance.now() - t0) / 1000,
  };
}

const graft = (args: string[]) => run(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args]);
const lastLine = (s: string) =>
  s
    .trim()
    .split('\n')
    .filter((l) => !/^\s*at /.test(l))
    .slice(-3)
    .join(' | ');

function floats(t: Tensor): Float32Array | Float64Array {
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) return t.data;
  throw new Error(`expected a float tensor, got ${t.dtype}`);
}

/** a against reference b: max-norm and L2 relative differences; channels = dim 0 rows with error > TOL·max|b|. */
function compare(a: Tensor, b: Tensor): Cmp {
  const x = floats(a),
    y = floats(b);
  if (x.length !== y.length) throw new Error(`size ${x.length} vs ${y.length}`);
  let maxD = 0,
    maxB = 0,
    d2 = 0,
    b2 = 0;
  for (let i = 0; i < y.length; i++) {
    const d = Math.abs(x[i]! - y[i]!);
    if (d > maxD || Number.isNaN(d)) maxD = Number.isNaN(d) ? Infinity : d;
    const m = Math.abs(y[i]!);
    if (m > maxB) maxB = m;
    d2 += d * d;
    b2 += y[i]! * y[i]!;
  }
  const channels = b.dims.length > 1 ? b.dims[0]! : 1;
  const per = y.length / channels;
  let badChannels = 0;
  const perRow: [number, number][] = [];
  for (let c = 0; c < channels; c++) {
    let m = 0;
    for (let i = c * per; i < (c + 1) * per; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
    if (m > TOL * maxB) badChannels++;
    perRow.push([c, maxB > 0 ? m / maxB : m]);
  }
  const top = perRow.sort((p, q) => q[1] - p[1]).slice(0, 3);
  // an all-zero reference: report the absolute difference
  return {
    maxRel: maxB > 0 ? maxD / maxB : maxD,
    l2Rel: b2 > 0 ? Math.sqrt(d2 / b2) : Math.sqrt(d2),
    maxAbsRef: maxB,
    maxAbsDiff: maxD,
    badChannels,
    channels,
    top,
  };
}

function worstOf(
  rows: ParamRow[],
  f: (r: ParamRow) => number | undefined,
): { value: number; param: string } | undefined {
  let best: { value: number; param: string } | undefined;
  for (const r of rows) {
    const v = f(r);
    if (v !== undefined && (!best || v > best.value)) best = { value: v, param: r.name };
  }
  return best;
}

const fmt = (v: number | undefined) => (v === undefined ? '—' : v === 0 ? '0' : v.toExponential(1));
const rel = (p: string) => relative(ROOT, p) || '.';

// ---------------------------------------------------------------------------------------------- steps
function ensureExport(o: ReturnType<typeof parseArgs>): string[] {
  const manifestPath = join(o.cache, 'manifest.json');
  const have: string[] = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, 'utf8')).models : [];
  const want = o.models;
  const missing = want ? want.filter((m) => !have.includes(m) && !m.startsWith('text:')) : have.length ? [] : ['*'];
  if (o.export && (o.reexport || missing.length)) {
    const zooWanted = want?.filter((m) => !m.startsWith('text:'));
    const args = [join(ROOT, 'bench/zoo_export.py'), '--out', o.cache];
    if (zooWanted?.length) args.push('--models', (o.reexport ? zooWanted : missing).join(','));
    if (o.text && !want) args.push('--text-models', o.textModels);
    console.log(`$ ${PY} ${args.map(rel).join(' ')}`);
    const r = run(PY, args, true);
    if (r.rc !== 0) throw new Error(`zoo_export.py failed (exit ${r.rc})`);
  }
  const models: string[] = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, 'utf8')).models : [];
  return want ? want.filter((m) => models.includes(m) || m.startsWith('text:')) : models;
}

function checkModel(file: string, o: ReturnType<typeof parseArgs>, res: ModelResult): void {
  const r = graft([
    'check',
    file,
    '--json',
    '--params',
    String(o.fdParams),
    '--samples',
    String(o.fdSamples),
    '--seed',
    '1',
  ]);
  res.checkSeconds = r.seconds;
  try {
    res.check = JSON.parse(r.stdout) as CheckJson;
    if (r.rc !== 0 && !res.check.missing.length) res.checkError = lastLine(r.stderr);
  } catch {
    res.checkError = lastLine(r.stderr || r.stdout) || `exit ${r.rc}`;
    // still list the operators: the same check without the finite-difference part
    const r0 = graft(['check', file, '--json', '--params', '0']);
    try {
      res.check = JSON.parse(r0.stdout) as CheckJson;
    } catch {
      /* nothing more to say */
    }
  }
}

function gradModel(name: string, file: string, info: ModelInfo, cache: string, loss: Loss): LossResult {
  const key = LOSSES[loss];
  const out = join(cache, `${name}.graft-${key}.safetensors`);
  const feed = info.feed ? resolve(cache, info.feed) : join(cache, `${name}.feed.safetensors`);
  const r = graft(['grad', file, '--feed', feed, '--loss', loss, '--out', out]);
  const res: LossResult = {
    loss,
    seconds: r.seconds,
    compared: 0,
    over: [],
    zeroGrad: [],
    missingInGraft: [],
    notInReference: [],
    verdict: 'FAILED',
  };
  if (r.rc !== 0) {
    res.error = lastLine(r.stderr || r.stdout);
    return res;
  }
  const got = readSafetensors(out);
  const ref32 = readSafetensors(join(cache, `${name}.ref-${key}.safetensors`));
  const p64 = join(cache, `${name}.ref64-${key}.safetensors`);
  const ref64 = existsSync(p64) ? readSafetensors(p64) : undefined;
  res.graftLoss = Number(got.metadata['loss']);
  res.torchLoss = Number(ref32.metadata['loss']);
  if (ref64) res.torch64Loss = Number(ref64.metadata['loss']);
  let rows: ParamRow[] = [];
  for (const [p, b] of ref32.tensors) {
    const a = got.tensors.get(p);
    if (!a) {
      res.missingInGraft.push(p);
      continue;
    }
    const b64 = ref64?.tensors.get(p);
    rows.push({ name: p, vs32: compare(a, b), ...(b64 ? { vs64: compare(a, b64), floor: compare(b, b64) } : {}) });
  }
  for (const p of got.tensors.keys()) if (!ref32.tensors.has(p)) res.notInReference.push(p);
  res.compared = rows.length;
  // A gradient that is zero in exact arithmetic (e.g. a key bias before softmax: it shifts every score of a row
  // equally) comes out as rounding noise: a relative difference means nothing there. Those are compared with
  // the model's gradient scale instead and reported apart.
  const scale = Math.max(0, ...rows.map((r) => (r.vs64 ?? r.vs32).maxAbsRef));
  const isZero = (r: ParamRow) => (r.vs64 ?? r.vs32).maxAbsRef <= 1e-6 * scale;
  res.zeroGrad = rows.filter(isZero).map((r) => ({
    name: r.name,
    graftOverScale: (r.vs64 ?? r.vs32).maxAbsDiff / scale,
    torch32OverScale: (r.floor ?? r.vs32).maxAbsDiff / scale,
  }));
  rows = rows.filter((r) => !isZero(r));
  res.worst32 = worstOf(rows, (r) => r.vs32.maxRel);
  res.worst64 = worstOf(rows, (r) => r.vs64?.maxRel);
  res.worstL2_64 = worstOf(rows, (r) => r.vs64?.l2Rel);
  res.floor = worstOf(rows, (r) => r.floor?.maxRel);
  res.over = rows.filter((r) => (r.vs64 ?? r.vs32).maxRel > TOL);
  const worst = res.worst64?.value ?? res.worst32?.value ?? 0;
  // models with kink data get their verdict from the flip check (main); the others compare with PyTorch's own float32 error
  res.verdict = !res.over.length ? 'match' : worst <= 3 * (res.floor?.value ?? 0) ? 'within float32 noise' : 'MISMATCH';
  return res;
}

/** Run zoo_export.py --confirm-flips for a model whose gradients differ from float64 PyTorch by more than TOL. */
function flipCheck(name: string, cache: string, losses: LossResult[]): FlipCheck {
  const kinds = losses.filter((l) => !l.error).map((l) => LOSSES[l.loss]);
  const r = run(PY, [
    join(ROOT, 'bench/zoo_export.py'),
    '--out',
    cache,
    '--confirm-flips',
    name,
    '--kinds',
    kinds.join(','),
  ]);
  try {
    return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<FlipCheck, 'seconds'>), seconds: r.seconds };
  } catch {
    return { flips: [], losses: {}, tried: 0, seconds: r.seconds, error: lastLine(r.stderr || r.stdout) };
  }
}

const verdict = (l: LossResult): Verdict => (l.error ? 'FAILED' : l.verdict);

function writeDoc(
  o: ReturnType<typeof parseArgs>,
  results: ModelResult[],
  meta: Record<string, unknown>,
  seconds: number,
): void {
  const L: string[] = [];
  const manifest = existsSync(join(o.cache, 'manifest.json'))
    ? JSON.parse(readFileSync(join(o.cache, 'manifest.json'), 'utf8'))
    : {};
  L.push('# Gradient parity: Graft vs PyTorch on the model zoo', '');
  L.push(
    `Generated by \`npx tsx bench/zoo-parity.ts\` (with \`bench/zoo_export.py\`) on ${new Date().toISOString().slice(0, 10)}, ` +
      `in ${Math.round(seconds)} s on ${meta['cpus']} CPU cores. PyTorch ${manifest.torch ?? '?'}, torchvision ${manifest.torchvision ?? '?'}, ` +
      `onnx ${manifest.onnx ?? '?'} (Debian packages, /usr/bin/python3); onnxruntime-node ${meta['ort']}.`,
    '',
  );
  L.push('## Results', '');
  L.push(
    'Relative gradient difference = max over the parameter tensor of |Graft − PyTorch|, divided by max|PyTorch|, worst over the ' +
      "model's parameters. Each cell: **vs float64 PyTorch** / vs float32 PyTorch (float32 PyTorch vs float64 PyTorch, the noise floor of a float32 computation). " +
      `Finite differences: \`graft check\` on ${o.fdParams} parameters spread over the depth, ${o.fdSamples} elements each, worst relative error (precision it ran at).`,
    '',
  );
  L.push(
    '| model | input | operators | missing rules | finite differences | weighted-sum | cross-entropy | parameters compared |',
  );
  L.push('|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const c = r.check;
    const ops = c ? c.ops.map((x) => x.op).length + ` (${c.ops.reduce((s, x) => s + x.count, 0)} nodes)` : '—';
    const missing = c ? (c.missing.length ? `**${c.missing.join(', ')}**` : 'none') : '—';
    const fd = r.checkError ? `error¹` : c?.gradcheck ? `${fmt(c.gradcheck.worst)} (${c.precision ?? 'float32'})` : '—';
    const cell = (loss: Loss) => {
      const l = r.losses.find((x) => x.loss === loss);
      if (!l) return 'n/a';
      if (l.error) return '**failed**¹';
      const v = verdict(l);
      const main = l.worst64
        ? `**${fmt(l.worst64.value)}** / ${fmt(l.worst32?.value)} (${fmt(l.floor?.value)})`
        : fmt(l.worst32?.value);
      return v === 'match' ? main : `${main} ${v === 'MISMATCH' ? '**MISMATCH**' : '²'}`;
    };
    const compared = r.losses.length ? Math.max(...r.losses.map((l) => l.compared)) : 0;
    const total = r.info ? Object.keys(r.info.mapping).length : undefined;
    const input = r.info ? `${r.info.input.join('×')}` : '—';
    L.push(
      `| ${r.name} | ${input} | ${ops} | ${missing} | ${fd} | ${cell('weighted-sum')} | ${cell('cross-entropy')} | ${r.losses.length ? `${compared}${total !== undefined ? ` of ${total}` : ''}` : '—'} |`,
    );
  }
  L.push('');
  const notes = results.flatMap((r) => {
    const n: string[] = [];
    if (r.info?.slice_inputs_folded)
      n.push(
        `${r.name}: the same export as vit_tiny, with the ${r.info.slice_inputs_folded} Slice inputs (starts/ends) that torch computes from Shape replaced by constants (\`fold_slice_bounds\` in zoo_export.py): Slice gradients with constant bounds, against vit_tiny's run-time bounds (and the way to check the rest of ViT should the run-time form fail).`,
      );
    if (r.info?.opset === 14)
      n.push(`${r.name}: opset 14, where LayerNormalization is decomposed into ReduceMean/Sub/Pow/Sqrt/Div.`);
    if (r.kind === 'text')
      n.push(
        `${r.name}: the ONNX file as shipped; ${r.info?.note ?? 'no PyTorch reference'}; input_ids [2, 16] with the second sequence right-padded by 5; weighted-sum over the first output (${r.info?.output.join('×')}); cross-entropy n/a: the output is [batch, sequence, classes] and graft's cross-entropy takes [batch, classes].`,
      );
    return n;
  });
  if (notes.length) L.push('Notes:', '', ...notes.map((n) => `- ${n}`), '');
  L.push(
    '¹ see "Failures" below. ² above 1e-3 because float32 rounding flipped a ReLU decision: with the flipped decisions found and flipped in the float64 reference, Graft agrees within 1e-3 (see "Differences above 1e-3").',
    '',
  );

  // failures
  const failures = results.flatMap((r) => [
    ...(r.checkError ? [`- **${r.name}**, \`graft check\`: ${r.checkError}`] : []),
    ...r.losses.filter((l) => l.error).map((l) => `- **${r.name}**, \`graft grad --loss ${l.loss}\`: ${l.error}`),
  ]);
  if (failures.length) L.push('## Failures', '', ...failures, '');
  if (failures.some((f) => /Slice starts input .* must be a constant/.test(f)))
    L.push(
      'Minimal reproduction of the Slice failure: `nn.Linear(4, 12)` followed by `.chunk(3, -1)[1]` on a [2, 5, 4] input, ' +
        'exported with `torch.onnx.export(..., opset_version=17)` (with or without constant folding). torch computes the chunk bounds ' +
        "at run time, Shape → Gather(-1) → Div(3) → Mul(k), and Graft's Slice rule (`needConst` in src/autodiff/rules/shape.ts) " +
        'requires constant starts/ends. `nn.MultiheadAttention` splits its packed in-projection this way, so every torchvision ' +
        'ViT (and any model with `nn.MultiheadAttention`) fails. The shapes are static, so either folding Shape arithmetic on ' +
        'statically known dims into constants before differentiating, or a Slice gradient that builds its Pad amounts at run time ' +
        '(pads = [starts, dim − ends], for steps of 1), would fix it; `vit_tiny_sliceconst` shows the rest of ViT is right once the ' +
        'bounds are constants.',
      '',
    );

  // differences
  const diffs = results.flatMap((r) => r.losses.filter((l) => l.over.length).map((l) => ({ r, l })));
  if (diffs.length) {
    L.push('## Differences above 1e-3', '');
    for (const { r, l } of diffs) {
      const fc = r.flipCheck;
      const left = fc?.losses[LOSSES[l.loss]];
      L.push(
        `**${r.name}**, ${l.loss} — **${verdict(l)}**: ${l.over.length} of ${l.compared} parameters above ${TOL} against float64 PyTorch; ` +
          `PyTorch float32 itself is ${fmt(l.floor?.value)} from float64 at worst (${l.floor?.param}).` +
          (fc?.error ? ` Flip check failed: ${fc.error}.` : '') +
          (fc && !fc.error
            ? ` ${fc.flips.length ? `Flipping ${fc.flips.length === 1 ? 'this decision' : `these ${fc.flips.length} decisions`} in the float64 reference: ${fc.flips.map((f) => `\`${f.site}\` channel ${f.channel} at [${f.position?.join(', ')}] (${fmt(f.distance_over_scale)} × the site's largest value from the kink at ${f.kink})`).join('; ')}, ` : 'No flipped decision found; '}` +
              `Graft's worst difference from float64 PyTorch ${fc.flips.length ? 'drops to' : 'stays'} ${fmt(left?.worst)} (${left?.param}).`
            : ''),
        '',
      );
      L.push(
        '| parameter | vs float64: max-norm | L2 | output channels off | largest (channel: difference) | vs float32 | PyTorch f32 vs f64 |',
        '|---|---|---|---|---|---|---|',
      );
      for (const p of l.over.slice(-40)) {
        const c = p.vs64 ?? p.vs32;
        const top = c.channels > 1 ? c.top.map(([k, e]) => `${k}: ${fmt(e)}`).join(', ') : '';
        L.push(
          `| ${p.name} | ${fmt(p.vs64?.maxRel)} | ${fmt(p.vs64?.l2Rel)} | ${c.badChannels} of ${c.channels} | ${top} | ${fmt(p.vs32.maxRel)} | ${fmt(p.floor?.maxRel)} |`,
        );
      }
      if (l.over.length > 40) L.push(`| (${l.over.length - 40} more, further upstream, in results.json) | | | | | | |`);
      L.push('');
    }
  }

  const zeros = results.flatMap((r) => r.losses.filter((l) => l.zeroGrad.length).map((l) => ({ r, l })));
  if (zeros.length) {
    L.push(
      '## Parameters whose exact gradient is zero',
      '',
      "Their float64 PyTorch gradient is below 1e-6 of the model's largest parameter gradient (it is zero in exact arithmetic), so a " +
        "relative difference is meaningless; they are left out of the worst-case column and compared with the model's gradient scale instead.",
      '',
    );
    L.push(
      '| model | loss | parameters | max abs Graft / scale | max abs PyTorch float32 / scale |',
      '|---|---|---|---|---|',
    );
    for (const { r, l } of zeros)
      L.push(
        `| ${r.name} | ${l.loss} | ${l.zeroGrad
          .slice(0, 6)
          .map((z) => z.name)
          .join(
            ', ',
          )}${l.zeroGrad.length > 6 ? `, … (${l.zeroGrad.length} in all)` : ''} | ${fmt(Math.max(...l.zeroGrad.map((z) => z.graftOverScale)))} | ${fmt(Math.max(...l.zeroGrad.map((z) => z.torch32OverScale)))} |`,
      );
    L.push('');
  }

  // losses
  L.push(
    '## Loss values (forward parity)',
    '',
    'The weighted-sum loss is a sum of many terms of both signs, so its float32 value carries the rounding of the whole sum: ' +
      'the last columns divide |loss − float64 loss| by Σ|y·R| (weighted-sum) or |loss| (cross-entropy).',
    '',
    '| model | loss | Graft | PyTorch float32 | PyTorch float64 | Graft error | PyTorch f32 error |',
    '|---|---|---|---|---|---|---|',
  );
  for (const r of results)
    for (const l of r.losses)
      if (!l.error) {
        const scale = r.info?.loss_scale?.[l.loss];
        const e = (v?: number) =>
          scale && v !== undefined && l.torch64Loss !== undefined ? fmt(Math.abs(v - l.torch64Loss) / scale) : '—';
        L.push(
          `| ${r.name} | ${l.loss} | ${l.graftLoss?.toPrecision(8)} | ${l.torchLoss?.toPrecision(8)} | ${l.torch64Loss?.toPrecision(8) ?? '—'} | ${e(l.graftLoss)} | ${e(l.torchLoss)} |`,
        );
      }
  L.push('');

  // operators
  L.push(
    '## Operators',
    '',
    'Operator types of each exported graph, with node counts; all have a gradient rule unless marked.',
    '',
  );
  for (const r of results) {
    if (!r.check) continue;
    const ops = r.check.ops.map(
      (x) =>
        `${x.op} ${x.count}${x.status === 'MISSING' ? ' **(MISSING)**' : x.status === 'no gradient needed' ? ' (no gradient)' : ''}`,
    );
    L.push(
      `- **${r.name}** (${r.check.parameters} parameter tensors, ${r.check.parameterValues.toLocaleString('en')} values): ${ops.join(', ')}`,
    );
  }
  L.push('');
  L.push(...methodSection(o, results, meta));
  mkdirSync(dirname(o.doc), { recursive: true });
  writeFileSync(o.doc, L.join('\n'));
}

function methodSection(
  o: ReturnType<typeof parseArgs>,
  results: ModelResult[],
  meta: Record<string, unknown>,
): string[] {
  const L: string[] = ['## Method', ''];
  const bn = existsSync(join(o.cache, 'bn-folding.json'))
    ? (JSON.parse(readFileSync(join(o.cache, 'bn-folding.json'), 'utf8')) as Record<string, unknown>[])
    : [];
  L.push(
    '**Models.** torchvision models built with `weights=None` from `torch.manual_seed(0)` (no network), batch 2, in eval mode. ' +
      'Convnets take 64×64 inputs; inception_v3 80×80 (it needs ≥ 75); VGG 224×224, because its `AdaptiveAvgPool2d((7, 7))` only ' +
      'exports when the feature map (input/32) is a multiple of 7. `vit_tiny` is `torchvision.models.VisionTransformer(image_size=32, ' +
      'patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)`: the operator structure of vit_b_16 (patch Conv, class ' +
      'token, position embedding, `nn.MultiheadAttention` blocks with LayerNorm and exact GELU, linear head) at a fraction of the size. ' +
      'Every float parameter or buffer that torchvision initialises to a constant (BatchNorm/LayerNorm weights and biases, running means ' +
      "and variances, zero biases, ViT's class token and zero head) is re-drawn at random (ones → U(0.75, 1.25), zeros → N(0, 0.05²)): " +
      "torch's exporter otherwise merges equal-valued initializers into one (BN weights and running variances of one width become a single " +
      'initializer behind Identity nodes), and constant values hide bugs (BN at mean 0 / var 1 / scale 1 is nearly the identity; a zero ' +
      'ViT head makes every other weighted-sum gradient zero).',
    '',
  );
  L.push(
    '**Export.** `torch.onnx.export(model, x, opset_version=17, training=TrainingMode.PRESERVE, do_constant_folding=False)` on the ' +
      'eval-mode model (`vit_tiny_opset14`: opset 14, where LayerNormalization is decomposed). With the default `training=TrainingMode.EVAL` ' +
      'torch 1.13 runs an eval "peephole" pass that fuses every Conv + BatchNormalization into one Conv with new, renamed weights ' +
      '(`onnx::Conv_NNN`) whatever `do_constant_folding` says; PRESERVE on a model in eval mode skips that pass, keeps BatchNormalization ' +
      '(running statistics, `training_mode=0`) and every PyTorch parameter name. Measured on resnet18 (20 BatchNorm2d):',
    '',
  );
  if (bn.length) {
    L.push('| export settings | BatchNormalization nodes | Conv | initializers | renamed |', '|---|---|---|---|---|');
    for (const b of bn)
      L.push(
        `| ${b['settings']} | ${b['BatchNormalization']} | ${b['Conv']} | ${b['initializers']} | ${b['renamed initializers']} |`,
      );
    L.push('');
  }
  L.push(
    '**Parameter mapping.** ONNX initializers are matched to PyTorch parameters by name (all of them, with these export settings); ' +
      'any other float initializer would be matched by value (bit-identical to one parameter, or to its transpose) and reported if ' +
      "unmatched. PyTorch's gradients are written keyed by the ONNX name (transposed where the initializer is).",
    '',
  );
  L.push(
    '**References.** weighted-sum: `(model(x) * R).sum().backward()`; cross-entropy: `F.cross_entropy(model(x), labels).backward()` ' +
      '(mean over the batch), in eval mode (BatchNorm uses running statistics, dropout off), once in float32 and once on a float64 copy ' +
      '(same values, converted exactly). Graft: `graft grad MODEL --feed NAME.feed.safetensors --loss … --out …`, then per parameter ' +
      'max|Graft − PyTorch| / max|PyTorch| (also ‖Graft − PyTorch‖₂ / ‖PyTorch‖₂). The float64 reference is the truth to compare with; ' +
      'PyTorch float32 vs float64 shows how far a correct float32 implementation lands from it on the same model.',
    '',
  );
  L.push(
    '**Why a difference above 1e-3 can be correct, and how that is proved.** ReLU, ReLU6, hard-swish and max-pool gradients are ' +
      'discontinuous: when a pre-activation lies within float32 rounding (~1e-7 of its scale) of a kink, two correct float32 ' +
      "implementations can take different branches; that unit's gradient then differs by O(1), first in one output channel of one " +
      "layer, then, diluted, in every layer below it. PyTorch's own float32 result does it too (its distance from float64 is in " +
      'parentheses in each cell). zoo_export.py records, from the float64 forward, every channel holding a value within 1e-6 × the ' +
      'largest of a kink, at every Conv/Linear/BatchNorm output and activation-module input (`NAME.kinks.json`). When a model has ' +
      'differences above 1e-3, `zoo_export.py --confirm-flips NAME` looks, from the output backwards, for the first parameter whose ' +
      'difference sits in one or two output channels, flips the decision at the near-kink element of such a channel in the float64 ' +
      "reference (v → 2k − v: the value moves by ~1e-7 of its scale, the branch changes), keeps the flip if that parameter's " +
      'difference disappears, and repeats. The verdict is "float32 ReLU flip" only when, with the flips kept, Graft agrees with ' +
      'float64 PyTorch within 1e-3 on every parameter for every loss; otherwise MISMATCH. (ViT and the text models have no such ' +
      "data: there a difference counts as noise when within 3× PyTorch float32's own distance from float64.)",
    '',
  );
  L.push(
    `**Finite differences.** \`graft check --json --params ${o.fdParams} --samples ${o.fdSamples} --seed 1\`: central differences in float64 where onnxruntime ` +
      `has double kernels. Graft's float64 mode runs ${[...FLOAT32_ONLY].join(', ')} in float32 between Casts (onnxruntime has no ` +
      'double kernels for them), so for models with those operators the "float64" check carries float32 rounding, divided by a small ' +
      'step: errors of 1e-3 to 1e-1 there do not by themselves indicate a wrong rule; the PyTorch comparison is the decisive test.',
    '',
  );
  const text = results.filter((r) => r.kind === 'text');
  if (text.length) {
    L.push(
      `**Text models** (${text.map((r) => r.name).join(', ')}): the ONNX files in ${rel(o.textModels)}. ` +
        String(meta['textNote'] ?? ''),
      '',
    );
  }
  L.push(
    'Re-run: `npx tsx bench/zoo-parity.ts` (exports into `.graft-cache/zoo/` when missing; `--reexport` to redo, `--models a,b` for a subset).',
    '',
  );
  return L;
}

// ---------------------------------------------------------------------------------------------- main
async function main() {
  const o = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  mkdirSync(o.cache, { recursive: true });
  const names = ensureExport(o);
  const results: ModelResult[] = [];
  for (const name of names) {
    const infoPath = join(o.cache, `${name}.json`);
    const info = existsSync(infoPath) ? (JSON.parse(readFileSync(infoPath, 'utf8')) as ModelInfo) : undefined;
    const file = info ? (isAbsolute(info.onnx) ? info.onnx : join(o.cache, info.onnx)) : '';
    const res: ModelResult = {
      name,
      kind: info?.kind ?? 'zoo',
      file,
      losses: [],
      ...(info ? { info } : {}),
      ...(info?.note ? { note: info.note } : {}),
    };
    if (!info || !existsSync(file)) {
      res.checkError = `no export for ${name}`;
      results.push(res);
      continue;
    }
    const t = performance.now();
    checkModel(file, o, res);
    const hasRefs = existsSync(join(o.cache, `${name}.ref-ws.safetensors`));
    if (hasRefs)
      for (const loss of info.grad_losses ?? (Object.keys(LOSSES) as Loss[]))
        res.losses.push(gradModel(name, file, info, o.cache, loss));
    // Differences above TOL on a model with kink data: find the flipped decisions and prove them (float64
    // PyTorch with those decisions flipped must then agree with Graft within TOL).
    if (res.losses.some((l) => l.over.length) && existsSync(join(o.cache, `${name}.kinks.json`))) {
      const fc = (res.flipCheck = flipCheck(name, o.cache, res.losses));
      for (const l of res.losses) {
        if (l.error || !l.over.length) continue;
        const left = fc.losses[LOSSES[l.loss]];
        l.verdict = left && left.worst <= TOL ? 'float32 ReLU flip' : 'MISMATCH';
      }
    }
    results.push(res);
    const summary = res.losses
      .map(
        (l) =>
          `${l.loss} ${l.error ? 'FAILED' : `${fmt(l.worst64?.value)} (f32 ${fmt(l.worst32?.value)}, floor ${fmt(l.floor?.value)}) ${verdict(l)}`}`,
      )
      .join('; ');
    console.log(
      `${name}: ${res.check ? `${res.check.ops.length} op types, missing [${res.check.missing.join(', ')}], FD ${fmt(res.check.gradcheck?.worst)}` : `check failed: ${res.checkError}`}` +
        `${res.checkError && res.check ? ` (check error: ${res.checkError})` : ''}; ${summary || 'no PyTorch reference'} — ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    for (const l of res.losses) if (l.error) console.log(`  ${l.loss}: ${l.error}`);
  }
  const textNotePath = join(o.cache, 'text-note.txt');
  const meta = {
    cpus: (await import('node:os')).cpus().length,
    ort: JSON.parse(readFileSync(join(ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')).version,
    textNote: existsSync(textNotePath) ? readFileSync(textNotePath, 'utf8').trim() : '',
  };
  const seconds = (performance.now() - t0) / 1000;
  writeFileSync(
    join(o.cache, 'results.json'),
    JSON.stringify({ meta, seconds, results: results.map((r) => ({ ...r, info: undefined })) }, null, 1),
  );
  writeDoc(o, results, meta, seconds);
  console.log(`wrote ${rel(o.doc)} and ${rel(join(o.cache, 'results.json'))} (${seconds.toFixed(0)} s)`);
}

await main();
