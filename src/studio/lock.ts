/**
 * One Graft Studio per data folder: `lockDataDir` takes an exclusive lock on DIR/studio.lock (a tiny
 * SQLite database held in EXCLUSIVE locking mode, so the lock is the operating system's file lock: it
 * goes away with the process, whatever way it dies; no stale lock is ever left to clean up) and writes
 * the holder's pid to DIR/studio.pid for the message a second server shows. A second server on the same
 * folder, in this process or another, is refused with a GraftError naming the folder and that pid.
 */
import Database from 'better-sqlite3';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';

export interface DataDirLock {
  readonly dir: string;
  /** Release the lock (idempotent). */
  release(): void;
}

export const LOCK_FILE = 'studio.lock';
export const PID_FILE = 'studio.pid';

/** The pid (and start time) the lock holder wrote, when it can be read. */
function holder(dir: string): { pid?: number; since?: string } {
  try {
    const j = JSON.parse(readFileSync(join(dir, PID_FILE), 'utf8')) as { pid?: unknown; since?: unknown };
    return {
      ...(Number.isInteger(j.pid) ? { pid: j.pid as number } : {}),
      ...(typeof j.since === 'string' ? { since: j.since } : {}),
    };
  } catch {
    return {};
  }
}

/** Take the data folder's lock, or throw naming the folder and the pid of the server holding it. */
export function lockDataDir(dir: string): DataDirLock {
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // a write transaction takes the exclusive lock; in EXCLUSIVE locking mode it is kept after commit
    db.exec(
      `CREATE TABLE IF NOT EXISTS holder (pid INTEGER); BEGIN EXCLUSIVE; DELETE FROM holder; INSERT INTO holder VALUES (${process.pid}); COMMIT;`,
    );
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code !== 'SQLITE_BUSY' && (e as { code?: string }).code !== 'SQLITE_LOCKED') throw e;
    const h = holder(dir);
    throw new GraftError(
      `the data folder ${dir} is in use by another Graft Studio (${h.pid !== undefined ? `pid ${h.pid}` : 'pid unknown'}${h.since ? `, started ${h.since}` : ''})`,
      `stop that server first${h.pid !== undefined ? ` (kill ${h.pid})` : ''}, or start this one with another --data folder`,
    );
  }
  atomicWrite(
    join(dir, PID_FILE),
    Buffer.from(`${JSON.stringify({ pid: process.pid, since: new Date().toISOString() })}\n`),
  );
  let held = true;
  return {
    dir,
    release() {
      if (!held) return;
      held = false;
      try {
        if (holder(dir).pid === process.pid) rmSync(join(dir, PID_FILE), { force: true });
      } finally {
        db.close();
      }
    },
  };
}
