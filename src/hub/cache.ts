/**
 * The Hugging Face cache on disk, shared with Python (huggingface_hub) and Transformers.js users:
 * where it is (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), how a repository
 * is laid out in it, and how Graft writes into it without ever leaving a half snapshot that loads:
 *
 *   models--ORG--NAME/
 *     blobs/<etag>                 file contents, named by the hub's ETag (sha256 for LFS files, git sha1 otherwise)
 *     blobs/<etag>.incomplete      a partial download (resumed with HTTP Range; never read as a file)
 *     snapshots/<commit>/<path>    symlinks to ../../blobs/<etag> (copies where symlinks fail)
 *     refs/<branch>                the commit the branch (or tag) pointed to when last pulled
 *     .graft/<commit>.json         Graft's record of the repository's file listing at that commit
 *
 * A snapshot file appears only once its blob is verified; the listing is written before any file is
 * linked and the ref last, so a snapshot is complete for a set of globs exactly when every listed file
 * matching them is present. Snapshots written by other tools (no listing) are judged by their files.
 * Also the environment the hub client reads: HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE. (The cache path
 * follows huggingface_hub's rules, as @huggingface/hub's getHFHubCachePath does; it is computed here so
 * that resolving a local model path never loads the hub client.)
 */
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { GraftError } from '../util/errors.js';

/** The hub cache folder: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub (as huggingface_hub). */
export function hubCacheDir(): string {
  const env = process.env;
  if (env['HF_HUB_CACHE']) return env['HF_HUB_CACHE'];
  if (env['HUGGINGFACE_HUB_CACHE']) return env['HUGGINGFACE_HUB_CACHE'];
  const home = env['HF_HOME'] || join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

/** The hub's base URL: HF_ENDPOINT, else https://huggingface.co. */
export function hubEndpoint(): string {
  return (process.env['HF_ENDPOINT'] || 'https://huggingface.co').replace(/\/+$/, '');
}

/** The access token: HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN); undefined when unset. */
export function hubToken(): string | undefined {
  return process.env['HF_TOKEN'] || process.env['HUGGING_FACE_HUB_TOKEN'] || undefined;
}

/** HF_HUB_OFFLINE=1 (or true/yes/on): resolve from the cache only, never touch the network. */
export function hubOffline(): boolean {
  return /^(1|true|yes|on)$/i.test(process.env['HF_HUB_OFFLINE'] ?? '');
}

/** A repository id `ORG/NAME` (or a bare `NAME`), checked so that it cannot escape the cache folder. */
export function checkRepoId(repo: string): string {
  if (!/^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/.test(repo) || repo.includes('..'))
    throw new GraftError(`not a hub repository id: '${repo}'`, 'expected ORG/NAME, e.g. Xenova/mobilenet_v2_1.0_224');
  return repo;
}

/** The cache folder of a model repository: models--ORG--NAME. */
export function repoCacheDir(repo: string, cacheDir = hubCacheDir()): string {
  return join(cacheDir, `models--${checkRepoId(repo).split('/').join('--')}`);
}

export const isCommitHash = (rev: string) => /^[0-9a-f]{40}$/.test(rev);

/** A revision (branch, tag or commit) checked to be usable as a path under refs/. */
export function checkRevision(rev: string): string {
  if (!rev || rev.split('/').some((p) => p === '' || p === '.' || p === '..') || /[\\\0]/.test(rev))
    throw new GraftError(`not a revision: '${rev}'`);
  return rev;
}

export const blobFile = (repoDir: string, etag: string) => join(repoDir, 'blobs', etag);
export const snapshotDir = (repoDir: string, commit: string) => join(repoDir, 'snapshots', commit);

/** A snapshot-relative path from a listing, refused if it could leave the snapshot folder. */
export function checkRelativePath(p: string): string {
  if (!p || p.startsWith('/') || p.split('/').some((s) => s === '' || s === '.' || s === '..') || /[\\\0]/.test(p))
    throw new GraftError(`refusing a hub file path that could leave the cache: '${p}'`);
  return p;
}

/** The commit a branch or tag pointed to when last pulled (refs/<rev>), or a commit hash itself. */
export function readRef(repoDir: string, rev: string): string | undefined {
  if (isCommitHash(rev)) return rev;
  const f = join(repoDir, 'refs', checkRevision(rev));
  if (!existsSync(f)) return undefined;
  const c = readFileSync(f, 'utf8').trim();
  return isCommitHash(c) ? c : undefined;
}

/** Write a file atomically: a temporary name beside it, then rename. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** Point refs/<rev> at a commit (the last step of a pull). Commit hashes need no ref. */
export async function writeRef(repoDir: string, rev: string, commit: string): Promise<void> {
  if (rev === commit) return;
  await writeFileAtomic(join(repoDir, 'refs', checkRevision(rev)), commit);
}

/** One file of a repository listing: its size and the ETag naming its blob. */
export interface ListedFile {
  path: string;
  size: number;
  /** The blob name: the LFS sha256 for LFS files, the git blob sha1 otherwise. */
  etag: string;
  /** True when `etag` is a sha256 of the contents (LFS), false when it is a git blob sha1. */
  lfs: boolean;
}

/** Graft's record of a repository at one commit: what the hub listed, written before anything is linked. */
export interface SnapshotListing {
  repo: string;
  commit: string;
  files: ListedFile[];
}

const listingFile = (repoDir: string, commit: string) => join(repoDir, '.graft', `${commit}.json`);

export async function writeListing(repoDir: string, listing: SnapshotListing): Promise<void> {
  await writeFileAtomic(listingFile(repoDir, listing.commit), JSON.stringify(listing, null, 1));
}

export function readListing(repoDir: string, commit: string): SnapshotListing | undefined {
  const f = listingFile(repoDir, commit);
  if (!existsSync(f)) return undefined;
  try {
    const l = JSON.parse(readFileSync(f, 'utf8')) as SnapshotListing;
    return Array.isArray(l.files) ? l : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a snapshot file is present and whole (a symlink to an existing blob, or a copy of the right size). */
export function snapshotFilePresent(repoDir: string, commit: string, file: { path: string; size?: number }): boolean {
  const p = join(snapshotDir(repoDir, commit), file.path);
  try {
    const s = statSync(p);
    return s.isFile() && (file.size === undefined || s.size === file.size);
  } catch {
    return false;
  }
}

/**
 * Link a verified blob into a snapshot as huggingface_hub does (a relative symlink to ../../blobs/<etag>),
 * or copy it where symlinks fail. Either way the file appears under its name in one rename.
 */
export async function linkSnapshotFile(repoDir: string, commit: string, path: string, etag: string): Promise<string> {
  const dst = join(snapshotDir(repoDir, commit), checkRelativePath(path));
  const blob = blobFile(repoDir, etag);
  await mkdir(dirname(dst), { recursive: true });
  const tmp = `${dst}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  try {
    await symlink(relative(dirname(dst), blob).split(sep).join('/'), tmp);
  } catch {
    await copyFile(blob, tmp);
  }
  await rename(tmp, dst);
  return dst;
}

/** Files in a snapshot folder (relative paths with '/'), for snapshots that have no Graft listing. */
export function snapshotFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string) => {
    let names: string[];
    try {
      names = readdirSyncSafe(d);
    } catch {
      return;
    }
    for (const n of names) {
      const full = join(d, n);
      let st;
      try {
        st = statSync(full);
      } catch {
        continue; // a dangling symlink: its blob is gone
      }
      if (st.isDirectory()) walk(full, `${prefix}${n}/`);
      else if (st.isFile() && !n.endsWith('.tmp')) out.push(`${prefix}${n}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

const readdirSyncSafe = (d: string) => (existsSync(d) && lstatSync(d).isDirectory() ? readdirSync(d) : []);
