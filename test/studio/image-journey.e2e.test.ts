/**
 * Graft Studio in a real browser, image journey: `graft studio` on port 0 with a temporary data
 * folder; in Chromium, create a project, add three Fashion-MNIST classes (real images written as PNG),
 * upload by file picker and by drag-and-drop, capture a webcam frame and remove it, train with the
 * default backbone and method, read the accuracy and confusion matrix off the page, try a held-out
 * image (server, Grad-CAM, and the exported ONNX in the page with onnxruntime-web), then download the
 * ONNX through the page and check it in onnxruntime-node. Screenshots: test-output/studio/image/.
 * GRAFT_STUDIO_SCREENSHOT=1 also writes docs/studio.png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { asset, needs } from '../helpers/assets.js';
import {
  openBrowser,
  outputDir,
  requireChromium,
  startStudio,
  textIfShown,
  type Browser,
  type Studio,
} from '../helpers/browser.js';
import { parseIdx } from '../../src/data/idx.js';
import { decodeOnnx } from '../../src/formats/onnx.js';
import { getLabels, getPreprocess } from '../../src/formats/preprocess.js';
import { imagesToTensor } from '../../src/data/image.js';

const CLASSES: [number, string][] = [
  [1, 'trouser'],
  [7, 'sneaker'],
  [8, 'bag'],
];
const PER_CLASS = 20;

/** PER_CLASS + 1 PNGs per class from Fashion-MNIST's test set (the last one of each is kept for trying). */
async function writeImages(dir: string): Promise<Record<string, string[]>> {
  const fm = asset('datasets/fashion-mnist');
  const images = parseIdx(readFileSync(join(fm, 't10k-images-idx3-ubyte.gz')), 'images');
  const labels = parseIdx(readFileSync(join(fm, 't10k-labels-idx1-ubyte.gz')), 'labels');
  const out: Record<string, string[]> = {};
  for (const [label, name] of CLASSES) {
    mkdirSync(join(dir, name), { recursive: true });
    out[name] = [];
    for (let i = 0; i < labels.data.length && out[name].length < PER_CLASS + 1; i++) {
      if (labels.data[i] !== label) continue;
      const path = join(dir, name, `${name}-${i}.png`);
      await sharp(Buffer.from(images.data.subarray(i * 784, (i + 1) * 784)), {
        raw: { width: 28, height: 28, channels: 1 },
      })
        .png()
        .toFile(path);
      out[name].push(path);
    }
  }
  return out;
}

async function waitForCount(b: Browser, cls: string, n: number): Promise<void> {
  await b.page
    .locator(`[data-testid="class-card"][data-class-name="${cls}"] [data-testid="class-count"]`)
    .filter({ hasText: new RegExp(`^${n}$`) })
    .waitFor();
}

/** Drop files on an element as a user dragging them from the desktop does (a DataTransfer holding Files). */
async function dropFiles(b: Browser, selector: string, paths: string[]): Promise<void> {
  const files = paths.map((p) => ({ name: p.split('/').pop()!, b64: readFileSync(p).toString('base64') }));
  const dt = await b.page.evaluateHandle((fs: { name: string; b64: string }[]) => {
    const d = new DataTransfer();
    for (const f of fs)
      d.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: 'image/png' }));
    return d;
  }, files);
  await b.page.locator(selector).dispatchEvent('dragover', { dataTransfer: dt });
  await b.page.locator(selector).dispatchEvent('drop', { dataTransfer: dt });
}

test('Studio image journey in Chromium: upload, webcam, train, evaluation, try (server, Grad-CAM, in-page ONNX), download', {
  skip: needs('datasets/fashion-mnist', 'models/coral/mobilenet_v1_0.25_128_quant.tflite'),
  timeout: 480_000,
}, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'graft-studio-e2e-'));
  const shots = outputDir('image');
  let studio: Studio | undefined;
  let b: Browser | undefined;
  try {
    requireChromium(); // before anything else: a missing browser is a clear failure, not a timeout
    const files = await writeImages(join(tmp, 'images'));
    studio = await startStudio(join(tmp, 'data'));
    b = await openBrowser(studio.url, shots);
    const { page } = b;
    await b.shot('start');

    // a project with three classes
    await page.getByTestId('project-name-input').fill('Fashion');
    await page.getByTestId('project-kind-select').selectOption('image');
    await page.getByTestId('create-project-button').click();
    await page.getByTestId('project-title').filter({ hasText: 'Fashion' }).waitFor();
    for (const [, name] of CLASSES) {
      await page.getByTestId('class-name-input').fill(name);
      await page.getByTestId('add-class-button').click();
      await page.locator(`[data-testid="class-card"][data-class-name="${name}"]`).waitFor();
    }

    // a fourth class, renamed, then deleted (the delete button asks for a second click)
    await page.getByTestId('class-name-input').fill('extra');
    await page.getByTestId('add-class-button').click();
    const extra = page.locator('[data-testid="class-card"][data-class-name="extra"]');
    await extra.getByTestId('class-rename-button').click();
    await extra.getByTestId('class-rename-input').fill('spare');
    await extra.getByTestId('class-rename-save').click();
    const spare = page.locator('[data-testid="class-card"][data-class-name="spare"]');
    await spare.waitFor();
    await spare.getByTestId('class-delete-button').click();
    await spare.getByTestId('class-delete-button').click();
    await spare.waitFor({ state: 'detached' });
    assert.deepEqual(
      await page.getByTestId('class-card').evaluateAll((els) => els.map((e) => e.getAttribute('data-class-name'))),
      CLASSES.map(([, n]) => n),
    );

    // two classes by the file picker (several files at once), the third by drag-and-drop
    for (const [, name] of CLASSES.slice(0, 2)) {
      await page
        .locator(`[data-testid="class-card"][data-class-name="${name}"] [data-testid="class-file-input"]`)
        .setInputFiles(files[name]!.slice(0, PER_CLASS));
      await waitForCount(b, name, PER_CLASS);
    }
    const [, dropped] = CLASSES[2]!;
    await dropFiles(
      b,
      `[data-testid="class-card"][data-class-name="${dropped}"] [data-testid="class-dropzone"]`,
      files[dropped]!.slice(0, PER_CLASS),
    );
    await waitForCount(b, dropped, PER_CLASS);
    assert.equal(
      await page.locator('[data-testid="class-card"][data-class-name="bag"] [data-testid="example-thumb"] img').count(),
      PER_CLASS,
      'a thumbnail per example',
    );
    await b.shot('uploaded');

    // a webcam frame (Chromium's fake camera) into a class, then removed again
    const first = CLASSES[0]![1];
    const idsBefore = await page
      .locator(`[data-testid="class-card"][data-class-name="${first}"] [data-testid="example-thumb"]`)
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-example-id')));
    await page.getByTestId('webcam-panel').locator('summary').click();
    await page.getByTestId('webcam-start-button').click();
    await page.getByTestId('webcam-class-select').selectOption({ label: first });
    await page.getByTestId('webcam-capture-button').click();
    await waitForCount(b, first, PER_CLASS + 1);
    await b.shot('webcam-frame');
    const idsAfter = await page
      .locator(`[data-testid="class-card"][data-class-name="${first}"] [data-testid="example-thumb"]`)
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-example-id')));
    const frame = idsAfter.find((id) => !idsBefore.includes(id));
    assert.ok(frame, 'the captured frame is shown as a new thumbnail');
    await page.locator(`[data-example-id="${frame}"]`).hover();
    await page.locator(`[data-example-id="${frame}"] [data-testid="example-delete-button"]`).click();
    await waitForCount(b, first, PER_CLASS);
    await page.getByTestId('webcam-start-button').click(); // stop

    // train with the defaults, watching the progress
    assert.match(
      await page.getByTestId('backbone-select').inputValue(),
      /mobilenet_v1_0\.25_128/,
      'the default image backbone',
    );
    assert.equal(await page.getByTestId('method-select').inputValue(), 'features', 'the default method');
    await page.getByTestId('advanced-toggle').click();
    assert.ok(await page.getByTestId('holdout-input').isVisible(), "the advanced panel shows the method's settings");
    await page.getByTestId('train-button').click();
    await page.getByTestId('progress-bar').waitFor();
    await b.shot('training');
    await page
      .locator(
        '[data-testid="run-status"]:is([data-status="done"], [data-status="failed"], [data-status="interrupted"], [data-status="cancelled"])',
      )
      .waitFor({ timeout: 300_000 });
    assert.equal(
      await page.getByTestId('run-status').getAttribute('data-status'),
      'done',
      `training failed: ${await textIfShown(page.getByTestId('run-error'))}\n${studio.output().slice(-3000)}`,
    );
    assert.ok(
      Number(await page.getByTestId('progress-bar').getAttribute('value')) >= 0.999,
      'the progress bar is full',
    );
    const drawn = await page
      .locator('[data-testid="accuracy-chart"] polyline')
      .evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-points'))));
    assert.ok(drawn.length >= 1 && drawn.every((n) => n >= 1), `an accuracy curve is drawn (${drawn})`);

    // the evaluation, read off the page
    const accuracy = Number(await page.getByTestId('eval-accuracy').getAttribute('data-value'));
    assert.ok(
      accuracy > 0.6,
      `held-out accuracy ${accuracy} should be well above chance (1/3) for trousers, sneakers and bags`,
    );
    assert.match((await page.getByTestId('eval-accuracy').textContent())!, /%/);
    const cells = await page.getByTestId('confusion-cell').evaluateAll((els) =>
      els.map((e) => ({
        t: Number(e.getAttribute('data-true')),
        p: Number(e.getAttribute('data-pred')),
        n: Number(e.textContent),
      })),
    );
    assert.equal(cells.length, 9, 'a 3 × 3 confusion matrix');
    const total = cells.reduce((s, c) => s + c.n, 0),
      diag = cells.filter((c) => c.t === c.p).reduce((s, c) => s + c.n, 0);
    assert.ok(total >= 3, `the confusion matrix counts the held-out examples (${total})`);
    assert.ok(
      Math.abs(diag / total - accuracy) < 1e-9,
      `the matrix's diagonal (${diag}/${total}) is the accuracy shown (${accuracy})`,
    );
    assert.equal(await page.getByTestId('perclass-row').count(), 3, 'precision and recall for each class');
    assert.equal(
      await page.getByTestId('misclassified-item').count(),
      total - diag,
      'one thumbnail per misclassified held-out example',
    );
    await page.getByTestId('evaluation-section').scrollIntoViewIfNeeded();
    await b.shot('evaluation');

    // try a held-out trouser: the server's answer, a Grad-CAM overlay, and the same model in the page
    const tryImage = files['trouser']![PER_CLASS]!;
    await page.getByTestId('try-file-input').setInputFiles(tryImage);
    const topRow = page.locator('[data-testid="try-results-row"]').first();
    await page
      .locator('[data-testid="try-results-row"], [data-testid="try-error"]')
      .first()
      .waitFor({ timeout: 60_000 });
    assert.equal(
      await page.getByTestId('try-error').count(),
      0,
      `the server classifies the input: ${await textIfShown(page.getByTestId('try-error'))}`,
    );
    const serverTop = await topRow.getAttribute('data-label');
    assert.equal(serverTop, 'trouser', 'a held-out trouser is classified as a trouser');
    await page
      .locator('[data-testid="gradcam-overlay"], [data-testid="gradcam-unavailable"]')
      .first()
      .waitFor({ timeout: 120_000 });
    assert.equal(
      await page.getByTestId('gradcam-unavailable').count(),
      0,
      `a Grad-CAM heatmap: ${await textIfShown(page.getByTestId('gradcam-unavailable'))}`,
    );
    assert.match(
      (await page.getByTestId('gradcam-overlay').getAttribute('src'))!,
      /^data:image\/png;base64,|^\/api\//,
      'a Grad-CAM heatmap image',
    );
    const diffEl = page.getByTestId('in-page-diff');
    await page
      .locator('[data-testid="in-page-diff"], [data-testid="in-page-error"]')
      .first()
      .waitFor({ timeout: 60_000 });
    assert.equal(
      await page.getByTestId('in-page-error').count(),
      0,
      `the model runs in the page: ${await textIfShown(page.getByTestId('in-page-error'))}`,
    );
    const maxDiff = Number(await diffEl.getAttribute('data-max-diff'));
    assert.ok(
      maxDiff <= 1e-4,
      `onnxruntime-web in the page and the server agree within 1e-4 (largest difference ${maxDiff})`,
    );
    const inPage = await page
      .locator('[data-testid="in-page-results-row"]')
      .evaluateAll((els) =>
        els.map((e) => [e.getAttribute('data-label')!, Number(e.getAttribute('data-probability'))] as const),
      );
    assert.equal(inPage.length, 3, 'the page shows every class');
    assert.equal(inPage[0]![0], serverTop, 'the in-page model gives the same top class');
    await page.getByTestId('try-section').scrollIntoViewIfNeeded();
    await b.shot('try');

    // export: download the ONNX through the page and run it in onnxruntime-node
    const download = page.waitForEvent('download');
    await page.getByTestId('export-onnx-link').click();
    const onnxPath = join(tmp, 'downloaded.onnx');
    await (await download).saveAs(onnxPath);
    assert.match((await page.getByTestId('snippet-node').textContent())!, /onnxruntime-node/, 'a Node snippet');
    assert.match((await page.getByTestId('snippet-browser').textContent())!, /onnxruntime-web/, 'a browser snippet');
    await b.shot('export');
    if (process.env['GRAFT_STUDIO_SCREENSHOT'] === '1') {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: resolve(import.meta.dirname, '..', '..', 'docs', 'studio.png'), fullPage: true });
    }
    const bytes = readFileSync(onnxPath);
    const graph = decodeOnnx(bytes);
    const pre = getPreprocess(graph),
      labels = getLabels(graph);
    assert.ok(pre && labels, 'the downloaded model records its preprocessing and class names');
    assert.deepEqual([...labels].sort(), CLASSES.map(([, n]) => n).sort());
    const session = await ort.InferenceSession.create(bytes);
    const x = await imagesToTensor([tryImage], pre);
    const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', x.data as Float32Array, x.dims) };
    const outName = session.outputNames.includes('probabilities') ? 'probabilities' : session.outputNames[0]!;
    const probs = Array.from((await session.run(feeds))[outName]!.data as Float32Array);
    const best = probs.indexOf(Math.max(...probs));
    assert.equal(labels[best], serverTop, "onnxruntime-node on the downloaded file gives the page's top class");
    assert.deepEqual(
      b.errors.filter((e) => !/favicon/.test(e)),
      [],
      'no errors in the page',
    );
    copyFileSync(onnxPath, join(shots, 'model.onnx'));
  } catch (e) {
    if (b) {
      await b.shot('failure').catch(() => undefined);
      if (b.errors.length) (e as Error).message += `\n--- errors in the page ---\n${b.errors.join('\n')}`;
    }
    if (studio)
      (e as Error).message += `\n--- graft studio output (last 3000 characters) ---\n${studio.output().slice(-3000)}`;
    throw e;
  } finally {
    await b?.close();
    await studio?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});
