#!/usr/bin/env node
// The installed `graft` command: runs the compiled CLI in dist/ (built by `npm run build`, which
// `npm install` in a clone and `npm pack` run through the prepare script). From the sources, without
// a build: `npm run graft -- …` (node --import tsx src/cli/main.ts).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(
    `graft: the compiled CLI is missing (${fileURLToPath(main)}).\n` +
      'In a clone of Graft, build it with `npm run build` (npm install does this), or run the sources with `npm run graft -- …`.\n',
  );
  process.exit(1);
}
await import(main.href);
