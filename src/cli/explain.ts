/**
 * `graft explain MODEL INPUT…`: why a classifier decided as it did. Image models: a Grad-CAM PNG
 * overlay per image in the output folder. Text classifier folders: per-token attributions printed,
 * and attributions.json + attributions.html in the output folder. The flags, one call into
 * explainToFolder (src/explain/folder.ts), the printing.
 */
import { Command } from 'commander';
import { explainToFolder } from '../explain/folder.js';
import type { TextExplanation } from '../explain/text.js';

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
  const r = await explainToFolder(model, inputs, {
    out: o.out,
    ...(o.class !== undefined ? { class: o.class } : {}),
    ...(o.layer !== undefined ? { layer: o.layer } : {}),
    onSkip: (image, err) => process.stderr.write(`${image}: skipped (${err.message})\n`),
    onImage: (e, file) => {
      if (o.json) return;
      const name = e.class.label ?? `class ${e.class.index}`;
      const note = e.camMax > 0 ? '' : ' (no region speaks for this class: the map is empty)';
      process.stdout.write(`${e.image}: ${name} (${e.class.probability.toFixed(4)}) → ${file}${note}\n`);
    },
  });
  if (r.kind === 'texts') return printTexts(r.texts, r.files, o);
  if (o.json) {
    const images = r.images.map(({ explanation: e, overlay }) => ({
      image: e.image,
      class: e.class,
      top: e.top,
      layer: e.layer,
      overlay,
      camMax: e.camMax,
      cam: { width: e.cam.width, height: e.cam.height, data: Array.from(e.cam.data, (v) => Number(v.toFixed(4))) },
    }));
    process.stdout.write(`${JSON.stringify({ layer: r.layer, images }, null, 2)}\n`);
  } else process.stderr.write(`Grad-CAM on ${r.layer}\n`);
  if (r.skipped) {
    process.stderr.write(`skipped ${r.skipped} unreadable image${r.skipped === 1 ? '' : 's'}\n`);
    process.exitCode = 1;
  }
}

function printTexts(res: TextExplanation[], files: string[], o: ExplainFlags): void {
  if (o.json) {
    process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
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
  process.stderr.write(`wrote ${files.join(' and ')}\n`);
}
