/**
 * Studio's backbones and text methods on real review snippets and bert-mini: a catalog model found in
 * the Hugging Face cache is offered and trains (a cache folder made here, HF_HUB_CACHE pointing at it,
 * holding bert-mini in the Transformers.js layout as the snapshot of the catalog's `minilm-l6`; an entry
 * with no complete snapshot is neither offered nor accepted), and the `top-layers` method trains the last
 * encoder layer (its weights change, the first layer's do not) with a loss per epoch on the curve.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStudio, type Studio } from '../../src/studio/app.js';
import { readOnnx } from '../../src/formats/onnx.js';
import { assetPath, needs } from '../helpers/assets.js';
import { writeReviewSnippets } from '../helpers/review-csv.js';

const skip = needs('models/text/bert-mini-debian', 'datasets/reviews/polarity-en-pang&lee2.csv');

async function call(s: Studio, method: string, url: string, payload?: unknown) {
  const r = await s.app.inject({
    method: method as 'GET',
    url,
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: r.statusCode, body: r.body ? JSON.parse(r.body) : undefined };
}

async function waitForRun(s: Studio, rid: string, timeoutMs = 120_000) {
  for (const t0 = Date.now(); ; await new Promise((res) => setTimeout(res, 250))) {
    const r = (await call(s, 'GET', `/api/runs/${rid}`)).body;
    if (!['queued', 'running'].includes(r.status)) return r;
    if (Date.now() - t0 > timeoutMs) throw new Error(`run ${rid} still ${r.status} after ${timeoutMs} ms`);
  }
}

/**
 * A hub cache holding `folder`'s files as the snapshot of `repo` at refs/main, in the layout
 * huggingface_hub and Graft write: the bytes in blobs/<hash>, relative symlinks to them in snapshots/<commit>/.
 */
function fakeHubCache(cache: string, repo: string, folder: string): string {
  const commit = '0123456789abcdef0123456789abcdef01234567';
  const repoDir = join(cache, `models--${repo.replace('/', '--')}`);
  const snap = join(repoDir, 'snapshots', commit);
  mkdirSync(join(snap, 'onnx'), { recursive: true });
  mkdirSync(join(repoDir, 'blobs'));
  for (const f of [
    'config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'special_tokens_map.json',
    'vocab.txt',
    'onnx/model.onnx',
  ]) {
    const bytes = readFileSync(join(folder, f));
    const etag = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(repoDir, 'blobs', etag), bytes);
    symlinkSync(`${f.includes('/') ? '../' : ''}../../blobs/${etag}`, join(snap, f));
  }
  mkdirSync(join(repoDir, 'refs'));
  writeFileSync(join(repoDir, 'refs', 'main'), commit);
  return snap;
}

test('text backbones: a cached catalog model is offered and trains; top-layers trains the last encoder layer', {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-studio-backbones-'));
  const saved = { cache: process.env['HF_HUB_CACHE'], offline: process.env['HF_HUB_OFFLINE'] };
  const bert = assetPath('models/text/bert-mini-debian');
  const snap = fakeHubCache(join(dir, 'hub'), 'Xenova/all-MiniLM-L6-v2', bert);
  // an incomplete snapshot of another entry: a ref and no files
  mkdirSync(join(dir, 'hub', 'models--Xenova--distilbert-base-uncased', 'refs'), { recursive: true });
  writeFileSync(
    join(dir, 'hub', 'models--Xenova--distilbert-base-uncased', 'refs', 'main'),
    'fedcba9876543210fedcba9876543210fedcba98',
  );
  process.env['HF_HUB_CACHE'] = join(dir, 'hub');
  process.env['HF_HUB_OFFLINE'] = '1';
  const s = await createStudio({ dataDir: join(dir, 'data'), uiDir: null });
  try {
    const p = (await call(s, 'POST', '/api/projects', { name: 'Reviews', kind: 'text' })).body;
    const rows = writeReviewSnippets(join(dir, 'reviews.csv'), 0, 12);
    for (const label of ['neg', 'pos']) {
      const c = (await call(s, 'POST', `/api/projects/${p.id}/classes`, { name: label })).body;
      assert.equal(
        (
          await call(s, 'POST', `/api/projects/${p.id}/classes/${c.id}/texts`, {
            texts: rows.filter((r) => r[0] === label).map((r) => r[1]),
          })
        ).status,
        201,
      );
    }

    // the catalog entry in the cache is offered for text (not for images); the incomplete one is not
    const text = (await call(s, 'GET', '/api/backbones?kind=text')).body.backbones as {
      id: string;
      source: string;
      methods: string[];
    }[];
    const hub = text.find((b) => b.id === 'hub:minilm-l6');
    assert.ok(hub, `hub:minilm-l6 among ${text.map((b) => b.id).join(', ')}`);
    assert.equal(hub.source, 'hub');
    assert.deepEqual(hub.methods, ['features', 'top-layers', 'lora']);
    assert.equal(text.filter((b) => b.source === 'hub').length, 1, 'only the complete snapshot is offered');
    assert.ok(
      !(await call(s, 'GET', '/api/backbones?kind=image')).body.backbones.some(
        (b: { id: string }) => b.id === 'hub:minilm-l6',
      ),
    );
    const missing = await call(s, 'POST', `/api/projects/${p.id}/runs`, {
      backbone: 'hub:distilbert',
      method: 'features',
    });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /not in the local cache/);
    assert.match(missing.body.hint, /graft pull distilbert/);

    // a run on it uses the snapshot folder, and its classifier serves predictions
    const hubRun = await call(s, 'POST', `/api/projects/${p.id}/runs`, {
      backbone: 'hub:minilm-l6',
      method: 'features',
    });
    assert.equal(hubRun.status, 201, JSON.stringify(hubRun.body));
    assert.equal(JSON.parse(s.db.run(hubRun.body.id)!.snapshot!).backbonePath, snap);
    const hubDone = await waitForRun(s, hubRun.body.id);
    assert.equal(hubDone.status, 'done', hubDone.error);
    assert.equal(hubDone.backbone, 'hub:minilm-l6');
    assert.equal(hubDone.evaluation.heldOut + hubDone.evaluation.trained, 24);
    const tok = readFileSync(join(s.runner.runDir(hubRun.body.id), 'classifier', 'tokenizer.json'));
    assert.ok(tok.equals(readFileSync(join(bert, 'tokenizer.json'))), 'the tokenizer came from the cached snapshot');
    const pr = await call(s, 'POST', `/v1/models/run-${hubRun.body.id}/predict`, {
      texts: ['a moving and beautiful film .'],
    });
    assert.equal(pr.status, 200, JSON.stringify(pr.body));
    assert.deepEqual(pr.body.predictions[0].top.map((t: { label: string }) => t.label).sort(), ['neg', 'pos']);

    // top-layers: two epochs, a loss for each; the last encoder layer trained, the first did not
    const top = await call(s, 'POST', `/api/projects/${p.id}/runs`, {
      backbone: 'local:models/text/bert-mini-debian',
      method: 'top-layers',
      settings: { epochs: 2, batchSize: 8 },
    });
    assert.equal(top.status, 201, JSON.stringify(top.body));
    assert.equal(top.body.settings.learningRate, 1e-4, "the method's defaults fill the settings not given");
    const topDone = await waitForRun(s, top.body.id);
    assert.equal(topDone.status, 'done', topDone.error);
    assert.deepEqual(
      topDone.metrics.map((m: { epoch: number }) => m.epoch),
      [1, 2],
    );
    assert.ok(
      topDone.metrics.every((m: { loss: number }) => Number.isFinite(m.loss) && m.loss > 0),
      JSON.stringify(topDone.metrics),
    );
    assert.equal(topDone.evaluation.heldOut, hubDone.evaluation.heldOut, 'the same held-out split');
    const before = readOnnx(join(bert, 'onnx', 'model.onnx')).initializers;
    const after = readOnnx(join(s.runner.runDir(top.body.id), 'classifier', 'model.onnx')).initializers;
    const same = (name: string) => {
      const a = before.get(name)!.data as Float32Array,
        b = after.get(name)!.data as Float32Array;
      assert.equal(a.length, b.length, name);
      return a.every((v, i) => v === b[i]);
    };
    assert.equal(same('encoder.layer.3.output.dense.weight'), false, 'the top layer trained');
    assert.equal(same('encoder.layer.0.output.dense.weight'), true, 'the first layer stayed frozen');
    assert.equal((await call(s, 'POST', `/api/runs/${top.body.id}/predict`, { texts: ['dull .'] })).status, 200);
  } finally {
    await s.close();
    for (const [k, v] of [
      ['HF_HUB_CACHE', saved.cache],
      ['HF_HUB_OFFLINE', saved.offline],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
