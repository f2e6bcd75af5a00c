/**
 * `graft serve` as a user runs it: a child process on port 0 whose printed URL answers predictions
 * equal to `graft predict --json` for the same image, and which stops cleanly on SIGTERM; a
 * non-loopback host without a token is refused before anything loads.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GRAFT_CLI, graft, graftFails } from '../helpers/cli.js';
import { digitClassifier, digitPng } from './fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'graft-serve-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('graft serve prints its URL, answers as graft predict does, and stops on SIGTERM', async () => {
  const dir = await digitClassifier(join(tmp, 'clf'));
  const image = join(tmp, 'seven.png');
  writeFileSync(image, await digitPng(407));
  const child = spawn(
    process.execPath,
    [...GRAFT_CLI, 'serve', `digits=${dir}`, '--port', '0', '--max-delay-ms', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '',
    err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  try {
    const url = await new Promise<string>((res, rej) => {
      child.stdout.on('data', (d) => {
        out += d;
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) res(m[1]!);
      });
      child.on('exit', () => rej(new Error(`graft serve exited: ${err}`)));
    });
    assert.match(err, /digits: image classifier, 28×28, 10 classes/);
    const served = (await (
      await fetch(`${url}/v1/models/digits/predict?top=3&filename=seven.png`, {
        method: 'POST',
        body: new Uint8Array(await digitPng(407)),
        headers: { 'content-type': 'image/png' },
      })
    ).json()) as any;
    const cli = JSON.parse((await graft(['predict', '--model', dir, image, '--top', '3', '--json'])).stdout);
    assert.deepEqual(served.predictions[0].top, cli[0].top);
    assert.equal(served.predictions[0].input, 'seven.png');
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(err, /SIGTERM: stopping/);
    assert.match(err, /stopped\n$/);
  } finally {
    child.kill('SIGKILL');
  }
});

test('graft serve refuses a non-loopback host without a token (exit 2, nothing loaded)', async () => {
  const r = await graftFails(['serve', join(tmp, 'no-such-folder'), '--host', '0.0.0.0', '--port', '0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /listening on 0\.0\.0\.0 \(not loopback\) needs a token/);
  assert.doesNotMatch(r.stderr, /loading/);
});
