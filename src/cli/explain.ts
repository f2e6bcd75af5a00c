/**
 * `graft explain MODEL INPUT…`: why a classifier decided as it did. Image models: a Grad-CAM PNG
 * overlay per image in the output folder. Text classifier folders: per-token attributions printed,
 * and attributions.json + attributions.html in the output folder.
 */
import { basename, extname, join, resolve } from 'node:path';
import { Command } from 'commander';
import { atomicWrite } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';
import { GradCam } from '../explain/gradcam.js';
import { explainTexts } from '../explain/text.js';
import { attributionsHtml } from '../explain/html.js';
import { isTextClassifierFolder } from '../text/saved.js';

interface ExplainFlags {
  out: string;
  class?: string;
  layer?: string;
  json?: boolean;
}

export function explainCommand(): Command {
  return new Command('explain')
    .description(
      'show why a classifier decides: Grad-CAM heatmaps over images (PNG overlays), or per-token attributions for a text classifier folder',
    )
    .argument('<model>', 'an image model (classifier folder, .onnx, .tflite, TF.js) or a text classifier folder')
    .argument('<inputs...>', 'image files, or texts for a text classifier folder')
    .option(
      '--out <dir>',
      'folder for the overlays (images) or attributions.json and attributions.html (texts)',
      'graft-explain',
    )
    .option('--class <name|index>', "the class to explain (default: each input's top class)")
    .option(
      '--layer <value>',
      "images: the activations for Grad-CAM (default: the last convolution's output, with its activation)",
    )
    .option('--json', 'print JSON')
    .action(runExplain);
}

async function runExplain(model: string, inputs: string[], o: ExplainFlags): Promise<void> {
  if (isTextClassifierFolder(model)) return explainTextCommand(model, inputs, o);
  const cam = await GradCam.create(model, o.layer ? { layer: o.layer } : {});
  const results: Record<string, unknown>[] = [];
  const taken = new Set<string>();
  let skipped = 0;
  try {
    const cls = o.class === undefined ? undefined : cam.classIndex(o.class);
    for (const image of inputs) {
      let e;
      try {
        e = await cam.explain(image, cls !== undefined ? { class: cls } : {});
      } catch (err) {
        // an unreadable image is reported and skipped
        if (!(err instanceof GraftError)) throw err;
        skipped++;
        process.stderr.write(`${image}: skipped (${err.message})\n`);
        continue;
      }
      const file = outputName(o.out, image, taken);
      atomicWrite(file, e.overlay!);
      const name = e.class.label ?? `class ${e.class.index}`;
      if (o.json) {
        results.push({
          image,
          class: e.class,
          top: e.top,
          layer: e.layer,
          overlay: file,
          camMax: e.camMax,
          cam: { width: e.cam.width, height: e.cam.height, data: Array.from(e.cam.data, (v) => Number(v.toFixed(4))) },
        });
      } else {
        const note = e.camMax > 0 ? '' : ' (no region speaks for this class: the map is empty)';
        process.stdout.write(`${image}: ${name} (${e.class.probability.toFixed(4)}) → ${file}${note}\n`);
      }
    }
  } finally {
    await cam.release();
  }
  if (o.json) process.stdout.write(JSON.stringify({ layer: cam.layer, images: results }, null, 2) + '\n');
  else process.stderr.write(`Grad-CAM on ${cam.layer}\n`);
  if (skipped) {
    process.stderr.write(`skipped ${skipped} unreadable image${skipped === 1 ? '' : 's'}\n`);
    process.exitCode = 1;
  }
}

/** `<out>/<stem>.gradcam.png`, numbered when two inputs share a stem. */
function outputName(dir: string, image: string, taken: Set<string>): string {
  const stem = basename(image, extname(image)) || 'image';
  for (let k = 1; ; k++) {
    const file = join(dir, `${stem}${k > 1 ? `-${k}` : ''}.gradcam.png`);
    if (!taken.has(resolve(file))) {
      taken.add(resolve(file));
      return file;
    }
  }
}

async function explainTextCommand(model: string, texts: string[], o: ExplainFlags): Promise<void> {
  if (o.layer)
    throw new GraftError('--layer is for image models (Grad-CAM); text attributions use the word embeddings');
  const res = await explainTexts(model, texts, o.class !== undefined ? { class: o.class } : {});
  atomicWrite(join(o.out, 'attributions.json'), Buffer.from(JSON.stringify(res, null, 2) + '\n'));
  atomicWrite(join(o.out, 'attributions.html'), Buffer.from(attributionsHtml(res)));
  if (o.json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return;
  }
  for (const e of res) {
    process.stdout.write(
      `${JSON.stringify(e.text)}: ${e.class.label ?? `class ${e.class.index}`} (${e.class.probability.toFixed(4)})\n`,
    );
    process.stdout.write(
      `  ${e.tokens.map((t, i) => `${t} ${e.scores[i]! >= 0 ? '+' : ''}${e.scores[i]!.toFixed(4)}`).join('  ')}\n`,
    );
  }
  process.stderr.write(`wrote ${join(o.out, 'attributions.json')} and ${join(o.out, 'attributions.html')}\n`);
}
