/**
 * `graft sweep GRID.json [--queue redis://…]`: every cell of a grid of settings (src/scale/cells.ts)
 * run here or as jobs on `graft worker`s, and the table written as sweep.md and sweep.json.
 */
import { Command } from 'commander';
import { gridCells, readSweepSpec } from '../scale/cells.js';
import { runSweep, sweepMarkdown, writeSweep } from '../scale/sweep.js';
import { GraftError } from '../util/errors.js';
import { int } from './parse.js';

interface SweepFlags {
  out: string;
  queue?: string;
  attempts: string;
  json?: boolean;
  dryRun?: boolean;
}

export function sweepCommand(): Command {
  return new Command('sweep')
    .description(
      'train once per cell of a grid of settings (e.g. learning rate × top blocks × seed) and write a table of validation and test scores (sweep.md, sweep.json)',
    )
    .argument(
      '<grid>',
      'a JSON file: { "model", "data", "mode": "features" | "finetune", "base": {options of every cell}, "grid": {option: [values…]} } (paths relative to the file)',
    )
    .option('--out <dir>', 'folder for sweep.md and sweep.json', 'graft-sweep')
    .option(
      '--queue <url>',
      'run each cell as a job on `graft worker` processes through the Redis at redis://HOST:PORT (model, data and any cacheDir on paths every worker can reach)',
    )
    .option('--attempts <n>', 'with --queue: tries per cell before the sweep fails', '2')
    .option('--dry-run', 'list the cells and stop')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Example (grid.json):
  { "model": "mobilenet_v2.tflite", "data": "photos/", "mode": "finetune",
    "base": { "labelsPerClass": 20, "epochs": 3, "cacheDir": "cache/" },
    "grid": { "lr": [0.001, 0.003], "topBlocks": [1, 2], "seed": [0, 1, 2] } }
  graft sweep grid.json --out sweep/                       # here, cell after cell
  graft sweep grid.json --out sweep/ --queue redis://10.0.0.5:6379   # on the workers
`,
    )
    .action(async (file: string, o: SweepFlags) => {
      const spec = readSweepSpec(file);
      const cells = gridCells(spec.grid);
      if (o.dryRun) {
        process.stdout.write(cells.map((c, i) => `${i + 1}. ${JSON.stringify(c)}\n`).join(''));
        return;
      }
      const attempts = int(o.attempts, '--attempts');
      if (attempts < 1) throw new GraftError(`--attempts must be at least 1, got ${o.attempts}`);
      const r = await runSweep(spec, {
        ...(o.queue ? { queue: o.queue } : {}),
        attempts,
        onCell: (c, done, total) => {
          if (!o.json)
            process.stderr.write(
              `${done}/${total} ${JSON.stringify(c.params)}: val ${c.validation?.accuracy.toFixed(4) ?? '–'}, test ${c.test?.accuracy.toFixed(4) ?? '–'} (${c.seconds.toFixed(1)} s${o.queue ? ` on ${c.worker}` : ''})\n`,
            );
        },
      });
      const files = writeSweep(r, o.out);
      if (o.json) process.stdout.write(JSON.stringify({ ...r, files }, null, 2) + '\n');
      else process.stdout.write(sweepMarkdown(r) + `wrote ${files.join(', ')}\n`);
    });
}
