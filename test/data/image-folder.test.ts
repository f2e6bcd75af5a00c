import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { listImageFolder, imageFolderBatches, decodeItems, type DecodeFailure } from '../../src/data/image-folder.js';
import type { ImagePreprocess } from '../../src/formats/preprocess.js';

const pre: ImagePreprocess = {
  layout: 'NCHW',
  width: 8,
  height: 8,
  channels: 3,
  channelOrder: 'RGB',
  mean: [0, 0, 0],
  std: [1, 1, 1],
  resize: 'stretch',
  source: 'default',
};

async function png(path: string, rgb: [number, number, number], w = 10, h = 6) {
  await sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toFile(path);
}

test('image folder: sorted classes, extension filter, corrupt images skipped and reported', async () => {
  const root = mkdtempSync(join(tmpdir(), 'graft-imgfolder-'));
  try {
    for (const c of ['zebra', 'apple', 'mango']) mkdirSync(join(root, c));
    await png(join(root, 'apple', 'a1.png'), [255, 0, 0]);
    await png(join(root, 'apple', 'a2.PNG'), [250, 0, 0]);
    await png(join(root, 'mango', 'm1.png'), [0, 255, 0]);
    await png(join(root, 'zebra', 'z1.png'), [0, 0, 255]);
    writeFileSync(join(root, 'zebra', 'broken.png'), Buffer.from('\x89PNG\r\n\x1a\nthis is not really a png'));
    writeFileSync(join(root, 'zebra', 'notes.txt'), 'not an image');
    writeFileSync(join(root, 'stray.png'), 'top-level files are ignored');

    const f = listImageFolder(root);
    assert.deepEqual(f.classes, ['apple', 'mango', 'zebra']);
    assert.deepEqual(
      f.items.map((i) => [i.path.slice(root.length + 1), i.label]),
      [
        ['apple/a1.png', 0],
        ['apple/a2.PNG', 0],
        ['mango/m1.png', 1],
        ['zebra/broken.png', 2],
        ['zebra/z1.png', 2],
      ],
    );

    const reported: DecodeFailure[] = [];
    const batches = [];
    for await (const b of imageFolderBatches(f.items, pre, 2, (e) => reported.push(e))) batches.push(b);
    assert.equal(batches.length, 3);
    const decoded = batches.flatMap((b) => b.items);
    assert.equal(decoded.length, 4);
    assert.deepEqual(
      decoded.map((i) => i.label),
      [0, 0, 1, 2],
    );
    assert.equal(reported.length, 1);
    assert.ok(reported[0]!.path.endsWith(join('zebra', 'broken.png')));
    assert.deepEqual(
      batches[1]!.failed.map((x) => x.path),
      [join(root, 'zebra', 'broken.png')],
    );
    // the batch with a failure holds only the good image: mango is green
    const mid = batches[1]!;
    assert.deepEqual(mid.tensor.dims, [1, 3, 8, 8]);
    const t = mid.tensor.data as Float32Array;
    assert.ok(t[0]! < 0.02 && t[64]! > 0.98 && t[128]! < 0.02, 'green image, RGB, /255');
    const tz = batches[2]!.tensor.data as Float32Array;
    assert.ok(tz[0]! < 0.02 && tz[128]! > 0.98, 'blue image');
    // first batch: red
    const t0 = batches[0]!.tensor.data as Float32Array;
    assert.ok(t0[0]! > 0.95 && t0[64]! < 0.05);

    // a missing file (deleted after listing) is reported too
    const gone = await decodeItems([{ path: join(root, 'apple', 'gone.png'), label: 0 }], pre);
    assert.equal(gone.items.length, 0);
    assert.match(gone.failed[0]!.error, /not found/);

    // a truncated JPEG and a text file named .png, beside a good image
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 9, g: 99, b: 199 } } })
      .jpeg()
      .toBuffer();
    writeFileSync(join(root, 'apple', 'cut.jpg'), jpeg.subarray(0, jpeg.length >> 1));
    writeFileSync(join(root, 'apple', 'text.png'), 'plain text\n');
    const mixed = await decodeItems(
      ['cut.jpg', 'a1.png', 'text.png'].map((n) => ({ path: join(root, 'apple', n), label: 0 })),
      pre,
    );
    assert.deepEqual(
      mixed.items.map((i) => i.path),
      [join(root, 'apple', 'a1.png')],
    );
    assert.deepEqual(
      mixed.failed.map((x) => x.path),
      ['cut.jpg', 'text.png'].map((n) => join(root, 'apple', n)),
    );
    for (const x of mixed.failed) assert.ok(x.error.startsWith(x.path), x.error);
    assert.deepEqual(mixed.tensor.dims, [1, 3, 8, 8]);

    assert.deepEqual(listImageFolder(root, { extensions: ['.txt'] }).items.length, 1);
    assert.throws(() => listImageFolder(join(root, 'nope')), /not found/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
