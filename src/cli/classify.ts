import { loadModel } from '../formats/load.js';
import { readLabels } from '../formats/labels.js';
import { classifyImages } from '../eval/classify.js';
import { int } from './parse.js';
import { GraftError } from '../util/errors.js';

export async function classifyCommand(
  model: string,
  images: string[],
  o: { top: string; json?: boolean; labels?: string },
) {
  const top = int(o.top, '--top');
  if (top < 1) throw new GraftError(`--top must be at least 1, got ${top}`);
  const g = loadModel(model);
  const res = await classifyImages(g, images, { top, ...(o.labels ? { labels: readLabels(o.labels) } : {}) });
  if (o.json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return;
  }
  for (const r of res) {
    process.stdout.write(`${r.image}\n`);
    for (const t of r.top)
      process.stdout.write(`  ${t.probability.toFixed(4)}  ${t.label ?? `class ${t.index}`} (${t.index})\n`);
  }
}
