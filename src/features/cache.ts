/**
 * An on-disk activation cache: feature vectors keyed by a sha256 of what produced them (model
 * content, cut node, preprocessing, input bytes), stored as fp16.
 *
 * Layout: a folder of immutable shard files. Every putMany writes one new shard, named with the
 * writer's pid and a random tag, to a temporary name and renames it into place, so a reader sees a
 * shard whole or not at all. Nothing is ever rewritten in place: killing a writer loses at most the
 * batch it was writing, and any number of processes can write at once. The index (key → shard,
 * offset) is rebuilt on open from the shards' own key tables; refresh() picks up shards written
 * since by other processes.
 *
 * Shard format (little-endian):
 *   magic 'GFC1' | u32 count | count × (32-byte key, u32 dim, u32 byte offset of data) | fp16 data…
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { floatToHalf, halfToFloat } from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';
import { atomicWrite } from '../util/atomic.js';

const MAGIC = 0x31434647; // 'GFC1' little-endian
const ENTRY = 40;
const SUFFIX = '.shard';

/** sha256 of some bytes or a string, hex. */
export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The cache key of one example: everything that determines its activation. */
export function cacheKey(parts: {
  model: string;
  node: string;
  preprocess: string;
  input: string | Uint8Array;
}): string {
  const h = createHash('sha256');
  for (const p of [parts.model, parts.node, parts.preprocess]) {
    const b = Buffer.from(p, 'utf8');
    h.update(u32le(b.length)).update(b);
  }
  const inp = typeof parts.input === 'string' ? Buffer.from(parts.input, 'utf8') : parts.input;
  h.update(u32le(inp.length)).update(inp);
  return h.digest('hex');
}

interface Loc {
  shard: number;
  offset: number;
  dim: number;
}

export interface CacheEntry {
  key: string;
  vector: Float32Array;
}

/** fp16 encoding/decoding, exposed for tests and for callers that keep vectors compact in memory. */
export function toHalf(v: Float32Array): Uint16Array {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = floatToHalf(v[i]!);
  return out;
}

const HALF_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = halfToFloat(i);
  return t;
})();

export function fromHalf(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = HALF_TABLE[h[i]!]!;
  return out;
}

export class FeatureCache {
  private shards: string[] = [];
  private shardSet = new Set<string>();
  private index = new Map<string, Loc>();
  private bytes = 0;
  private seq = 0;
  private readonly tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  /** Shards skipped on open because they were unreadable (named by path, with why). */
  readonly skipped: { path: string; error: string }[] = [];

  private constructor(readonly dir: string) {}

  /** Open (creating if needed) a cache folder and index every complete shard in it. */
  static open(dir: string): FeatureCache {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new GraftError(`feature cache: ${dir} is not a folder`);
    mkdirSync(dir, { recursive: true });
    const c = new FeatureCache(dir);
    c.refresh();
    return c;
  }

  /** Index shards that appeared since open (written by other processes). Returns how many were added. */
  refresh(): number {
    const names = readdirSync(this.dir)
      .filter((n) => n.endsWith(SUFFIX) && !this.shardSet.has(n))
      .sort();
    let added = 0;
    for (const n of names) {
      try {
        this.indexShard(n);
        added++;
      } catch (e) {
        this.skipped.push({ path: join(this.dir, n), error: (e as Error).message });
        this.shardSet.add(n);
      }
    }
    return added;
  }

  private indexShard(name: string): void {
    const path = join(this.dir, name);
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(8);
      if (size < 8 || readSync(fd, head, 0, 8, 0) !== 8) throw new Error('truncated shard header');
      if (head.readUInt32LE(0) !== MAGIC) throw new Error('not a feature-cache shard (bad magic)');
      const count = head.readUInt32LE(4);
      const tableBytes = count * ENTRY;
      if (8 + tableBytes > size) throw new Error('truncated shard key table');
      const table = Buffer.alloc(tableBytes);
      readSync(fd, table, 0, tableBytes, 8);
      const shard = this.shards.length;
      const locs: [string, Loc][] = [];
      for (let i = 0; i < count; i++) {
        const o = i * ENTRY;
        const key = table.toString('hex', o, o + 32);
        const dim = table.readUInt32LE(o + 32);
        const offset = table.readUInt32LE(o + 36);
        if (offset + 2 * dim > size) throw new Error(`truncated shard data (entry ${i})`);
        locs.push([key, { shard, offset, dim }]);
      }
      this.shards.push(path);
      this.shardSet.add(name);
      this.bytes += size;
      for (const [k, l] of locs) if (!this.index.has(k)) this.index.set(k, l);
    } finally {
      closeSync(fd);
    }
  }

  get size(): number {
    return this.index.size;
  }

  /** Bytes of the shard files indexed by this handle. */
  get bytesOnDisk(): number {
    return this.bytes;
  }

  has(key: string): boolean {
    return this.index.has(normKey(key));
  }

  get(key: string): Float32Array | undefined {
    return this.getMany([key])[0];
  }

  /** Look up many keys, reading each shard file once. */
  getMany(keys: string[]): (Float32Array | undefined)[] {
    const out: (Float32Array | undefined)[] = new Array(keys.length).fill(undefined);
    const byShard = new Map<number, number[]>();
    keys.forEach((k, i) => {
      const l = this.index.get(normKey(k));
      if (!l) return;
      let a = byShard.get(l.shard);
      if (!a) byShard.set(l.shard, (a = []));
      a.push(i);
    });
    for (const [shard, idx] of byShard) {
      const fd = openSync(this.shards[shard]!, 'r');
      try {
        for (const i of idx) {
          const l = this.index.get(normKey(keys[i]!))!;
          const buf = new Uint16Array(l.dim);
          const got = readSync(fd, new Uint8Array(buf.buffer), 0, 2 * l.dim, l.offset);
          if (got !== 2 * l.dim) throw new GraftError(`feature cache: short read in ${this.shards[shard]}`);
          out[i] = fromHalf(buf);
        }
      } finally {
        closeSync(fd);
      }
    }
    return out;
  }

  /** Store vectors as one new shard (written atomically). Keys already present are skipped. */
  putMany(entries: CacheEntry[]): void {
    const seen = new Set<string>();
    const fresh: { key: string; vector: Float32Array }[] = [];
    for (const e of entries) {
      const k = normKey(e.key);
      if (this.index.has(k) || seen.has(k)) continue;
      seen.add(k);
      fresh.push({ key: k, vector: e.vector });
    }
    if (fresh.length === 0) return;
    const tableEnd = 8 + fresh.length * ENTRY;
    let total = tableEnd;
    for (const e of fresh) total += 2 * e.vector.length;
    if (total > 0xffffffff) throw new GraftError('feature cache: batch too large for one shard (over 4 GiB)');
    const buf = Buffer.alloc(total);
    buf.writeUInt32LE(MAGIC, 0);
    buf.writeUInt32LE(fresh.length, 4);
    let off = tableEnd;
    const locs: [string, number, number][] = [];
    fresh.forEach((e, i) => {
      const o = 8 + i * ENTRY;
      buf.write(e.key, o, 32, 'hex');
      buf.writeUInt32LE(e.vector.length, o + 32);
      buf.writeUInt32LE(off, o + 36);
      const v = e.vector;
      for (let j = 0; j < v.length; j++) buf.writeUInt16LE(floatToHalf(v[j]!), off + 2 * j);
      locs.push([e.key, off, v.length]);
      off += 2 * v.length;
    });
    const name = `${Date.now().toString(36).padStart(9, '0')}-${this.tag}-${(this.seq++).toString().padStart(6, '0')}${SUFFIX}`;
    const path = join(this.dir, name);
    try {
      atomicWrite(path, buf); // temporary file, fsync, rename: a full disk or a kill leaves no partial shard
    } catch (e) {
      throw new GraftError(`feature cache: ${(e as Error).message}`, (e as GraftError).hint);
    }
    const shard = this.shards.length;
    this.shards.push(path);
    this.shardSet.add(name);
    this.bytes += total;
    for (const [k, offset, dim] of locs) this.index.set(k, { shard, offset, dim });
  }

  /** Number of shard files indexed. */
  get shardCount(): number {
    return this.shards.length;
  }
}

/** Keys are 64 hex digits (a sha256); anything else is hashed to one. */
function normKey(k: string): string {
  return /^[0-9a-f]{64}$/.test(k) ? k : /^[0-9A-F]{64}$/i.test(k) ? k.toLowerCase() : sha256(k);
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

export function openCache(dir: string): FeatureCache {
  return FeatureCache.open(dir);
}

/** Same as FeatureCache.open. */
export function open(dir: string): FeatureCache {
  return FeatureCache.open(dir);
}
