/**
 * The test run's reporter: node's own output (spec on a terminal, TAP otherwise, as node 20 picks by
 * default, so `# tests N`, `# pass N`, `# skipped N` stay as they are), then one closing line counting the
 * tests skipped for a missing asset (test/helpers/assets.ts `needs`) and saying how to get the assets.
 * Plain JavaScript so that node loads it without a TypeScript loader.
 *   node --test --test-reporter=./test/helpers/reporter.mjs --test-reporter-destination=stdout …
 */
import { Readable } from 'node:stream';
import { spec, tap } from 'node:test/reporters';

const MISSING = 'missing asset: ';

export default async function* graftReporter(source) {
  const skippedForAssets = [];
  const paths = new Set();
  async function* watched() {
    for await (const event of source) {
      const skip = event.type === 'test:pass' ? event.data.skip : undefined;
      if (typeof skip === 'string' && skip.startsWith(MISSING)) {
        skippedForAssets.push(event.data.name);
        const list = skip.slice(MISSING.length).split(' (')[0] ?? '';
        for (const p of list.split(', ')) if (p) paths.add(p);
      }
      yield event;
    }
  }
  if (process.stdout.isTTY) yield* Readable.from(watched()).pipe(new spec());
  else yield* tap(watched());
  const mark = process.stdout.isTTY ? 'ℹ' : '#';
  const n = skippedForAssets.length;
  yield n === 0
    ? `${mark} skipped for missing assets: 0\n`
    : `${mark} skipped for missing assets: ${n} test${n === 1 ? '' : 's'} (${paths.size} missing path${paths.size === 1 ? '' : 's'}); ` +
      `to run them, set GRAFT_ASSETS to the folder holding models/ and datasets/ (default ../shared beside the project; README "Assets"); ` +
      `GRAFT_REQUIRE_ASSETS=1 turns these skips into failures\n`;
}
