/** `graft grad`: the gradient of every trainable parameter for a feed, written as safetensors. */
import { loadModel } from '../formats/load.js';
import { readSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { modelGradients, type GradLoss } from '../autodiff/check-model.js';
import type { Feeds } from '../runtime/session.js';

export async function gradCommand(model: string, o: { feed: string; loss: GradLoss; out: string }) {
  const g = loadModel(model);
  const { tensors } = readSafetensors(o.feed);
  const feeds: Feeds = Object.fromEntries(tensors);
  const r = await modelGradients(g, feeds, o.loss);
  writeSafetensors(o.out, r.grads, {
    loss: String(r.loss),
    kind: o.loss,
    model,
    outputs: r.outputs.used.map((u) => u.name).join(','),
  });
  process.stdout.write(
    `wrote ${r.grads.size} gradients to ${o.out} (loss ${r.loss} over output ${r.outputs.used.map((u) => u.name).join(', ')})\n`,
  );
  for (const s of r.outputs.skipped) process.stdout.write(`  skipped output ${s.name} (${s.dtype}): ${s.reason}\n`);
}
