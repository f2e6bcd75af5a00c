import { loadModel } from '../formats/load.js';
import { classifyImages } from '../eval/classify.js';
import { int } from './parse.js';
import { GraftError } from '../util/errors.js';

/** `graft predict --model DIR IMAGE...`: top classes per image from a saved classifier. */
export async function predictCommand(inputs: string[], o: { model: string; top: string; json?: boolean }) {
  const top = int(o.top, '--top');
  if (top < 1) throw new GraftError(`--top must be at least 1, got ${top}`);
  const res = await classifyImages(loadModel(o.model), inputs, { top });
  if (o.json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return;
  }
  for (const r of res)
    process.stdout.write(`${r.image}: ${r.top.map((t) => `${t.label ?? `class ${t.index}`} ${t.probability.toFixed(4)}`).join(', ')}\n`);
}
