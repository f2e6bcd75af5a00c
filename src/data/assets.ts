/**
 * Where pretrained models and datasets live on this machine: one setting, GRAFT_ASSETS, defaulting to
 * the `shared` folder beside the project. The demo's two small files also ship inside the repository
 * (examples/assets/, with their licences), and are used when GRAFT_ASSETS lacks them, so the demo runs on
 * a bare clone. A missing asset is an error that says how to get it.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraftError } from '../util/errors.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The project root (two levels above src/data, and above dist/data once built). */
export const projectRoot = resolve(here, '../..');

/** The assets bundled in the repository (and the npm package), relative to GRAFT_ASSETS's layout. */
export const BUNDLED_ASSETS: readonly string[] = ['models/onnxjs-demo/mnist.onnx', 'datasets/digits-8x8/digits.csv.gz'];
/** The folder holding the bundled copies, in the same models/ and datasets/ layout. */
export const bundledAssetsDir = join(projectRoot, 'examples', 'assets');

export function assetsDir(): string {
  return resolve(process.env['GRAFT_ASSETS'] ?? join(projectRoot, '..', 'shared'));
}

/**
 * The path of an asset under GRAFT_ASSETS; for a bundled asset that GRAFT_ASSETS lacks, the bundled copy.
 * Other assets get their GRAFT_ASSETS path whether or not it exists.
 */
export function assetPath(rel: string): string {
  const p = join(assetsDir(), rel);
  if (existsSync(p)) return p;
  const key = normalize(rel).split('\\').join('/');
  if (BUNDLED_ASSETS.includes(key)) {
    const bundled = join(bundledAssetsDir, key);
    if (existsSync(bundled)) return bundled;
  }
  return p;
}

/** The path of an asset, or a loud error naming the setting and what is missing. */
export function requireAsset(rel: string): string {
  const p = assetPath(rel);
  if (!existsSync(p))
    throw new GraftError(
      `missing asset: ${p}\n` +
        `Graft looks for models and datasets under GRAFT_ASSETS (now ${assetsDir()}). ` +
        `Set GRAFT_ASSETS to the folder that holds models/ and datasets/ (see README, "Assets").`,
    );
  return p;
}
