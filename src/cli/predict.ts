import { loadModel } from '../formats/load.js';
import { classifyImages } from '../eval/classify.js';
import { int } from './parse.js';
import { GraftError } from '../util/errors.js';
import { isTextClassifierFolder, loadTextClassifier, predictTexts } from '../text/saved.js';

/** `graft predict --model DIR IMAGE...`: top classes per image from a saved classifier. */
export async function predictCommand(inputs: string[], o: { model: string; top: string; json?: boolean }) {
  const top = int(o.top, '--top');
  if (top < 1) throw new GraftError(`--top must be at least 1, got ${top}`);
  if (isTextClassifierFolder(o.model)) {
    // Text classifier folder (graft train --text-column …): the inputs are texts.
    const res = await predictTexts(loadTextClassifier(o.model), inputs, { top });
    if (o.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    else
      for (const r of res)
        process.stdout.write(
          `${JSON.stringify(r.text)}: ${r.top.map((t) => `${t.label} ${t.probability.toFixed(4)}`).join(', ')}\n`,
        );
    return;
  }
  // an unreadable image is reported (its entry has `error` and no classes) and skipped, never fatal
  const res = await classifyImages(loadModel(o.model), inputs, { top, skipUnreadable: true });
  if (o.json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return;
  }
  for (const r of res) {
    if (r.error) process.stdout.write(`${r.image}: skipped (${r.error})\n`);
    else
      process.stdout.write(
        `${r.image}: ${r.top.map((t) => `${t.label ?? `class ${t.index}`} ${t.probability.toFixed(4)}`).join(', ')}\n`,
      );
  }
  const skipped = res.filter((r) => r.error).length;
  if (skipped) process.stderr.write(`skipped ${skipped} unreadable image${skipped === 1 ? '' : 's'}\n`);
}
