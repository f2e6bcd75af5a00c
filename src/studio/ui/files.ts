/**
 * Where Studio's built browser app lives, for the server that serves it (Node side; not part of the
 * bundle). The app is built by scripts/build-ui.mjs into <package root>/dist/studio-ui/ (index.html,
 * app.js, app.css, ort/ort-wasm-simd-threaded.wasm); `studioUiDir()` builds it first when the sources
 * are present and newer than the build (a clone), and otherwise uses the shipped build (an install).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraftError } from '../../util/errors.js';

// Both src/studio/ui/files.ts and its compiled dist/studio/ui/files.js sit three folders below the root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The folder holding Studio's built app: GRAFT_STUDIO_UI if set, else <root>/dist/studio-ui. */
export function studioUiDir(): string {
  const env = process.env['GRAFT_STUDIO_UI'];
  if (env) return resolve(env);
  const out = join(ROOT, 'dist', 'studio-ui');
  const script = join(ROOT, 'scripts', 'build-ui.mjs');
  // In a clone (the build script and esbuild are there) build when missing or stale; the script checks.
  if (existsSync(script) && existsSync(join(ROOT, 'src', 'studio', 'ui', 'main.ts'))) {
    try {
      execFileSync(process.execPath, [script], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    } catch (e) {
      throw new GraftError(
        `could not build Studio's browser app: ${(e as Error).message}`,
        'run `node scripts/build-ui.mjs` and read its error',
      );
    }
  }
  if (!existsSync(join(out, 'index.html')))
    throw new GraftError(
      `Studio's browser app is not built (${out} has no index.html)`,
      'run `node scripts/build-ui.mjs` (or `npm run build`)',
    );
  return out;
}
