import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { mapAhead } from '../../src/data/pipeline.js';
import { normalize } from '../../src/data/image.js';
import {
  listImageFolder,
  imageFolderBatches,
  type DecodeFailure,
  type DecodedBatch,
} from '../../src/data/image-folder.js';
import { loadModel } from '../../src/formats/load.js';
import { getPreprocess } from '../../src/formats/preprocess.js';
import { extractFeatures, type ExtractBatch, type ExtractProgress } from '../../src/features/extract.js';
import { FeatureCache } from '../../src/features/cache.js';
import { Rng } from '../../src/util/random.js';
import { asset, needs } from '../helpers/assets.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('mapAhead: results in order; with a slow consumer at most `ahead` items start beyond the one being consumed', async () => {
  for (const ahead of [0, 1, 3]) {
    let started = 0,
      consumed = 0,
      most = 0;
    const seen: number[] = [];
    // steps finish out of order (later items faster), the consumer is slower than the steps
    const step = async (x: number) => {
      started++;
      most = Math.max(most, started - consumed);
      await sleep(x % 2 ? 1 : 6);
      return x * 10;
    };
    for await (const v of mapAhead(
      Array.from({ length: 9 }, (_, i) => i),
      step,
      ahead,
    )) {
      seen.push(v);
      await sleep(8); // the slow consumer (an onnxruntime run)
      consumed++;
    }
    assert.deepEqual(seen, [0, 10, 20, 30, 40, 50, 60, 70, 80]);
    assert.equal(most, ahead + 1, `ahead ${ahead}: in flight, counting the one consumed`);
  }
});

test('mapAhead: an error from a step or from the source comes at its own place, after the earlier results; breaking off closes the source', async () => {
  const got: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const v of mapAhead(
        [0, 1, 2, 3, 4],
        async (x) => {
          if (x === 3) throw new Error('bad item 3');
          return x;
        },
        2,
      ))
        got.push(v);
    })(),
    /bad item 3/,
  );
  assert.deepEqual(got, [0, 1, 2]);

  async function* source() {
    yield 0;
    yield 1;
    throw new Error('source broke');
  }
  const got2: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const v of mapAhead(source(), async (x) => x, 4)) got2.push(v);
    })(),
    /source broke/,
  );
  assert.deepEqual(got2, [0, 1]);

  let closed = false;
  function* endless() {
    try {
      for (let i = 0; ; i++) yield i;
    } finally {
      closed = true;
    }
  }
  for await (const v of mapAhead(endless(), async (x) => x, 2)) if (v === 4) break;
  assert.ok(closed);
});

test('normalize by table gives exactly the float32 values of (v/255 − mean)/std', () => {
  const rng = new Rng(4);
  const img = {
    data: Uint8Array.from({ length: 5 * 7 * 3 }, () => Math.floor(rng.uniform() * 256)),
    width: 5,
    height: 7,
    channels: 3,
  };
  for (const p of [
    { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channelOrder: 'RGB' as const },
    { mean: [0.5], std: [0.5], channelOrder: 'BGR' as const },
  ]) {
    const got = normalize(img, p);
    const want = new Float32Array(got.length);
    for (let k = 0; k < 3; k++) {
      const src = p.channelOrder === 'BGR' ? 2 - k : k;
      const mean = p.mean[k] ?? p.mean[0]!,
        std = p.std[k] ?? p.std[0]!;
      for (let i = 0; i < 35; i++) want[k * 35 + i] = (img.data[i * 3 + src]! / 255 - mean) / std;
    }
    assert.deepEqual(got, want);
  }
});

const MODEL = 'models/coral/mobilenet_v2_1.0_224_quant.tflite';
const PHOTOS = ['hot_dog.jpg', 'kite_and_cold.jpg', 'cat_720p.jpg', 'face.jpg'].map((f) => `models/coral/${f}`);

/** A JPEG folder of 2 classes from the shared photos: crops, flips and sizes, plus duplicates (for the cache). */
async function jpegFolder(dir: string, perClass: number): Promise<void> {
  for (const [c, cls] of ['a', 'b'].entries()) {
    mkdirSync(join(dir, cls));
    for (let i = 0; i < perClass; i++) {
      const src = asset(PHOTOS[(i + c) % PHOTOS.length]!);
      let img = sharp(src).resize(160 + 16 * (i % 5), 120 + 24 * (i % 3), {
        fit: 'cover',
        position: i % 2 ? 'left' : 'right',
      });
      if (i % 3 === 1) img = img.flop();
      await img.jpeg({ quality: 85 }).toFile(join(dir, cls, `img${String(i).padStart(2, '0')}.jpg`));
    }
  }
}

test('pipelined extraction of a JPEG folder: identical features, order and progress to decoding batch by batch; with a cache too', {
  skip: needs(MODEL, ...PHOTOS),
}, async () => {
  const model = loadModel(asset(MODEL));
  const dir = mkdtempSync(join(tmpdir(), 'graft-pipeline-'));
  try {
    await jpegFolder(dir, 9);
    const paths = listImageFolder(dir).items.map((it) => it.path);
    // batches of 5 with a repeat of earlier files later on (a cache then serves them, as it does sequentially)
    const all = [...paths, paths[0]!, paths[3]!, paths[11]!];
    const batches = (): ExtractBatch[] =>
      Array.from({ length: Math.ceil(all.length / 5) }, (_, i) => all.slice(i * 5, i * 5 + 5));
    const runWith = async (prefetch: number, cache?: FeatureCache) => {
      const prog: ExtractProgress[] = [];
      const f = await extractFeatures(model, undefined, batches(), {
        batchSize: 3,
        prefetch,
        ...(cache ? { cache } : {}),
        onProgress: (p) => prog.push(p),
      });
      return { f, prog };
    };
    const seq = await runWith(0),
      pipe = await runWith(3);
    assert.equal(seq.f.length, all.length);
    assert.deepEqual(pipe.f, seq.f);
    assert.deepEqual(pipe.prog, seq.prog);
    assert.ok(
      seq.f[0]!.some((v, i) => Math.abs(v - seq.f[1]![i]!) > 1e-3),
      'different images, different features',
    );
    assert.deepEqual(seq.f[all.length - 3], seq.f[0]);

    const seqC = await runWith(0, FeatureCache.open(join(dir, 'cache-seq')));
    const pipeC = await runWith(2, FeatureCache.open(join(dir, 'cache-pipe')));
    assert.deepEqual(pipeC.f, seqC.f);
    assert.deepEqual(pipeC.prog, seqC.prog);
    assert.deepEqual(
      pipeC.prog.at(-1),
      { examples: 21, cached: 3, computed: 18, runs: 7, skipped: 0 },
      'the 3 repeats come from the cache',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pipelined extraction: an unreadable image in the folder is reported by path, in order; without a handler it is an error naming it', {
  skip: needs(MODEL, ...PHOTOS),
}, async () => {
  const model = loadModel(asset(MODEL));
  const dir = mkdtempSync(join(tmpdir(), 'graft-pipeline-bad-'));
  try {
    await jpegFolder(dir, 4);
    const broken = join(dir, 'b', 'img01.jpg');
    writeFileSync(broken, 'not a jpeg\n');
    const truncated = join(dir, 'a', 'img02.jpg');
    const bytes = await sharp(asset(PHOTOS[0]!)).jpeg().toBuffer();
    writeFileSync(truncated, bytes.subarray(0, bytes.length >> 2));
    const paths = listImageFolder(dir).items.map((it) => it.path);
    const batches = [paths.slice(0, 3), paths.slice(3, 6), paths.slice(6)];
    await assert.rejects(extractFeatures(model, undefined, batches, { batchSize: 2, prefetch: 2 }), (e: Error) =>
      e.message.includes(truncated),
    );
    for (const prefetch of [0, 2]) {
      const bad: [number, string][] = [];
      const f = await extractFeatures(model, undefined, batches, {
        batchSize: 2,
        prefetch,
        onUnreadable: (x) => bad.push([x.index, x.input as string]),
      });
      assert.deepEqual(bad, [
        [2, truncated],
        [5, broken],
      ]);
      assert.equal(f.length, 6);
    }

    // the image-folder batches, decoded ahead: failures reported in item order as batches are handed over
    const pre = getPreprocess(model)!;
    const reported: DecodeFailure[] = [];
    const got: DecodedBatch[] = [];
    for await (const b of imageFolderBatches(listImageFolder(dir).items, pre, 3, (x) => reported.push(x), 2)) {
      assert.equal(reported.length, got.length === 0 ? 1 : 2, 'reported with its own batch, not earlier');
      got.push(b);
    }
    assert.deepEqual(
      reported.map((r) => r.path),
      [truncated, broken],
    );
    assert.deepEqual(
      got.map((b) => b.items.length),
      [2, 2, 2],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('extractFeatures keeps its bound: input batches taken at most prefetch + 1 runs ahead of those finished', {
  skip: needs(MODEL, ...PHOTOS),
}, async () => {
  const model = loadModel(asset(MODEL));
  const dir = mkdtempSync(join(tmpdir(), 'graft-pipeline-bound-'));
  try {
    await jpegFolder(dir, 6);
    const paths = listImageFolder(dir).items.map((it) => it.path);
    for (const prefetch of [0, 2]) {
      let pulled = 0,
        finished = 0,
        most = 0;
      async function* source(): AsyncGenerator<ExtractBatch> {
        for (let i = 0; i < paths.length; i += 2) {
          pulled++;
          most = Math.max(most, pulled - finished);
          yield paths.slice(i, i + 2);
        }
      }
      const f = await extractFeatures(model, undefined, source(), {
        batchSize: 2,
        prefetch,
        onProgress: (p) => {
          finished = p.runs;
          const until = Date.now() + 30; // a slow consumer: the pipeline must not run further ahead meanwhile
          while (Date.now() < until);
        },
      });
      assert.equal(f.length, paths.length);
      assert.equal(most, prefetch + 1, `prefetch ${prefetch}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
