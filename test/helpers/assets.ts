/** Real-data tests find models and datasets through GRAFT_ASSETS (default ../shared); a missing one fails loudly. */
import { existsSync } from 'node:fs';
import { assetPath, assetsDir } from '../../src/data/assets.js';

export function asset(rel: string): string {
  const p = assetPath(rel);
  if (!existsSync(p))
    throw new Error(`MISSING TEST ASSET ${p} — set GRAFT_ASSETS to the folder holding models/ and datasets/ (now ${assetsDir()})`);
  return p;
}
