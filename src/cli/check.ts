import { loadModel } from '../formats/load.js';
import { checkModel } from '../autodiff/check-model.js';
import { int } from './parse.js';

export async function checkCommand(model: string, o: { json?: boolean; params: string; samples: string; seed: string }) {
  const g = loadModel(model);
  const r = await checkModel(g, { params: int(o.params, '--params'), samples: int(o.samples, '--samples'), seed: int(o.seed, '--seed') });
  if (o.json) {
    process.stdout.write(JSON.stringify({ model, ...r }, null, 2) + '\n');
  } else {
    const w = Math.max(8, ...r.ops.map((x) => x.op.length));
    process.stdout.write(`${model}: ${g.nodes.length} nodes, opset ${g.opset}, ${r.parameters} parameter tensors (${r.parameterValues.toLocaleString('en')} values)\n\n`);
    process.stdout.write(`${'operator'.padEnd(w)}  count  gradient\n`);
    for (const x of r.ops) process.stdout.write(`${x.op.padEnd(w)}  ${String(x.count).padStart(5)}  ${x.status}\n`);
    process.stdout.write('\n');
    if (r.missing.length) process.stdout.write(`missing gradient rules: ${r.missing.join(', ')}\n`);
    else process.stdout.write('every operator has a gradient rule\n');
    if (r.gradcheck) {
      for (const e of r.gradcheck.entries)
        process.stdout.write(`finite differences  ${e.name}: ${e.checked} elements, max relative error ${e.maxRelError.toExponential(2)}\n`);
      process.stdout.write(`worst relative error: ${r.gradcheck.worst.toExponential(2)} (${r.precision} finite differences)\n`);
    }
  }
  if (r.missing.length) process.exitCode = 1;
}
