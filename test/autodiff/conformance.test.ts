/**
 * The ONNX backend node tests of Debian's libonnx-testdata, sampled per operator (the full run is
 * bench/conformance.ts): every model onnxruntime runs round-trips through Graft's reader and writer with
 * identical outputs, and every test whose operators have gradient rules passes `graft check`.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needs } from '../helpers/assets.js';
import {
  DEBIAN_NODE_TESTS,
  listNodeTests,
  runNodeTest,
  samplePerOperator,
  testOperator,
} from '../../src/autodiff/conformance.js';
import { decodeOnnx } from '../../src/formats/onnx.js';

test('ONNX node tests: round trips are identical and gradient checks pass (2 per operator)', {
  skip: needs(DEBIAN_NODE_TESTS),
  timeout: 240_000,
}, async () => {
  const tests = listNodeTests();
  const all = new Map(tests.map((t) => [t.name, t]));
  const opOf = (t: (typeof tests)[number]) => {
    try {
      return testOperator(t, decodeOnnx(readFileSync(join(t.dir, 'model.onnx'))), all);
    } catch {
      return '?';
    }
  };
  const sample = samplePerOperator(tests, opOf, 2);
  const cases = [];
  for (const t of sample) cases.push(await runNodeTest(t, all, { samples: 4 }));
  const differs = cases.filter((c) => c.roundTrip === 'differs' || c.roundTrip === 'unreadable');
  assert.deepEqual(
    differs.map((c) => `${c.test}: ${c.detail}`),
    [],
  );
  const failed = cases.filter((c) => c.grad === 'failed');
  assert.deepEqual(
    failed.map((c) => `${c.test}: ${c.detail}`),
    [],
  );
  // the run says something: most runnable models, and a good number of gradient checks
  assert.ok(cases.filter((c) => c.roundTrip === 'identical').length > 0.8 * cases.length, 'round trips');
  assert.ok(
    cases.filter((c) => c.grad === 'passed').length >= 100,
    `only ${cases.filter((c) => c.grad === 'passed').length} checks passed`,
  );
});
