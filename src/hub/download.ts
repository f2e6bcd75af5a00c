/**
 * One blob downloaded so that it can be trusted, the part @huggingface/hub's downloadFileToCacheDir
 * leaves out: resumable (bytes go to `<blob>.incomplete`, a rerun asks for the rest with HTTP Range),
 * verified (sha256 for LFS files, git blob sha1 `sha1("blob <size>\0" + bytes)` for the others, against
 * the hash the hub lists; a mismatch deletes the partial and says so), atomic (the blob appears under its
 * name by one rename, only once verified), with an idle timeout and a byte count for progress.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GraftError } from '../util/errors.js';
import { httpError, networkCode, unreachable, type HubTarget } from './errors.js';

/** What a blob must be: its size and its hash as the hub gives it. */
export interface BlobSpec {
  url: string;
  size: number;
  /** sha256 of the bytes (LFS files, plain files with a published sha256) or git blob sha1 (small git files). */
  hash: { algo: 'sha256' | 'git-sha1'; hex: string };
}

export interface DownloadOptions {
  headers?: Record<string, string>;
  /** Give up when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number;
  /** Called with each chunk's length as it is written. */
  onBytes?: (n: number) => void;
  /** For error messages: which repository, revision and file. */
  target: HubTarget;
}

export interface DownloadResult {
  /** Bytes received over the network by this call. */
  fetched: number;
  /** Bytes already on disk from an earlier, interrupted download. */
  resumedFrom: number;
}

export const partialFile = (blob: string) => `${blob}.incomplete`;

function newHash(spec: BlobSpec): Hash {
  if (spec.hash.algo === 'sha256') return createHash('sha256');
  return createHash('sha1').update(`blob ${spec.size}\0`);
}

async function hashFile(h: Hash, path: string): Promise<void> {
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
}

const fmtBytes = (n: number) =>
  n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;

/**
 * Download `spec` into the blob file `dest` (resuming `dest.incomplete` if present) and verify it.
 * An existing blob of the right size is trusted: it was verified when written.
 */
export async function downloadBlob(dest: string, spec: BlobSpec, o: DownloadOptions): Promise<DownloadResult> {
  if (existsSync(dest)) {
    if (statSync(dest).size === spec.size) return { fetched: 0, resumedFrom: 0 };
    await rm(dest, { force: true });
  }
  await mkdir(dirname(dest), { recursive: true });
  const partial = partialFile(dest);
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (have > spec.size) {
    await rm(partial, { force: true });
    have = 0;
  }
  let hash = newHash(spec);
  if (have > 0) await hashFile(hash, partial);
  const resumedFrom = have;
  let fetched = 0;
  const name = o.target.path ?? dest;

  if (have < spec.size) {
    const ctrl = new AbortController();
    const idleMs = o.idleTimeoutMs ?? 30_000;
    let timer = setTimeout(() => ctrl.abort(), idleMs);
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ctrl.abort(), idleMs);
    };
    let res: Response;
    try {
      // identity: the bytes on the wire are the file's, so a Range continues them (as huggingface_hub asks).
      const headers = { ...o.headers, 'Accept-Encoding': 'identity', ...(have > 0 ? { Range: `bytes=${have}-` } : {}) };
      res = await fetch(spec.url, { headers, signal: ctrl.signal });
    } catch (e) {
      clearTimeout(timer);
      throw unreachable(
        o.target.endpoint,
        ctrl.signal.aborted ? 'TIMEOUT' : (networkCode(e) ?? String((e as Error).message)),
        o.target.notHub,
      );
    }
    if (res.status === 416 && have > 0) {
      // The server cannot serve the rest of what we hold: start over.
      clearTimeout(timer);
      await res.body?.cancel();
      await rm(partial, { force: true });
      return downloadBlob(dest, spec, o);
    }
    if (!res.ok) {
      clearTimeout(timer);
      await res.body?.cancel();
      throw httpError(res.status, res.headers.get('X-Error-Code'), o.target);
    }
    let append = have > 0;
    if (res.status === 206) {
      const m = /^bytes (\d+)-/.exec(res.headers.get('Content-Range') ?? '');
      if (!m || Number(m[1]) !== have) append = false;
    } else append = false; // a 200 is the whole file: the server ignored Range
    if (!append && have > 0) {
      if (res.status === 206) {
        clearTimeout(timer);
        await res.body?.cancel();
        await rm(partial, { force: true });
        return downloadBlob(dest, spec, o);
      }
      hash = newHash(spec);
      have = 0;
    }
    const fh = await open(partial, append ? 'a' : 'w');
    try {
      if (!res.body) throw new Error('empty response');
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        touch();
        if (have + value.byteLength > spec.size)
          throw new GraftError(`${name}: the hub sent more than the ${spec.size} bytes it listed`);
        await fh.write(value);
        hash.update(value);
        have += value.byteLength;
        fetched += value.byteLength;
        o.onBytes?.(value.byteLength);
      }
    } catch (e) {
      if (e instanceof GraftError) {
        await fh.close();
        await rm(partial, { force: true });
        throw e;
      }
      const why = ctrl.signal.aborted
        ? `no data for ${idleMs >= 1000 ? `${Math.round(idleMs / 1000)} s` : `${idleMs} ms`}`
        : (networkCode(e) ?? (e as Error).message);
      throw new GraftError(
        `download of ${name} interrupted after ${fmtBytes(have)} of ${fmtBytes(spec.size)} (${why})`,
        'run the same command again: the download resumes where it stopped',
      );
    } finally {
      clearTimeout(timer);
      await fh.close().catch(() => {});
    }
    if (have < spec.size)
      throw new GraftError(
        `download of ${name} interrupted after ${fmtBytes(have)} of ${fmtBytes(spec.size)} (the connection closed early)`,
        'run the same command again: the download resumes where it stopped',
      );
  }

  const got = hash.digest('hex');
  if (got !== spec.hash.hex.toLowerCase()) {
    await rm(partial, { force: true });
    throw new GraftError(
      `${name}: the downloaded bytes do not match the hub's ${spec.hash.algo} (expected ${spec.hash.hex}, got ${got}); the corrupted download was deleted`,
      'run the command again to download it afresh; if this repeats, the file is damaged on the hub or by a proxy on the way',
    );
  }
  await rename(partial, dest);
  return { fetched, resumedFrom };
}
