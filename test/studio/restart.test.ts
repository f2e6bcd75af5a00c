/**
 * State survives restarts: `graft studio` runs as a child process on a data folder; an image
 * fine-tuning run (checkpoints every epoch) is started, the server is SIGKILLed mid-training, and a new
 * server on the same folder shows the project, its examples and the run as interrupted; resuming it
 * continues from the newest checkpoint and finishes. The built UI folder is served at /.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { needs } from '../helpers/assets.js';
import { fashionPngs } from './helpers.js';

const skip = needs('datasets/fashion-mnist', 'models/onnxjs-demo/mnist.onnx');
const root = resolve(import.meta.dirname, '..', '..');

/** Start `graft studio` and resolve with its URL (printed on stdout). */
function startStudio(data: string, ui: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts'), 'studio', '--port', '0', '--data', data],
    {
      cwd: root,
      env: { ...process.env, GRAFT_STUDIO_UI: ui },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return new Promise((res, rej) => {
    let out = '',
      err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Graft Studio: (http:\/\/\S+?)\/?\n/.exec(out);
      if (m) res({ child, url: m[1]! });
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('exit', (code) => rej(new Error(`graft studio exited (${code}) before printing its URL: ${out}${err}`)));
  });
}

const exited = (c: ChildProcess) =>
  new Promise((res) => (c.exitCode !== null || c.signalCode !== null ? res(null) : c.once('exit', res)));

test('restart: SIGKILL mid-training, restart on the same data folder, the run is interrupted and resumes from its checkpoint', {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-restart-'));
  const data = join(dir, 'data'),
    ui = join(dir, 'ui');
  mkdirSync(ui);
  writeFileSync(join(ui, 'index.html'), '<!doctype html><title>Graft Studio test page</title>');
  let server = await startStudio(data, ui);
  try {
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(server.url + path, {
        method,
        ...(body instanceof FormData
          ? { body }
          : body !== undefined
            ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
            : {}),
      });
      return { status: r.status, body: r.status === 204 ? undefined : ((await r.json()) as any) };
    };
    assert.match(await (await fetch(server.url + '/')).text(), /Graft Studio test page/);
    const p = (await api('POST', '/api/projects', { name: 'Restart', kind: 'image' })).body;
    const imgs = await fashionPngs({ 1: 'trouser', 7: 'sneaker' }, 20);
    for (const name of ['trouser', 'sneaker']) {
      const c = (await api('POST', `/api/projects/${p.id}/classes`, { name })).body;
      const form = new FormData();
      imgs[name]!.forEach((b, i) =>
        form.append('files', new Blob([new Uint8Array(b)], { type: 'image/png' }), `${name}${i}.png`),
      );
      assert.equal((await api('POST', `/api/projects/${p.id}/classes/${c.id}/images`, form)).status, 201);
    }
    const epochs = 60;
    const run = (
      await api('POST', `/api/projects/${p.id}/runs`, {
        backbone: 'local:models/onnxjs-demo/mnist.onnx',
        method: 'finetune',
        settings: { epochs, learningRate: 1e-4 },
      })
    ).body;
    assert.equal(run.status === 'queued' || run.status === 'running', true, JSON.stringify(run));
    // wait for two epochs (two checkpoints), then kill the server without warning
    for (let t0 = Date.now(); ; ) {
      const r = (await api('GET', `/api/runs/${run.id}`)).body;
      assert.ok(
        r.status === 'running' || r.status === 'queued',
        `run ended before the kill: ${r.status} ${r.error ?? ''}`,
      );
      if (r.metrics.length >= 2) break;
      assert.ok(Date.now() - t0 < 120_000, 'no epoch finished in 2 minutes');
      await new Promise((res) => setTimeout(res, 100));
    }
    server.child.kill('SIGKILL');
    await exited(server.child);

    server = await startStudio(data, ui);
    const proj = (await api('GET', `/api/projects/${p.id}`)).body;
    assert.deepEqual(
      proj.classes.map((c: { name: string; count: number }) => `${c.name}:${c.count}`),
      ['trouser:20', 'sneaker:20'],
    );
    assert.equal((await api('GET', `/api/projects/${p.id}/examples`)).body.total, 40);
    const after = (await api('GET', `/api/runs/${run.id}`)).body;
    assert.equal(after.status, 'interrupted');
    assert.equal(after.resumable, 'checkpoint');
    assert.ok(
      after.metrics.length >= 2 && after.metrics.length < epochs,
      `${after.metrics.length} epochs recorded before the kill`,
    );
    const resumed = (await api('POST', `/api/runs/${run.id}/resume`)).body;
    assert.equal(resumed.resumedFrom, 'checkpoint');
    let done;
    for (let t0 = Date.now(); ; ) {
      done = (await api('GET', `/api/runs/${run.id}`)).body;
      if (!['queued', 'running'].includes(done.status)) break;
      assert.ok(Date.now() - t0 < 180_000, 'the resumed run did not finish in 3 minutes');
      await new Promise((res) => setTimeout(res, 250));
    }
    assert.equal(done.status, 'done', done.error);
    assert.deepEqual(
      done.metrics.map((m: { epoch: number }) => m.epoch),
      Array.from({ length: epochs }, (_, i) => i + 1),
      'every epoch once: the resumed part continued after the checkpoint',
    );
    assert.ok(done.evaluation.accuracy > 0.7, `held-out accuracy ${done.evaluation.accuracy}`);
    assert.equal((await api('DELETE', `/api/runs/${run.id}`)).status, 204);
  } finally {
    server.child.kill('SIGTERM');
    await exited(server.child);
    rmSync(dir, { recursive: true, force: true });
  }
});
