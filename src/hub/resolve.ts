/**
 * From what a user types as a model to a local path: an existing file or folder stays as it is;
 * `hf:ORG/NAME[@REV]` is the snapshot folder of that hub repository; a catalog name (`graft models`)
 * is its hub snapshot or its downloaded file. Hub and catalog models come from the cache when it holds
 * what a model needs (config, tokenizer, the fp32 ONNX model); only what is missing is downloaded,
 * and nothing at all with HF_HUB_OFFLINE=1. This is the only way a command reaches the network.
 */
import { existsSync } from 'node:fs';
import { GraftError } from '../util/errors.js';
import { findCatalogEntry, type CatalogEntry } from './catalog.js';
import { pull, pullUrl, type PullOptions, type PullResult } from './pull.js';

/** The options of a resolution: where the cache and hub are, progress. Globs and revision come from the ref. */
export type ResolveOptions = Omit<PullOptions, 'revision' | 'include' | 'requireModel' | 'preferCache'>;

/** `hf:ORG/NAME[@REV]` → repository and revision; undefined for anything else. */
export function parseHfRef(ref: string): { repo: string; revision?: string } | undefined {
  if (!ref.startsWith('hf:')) return undefined;
  const body = ref.slice(3).replace(/^\/+/, '');
  const at = body.indexOf('@');
  const repo = at < 0 ? body : body.slice(0, at);
  const revision = at < 0 ? undefined : body.slice(at + 1);
  if (!repo || revision === '')
    throw new GraftError(`not a hub model reference: '${ref}'`, 'write hf:ORG/NAME or hf:ORG/NAME@REVISION');
  return { repo, ...(revision ? { revision } : {}) };
}

/** Whether resolving `ref` may download: an `hf:` reference or a catalog name that is not a local path. */
export function isHubModelRef(ref: string): boolean {
  if (existsSync(ref)) return false;
  return ref.startsWith('hf:') || findCatalogEntry(ref) !== undefined;
}

/** Fetch (or find in the cache) what a catalog entry's use needs; `include` overrides a hub entry's globs. */
export async function pullCatalogEntry(entry: CatalogEntry, o: PullOptions = {}): Promise<PullResult> {
  const s = entry.source;
  if (s.kind === 'url')
    return pullUrl({ name: entry.name, url: s.url, sha256: s.sha256, size: s.size, file: s.file }, o);
  return pull(s.repo, {
    ...o,
    revision: o.revision ?? s.revision,
    // The entry's globs, else what a model needs (then the fp32 model file must be among them).
    include: o.include ?? (s.include.length ? s.include : undefined),
  });
}

/**
 * The local path a command should load for `ref`: the path itself when it exists, else the cached
 * (downloaded if need be) snapshot folder of an `hf:` reference or catalog name. Anything else is
 * returned unchanged, for the command to report as not found.
 */
export async function resolveModelRef(ref: string, o: ResolveOptions = {}): Promise<string> {
  if (existsSync(ref)) return ref;
  const hf = parseHfRef(ref);
  if (hf)
    return (await pull(hf.repo, { ...o, ...(hf.revision ? { revision: hf.revision } : {}), preferCache: true })).path;
  const entry = findCatalogEntry(ref);
  if (entry) return (await pullCatalogEntry(entry, { ...o, preferCache: true })).path;
  return ref;
}
