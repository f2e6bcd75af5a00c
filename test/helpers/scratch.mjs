/**
 * Preloaded into every test file's process (`node --import ./test/helpers/scratch.mjs --test …`): the
 * process gets its own scratch folder and points TMPDIR at it, so the folders the tests make with
 * mkdtempSync(join(tmpdir(), …)) (models, caches, checkpoints: gigabytes over a whole run) and those of
 * the CLI processes they start land inside it, and it is removed when the process exits, passed or
 * failed. GRAFT_KEEP_TEST_TMP=1 keeps it and prints where it is (to look at a failure's files).
 * Plain JavaScript so that node loads it before the TypeScript loader.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = mkdtempSync(join(tmpdir(), 'graft-test-'));
process.env.TMPDIR = root; // os.tmpdir() reads it on every call; child processes inherit it
if (process.env.GRAFT_KEEP_TEST_TMP) process.on('exit', () => process.stderr.write(`test scratch kept: ${root}\n`));
else process.on('exit', () => rmSync(root, { recursive: true, force: true }));
