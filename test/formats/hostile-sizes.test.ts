/**
 * Files that declare more than they hold: absurd shapes (negative, fractional, overflowing, over 2^31
 * elements), lengths past the end, and small compressed streams that expand without bound. Every reader
 * refuses them with a GraftError naming the tensor (or file), before allocating for the claim.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync, gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { decodeOnnx } from '../../src/formats/onnx.js';
import { ONNX_PROTO } from '../../src/formats/onnx-schema.js';
import { decodeSafetensors } from '../../src/formats/safetensors.js';
import { readTfjs } from '../../src/formats/tfjs.js';
import { decodeTflite, embeddedFiles } from '../../src/formats/tflite.js';
import { parseIdx } from '../../src/data/idx.js';
import { TextTokenizer } from '../../src/text/tokenizer.js';
import { FeatureCache } from '../../src/features/cache.js';
import { checkedNumel, gunzipLimited, MAX_ELEMENTS } from '../../src/util/limits.js';
import { GraftError } from '../../src/util/errors.js';
import { writeTflite, f32 } from '../helpers/tflite-writer.js';

const temps: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'graft-sizes-'));
  temps.push(d);
  return d;
};
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function refuses(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof GraftError, `expected a GraftError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

test('checkedNumel: negative, fractional, non-numeric, overflowing and over-2^31 shapes are named errors', () => {
  assert.equal(checkedNumel([2, 3, 4], 'x'), 24);
  assert.equal(checkedNumel([], 'x'), 1);
  assert.equal(checkedNumel([0, 2 ** 31 - 1], 'x'), 0);
  refuses(() => checkedNumel([2, -1], "tensor 'w'"), /tensor 'w': shape \[2, -1\] has a negative dimension/);
  refuses(() => checkedNumel([1.5], "tensor 'w'"), /tensor 'w'.*not an integer/);
  refuses(() => checkedNumel(['3'], "tensor 'w'"), /not an integer/);
  refuses(() => checkedNumel(7, "tensor 'w'"), /not a list of dimensions/);
  refuses(
    () => checkedNumel([65536, 65536], "tensor 'w'"),
    /tensor 'w': shape \[65536, 65536\] has more than 2147483647 elements/,
  );
  refuses(() => checkedNumel([2 ** 53, 2 ** 53, 0], "tensor 'w'"), /has a dimension over/);
  // the product is checked as it grows: no overflow to Infinity or wrap-around slips through
  refuses(() => checkedNumel(Array(40).fill(4), "tensor 'w'"), /more than/);
  assert.equal(MAX_ELEMENTS, 2 ** 31 - 1);
});

const Model = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
function onnxWith(tensor: object): Uint8Array {
  return Model.encode(
    Model.fromObject({
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: { name: 'g', initializer: [tensor] },
    }),
  ).finish();
}

test('ONNX: negative and huge initializer dims, and *_data shorter than the dims, are refused naming the initializer, before allocating', () => {
  refuses(
    () => decodeOnnx(onnxWith({ name: 'w', data_type: 1, dims: [-4], raw_data: new Uint8Array(16) })),
    /initializer 'w'.*negative dimension/,
  );
  refuses(
    () => decodeOnnx(onnxWith({ name: 'big', data_type: 1, dims: [1 << 20, 1 << 20], float_data: [1] })),
    /initializer 'big'.*more than 2147483647 elements/,
  );
  // 2^30 floats declared, one given: refused before a 4 GB array is made
  const rss = process.memoryUsage().rss;
  refuses(
    () => decodeOnnx(onnxWith({ name: 'w2', data_type: 1, dims: [1 << 30], float_data: [1] })),
    /initializer 'w2'.*1 values, expected 1073741824/,
  );
  assert.ok(process.memoryUsage().rss - rss < 500e6, 'no large allocation');
  refuses(
    () => decodeOnnx(onnxWith({ name: 'r', data_type: 1, dims: [3], raw_data: new Uint8Array(8) })),
    /initializer 'r'.*8 bytes, expected 12/,
  );
});

function safetensors(header: unknown, data = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

test('safetensors: absurd shapes and offsets are refused naming the tensor', () => {
  refuses(
    () => decodeSafetensors(safetensors({ w: { dtype: 'F32', shape: [1 << 16, 1 << 16], data_offsets: [0, 0] } })),
    /tensor 'w': shape \[65536, 65536\] has more than/,
  );
  refuses(
    () => decodeSafetensors(safetensors({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4))),
    /tensor 'w'.*negative/,
  );
  refuses(
    () => decodeSafetensors(safetensors({ w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, new Uint8Array(4))),
    /tensor 'w'.*-4 is not a non-negative integer/,
  );
  refuses(
    () => decodeSafetensors(safetensors({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4))),
    /tensor 'w' has inconsistent offsets \[0, 8\].*holds 4 bytes/,
  );
  refuses(() => decodeSafetensors(safetensors({ w: null })), /tensor 'w' has no dtype/);
  refuses(() => decodeSafetensors(safetensors([1, 2])), /header is not a JSON object/);
  const lie = safetensors({});
  new DataView(lie.buffer).setBigUint64(0, 2n ** 62n, true);
  refuses(() => decodeSafetensors(lie), /header length .* exceeds the file size/);
});

test('TF.js: a weight declaring a huge or negative shape is refused naming it, before any shard is read', () => {
  const dir = tmp();
  const model = (shape: unknown) => ({
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: {
        name: 's',
        layers: [{ class_name: 'Dense', config: { name: 'd', units: 2, batch_input_shape: [null, 3] } }],
      },
    },
    weightsManifest: [{ paths: ['absent.bin'], weights: [{ name: 'd/kernel', shape, dtype: 'float32' }] }],
  });
  writeFileSync(join(dir, 'model.json'), JSON.stringify(model([1e6, 1e6])));
  refuses(() => readTfjs(join(dir, 'model.json')), /weight 'd\/kernel': shape \[1000000, 1000000\] has more than/);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(model([3, -2])));
  refuses(() => readTfjs(join(dir, 'model.json')), /weight 'd\/kernel'.*negative/);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(model('3x2')));
  refuses(() => readTfjs(join(dir, 'model.json')), /weight 'd\/kernel'.*not a list of dimensions/);
});

test('TFLite: a constant with a negative or huge shape is refused naming the tensor', () => {
  const m = (shape: number[]) =>
    writeTflite({
      tensors: [
        { name: 'x', shape: [1, 4] },
        { name: 'weights', shape, data: f32([1, 2, 3, 4]) },
        { name: 'y', shape: [1, 4] },
      ],
      ops: [{ code: 0, inputs: [0, 1], outputs: [2] }],
      inputs: [0],
      outputs: [2],
    });
  refuses(() => decodeTflite(m([-4]), {}, 'neg.tflite'), /tensor 'weights'.*negative dimension/);
  refuses(() => decodeTflite(m([65536, 65536]), {}, 'big.tflite'), /tensor 'weights'.*more than 2147483647/);
});

test('TFLite associated files: a zip member that inflates past its declared size is not expanded', () => {
  const big = deflateRawSync(new Uint8Array(50e6)); // 50 MB of zeros in ~50 KB
  const name = new TextEncoder().encode('labels.txt');
  const local = new Uint8Array(30 + name.length);
  const lv = new DataView(local.buffer);
  lv.setUint32(0, 0x04034b50, true);
  lv.setUint16(8, 8, true);
  lv.setUint32(18, big.length, true);
  lv.setUint32(22, 10, true);
  lv.setUint16(26, name.length, true);
  local.set(name, 30);
  const cd = new Uint8Array(46 + name.length);
  const cv = new DataView(cd.buffer);
  cv.setUint32(0, 0x02014b50, true);
  cv.setUint16(10, 8, true);
  cv.setUint32(20, big.length, true);
  cv.setUint32(24, 10, true);
  cv.setUint16(28, name.length, true);
  cv.setUint32(42, 0, true);
  cd.set(name, 46);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(10, 1, true);
  ev.setUint32(12, cd.length, true);
  ev.setUint32(16, local.length + big.length, true);
  const zip = new Uint8Array(Buffer.concat([local, big, cd, eocd]));
  const files = embeddedFiles(zip);
  assert.equal(files.has('labels.txt'), false, 'the member claiming 10 bytes but holding 50 MB is dropped');
});

test('IDX: overflowing dims are refused; a gzip stream holding more than its header declares stops at the declared size', () => {
  refuses(
    () => parseIdx(new Uint8Array([0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'x.idx'),
    /x\.idx: IDX array: shape .* has a dimension over/,
  );
  const header = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 4]);
  const bomb = gzipSync(Buffer.concat([header, new Uint8Array(200e6)])); // 4 bytes declared, 200 MB inside
  assert.ok(bomb.length < 300_000);
  const rss = process.memoryUsage().rss;
  refuses(
    () => parseIdx(bomb, 'bomb.idx.gz'),
    /bomb\.idx\.gz: the gzip stream holds more than the 12 bytes its IDX header declares/,
  );
  assert.ok(process.memoryUsage().rss - rss < 150e6, 'the 200 MB were never inflated');
  assert.deepEqual(parseIdx(gzipSync(new Uint8Array([...header, 1, 2, 3, 4]))).dims, [4]);
});

test('gunzipLimited: output over the limit is a named error (CSV/TSV/JSONL .gz tables use it with 1 GiB)', () => {
  refuses(
    () => gunzipLimited(gzipSync(new Uint8Array(1e6)), 'data.csv.gz', 1000),
    /data\.csv\.gz: decompresses to more than 1000 bytes/,
  );
  refuses(
    () => gunzipLimited(new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2]), 'data.csv.gz'),
    /data\.csv\.gz: not a valid gzip file/,
  );
});

test('tokenizer.json: a token id of 2^31 is refused before the library sizes tables by it', () => {
  const json = { model: { type: 'WordPiece', unk_token: '[UNK]', vocab: { '[UNK]': 0, a: 2 ** 31 } } };
  const t0 = Date.now();
  refuses(
    () => new TextTokenizer(json, {}, { label: 'tok.json' }),
    /tok\.json: vocab entry 'a' has token id 2147483648/,
  );
  assert.ok(Date.now() - t0 < 1000);
  refuses(
    () => new TextTokenizer({ model: { type: 'WordPiece', vocab: { a: 0.5 } } }, {}, { label: 'tok.json' }),
    /token id 0\.5/,
  );
  refuses(
    () =>
      new TextTokenizer(
        { model: { type: 'WordPiece', vocab: { a: 0 } }, added_tokens: [{ id: -1, content: 'x' }] },
        {},
        { label: 'tok.json' },
      ),
    /added token 'x' has token id -1/,
  );
});

test('feature cache: a shard whose key table claims 2^32 − 1 entries is skipped, named, without allocating for them', () => {
  const dir = tmp();
  mkdirSync(dir, { recursive: true });
  const b = Buffer.alloc(8);
  b.writeUInt32LE(0x31434647, 0);
  b.writeUInt32LE(0xffffffff, 4);
  writeFileSync(join(dir, 'x.shard'), b);
  const c = FeatureCache.open(dir);
  assert.equal(c.size, 0);
  assert.equal(c.skipped.length, 1);
  assert.match(c.skipped[0]!.error, /truncated shard key table/);
});
