/**
 * A model repository's snapshot at a revision, in the shared Hugging Face cache: `pull` asks the hub
 * (through @huggingface/hub's modelInfo and listFiles: the commit a revision names, and each file's size
 * and hash) which files match the include globs, downloads each into blobs/ (resumed, verified: see
 * download.ts), links it into snapshots/<commit>/, and writes refs/<revision> last. With `preferCache`
 * (how commands resolve `hf:` models) or HF_HUB_OFFLINE=1, a complete cached snapshot is used without
 * any network request; offline, anything missing is named at once. Also plain-URL catalog files.
 */
import { join } from 'node:path';
import { GraftError } from '../util/errors.js';
import {
  blobFile,
  checkRelativePath,
  checkRepoId,
  checkRevision,
  hubCacheDir,
  hubEndpoint,
  hubOffline,
  hubToken,
  isCommitHash,
  linkSnapshotFile,
  readListing,
  readRef,
  repoCacheDir,
  snapshotDir,
  snapshotFilePresent,
  snapshotFiles,
  writeListing,
  writeRef,
  type ListedFile,
} from './cache.js';
import { downloadBlob, partialFile } from './download.js';
import { httpError, networkCode, unreachable, type HubTarget } from './errors.js';
import { matchesAny, MODEL_FILES, MODEL_WEIGHTS } from './glob.js';
import type { ProgressListener } from './progress.js';
import { existsSync, statSync } from 'node:fs';

export interface PullOptions {
  /** Branch, tag or commit hash (default main). */
  revision?: string;
  /** Globs of the files wanted (fnmatch, as huggingface_hub; default: MODEL_FILES, what a command needs). */
  include?: readonly string[];
  /** Require one of the full-precision model files among them (default: true when `include` is not given). */
  requireModel?: boolean;
  /** Use a complete cached snapshot without asking the hub (default false: `graft pull` checks the revision). */
  preferCache?: boolean;
  /** Default: hubCacheDir() (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Default: HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default: HF_TOKEN. */
  token?: string;
  /** Default: HF_HUB_OFFLINE. */
  offline?: boolean;
  onProgress?: ProgressListener;
  /** Give up on a request or download that sends nothing for this long (default 30 s). */
  timeoutMs?: number;
}

export interface PullResult {
  repo: string;
  revision: string;
  commit: string;
  /** The snapshot folder: snapshots/<commit> (what `--model` receives). */
  path: string;
  /** The files of the snapshot that match the include globs. */
  files: { path: string; size?: number }[];
  /** Bytes received over the network (0 when everything was cached). */
  fetched: number;
  /** True when the snapshot came from the cache without asking the hub. */
  fromCache: boolean;
}

interface CacheState {
  commit?: string;
  files: { path: string; size?: number }[];
  missing: string[];
  complete: boolean;
}

/** What the cache holds of `repo` at `revision` for these globs, without touching the network. */
export function cachedSnapshot(
  repo: string,
  revision = 'main',
  include: readonly string[] = MODEL_FILES,
  requireModel = include === MODEL_FILES,
  cacheDir = hubCacheDir(),
): CacheState {
  const repoDir = repoCacheDir(repo, cacheDir);
  const commit = readRef(repoDir, checkRevision(revision));
  if (!commit) return { files: [], missing: [], complete: false };
  const listing = readListing(repoDir, commit);
  let files: { path: string; size?: number }[];
  let missing: string[];
  if (listing) {
    // A snapshot Graft wrote: complete when every listed file matching the globs is present.
    const wanted = listing.files.filter((f) => matchesAny(f.path, include));
    files = wanted.filter((f) => snapshotFilePresent(repoDir, commit, f)).map((f) => ({ path: f.path, size: f.size }));
    missing = wanted.filter((f) => !snapshotFilePresent(repoDir, commit, f)).map((f) => f.path);
    if (wanted.length === 0) missing.push(include.join(' '));
  } else {
    // Written by another tool (huggingface_hub, Transformers.js): judged by the files it holds.
    files = snapshotFiles(snapshotDir(repoDir, commit))
      .filter((p) => matchesAny(p, include))
      .map((path) => ({ path }));
    missing = files.length ? [] : [include.join(' ')];
  }
  if (
    requireModel &&
    !files.some((f) => MODEL_WEIGHTS.includes(f.path)) &&
    !missing.some((m) => MODEL_WEIGHTS.includes(m))
  )
    missing.push(MODEL_WEIGHTS.join(' or '));
  return { commit, files, missing, complete: missing.length === 0 };
}

function offlineError(repo: string, revision: string, cacheDir: string, state: CacheState): GraftError {
  if (!state.commit)
    return new GraftError(
      `HF_HUB_OFFLINE is set and ${repo} (revision ${revision}) is not in the cache (${cacheDir})`,
      `pull it with the network first: graft pull ${repo}${revision !== 'main' ? ` --revision ${revision}` : ''} (with HF_HUB_OFFLINE unset)`,
    );
  return new GraftError(
    `HF_HUB_OFFLINE is set and the cached snapshot of ${repo} (revision ${revision}, commit ${state.commit.slice(0, 12)}) lacks: ${state.missing.join(', ')}`,
    `pull it with the network first: graft pull ${repo}${revision !== 'main' ? ` --revision ${revision}` : ''} (with HF_HUB_OFFLINE unset)`,
  );
}

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

/** A fetch for @huggingface/hub: a timeout, and the hub's X-Error-Code of the last failed response kept. */
function hubFetch(timeoutMs: number) {
  const state = { errorCode: null as string | null };
  const f: typeof fetch = async (input, init) => {
    const res = await fetch(input, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) state.errorCode = res.headers.get('X-Error-Code');
    return res;
  };
  return { fetch: f, state };
}

/** Turn a failure of the hub client into a GraftError saying what went wrong. */
function hubFailure(e: unknown, target: HubTarget, errorCode: string | null): GraftError {
  if (e instanceof GraftError) return e;
  const status = (e as { statusCode?: number }).statusCode;
  if (typeof status === 'number') return httpError(status, errorCode, target);
  const code = networkCode(e);
  if (code) return unreachable(target.endpoint, code);
  if (/access token must start with 'hf_'/.test(String((e as Error).message)))
    return new GraftError(
      'HF_TOKEN is not a Hugging Face access token (they start with hf_)',
      'see https://huggingface.co/settings/tokens',
    );
  return new GraftError(`the hub client failed for ${target.repo}: ${(e as Error).message}`);
}

/** The snapshot of `repo` at a revision with the files matching `include`, downloaded where missing. */
export async function pull(repo: string, o: PullOptions = {}): Promise<PullResult> {
  checkRepoId(repo);
  const revision = checkRevision(o.revision ?? 'main');
  const include = o.include ?? MODEL_FILES;
  const requireModel = o.requireModel ?? o.include === undefined;
  const cacheDir = o.cacheDir ?? hubCacheDir();
  const endpoint = (o.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  const offline = o.offline ?? hubOffline();
  const repoDir = repoCacheDir(repo, cacheDir);

  if (o.preferCache || offline) {
    const state = cachedSnapshot(repo, revision, include, requireModel, cacheDir);
    if (state.complete && state.commit)
      return {
        repo,
        revision,
        commit: state.commit,
        path: snapshotDir(repoDir, state.commit),
        files: state.files,
        fetched: 0,
        fromCache: true,
      };
    if (offline) throw offlineError(repo, revision, cacheDir, state);
  }

  const token = o.token ?? hubToken();
  const timeoutMs = o.timeoutMs ?? 30_000;
  const target: HubTarget = { endpoint, repo, revision };
  const hf = await import('@huggingface/hub');
  const client = hubFetch(timeoutMs);
  const common = { hubUrl: endpoint, ...(token ? { accessToken: token } : {}), fetch: client.fetch };

  let commit: string;
  const listed: ListedFile[] = [];
  try {
    const info = await hf.modelInfo({ ...common, name: repo, revision, additionalFields: ['sha'] });
    commit = String(info.sha ?? '');
    if (!isCommitHash(commit)) throw new GraftError(`the hub gave no commit for ${repo} at revision ${revision}`);
    for await (const e of hf.listFiles({
      ...common,
      repo: { type: 'model', name: repo },
      revision: commit,
      recursive: true,
    })) {
      if (e.type !== 'file') continue;
      const etag = e.lfs?.oid ?? e.oid;
      if (!etag)
        throw new GraftError(
          `the hub listed ${e.path} in ${repo} without a hash; refusing to download what cannot be verified`,
        );
      listed.push({ path: checkRelativePath(e.path), size: e.lfs?.size ?? e.size, etag, lfs: !!e.lfs });
    }
  } catch (e) {
    throw hubFailure(e, target, client.state.errorCode);
  }

  listed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const wanted = listed.filter((f) => matchesAny(f.path, include));
  if (wanted.length === 0)
    throw new GraftError(
      `no file in ${repo} at revision ${revision} matches ${include.join(' ')}`,
      `its files: ${listed
        .slice(0, 30)
        .map((f) => f.path)
        .join(', ')}${listed.length > 30 ? ', …' : ''}`,
    );
  if (requireModel && !wanted.some((f) => MODEL_WEIGHTS.includes(f.path))) {
    const onnx = listed.filter((f) => /\.(onnx|tflite)$/.test(f.path)).map((f) => f.path);
    throw new GraftError(
      `${repo} has no full-precision ONNX model (${MODEL_WEIGHTS.join(' or ')}) at revision ${revision}`,
      onnx.length
        ? `its model files: ${onnx.join(', ')}; fetch one with graft pull ${repo} --include PATH and pass the snapshot folder it prints`
        : 'Graft loads ONNX (Transformers.js layout: onnx/model.onnx); this repository has no ONNX file',
    );
  }

  // The listing goes down before any file is linked: from now on the snapshot is judged against it.
  await writeListing(repoDir, { repo, commit, files: listed });
  const total = wanted.reduce((s, f) => s + f.size, 0);
  const onDisk = (f: ListedFile) => {
    if (snapshotFilePresent(repoDir, commit, f)) return f.size;
    const b = blobFile(repoDir, f.etag);
    if (existsSync(b)) return f.size;
    return existsSync(partialFile(b)) ? Math.min(statSync(partialFile(b)).size, f.size) : 0;
  };
  let done = wanted.reduce((s, f) => s + onDisk(f), 0);
  let fetched = 0;
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  for (const f of wanted) {
    if (snapshotFilePresent(repoDir, commit, f)) continue;
    const before = onDisk(f);
    let got = 0;
    o.onProgress?.({ file: f.path, done, total, fetched });
    await downloadBlob(
      blobFile(repoDir, f.etag),
      {
        url: `${endpoint}/${repo}/resolve/${commit}/${encodePath(f.path)}`,
        size: f.size,
        hash: { algo: f.lfs ? 'sha256' : 'git-sha1', hex: f.etag },
      },
      {
        headers,
        idleTimeoutMs: timeoutMs,
        target: { endpoint, repo, revision, path: f.path },
        onBytes: (n) => {
          got += n;
          fetched += n;
          o.onProgress?.({ file: f.path, done: done + got, total, fetched });
        },
      },
    );
    done += f.size - before;
    await linkSnapshotFile(repoDir, commit, f.path, f.etag);
  }
  o.onProgress?.({ file: repo, done: total, total, fetched });
  // Last: the ref. Until it is written, the revision name does not lead to this snapshot.
  await writeRef(repoDir, revision, commit);
  return {
    repo,
    revision,
    commit,
    path: snapshotDir(repoDir, commit),
    files: wanted.map((f) => ({ path: f.path, size: f.size })),
    fetched,
    fromCache: false,
  };
}

/** One plain HTTPS file with a published sha256 and size (a catalog entry of kind 'url'). */
export interface UrlFile {
  /** The catalog name: the file is cached as models--graft-catalog--<name>. */
  name: string;
  url: string;
  sha256: string;
  size: number;
  /** The file name in the snapshot folder. */
  file: string;
}

/**
 * A plain-URL file in the same cache: models--graft-catalog--<name>/blobs/<sha256>, linked as
 * snapshots/<sha256>/<file> (the content hash stands in for a commit; no ref is written, since the
 * catalog names the hash). Returns the file's path. No token is sent: the host is not the hub.
 */
export async function pullUrl(
  u: UrlFile,
  o: Pick<PullOptions, 'cacheDir' | 'offline' | 'onProgress' | 'timeoutMs'> = {},
): Promise<PullResult> {
  const cacheDir = o.cacheDir ?? hubCacheDir();
  const repo = `graft-catalog/${u.name}`;
  const repoDir = repoCacheDir(repo, cacheDir);
  const sha = u.sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha)) throw new GraftError(`catalog entry ${u.name}: '${u.sha256}' is not a sha256`);
  const file = checkRelativePath(u.file);
  const path = join(snapshotDir(repoDir, sha), file);
  const result = (fetched: number, fromCache: boolean): PullResult => ({
    repo,
    revision: sha,
    commit: sha,
    path,
    files: [{ path: file, size: u.size }],
    fetched,
    fromCache,
  });
  if (snapshotFilePresent(repoDir, sha, { path: file, size: u.size })) return result(0, true);
  if (o.offline ?? hubOffline())
    throw new GraftError(
      `HF_HUB_OFFLINE is set and ${u.name} (${file}) is not in the cache (${cacheDir})`,
      `download it with the network first: graft pull ${u.name} (with HF_HUB_OFFLINE unset)`,
    );
  const origin = new URL(u.url).origin;
  let fetched = 0;
  const blob = blobFile(repoDir, sha);
  let done = existsSync(partialFile(blob)) ? statSync(partialFile(blob)).size : 0;
  o.onProgress?.({ file, done, total: u.size, fetched });
  await downloadBlob(
    blob,
    { url: u.url, size: u.size, hash: { algo: 'sha256', hex: sha } },
    {
      idleTimeoutMs: o.timeoutMs,
      target: { endpoint: origin, repo: u.name, path: file, notHub: true },
      onBytes: (n) => {
        fetched += n;
        done += n;
        o.onProgress?.({ file, done, total: u.size, fetched });
      },
    },
  );
  await linkSnapshotFile(repoDir, sha, file, sha);
  return result(fetched, false);
}
