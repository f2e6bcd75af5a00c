/**
 * Containment of file references: a path named inside a model or data folder (a TF.js weight shard, ONNX
 * external data, a checkpoint's tensor file, a tokenizer or config file) must stay inside that folder, after
 * `..` is resolved and after symlinks are followed. One exception keeps the Hugging Face cache working: a file
 * under `…/models--ORG--NAME/snapshots/<commit>/` may be a symlink into that same repository's `blobs/` folder
 * (huggingface_hub and Graft's own `pull` write snapshots that way). Every reader calls `insideFolder`.
 */
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { GraftError } from './errors.js';

/** Whether `child` is `parent` or lies under it (both absolute and normalized). */
function within(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r) && r.split(sep)[0] !== '..');
}

/** The hub repository folder (`…/models--ORG--NAME`) a real path lies in, when it is inside one of its snapshots. */
function hubRepoOf(realDir: string): string | undefined {
  const parts = realDir.split(sep);
  for (let i = parts.length - 2; i >= 0; i--) {
    if (/^(models|datasets|spaces)--./.test(parts[i]!) && parts[i + 1] === 'snapshots' && parts.length >= i + 3)
      return parts.slice(0, i + 1).join(sep) || sep;
  }
  return undefined;
}

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/**
 * The path of `rel` inside `dir`, refused with a GraftError naming it (as `what`) when it leaves the folder:
 * an absolute path, `..` climbing above `dir`, a NUL byte, or a symlink (of the file or of a folder on the
 * way) whose target lies outside `dir` (a Hugging Face snapshot's link into its repository's `blobs/` is
 * allowed). A file that does not exist is returned as is: the caller reports it missing.
 */
export function insideFolder(dir: string, rel: string, what: string): string {
  if (typeof rel !== 'string' || rel === '') throw new GraftError(`${what}: empty or missing path (in ${dir})`);
  if (rel.includes('\0')) throw new GraftError(`${what} '${rel.replace(/\0/g, '\\0')}' contains a NUL byte`);
  if (isAbsolute(rel) || /^[A-Za-z]:[\\/]/.test(rel) || rel.startsWith('\\'))
    throw new GraftError(`${what} '${rel}' is an absolute path; references must stay inside the folder ${dir}`);
  const base = resolve(dir);
  const file = resolve(base, rel.replace(/\\/g, '/'));
  if (!within(base, file))
    throw new GraftError(
      `${what} '${rel}' leaves the folder ${dir}`,
      'a model file may only reference files inside its own folder',
    );
  if (file === base) throw new GraftError(`${what} '${rel}' names the folder ${dir} itself, not a file in it`);
  if (!existsSync(file)) return join(dir, rel);
  const realBase = real(base);
  const realFile = real(file);
  if (within(realBase, realFile)) return join(dir, rel);
  const repo = hubRepoOf(realBase);
  if (repo && within(join(repo, 'blobs'), realFile)) return join(dir, rel);
  throw new GraftError(
    `${what} '${rel}' is a symlink to ${realFile}, outside the folder ${dir}`,
    'a model file may only reference files inside its own folder (Hugging Face cache snapshots may link into their blobs/)',
  );
}
