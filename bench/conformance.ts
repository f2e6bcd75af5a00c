/**
 * Graft against the ONNX backend node tests of Debian's libonnx-testdata (see src/autodiff/conformance.ts):
 * ONNX read → write round trips with identical onnxruntime outputs, and `graft check` on every test whose
 * operators have gradient rules, with the test's floating-point inputs as the differentiated values.
 *
 *   npx tsx bench/conformance.ts [--dir DIR] [--per-op N] [--only REGEX] [--doc FILE] [--json FILE] [--no-grad]
 *
 * Writes the summary table (operator, tests, round trips, checked, passed) and the list of every test
 * that was not checked or failed, with the reason, to docs/conformance.md (--doc), and prints progress.
 * Exit code 1 when a round trip differs or a check fails.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEBIAN_NODE_TESTS,
  listNodeTests,
  runNodeTest,
  samplePerOperator,
  summarize,
  testOperator,
  type ConformanceCase,
} from '../src/autodiff/conformance.js';
import { decodeOnnx } from '../src/formats/onnx.js';
import { censusSection } from './op-census.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const { values: a } = parseArgs({
  options: {
    dir: { type: 'string', default: DEBIAN_NODE_TESTS },
    'per-op': { type: 'string' },
    only: { type: 'string' },
    doc: { type: 'string', default: join(ROOT, 'docs/conformance.md') },
    json: { type: 'string' },
    'no-grad': { type: 'boolean', default: false },
  },
});

/** The markdown report: method, summary table, and every test that was not checked or did not pass. */
export function conformanceReport(
  cases: ConformanceCase[],
  o: { dir: string; perOp?: number; seconds: number },
): string {
  const sum = summarize(cases);
  const tot = (f: (c: ConformanceCase) => boolean) => cases.filter(f).length;
  const lines = [
    '# Conformance: the ONNX backend node tests',
    '',
    `Written by \`npx tsx bench/conformance.ts\` from ${cases.length} tests in \`${o.dir}\` (Debian's \`libonnx-testdata\`)` +
      `${o.perOp ? `, at most ${o.perOp} per operator` : ''}, in ${o.seconds.toFixed(0)} s. Each test is one small model with its inputs.`,
    '',
    '- **round trip**: the model read by Graft and written back gives bit-identical onnxruntime outputs on the test inputs.',
    "- **checked / passed**: the test's floating-point inputs are differentiated by `graft check` (probe loss over every",
    '  floating-point output, finite differences in float64 where onnxruntime has double kernels) and the worst relative',
    '  error stays under its tolerance (1e-3 in float64, 2e-2 where anything runs in float32 or lower).',
    '- Tests not checked are counted by reason: onnxruntime cannot run the model, no floating-point inputs, an operator',
    '  without a gradient rule, or an operator that has no gradient (integer results, comparisons).',
    '',
    `Totals: ${tot((c) => c.roundTrip === 'identical')} of ${tot((c) => c.roundTrip !== 'onnxruntime cannot run')} runnable models round-trip identically ` +
      `(${tot((c) => c.roundTrip === 'onnxruntime cannot run')} onnxruntime cannot run); ` +
      `${tot((c) => c.grad === 'passed')} of ${tot((c) => c.grad === 'passed' || c.grad === 'failed')} gradient checks pass; ` +
      `${tot((c) => c.grad === 'no gradient rule')} tests need an operator without a rule.`,
    '',
    '| operator | tests | round trip | checked | passed | not checked |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    ...sum.map(
      (s) =>
        `| ${s.op} | ${s.tests} | ${s.roundTrips} | ${s.checked} | ${s.passed} | ${Object.entries(s.other)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')} |`,
    ),
    '',
    '## Tests not checked or not passing',
    '',
    '| test | round trip | gradient | detail |',
    '| --- | --- | --- | --- |',
    ...cases
      .filter((c) => c.grad !== 'passed' || c.roundTrip !== 'identical')
      .map(
        (c) =>
          `| ${c.test} | ${c.roundTrip} | ${c.grad}${c.worst != null ? ` (${c.worst.toExponential(1)})` : ''} | ${(c.detail ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`,
      ),
    '',
  ];
  return lines.join('\n');
}

async function main() {
  const t0 = Date.now();
  let tests = listNodeTests(a.dir);
  if (a.only) tests = tests.filter((t) => new RegExp(a.only!).test(t.name));
  const all = new Map(listNodeTests(a.dir).map((t) => [t.name, t]));
  const perOp = a['per-op'] ? Number(a['per-op']) : undefined;
  if (perOp) {
    const opOf = (t: (typeof tests)[number]) => {
      try {
        return testOperator(t, decodeOnnx(readFileSync(join(t.dir, 'model.onnx'))), all);
      } catch {
        return '?';
      }
    };
    tests = samplePerOperator(tests, opOf, perOp);
  }
  const cases: ConformanceCase[] = [];
  for (const t of tests) {
    const c = await runNodeTest(t, all, { noGrad: a['no-grad'] });
    cases.push(c);
    const mark = c.roundTrip === 'differs' || c.grad === 'failed' ? '✗' : ' ';
    process.stdout.write(
      `${mark} ${c.test.padEnd(60)} ${c.roundTrip.padEnd(22)} ${c.grad}${c.worst != null ? ` ${c.worst.toExponential(1)}` : ''}${mark !== ' ' ? `  ${c.detail ?? ''}` : ''}\n`,
    );
  }
  const seconds = (Date.now() - t0) / 1000;
  // the operator census (bench/op-census.ts) lives in the same file: keep it
  const census = existsSync(a.doc!) ? censusSection(readFileSync(a.doc!, 'utf8')) : '';
  writeFileSync(a.doc!, conformanceReport(cases, { dir: a.dir!, perOp, seconds }) + (census ? `\n${census}\n` : ''));
  if (a.json) writeFileSync(a.json, JSON.stringify(cases, null, 1));
  const bad = cases.filter((c) => c.roundTrip === 'differs' || c.grad === 'failed');
  process.stdout.write(`\n${cases.length} tests in ${seconds.toFixed(0)} s; ${bad.length} failing; wrote ${a.doc}\n`);
  if (bad.length) process.exitCode = 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
