#!/usr/bin/env node
/**
 * Builds Graft Studio's browser app: bundles src/studio/ui/main.ts with esbuild into dist/studio-ui/
 * (app.js, app.css, index.html) and copies onnxruntime-web's WASM binary and its loader to dist/studio-ui/ort/, so the
 * folder is self-contained (onnxruntime-web is only a development dependency of Graft).
 *
 *   node scripts/build-ui.mjs            build when missing or stale (sources newer than the last build)
 *   node scripts/build-ui.mjs --force    always build
 *   node scripts/build-ui.mjs --out DIR  build into DIR instead of dist/studio-ui
 *
 * Staleness: dist/studio-ui/build.json records the newest modification time of the sources; a build
 * is skipped when no source is newer and every output file exists.
 */
import { build } from 'esbuild';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src', 'studio', 'ui');
// onnxruntime-web's WASM binary and its Emscripten loader, fetched by the page at run time from ort/
const WASM = 'ort-wasm-simd-threaded.wasm';
const WASM_LOADER = 'ort-wasm-simd-threaded.mjs';
const OUTPUTS = ['index.html', 'app.js', 'app.css', join('ort', WASM), join('ort', WASM_LOADER)];

function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  walk(src);
  newest = Math.max(newest, statSync(fileURLToPath(import.meta.url)).mtimeMs);
  return newest;
}

/** True when `out` holds a build of the current sources. */
export function uiIsFresh(out = join(root, 'dist', 'studio-ui')) {
  const stamp = join(out, 'build.json');
  if (!existsSync(stamp) || OUTPUTS.some((f) => !existsSync(join(out, f)))) return false;
  try {
    return JSON.parse(readFileSync(stamp, 'utf8')).sources >= newestSource();
  } catch {
    return false;
  }
}

/** Build the app into `out` (default dist/studio-ui) unless it is fresh; returns the folder. */
export async function buildUi({ out = join(root, 'dist', 'studio-ui'), force = false, quiet = false } = {}) {
  if (!force && uiIsFresh(out)) return out;
  const sources = newestSource();
  const t0 = Date.now();
  // Built beside the target and renamed into place, so a server reading `out` never sees half a build.
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'ort'), { recursive: true });
  await build({
    entryPoints: {
      app: join(src, 'main.ts'),
      ...(existsSync(join(src, 'app.css')) ? { 'app-style': join(src, 'app.css') } : {}),
    },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    outdir: tmp,
    minify: true,
    sourcemap: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
  if (existsSync(join(tmp, 'app-style.css'))) renameSync(join(tmp, 'app-style.css'), join(tmp, 'app.css'));
  rmSync(join(tmp, 'app-style.js'), { force: true });
  rmSync(join(tmp, 'app-style.js.map'), { force: true });
  if (existsSync(join(tmp, 'app-style.css.map'))) renameSync(join(tmp, 'app-style.css.map'), join(tmp, 'app.css.map'));
  copyFileSync(join(src, 'index.html'), join(tmp, 'index.html'));
  const require = createRequire(import.meta.url);
  for (const f of [WASM, WASM_LOADER]) copyFileSync(require.resolve(`onnxruntime-web/${f}`), join(tmp, 'ort', f));
  writeFileSync(join(tmp, 'build.json'), JSON.stringify({ sources, builtAt: new Date().toISOString() }) + '\n');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(dirname(out), { recursive: true });
  try {
    renameSync(tmp, out);
  } catch (e) {
    // another build (a second server or test starting at the same time) put its copy there first
    rmSync(tmp, { recursive: true, force: true });
    if (!uiIsFresh(out)) throw e;
  }
  if (!quiet) process.stderr.write(`studio UI built into ${out} in ${Date.now() - t0} ms\n`);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--out');
  const out = at >= 0 ? resolve(args[at + 1] ?? '') : undefined;
  buildUi({ ...(out ? { out } : {}), force: args.includes('--force') }).catch((e) => {
    process.stderr.write(`${e?.message ?? e}\n`);
    process.exit(1);
  });
}
