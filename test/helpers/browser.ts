/**
 * Real-browser tests of Graft Studio: start `graft studio` as a user would (a child process on port 0
 * with a temporary data folder), drive Debian's Chromium with playwright-core (never a downloaded
 * browser), and save a numbered screenshot of each step under test-output/studio/<journey>/.
 * Chromium runs headless with a fresh profile, a fake webcam, and no network beyond loopback.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { GRAFT_CLI } from './cli.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** The Chromium the tests drive: GRAFT_CHROMIUM, else Debian's /usr/bin/chromium. */
export const CHROMIUM = process.env['GRAFT_CHROMIUM'] ?? '/usr/bin/chromium';

/** Throws a clear error when the browser is missing (the tests never download one). */
export function requireChromium(): string {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium; .ci/run does) or set GRAFT_CHROMIUM to a Chromium 156 binary matching playwright-core 1.64`,
    );
  return CHROMIUM;
}

/** Build Studio's browser app (dist/studio-ui) when missing or stale. */
export function buildStudioUi(): string {
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-ui.mjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return join(ROOT, 'dist', 'studio-ui');
}

export interface Studio {
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** What the server printed so far (stdout and stderr), for failure messages. */
  output(): string;
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Start `graft studio --port 0 --data DIR`; resolves with the URL it prints. */
export async function startStudio(dataDir: string, extra: string[] = []): Promise<Studio> {
  buildStudioUi();
  const child = spawn(process.execPath, [...GRAFT_CLI, 'studio', '--port', '0', '--data', dataDir, ...extra], {
    cwd: ROOT,
    env: { ...process.env, GRAFT_THREADS: process.env['GRAFT_THREADS'] ?? '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`graft studio printed no URL within 60 s:\n${out}`)), 60_000);
    const look = (): void => {
      const m = /https?:\/\/(?:127\.0\.0\.1|localhost|\[::1\]):\d+\S*/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[0].replace(/[).,]+$/, '').replace(/\/$/, ''));
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      rej(new Error(`graft studio exited (${code ?? sig}) before printing its URL:\n${out}`));
    });
  });
  return {
    url,
    dataDir,
    child,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * The text of an element that may be absent (an error message, for an assertion's message), without
 * waiting: a locator's textContent() waits the page's default timeout (30 s) for a missing element, so
 * `${await loc.textContent().catch(() => '')}` in a passing assertion's message costs 30 s each time.
 */
export async function textIfShown(loc: Locator): Promise<string> {
  return (await loc.count()) ? ((await loc.first().textContent()) ?? '') : '';
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught page errors seen so far. */
  errors: string[];
  /** Save `NN-name.png` (a full-page screenshot) in the journey's output folder; returns its path. */
  shot(name: string): Promise<string>;
  close(): Promise<void>;
}

/** The output folder of a journey: test-output/studio/<name>/ (emptied first). */
export function outputDir(name: string): string {
  const dir = join(ROOT, 'test-output', 'studio', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Launch Chromium headless with a fresh profile and open `url`. */
export async function openBrowser(url: string, shotsDir: string): Promise<Browser> {
  const executablePath = requireChromium();
  const profile = mkdtempSync(join(tmpdir(), 'graft-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
    ],
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    permissions: ['camera'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(`${e.name}: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]');
  let n = 0;
  return {
    context,
    page,
    errors,
    async shot(name: string) {
      const path = join(shotsDir, `${String(++n).padStart(2, '0')}-${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
