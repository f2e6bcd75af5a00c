/**
 * Multi-task heads on one backbone vs one fine-tuned model per task (inductive transfer), on the
 * 8×8 handwritten digits (MNIST-style 28×28) with the MNIST CNN of ../shared as the backbone.
 * Tasks on the same images: digit (10 classes), parity (even/odd), large (digit ≥ 5).
 *
 *   shared:   features extracted once at the 256-d flattened pooling output, one cross-validated
 *             logistic head per task, exported as ONE ONNX with three outputs (checked to agree
 *             with the heads);
 *   separate: per task, the MNIST network with its 10-way head replaced by a new head for the task
 *             (withNewHead) and fine-tuned end to end (AdamW 1e-3, 5 epochs, batch 32).
 *
 * Run: GRAFT_THREADS=1 node --import tsx bench/multi-task.ts [--write-docs]  (updates docs/curves.md)
 */
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { loadModel } from '../src/formats/load.js';
import { encodeOnnx } from '../src/formats/onnx.js';
import { loadPixelDataset } from '../src/data/pixel-dataset.js';
import { stratifiedSplit } from '../src/data/splits.js';
import { requireAsset } from '../src/data/assets.js';
import { fit, predictLabels, stack } from '../src/train/fit.js';
import { Session } from '../src/runtime/session.js';
import { trainMultiTask, exportMultiTask, withNewHead, type Task } from '../src/features/multi-task.js';
import { accuracy } from '../src/util/vectors.js';

const NODE = 'Pooling160_Output_0_reshape0';
const model = loadModel(requireAsset('models/onnxjs-demo/mnist.onnx'));
const data = await loadPixelDataset(requireAsset('datasets/digits-8x8/digits.csv.gz'), { side: 28, pixelMax: 16 });
const split = stratifiedSplit(data.y, { testFraction: 0.3, seed: 0 });
const tasks: Task[] = [
  { name: 'digit', labels: data.y },
  { name: 'parity', labels: data.y.map((y) => y % 2) },
  { name: 'large', labels: data.y.map((y) => (y >= 5 ? 1 : 0)) },
];
const testX = split.test.map((i) => data.x[i]!);

const t0 = performance.now();
const mt = await trainMultiTask(model, data.x, tasks, { node: NODE, train: split.train });
const exported = exportMultiTask(model, mt.node, mt.heads);
const sharedSeconds = (performance.now() - t0) / 1000;
const sharedBytes = encodeOnnx(exported).length;
// one forward pass of the exported model answers every task
const s = await Session.fromGraph(exported, {}, 'multi-task');
const outs = await s.run({ [exported.dataInputs()[0]!.name]: stack(testX, [1, 28, 28]) });
await s.release();
const rows: string[] = [];
let sepSeconds = 0,
  sepBytes = 0;
for (const [k, t] of tasks.entries()) {
  const y = split.test.map((i) => t.labels[i]!);
  const head = mt.heads[k]!;
  const headAcc = accuracy(await head.head.predict(split.test.map((i) => mt.features[i]!)), y);
  const p = outs[`probabilities_${t.name}`]!;
  const K = p.dims[1]!;
  const onnxPred = Array.from({ length: y.length }, (_, n) => {
    let b = 0;
    for (let c = 1; c < K; c++) if ((p.data as Float32Array)[n * K + c]! > (p.data as Float32Array)[n * K + b]!) b = c;
    return b;
  });
  const onnxAcc = accuracy(onnxPred, y);
  if (Math.abs(onnxAcc - headAcc) > 0.002)
    throw new Error(`exported ONNX ${onnxAcc} disagrees with the head ${headAcc} on task ${t.name}`);
  const ts = performance.now();
  const g = await withNewHead(model, K, { node: NODE, seed: 1 });
  const r = await fit(
    g,
    { x: split.train.map((i) => data.x[i]!), y: split.train.map((i) => t.labels[i]!) },
    { epochs: 5, batchSize: 32, lr: 1e-3, seed: 1 },
  );
  const ftAcc = accuracy(await predictLabels(r.trainer, r.trainer.tg.model, testX), y);
  const secs = (performance.now() - ts) / 1000;
  const bytes = encodeOnnx(r.trainer.toGraph()).length;
  await r.trainer.release();
  sepSeconds += secs;
  sepBytes += bytes;
  rows.push(
    `| ${t.name} | ${K} | ${onnxAcc.toFixed(3)} | ${ftAcc.toFixed(3)} | ${secs.toFixed(1)} | ${(bytes / 1024).toFixed(0)} KiB |`,
  );
  process.stderr.write(`${t.name}: shared head ${onnxAcc.toFixed(3)}, separate fine-tuned ${ftAcc.toFixed(3)}\n`);
}
const table = [
  `Digits 8×8 (${data.x.length} images, MNIST-style 28×28), ${split.train.length} training / ${split.test.length} test images (stratified, seed 0); backbone: the MNIST CNN (../shared/models/onnxjs-demo/mnist.onnx) cut at '${NODE}' (256-d). GRAFT_THREADS=1.`,
  '',
  '| task | classes | shared backbone + head (one ONNX, 3 outputs) | separate fine-tuned model (new head) | fine-tune seconds | model size |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows,
  '',
  `Shared: ${sharedSeconds.toFixed(1)} s in all (feature extraction once: ${mt.extractSeconds.toFixed(1)} s; heads: ${mt.heads.map((h) => `${h.task} ${h.seconds.toFixed(1)} s`).join(', ')}), ` +
    `one ${(sharedBytes / 1024).toFixed(0)} KiB ONNX file. Separate: ${sepSeconds.toFixed(1)} s and ${(sepBytes / 1024).toFixed(0)} KiB for three models. ` +
    `Saved by sharing: ${(sepSeconds / sharedSeconds).toFixed(1)}× less training time, ${(sepBytes / sharedBytes).toFixed(1)}× fewer bytes, one forward pass instead of three.`,
].join('\n');
process.stdout.write(table + '\n');
if (process.argv.includes('--write-docs')) {
  const file = new URL('../docs/curves.md', import.meta.url).pathname;
  const begin = '<!-- multi-task:begin (bench/multi-task.ts --write-docs) -->',
    end = '<!-- multi-task:end -->';
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const block = `${begin}\n${table}\n${end}`;
  text = text.includes(begin)
    ? text.slice(0, text.indexOf(begin)) + block + text.slice(text.indexOf(end) + end.length)
    : text.trimEnd() + `\n\n${block}\n`;
  writeFileSync(file + '.tmp', text);
  renameSync(file + '.tmp', file);
}
