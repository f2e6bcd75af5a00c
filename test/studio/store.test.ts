/**
 * Studio's data folder: blob files are reference-counted (the same image in two projects is stored
 * once and kept until its last example, or an unfinished run's snapshot, lets go), deleting an
 * example, a class, a project or a run frees what nothing else references, a crash between the
 * database and the file delete leaves only orphans that the next start sweeps, the v1 → v2 migration
 * fills the run references from the snapshots (a run that is not done keeps its files: it may resume), and one server holds a data folder at a time (in this
 * process, from another process, and `graft studio` refusing with the folder and the pid; a SIGKILLed
 * holder leaves no stale lock). Images are made here with sharp; no external asset is needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { createStudio, type Studio } from '../../src/studio/app.js';
import { StudioDb } from '../../src/studio/db.js';
import { multipartBody } from './helpers.js';

const root = resolve(import.meta.dirname, '..', '..');

/** A small PNG of one colour (different colours: different content, different sha256). */
const png = (r: number, g: number, b: number) =>
  sharp({ create: { width: 12, height: 9, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();

async function call(s: Studio, method: string, url: string, payload?: unknown) {
  const r = await s.app.inject({
    method: method as 'GET',
    url,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: r.statusCode, body: r.body ? JSON.parse(r.body) : undefined };
}

async function upload(s: Studio, pid: string, cid: string, files: { name: string; bytes: Buffer }[]) {
  const r = await s.app.inject({
    method: 'POST',
    url: `/api/projects/${pid}/classes/${cid}/images`,
    ...multipartBody(files.map((f) => ({ ...f, type: 'image/png' }))),
  });
  return { status: r.statusCode, body: JSON.parse(r.body) };
}

/** The files under DIR/blobs (names only), sorted. */
function blobFiles(dir: string): string[] {
  const b = join(dir, 'blobs');
  if (!existsSync(b)) return [];
  return readdirSync(b)
    .flatMap((d) => readdirSync(join(b, d)))
    .sort();
}

const sha = (url: string) => /([0-9a-f]{64})/.exec(url)![1]!;

test('blob files are reference-counted: shared content survives until its last example; deletes free files and thumbnails; crash leftovers are swept at start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-store-'));
  let s = await createStudio({ dataDir: dir, uiDir: null });
  try {
    const [red, green, blue] = await Promise.all([png(255, 0, 0), png(0, 255, 0), png(0, 0, 255)]);
    const a = (await call(s, 'POST', '/api/projects', { name: 'A', kind: 'image' })).body;
    const b = (await call(s, 'POST', '/api/projects', { name: 'B', kind: 'image' })).body;
    const ca = (await call(s, 'POST', `/api/projects/${a.id}/classes`, { name: 'x' })).body;
    const cb = (await call(s, 'POST', `/api/projects/${b.id}/classes`, { name: 'y' })).body;
    const ua = await upload(s, a.id, ca.id, [
      { name: 'red.png', bytes: red },
      { name: 'green.png', bytes: green },
      { name: 'red-again.png', bytes: red },
    ]);
    assert.equal(ua.status, 201);
    const ub = await upload(s, b.id, cb.id, [
      { name: 'red.png', bytes: red },
      { name: 'blue.png', bytes: blue },
    ]);
    assert.equal(ub.status, 201);
    const [redSha, greenSha, blueSha] = [
      sha(ua.body.added[0].imageUrl),
      sha(ua.body.added[1].imageUrl),
      sha(ub.body.added[1].imageUrl),
    ];
    assert.equal(sha(ub.body.added[0].imageUrl), redSha, 'the same content, one blob');
    const both = (h: string) => [h, `${h}.thumb.jpg`];
    assert.deepEqual(blobFiles(dir), [...both(redSha), ...both(greenSha), ...both(blueSha)].sort());

    // a refused upload (415) leaves no file behind, not even of its good images
    const yellow = await png(255, 255, 0);
    const bad = await upload(s, a.id, ca.id, [
      { name: 'yellow.png', bytes: yellow },
      { name: 'junk.png', bytes: Buffer.from('no image here') },
    ]);
    assert.equal(bad.status, 415);
    assert.equal(blobFiles(dir).length, 6, "the refused upload's yellow image is not kept");

    // one of two examples of red in A goes: red stays (A's other example, and B's)
    assert.equal((await call(s, 'DELETE', `/api/projects/${a.id}/examples/${ua.body.added[0].id}`)).status, 204);
    assert.equal(blobFiles(dir).length, 6);
    // green's only example goes: green and its thumbnail go, and its URL answers 404
    assert.equal((await call(s, 'DELETE', `/api/projects/${a.id}/examples/${ua.body.added[1].id}`)).status, 204);
    assert.deepEqual(blobFiles(dir), [...both(redSha), ...both(blueSha)].sort());
    assert.equal((await call(s, 'GET', `/api/blobs/${greenSha}`)).status, 404);
    // project A goes (its last red example with it): red is still B's
    assert.equal((await call(s, 'DELETE', `/api/projects/${a.id}`)).status, 204);
    assert.deepEqual(blobFiles(dir), [...both(redSha), ...both(blueSha)].sort());
    assert.equal((await s.app.inject({ method: 'GET', url: `/api/blobs/${redSha}` })).statusCode, 200);
    // B's class goes: everything goes
    assert.equal((await call(s, 'DELETE', `/api/projects/${b.id}/classes/${cb.id}`)).status, 204);
    assert.deepEqual(blobFiles(dir), []);

    // a run that is not done keeps its snapshot's files after their examples go (it may resume); deleting it frees them
    const r = (await call(s, 'POST', '/api/projects', { name: 'R', kind: 'image' })).body;
    const rc: string[] = [];
    for (const name of ['u', 'v']) rc.push((await call(s, 'POST', `/api/projects/${r.id}/classes`, { name })).body.id);
    await upload(s, r.id, rc[0]!, [
      { name: 'red.png', bytes: red },
      { name: 'green.png', bytes: green },
    ]);
    await upload(s, r.id, rc[1]!, [
      { name: 'blue.png', bytes: blue },
      { name: 'yellow.png', bytes: yellow },
    ]);
    const notAModel = join(dir, 'not-a-model.onnx');
    writeFileSync(notAModel, 'not a model');
    const run = await call(s, 'POST', `/api/projects/${r.id}/runs`, {
      backbone: `folder:${notAModel}`,
      method: 'features',
    });
    assert.equal(run.status, 201, JSON.stringify(run.body));
    for (const cid of rc) assert.equal((await call(s, 'DELETE', `/api/projects/${r.id}/classes/${cid}`)).status, 204);
    assert.equal(blobFiles(dir).length, 8, 'the run still needs all four images');
    for (
      let t0 = Date.now();
      s.runner.isActive(run.body.id) || (await call(s, 'GET', `/api/runs/${run.body.id}`)).body.status === 'queued';
    ) {
      assert.ok(Date.now() - t0 < 60_000, 'the run did not end');
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal((await call(s, 'GET', `/api/runs/${run.body.id}`)).body.status, 'failed');
    assert.equal(blobFiles(dir).length, 8, 'a failed run can be resumed: it keeps them');
    assert.equal((await call(s, 'DELETE', `/api/runs/${run.body.id}`)).status, 204);
    assert.deepEqual(blobFiles(dir), []);

    // a crash between the database delete and the file delete: the record is gone, the bytes are not;
    // also a temporary file of an interrupted write. The next start sweeps both, and keeps what is referenced.
    const c = (await call(s, 'POST', '/api/projects', { name: 'C', kind: 'image' })).body;
    const cc = (await call(s, 'POST', `/api/projects/${c.id}/classes`, { name: 'z' })).body;
    const uc = (
      await upload(s, c.id, cc.id, [
        { name: 'blue.png', bytes: blue },
        { name: 'green.png', bytes: green },
      ])
    ).body;
    s.db.deleteExample(uc.added[1].id); // the database part of a delete, then "the crash"
    await s.close();
    const tmp = join(dir, 'blobs', blueSha.slice(0, 2), `${blueSha}.tmp-99999-1`);
    writeFileSync(tmp, 'half a write');
    assert.equal(blobFiles(dir).length, 5);
    s = await createStudio({ dataDir: dir, uiDir: null });
    assert.deepEqual(
      blobFiles(dir),
      both(blueSha).sort(),
      'the orphan and the temporary file went; the referenced blob stayed',
    );
    assert.equal(s.db.file(greenSha), undefined);
    assert.equal((await s.app.inject({ method: 'GET', url: `/api/blobs/${blueSha}/thumb` })).statusCode, 200);
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an unfinished run keeps its snapshot's files; done or deleted, it lets go; v1 databases get the references from their snapshots", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-runfiles-'));
  try {
    let db = new StudioDb(dir);
    const p = db.createProject('P', 'image');
    const c = db.createClass(p.id, 'k');
    const shaA = 'a'.repeat(64),
      shaB = 'b'.repeat(64);
    for (const h of [shaA, shaB]) db.addFile({ sha256: h, size: 1, mime: 'image/png', width: 1, height: 1 });
    const [ea, eb] = db.addExamples(p.id, [
      { classId: c.id, sha256: shaA },
      { classId: c.id, sha256: shaB },
    ]);
    const snap = {
      kind: 'image',
      backbonePath: '/x',
      classes: ['k'],
      examples: [
        { id: ea!.id, label: 0, sha256: shaA },
        { id: eb!.id, label: 0, sha256: shaB },
      ],
    };
    const r1 = db.createRun(p.id, 'local:x', 'features', {}, { json: JSON.stringify(snap), files: [shaA, shaB] });
    const r2 = db.createRun(p.id, 'local:x', 'features', {}, { json: JSON.stringify(snap), files: [shaA] });
    assert.deepEqual(db.deleteExample(ea!.id), [shaA]);
    assert.deepEqual(db.deleteExample(eb!.id), [shaB]);
    assert.deepEqual(db.dropUnreferencedFiles([shaA, shaB]), [], 'both runs still need their files');
    db.releaseRunFiles(r1.id); // r1 is done
    assert.deepEqual(db.dropUnreferencedFiles([shaA, shaB]), [shaB], 'only r2 needs A now');
    assert.deepEqual(
      db.dropUnreferencedFiles([shaA], () => true),
      [],
      'a pinned file is kept',
    );

    // a database of version 1 (no run_files): the migration reads the snapshots of runs not done
    db.db.exec('DROP TABLE run_files; DROP INDEX examples_by_sha;');
    db.db.pragma('user_version = 1');
    db.updateRun(r1.id, { status: 'done' });
    db.close();
    db = new StudioDb(dir);
    assert.equal(db.version, 2);
    assert.deepEqual(db.runFiles(r2.id), [shaA]);
    assert.deepEqual(db.runFiles(r1.id), [], 'a done run needs no files');
    assert.deepEqual(db.deleteRun(r2.id), [shaA]);
    assert.deepEqual(db.dropUnreferencedFiles(), [shaA]);
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('one server per data folder: a second one is refused naming the folder and the pid (here, another process, graft studio); a killed holder leaves no stale lock', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-lock-'));
  const data = join(dir, 'data');
  try {
    const s = await createStudio({ dataDir: data, uiDir: null });
    await assert.rejects(createStudio({ dataDir: data, uiDir: null }), (e: Error) => {
      assert.match(
        e.message,
        new RegExp(
          `the data folder ${data.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another Graft Studio \\(pid ${process.pid}`,
        ),
      );
      return true;
    });
    await s.close();
    // released on close: a new server takes the folder at once
    const again = await createStudio({ dataDir: data, uiDir: null });
    await again.close();

    // another process holds it (the lock module alone, so the child starts quickly)
    const holder = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        `const { lockDataDir } = await import(${JSON.stringify(join(root, 'src/studio/lock.ts'))}); lockDataDir(${JSON.stringify(data)}); console.log('held'); setInterval(() => {}, 1000);`,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((res, rej) => {
        holder.stdout!.on('data', (d: Buffer) => {
          if (d.toString().includes('held')) res();
        });
        holder.on('exit', (code) => rej(new Error(`the lock holder exited (${code})`)));
      });
      await assert.rejects(createStudio({ dataDir: data, uiDir: null }), new RegExp(`pid ${holder.pid}`));
      // graft studio says so and exits with an error
      const cli = spawn(
        process.execPath,
        ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts'), 'studio', '--port', '0', '--data', data],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      cli.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      cli.stderr!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const code = await new Promise((res) => cli.on('exit', res));
      assert.notEqual(code, 0, out);
      assert.match(
        out,
        new RegExp(
          `${data.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another Graft Studio \\(pid ${holder.pid}`,
        ),
      );
      assert.match(out, new RegExp(`kill ${holder.pid}`));
    } finally {
      holder.kill('SIGKILL');
      await new Promise((res) =>
        holder.exitCode !== null || holder.signalCode !== null ? res(null) : holder.once('exit', res),
      );
    }
    // the holder died without cleaning up: its lock died with it
    const after = await createStudio({ dataDir: data, uiDir: null });
    await after.close();
    // the pid file is gone with a clean close
    assert.equal(existsSync(join(data, 'studio.pid')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
