/**
 * Run the `graft` command line as a user would: a child process. It runs the TypeScript sources
 * (`node --import tsx src/cli/main.ts`, as `npm run graft` does), never a possibly stale dist/ build.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** node's arguments that start the CLI from the sources. */
export const GRAFT_CLI = ['--import', 'tsx', 'src/cli/main.ts'];

export const graft = (args: string[]) => run(process.execPath, [...GRAFT_CLI, ...args], { maxBuffer: 1 << 24 });

/** Run a command that must fail; returns its exit code and output. */
export async function graftFails(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  try {
    await graft(args);
  } catch (e) {
    return e as { code: number; stderr: string; stdout: string };
  }
  throw new Error(`graft ${args.join(' ')} should have failed`);
}

/**
 * Run commands that must fail, `parallel` at a time, and return their results in the order given.
 * Each is its own short process (mostly Node starting up); the suite runs one test file at a time, so
 * on a 2-core machine two independent failing commands at once take about the time of one.
 */
export async function graftFailsAll(
  commands: string[][],
  parallel = 2,
): Promise<{ code: number; stderr: string; stdout: string }[]> {
  const out: { code: number; stderr: string; stdout: string }[] = new Array(commands.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < commands.length; i = next++) out[i] = await graftFails(commands[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, commands.length) }, lane));
  return out;
}

/**
 * Start `graft args` and SIGKILL it as soon as the manifest of its first checkpoint (epoch-0001.json)
 * exists in `checkpointDir`: a real crash mid-run, for resume tests.
 */
export async function graftKilledAtFirstCheckpoint(args: string[], checkpointDir: string): Promise<void> {
  const child = spawn(process.execPath, [...GRAFT_CLI, ...args], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
  const t0 = Date.now();
  while (!existsSync(join(checkpointDir, 'epoch-0001.json'))) {
    assert.ok(Date.now() - t0 < 120_000, 'no checkpoint appeared within 2 minutes');
    assert.equal(child.exitCode, null, 'the run ended before its first checkpoint');
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
}
