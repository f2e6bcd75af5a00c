/**
 * Fuzzing every reader of untrusted files for a short fixed budget (bench/fuzz.ts runs the same targets long).
 * For each target (test/fuzz/targets.ts): its committed corpus (test/fixtures/fuzz-corpus/<target>/) is
 * present, small, and loads; a fixed-seed run of mutated corpus inputs throws nothing but GraftError and no
 * input takes over 2 s; and every minimized input kept in test/fixtures/fuzz-regressions/<target>/ (bugs the
 * fuzzer found) is handled the same way.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  CORPUS_DIR,
  REGRESSIONS_DIR,
  TARGETS,
  Scratch,
  corpus,
  inputArb,
  materialize,
  readCases,
  runOne,
  type Input,
} from './targets.js';

/** Inputs per reader in `npm test` (about 0.5–2 s each on one core). */
const RUNS = Number(process.env['GRAFT_FUZZ_RUNS'] ?? 300);
const scratch = new Scratch();
after(() => scratch.dispose());

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}\n${e.stack?.split('\n').slice(1, 4).join('\n')}` : String(e);
}

test('the fuzz corpus: every target has seeds, each case under 10 KB, all under 200 KB', () => {
  let total = 0;
  for (const t of TARGETS) {
    const cases = corpus(t);
    assert.ok(
      Object.keys(cases).length > 0,
      `no corpus for ${t.name} in ${CORPUS_DIR} (node --import tsx test/fuzz/make-corpus.ts)`,
    );
    for (const [name, files] of Object.entries(cases)) {
      const bytes = Object.values(files).reduce((s, b) => s + b.length, 0);
      assert.ok(bytes < 10_000, `${t.name}/${name} is ${bytes} bytes`);
      total += bytes;
    }
  }
  assert.ok(total < 200_000, `corpus is ${total} bytes`);
  // the committed corpus is what the targets make (a changed seed must be re-committed)
  for (const t of TARGETS)
    assert.deepEqual(
      Object.keys(corpus(t)).sort(),
      Object.keys(t.seeds()).sort(),
      `${t.name}: corpus and seeds differ`,
    );
});

for (const t of TARGETS) {
  test(`fuzz ${t.name}: the corpus loads; ${RUNS} mutated inputs throw only GraftError, none over 2 s`, () => {
    const cases = corpus(t);
    for (const [name, files] of Object.entries(cases)) {
      assert.doesNotThrow(() => t.run(files, scratch), `corpus case ${t.name}/${name} must load`);
    }
    const seeds = Object.values(cases);
    const r = fc.check(
      fc.property(inputArb, (input: Input) => {
        const files = materialize(t, seeds, input);
        const t0 = performance.now();
        const e = runOne(t, files, scratch);
        const ms = performance.now() - t0;
        if (e) throw new Error(`${t.name}: not a GraftError: ${describe(e)}`);
        if (ms > 2000) throw new Error(`${t.name}: one input took ${ms.toFixed(0)} ms`);
      }),
      { numRuns: RUNS, seed: 20261207 },
    );
    if (r.failed) {
      assert.fail(
        `${t.name} failed after ${r.numRuns} inputs (seed ${r.seed}, path ${r.counterexamplePath}): ${describe(r.errorInstance)}\n` +
          `minimal input: ${JSON.stringify(r.counterexample)}\n(bench/fuzz.ts --reader ${t.name} writes such inputs to test/fixtures/fuzz-regressions/)`,
      );
    }
  });
}

test('fuzz regressions: every minimized input the fuzzer found is now a GraftError or loads', () => {
  let n = 0;
  let readers: string[] = [];
  try {
    readers = readdirSync(REGRESSIONS_DIR).filter((d) => statSync(join(REGRESSIONS_DIR, d)).isDirectory());
  } catch {
    /* none yet */
  }
  for (const r of readers) {
    const t = TARGETS.find((x) => x.name === r);
    assert.ok(t, `regressions for unknown target ${r}`);
    for (const [name, files] of Object.entries(readCases(join(REGRESSIONS_DIR, r)))) {
      const t0 = performance.now();
      const e = runOne(t, files, scratch);
      assert.equal(e, undefined, `${r}/${name}: ${describe(e)}`);
      assert.ok(performance.now() - t0 < 2000, `${r}/${name} took over 2 s`);
      n++;
    }
  }
  assert.ok(n > 0, 'no regression cases found');
});
