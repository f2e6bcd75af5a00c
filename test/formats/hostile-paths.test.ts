/**
 * Hostile files that try to read outside their folder: TF.js weight shards climbing out of model.json's
 * folder (the reproduction), URL-encoded climbs, absolute paths, symlinks leaving the folder;
 * ONNX external data; a checkpoint manifest naming a tensor file elsewhere; tokenizer/config files that
 * are symlinks out of a text model folder. The Hugging Face cache layout (snapshot symlinks into the
 * repository's blobs/) keeps loading.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { readTfjs } from '../../src/formats/tfjs.js';
import { decodeOnnx, encodeOnnx } from '../../src/formats/onnx.js';
import { Graph } from '../../src/graph/graph.js';
import { readCheckpoint, writeCheckpoint } from '../../src/train/checkpoint.js';
import { loadTokenizerSync } from '../../src/text/tokenizer.js';
import { readTextConfig } from '../../src/text/model-folder.js';
import { insideFolder } from '../../src/util/paths.js';
import { GraftError } from '../../src/util/errors.js';

const temps: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'graft-hostile-'));
  temps.push(d);
  return d;
};
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** A one-Dense-layer TF.js layers model (3 → 2, softmax) whose manifest lists `paths`. */
function tfjsModel(dir: string, paths: string[], writeShard = true): string {
  const json = {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: {
        name: 's',
        layers: [
          {
            class_name: 'Dense',
            config: { name: 'd', units: 2, activation: 'softmax', use_bias: true, batch_input_shape: [null, 3] },
          },
        ],
      },
    },
    weightsManifest: [
      {
        paths,
        weights: [
          { name: 'd/kernel', shape: [3, 2], dtype: 'float32' },
          { name: 'd/bias', shape: [2], dtype: 'float32' },
        ],
      },
    ],
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  if (writeShard)
    writeFileSync(
      join(dir, 'group1-shard1of1.bin'),
      new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6, 0.5, -0.5]).buffer),
    );
  return join(dir, 'model.json');
}

function refuses(f: () => unknown, path: string | RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof GraftError, `expected a GraftError, got ${String(e)}`);
    if (typeof path === 'string') assert.ok(e.message.includes(path), `message should name ${path}: ${e.message}`);
    else assert.match(e.message, path);
    return true;
  });
}

test("the issue's reproduction: a model.json whose shard path climbs to ../../../../../etc/os-release is refused, naming the path", () => {
  const dir = join(tmp(), 'a', 'b');
  const file = tfjsModel(dir, ['../../../../../etc/os-release'], false);
  refuses(() => readTfjs(file), '../../../../../etc/os-release');
  refuses(() => readTfjs(file), /leaves the folder/);
});

test('TF.js shard paths: URL-encoded climbs, absolute paths, deeper climbs back in and ./ prefixes', () => {
  const dir = tmp();
  refuses(() => readTfjs(tfjsModel(join(dir, 'm1'), ['..%2F..%2F..%2Fetc%2Fpasswd'])), '../../../etc/passwd');
  refuses(() => readTfjs(tfjsModel(join(dir, 'm2'), ['/etc/passwd'])), /absolute path/);
  refuses(() => readTfjs(tfjsModel(join(dir, 'm3'), ['%2Fetc%2Fpasswd'])), '/etc/passwd');
  refuses(() => readTfjs(tfjsModel(join(dir, 'm4'), ['%E0%A4%A'])), /URL encoding/);
  // climbing out and back into the same folder is still inside it
  assert.equal(readTfjs(tfjsModel(join(dir, 'm5'), ['../m5/group1-shard1of1.bin'])).nodes.length, 2);
  assert.equal(readTfjs(tfjsModel(join(dir, 'm6'), ['./group1-shard1of1.bin'])).nodes.length, 2);
  assert.equal(readTfjs(tfjsModel(join(dir, 'm7'), ['group1-shard1of1.bin'])).nodes.length, 2);
});

test('a TF.js shard that is a symlink out of the folder is refused; a symlinked folder inside is fine', () => {
  const dir = tmp();
  const outside = join(dir, 'outside.bin');
  writeFileSync(outside, new Uint8Array(32));
  const m = join(dir, 'model');
  tfjsModel(m, ['group1-shard1of1.bin'], false);
  symlinkSync(outside, join(m, 'group1-shard1of1.bin'));
  refuses(() => readTfjs(join(m, 'model.json')), /symlink to .*outside\.bin, outside the folder/);
  // a symlink whose target stays inside the folder is accepted
  const n = join(dir, 'model2');
  tfjsModel(n, ['w.bin'], true);
  symlinkSync('group1-shard1of1.bin', join(n, 'w.bin'));
  assert.equal(readTfjs(join(n, 'model.json')).nodes.length, 2);
});

test('Hugging Face cache layout: snapshot symlinks into the same repository blobs/ load; into another repository they do not', () => {
  const cache = tmp();
  const repo = join(cache, 'models--org--name');
  const snap = join(repo, 'snapshots', 'abc123');
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(snap, { recursive: true });
  const src = tfjsModel(join(cache, 'src'), ['group1-shard1of1.bin']);
  writeFileSync(join(repo, 'blobs', 'h1'), readFileSync(src));
  writeFileSync(join(repo, 'blobs', 'h2'), readFileSync(join(cache, 'src', 'group1-shard1of1.bin')));
  symlinkSync('../../blobs/h1', join(snap, 'model.json'));
  symlinkSync('../../blobs/h2', join(snap, 'group1-shard1of1.bin'));
  assert.equal(readTfjs(join(snap, 'model.json')).nodes.length, 2);
  assert.equal(readTfjs(snap).nodes.length, 2);
  // a file under the snapshot's subfolder (onnx/model.onnx style) links ../../../blobs/<hash>
  mkdirSync(join(snap, 'sub'));
  symlinkSync('../../../blobs/h2', join(snap, 'sub', 'w.bin'));
  assert.equal(insideFolder(join(snap, 'sub'), 'w.bin', 'shard'), join(snap, 'sub', 'w.bin'));
  // another repository's blobs are outside
  const other = join(cache, 'models--org--other', 'blobs');
  mkdirSync(other, { recursive: true });
  writeFileSync(join(other, 'h3'), new Uint8Array(32));
  symlinkSync(relative(snap, join(other, 'h3')), join(snap, 'evil.bin'));
  refuses(() => insideFolder(snap, 'evil.bin', 'weight shard'), /evil\.bin' is a symlink/);
  // and blobs/ itself is not a folder whose files may link anywhere
  symlinkSync('/etc/hostname', join(snap, 'host'));
  refuses(() => insideFolder(snap, 'host', 'file'), /host' is a symlink/);
});

function onnxWithExternal(location: string): Uint8Array {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.initializers.set('w', { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) });
  g.inputs = [{ name: 'x', dtype: 'float32', shape: [2] }];
  g.outputs = [{ name: 'y', dtype: 'float32', shape: [2] }];
  g.nodes = [{ name: 'add', opType: 'Add', domain: '', inputs: ['x', 'w'], outputs: ['y'], attrs: {} }];
  const chunks: Uint8Array[] = [];
  return encodeOnnx(g, { file: location, threshold: 0, chunks });
}

test('ONNX external data: locations that climb, are absolute, or symlink out are refused; inside works', () => {
  const dir = tmp();
  mkdirSync(join(dir, 'm'));
  writeFileSync(join(dir, 'secret.bin'), new Uint8Array(new Float32Array([7, 8]).buffer));
  writeFileSync(join(dir, 'm', 'model.data'), new Uint8Array(new Float32Array([1, 2]).buffer));
  refuses(() => decodeOnnx(onnxWithExternal('../secret.bin'), { baseDir: join(dir, 'm') }), '../secret.bin');
  refuses(() => decodeOnnx(onnxWithExternal('/etc/passwd'), { baseDir: join(dir, 'm') }), /absolute path/);
  symlinkSync(join(dir, 'secret.bin'), join(dir, 'm', 'link.data'));
  refuses(() => decodeOnnx(onnxWithExternal('link.data'), { baseDir: join(dir, 'm') }), /link\.data' is a symlink/);
  const ok = decodeOnnx(onnxWithExternal('model.data'), { baseDir: join(dir, 'm') });
  assert.deepEqual([...(ok.initializers.get('w')!.data as Float32Array)], [1, 2]);
});

test('a checkpoint manifest naming a tensor file outside its folder is refused', () => {
  const dir = tmp();
  const ck = join(dir, 'ck');
  writeCheckpoint(ck, {
    epoch: 1,
    step: 3,
    rng: [1, 2, 3, 4],
    losses: [0.5],
    weights: new Map([['w', new Float32Array([1, 2])]]),
    optimizer: { kind: 'sgd', meta: {}, tensors: new Map() },
    config: {},
  });
  assert.deepEqual([...readCheckpoint(ck, 1).weights.get('w')!], [1, 2]);
  const mf = join(ck, 'epoch-0001.json');
  const m = JSON.parse(readFileSync(mf, 'utf8'));
  writeFileSync(join(dir, 'elsewhere.safetensors'), readFileSync(join(ck, m.tensors)));
  writeFileSync(mf, JSON.stringify({ ...m, tensors: '../elsewhere.safetensors' }));
  refuses(() => readCheckpoint(ck, 1), '../elsewhere.safetensors');
});

test('tokenizer.json, tokenizer_config.json and config.json that are symlinks out of a text model folder are refused', () => {
  const dir = tmp();
  const m = join(dir, 'model');
  mkdirSync(m);
  writeFileSync(join(dir, 'outside.json'), JSON.stringify({ hidden_size: 8 }));
  symlinkSync(join(dir, 'outside.json'), join(m, 'config.json'));
  refuses(() => readTextConfig(m), /config\.json' is a symlink/);
  symlinkSync(join(dir, 'outside.json'), join(m, 'tokenizer.json'));
  refuses(() => loadTokenizerSync(m), /tokenizer\.json' is a symlink/);
});

test('a model folder whose onnx/model.onnx is a symlink out of it is refused; a hub snapshot link into blobs/ loads', async () => {
  const { loadModel } = await import('../../src/formats/load.js');
  const dir = tmp();
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'x', dtype: 'float32', shape: [2] }];
  g.outputs = [{ name: 'y', dtype: 'float32', shape: [2] }];
  g.nodes = [{ name: 'id', opType: 'Identity', domain: '', inputs: ['x'], outputs: ['y'], attrs: {} }];
  writeFileSync(join(dir, 'elsewhere.onnx'), encodeOnnx(g));
  mkdirSync(join(dir, 'm', 'onnx'), { recursive: true });
  symlinkSync(join(dir, 'elsewhere.onnx'), join(dir, 'm', 'onnx', 'model.onnx'));
  refuses(() => loadModel(join(dir, 'm')), /model file 'onnx\/model\.onnx' is a symlink/);
  const snap = join(dir, 'models--a--b', 'snapshots', 'c0ffee');
  mkdirSync(join(snap, 'onnx'), { recursive: true });
  mkdirSync(join(dir, 'models--a--b', 'blobs'));
  writeFileSync(join(dir, 'models--a--b', 'blobs', 'h'), encodeOnnx(g));
  symlinkSync('../../../blobs/h', join(snap, 'onnx', 'model.onnx'));
  assert.equal(loadModel(snap).nodes.length, 1);
});
