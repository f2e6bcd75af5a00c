/**
 * Where the jobs live: a `redis://[user:password@]HOST:PORT[/DB]` address parsed into ioredis
 * connections for BullMQ (one per Queue, Worker, QueueEvents and FlowProducer, as BullMQ wants),
 * the one queue name Graft uses, and a reachability check with a clear message.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { GraftError } from '../util/errors.js';

/** The BullMQ queue every Graft job goes through (job names say what each is). */
export const QUEUE_NAME = 'graft';

/** ioredis options for a queue address. */
export function parseQueueUrl(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new GraftError(`--queue: '${url}' is not an address`, 'give redis://HOST:PORT, e.g. redis://127.0.0.1:6379');
  }
  if (u.protocol !== 'redis:')
    throw new GraftError(
      `--queue: '${url}' is not a redis:// address`,
      'give redis://HOST:PORT, e.g. redis://127.0.0.1:6379',
    );
  const port = u.port ? Number(u.port) : 6379;
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0)
    throw new GraftError(`--queue: '${u.pathname.slice(1)}' is not a Redis database number (in ${url})`);
  return {
    host: u.hostname || '127.0.0.1',
    port,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

/** The address without its password, for messages. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

export interface ConnectOptions {
  /** Called on connection errors (ioredis retries on its own); default: ignore them. */
  onError?: (e: Error) => void;
  /** Commands fail instead of waiting while disconnected (never for a Worker or QueueEvents). */
  failFast?: boolean;
}

/** One ioredis connection for a BullMQ object: reconnects forever, errors routed to onError. */
export function connect(url: string, o: ConnectOptions = {}): Redis {
  const r = new Redis({
    ...parseQueueUrl(url),
    maxRetriesPerRequest: o.failFast ? 1 : null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * times, 2000),
    lazyConnect: false,
  });
  r.on('error', (e: Error) => o.onError?.(e));
  return r;
}

/** Resolve when Redis at `url` answers PING; otherwise a GraftError after `timeoutMs`. */
export async function checkReachable(url: string, timeoutMs = 5000): Promise<void> {
  let last = '';
  const r = new Redis({
    ...parseQueueUrl(url),
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
  });
  r.on('error', (e: Error) => (last = e.message));
  try {
    await r.connect();
    const pong = await r.ping();
    if (pong !== 'PONG') throw new Error(`answered '${pong}' to PING`);
  } catch (e) {
    throw new GraftError(
      `cannot reach Redis at ${shownUrl(url)}: ${last || (e as Error).message}`,
      'start one (redis-server --port 6379, or apt-get install redis-server) and give its address as --queue redis://HOST:PORT',
    );
  } finally {
    r.disconnect();
  }
}
