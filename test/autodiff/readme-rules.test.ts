/** The README's list of differentiable operators is exactly the registered gradient rules. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { RULES } from '../../src/autodiff/rules/index.js';

test('README "Gradient rules exist for" names every registered rule and nothing else', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('Gradient rules exist for:');
  assert.ok(start >= 0, 'README has no "Gradient rules exist for:" paragraph');
  // The list runs up to the first full stop that ends a sentence.
  const para = readme.slice(start + 'Gradient rules exist for:'.length, readme.indexOf('. ', start));
  const listed = new Set(
    para
      .replace(/\([^)]*\)/g, ' ')
      .split(/[\s,]+/)
      .filter((w) => /^[A-Z][A-Za-z0-9]*$/.test(w)),
  );
  const registered = new Set(Object.keys(RULES));
  assert.deepEqual([...listed].filter((o) => !registered.has(o)).sort(), [], 'listed in the README without a rule');
  assert.deepEqual(
    [...registered].filter((o) => !listed.has(o)).sort(),
    [],
    'registered rules missing from the README',
  );
});
