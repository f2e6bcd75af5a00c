/** `graft check`: operators and gradient rules of a model, and a finite-difference check of its gradients. */
import { loadModel } from '../formats/load.js';
import { checkModel } from '../autodiff/check-model.js';
import { int } from './parse.js';

export async function checkCommand(
  model: string,
  o: { json?: boolean; params: string; samples: string; seed: string },
) {
  const g = loadModel(model);
  const r = await checkModel(g, {
    params: int(o.params, '--params'),
    samples: int(o.samples, '--samples'),
    seed: int(o.seed, '--seed'),
  });
  if (o.json) {
    process.stdout.write(JSON.stringify({ model, ...r }, null, 2) + '\n');
  } else {
    const w = Math.max(8, ...r.ops.map((x) => x.op.length));
    process.stdout.write(
      `${model}: ${g.nodes.length} nodes, opset ${g.opset}, ${r.parameters} parameter tensors (${r.parameterValues.toLocaleString('en')} values)\n\n`,
    );
    process.stdout.write(`${'operator'.padEnd(w)}  count  gradient\n`);
    for (const x of r.ops) process.stdout.write(`${x.op.padEnd(w)}  ${String(x.count).padStart(5)}  ${x.status}\n`);
    process.stdout.write('\n');
    if (r.missing.length) process.stdout.write(`missing gradient rules: ${r.missing.join(', ')}\n`);
    else process.stdout.write('every operator has a gradient rule\n');
    process.stdout.write(
      `probe loss over: ${r.outputs.used.map((u) => `${u.name} (${u.dtype})`).join(', ') || 'no output'}\n`,
    );
    for (const s of r.outputs.skipped) process.stdout.write(`  skipped output ${s.name} (${s.dtype}): ${s.reason}\n`);
    if (r.gradcheck) {
      for (const e of r.gradcheck.entries)
        process.stdout.write(
          `finite differences  ${e.name}: ${e.checked} directions, max relative error ${e.maxRelError.toExponential(2)}\n`,
        );
      const f32 = r.gradcheck.float32Ops.length ? `; in float32: ${r.gradcheck.float32Ops.join(', ')}` : '';
      process.stdout.write(
        `worst relative error: ${r.gradcheck.worst.toExponential(2)} (${r.precision} finite differences${f32}; tolerance ${r.gradcheck.tolerance})\n`,
      );
      process.stdout.write(
        r.gradcheck.passed
          ? 'gradients agree with finite differences\n'
          : 'GRADIENT MISMATCH: a gradient rule on this model is wrong\n',
      );
    }
  }
  if (r.missing.length || (r.gradcheck && !r.gradcheck.passed)) process.exitCode = 1;
}
