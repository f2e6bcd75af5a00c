/** Pixel CSVs become model-ready examples of exactly side × side values, in both preparations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPixelDataset } from '../../src/data/pixel-dataset.js';
import { requireAsset } from '../../src/data/assets.js';

test('stretch and mnist preparations give one grey channel of side × side values (the 8×8 digits to 28×28)', async () => {
  const file = requireAsset('datasets/digits-8x8/digits.csv.gz'); // bundled in examples/assets
  for (const preprocess of ['stretch', 'mnist'] as const) {
    const d = await loadPixelDataset(file, { side: 28, pixelMax: 16, preprocess });
    assert.equal(d.x.length, 1797);
    for (const x of d.x.slice(0, 20)) assert.equal(x.length, 28 * 28, `${preprocess}: ${x.length} values`);
    const max = Math.max(...d.x.slice(0, 20).map((x) => Math.max(...x)));
    assert.ok(max > 200 && max <= 255, `${preprocess}: brightest pixel ${max}`);
  }
});
