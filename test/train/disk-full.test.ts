/**
 * Disk trouble: a checkpoint, model or classifier-folder write that fails part-way (a full disk,
 * injected with injectWriteFailure, or a real one on a small tmpfs where one can be mounted; a kill)
 * leaves the previous complete file or folder valid and loadable, and the error names the path and
 * the space it needed.
 */
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atomicWrite, injectWriteFailure, writeFolderAtomic } from '../../src/util/atomic.js';
import {
  writeCheckpoint,
  readLatestCheckpoint,
  listCheckpoints,
  type CheckpointState,
} from '../../src/train/checkpoint.js';
import { readOnnx, writeOnnx } from '../../src/formats/onnx.js';
import { saveClassifier } from '../../src/features/classifier.js';
import { getLabels, setLabels } from '../../src/formats/preprocess.js';
import { Graph } from '../../src/graph/graph.js';
import { GraftError } from '../../src/util/errors.js';

afterEach(() => injectWriteFailure(undefined));

const fresh = () => mkdtempSync(join(tmpdir(), 'graft-disk-'));

function state(epoch: number, v: number): CheckpointState {
  return {
    epoch,
    step: epoch * 10,
    rng: [1, 2, 3, 4],
    losses: [v, v / 2],
    weights: new Map([
      ['fc.weight', new Float32Array(4000).fill(v)],
      ['fc.bias', Float32Array.from([v, -v])],
    ]),
    optimizer: { kind: 'sgd', meta: { momentum: 0 }, tensors: new Map() },
    config: { lr: 0.1 },
  };
}

/** x [batch, 2] → Gemm → logits [batch, k], labelled. */
function classifier(labels: string[], v: number): Graph {
  const g = new Graph();
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['batch', 2] });
  g.initializers.set('w', {
    dtype: 'float32',
    dims: [labels.length, 2],
    data: new Float32Array(labels.length * 2).fill(v),
  });
  g.nodes.push({
    name: 'fc',
    opType: 'Gemm',
    domain: '',
    inputs: ['x', 'w'],
    outputs: ['logits'],
    attrs: { transB: { type: 'int', value: 1 } },
  });
  g.outputs.push({ name: 'logits', dtype: 'float32', shape: ['batch', labels.length] });
  setLabels(g, labels);
  return g;
}

/** No temporary file or staged folder left behind. */
const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.includes('.tmp-') || n.includes('.old-'));

test('atomicWrite: a full disk after N bytes leaves the previous file whole; the error names the path and the space needed', () => {
  const dir = fresh();
  try {
    const path = join(dir, 'model.onnx');
    atomicWrite(path, Buffer.from('previous complete file'));
    injectWriteFailure({ afterBytes: 1000 });
    const bytes = new Uint8Array(5000).fill(7);
    assert.throws(
      () => atomicWrite(path, bytes),
      (e: unknown) => {
        assert.ok(e instanceof GraftError);
        assert.match(
          e.message,
          new RegExp(
            `could not write ${path.replace(/[.]/g, '\\.')}: no space left on the device \\(ENOSPC\\): it needs 5000 bytes, \\d+ bytes are free in `,
          ),
        );
        assert.match(e.hint ?? '', /previous file at that path is unchanged/);
        return true;
      },
    );
    assert.equal(readFileSync(path, 'utf8'), 'previous complete file');
    assert.deepEqual(leftovers(dir), []);
    // the fault was one-shot: the next write goes through
    atomicWrite(path, bytes);
    assert.equal(readFileSync(path).length, 5000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a checkpoint interrupted in its tensors or its manifest leaves the previous checkpoint the newest complete one', () => {
  const dir = fresh();
  try {
    writeCheckpoint(dir, state(1, 0.5));
    for (const which of [/epoch-0002\.safetensors$/, /epoch-0002\.json$/]) {
      injectWriteFailure({ afterBytes: 64, match: which });
      assert.throws(
        () => writeCheckpoint(dir, state(2, 0.25)),
        (e: unknown) =>
          e instanceof GraftError &&
          /epoch-0002\.(safetensors|json): no space left on the device .* it needs \d+ bytes/.test(e.message),
      );
      assert.deepEqual(listCheckpoints(dir), [1]);
      assert.deepEqual(
        readdirSync(dir).sort(),
        ['epoch-0001.json', 'epoch-0001.safetensors'],
        `after a failure in ${which}`,
      );
      const back = readLatestCheckpoint(dir)!;
      assert.equal(back.epoch, 1);
      assert.equal(back.step, 10);
      assert.deepEqual([...back.weights.get('fc.bias')!], [0.5, -0.5]);
      assert.ok(back.weights.get('fc.weight')!.every((x) => x === 0.5));
    }
    // with space again the run goes on
    writeCheckpoint(dir, state(2, 0.25), 1);
    assert.deepEqual(listCheckpoints(dir), [2]);
    assert.deepEqual([...readLatestCheckpoint(dir)!.weights.get('fc.bias')!], [0.25, -0.25]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an export (writeOnnx) that fails part-way leaves the previous model loadable', () => {
  const dir = fresh();
  try {
    const path = join(dir, 'm.onnx');
    writeOnnx(classifier(['a', 'b'], 1), path);
    injectWriteFailure({ afterBytes: 10 });
    assert.throws(() => writeOnnx(classifier(['a', 'b', 'c'], 2), path), /m\.onnx: no space left/);
    assert.deepEqual(getLabels(readOnnx(path)), ['a', 'b']);
    assert.deepEqual(leftovers(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a classifier folder save that fails in the middle leaves the previous classifier, never a mix', () => {
  const root = fresh();
  const dir = join(root, 'clf');
  try {
    saveClassifier(classifier(['cat', 'dog'], 1), dir);
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    writeFileSync(join(dir, 'tokenizer.json'), '{}'); // a stale file of the folder's format
    mkdirSync(join(dir, 'checkpoints'));
    writeFileSync(join(dir, 'checkpoints', 'keep.txt'), 'x');
    const before = readFileSync(join(dir, 'model.onnx'));
    // model.onnx of the new save is written, then labels.json fails
    injectWriteFailure({ afterBytes: 3, match: /labels\.json$/ });
    assert.throws(
      () => saveClassifier(classifier(['ant', 'bee', 'cow'], 2), dir),
      (e: unknown) => {
        assert.ok(e instanceof GraftError);
        assert.ok(e.message.includes(join(dir, 'labels.json')), e.message); // the folder's path, not the stage's
        assert.match(e.message, /no space left on the device/);
        return true;
      },
    );
    assert.deepEqual(readFileSync(join(dir, 'model.onnx')), before);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'labels.json'), 'utf8')), ['cat', 'dog']);
    assert.deepEqual(getLabels(readOnnx(join(dir, 'model.onnx'))), ['cat', 'dog']);
    assert.deepEqual(leftovers(root), []);
    assert.deepEqual(leftovers(dir), []);
    // the first file of the save failing: the same
    injectWriteFailure({ afterBytes: 0, match: /model\.onnx$/ });
    assert.throws(() => saveClassifier(classifier(['ant', 'bee', 'cow'], 2), dir), /model\.onnx: no space left/);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'labels.json'), 'utf8')), ['cat', 'dog']);

    // a save that succeeds replaces model and labels together, keeps the user's files, drops the stale format file
    saveClassifier(classifier(['ant', 'bee', 'cow'], 2), dir);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'labels.json'), 'utf8')), ['ant', 'bee', 'cow']);
    assert.deepEqual(getLabels(readOnnx(join(dir, 'model.onnx'))), ['ant', 'bee', 'cow']);
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'mine');
    assert.equal(readFileSync(join(dir, 'checkpoints', 'keep.txt'), 'utf8'), 'x');
    assert.ok(!existsSync(join(dir, 'tokenizer.json')));
    assert.deepEqual(leftovers(root), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('writeFolderAtomic: an error thrown by the writer leaves a new folder absent', () => {
  const root = fresh();
  try {
    assert.throws(
      () =>
        writeFolderAtomic(join(root, 'new'), (stage) => {
          atomicWrite(join(stage, 'model.onnx'), Buffer.from('x'));
          throw new GraftError('parity check failed');
        }),
      /parity check failed/,
    );
    assert.deepEqual(readdirSync(root), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a process killed while writing leaves the previous file whole', async () => {
  const dir = fresh();
  try {
    const path = join(dir, 'big.onnx');
    atomicWrite(path, Buffer.from('previous'));
    // a child writes 256 MiB through atomicWrite; kill it as soon as its temporary file appears
    const code = `import('${new URL('../../src/util/atomic.ts', import.meta.url).href}').then((m) => m.atomicWrite(${JSON.stringify(path)}, new Uint8Array(256 << 20)))`;
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    const t0 = Date.now();
    while (!readdirSync(dir).some((n) => n.includes('.tmp-'))) {
      assert.ok(Date.now() - t0 < 60_000 && child.exitCode === null, 'the writer never started its temporary file');
      await new Promise((r) => setTimeout(r, 2));
    }
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    assert.equal(readFileSync(path, 'utf8'), 'previous');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A 1 MiB tmpfs, where this process may mount one (root); else the reason to skip. */
function smallTmpfs(): { dir: string } | string {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'mounting a tmpfs needs root on Linux';
  const dir = mkdtempSync(join(tmpdir(), 'graft-tmpfs-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs here: ${String(r.stderr).trim() || r.error?.message}`;
  }
  return { dir };
}

const fs = smallTmpfs();
test('a real full disk (1 MiB tmpfs): the previous checkpoint stays, the error gives bytes needed and free', {
  skip: typeof fs === 'string' ? fs : false,
}, () => {
  const { dir } = fs as { dir: string };
  try {
    writeCheckpoint(dir, state(1, 0.5));
    const big = state(2, 0.25);
    big.weights.set('fc.weight', new Float32Array(1 << 19).fill(0.25)); // 2 MiB of tensors
    assert.throws(
      () => writeCheckpoint(dir, big),
      (e: unknown) => {
        assert.ok(e instanceof GraftError);
        const m =
          /epoch-0002\.safetensors: no space left on the device \(ENOSPC\): it needs (\d+) bytes, (\d+) bytes are free in /.exec(
            e.message,
          );
        assert.ok(m, e.message);
        assert.ok(Number(m[1]) > 2 * (1 << 20) && Number(m[2]) < 1 << 20, e.message);
        return true;
      },
    );
    assert.deepEqual(listCheckpoints(dir), [1]);
    assert.equal(readLatestCheckpoint(dir)!.epoch, 1);
    assert.deepEqual(leftovers(dir), []);
  } finally {
    spawnSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});
