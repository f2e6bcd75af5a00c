import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FeatureCache, open, sha256, cacheKey } from '../../src/features/cache.js';
import { Rng } from '../../src/util/random.js';

const here = dirname(fileURLToPath(import.meta.url));
const writer = join(here, 'cache-writer.ts');

function tmp() {
  return mkdtempSync(join(tmpdir(), 'graft-cache-'));
}

function vec(rng: Rng, n: number, scale = 1) {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return v;
}

function expected(tag: string, n: number, dim: number) {
  const v = new Float32Array(dim);
  for (let j = 0; j < dim; j++) v[j] = Math.sin(n * 0.37 + j) * (1 + (tag.length % 3));
  return v;
}

test('round trip, fp16 precision, persistence across re-open', () => {
  const dir = tmp();
  try {
    const rng = new Rng(7);
    const c = open(dir);
    assert.equal(c.size, 0);
    const entries = Array.from({ length: 50 }, (_, i) => ({
      key: sha256(`k${i}`),
      vector: vec(rng, 1280, 10 ** ((i % 7) - 3)),
    }));
    c.putMany(entries.slice(0, 20));
    c.putMany(entries.slice(20));
    c.putMany(entries.slice(10, 30)); // all present: writes nothing
    assert.equal(c.size, 50);
    assert.equal(c.shardCount, 2);
    assert.ok(c.has(entries[3]!.key));
    assert.ok(!c.has(sha256('nope')));
    assert.equal(c.get(sha256('nope')), undefined);
    // compact: ~2 bytes per value plus 40 bytes per key and 8 per shard
    assert.equal(c.bytesOnDisk, 50 * (1280 * 2 + 40) + 2 * 8);
    let worst = 0;
    const check = (cc: FeatureCache) => {
      for (const e of entries) {
        const got = cc.get(e.key)!;
        assert.equal(got.length, 1280);
        for (let j = 0; j < got.length; j++) {
          const want = e.vector[j]!;
          if (Math.abs(want) < 6.2e-5) {
            assert.ok(Math.abs(got[j]! - want) < 1e-7);
            continue;
          } // fp16 subnormal range
          const rel = Math.abs(got[j]! - want) / Math.abs(want);
          if (rel > worst) worst = rel;
        }
      }
    };
    check(c);
    assert.ok(worst < 1e-3, `fp16 relative error ${worst}`);
    assert.ok(worst > 0, 'values are stored as fp16, not exactly');
    const c2 = FeatureCache.open(dir);
    assert.equal(c2.size, 50);
    assert.equal(c2.bytesOnDisk, c.bytesOnDisk);
    check(c2);
    const many = c2.getMany([entries[5]!.key, 'missing', entries[45]!.key]);
    assert.equal(many[1], undefined);
    assert.deepEqual(many[0], c.get(entries[5]!.key));
    // non-hex keys are hashed
    c2.putMany([{ key: 'plain string key', vector: Float32Array.of(1, 2, 3) }]);
    assert.deepEqual([...open(dir).get('plain string key')!], [1, 2, 3]);
    // a key depends on every part
    const base = { model: 'm', node: 'n', preprocess: '{}', input: new Uint8Array([1, 2]) };
    assert.notEqual(cacheKey(base), cacheKey({ ...base, node: 'n2' }));
    assert.notEqual(cacheKey(base), cacheKey({ ...base, input: new Uint8Array([1, 2, 0]) }));
    assert.notEqual(cacheKey({ ...base, model: 'ab', node: 'c' }), cacheKey({ ...base, model: 'a', node: 'bc' }));
    assert.equal(cacheKey(base), cacheKey({ ...base }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('leftover temp files and corrupt shards do not break opening', () => {
  const dir = tmp();
  try {
    const c = open(dir);
    c.putMany([{ key: sha256('a'), vector: Float32Array.of(0.5, -2) }]);
    writeFileSync(join(dir, '.zzz-123.shard.tmp'), Buffer.alloc(100)); // a writer killed mid-write
    writeFileSync(join(dir, 'zzz-bad.shard'), Buffer.from('GFC1garbage'));
    const c2 = open(dir);
    assert.equal(c2.size, 1);
    assert.deepEqual([...c2.get(sha256('a'))!], [0.5, -2]);
    assert.equal(c2.skipped.length, 1);
    assert.ok(c2.skipped[0]!.path.endsWith('zzz-bad.shard'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function run(dir: string, tag: string, batches: number, per: number, dim: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const p = fork(writer, [dir, tag, String(batches), String(per), String(dim)], {
      execArgv: ['--import', 'tsx'],
      stdio: 'inherit',
    });
    p.on('error', reject);
    p.on('exit', (code) => resolve(code));
  });
}

test('two processes writing at once: both sets readable after', async () => {
  const dir = tmp();
  try {
    const [a, b] = await Promise.all([run(dir, 'alpha', 40, 25, 64), run(dir, 'beta', 40, 25, 64)]);
    assert.equal(a, 0);
    assert.equal(b, 0);
    const c = open(dir);
    assert.equal(c.size, 2000);
    assert.equal(c.skipped.length, 0);
    for (const tag of ['alpha', 'beta'])
      for (const n of [0, 1, 499, 500, 999]) {
        const got = c.get(sha256(`${tag}:${n}`))!;
        const want = expected(tag, n, 64);
        for (let j = 0; j < 64; j++) assert.ok(Math.abs(got[j]! - want[j]!) <= 1e-3 * Math.abs(want[j]!) + 1e-4);
      }
    assert.equal(readdirSync(dir).filter((n) => n.endsWith('.tmp')).length, 0);
    // a third handle opened before more writes picks them up with refresh()
    const before = open(dir);
    assert.equal(await run(dir, 'gamma', 2, 5, 8), 0);
    assert.equal(before.size, 2000);
    assert.equal(before.refresh(), 2);
    assert.equal(before.size, 2010);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a writer killed mid-run loses at most the batch in flight', async () => {
  const dir = tmp();
  try {
    const done = await new Promise<number>((resolve, reject) => {
      const p = fork(writer, [dir, 'kill', '100000', '20', '256'], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      let last = -1;
      p.on('message', (m: { batch: number }) => {
        last = m.batch;
        if (last === 30) p.kill('SIGKILL');
      });
      p.on('error', reject);
      p.on('exit', () => resolve(last));
    });
    assert.ok(done >= 30);
    const c = open(dir);
    assert.equal(c.skipped.length, 0);
    // every completed batch is there (completed = acknowledged); at most a few more that finished before the kill landed
    assert.ok(c.size >= 31 * 20, `size ${c.size}`);
    assert.equal(c.size % 20, 0, 'whole batches only');
    for (let n = 0; n < c.size; n += 37) {
      const got = c.get(sha256(`kill:${n}`));
      assert.ok(got, `key ${n}`);
      assert.equal(got.length, 256);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
