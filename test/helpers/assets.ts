/**
 * Real-data tests find models and datasets through GRAFT_ASSETS (default ../shared).
 * A test that needs an external asset declares it: `test(name, { skip: needs('models/x.onnx') }, fn)`.
 * When the asset is missing the test is skipped with the missing path in its reason; with
 * GRAFT_REQUIRE_ASSETS=1 (CI) nothing is skipped, so the test runs and fails loudly on the missing file.
 */
import { existsSync } from 'node:fs';
import { assetPath, assetsDir } from '../../src/data/assets.js';

const required = () => process.env['GRAFT_REQUIRE_ASSETS'] === '1';

/** The skip reason for a test needing these paths (absolute, or relative to GRAFT_ASSETS), or false. */
export function needs(...paths: string[]): string | false {
  const missing = paths.map((p) => (p.startsWith('/') ? p : assetPath(p))).filter((p) => !existsSync(p));
  if (missing.length === 0 || required()) return false;
  return `missing asset: ${missing.join(', ')} (set GRAFT_ASSETS to the folder holding models/ and datasets/; now ${assetsDir()})`;
}

/** The path of an asset; a missing one throws an error naming it. */
export function asset(rel: string): string {
  const p = assetPath(rel);
  if (!existsSync(p))
    throw new Error(
      `MISSING TEST ASSET ${p} — set GRAFT_ASSETS to the folder holding models/ and datasets/ (now ${assetsDir()})`,
    );
  return p;
}

/**
 * A value made on first use and then kept, so that a test file loads its assets inside its tests and
 * never at import (a bare clone then skips those tests instead of failing the whole file).
 */
export function lazy<T>(make: () => T): () => T {
  let made: { value: T } | undefined;
  return () => (made ??= { value: make() }).value;
}

/** The path of an asset without checking it (for a test declared with `needs`): see src/data/assets.ts. */
export { assetPath } from '../../src/data/assets.js';

/**
 * `make()` unless `skip` is a reason, in which case nothing is made and undefined stands in for the
 * value. For what a test file builds at import from external assets and only tests declared with the
 * same `skip` use: a bare clone imports the file without the assets, and those tests are skipped.
 */
export function unlessSkipped<T>(skip: string | false, make: () => T): T {
  return (skip ? undefined : make()) as T;
}
