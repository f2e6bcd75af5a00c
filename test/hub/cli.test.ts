/**
 * `graft pull` and `hf:` models on the command line, as a user runs them (child processes running
 * the CLI), against a hub served on 127.0.0.1 with HF_ENDPOINT and HF_HUB_CACHE pointing at it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startHubServer, tinyModelRepo, type HubServer } from '../helpers/hub-server.js';

const run = promisify(execFile);
let hub: HubServer;
let cache: string;

before(async () => {
  hub = await startHubServer([
    { id: 'org/tiny', files: tinyModelRepo() },
    { id: 'org/other', files: tinyModelRepo(5) },
  ]);
  cache = mkdtempSync(join(tmpdir(), 'graft-hub-cli-'));
});
after(async () => {
  await hub.close();
  rmSync(cache, { recursive: true, force: true });
});

function graft(args: string[], env: Record<string, string> = {}) {
  const e: NodeJS.ProcessEnv = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, ...env };
  for (const k of ['HF_HUB_OFFLINE', 'HF_TOKEN']) if (!(k in env)) delete e[k];
  // The sources, as `npm run graft` runs them (never a possibly stale dist/ build).
  return run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: e, maxBuffer: 1 << 24 });
}
async function graftFails(args: string[], env: Record<string, string> = {}) {
  try {
    await graft(args, env);
  } catch (e) {
    return e as { code: number; stderr: string };
  }
  assert.fail(`graft ${args.join(' ')} should have failed`);
}

test('graft pull ID downloads what a model needs into HF_HUB_CACHE; graft check hf:ID then loads it offline', async () => {
  const { stdout } = await graft(['pull', 'org/tiny', '--json']);
  const r = JSON.parse(stdout) as { path: string; commit: string; files: { path: string }[]; ref: string };
  assert.equal(r.path, join(cache, 'models--org--tiny', 'snapshots', hub.commit('org/tiny')));
  assert.deepEqual(
    r.files.map((f) => f.path),
    ['config.json', 'onnx/model.onnx'],
  );
  assert.equal(r.ref, 'hf:org/tiny');

  const n = hub.requests.length;
  const check = await graft(['check', 'hf:org/tiny', '--params', '0', '--json'], { HF_HUB_OFFLINE: '1' });
  const report = JSON.parse(check.stdout) as { model: string; missing: string[]; ops: { op: string }[] };
  assert.equal(report.model, r.path, 'the command received the cached snapshot folder');
  assert.deepEqual(report.missing, []);
  assert.deepEqual(report.ops.map((o) => o.op).sort(), ['Gemm', 'Tanh']);
  assert.equal(hub.requests.length, n, 'an offline command made no request');

  const text = await graft(['pull', 'hf:org/tiny']);
  assert.match(text.stdout, /org\/tiny @ main \(commit [0-9a-f]{12}\)/);
  assert.match(text.stdout, /everything was already in the cache/);
  assert.match(text.stdout, /use it as: --model hf:org\/tiny/);
});

test('a command given hf:ID that is not cached downloads it first (only the model files), then runs', async () => {
  const { stdout } = await graft(['check', 'hf:org/other', '--params', '0']);
  assert.match(stdout, /every operator has a gradient rule/);
  const snap = join(cache, 'models--org--other', 'snapshots', hub.commit('org/other'));
  assert.ok(existsSync(join(snap, 'onnx/model.onnx')));
  assert.ok(
    !existsSync(join(snap, 'onnx/model_quantized.onnx')),
    'quantized variants are not downloaded for a command',
  );
  assert.equal(hub.downloads('onnx/model_quantized.onnx').length, 0);
});

test('graft pull errors: unknown repository (404), offline and uncached, --include picks files', async () => {
  const nope = await graftFails(['pull', 'org/nope']);
  assert.equal(nope.code, 2);
  assert.match(nope.stderr, /graft: no model repository 'org\/nope'/);
  const off = await graftFails(['check', 'hf:org/never-pulled', '--params', '0'], { HF_HUB_OFFLINE: '1' });
  assert.equal(off.code, 2);
  assert.match(off.stderr, /HF_HUB_OFFLINE is set and org\/never-pulled \(revision main\) is not in the cache/);
  const { stdout } = await graft(['pull', 'org/tiny', '--include', 'README.md', 'onnx/model_q*', '--json']);
  assert.deepEqual(
    (JSON.parse(stdout) as { files: { path: string }[] }).files.map((f) => f.path),
    ['README.md', 'onnx/model_quantized.onnx'],
  );
});
