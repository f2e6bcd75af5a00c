/** Run the `graft` command line as a user would: a child process of bin/graft.js. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const graft = (args: string[]) => run(process.execPath, ['bin/graft.js', ...args], { maxBuffer: 1 << 24 });

/** Run a command that must fail; returns its exit code and output. */
export async function graftFails(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  try {
    await graft(args);
  } catch (e) {
    return e as { code: number; stderr: string; stdout: string };
  }
  throw new Error(`graft ${args.join(' ')} should have failed`);
}
