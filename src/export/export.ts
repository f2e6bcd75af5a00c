/**
 * Export a fine-tuned classifier as one standalone ONNX file that plain onnxruntime runs on images:
 * LoRA adapters merged into their weights, training-only nodes removed (Dropout, batch-statistics
 * BatchNormalization switched back to inference), a Softmax head output (`probabilities`) beside the
 * `logits`, and the image preprocessing and class names in the metadata, with labels.json next to
 * model.onnx (the same folder layout as features mode's saved classifier, so `graft predict` and
 * `graft eval` take it).
 *
 * Parity check: before the file is moved into place, onnxruntime runs the written bytes on a few
 * real inputs and its output (the logits, or the probabilities when the trained model ends in a
 * Softmax) is compared with the training graph's own forward on the same inputs;
 * a difference above the tolerance fails the export with a GraftError giving the difference.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from '../graph/graph.js';
import { A } from '../graph/builder.js';
import type { Tensor } from '../graph/tensor.js';
import { atomicWrite, encodeOnnx } from '../formats/onnx.js';
import { FolderWrite, MODEL_FOLDER_FILES } from '../util/atomic.js';
import { setLabels, setPreprocess, type ImagePreprocess } from '../formats/preprocess.js';
import { mergeLora } from '../finetune/lora.js';
import { Session, type RuntimeOptions } from '../runtime/session.js';
import { logitsOf } from '../train/training-graph.js';
import { GraftError } from '../util/errors.js';

export const PROBABILITIES = 'probabilities';
export const LOGITS = 'logits';

export interface FinetuneExportOptions {
  /** Folder to write model.onnx and labels.json into. */
  out: string;
  labels: string[];
  preprocess?: ImagePreprocess;
  /**
   * The training graph's forward on a batch of model inputs (e.g. Trainer.predict): the trained
   * model's first output, so logits, or probabilities when the model ends in a Softmax.
   */
  reference: (x: Tensor) => Promise<Tensor>;
  /** A few real inputs (one NCHW batch) for the parity check. */
  checkInputs: Tensor;
  /**
   * Tolerance of the parity check (default 1e-4): the largest |exported − reference| over the
   * compared output may be at most tolerance · max(1, max |reference|), i.e. absolute for values up
   * to 1 and relative to the output's scale above (a deep network's logits in fp32 differ by ~1e-5
   * relative between onnxruntime's kernels for weights as initializers and as inputs).
   */
  tolerance?: number;
  /** Extra metadata (graft.* keys), e.g. what it was trained on. */
  metadata?: Record<string, string>;
  runtime?: RuntimeOptions;
}

export interface ExportResult {
  path: string;
  labelsPath: string;
  /** Largest |exported − reference| over the check inputs' compared output (`compared`). */
  maxAbsDiff: number;
  compared: 'logits' | 'probabilities';
  tolerance: number;
  /** tolerance · max(1, max |reference|): the bound maxAbsDiff was held to. */
  allowed: number;
  checked: number;
  graph: Graph;
}

/** Drop what only training needs: Dropout (→ its input), BatchNormalization in training mode (→ inference). */
export function stripTraining(graph: Graph): Graph {
  const g = graph.clone();
  for (const n of [...g.nodes]) {
    if (n.opType === 'Dropout') {
      g.nodes = g.nodes.filter((x) => x !== n);
      g.replaceUses(n.outputs[0]!, n.inputs[0]!);
    } else if (n.opType === 'BatchNormalization' && n.attrs['training_mode']) {
      delete n.attrs['training_mode'];
      delete n.attrs['momentum'];
      n.outputs = [n.outputs[0]!];
    }
  }
  g.nodes = g.nodes.filter((n) => !n.name.startsWith('loss/') && !n.name.startsWith('grad/'));
  return g.prune();
}

/**
 * The inference graph to export: LoRA merged, training nodes removed, outputs `logits` and
 * `probabilities` (Softmax over the classes). The model's first output must be [batch, classes]
 * logits (or a Softmax of them, which is kept).
 */
export function exportGraph(
  trained: Graph,
  labels: string[],
  preprocess?: ImagePreprocess,
  metadata: Record<string, string> = {},
): Graph {
  const g = stripTraining(mergeLora(trained));
  const out = g.outputs[0];
  if (!out) throw new GraftError(`${trained.name}: the model has no outputs`);
  const logits = logitsOf(g, out.name);
  for (const [from, to] of [[logits, LOGITS]] as const)
    if (from !== to) {
      if (g.allNames().has(to)) throw new GraftError(`${trained.name}: already has a value named '${to}'`);
      for (const n of g.nodes) n.outputs = n.outputs.map((o) => (o === from ? to : o));
      g.replaceUses(from, to);
    }
  // one Softmax, named `probabilities`, whatever the model ended with
  g.nodes = g.nodes.filter((n) => !(n.opType === 'Softmax' && n.inputs[0] === LOGITS));
  if (g.allNames().has(PROBABILITIES))
    throw new GraftError(`${trained.name}: already has a value named '${PROBABILITIES}'`);
  g.nodes.push({
    name: 'export/softmax',
    opType: 'Softmax',
    domain: '',
    inputs: [LOGITS],
    outputs: [PROBABILITIES],
    attrs: { axis: A.i(-1) },
  });
  const batch = g.dataInputs()[0]?.shape?.[0] ?? 'batch';
  const K = labels.length;
  g.outputs = [
    { name: PROBABILITIES, dtype: 'float32', shape: [batch, K] },
    { name: LOGITS, dtype: 'float32', shape: [batch, K] },
  ];
  g.valueInfo = g.valueInfo.filter((v) => v.name !== LOGITS && v.name !== PROBABILITIES);
  g.prune();
  if (g.opset < 13) g.opsets[''] = 13; // Softmax over the last axis (opset 13 semantics)
  g.metadata = { ...g.metadata, ...metadata };
  if (preprocess) setPreprocess(g, preprocess);
  setLabels(g, labels);
  g.metadata['graft.exported'] = 'finetune';
  return g;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Build the export graph, write it, check parity with onnxruntime on the written bytes, then commit. */
export async function exportFinetuned(trained: Graph, o: FinetuneExportOptions): Promise<ExportResult> {
  const tolerance = o.tolerance ?? 1e-4;
  const g = exportGraph(trained, o.labels, o.preprocess, o.metadata);
  const plain = stripTraining(mergeLora(trained));
  const first = plain.outputs[0]!.name;
  const compared = logitsOf(plain, first) !== first ? PROBABILITIES : LOGITS;
  g.metadata['graft.export_tolerance'] = String(tolerance);
  const path = join(o.out, 'model.onnx');
  const labelsPath = join(o.out, 'labels.json');
  // model.onnx and labels.json are staged together and swapped in as one folder after the parity check
  // passes: a failed check, a full disk or a kill leaves the previous export as it was
  const fw = new FolderWrite(o.out, { replaces: MODEL_FOLDER_FILES });
  const staged = join(fw.stage, 'model.onnx');
  let maxAbsDiff = Infinity,
    allowed = tolerance;
  try {
    atomicWrite(staged, encodeOnnx(g));
    const s = await Session.fromBytes(readFileSync(staged), o.runtime, `${path} (exported)`);
    let got: Record<string, Tensor>;
    try {
      got = await s.run({ [g.dataInputs()[0]!.name]: o.checkInputs }, [compared]);
    } finally {
      await s.release();
    }
    const ref = await o.reference(o.checkInputs);
    if (ref.dims.join() !== got[compared]!.dims.join())
      throw new GraftError(
        `export parity check: the exported model gives ${compared} [${got[compared]!.dims}], the training graph [${ref.dims}]`,
      );
    if (got[compared]!.dims[1] !== o.labels.length)
      throw new GraftError(
        `export: the model has ${got[compared]!.dims[1]} classes but ${o.labels.length} labels were given; nothing was written to ${path}`,
      );
    maxAbsDiff = maxDiff(got[compared]!.data as Float32Array, ref.data as Float32Array);
    let scale = 1;
    for (const v of ref.data as Float32Array) scale = Math.max(scale, Math.abs(v));
    allowed = tolerance * scale;
    if (!(maxAbsDiff <= allowed))
      throw new GraftError(
        `export parity check failed: onnxruntime on the exported model differs from the training graph's forward by up to ${maxAbsDiff.toExponential(3)} in the ${compared} (allowed ${allowed.toExponential(2)} = tolerance ${tolerance.toExponential(1)} × max(1, max |reference| ${scale.toPrecision(3)})) on ${o.checkInputs.dims[0]} inputs; nothing was written to ${path}`,
      );
    atomicWrite(join(fw.stage, 'labels.json'), new TextEncoder().encode(JSON.stringify(o.labels, null, 2) + '\n'));
  } catch (e) {
    fw.abort();
    throw fw.error(e);
  }
  fw.commit();
  return { path, labelsPath, maxAbsDiff, allowed, compared, tolerance, checked: o.checkInputs.dims[0] ?? 0, graph: g };
}
