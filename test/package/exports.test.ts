/**
 * The public API by area: every area barrel (src/<area>/index.ts) is a package subpath, `graft` holds
 * exactly the union of the barrels' names (a name two barrels export differently would silently drop
 * out of `export *`), and no barrel renames what it re-exports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/data/assets.js';

const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
  exports: Record<string, { types: string; default: string }>;
};
const root = readFileSync(join(projectRoot, 'src/index.ts'), 'utf8');
const areas = [...root.matchAll(/^export \* from '\.\/(\w+)\/index\.js';$/gm)].map((m) => m[1]!);

test('every area re-exported by graft is a package subpath pointing at its built barrel', () => {
  assert.ok(areas.length >= 14, areas.join(', '));
  const subpaths = Object.keys(pkg.exports)
    .filter((k) => k !== '.')
    .map((k) => k.slice(2))
    .sort();
  assert.deepEqual(subpaths, [...areas].sort());
  for (const a of areas)
    assert.deepEqual(pkg.exports[`./${a}`], { types: `./dist/${a}/index.d.ts`, default: `./dist/${a}/index.js` });
});

test('graft exports exactly the union of the area barrels, each name once, none renamed', async () => {
  const top = (await import('../../src/index.js')) as Record<string, unknown>;
  const owner = new Map<string, string>();
  for (const a of areas) {
    const src = readFileSync(join(projectRoot, 'src', a, 'index.ts'), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '');
    const renamed = [...src.matchAll(/\b(\w+) as (\w+)\b/g)].filter(
      (m) => !/export \* as/.test(src.slice(Math.max(0, m.index! - 12), m.index! + m[0].length)),
    );
    assert.deepEqual(
      renamed.map((m) => m[0]),
      [],
      `src/${a}/index.ts renames on re-export`,
    );
    const barrel = (await import(`../../src/${a}/index.js`)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(barrel)) {
      assert.ok(!owner.has(name), `${name} is exported by both graft/${owner.get(name)} and graft/${a}`);
      owner.set(name, a);
      assert.equal(top[name], value, `graft's ${name} is not graft/${a}'s`);
    }
  }
  const extra = Object.keys(top).filter((k) => !owner.has(k));
  assert.deepEqual(extra, ['GraftError']);
});
