/**
 * Crash- and full-disk-safe writes: every model, classifier folder, checkpoint, cache shard and report
 * Graft writes goes through here. A file is written to a temporary sibling, flushed to the disk and
 * renamed over its name, so a full disk, a write error or a kill leaves the previous file whole (or no
 * file), never half of one. A folder (a classifier: model.onnx + labels.json + tokenizer…) is staged
 * complete in a temporary sibling folder and swapped in by renames, so no mix of old and new files is
 * ever read. A write that fails for lack of space says which path, how many bytes it needed and how many
 * were free. `injectWriteFailure` lets tests make a write fail after N bytes, as a full disk would.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { GraftError } from './errors.js';

/** A write failure to inject (tests): the next matching write fails with `code` after `afterBytes` bytes. */
export interface WriteFault {
  afterBytes: number;
  /** Default 'ENOSPC' (no space left on the device). */
  code?: string;
  /** Only writes whose final path this matches (default: any). */
  match?: RegExp;
  /** How many writes fail before the fault clears (default 1). */
  times?: number;
}

let fault: (WriteFault & { left: number }) | undefined;

/** Make the next matching write(s) fail as a full disk would (tests); `undefined` clears it. */
export function injectWriteFailure(f: WriteFault | undefined): void {
  fault = f ? { ...f, left: f.times ?? 1 } : undefined;
}

const CHUNK = 1 << 22;

/** Bytes free to an unprivileged writer in the filesystem holding `dir` (undefined when it cannot be asked). */
export function freeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** The GraftError for a failed write of `bytes` bytes to `path`. */
function writeError(path: string, bytes: number, e: unknown): GraftError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code && NO_SPACE.has(code)) {
    const dir = dirname(resolve(path));
    const free = freeBytes(existsSync(dir) ? dir : dirname(dir));
    return new GraftError(
      `could not write ${path}: no space left on the device (${code}): it needs ${bytes} bytes, ${free === undefined ? 'an unknown number' : free} bytes are free in ${dir}`,
      'free some space or write elsewhere; any previous file at that path is unchanged',
    );
  }
  return new GraftError(`could not write ${path}: ${(e as Error).message}`);
}

/** Write `bytes` to the open file, honouring an injected fault for `path`. */
function writeAll(fd: number, bytes: Uint8Array, path: string): void {
  const f = fault && (!fault.match || fault.match.test(path)) ? fault : undefined;
  if (f && --f.left <= 0) fault = undefined;
  let off = 0;
  while (off < bytes.length) {
    let n = Math.min(CHUNK, bytes.length - off);
    if (f && off + n > f.afterBytes) n = Math.max(0, f.afterBytes - off);
    if (n > 0) off += writeSync(fd, bytes, off, n);
    if (f && off >= f.afterBytes) {
      const err = new Error(`${f.code ?? 'ENOSPC'}: no space left on device, write`) as NodeJS.ErrnoException;
      err.code = f.code ?? 'ENOSPC';
      throw err;
    }
  }
}

/**
 * Write a file via a temporary sibling, fsync and rename, creating its folder. On any failure the
 * temporary file is removed and whatever was at `path` before is untouched.
 */
export function atomicWrite(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let fd: number | undefined;
  try {
    mkdirSync(dirname(path) || '.', { recursive: true });
    fd = openSync(tmp, 'wx');
    writeAll(fd, bytes, path);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined)
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
    try {
      rmSync(tmp, { force: true });
    } catch {
      /* the folder itself is unusable: there is no temporary file to remove */
    }
    throw writeError(path, bytes.length, e);
  }
}

/**
 * The files that make a model or classifier folder what it loads as: a folder save replaces these
 * (drops the old one when the new save does not write it) and keeps any other file already there.
 */
export const MODEL_FOLDER_FILES = [
  'model.onnx',
  'model.onnx.data',
  'labels.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'config.json',
  'special_tokens_map.json',
  'vocab.txt',
  'generation_config.json',
  'graft_training.json',
];

/**
 * A folder written as one unit: fill `stage` (a temporary sibling folder; write files by name under it
 * with atomicWrite or writeOnnx), then `commit()` swaps it in for `dir` by two renames, or `abort()`
 * removes it. Files of an existing `dir` the stage does not hold are kept (hard-linked or copied into the
 * stage; subfolders moved over after the swap) unless named in `replaces` (the files the folder's
 * format owns: a stale tokenizer.json must not make the new folder load wrongly). Until commit, `dir` is
 * as it was; a kill between the two renames leaves the previous folder whole beside it as
 * `.<name>.old-<pid>-<time>`. `error(e)` turns an error about the stage into one naming `dir`.
 */
export class FolderWrite {
  readonly stage: string;
  private readonly parent: string;
  private readonly name: string;
  private readonly stamp = `${process.pid}-${Date.now()}`;

  constructor(
    readonly dir: string,
    private readonly o: { replaces?: string[] } = {},
  ) {
    this.parent = dirname(resolve(dir));
    this.name = basename(resolve(dir));
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new GraftError(`${dir} exists and is not a folder`);
    this.stage = join(this.parent, `.${this.name}.tmp-${this.stamp}`);
    try {
      mkdirSync(this.stage, { recursive: true });
    } catch (e) {
      throw writeError(dir, 0, e);
    }
  }

  /** An error from writing into the stage, naming the folder's own paths. */
  error(e: unknown): Error {
    if (e instanceof GraftError) return new GraftError(e.message.split(this.stage).join(this.dir), e.hint);
    return e as Error;
  }

  abort(): void {
    rmSync(this.stage, { recursive: true, force: true });
  }

  commit(): void {
    const { dir, stage } = this;
    const later: string[] = [];
    const existed = existsSync(dir);
    try {
      if (existed) {
        const replaced = new Set(this.o.replaces ?? []);
        for (const e of readdirSync(dir, { withFileTypes: true })) {
          if (replaced.has(e.name) || existsSync(join(stage, e.name)) || e.name.includes('.tmp-')) continue;
          if (e.isDirectory()) later.push(e.name);
          else if (e.isFile()) {
            try {
              linkSync(join(dir, e.name), join(stage, e.name));
            } catch {
              copyFileSync(join(dir, e.name), join(stage, e.name));
            }
          }
        }
      }
      if (!existed) {
        renameSync(stage, dir);
        return;
      }
    } catch (e) {
      this.abort();
      throw writeError(dir, 0, e);
    }
    const old = join(this.parent, `.${this.name}.old-${this.stamp}`);
    renameSync(dir, old);
    try {
      renameSync(stage, dir);
    } catch (e) {
      renameSync(old, dir);
      this.abort();
      throw writeError(dir, 0, e);
    }
    for (const d of later) renameSync(join(old, d), join(dir, d));
    rmSync(old, { recursive: true, force: true });
  }
}

/** Write a folder as one unit (FolderWrite): `write(stage)` fills it; on failure `dir` is unchanged. */
export function writeFolderAtomic(dir: string, write: (stage: string) => void, o: { replaces?: string[] } = {}): void {
  const w = new FolderWrite(dir, o);
  try {
    write(w.stage);
  } catch (e) {
    w.abort();
    throw w.error(e);
  }
  w.commit();
}
