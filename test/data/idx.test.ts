import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readIdx, readIdxDataset, parseIdx } from '../../src/data/idx.js';
import { asset, needs } from '../helpers/assets.js';

const dir = () => asset('datasets/fashion-mnist');
const skip = needs('datasets/fashion-mnist');

test('Fashion-MNIST train: 60k 28×28 images, 6000 per class', { skip }, () => {
  const d = readIdxDataset(join(dir(), 'train-images-idx3-ubyte.gz'), join(dir(), 'train-labels-idx1-ubyte.gz'));
  assert.equal(d.images.length, 60000);
  assert.equal(d.labels.length, 60000);
  assert.deepEqual(d.shape, [28, 28]);
  assert.equal(d.numClasses, 10);
  assert.equal(d.images[123]!.length, 784);
  const hist = new Array(10).fill(0);
  for (const y of d.labels) hist[y]++;
  assert.deepEqual(hist, new Array(10).fill(6000));
  // images are views into one buffer, not copies
  assert.equal(d.images[0]!.buffer, d.images[59999]!.buffer);
  assert.ok(d.images[0]!.some((v) => v > 0));
});

test('Fashion-MNIST test: 10k images, dims from the header', { skip }, () => {
  const im = readIdx(join(dir(), 't10k-images-idx3-ubyte.gz'));
  assert.deepEqual(im.dims, [10000, 28, 28]);
  assert.equal(im.data.length, 10000 * 784);
  const d = readIdxDataset(join(dir(), 't10k-images-idx3-ubyte.gz'), join(dir(), 't10k-labels-idx1-ubyte.gz'));
  assert.equal(d.labels.length, 10000);
  const hist = new Array(10).fill(0);
  for (const y of d.labels) hist[y]++;
  assert.deepEqual(hist, new Array(10).fill(1000));
});

test('truncated and corrupt files fail with an error naming the file', { skip }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'graft-idx-'));
  try {
    const raw = gunzipSync(readFileSync(join(dir(), 't10k-labels-idx1-ubyte.gz')));
    const cut = join(tmp, 'cut-labels-idx1-ubyte');
    writeFileSync(cut, raw.subarray(0, 500));
    assert.throws(
      () => readIdx(cut),
      (e: Error) => e.message.includes(cut) && /truncated/.test(e.message),
    );
    const cutGz = join(tmp, 'cut-labels-idx1-ubyte.gz');
    const gz = gzipSync(raw);
    writeFileSync(cutGz, gz.subarray(0, gz.length >> 1));
    assert.throws(
      () => readIdx(cutGz),
      (e: Error) => e.message.includes(cutGz),
    );
    const bad = join(tmp, 'bad-magic');
    writeFileSync(bad, Buffer.from('hello world, not idx'));
    assert.throws(
      () => readIdx(bad),
      (e: Error) => e.message.includes(bad) && /magic/.test(e.message),
    );
    assert.throws(() => readIdx(join(tmp, 'missing')), /not found/);
    // mismatched counts between images and labels
    assert.throws(
      () => readIdxDataset(join(dir(), 't10k-images-idx3-ubyte.gz'), join(dir(), 'train-labels-idx1-ubyte.gz')),
      /10000 images but .* 60000 labels/,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('parseIdx reads a hand-made file', () => {
  const b = Buffer.from([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]);
  const a = parseIdx(b);
  assert.deepEqual(a.dims, [2, 3]);
  assert.deepEqual([...a.data], [1, 2, 3, 4, 5, 6]);
  assert.throws(() => parseIdx(Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0])), /not supported/);
});
