/**
 * Graft Studio's page (the bundle's entry): projects, classes and their examples, training with live
 * progress, the evaluation, trying the model (on the server and in the page), and export. Plain
 * TypeScript and DOM, talking to the JSON API in src/studio/API.md; every control a test or a user
 * needs has a text label and a stable `data-testid`.
 */
import {
  api,
  ApiError,
  fetchBytes,
  withToken,
  type Backbone,
  type ClassInfo,
  type EpochMetric,
  type Evaluation,
  type Example,
  type Explanation,
  type ImportResult,
  type Kind,
  type Method,
  type Prediction,
  type Project,
  type Run,
  type RunSettings,
} from './api.js';
import { lineChart } from './chart.js';
import { append, fill, formatSeconds, h, pct } from './dom.js';
import { fitImage, loadInPageModel, type InPageModel } from './in-page.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

interface State {
  projects: Project[];
  project: Project | null;
  backbones: Backbone[];
  defaultBackbone: string;
  methods: Method[];
  runs: Run[];
  run: Run | null;
  events: EventSource | null;
  inPage: { runId: string; model: Promise<InPageModel> } | null;
  webcam: MediaStream | null;
}

const state: State = {
  projects: [],
  project: null,
  backbones: [],
  defaultBackbone: '',
  methods: [],
  runs: [],
  run: null,
  events: null,
  inPage: null,
  webcam: null,
};

const TERMINAL = new Set(['done', 'failed', 'cancelled', 'interrupted']);
const UPLOAD_CHUNK = 50;

// ---------------------------------------------------------------- messages

function notify(message: string, kind: 'info' | 'error' = 'info'): void {
  const box = $('messages');
  const m = h(
    'p',
    {
      class: `message ${kind}`,
      role: kind === 'error' ? 'alert' : 'status',
      'data-testid': kind === 'error' ? 'error-message' : 'info-message',
    },
    message,
  );
  box.prepend(m);
  while (box.children.length > 4) box.lastElementChild!.remove();
  setTimeout(() => m.remove(), kind === 'error' ? 15000 : 6000);
}

/** Run an action from a control: errors become a visible message instead of an unhandled rejection. */
function guarded<A extends unknown[]>(fn: (...a: A) => Promise<void> | void): (...a: A) => void {
  return (...a: A) => {
    Promise.resolve()
      .then(() => fn(...a))
      .catch((e: unknown) => notify(e instanceof Error ? e.message : String(e), 'error'));
  };
}

// ---------------------------------------------------------------- projects

async function loadProjects(): Promise<void> {
  state.projects = (await api<{ projects: Project[] }>('GET', '/api/projects')).projects;
  renderProjectList();
}

function renderProjectList(): void {
  const list = $('project-list');
  if (!state.projects.length) {
    fill(list, h('li', { class: 'empty' }, 'No projects yet.'));
    return;
  }
  fill(
    list,
    state.projects.map((p) =>
      h(
        'li',
        {},
        h(
          'a',
          {
            href: `#/p/${p.id}`,
            'data-testid': 'project-item',
            'data-project-id': p.id,
            'aria-current': state.project?.id === p.id ? 'page' : undefined,
          },
          h('span', { class: 'pname' }, p.name),
          h('span', { class: 'badge' }, p.kind),
          h('span', { class: 'muted' }, ` ${p.exampleCount} examples`),
        ),
      ),
    ),
  );
}

function setupCreateProject(): void {
  $('create-project-form').addEventListener(
    'submit',
    guarded(async (ev: Event) => {
      ev.preventDefault();
      const name = $<HTMLInputElement>('project-name').value.trim();
      const kind = $<HTMLSelectElement>('project-kind').value as Kind;
      if (!name) throw new Error('Give the project a name.');
      const p = await api<Project>('POST', '/api/projects', { name, kind });
      $<HTMLInputElement>('project-name').value = '';
      await loadProjects();
      location.hash = `#/p/${p.id}`;
    }),
  );
}

async function openProject(pid: string): Promise<void> {
  closeEvents();
  stopWebcam();
  panels = null;
  state.inPage = null;
  const p = await api<Project>('GET', `/api/projects/${pid}`);
  state.project = p;
  renderProjectList();
  $('welcome').hidden = true;
  $('project').hidden = false;
  const [bb, mm, runs] = await Promise.all([
    api<{ backbones: Backbone[]; default: string }>('GET', `/api/backbones?kind=${p.kind}`),
    api<{ methods: Method[] }>('GET', `/api/methods?kind=${p.kind}`),
    api<{ runs: Run[] }>('GET', `/api/projects/${pid}/runs`),
  ]);
  state.backbones = bb.backbones;
  state.defaultBackbone = bb.default;
  state.methods = mm.methods;
  state.runs = runs.runs;
  state.run = runs.runs[0] ?? null;
  renderProjectHeader();
  await renderData();
  renderTrainForm();
  renderRun();
  if (state.run && !TERMINAL.has(state.run.status)) follow(state.run.id);
}

async function refreshProject(): Promise<void> {
  if (!state.project) return;
  state.project = await api<Project>('GET', `/api/projects/${state.project.id}`);
  renderProjectHeader();
  await renderData();
  void loadProjects();
}

function renderProjectHeader(): void {
  const p = state.project!;
  fill(
    $('project-header'),
    h('h2', { 'data-testid': 'project-title' }, p.name),
    h(
      'span',
      { class: 'badge', 'data-testid': 'project-kind' },
      p.kind === 'image' ? 'image classification' : 'text classification',
    ),
    h(
      'span',
      { class: 'muted', 'data-testid': 'project-count' },
      ` ${p.exampleCount} examples in ${p.classes.length} classes`,
    ),
    h(
      'button',
      {
        type: 'button',
        class: 'danger small',
        'data-testid': 'delete-project-button',
        onclick: confirmTwice('Delete project', 'Really delete the project?', async () => {
          await api('DELETE', `/api/projects/${p.id}`);
          state.project = null;
          location.hash = '';
          $('project').hidden = true;
          $('welcome').hidden = false;
          await loadProjects();
        }),
      },
      'Delete project',
    ),
  );
}

/** A button handler that asks for a second click (no blocking confirm() dialog) before acting. */
function confirmTwice(label: string, ask: string, act: () => Promise<void>): (ev: Event) => void {
  return guarded(async (ev: Event) => {
    const b = ev.currentTarget as HTMLButtonElement;
    if (b.dataset['armed'] !== '1') {
      b.dataset['armed'] = '1';
      b.textContent = ask;
      setTimeout(() => {
        b.dataset['armed'] = '';
        b.textContent = label;
      }, 4000);
      return;
    }
    await act();
  });
}

// ---------------------------------------------------------------- data: classes and examples

async function renderData(): Promise<void> {
  const p = state.project!;
  const section = $('data');
  const classes = h('div', { class: 'classes', 'data-testid': 'class-list' });
  const examples = await Promise.all(
    p.classes.map((c) =>
      api<{ examples: Example[]; total: number }>(
        'GET',
        `/api/projects/${p.id}/examples?classId=${c.id}&offset=0&limit=${p.kind === 'image' ? 48 : 20}`,
      ),
    ),
  );
  p.classes.forEach((c, i) => {
    classes.append(classCard(p, c, examples[i]!.examples));
  });
  const addClass = h(
    'form',
    { class: 'row', 'data-testid': 'add-class-form' },
    h('label', { for: 'class-name' }, 'New class'),
    h('input', {
      id: 'class-name',
      name: 'class-name',
      required: true,
      maxlength: 100,
      placeholder: 'e.g. sneaker',
      'data-testid': 'class-name-input',
    }),
    h('button', { type: 'submit', 'data-testid': 'add-class-button' }, 'Add class'),
  );
  addClass.addEventListener(
    'submit',
    guarded(async (ev: Event) => {
      ev.preventDefault();
      const input = $<HTMLInputElement>('class-name');
      const name = input.value.trim();
      if (!name) throw new Error('Give the class a name.');
      await api<ClassInfo>('POST', `/api/projects/${p.id}/classes`, { name });
      input.value = '';
      await refreshProject();
    }),
  );
  fill(
    section,
    h('h3', {}, p.kind === 'image' ? '1. Examples' : '1. Examples'),
    addClass,
    classes,
    p.kind === 'image' ? [persistentPanels(p).webcam, persistentPanels(p).folder] : persistentPanels(p).table,
  );
}

/**
 * The webcam and folder panels live as long as the project is open (re-rendering the classes must
 * not stop a running webcam or close an open panel); only the class choices are refreshed.
 */
let panels: {
  pid: string;
  webcam: HTMLElement;
  folder: HTMLElement;
  table: HTMLElement;
  select: HTMLSelectElement;
} | null = null;
function persistentPanels(p: Project): { webcam: HTMLElement; folder: HTMLElement; table: HTMLElement } {
  if (panels?.pid !== p.id) {
    const select = h('select', { id: 'webcam-class', 'data-testid': 'webcam-class-select' });
    panels = { pid: p.id, webcam: webcamPanel(select), folder: folderImport(), table: tableImport(), select };
  }
  const keep = panels.select.value;
  fill(
    panels.select,
    p.classes.map((c) => h('option', { value: c.id, selected: c.id === keep }, c.name)),
  );
  return panels;
}

/** The × on an example (image thumbnail or text line): deletes it and redraws the project. */
function removeExampleButton(p: Project, e: Example, extra: Record<string, string> = {}): HTMLElement {
  return h(
    'button',
    {
      type: 'button',
      class: 'remove',
      ...extra,
      'aria-label': 'Remove this example',
      'data-testid': 'example-delete-button',
      onclick: guarded(async () => {
        await api('DELETE', `/api/projects/${p.id}/examples/${e.id}`);
        await refreshProject();
      }),
    },
    '×',
  );
}

function classCard(p: Project, c: ClassInfo, examples: Example[]): HTMLElement {
  const card = h('article', {
    class: 'class-card',
    'data-testid': 'class-card',
    'data-class-id': c.id,
    'data-class-name': c.name,
    'aria-label': `class ${c.name}`,
  });
  const title = h('h4', { class: 'class-name', 'data-testid': 'class-title' }, c.name);
  const count = h('span', { class: 'count', 'data-testid': 'class-count' }, String(c.count));
  const rename = h(
    'form',
    { class: 'row rename', hidden: true },
    h('label', { for: `rename-${c.id}` }, 'New name'),
    h('input', {
      id: `rename-${c.id}`,
      value: c.name,
      required: true,
      maxlength: 100,
      'data-testid': 'class-rename-input',
    }),
    h('button', { type: 'submit', 'data-testid': 'class-rename-save' }, 'Save'),
  );
  rename.addEventListener(
    'submit',
    guarded(async (ev: Event) => {
      ev.preventDefault();
      const name = (rename.querySelector('input') as HTMLInputElement).value.trim();
      await api('PATCH', `/api/projects/${p.id}/classes/${c.id}`, { name });
      await refreshProject();
    }),
  );
  const head = h(
    'header',
    {},
    title,
    count,
    h(
      'button',
      {
        type: 'button',
        class: 'small',
        'data-testid': 'class-rename-button',
        onclick: () => {
          rename.hidden = !rename.hidden;
        },
      },
      'Rename',
    ),
    h(
      'button',
      {
        type: 'button',
        class: 'small danger',
        'data-testid': 'class-delete-button',
        onclick: confirmTwice('Delete', 'Delete class and its examples?', async () => {
          await api('DELETE', `/api/projects/${p.id}/classes/${c.id}`);
          await refreshProject();
        }),
      },
      'Delete',
    ),
  );
  card.append(head, rename);
  if (p.kind === 'image') {
    const input = h('input', {
      type: 'file',
      id: `files-${c.id}`,
      multiple: true,
      accept: 'image/*',
      class: 'visually-hidden',
      'data-testid': 'class-file-input',
    });
    input.addEventListener(
      'change',
      guarded(async () => {
        await uploadImages(p, c, Array.from(input.files ?? []));
        input.value = '';
      }),
    );
    const drop = h(
      'div',
      { class: 'dropzone', 'data-testid': 'class-dropzone' },
      h('label', { for: `files-${c.id}`, class: 'button' }, 'Upload images'),
      ' or drop image files here',
      input,
    );
    drop.addEventListener('dragover', (ev) => {
      ev.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener(
      'drop',
      guarded(async (ev: DragEvent) => {
        ev.preventDefault();
        drop.classList.remove('over');
        await uploadImages(p, c, Array.from(ev.dataTransfer?.files ?? []));
      }),
    );
    append(card, [
      drop,
      h(
        'div',
        { class: 'thumbs', 'data-testid': 'class-thumbs' },
        examples.map((e) =>
          h(
            'figure',
            { class: 'thumb', 'data-testid': 'example-thumb', 'data-example-id': e.id },
            h('img', {
              src: withToken(e.thumbUrl ?? e.imageUrl ?? ''),
              alt: `example of ${c.name}`,
              loading: 'lazy',
              width: 64,
              height: 64,
            }),
            removeExampleButton(p, e, { title: 'Remove this example' }),
          ),
        ),
      ),
      c.count > examples.length ? h('p', { class: 'muted' }, `showing ${examples.length} of ${c.count}`) : null,
    ]);
  } else {
    const ta = h('textarea', {
      id: `texts-${c.id}`,
      rows: 3,
      placeholder: 'One example per line',
      'data-testid': 'class-text-input',
    });
    const form = h(
      'form',
      { class: 'texts' },
      h('label', { for: `texts-${c.id}` }, `Paste examples of ${c.name}, one per line`),
      ta,
      h('button', { type: 'submit', 'data-testid': 'class-text-add-button' }, 'Add examples'),
    );
    form.addEventListener(
      'submit',
      guarded(async (ev: Event) => {
        ev.preventDefault();
        const texts = ta.value
          .split('\n')
          .map((s) => s.trim())
          .filter(Boolean);
        if (!texts.length) throw new Error('Paste at least one line of text.');
        for (let i = 0; i < texts.length; i += 1000)
          await api('POST', `/api/projects/${p.id}/classes/${c.id}/texts`, { texts: texts.slice(i, i + 1000) });
        ta.value = '';
        notify(`Added ${texts.length} example${texts.length === 1 ? '' : 's'} to ${c.name}.`);
        await refreshProject();
      }),
    );
    append(card, [
      form,
      h(
        'ul',
        { class: 'texts-list', 'data-testid': 'class-texts' },
        examples.map((e) =>
          h(
            'li',
            { 'data-testid': 'example-text', 'data-example-id': e.id },
            h('span', {}, e.text ?? ''),
            removeExampleButton(p, e),
          ),
        ),
      ),
      c.count > examples.length ? h('p', { class: 'muted' }, `showing ${examples.length} of ${c.count}`) : null,
    ]);
  }
  return card;
}

async function uploadImages(p: Project, c: ClassInfo, files: File[]): Promise<void> {
  const images = files.filter((f) => f.size > 0);
  if (!images.length) throw new Error('No files to upload.');
  const status = $('upload-status');
  let added = 0;
  try {
    for (let i = 0; i < images.length; i += UPLOAD_CHUNK) {
      status.textContent = `Uploading ${Math.min(i + UPLOAD_CHUNK, images.length)} / ${images.length} to ${c.name}…`;
      const form = new FormData();
      for (const f of images.slice(i, i + UPLOAD_CHUNK)) form.append('file', f, f.name);
      added += (await api<{ added: Example[] }>('POST', `/api/projects/${p.id}/classes/${c.id}/images`, form)).added
        .length;
    }
    notify(`Added ${added} image${added === 1 ? '' : 's'} to ${c.name}.`);
  } finally {
    status.textContent = '';
    await refreshProject();
  }
}

function webcamPanel(select: HTMLSelectElement): HTMLElement {
  const video = h('video', {
    id: 'webcam-video',
    autoplay: true,
    muted: true,
    playsinline: true,
    width: 240,
    height: 180,
    hidden: true,
    'data-testid': 'webcam-video',
  });
  const capture = h(
    'button',
    {
      type: 'button',
      disabled: true,
      'data-testid': 'webcam-capture-button',
      onclick: guarded(async () => {
        const p = state.project!;
        const c = p.classes.find((x) => x.id === select.value);
        if (!c) throw new Error('Add a class first.');
        const blob = await webcamFrame();
        await uploadImages(p, c, [new File([blob], `webcam-${Date.now()}.jpg`, { type: 'image/jpeg' })]);
      }),
    },
    'Capture a frame',
  );
  const start = h(
    'button',
    {
      type: 'button',
      'data-testid': 'webcam-start-button',
      onclick: guarded(async () => {
        if (state.webcam) {
          stopWebcam();
          start.textContent = 'Start webcam';
          capture.disabled = true;
          video.hidden = true;
          return;
        }
        await startWebcam(video);
        video.hidden = false;
        start.textContent = 'Stop webcam';
        capture.disabled = false;
      }),
    },
    'Start webcam',
  );
  return h(
    'details',
    { class: 'panel', 'data-testid': 'webcam-panel' },
    h('summary', {}, 'Webcam'),
    h('div', { class: 'row' }, start, h('label', { for: 'webcam-class' }, 'Add frames to'), select, capture),
    video,
  );
}

async function startWebcam(video: HTMLVideoElement): Promise<void> {
  if (!navigator.mediaDevices?.getUserMedia)
    throw new Error('This browser gives the page no webcam (it needs https or localhost).');
  state.webcam = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  video.srcObject = state.webcam;
  await video.play();
}

function stopWebcam(): void {
  for (const t of state.webcam?.getTracks() ?? []) t.stop();
  state.webcam = null;
}

/** The webcam's current frame as a JPEG (any playing webcam video on the page). */
async function webcamFrame(): Promise<Blob> {
  const v = [...document.querySelectorAll<HTMLVideoElement>('video')].find((x) => x.srcObject && x.videoWidth);
  if (!v || !v.videoWidth) throw new Error('Start the webcam first.');
  const canvas = h('canvas', { width: v.videoWidth, height: v.videoHeight });
  canvas.getContext('2d')!.drawImage(v, 0, 0);
  return new Promise((res, rej) =>
    canvas.toBlob((b) => (b ? res(b) : rej(new Error('could not encode the frame'))), 'image/jpeg', 0.92),
  );
}

function folderImport(): HTMLElement {
  const input = h('input', {
    id: 'folder-path',
    placeholder: '/path/on/the/server/with/one/folder/per/class',
    'data-testid': 'folder-path-input',
    size: 40,
  });
  const result = h('p', { class: 'muted', 'data-testid': 'folder-import-result', role: 'status' });
  const form = h(
    'form',
    { class: 'row' },
    h('label', { for: 'folder-path' }, 'Server folder'),
    input,
    h('button', { type: 'submit', 'data-testid': 'folder-import-button' }, 'Import folder'),
  );
  form.addEventListener(
    'submit',
    guarded(async (ev: Event) => {
      ev.preventDefault();
      result.textContent = 'Importing…';
      try {
        const r = await api<ImportResult>('POST', `/api/projects/${state.project!.id}/import/folder`, {
          path: input.value.trim(),
        });
        result.textContent = importSummary(r);
      } catch (e) {
        result.textContent = '';
        throw e;
      }
      await refreshProject();
    }),
  );
  return h(
    'details',
    { class: 'panel', 'data-testid': 'folder-panel' },
    h('summary', {}, 'Import a folder on the server (one subfolder per class)'),
    form,
    result,
  );
}

function importSummary(r: ImportResult): string {
  return `Imported ${r.added} examples${r.classesCreated.length ? `; new classes: ${r.classesCreated.join(', ')}` : ''}${
    r.skipped.length
      ? `; skipped ${r.skipped.length} (${r.skipped
          .slice(0, 3)
          .map((s) => `${s.file ?? `row ${s.row}`}: ${s.reason}`)
          .join('; ')})`
      : ''
  }.`;
}

function tableImport(): HTMLElement {
  const file = h('input', {
    type: 'file',
    id: 'table-file',
    accept: '.csv,.tsv,.jsonl,.txt,text/csv,text/tab-separated-values',
    'data-testid': 'table-file-input',
  });
  const textCol = h('input', {
    id: 'table-text-col',
    placeholder: 'auto',
    size: 10,
    'data-testid': 'table-text-column',
  });
  const labelCol = h('input', {
    id: 'table-label-col',
    placeholder: 'auto',
    size: 10,
    'data-testid': 'table-label-column',
  });
  const result = h('p', { class: 'muted', 'data-testid': 'table-import-result', role: 'status' });
  const form = h(
    'form',
    { class: 'row' },
    h('label', { for: 'table-file' }, 'CSV, TSV or JSONL file'),
    file,
    h('label', { for: 'table-text-col' }, 'Text column'),
    textCol,
    h('label', { for: 'table-label-col' }, 'Label column'),
    labelCol,
    h('button', { type: 'submit', 'data-testid': 'table-import-button' }, 'Import file'),
  );
  form.addEventListener(
    'submit',
    guarded(async (ev: Event) => {
      ev.preventDefault();
      const f = file.files?.[0];
      if (!f) throw new Error('Choose a CSV, TSV or JSONL file first.');
      const body = new FormData();
      if (textCol.value.trim()) body.append('textColumn', textCol.value.trim());
      if (labelCol.value.trim()) body.append('labelColumn', labelCol.value.trim());
      body.append('file', f, f.name);
      result.textContent = 'Importing…';
      try {
        result.textContent = importSummary(
          await api<ImportResult>('POST', `/api/projects/${state.project!.id}/import/table`, body),
        );
      } catch (e) {
        result.textContent = '';
        throw e;
      }
      file.value = '';
      await refreshProject();
    }),
  );
  return h(
    'section',
    { class: 'panel', 'data-testid': 'table-panel' },
    h('h4', {}, 'Import a table (one row per example: a text and its class)'),
    form,
    result,
  );
}

// ---------------------------------------------------------------- training

function renderTrainForm(): void {
  const p = state.project!;
  const backbone = h(
    'select',
    { id: 'backbone', 'data-testid': 'backbone-select' },
    state.backbones.map((b) =>
      h(
        'option',
        { value: b.id, selected: b.id === state.defaultBackbone },
        `${b.label}${b.detail ? ` (${b.detail})` : ''}`,
      ),
    ),
  );
  const custom = h('input', {
    id: 'backbone-folder',
    placeholder: 'or a model folder/file on the server',
    'aria-label': 'Backbone: a model folder or file on the server (optional)',
    size: 36,
    'data-testid': 'backbone-folder-input',
  });
  const method = h('select', { id: 'method', 'data-testid': 'method-select' });
  const about = h('p', { class: 'muted', 'data-testid': 'method-description' });
  const advanced = h('div', { class: 'grid' });
  const inputs: Partial<Record<keyof RunSettings, HTMLInputElement>> = {};
  const LABELS: Record<string, string> = {
    epochs: 'Epochs',
    learningRate: 'Learning rate',
    augment: 'Augmentation (flips, crops)',
    holdout: 'Held-out fraction',
    batchSize: 'Batch size',
    topBlocks: 'Top blocks to fine-tune',
    loraRank: 'LoRA rank',
    seed: 'Random seed',
  };
  const TESTIDS: Record<string, string> = {
    epochs: 'epochs-input',
    learningRate: 'lr-input',
    augment: 'augment-checkbox',
    holdout: 'holdout-input',
    batchSize: 'batch-size-input',
    topBlocks: 'top-blocks-input',
    loraRank: 'lora-rank-input',
    seed: 'seed-input',
  };
  const fillMethods = (): void => {
    const b = state.backbones.find((x) => x.id === backbone.value);
    const ms = state.methods.filter((m) => !b || b.methods.includes(m.id));
    const prev = method.value;
    fill(
      method,
      ms.map((m) => h('option', { value: m.id, selected: prev ? m.id === prev : m.default }, m.label)),
    );
    fillSettings();
  };
  const fillSettings = (): void => {
    const m = state.methods.find((x) => x.id === method.value);
    about.textContent = m?.description ?? '';
    advanced.replaceChildren();
    for (const k of Object.keys(inputs)) delete inputs[k as keyof RunSettings];
    for (const [k, spec] of Object.entries(m?.settings ?? {})) {
      if (!spec) continue;
      const id = `setting-${k}`;
      const input =
        typeof spec.default === 'boolean'
          ? h('input', { type: 'checkbox', id, checked: spec.default, 'data-testid': TESTIDS[k] ?? `${k}-input` })
          : h('input', {
              type: 'number',
              id,
              value: spec.default,
              step: k === 'learningRate' ? 'any' : k === 'holdout' ? 0.05 : 1,
              min: spec.min,
              max: spec.max,
              'data-testid': TESTIDS[k] ?? `${k}-input`,
            });
      inputs[k as keyof RunSettings] = input;
      advanced.append(h('label', { for: id }, LABELS[k] ?? k), input);
    }
  };
  backbone.addEventListener('change', fillMethods);
  method.addEventListener('change', fillSettings);
  fillMethods();
  const form = h(
    'form',
    { 'data-testid': 'train-form' },
    h('div', { class: 'row' }, h('label', { for: 'backbone' }, 'Backbone'), backbone, custom),
    h('div', { class: 'row' }, h('label', { for: 'method' }, 'Method'), method),
    about,
    h(
      'details',
      { class: 'panel', 'data-testid': 'advanced-panel' },
      h('summary', { 'data-testid': 'advanced-toggle' }, 'Advanced'),
      advanced,
    ),
    h(
      'div',
      { class: 'row' },
      h('button', { type: 'submit', id: 'train-button', class: 'primary', 'data-testid': 'train-button' }, 'Train'),
      h(
        'button',
        {
          type: 'button',
          id: 'cancel-button',
          class: 'danger',
          hidden: true,
          'data-testid': 'cancel-button',
          onclick: guarded(async () => {
            if (!state.run) return;
            state.run = await api<Run>('POST', `/api/runs/${state.run.id}/cancel`);
            renderRun();
          }),
        },
        'Cancel',
      ),
      h(
        'button',
        {
          type: 'button',
          id: 'resume-button',
          hidden: true,
          'data-testid': 'resume-button',
          onclick: guarded(async () => {
            if (!state.run) return;
            const r = await api<{ run: Run; resumedFrom: string }>('POST', `/api/runs/${state.run.id}/resume`);
            notify(`Resumed from ${r.resumedFrom === 'checkpoint' ? 'the last checkpoint' : 'the start'}.`);
            state.run = r.run;
            renderRun();
            follow(r.run.id);
          }),
        },
        'Resume',
      ),
    ),
  );
  form.addEventListener(
    'submit',
    guarded(async (ev: Event) => {
      ev.preventDefault();
      const settings: RunSettings = {};
      for (const [k, input] of Object.entries(inputs)) {
        if (!input) continue;
        if (input.type === 'checkbox') (settings as Record<string, unknown>)[k] = input.checked;
        else if (input.value !== '') {
          const v = Number(input.value);
          if (!Number.isFinite(v)) throw new Error(`${LABELS[k] ?? k}: not a number`);
          (settings as Record<string, unknown>)[k] = v;
        }
      }
      const folder = custom.value.trim();
      const run = await api<Run>('POST', `/api/projects/${p.id}/runs`, {
        backbone: folder ? `folder:${folder}` : backbone.value,
        method: method.value,
        settings,
      });
      state.runs.unshift(run);
      state.run = run;
      state.inPage = null;
      renderRun();
      follow(run.id);
    }),
  );
  fill($('train'), h('h3', {}, '2. Train'), form, h('div', { id: 'run-view', 'data-testid': 'run-view' }));
}

function closeEvents(): void {
  state.events?.close();
  state.events = null;
}

/** Follow a run live (Server-Sent Events; polling when the stream fails) until it ends. */
function follow(rid: string): void {
  closeEvents();
  let polling = false;
  const ended = (): void => {
    closeEvents();
    void refreshProject();
    void api<{ runs: Run[] }>('GET', `/api/projects/${state.project!.id}/runs`).then((r) => {
      state.runs = r.runs;
      renderRunPicker();
    });
  };
  const poll = async (): Promise<void> => {
    if (polling) return;
    polling = true;
    while (state.run?.id === rid && !TERMINAL.has(state.run.status)) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        state.run = await api<Run>('GET', `/api/runs/${rid}`);
        renderRun();
      } catch {
        /* keep polling */
      }
    }
    if (state.run?.id === rid) ended();
  };
  if (typeof EventSource === 'undefined') return void poll();
  const es = new EventSource(withToken(`/api/runs/${rid}/events`));
  state.events = es;
  const mine = (): boolean => state.run?.id === rid;
  es.addEventListener('run', (ev) => {
    if (!mine()) return;
    state.run = JSON.parse((ev as MessageEvent).data) as Run;
    renderRun();
    if (TERMINAL.has(state.run.status)) ended();
  });
  es.addEventListener('progress', (ev) => {
    if (!mine() || !state.run) return;
    const d = JSON.parse((ev as MessageEvent).data) as {
      phase: string;
      fraction: number;
      etaSeconds: number | null;
      message?: string;
    };
    Object.assign(state.run, {
      phase: d.phase,
      fraction: d.fraction,
      etaSeconds: d.etaSeconds,
      status: state.run.status === 'queued' ? 'running' : state.run.status,
    });
    renderProgress(d.message);
  });
  es.addEventListener('epoch', (ev) => {
    if (!mine() || !state.run) return;
    const m = JSON.parse((ev as MessageEvent).data) as EpochMetric;
    state.run.metrics = [...(state.run.metrics ?? []).filter((x) => x.epoch !== m.epoch), m];
    renderCurves();
  });
  es.addEventListener('log', (ev) => {
    if (!mine()) return;
    const d = JSON.parse((ev as MessageEvent).data) as { message: string };
    const log = document.getElementById('run-log');
    if (log) log.textContent = d.message;
  });
  es.onerror = () => {
    // The server closes the stream when the run ends; otherwise fall back to polling.
    if (es.readyState === EventSource.CLOSED || (state.run && TERMINAL.has(state.run.status))) {
      closeEvents();
      if (mine() && state.run && !TERMINAL.has(state.run.status)) void poll();
    }
  };
}

function renderRunPicker(): void {
  const host = document.getElementById('run-picker');
  if (!host) return;
  const select = h(
    'select',
    { id: 'run-select', 'data-testid': 'run-select' },
    state.runs.map((r) =>
      h(
        'option',
        { value: r.id, selected: r.id === state.run?.id },
        `${r.id} · ${r.method} · ${r.status}${r.evaluation ? ` · ${pct(r.evaluation.accuracy)}` : ''}`,
      ),
    ),
  );
  select.addEventListener(
    'change',
    guarded(async () => {
      state.run = await api<Run>('GET', `/api/runs/${select.value}`);
      state.inPage = null;
      renderRun();
      if (!TERMINAL.has(state.run.status)) follow(state.run.id);
    }),
  );
  fill(host, state.runs.length > 1 ? [h('label', { for: 'run-select' }, 'Run'), select] : null);
}

function renderRun(): void {
  const view = document.getElementById('run-view');
  if (!view) return;
  const r = state.run;
  const running = !!r && !TERMINAL.has(r.status);
  ($('cancel-button') as HTMLButtonElement).hidden = !running;
  ($('resume-button') as HTMLButtonElement).hidden = !(
    r &&
    r.resumable &&
    ['interrupted', 'cancelled', 'failed'].includes(r.status)
  );
  ($('train-button') as HTMLButtonElement).disabled = running;
  if (!r) {
    fill(view, h('p', { class: 'muted' }, 'No run yet: add at least two classes with examples, then press Train.'));
    renderEvaluation();
    renderTry();
    renderExport();
    return;
  }
  fill(
    view,
    h('div', { id: 'run-picker', class: 'row' }),
    h(
      'p',
      {},
      'Status: ',
      h('strong', { 'data-testid': 'run-status', 'data-status': r.status }, r.status),
      r.status === 'queued' && r.queuePosition !== null
        ? h('span', { 'data-testid': 'queue-position' }, ` (position ${r.queuePosition + 1} in the queue)`)
        : null,
      r.resumable && r.status === 'interrupted'
        ? h(
            'span',
            { class: 'muted' },
            ` — can resume from ${r.resumable === 'checkpoint' ? 'its last checkpoint' : 'the start'}`,
          )
        : null,
    ),
    r.error ? h('p', { class: 'message error', role: 'alert', 'data-testid': 'run-error' }, r.error) : null,
    h(
      'div',
      { class: 'progress-row' },
      h('label', { for: 'run-progress' }, h('span', { id: 'run-phase', 'data-testid': 'progress-phase' })),
      h('progress', { id: 'run-progress', max: 1, value: r.fraction, 'data-testid': 'progress-bar' }),
      h('span', { id: 'run-eta', class: 'muted', 'data-testid': 'progress-eta' }),
    ),
    h('p', { id: 'run-log', class: 'muted small', 'data-testid': 'run-log' }),
    h('div', { id: 'curves', class: 'curves' }),
  );
  renderRunPicker();
  renderProgress();
  renderCurves();
  renderEvaluation();
  renderTry();
  renderExport();
}

function renderProgress(message?: string): void {
  const r = state.run;
  if (!r) return;
  const bar = document.getElementById('run-progress') as HTMLProgressElement | null;
  if (bar) bar.value = r.status === 'done' ? 1 : r.fraction;
  const phase = document.getElementById('run-phase');
  if (phase)
    phase.textContent = `${r.status === 'done' ? 'done' : r.phase} ${pct(r.status === 'done' ? 1 : r.fraction, 0)}`;
  const eta = document.getElementById('run-eta');
  if (eta) eta.textContent = TERMINAL.has(r.status) ? '' : formatSeconds(r.etaSeconds);
  if (message) {
    const log = document.getElementById('run-log');
    if (log) log.textContent = message;
  }
}

function renderCurves(): void {
  const host = document.getElementById('curves');
  const r = state.run;
  if (!host || !r) return;
  const ms = [...(r.metrics ?? [])].sort((a, b) => a.epoch - b.epoch);
  if (!ms.length) {
    fill(host);
    return;
  }
  const losses = ms.filter((m) => typeof m.loss === 'number' && Number.isFinite(m.loss));
  fill(
    host,
    losses.length
      ? lineChart(
          'Loss',
          [{ name: 'training loss', points: losses.map((m) => [m.epoch, m.loss]), className: 's1' }],
          'loss-chart',
        )
      : null,
    lineChart(
      'Accuracy',
      [
        {
          name: 'training',
          points: ms.filter((m) => m.accuracy !== null).map((m) => [m.epoch, m.accuracy!]),
          className: 's1',
        },
        {
          name: 'held-out',
          points: ms.filter((m) => m.valAccuracy !== null).map((m) => [m.epoch, m.valAccuracy!]),
          className: 's2',
        },
      ],
      'accuracy-chart',
      [0, 1],
    ),
  );
}

// ---------------------------------------------------------------- evaluation

function renderEvaluation(): void {
  const section = $('evaluation');
  const e: Evaluation | null | undefined = state.run?.status === 'done' ? state.run.evaluation : null;
  section.hidden = !e;
  if (!e) {
    fill(section);
    return;
  }
  const max = Math.max(1, ...e.confusion.flat());
  fill(
    section,
    h('h3', {}, '3. How good is it?'),
    h(
      'p',
      { class: 'big' },
      'Accuracy on ',
      String(e.heldOut),
      ' held-out examples: ',
      h('strong', { 'data-testid': 'eval-accuracy', 'data-value': e.accuracy }, pct(e.accuracy)),
      h('span', { class: 'muted' }, ` (trained on ${e.trained})`),
    ),
    h(
      'div',
      { class: 'two' },
      h(
        'table',
        { 'data-testid': 'perclass-table' },
        h('caption', {}, 'Per class'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, 'Class'),
            h('th', { scope: 'col' }, 'Precision'),
            h('th', { scope: 'col' }, 'Recall'),
            h('th', { scope: 'col' }, 'Examples'),
          ),
        ),
        h(
          'tbody',
          {},
          e.perClass.map((c) =>
            h(
              'tr',
              { 'data-testid': 'perclass-row', 'data-class': c.class },
              h('th', { scope: 'row' }, c.class),
              h('td', { 'data-precision': c.precision }, pct(c.precision)),
              h('td', { 'data-recall': c.recall }, pct(c.recall)),
              h('td', {}, String(c.support)),
            ),
          ),
        ),
      ),
      h(
        'table',
        { class: 'confusion', 'data-testid': 'confusion-matrix' },
        h('caption', {}, 'Confusion matrix (rows: true class, columns: predicted)'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, ''),
            e.classes.map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          {},
          e.confusion.map((row, i) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, e.classes[i] ?? String(i)),
              row.map((n, j) =>
                h(
                  'td',
                  {
                    'data-testid': 'confusion-cell',
                    'data-true': i,
                    'data-pred': j,
                    'data-count': n,
                    class: i === j ? 'diag' : '',
                    style: `--w:${(n / max).toFixed(3)}`,
                  },
                  String(n),
                ),
              ),
            ),
          ),
        ),
      ),
    ),
    h(
      'h4',
      {},
      e.misclassified.length
        ? `Misclassified held-out examples (${e.misclassified.length})`
        : 'No held-out example was misclassified.',
    ),
    h(
      'div',
      { class: 'thumbs wide', 'data-testid': 'misclassified-list' },
      e.misclassified.map((m) =>
        h(
          'figure',
          {
            class: 'mis',
            'data-testid': 'misclassified-item',
            'data-true': m.trueClass,
            'data-pred': m.predictedClass,
          },
          m.thumbUrl
            ? h('img', {
                src: withToken(m.thumbUrl),
                alt: `a ${m.trueClass} predicted as ${m.predictedClass}`,
                width: 80,
                height: 80,
              })
            : h('blockquote', {}, m.text ?? ''),
          h('figcaption', {}, `${m.trueClass} → `, h('strong', {}, m.predictedClass), ` (${pct(m.probability, 0)})`),
          h(
            'button',
            {
              type: 'button',
              class: 'small',
              'data-testid': 'misclassified-explain-button',
              onclick: guarded(async (ev: Event) => {
                const fig = (ev.currentTarget as HTMLElement).closest('figure')!;
                const x = await api<Explanation>('POST', `/api/runs/${state.run!.id}/explain`, {
                  exampleId: m.exampleId,
                });
                fig.querySelector('.explain')?.remove();
                fig.append(explanationView(x));
              }),
            },
            'Why?',
          ),
        ),
      ),
    ),
  );
}

function explanationView(x: Explanation): HTMLElement {
  if (x.overlayUrl)
    return h(
      'div',
      { class: 'explain' },
      h('img', {
        src: x.overlayUrl,
        alt: `Grad-CAM heatmap for ${x.label}`,
        'data-testid': 'gradcam-overlay',
        width: 160,
        height: 160,
      }),
      h('p', { class: 'muted small' }, `Where the model looked for “${x.label}” (Grad-CAM)`),
    );
  const max = Math.max(1e-9, ...(x.tokens ?? []).map((t) => Math.abs(t.score)));
  return h(
    'p',
    { class: 'explain tokens', 'data-testid': 'token-attributions' },
    (x.tokens ?? []).map((t) =>
      h(
        'span',
        {
          class: t.score >= 0 ? 'pos' : 'neg',
          style: `--a:${(Math.abs(t.score) / max).toFixed(3)}`,
          title: t.score.toFixed(4),
          'data-score': t.score,
        },
        t.token,
        ' ',
      ),
    ),
  );
}

// ---------------------------------------------------------------- try

function predictUrl(r: Run): string {
  // every class's probability (graft serve answers the top 5 unless asked for more)
  return r.modelName
    ? `/v1/models/${encodeURIComponent(r.modelName)}/predict?top=1000`
    : `/api/runs/${r.id}/predict?top=1000`;
}

/** The first prediction of a predict answer, as a sorted [label, probability] list. */
function ranked(answer: unknown): [string, number][] {
  const a = answer as { predictions?: Prediction[] } & Partial<Prediction>;
  const p = a.predictions?.[0] ?? (a as Prediction);
  const probs = p.probabilities ?? Object.fromEntries((p.top ?? []).map((t) => [t.label, t.probability]));
  return Object.entries(probs).sort((x, y) => y[1] - x[1]);
}

function resultsView(rows: [string, number][], testid: string, caption: string): HTMLElement {
  return h(
    'table',
    { class: 'results', 'data-testid': testid },
    h('caption', {}, caption),
    h(
      'tbody',
      {},
      rows
        .slice(0, 5)
        .map(([label, p], i) =>
          h(
            'tr',
            { 'data-testid': `${testid}-row`, 'data-label': label, 'data-probability': p, class: i === 0 ? 'top' : '' },
            h('th', { scope: 'row' }, label),
            h('td', {}, h('span', { class: 'bar', style: `--w:${p.toFixed(4)}` })),
            h('td', {}, pct(p, 2)),
          ),
        ),
    ),
  );
}

function renderTry(): void {
  const section = $('try');
  const r = state.run;
  const ready = r?.status === 'done';
  section.hidden = !ready;
  if (!ready || !r) {
    fill(section);
    return;
  }
  const out = h('div', { class: 'try-out', 'data-testid': 'try-output', 'aria-live': 'polite' });
  if (state.project!.kind === 'text') {
    const ta = h('textarea', {
      id: 'try-text',
      rows: 3,
      placeholder: 'Type a sentence to classify',
      'data-testid': 'try-text-input',
    });
    const form = h(
      'form',
      {},
      h('label', { for: 'try-text' }, 'Text'),
      ta,
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'try-text-button' }, 'Classify'),
    );
    form.addEventListener(
      'submit',
      guarded(async (ev: Event) => {
        ev.preventDefault();
        const text = ta.value.trim();
        if (!text) throw new Error('Type some text first.');
        fill(out, h('p', { class: 'muted' }, 'Classifying…'));
        let pred: unknown, why: Explanation | Error;
        try {
          [pred, why] = await Promise.all([
            api<unknown>('POST', predictUrl(r), { texts: [text] }),
            api<Explanation>('POST', `/api/runs/${r.id}/explain`, { text }).catch((e: unknown) => e as Error),
          ]);
        } catch (e) {
          fill(
            out,
            h(
              'p',
              { class: 'message error', role: 'alert', 'data-testid': 'try-error' },
              `Could not classify the text: ${(e as Error).message}`,
            ),
          );
          return;
        }
        fill(
          out,
          resultsView(ranked(pred), 'try-results', 'Server prediction'),
          why instanceof Error
            ? h('p', { class: 'muted' }, `No explanation: ${why.message}`)
            : [h('h4', {}, 'Which words pushed it there'), explanationView(why)],
        );
      }),
    );
    fill(section, h('h3', {}, '4. Try it'), form, out);
    return;
  }
  const file = h('input', { type: 'file', id: 'try-file', accept: 'image/*', 'data-testid': 'try-file-input' });
  const inPage = h('input', {
    type: 'checkbox',
    id: 'try-in-page',
    checked: true,
    'data-testid': 'try-in-page-checkbox',
  });
  const video = h('video', {
    id: 'try-video',
    autoplay: true,
    muted: true,
    playsinline: true,
    width: 200,
    height: 150,
    hidden: true,
  });
  const cam = h(
    'button',
    {
      type: 'button',
      'data-testid': 'try-webcam-button',
      onclick: guarded(async () => {
        if (!state.webcam) {
          await startWebcam(video);
          video.hidden = false;
          cam.textContent = 'Classify the webcam frame';
          return;
        }
        await tryImage(r, new File([await webcamFrame()], 'webcam.jpg', { type: 'image/jpeg' }), inPage.checked, out);
      }),
    },
    'Use the webcam',
  );
  file.addEventListener(
    'change',
    guarded(async () => {
      const f = file.files?.[0];
      if (f) await tryImage(r, f, inPage.checked, out);
    }),
  );
  fill(
    section,
    h('h3', {}, '4. Try it'),
    h('div', { class: 'row' }, h('label', { for: 'try-file' }, 'Image'), file, cam),
    h(
      'div',
      { class: 'row' },
      inPage,
      h('label', { for: 'try-in-page' }, 'Also run the exported ONNX in this page (onnxruntime-web, WASM) and compare'),
    ),
    video,
    out,
  );
}

async function tryImage(r: Run, f: File, alsoInPage: boolean, out: HTMLElement): Promise<void> {
  fill(out, h('p', { class: 'muted' }, 'Classifying…'));
  const url = URL.createObjectURL(f);
  const form = new FormData();
  form.append('file', f, f.name);
  // the Grad-CAM heatmap takes longer than the prediction: it is shown when it arrives
  const why = api<Explanation>('POST', `/api/runs/${r.id}/explain`, form);
  let pred: unknown;
  try {
    pred = await api<unknown>('POST', predictUrl(r), f.type ? f : form);
  } catch (e) {
    why.catch(() => undefined);
    fill(
      out,
      h(
        'p',
        { class: 'message error', role: 'alert', 'data-testid': 'try-error' },
        `Could not classify ${f.name}: ${(e as Error).message}`,
      ),
    );
    return;
  }
  const explainBox = h(
    'div',
    { class: 'explain-box', 'data-testid': 'try-explanation' },
    h('p', { class: 'muted small' }, 'Computing the Grad-CAM heatmap…'),
  );
  fill(
    out,
    h(
      'div',
      { class: 'two' },
      h(
        'figure',
        {},
        h('img', { src: url, alt: 'the image tried', 'data-testid': 'try-image', width: 160 }),
        h('figcaption', {}, f.name),
      ),
      resultsView(ranked(pred), 'try-results', 'Server prediction'),
      explainBox,
    ),
    h('div', { id: 'in-page-out', 'data-testid': 'in-page-output' }),
  );
  why.then(
    (x) => fill(explainBox, explanationView(x)),
    (e: unknown) =>
      fill(
        explainBox,
        h('p', { class: 'muted', 'data-testid': 'gradcam-unavailable' }, `No Grad-CAM: ${(e as Error).message}`),
      ),
  );
  if (alsoInPage) await compareInPage(r, f, $('in-page-out'));
}

/**
 * Run the exported ONNX in the page on the image fitted to the model's input size, send those same
 * pixels (as PNG) to the server, and show both answers with their largest difference.
 */
async function compareInPage(r: Run, f: File, out: HTMLElement): Promise<void> {
  fill(out, h('p', { class: 'muted' }, 'Loading the model into the page…'));
  if (state.inPage?.runId !== r.id)
    state.inPage = {
      runId: r.id,
      model: fetchBytes(withToken(`/api/runs/${r.id}/export/model.onnx`)).then(loadInPageModel),
    };
  let model: InPageModel;
  try {
    model = await state.inPage.model;
  } catch (e) {
    state.inPage = null;
    fill(
      out,
      h(
        'p',
        { class: 'message error', 'data-testid': 'in-page-error' },
        `Cannot run the model in the page: ${(e as Error).message}`,
      ),
    );
    return;
  }
  const { canvas, pixels } = await fitImage(f, model.preprocess);
  const png = await new Promise<Blob>((res, rej) =>
    canvas.toBlob((b) => (b ? res(b) : rej(new Error('could not encode the fitted image'))), 'image/png'),
  );
  const t0 = performance.now();
  const local = await model.run(pixels);
  const ms = performance.now() - t0;
  const server = Object.fromEntries(ranked(await api<unknown>('POST', predictUrl(r), png)));
  const diff = Math.max(...model.labels.map((l) => Math.abs((local[l] ?? NaN) - (server[l] ?? NaN))));
  const agree = diff <= 1e-4;
  fill(
    out,
    h('h4', {}, `In the page: the same ${model.preprocess.width}×${model.preprocess.height} image on both sides`),
    h(
      'div',
      { class: 'two' },
      resultsView(
        Object.entries(local).sort((a, b) => b[1] - a[1]),
        'in-page-results',
        `onnxruntime-web in this page (${ms.toFixed(0)} ms)`,
      ),
      resultsView(
        Object.entries(server).sort((a, b) => b[1] - a[1]),
        'server-same-results',
        'Server on the same pixels',
      ),
    ),
    h(
      'p',
      {
        class: agree ? 'message info' : 'message error',
        'data-testid': 'in-page-diff',
        'data-max-diff': diff,
        'data-agree': String(agree),
      },
      `Largest probability difference: ${diff.toExponential(2)} (${agree ? 'agree within 1e-4' : 'DIFFER by more than 1e-4'})`,
    ),
  );
}

// ---------------------------------------------------------------- export

function renderExport(): void {
  const section = $('export');
  const r = state.run;
  section.hidden = r?.status !== 'done';
  if (!r || r.status !== 'done') {
    fill(section);
    return;
  }
  const node = h('pre', { 'data-testid': 'snippet-node' }, h('code', {}, 'loading…'));
  const web = h('pre', { 'data-testid': 'snippet-browser' }, h('code', {}, 'loading…'));
  fill(
    section,
    h('h3', {}, '5. Export'),
    h(
      'p',
      { class: 'row' },
      h(
        'a',
        {
          class: 'button',
          href: withToken(`/api/runs/${r.id}/export/model.onnx`),
          download: `${state.project!.name}-${r.id}.onnx`,
          'data-testid': 'export-onnx-link',
        },
        'Download ONNX model',
      ),
      h(
        'a',
        {
          class: 'button',
          href: withToken(`/api/runs/${r.id}/export/classifier.zip`),
          download: `${state.project!.name}-${r.id}.zip`,
          'data-testid': 'export-zip-link',
        },
        'Download classifier folder (.zip)',
      ),
    ),
    h('h4', {}, 'From Node (onnxruntime-node)'),
    node,
    h('h4', {}, 'In a browser (onnxruntime-web)'),
    web,
  );
  api<{ node: string; browser: string }>('GET', `/api/runs/${r.id}/export/snippet`).then(
    (s) => {
      fill(node, h('code', {}, s.node));
      fill(web, h('code', {}, s.browser));
    },
    (e: unknown) => {
      fill(node, h('code', {}, `(no snippet: ${(e as Error).message})`));
      fill(web);
    },
  );
}

// ---------------------------------------------------------------- start

async function route(): Promise<void> {
  const m = /^#\/p\/([a-z0-9]{1,32})$/.exec(location.hash);
  if (m) await openProject(m[1]!);
  else {
    closeEvents();
    state.project = null;
    $('project').hidden = true;
    $('welcome').hidden = false;
    renderProjectList();
  }
}

async function start(): Promise<void> {
  setupCreateProject();
  window.addEventListener('hashchange', guarded(route));
  try {
    await loadProjects();
  } catch (e) {
    notify(
      e instanceof ApiError && e.status === 401
        ? 'This server needs a token: open the address with ?token=… as printed by graft studio.'
        : (e as Error).message,
      'error',
    );
    return;
  }
  try {
    await route();
  } finally {
    document.body.dataset['ready'] = '1';
  }
}

guarded(start)();
