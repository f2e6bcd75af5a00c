/**
 * The hub client against a hub served on 127.0.0.1: the cache layout Python and Transformers.js share,
 * include globs, resumed and verified downloads, atomic snapshots, offline mode, and the errors.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pull, cachedSnapshot, type PullOptions } from '../../src/hub/pull.js';
import { resolveModelRef, parseHfRef, pullCatalogEntry } from '../../src/hub/resolve.js';
import { matchesAny, MODEL_FILES } from '../../src/hub/glob.js';
import { hubCacheDir, repoCacheDir } from '../../src/hub/cache.js';
import { GraftError } from '../../src/util/errors.js';
import type { CatalogEntry } from '../../src/hub/catalog.js';
import { startHubServer, tinyModelRepo, type HubServer } from '../helpers/hub-server.js';

const REPO = 'org/tiny';
const files = tinyModelRepo();
const modelBytes = Buffer.from(files['onnx/model.onnx']!);
let hub: HubServer;
const caches: string[] = [];

before(async () => {
  hub = await startHubServer([
    { id: REPO, files },
    { id: 'org/secret', files: tinyModelRepo(2), private: true },
    {
      id: 'org/quantized-only',
      files: { 'config.json': '{}', 'onnx/model_quantized.onnx': modelBytes.subarray(0, 2048) },
    },
  ]);
});
after(async () => {
  await hub.close();
  for (const c of caches) rmSync(c, { recursive: true, force: true });
});

function freshCache(): string {
  const d = mkdtempSync(join(tmpdir(), 'graft-hub-'));
  caches.push(d);
  return d;
}
const opts = (cacheDir: string, more: PullOptions = {}): PullOptions => ({
  cacheDir,
  endpoint: hub.url,
  offline: false,
  token: '',
  timeoutMs: 5000,
  ...more,
});
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function rejects(p: Promise<unknown>, message: RegExp, hint?: RegExp): Promise<GraftError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GraftError, `expected a GraftError, got ${(e as Error).stack}`);
    assert.match(e.message, message);
    if (hint) assert.match(e.hint ?? '', hint);
    return e;
  }
  assert.fail(`expected a rejection matching ${message}`);
}

test('pull writes the huggingface_hub cache layout: blobs by ETag, snapshot symlinks, refs/main last', async () => {
  const cache = freshCache();
  const r = await pull(REPO, opts(cache));
  const repoDir = join(cache, 'models--org--tiny');
  const commit = hub.commit(REPO);
  assert.equal(r.commit, commit);
  assert.equal(r.path, join(repoDir, 'snapshots', commit));
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), commit);
  // What a model needs, never the quantized variant or the README.
  assert.deepEqual(
    r.files.map((f) => f.path),
    ['config.json', 'onnx/model.onnx'],
  );
  assert.ok(!existsSync(join(r.path, 'onnx/model_quantized.onnx')));
  assert.ok(!existsSync(join(r.path, 'README.md')));
  // LFS file: blob named by its sha256, linked relatively as huggingface_hub does.
  const link = join(r.path, 'onnx/model.onnx');
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(readlinkSync(link), `../../../blobs/${sha256(modelBytes)}`);
  assert.deepEqual(readFileSync(link), modelBytes);
  // Small git file: blob named by its git blob sha1.
  assert.equal(readlinkSync(join(r.path, 'config.json')), `../../blobs/${hub.etag(REPO, 'config.json')}`);
  assert.match(hub.etag(REPO, 'config.json'), /^[0-9a-f]{40}$/);
  assert.equal(r.fetched, modelBytes.length + Buffer.byteLength(files['config.json'] as string));
  assert.equal(r.fromCache, false);
  assert.ok(
    hub.downloads('onnx/model.onnx').every((q) => q.url.includes(`/resolve/${commit}/`)),
    'files are fetched by commit, not by branch',
  );

  // Resolving for a command uses the complete snapshot without a single request.
  const n = hub.requests.length;
  const again = await pull(REPO, opts(cache, { preferCache: true }));
  assert.equal(again.fromCache, true);
  assert.equal(again.path, r.path);
  assert.equal(hub.requests.length, n);
  // graft pull asks the hub for the revision again but downloads nothing it has.
  const refreshed = await pull(REPO, opts(cache));
  assert.equal(refreshed.fetched, 0);
  assert.ok(
    hub.requests.slice(n).every((q) => q.url.startsWith('/api/')),
    'no file was downloaded again',
  );
});

test('--include globs follow huggingface_hub (fnmatch: * crosses folders); an unmatched glob names the files', async () => {
  assert.ok(matchesAny('onnx/config.json', ['*.json']));
  assert.ok(matchesAny('onnx/model.onnx', ['onnx/']));
  assert.ok(matchesAny('onnx/model_fp16.onnx', ['onnx/model_[fq]*.onnx']));
  assert.ok(!matchesAny('onnx/model_quantized.onnx', MODEL_FILES));
  assert.ok(!matchesAny('onnx/model.onnx.bak', MODEL_FILES));
  const cache = freshCache();
  const r = await pull(REPO, opts(cache, { include: ['*'] }));
  assert.deepEqual(
    r.files.map((f) => f.path),
    ['README.md', 'config.json', 'onnx/model.onnx', 'onnx/model_quantized.onnx'],
  );
  const q = await pull(REPO, opts(cache, { include: ['onnx/model_q*'] }));
  assert.deepEqual(
    q.files.map((f) => f.path),
    ['onnx/model_quantized.onnx'],
  );
  assert.equal(q.fetched, 0, 'the blob was already in the cache');
  await rejects(
    pull(REPO, opts(cache, { include: ['*.safetensors'] })),
    /no file in org\/tiny at revision main matches \*\.safetensors/,
  );
  // A repository whose only ONNX file is quantized: a command cannot use it, and the error names the file.
  const e = await rejects(pull('org/quantized-only', opts(cache)), /no full-precision ONNX model/);
  assert.match(e.hint ?? '', /onnx\/model_quantized\.onnx/);
});

test('an interrupted download resumes with Range and fetches only the rest; nothing half-done is visible', async () => {
  const cache = freshCache();
  const half = Math.floor(modelBytes.length / 2);
  hub.dropAfter(REPO, 'onnx/model.onnx', half);
  const before = hub.downloads('onnx/model.onnx').length;
  await rejects(
    pull(REPO, opts(cache)),
    /download of onnx\/model\.onnx interrupted after/,
    /run the same command again/,
  );
  const repoDir = repoCacheDir(REPO, cache);
  const blob = join(repoDir, 'blobs', sha256(modelBytes));
  assert.equal(statSync(`${blob}.incomplete`).size, half, 'the bytes received so far are kept as .incomplete');
  assert.ok(!existsSync(blob), 'no blob until it is whole and verified');
  assert.ok(
    !existsSync(join(repoDir, 'snapshots', hub.commit(REPO), 'onnx/model.onnx')),
    'the snapshot does not show the file',
  );
  assert.ok(!existsSync(join(repoDir, 'refs', 'main')), 'refs/main is written last');
  // The revision name does not lead to the half snapshot; its commit shows what is missing.
  assert.equal(cachedSnapshot(REPO, 'main', MODEL_FILES, true, cache).complete, false);
  const state = cachedSnapshot(REPO, hub.commit(REPO), MODEL_FILES, true, cache);
  assert.equal(state.complete, false);
  assert.deepEqual(state.missing, ['onnx/model.onnx']);
  // Offline, the half snapshot is refused, with the missing file named.
  await rejects(
    pull(REPO, opts(cache, { offline: true })),
    /HF_HUB_OFFLINE is set and org\/tiny \(revision main\) is not in the cache/,
  );
  await rejects(
    pull(REPO, opts(cache, { offline: true, revision: hub.commit(REPO) })),
    /HF_HUB_OFFLINE is set and the cached snapshot of org\/tiny .* lacks: onnx\/model\.onnx/,
  );

  const r = await pull(REPO, opts(cache));
  const gets = hub.downloads('onnx/model.onnx').slice(before);
  assert.equal(gets.length, 2);
  assert.equal(gets[0]!.range, undefined);
  assert.equal(gets[1]!.range, `bytes=${half}-`);
  assert.equal(gets[1]!.status, 206);
  assert.equal(gets[1]!.bodyBytes, modelBytes.length - half, 'the second request carried only the rest');
  assert.equal(r.fetched, modelBytes.length - half);
  assert.ok(!existsSync(`${blob}.incomplete`));
  assert.deepEqual(readFileSync(join(r.path, 'onnx/model.onnx')), modelBytes);
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), hub.commit(REPO));
});

test('a download that stalls times out, keeps its bytes, and resumes', async () => {
  const cache = freshCache();
  const third = Math.floor(modelBytes.length / 3);
  hub.stallAfter(REPO, 'onnx/model.onnx', third);
  const t0 = Date.now();
  await rejects(
    pull(REPO, opts(cache, { timeoutMs: 400 })),
    /download of onnx\/model\.onnx interrupted after .* \(no data for 400 ms\)/,
    /resumes/,
  );
  assert.ok(Date.now() - t0 < 4000, 'gave up soon after the data stopped');
  const r = await pull(REPO, opts(cache));
  assert.equal(r.fetched, modelBytes.length - third);
  assert.deepEqual(readFileSync(join(r.path, 'onnx/model.onnx')), modelBytes);
});

test('a corrupted byte is detected (sha256 for LFS files, git sha1 for small files): the download is deleted and the error says so', async () => {
  const cache = freshCache();
  const repoDir = repoCacheDir(REPO, cache);
  try {
    hub.corrupt(REPO, 'onnx/model.onnx', 1000);
    await rejects(
      pull(REPO, opts(cache)),
      /onnx\/model\.onnx: the downloaded bytes do not match the hub's sha256 .*; the corrupted download was deleted/,
    );
    const blob = join(repoDir, 'blobs', sha256(modelBytes));
    assert.ok(!existsSync(blob) && !existsSync(`${blob}.incomplete`));
    assert.ok(!existsSync(join(repoDir, 'snapshots', hub.commit(REPO), 'onnx/model.onnx')));
    hub.clearFaults();
    hub.corrupt(REPO, 'config.json', 3);
    await rejects(
      pull(REPO, opts(freshCache(), { include: ['config.json'] })),
      /config\.json: the downloaded bytes do not match the hub's git-sha1/,
    );
  } finally {
    hub.clearFaults();
  }
  const r = await pull(REPO, opts(cache));
  assert.deepEqual(readFileSync(join(r.path, 'onnx/model.onnx')), modelBytes);
});

test('HF_HUB_OFFLINE: a cached snapshot resolves with no request; an uncached one fails at once, naming it', async () => {
  const cache = freshCache();
  const n = hub.requests.length;
  await rejects(
    pull(REPO, opts(cache, { offline: true })),
    /HF_HUB_OFFLINE is set and org\/tiny \(revision main\) is not in the cache/,
    /graft pull org\/tiny/,
  );
  await rejects(
    resolveModelRef('hf:org/tiny@v2', { cacheDir: cache, endpoint: hub.url, offline: true }),
    /org\/tiny \(revision v2\) is not in the cache/,
  );
  assert.equal(hub.requests.length, n, 'offline mode made no request');
  const online = await pull(REPO, opts(cache));
  const m = hub.requests.length;
  assert.equal(
    await resolveModelRef('hf:org/tiny', { cacheDir: cache, endpoint: hub.url, offline: true }),
    online.path,
  );
  assert.equal(
    await resolveModelRef(`hf:org/tiny@${online.commit}`, { cacheDir: cache, endpoint: hub.url, offline: true }),
    online.path,
  );
  assert.equal(hub.requests.length, m);
  // The environment variable alone switches it on.
  process.env['HF_HUB_OFFLINE'] = '1';
  try {
    await rejects(pull('org/other', { cacheDir: cache, endpoint: hub.url }), /HF_HUB_OFFLINE is set/);
  } finally {
    delete process.env['HF_HUB_OFFLINE'];
  }
  assert.equal(hub.requests.length, m);
});

test('a snapshot written by another tool (no Graft listing) is used when it holds the model files', async () => {
  const cache = freshCache();
  const r = await pull(REPO, opts(cache));
  rmSync(join(repoCacheDir(REPO, cache), '.graft'), { recursive: true });
  const s = cachedSnapshot(REPO, 'main', MODEL_FILES, true, cache);
  assert.equal(s.complete, true);
  rmSync(join(r.path, 'onnx'), { recursive: true });
  const t = cachedSnapshot(REPO, 'main', MODEL_FILES, true, cache);
  assert.equal(t.complete, false);
  assert.deepEqual(t.missing, ['onnx/model.onnx or model.onnx']);
});

test('404s say whether the repository, the revision or the file is missing', async () => {
  const cache = freshCache();
  await rejects(pull('org/nope', opts(cache)), /no model repository 'org\/nope' on http:\/\/127\.0\.0\.1:\d+ \(404\)/);
  await rejects(pull(REPO, opts(cache, { revision: 'v9' })), /no revision 'v9' in org\/tiny \(404\)/);
  hub.hide(REPO, 'onnx/model.onnx');
  try {
    await rejects(pull(REPO, opts(cache)), /no file 'onnx\/model\.onnx' in org\/tiny at revision main \(404\)/);
  } finally {
    hub.clearFaults();
  }
});

test('a private repository: 401 without a token (the error points to HF_TOKEN), downloaded with it', async () => {
  const cache = freshCache();
  await rejects(pull('org/secret', opts(cache)), /refused org\/secret without valid credentials \(401\)/, /HF_TOKEN/);
  const n = hub.requests.length;
  const r = await pull('org/secret', opts(cache, { token: hub.token }));
  assert.ok(existsSync(join(r.path, 'onnx/model.onnx')));
  assert.ok(
    hub.requests.slice(n).every((q) => q.authorized),
    'every request carried the token',
  );
  await rejects(
    pull('org/secret', opts(freshCache(), { token: 'not-a-token' })),
    /HF_TOKEN is not a Hugging Face access token/,
  );
});

test('no network: the error says the hub (HF_ENDPOINT) could not be reached and suggests HF_HUB_OFFLINE=1', async () => {
  const port = await new Promise<number>((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => ok(p));
    });
  });
  await rejects(
    pull(REPO, { cacheDir: freshCache(), endpoint: `http://127.0.0.1:${port}`, offline: false }),
    /could not reach the Hugging Face hub at http:\/\/127\.0\.0\.1:\d+ \(HF_ENDPOINT\) \(ECONNREFUSED\)/,
    /HF_HUB_OFFLINE=1/,
  );
});

test('catalog entries: a plain URL file verified by sha256 into models--graft-catalog--NAME, and a hub entry with its globs', async () => {
  const cache = freshCache();
  const url = `${hub.url}/${REPO}/resolve/main/onnx/model.onnx`;
  const entry = (sha: string): CatalogEntry => ({
    name: 'tiny-url',
    kind: 'image',
    description: '',
    origin: '',
    licence: 'MIT',
    input: '',
    preprocessing: '',
    files: [],
    source: { kind: 'url', url, sha256: sha, size: modelBytes.length, file: 'tiny.onnx' },
  });
  const r = await pullCatalogEntry(entry(sha256(modelBytes)), { cacheDir: cache, offline: false });
  assert.equal(r.path, join(cache, 'models--graft-catalog--tiny-url', 'snapshots', sha256(modelBytes), 'tiny.onnx'));
  assert.deepEqual(readFileSync(r.path), modelBytes);
  const n = hub.requests.length;
  assert.equal((await pullCatalogEntry(entry(sha256(modelBytes)), { cacheDir: cache, offline: true })).path, r.path);
  assert.equal(hub.requests.length, n);
  await rejects(
    pullCatalogEntry(entry('0'.repeat(64)), { cacheDir: cache, offline: false }),
    /tiny\.onnx: the downloaded bytes do not match the hub's sha256/,
  );

  const hubEntry: CatalogEntry = {
    ...entry(''),
    name: 'tiny-hub',
    source: { kind: 'hub', repo: REPO, include: ['config.json', 'onnx/model_quantized.onnx'] },
  };
  const h = await pullCatalogEntry(hubEntry, opts(cache));
  assert.deepEqual(
    h.files.map((f) => f.path),
    ['config.json', 'onnx/model_quantized.onnx'],
  );
});

test('resolveModelRef: local paths unchanged, hf:ORG/NAME[@REV] to the snapshot folder', async () => {
  const cache = freshCache();
  const local = freshCache();
  assert.equal(await resolveModelRef(local), local);
  assert.equal(await resolveModelRef('no-such-model-anywhere'), 'no-such-model-anywhere');
  assert.deepEqual(parseHfRef('hf:org/tiny@v1.0'), { repo: 'org/tiny', revision: 'v1.0' });
  assert.deepEqual(parseHfRef('hf:org/tiny'), { repo: 'org/tiny' });
  assert.equal(parseHfRef('org/tiny'), undefined);
  const p = await resolveModelRef('hf:org/tiny', { cacheDir: cache, endpoint: hub.url, offline: false });
  assert.equal(p, join(cache, 'models--org--tiny', 'snapshots', hub.commit(REPO)));
  assert.ok(existsSync(join(p, 'onnx/model.onnx')));
  assert.ok(hubCacheDir().length > 0);
});

test('the cache folder follows HF_HUB_CACHE, then HF_HOME/hub', () => {
  const saved = { c: process.env['HF_HUB_CACHE'], h: process.env['HF_HOME'] };
  try {
    process.env['HF_HUB_CACHE'] = '/x/hub-cache';
    process.env['HF_HOME'] = '/y/hf-home';
    assert.equal(hubCacheDir(), '/x/hub-cache');
    delete process.env['HF_HUB_CACHE'];
    assert.equal(hubCacheDir(), '/y/hf-home/hub');
  } finally {
    for (const [k, v] of [
      ['HF_HUB_CACHE', saved.c],
      ['HF_HOME', saved.h],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});
