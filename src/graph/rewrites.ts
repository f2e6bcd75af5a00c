/**
 * Whole-graph rewrites needed before training: bring old opsets up to 13 (the oldest Graft's gradient
 * rules target), and free a batch size that an exporter baked into the graph.
 */
import { type Graph, type Node, attrInts, attrFloat } from './graph.js';
import { toNumbers } from './tensor.js';
import { GraftError } from '../util/errors.js';

let counter = 0;
function addConst(g: Graph, base: string, values: number[], dtype: 'int64' | 'float32' = 'int64'): string {
  const name = g.uniqueName(`${base}_${counter++}`);
  g.initializers.set(
    name,
    dtype === 'int64'
      ? { dtype, dims: [values.length], data: BigInt64Array.from(values.map((v) => BigInt(v))) }
      : { dtype, dims: [], data: Float32Array.from(values) },
  );
  return name;
}

/**
 * Rewrite a graph of an opset below 13 to opset 13: attributes that became inputs are moved.
 * Operators whose semantics changed in a way that cannot be rewritten locally raise an error.
 */
export function upgradeOpset(g: Graph, target = 13): Graph {
  const from = g.opset;
  if (from >= target) return g;
  const out = g.clone();
  for (const n of out.nodes) {
    if (n.domain && n.domain !== 'ai.onnx') continue;
    upgradeNode(out, n, from);
  }
  if ('ai.onnx' in out.opsets) delete out.opsets['ai.onnx'];
  out.opsets[''] = target;
  if (out.irVersion < 7) out.irVersion = 7;
  return out;
}

function moveIntsAttr(g: Graph, n: Node, attr: string, position: number, base: string) {
  const v = attrInts(n, attr);
  delete n.attrs[attr];
  if (v === undefined) return;
  while (n.inputs.length < position) n.inputs.push('');
  n.inputs[position] = addConst(g, `${n.name}_${base}`, v);
}

function upgradeNode(g: Graph, n: Node, from: number) {
  switch (n.opType) {
    case 'Squeeze':
    case 'Unsqueeze':
    case 'ReduceSum':
    case 'Split':
      moveIntsAttr(g, n, n.opType === 'Split' ? 'split' : 'axes', 1, n.opType === 'Split' ? 'split' : 'axes');
      break;
    case 'Reshape':
      if (from < 5) moveIntsAttr(g, n, 'shape', 1, 'shape');
      break;
    case 'Slice':
      if (from < 10) {
        const starts = attrInts(n, 'starts') ?? [];
        const ends = attrInts(n, 'ends') ?? [];
        const axes = attrInts(n, 'axes');
        n.attrs = {};
        n.inputs = [n.inputs[0]!, addConst(g, `${n.name}_starts`, starts), addConst(g, `${n.name}_ends`, ends)];
        if (axes) n.inputs.push(addConst(g, `${n.name}_axes`, axes));
      }
      break;
    case 'Pad':
      if (from < 11) {
        const pads = attrInts(n, 'pads') ?? [];
        const value = attrFloat(n, 'value', 0);
        delete n.attrs['pads'];
        delete n.attrs['value'];
        n.inputs = [
          n.inputs[0]!,
          addConst(g, `${n.name}_pads`, pads),
          addConst(g, `${n.name}_value`, [value], 'float32'),
        ];
      }
      break;
    case 'Clip':
      if (from < 11) {
        const lo = n.attrs['min'] ? attrFloat(n, 'min', 0) : -3.4028234663852886e38;
        const hi = n.attrs['max'] ? attrFloat(n, 'max', 0) : 3.4028234663852886e38;
        delete n.attrs['min'];
        delete n.attrs['max'];
        n.inputs = [
          n.inputs[0]!,
          addConst(g, `${n.name}_min`, [lo], 'float32'),
          addConst(g, `${n.name}_max`, [hi], 'float32'),
        ];
      }
      break;
    case 'Dropout':
      if (from < 12) {
        const ratio = attrFloat(n, 'ratio', 0.5);
        delete n.attrs['ratio'];
        delete n.attrs['is_test'];
        n.inputs = [n.inputs[0]!, addConst(g, `${n.name}_ratio`, [ratio], 'float32')];
      }
      break;
    case 'BatchNormalization':
      delete n.attrs['spatial'];
      delete n.attrs['is_test'];
      delete n.attrs['consumed_inputs'];
      n.outputs = n.outputs.slice(0, 1);
      break;
    case 'Softmax':
    case 'LogSoftmax':
    case 'Hardmax':
      // Before 13 the input was coerced to 2-D at `axis` (default 1). For 2-D inputs, or when the
      // axis is the last one, the meaning is unchanged; callers that need more must re-export.
      if (!n.attrs['axis']) n.attrs['axis'] = { type: 'int', value: 1 };
      n.docString =
        `${n.docString ?? ''} graft: upgraded from opset ${from}; valid for 2-D input or last-axis softmax`.trim();
      break;
    case 'Upsample':
      throw new GraftError(
        `node '${n.name}': Upsample (opset ${from}) cannot be upgraded; re-export the model with Resize`,
      );
    default:
      if ('consumed_inputs' in n.attrs) delete n.attrs['consumed_inputs'];
  }
}

/**
 * Make the first dimension of every data input symbolic ('batch') and fix the exporter's habit of
 * baking that size into Reshape targets (e.g. MNIST's [1, 256] becomes [0, 256], "copy dim 0").
 * Returns the graph and the batch size that was baked in.
 */
export function makeBatchDynamic(src: Graph, dimName = 'batch'): Graph {
  const g = src.clone();
  const baked = new Set<number>();
  for (const v of g.dataInputs()) {
    if (!v.shape || v.shape.length === 0) continue;
    if (typeof v.shape[0] === 'number') baked.add(v.shape[0]);
    v.shape = [dimName, ...v.shape.slice(1)];
  }
  for (const v of g.outputs) if (v.shape && v.shape.length) v.shape = [dimName, ...v.shape.slice(1)];
  g.valueInfo = [];
  if (baked.size === 0) return g;
  // Values computed from data inputs: only Reshape targets applied to those are rewritten.
  const dataDerived = new Set(g.dataInputs().map((v) => v.name));
  for (const n of g.topoSort())
    if (n.inputs.some((i) => dataDerived.has(i))) n.outputs.forEach((o) => dataDerived.add(o));
  for (const n of g.nodes) {
    if (n.opType !== 'Reshape' || !dataDerived.has(n.inputs[0]!)) continue;
    const shapeName = n.inputs[1];
    const t = shapeName ? g.initializers.get(shapeName) : undefined;
    if (!t) continue;
    const dims = toNumbers(t);
    if (dims.length === 0 || !baked.has(dims[0]!) || dims[0] === 0 || dims[0] === -1) continue;
    const fixed = [0, ...dims.slice(1)];
    const name = g.uniqueName(`${shapeName}_dynamic_batch`);
    g.initializers.set(name, { dtype: 'int64', dims: [fixed.length], data: BigInt64Array.from(fixed.map(BigInt)) });
    n.inputs[1] = name;
  }
  // the old shape constants may now be unused
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  for (const k of [...g.initializers.keys()])
    if (!used.has(k) && !g.outputs.some((o) => o.name === k)) g.initializers.delete(k);
  g.inputs = g.inputs.filter((v) => used.has(v.name) || g.outputs.some((o) => o.name === v.name));
  return g;
}

/**
 * The same graph computing in float64: float32 initializers, inputs, outputs, Constant values and
 * Cast targets become float64. Used to check gradients without float32 rounding noise, for the
 * operators onnxruntime's CPU provider implements in double precision.
 */
export function toFloat64(src: Graph, float32Only: ReadonlySet<string> = FLOAT32_ONLY): Graph {
  const g = src.clone();
  // Operators without double kernels run in float32 between two Casts.
  const wrapped: Node[] = [];
  const casts = new Map<string, string>();
  const names = g.allNames();
  for (const n of g.nodes) {
    if (!float32Only.has(n.opType)) {
      wrapped.push(n);
      continue;
    }
    const ins = n.inputs.map((i) => {
      if (!i) return i;
      let c = casts.get(i);
      if (!c) {
        casts.set(i, (c = g.uniqueName(`${i}/as_f32`, names)));
        wrapped.push({
          name: g.uniqueName(`${c}_node`, names),
          opType: 'Cast',
          domain: '',
          inputs: [i],
          outputs: [c],
          attrs: { to: { type: 'int', value: 1 } },
        });
      }
      return c;
    });
    const out = n.outputs[0]!;
    const tmp = g.uniqueName(`${out}/f32`, names);
    wrapped.push({ ...n, inputs: ins, outputs: [tmp, ...n.outputs.slice(1)] });
    wrapped.push({
      name: g.uniqueName(`${tmp}_to_f64`, names),
      opType: 'Cast',
      domain: '',
      inputs: [tmp],
      outputs: [out],
      attrs: { to: { type: 'int', value: 11 } },
    });
  }
  g.nodes = wrapped;
  for (const [k, t] of g.initializers)
    if (t.dtype === 'float32')
      g.initializers.set(k, { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) });
  for (const v of [...g.inputs, ...g.outputs, ...g.valueInfo]) if (v.dtype === 'float32') v.dtype = 'float64';
  for (const n of g.nodes) {
    for (const [name, a] of Object.entries(n.attrs)) {
      if (a.type === 'tensor' && a.value.dtype === 'float32')
        n.attrs[name] = {
          type: 'tensor',
          value: { dtype: 'float64', dims: a.value.dims, data: Float64Array.from(a.value.data as Float32Array) },
        };
      if (name === 'to' && a.type === 'int' && a.value === 1 && !n.outputs[0]!.endsWith('/as_f32'))
        n.attrs[name] = { type: 'int', value: 11 };
    }
  }
  return g;
}

/** Operators onnxruntime's CPU provider runs in float32 only (checked against onnxruntime 1.30). */
export const FLOAT32_ONLY: ReadonlySet<string> = new Set([
  'Erf',
  'Conv',
  'ConvTranspose',
  'AveragePool',
  'GlobalAveragePool',
]);
