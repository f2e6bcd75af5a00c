import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classificationMetrics, confusionMatrix, formatMetrics } from '../../src/eval/metrics.js';
import { writeReport, confusionSvg } from '../../src/eval/report.js';

// Hand-computed example: 3 classes, 10 examples.
//            predicted 0  1  2
//   true 0            2  1  0
//   true 1            0  1  1
//   true 2            1  1  3
const yTrue = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2];
const yPred = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1];
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} ≠ ${b}`);

test('confusion matrix, accuracy, per-class precision/recall/F1 and macro averages on a hand-computed example', () => {
  assert.deepEqual(confusionMatrix(yTrue, yPred, 3), [
    [2, 1, 0],
    [0, 1, 1],
    [1, 1, 3],
  ]);
  const m = classificationMetrics(yTrue, yPred, ['a', 'b', 'c']);
  assert.equal(m.n, 10);
  close(m.accuracy, 0.6);
  const [a, b, c] = m.perClass;
  close(a!.precision, 2 / 3);
  close(a!.recall, 2 / 3);
  close(a!.f1, 2 / 3);
  close(b!.precision, 1 / 3);
  close(b!.recall, 1 / 2);
  close(b!.f1, 0.4);
  close(c!.precision, 3 / 4);
  close(c!.recall, 3 / 5);
  close(c!.f1, 2 / 3);
  assert.deepEqual(
    m.perClass.map((x) => [x.support, x.predicted]),
    [
      [3, 3],
      [2, 3],
      [5, 4],
    ],
  );
  close(m.macroPrecision, 7 / 12);
  close(m.macroRecall, 53 / 90);
  close(m.macroF1, 26 / 45);
  assert.match(formatMetrics(m, 'test'), /accuracy 0\.6000, macro-F1 0\.5778 on 10 examples/);
});

test('metrics edge cases: a class never predicted, a class absent from both, bad labels', () => {
  // class 1 occurs but is never predicted (precision 0 by convention); class 2 occurs nowhere
  const m = classificationMetrics([0, 0, 1, 1], [0, 0, 0, 0], 3);
  assert.deepEqual(m.labels, ['0', '1', '2']);
  close(m.accuracy, 0.5);
  close(m.perClass[0]!.precision, 0.5);
  close(m.perClass[0]!.recall, 1);
  close(m.perClass[1]!.precision, 0);
  close(m.perClass[1]!.recall, 0);
  close(m.perClass[1]!.f1, 0);
  close(m.macroF1, (2 / 3 + 0) / 2); // averaged over the two classes present
  assert.throws(() => confusionMatrix([0, 3], [0, 0], 3), /out of range/);
  assert.throws(() => confusionMatrix([0], [0, 1], 3), /1 true labels but 2 predictions/);
  assert.equal(classificationMetrics([], [], 2).accuracy, 0);
});

test('report: JSON plus a self-contained HTML page with the confusion heat-map and per-class bars', () => {
  const m = classificationMetrics(yTrue, yPred, ['T-shirt', 'trouser', '<odd & name>']);
  const dir = mkdtempSync(join(tmpdir(), 'graft-report-'));
  try {
    const files = writeReport(join(dir, 'sub', 'report.html'), m, { model: 'm', data: 'd', details: { seconds: 1.5 } });
    assert.deepEqual(files, [join(dir, 'sub', 'report.html'), join(dir, 'sub', 'report.json')]);
    const html = readFileSync(files[0]!, 'utf8');
    assert.equal((html.match(/<svg /g) ?? []).length, 2, 'heat-map and bars');
    assert.equal(
      (html.match(/<rect [^>]*stroke="#ccc"/g) ?? []).length,
      9,
      'one heat-map cell per (true, predicted) pair',
    );
    assert.ok(!/<script|src=|href=/.test(html), 'nothing external, no scripts');
    assert.ok(html.includes('&lt;odd &amp; name&gt;') && !html.includes('<odd'), 'labels are escaped');
    const json = JSON.parse(readFileSync(files[1]!, 'utf8'));
    assert.deepEqual(json.metrics.confusion, m.confusion);
    assert.equal(json.model, 'm');
    assert.deepEqual(writeReport(join(dir, 'only.json'), m), [join(dir, 'only.json')]);
    assert.ok(confusionSvg(m).startsWith('<svg'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
