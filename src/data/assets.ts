/**
 * Where pretrained models and datasets live on this machine: one setting, GRAFT_ASSETS, defaulting to
 * the `shared` folder beside the project. A missing asset is an error that says how to get it.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraftError } from '../util/errors.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The project root (two levels above src/data, and above dist/data once built). */
export const projectRoot = resolve(here, '../..');

export function assetsDir(): string {
  return resolve(process.env['GRAFT_ASSETS'] ?? join(projectRoot, '..', 'shared'));
}

export function assetPath(rel: string): string {
  return join(assetsDir(), rel);
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
