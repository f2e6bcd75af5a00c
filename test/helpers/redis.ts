/**
 * A throw-away Redis for tests: `redis-server` on 127.0.0.1 at a free port, in a temporary folder,
 * with no persistence (no RDB snapshots, no AOF), stopped (and its folder removed) by `stop()`.
 *
 * `needsRedis()` is a test's skip reason when no redis-server is installed; with GRAFT_REQUIRE_ASSETS=1
 * or CI=true nothing is skipped, so the test runs and startRedis fails loudly naming what is missing.
 * REDIS_SERVER overrides the binary (default: redis-server on PATH, else /usr/bin/redis-server).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function redisBinary(): string | undefined {
  const env = process.env['REDIS_SERVER'];
  if (env) return existsSync(env) ? env : undefined;
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const found = which.status === 0 ? which.stdout.trim() : '';
  if (found) return found;
  return existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : undefined;
}

const required = () => process.env['GRAFT_REQUIRE_ASSETS'] === '1' || process.env['CI'] === 'true';
const MISSING = 'redis-server is not installed (apt-get install redis-server, or set REDIS_SERVER to its path)';

/** The skip reason for a test that needs Redis, or false (always false under GRAFT_REQUIRE_ASSETS=1 / CI=true). */
export function needsRedis(): string | false {
  if (redisBinary() || required()) return false;
  return MISSING;
}

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released for redis-server to take). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Whether a Redis server answers PING on 127.0.0.1:port. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const end = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(500, () => end(false));
    s.once('error', () => end(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d: Buffer) => end(d.toString().startsWith('+PONG')));
  });
}

export interface TestRedis {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  /** Stop the server (SIGKILL if it does not exit within 3 s); its data is gone. */
  kill(): Promise<void>;
  /** Start it again on the same port, empty (no persistence). */
  restart(): Promise<void>;
  /** Stop it for good and remove its folder. */
  stop(): Promise<void>;
}

/** Start a redis-server on a free 127.0.0.1 port; resolves once it accepts connections. */
export async function startRedis(): Promise<TestRedis> {
  const bin = redisBinary();
  if (!bin) throw new Error(`MISSING TEST DEPENDENCY: ${MISSING}`);
  const dir = mkdtempSync(join(tmpdir(), 'graft-redis-'));
  let port = 0;
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      port ||= await freePort();
      const c = spawn(
        bin,
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--daemonize',
          'no',
          '--protected-mode',
          'yes',
          '--loglevel',
          'warning',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let log = '';
      c.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const ok = await new Promise<boolean>((resolve) => {
        const done = (v: boolean) => {
          clearInterval(t);
          resolve(v);
        };
        c.once('exit', () => done(false));
        const t = setInterval(() => void ping(port).then((up) => up && done(true)), 50);
      });
      if (ok) {
        child = c;
        return;
      }
      if (attempt >= 3) throw new Error(`redis-server did not start on 127.0.0.1:${port}: ${log.trim()}`);
      port = 0; // the port was taken between asking and binding: another one
    }
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 3000);
      c.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      c.kill('SIGTERM');
    });
  };
  await launch();
  return {
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
