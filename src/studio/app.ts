/**
 * Graft Studio's server: `createStudio` builds the Fastify app (src/server/app.ts createServer: loopback,
 * token, limits, same-origin, JSON errors) with Studio's JSON API under /api (src/studio/API.md), the
 * prediction routes of `graft serve` over a registry holding each finished run as `run-<id>`, and the
 * built browser app (src/studio/ui) as static files. State: src/studio/db.ts + blobs.ts (one server per
 * data folder: src/studio/lock.ts); training: src/studio/runner.ts. Bounds: queued runs, uploads and
 * explanations in progress and open event streams are counted, and a request over a bound gets 503.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { basename, extname, isAbsolute, join, resolve } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import { zipSync } from 'fflate';
import { createServer, predictRoutes, HttpError } from '../server/app.js';
import { ModelRegistry, type ServedModel } from '../server/registry.js';
import { StudioDb, ID_PATTERN, type ProjectRow, type RunRow, type ExampleRow, type ProjectKind } from './db.js';
import { BlobStore, NotAnImage, type StoredImage } from './blobs.js';
import { lockDataDir } from './lock.js';
import { Runner, type RunEvent, type RunSnapshot } from './runner.js';
import { listBackbones, listMethods, resolveBackbone } from './backbones.js';
import { classifierDir, METHODS, DEFAULTS, type JobSettings } from './job.js';
import { readTextTable } from '../data/text-table.js';
import { IMAGE_EXTENSIONS } from '../data/image-folder.js';
import { getPreprocess } from '../formats/preprocess.js';
import { readOnnx } from '../formats/onnx.js';
import { upgradeOpset } from '../graph/rewrites.js';
import { GraftError } from '../util/errors.js';

export interface StudioOptions {
  /** The data folder (default GRAFT_STUDIO_DIR, else ~/.graft/studio). */
  dataDir?: string;
  host?: string;
  token?: string;
  /** The built browser app's folder; null serves no UI (API only). Default: src/studio/ui's studioUiDir(). */
  uiDir?: string | null;
  /** Trainings at once (default 1). */
  concurrency?: number;
  /** Largest uploaded file, MiB (default 10). */
  maxFileMb?: number;
  /** Most files per upload request (default 200). */
  maxFiles?: number;
  /** Most runs waiting in the queue; one more is refused with 503 (default 50). */
  maxQueuedRuns?: number;
  /** Most upload or import requests at once; one more is refused with 503 (default 4). */
  maxUploads?: number;
  /** Most explanations computed at once; one more is refused with 503 (default 2). */
  maxExplains?: number;
  /** Most open event streams (GET /api/runs/:id/events); one more is refused with 503 (default 64). */
  maxStreams?: number;
}

export interface Studio {
  app: FastifyInstance;
  db: StudioDb;
  runner: Runner;
  registry: ModelRegistry;
  dataDir: string;
  /** Every route the app has (method and URL pattern), as registered: for checks and documentation. */
  routes: { method: string; url: string }[];
  close(): Promise<void>;
}

export function defaultDataDir(): string {
  return resolve(process.env['GRAFT_STUDIO_DIR'] ?? join(homedir(), '.graft', 'studio'));
}

const id = { type: 'string', pattern: ID_PATTERN, maxLength: 32 } as const;
const name = { type: 'string', minLength: 1, maxLength: 100, pattern: '\\S' } as const;
const pidParams = { type: 'object', properties: { pid: id }, required: ['pid'] } as const;
const ridParams = { type: 'object', properties: { rid: id }, required: ['rid'] } as const;
const settingsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    epochs: { type: 'integer', minimum: 1, maximum: 200 },
    learningRate: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    augment: { type: 'boolean' },
    holdout: { type: 'number', minimum: 0.05, maximum: 0.5 },
    batchSize: { type: 'integer', minimum: 1, maximum: 512 },
    topBlocks: { type: 'integer', minimum: 1, maximum: 10 },
    loraRank: { type: 'integer', minimum: 1, maximum: 64 },
    seed: { type: 'integer', minimum: 0, maximum: 2147483647 },
  },
} as const;

const notFound = (what: string, v: string) => new HttpError(404, `${what} '${v}' not found`);

/** A bound on work in progress: `enter()` returns the release function, or throws 503 when `max` are in. */
function gate(what: string, max: number): () => () => void {
  let n = 0;
  return () => {
    if (n >= max)
      throw new HttpError(
        503,
        `${what}: ${max} already in progress; try again shortly`,
        'the server refuses more at once rather than run out of memory',
      );
    n++;
    let out = false;
    return () => {
      if (!out) {
        out = true;
        n--;
      }
    };
  };
}

/**
 * Start Graft Studio on a data folder: takes the folder's lock (a second server on the same folder is
 * refused, naming the pid holding it), opens the database, sweeps files nothing references, and builds
 * the app. `close()` stops trainings, closes the database and releases the lock.
 */
export async function createStudio(o: StudioOptions = {}): Promise<Studio> {
  const dataDir = resolve(o.dataDir ?? defaultDataDir());
  const lock = lockDataDir(dataDir);
  let db: StudioDb | undefined;
  try {
    db = new StudioDb(dataDir);
    return await buildStudio(o, dataDir, db, lock.release);
  } catch (e) {
    db?.close();
    lock.release();
    throw e;
  }
}

async function buildStudio(o: StudioOptions, dataDir: string, db: StudioDb, unlock: () => void): Promise<Studio> {
  const blobs = new BlobStore(dataDir);
  // files a crash left behind: records nothing references, then bytes without a record
  db.dropUnreferencedFiles();
  blobs.sweep(db.fileShas());
  /** After deletes: drop the records of these files that nothing references any more, then their bytes. */
  const collect = (shas: Iterable<string>) => {
    for (const s of db.dropUnreferencedFiles([...shas], (x) => blobs.isPinned(x))) blobs.remove(s);
  };
  /** An upload is over (stored or refused): its blobs are unpinned, and those it did not record go. */
  const settle = (pinned: string[]) => {
    for (const s of pinned) blobs.unpin(s);
    collect(pinned);
  };
  const maxQueued = o.maxQueuedRuns ?? 50;
  const uploadGate = gate('uploads', o.maxUploads ?? 4);
  const explainGate = gate('explanations', o.maxExplains ?? 2);
  const streamGate = gate('event streams', o.maxStreams ?? 64);
  const queueRoom = () => {
    const n = db.runsWithStatus('queued').length;
    if (n >= maxQueued)
      throw new HttpError(
        503,
        `the training queue is full (${n} runs waiting)`,
        'wait for queued runs to finish, or cancel some',
      );
  };
  const registry = new ModelRegistry({ batching: { maxBatch: 16, maxDelayMs: 2 } });
  const maxFile = Math.floor((o.maxFileMb ?? 10) * 1024 * 1024);
  const maxFiles = o.maxFiles ?? 200;
  const app = await createServer({
    ...(o.host ? { host: o.host } : {}),
    ...(o.token ? { token: o.token } : {}),
    bodyLimitMb: 32,
    maxInputs: 64,
    title: 'Graft Studio',
  });
  const routes: { method: string; url: string }[] = [];
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) routes.push({ method: m, url: r.url });
  });

  // A browser cannot put a bearer token on <img src>, EventSource or a download link: on GET/HEAD a
  // `?token=` in the URL counts as the Authorization header (never for state changes, which the page sends with the header).
  if (o.token) {
    app.server.prependListener('request', (req) => {
      if ((req.method !== 'GET' && req.method !== 'HEAD') || req.headers.authorization || !req.url?.includes('token='))
        return;
      const t = new URL(req.url, 'http://x').searchParams.get('token');
      if (t) req.headers.authorization = `Bearer ${t}`;
    });
  }

  const runner = new Runner(db, blobs, {
    dataDir,
    ...(o.concurrency ? { concurrency: o.concurrency } : {}),
    onFinished: (run) => {
      collect(db.releaseRunFiles(run.id));
      void ensureServed(run.id).catch(() => {
        /* loaded on first use instead */
      });
    },
  });

  /** Load a finished run's classifier into the registry (once: concurrent requests share one load). */
  const loading = new Map<string, Promise<ServedModel>>();
  async function ensureServed(rid: string): Promise<ServedModel> {
    const nm = `run-${rid}`;
    if (registry.has(nm)) return registry.get(nm);
    const run = db.run(rid);
    if (!run || run.status !== 'done')
      throw new HttpError(409, `run '${rid}' has no trained classifier (status ${run?.status ?? 'missing'})`);
    let p = loading.get(nm);
    if (!p) {
      p = registry
        .add(nm, classifierDir(runner.runDir(rid)))
        .then(() => registry.get(nm))
        .finally(() => loading.delete(nm));
      loading.set(nm, p);
    }
    return p;
  }

  // The predict routes of graft serve: a finished run is loaded on its first request.
  app.addHook('onRequest', async (req) => {
    const m = /^\/v1\/models\/run-([a-z][a-z0-9]{1,31})(\/|$|\?)/.exec(req.url);
    if (m && !registry.has(`run-${m[1]}`) && db.run(m[1]!)?.status === 'done') await ensureServed(m[1]!);
  });
  await app.register(predictRoutes, { registry });

  // ---- JSON views
  const exampleView = (e: ExampleRow) => {
    if (e.sha256) {
      const f = db.file(e.sha256);
      return {
        id: e.id,
        classId: e.class_id,
        createdAt: e.created_at,
        imageUrl: `/api/blobs/${e.sha256}`,
        thumbUrl: `/api/blobs/${e.sha256}/thumb`,
        ...(f?.width ? { width: f.width, height: f.height } : {}),
      };
    }
    return { id: e.id, classId: e.class_id, createdAt: e.created_at, text: e.text ?? '' };
  };
  const projectView = (p: ProjectRow) => {
    const counts = db.classCounts(p.id);
    const classes = db.classes(p.id).map((c) => ({ id: c.id, name: c.name, count: counts.get(c.id) ?? 0 }));
    const last = db.runs(p.id)[0];
    return {
      id: p.id,
      name: p.name,
      kind: p.kind,
      createdAt: p.created_at,
      updatedAt: p.updated_at,
      classes,
      exampleCount: classes.reduce((a, c) => a + c.count, 0),
      lastRunId: last?.id ?? null,
    };
  };
  const runView = (r: RunRow) => {
    const ev = r.evaluation ? (JSON.parse(r.evaluation) as { misclassified: { exampleId: string }[] }) : null;
    if (ev) {
      ev.misclassified = ev.misclassified.map((m) => {
        const e = db.example(m.exampleId);
        return {
          ...m,
          ...(e?.sha256 ? { thumbUrl: `/api/blobs/${e.sha256}/thumb`, imageUrl: `/api/blobs/${e.sha256}` } : {}),
          ...(e?.text != null ? { text: e.text } : {}),
        };
      });
    }
    return {
      id: r.id,
      projectId: r.project_id,
      status: r.status,
      backbone: r.backbone,
      method: r.method,
      settings: JSON.parse(r.settings) as JobSettings,
      createdAt: r.created_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      phase: r.phase,
      fraction: r.fraction,
      etaSeconds: r.eta_seconds,
      queuePosition: r.status === 'queued' ? runner.queuePosition(r.id) : null,
      error: r.error,
      resumable: r.resumable,
      metrics: db
        .metrics(r.id)
        .map((m) => ({ epoch: m.epoch, loss: m.loss, accuracy: m.accuracy, valAccuracy: m.val_accuracy })),
      evaluation: ev,
      modelName: r.status === 'done' ? `run-${r.id}` : null,
    };
  };
  const getProject = (pid: string) =>
    db.project(pid) ??
    (() => {
      throw notFound('project', pid);
    })();
  const getRun = (rid: string) =>
    db.run(rid) ??
    (() => {
      throw notFound('run', rid);
    })();
  const getClass = (pid: string, cid: string) => {
    const c = db.class(cid);
    if (!c || c.project_id !== pid) throw notFound('class', cid);
    return c;
  };

  await app.register(
    async (api) => {
      await api.register(multipart, {
        limits: {
          fileSize: maxFile,
          files: maxFiles,
          fields: 16,
          fieldSize: 4096,
          parts: maxFiles + 16,
          headerPairs: 64,
        },
        throwFileSizeLimit: true,
      });

      api.get('/health', async () => ({ ok: true, version: 1 }));

      // projects
      api.get('/projects', async () => ({ projects: db.projects().map(projectView) }));
      api.post<{ Body: { name: string; kind: ProjectKind } }>(
        '/projects',
        {
          schema: {
            body: {
              type: 'object',
              additionalProperties: false,
              required: ['name', 'kind'],
              properties: { name, kind: { type: 'string', enum: ['image', 'text'] } },
            },
          },
        },
        async (req, reply) => reply.code(201).send(projectView(db.createProject(req.body.name.trim(), req.body.kind))),
      );
      api.get<{ Params: { pid: string } }>('/projects/:pid', { schema: { params: pidParams } }, async (req) =>
        projectView(getProject(req.params.pid)),
      );
      api.patch<{ Params: { pid: string }; Body: { name: string } }>(
        '/projects/:pid',
        {
          schema: {
            params: pidParams,
            body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name } },
          },
        },
        async (req) => {
          getProject(req.params.pid);
          db.renameProject(req.params.pid, req.body.name.trim());
          return projectView(getProject(req.params.pid));
        },
      );
      api.delete<{ Params: { pid: string } }>(
        '/projects/:pid',
        { schema: { params: pidParams } },
        async (req, reply) => {
          getProject(req.params.pid);
          for (const r of db.runs(req.params.pid)) {
            if (runner.isActive(r.id))
              throw new HttpError(409, `run '${r.id}' of this project is training; cancel it first`);
          }
          for (const r of db.runs(req.params.pid)) {
            await registry.remove(`run-${r.id}`);
            rmSync(runner.runDir(r.id), { recursive: true, force: true });
          }
          collect(db.deleteProject(req.params.pid));
          return reply.code(204).send();
        },
      );

      // classes
      api.post<{ Params: { pid: string }; Body: { name: string } }>(
        '/projects/:pid/classes',
        {
          schema: {
            params: pidParams,
            body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name } },
          },
        },
        async (req, reply) => {
          getProject(req.params.pid);
          const nm = req.body.name.trim();
          if (db.classByName(req.params.pid, nm))
            throw new HttpError(409, `name: the project already has a class '${nm}'`);
          const c = db.createClass(req.params.pid, nm);
          return reply.code(201).send({ id: c.id, name: c.name, count: 0 });
        },
      );
      const classParams = { type: 'object', properties: { pid: id, cid: id }, required: ['pid', 'cid'] } as const;
      api.patch<{ Params: { pid: string; cid: string }; Body: { name: string } }>(
        '/projects/:pid/classes/:cid',
        {
          schema: {
            params: classParams,
            body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name } },
          },
        },
        async (req) => {
          const c = getClass(req.params.pid, req.params.cid);
          const nm = req.body.name.trim();
          const other = db.classByName(req.params.pid, nm);
          if (other && other.id !== c.id) throw new HttpError(409, `name: the project already has a class '${nm}'`);
          db.renameClass(c.id, nm);
          db.touchProject(req.params.pid);
          return { id: c.id, name: nm, count: db.exampleCount(req.params.pid, c.id) };
        },
      );
      api.delete<{ Params: { pid: string; cid: string } }>(
        '/projects/:pid/classes/:cid',
        { schema: { params: classParams } },
        async (req, reply) => {
          getClass(req.params.pid, req.params.cid);
          collect(db.deleteClass(req.params.cid));
          db.touchProject(req.params.pid);
          return reply.code(204).send();
        },
      );

      // examples
      api.get<{ Params: { pid: string }; Querystring: { classId?: string; offset: number; limit: number } }>(
        '/projects/:pid/examples',
        {
          schema: {
            params: pidParams,
            querystring: {
              type: 'object',
              additionalProperties: false,
              properties: {
                classId: id,
                offset: { type: 'integer', minimum: 0, default: 0 },
                limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
              },
            },
          },
        },
        async (req) => {
          const p = getProject(req.params.pid);
          if (req.query.classId) getClass(p.id, req.query.classId);
          const ex = db.examples(p.id, {
            ...(req.query.classId ? { classId: req.query.classId } : {}),
            offset: req.query.offset,
            limit: req.query.limit,
          });
          return {
            examples: ex.map(exampleView),
            total: db.exampleCount(p.id, req.query.classId),
            counts: Object.fromEntries(db.classCounts(p.id)),
          };
        },
      );
      api.post<{ Params: { pid: string; cid: string } }>(
        '/projects/:pid/classes/:cid/images',
        { schema: { params: classParams } },
        async (req, reply) => {
          const p = getProject(req.params.pid);
          if (p.kind !== 'image') throw new HttpError(400, 'this is a text project: add texts, not images');
          const c = getClass(p.id, req.params.cid);
          if (!req.isMultipart()) throw new HttpError(415, 'send the images as multipart/form-data file parts');
          const leave = uploadGate();
          const pinned: string[] = [];
          try {
            const files: { name: string; bytes: Buffer }[] = [];
            let total = 0;
            for await (const part of req.parts()) {
              if (part.type !== 'file') continue;
              const bytes = await part.toBuffer();
              total += bytes.length;
              if (total > maxFile * 20)
                throw new HttpError(
                  413,
                  `the files add up to more than ${maxFile * 20} bytes; upload them in smaller groups`,
                );
              files.push({ name: basename(part.filename || `file ${files.length + 1}`).slice(0, 200), bytes });
            }
            if (!files.length) throw new HttpError(400, 'files: the request has no file part');
            const stored: StoredImage[] = [];
            for (const f of files) {
              try {
                const s = await blobs.putImage(f.bytes, f.name);
                pinned.push(s.sha256);
                stored.push(s);
              } catch (e) {
                if (e instanceof NotAnImage)
                  throw new HttpError(
                    415,
                    e.message,
                    'only images are accepted (JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP); nothing from this upload was added',
                  );
                throw e;
              }
            }
            const added = db.db.transaction(() => {
              for (const s of stored)
                db.addFile({ sha256: s.sha256, size: s.size, mime: s.mime, width: s.width, height: s.height });
              return db.addExamples(
                p.id,
                stored.map((s) => ({ classId: c.id, sha256: s.sha256 })),
              );
            })();
            db.touchProject(p.id);
            return reply.code(201).send({ added: added.map(exampleView) });
          } finally {
            leave();
            settle(pinned);
          }
        },
      );
      api.post<{ Params: { pid: string; cid: string }; Body: { texts: string[] } }>(
        '/projects/:pid/classes/:cid/texts',
        {
          schema: {
            params: classParams,
            body: {
              type: 'object',
              additionalProperties: false,
              required: ['texts'],
              properties: {
                texts: {
                  type: 'array',
                  minItems: 1,
                  maxItems: 1000,
                  items: { type: 'string', minLength: 1, maxLength: 10000, pattern: '\\S' },
                },
              },
            },
          },
        },
        async (req, reply) => {
          const p = getProject(req.params.pid);
          if (p.kind !== 'text') throw new HttpError(400, 'this is an image project: upload images, not texts');
          const c = getClass(p.id, req.params.cid);
          const added = db.addExamples(
            p.id,
            req.body.texts.map((t) => ({ classId: c.id, text: t })),
          );
          db.touchProject(p.id);
          return reply.code(201).send({ added: added.map(exampleView) });
        },
      );
      api.post<{ Params: { pid: string } }>(
        '/projects/:pid/import/table',
        { schema: { params: pidParams } },
        async (req, reply) => {
          const p = getProject(req.params.pid);
          if (p.kind !== 'text')
            throw new HttpError(400, 'tables of texts go into text projects; use import/folder for images');
          if (!req.isMultipart()) throw new HttpError(415, 'send the table as a multipart/form-data file part');
          const leave = uploadGate();
          try {
            return await importTable(req, reply, p);
          } finally {
            leave();
          }
        },
      );
      async function importTable(req: FastifyRequest, reply: FastifyReply, p: ProjectRow) {
        const fields: Record<string, string> = {};
        let file: { name: string; bytes: Buffer } | undefined;
        for await (const part of req.parts()) {
          if (part.type === 'file') {
            if (file) throw new HttpError(400, 'file: send one table per request');
            file = { name: basename(part.filename || 'table.csv'), bytes: await part.toBuffer() };
          } else fields[part.fieldname] = String(part.value);
        }
        if (!file) throw new HttpError(400, 'file: the request has no file part');
        const ext = extname(file.name).toLowerCase();
        const format =
          ext === '.tsv'
            ? 'tsv'
            : ext === '.jsonl' || ext === '.json'
              ? 'jsonl'
              : ext === '.csv' || ext === '.txt'
                ? 'csv'
                : undefined;
        if (!format) throw new HttpError(415, `${file.name}: not a table (.csv, .tsv or .jsonl)`);
        const tmp = mkdtempSync(join(tmpdir(), 'graft-studio-import-'));
        try {
          const path = join(tmp, `table.${format}`);
          writeFileSync(path, file.bytes);
          const col = (v: string | undefined) =>
            v === undefined || v === '' ? undefined : /^\d+$/.test(v) ? Number(v) : v;
          const tc = col(fields['textColumn']),
            lc = col(fields['labelColumn']);
          let t: ReturnType<typeof readTextTable>;
          try {
            t = readTextTable(path, {
              format,
              ...(tc !== undefined ? { textColumn: tc } : {}),
              ...(lc !== undefined ? { labelColumn: lc } : {}),
            });
          } catch (e) {
            if (e instanceof GraftError)
              throw new HttpError(400, `${file.name}: ${e.message.replaceAll(path, file.name)}`);
            throw e;
          }
          const classesCreated: string[] = [];
          const classOf = new Map<string, string>();
          for (const nm of t.classes) {
            const label = nm.slice(0, 100);
            let c = db.classByName(p.id, label);
            if (!c) {
              c = db.createClass(p.id, label);
              classesCreated.push(label);
            }
            classOf.set(nm, c.id);
          }
          const skipped: { row: number; reason: string }[] = [];
          const items: { classId: string; text: string }[] = [];
          t.texts.forEach((txt, i) => {
            if (!txt.trim()) skipped.push({ row: t.rows[i]!, reason: 'empty text' });
            else items.push({ classId: classOf.get(t.labels[i]!)!, text: txt.slice(0, 100_000) });
          });
          db.addExamples(p.id, items);
          db.touchProject(p.id);
          return reply.code(201).send({ added: items.length, classesCreated, skipped });
        } finally {
          rmSync(tmp, { recursive: true, force: true });
        }
      }
      api.post<{ Params: { pid: string }; Body: { path: string } }>(
        '/projects/:pid/import/folder',
        {
          schema: {
            params: pidParams,
            body: {
              type: 'object',
              additionalProperties: false,
              required: ['path'],
              properties: { path: { type: 'string', minLength: 1, maxLength: 4096 } },
            },
          },
        },
        async (req, reply) => {
          const p = getProject(req.params.pid);
          if (p.kind !== 'image')
            throw new HttpError(400, 'folders of images go into image projects; use import/table for texts');
          const root = req.body.path;
          if (!isAbsolute(root))
            throw new HttpError(400, `path: must be an absolute path on the server, got '${root}'`);
          if (!existsSync(root) || !statSync(root).isDirectory())
            throw new HttpError(400, `path: ${root} is not a folder`);
          const skipped: { file: string; reason: string }[] = [];
          const classesCreated: string[] = [];
          let added = 0;
          const subs = readdirSync(root, { withFileTypes: true })
            .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
            .map((d) => d.name)
            .sort();
          if (!subs.length)
            throw new HttpError(
              400,
              `path: ${root} has no class subfolders (one folder per class, holding its images)`,
            );
          const leave = uploadGate();
          const pinned: string[] = [];
          try {
            for (const sub of subs) {
              const label = sub.slice(0, 100);
              const items: { classId: string; sha256: string }[] = [];
              let c = db.classByName(p.id, label);
              for (const f of readdirSync(join(root, sub), { withFileTypes: true })
                .map((d) => d)
                .sort((a, b) => a.name.localeCompare(b.name))) {
                const rel = `${sub}/${f.name}`;
                if (!f.isFile()) {
                  if (!f.name.startsWith('.')) skipped.push({ file: rel, reason: 'not a regular file' });
                  continue;
                }
                const path = join(root, sub, f.name);
                const size = statSync(path).size;
                if (size > maxFile) {
                  skipped.push({ file: rel, reason: `larger than ${maxFile} bytes` });
                  continue;
                }
                try {
                  const s = await blobs.putImage(readFileSync(path), rel);
                  pinned.push(s.sha256);
                  db.addFile({ sha256: s.sha256, size: s.size, mime: s.mime, width: s.width, height: s.height });
                  if (!c) {
                    c = db.createClass(p.id, label);
                    classesCreated.push(label);
                  }
                  items.push({ classId: c.id, sha256: s.sha256 });
                } catch (e) {
                  if (!(e instanceof GraftError)) throw e;
                  skipped.push({
                    file: rel,
                    reason: IMAGE_EXTENSIONS.includes(extname(f.name).toLowerCase()) ? e.message : 'not an image',
                  });
                }
              }
              db.addExamples(p.id, items);
              added += items.length;
            }
          } finally {
            leave();
            settle(pinned);
          }
          db.touchProject(p.id);
          return reply.code(201).send({ added, classesCreated, skipped });
        },
      );
      const exParams = { type: 'object', properties: { pid: id, eid: id }, required: ['pid', 'eid'] } as const;
      api.delete<{ Params: { pid: string; eid: string } }>(
        '/projects/:pid/examples/:eid',
        { schema: { params: exParams } },
        async (req, reply) => {
          const e = db.example(req.params.eid);
          if (!e || e.project_id !== req.params.pid) throw notFound('example', req.params.eid);
          collect(db.deleteExample(e.id));
          db.touchProject(e.project_id);
          return reply.code(204).send();
        },
      );
      const blobParams = {
        type: 'object',
        properties: { sha: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
        required: ['sha'],
      } as const;
      api.get<{ Params: { sha: string } }>('/blobs/:sha', { schema: { params: blobParams } }, async (req, reply) => {
        const f = db.file(req.params.sha);
        if (!f || !blobs.has(f.sha256)) throw notFound('file', req.params.sha);
        return reply
          .type(f.mime)
          .header('cache-control', 'private, max-age=31536000, immutable')
          .send(blobs.read(f.sha256));
      });
      api.get<{ Params: { sha: string } }>(
        '/blobs/:sha/thumb',
        { schema: { params: blobParams } },
        async (req, reply) => {
          const f = db.file(req.params.sha);
          if (!f || !existsSync(blobs.path(f.sha256, true))) throw notFound('file', req.params.sha);
          return reply
            .type('image/jpeg')
            .header('cache-control', 'private, max-age=31536000, immutable')
            .send(blobs.read(f.sha256, true));
        },
      );

      // backbones and methods
      const kindQuery = {
        type: 'object',
        additionalProperties: false,
        required: ['kind'],
        properties: { kind: { type: 'string', enum: ['image', 'text'] } },
      } as const;
      api.get<{ Querystring: { kind: ProjectKind } }>(
        '/backbones',
        { schema: { querystring: kindQuery } },
        async (req) => listBackbones(req.query.kind),
      );
      api.get<{ Querystring: { kind: ProjectKind } }>(
        '/methods',
        { schema: { querystring: kindQuery } },
        async (req) => ({ methods: listMethods(req.query.kind) }),
      );

      // runs
      api.post<{ Params: { pid: string }; Body: { backbone: string; method: string; settings?: JobSettings } }>(
        '/projects/:pid/runs',
        {
          schema: {
            params: pidParams,
            body: {
              type: 'object',
              additionalProperties: false,
              required: ['backbone', 'method'],
              properties: {
                backbone: { type: 'string', minLength: 1, maxLength: 4200 },
                method: { type: 'string', enum: Object.keys(METHODS) },
                settings: settingsSchema,
              },
            },
          },
        },
        async (req, reply) => {
          const p = getProject(req.params.pid);
          const { backbone, method } = req.body;
          if (!(METHODS[method as keyof typeof METHODS] as readonly string[]).includes(p.kind))
            throw new HttpError(400, `method: '${method}' does not apply to ${p.kind} projects`);
          let backbonePath: string;
          try {
            backbonePath = await resolveBackbone(backbone, p.kind, method);
          } catch (e) {
            if (e instanceof GraftError) throw new HttpError(400, e.message, e.hint);
            throw e;
          }
          const counts = db.classCounts(p.id);
          const classes = db.classes(p.id).filter((c) => (counts.get(c.id) ?? 0) > 0);
          if (classes.length < 2)
            throw new HttpError(400, `the project needs at least two classes with examples; it has ${classes.length}`);
          const few = classes.filter((c) => (counts.get(c.id) ?? 0) < 2);
          if (few.length)
            throw new HttpError(
              400,
              `class '${few[0]!.name}' has ${counts.get(few[0]!.id)} example; each class needs at least 2 (one to train on, one to test)`,
            );
          const index = new Map(classes.map((c, i) => [c.id, i]));
          const snapshot: RunSnapshot = {
            kind: p.kind,
            backbonePath,
            classes: classes.map((c) => c.name),
            examples: db.examples(p.id).map((e) => ({
              id: e.id,
              label: index.get(e.class_id)!,
              ...(e.sha256 ? { sha256: e.sha256 } : { text: e.text ?? '' }),
            })),
          };
          const defaults = (DEFAULTS[p.kind] as Record<string, JobSettings>)[method] ?? {};
          queueRoom();
          const files = snapshot.examples.flatMap((e) => (e.sha256 ? [e.sha256] : []));
          const run = db.createRun(
            p.id,
            backbone,
            method,
            { ...defaults, ...(req.body.settings ?? {}) },
            { json: JSON.stringify(snapshot), files },
          );
          runner.enqueue(run.id);
          return reply.code(201).send(runView(getRun(run.id)));
        },
      );
      api.get<{ Params: { pid: string } }>('/projects/:pid/runs', { schema: { params: pidParams } }, async (req) => {
        getProject(req.params.pid);
        return { runs: db.runs(req.params.pid).map(runView) };
      });
      api.get<{ Params: { rid: string } }>('/runs/:rid', { schema: { params: ridParams } }, async (req) =>
        runView(getRun(req.params.rid)),
      );
      api.post<{ Params: { rid: string } }>('/runs/:rid/cancel', { schema: { params: ridParams } }, async (req) => {
        const r = getRun(req.params.rid);
        if (!runner.cancel(r.id))
          throw new HttpError(409, `run '${r.id}' is ${r.status}; only queued or running runs can be cancelled`);
        return runView(getRun(r.id));
      });
      api.post<{ Params: { rid: string } }>('/runs/:rid/resume', { schema: { params: ridParams } }, async (req) => {
        const r = getRun(req.params.rid);
        if (!['interrupted', 'cancelled', 'failed'].includes(r.status))
          throw new HttpError(
            409,
            `run '${r.id}' is ${r.status}; only interrupted, cancelled or failed runs can be resumed`,
          );
        queueRoom();
        const how = runner.resumability(r);
        db.updateRun(r.id, { resumable: how });
        runner.enqueue(r.id);
        return { run: runView(getRun(r.id)), resumedFrom: how };
      });
      api.delete<{ Params: { rid: string } }>('/runs/:rid', { schema: { params: ridParams } }, async (req, reply) => {
        const r = getRun(req.params.rid);
        if (runner.isActive(r.id)) throw new HttpError(409, `run '${r.id}' is training; cancel it first`);
        await registry.remove(`run-${r.id}`);
        collect(db.deleteRun(r.id));
        rmSync(runner.runDir(r.id), { recursive: true, force: true });
        return reply.code(204).send();
      });
      api.get('/queue', async () => runner.queue());

      // live progress (server-sent events)
      api.get<{ Params: { rid: string } }>(
        '/runs/:rid/events',
        { schema: { params: ridParams } },
        async (req, reply) => {
          const r = getRun(req.params.rid);
          sse(req, reply, r.id, streamGate());
        },
      );
      const openStreams = new Set<() => void>();
      api.addHook('preClose', async () => {
        for (const c of [...openStreams]) c();
      });
      function sse(req: FastifyRequest, reply: FastifyReply, rid: string, leave: () => void): void {
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        const finished = (s: string) => s === 'done' || s === 'failed' || s === 'cancelled' || s === 'interrupted';
        let closed = false;
        const close = () => {
          if (closed) return;
          closed = true;
          openStreams.delete(close);
          runner.off('event', onEvent);
          clearInterval(ping);
          leave();
          res.end();
        };
        const onEvent = (e: RunEvent) => {
          if (e.run !== rid || closed) return;
          if (e.event === 'run') {
            const now = db.run(rid);
            if (!now) return close();
            send('run', runView(now));
            if (finished(now.status) && !runner.isActive(rid)) close();
          } else send(e.event, e.data);
        };
        const ping = setInterval(() => res.write(': ping\n\n'), 15000);
        runner.on('event', onEvent);
        openStreams.add(close);
        req.raw.on('close', close);
        const now = db.run(rid)!;
        send('run', runView(now));
        if (finished(now.status)) close();
      }

      // try and explain
      api.post<{ Params: { rid: string }; Querystring: { top: number } }>(
        '/runs/:rid/predict',
        {
          schema: {
            params: ridParams,
            querystring: {
              type: 'object',
              properties: { top: { type: 'integer', minimum: 1, maximum: 1000, default: 5 } },
            },
          },
        },
        async (req) => {
          const run = getRun(req.params.rid);
          const m = await ensureServed(run.id);
          const top = req.query.top;
          if (m.kind === 'image') {
            const images = await readImages(req, run.project_id);
            return { model: m.name, predictions: await m.predictImages(images, { top }) };
          }
          const texts = (req.body as { texts?: unknown } | undefined)?.texts;
          if (!Array.isArray(texts) || !texts.length || texts.some((t) => typeof t !== 'string' || !t.trim()))
            throw new HttpError(400, 'texts: send JSON {"texts": ["…"]} with non-empty texts');
          if (texts.length > 64) throw new HttpError(413, `${texts.length} texts, over the limit of 64 per request`);
          return { model: m.name, predictions: await m.predictTexts(texts as string[], { top }) };
        },
      );
      /** The images of a try/explain request: multipart files (at most `max`, and maxFile × 20 bytes in all) or JSON {exampleId}. */
      async function readImages(
        req: FastifyRequest,
        projectId: string,
        max = 64,
      ): Promise<{ name: string; bytes: Uint8Array }[]> {
        if (!req.isMultipart()) {
          const b = req.body as { exampleId?: unknown } | undefined;
          if (b && typeof b.exampleId === 'string') {
            const e = db.example(b.exampleId);
            if (!e?.sha256 || e.project_id !== projectId) throw notFound('example', b.exampleId);
            return [{ name: e.id, bytes: blobs.read(e.sha256) }];
          }
          throw new HttpError(415, 'send the image as multipart/form-data (or JSON {"exampleId": "…"})');
        }
        const out: { name: string; bytes: Uint8Array }[] = [];
        let total = 0;
        for await (const part of req.parts()) {
          if (part.type !== 'file') continue;
          if (out.length >= max)
            throw new HttpError(413, max === 1 ? 'send one image per request' : `at most ${max} images per request`);
          const bytes = await part.toBuffer();
          total += bytes.length;
          if (total > maxFile * 20)
            throw new HttpError(
              413,
              `the files add up to more than ${maxFile * 20} bytes; send fewer or smaller images`,
            );
          out.push({ name: basename(part.filename || `file ${out.length + 1}`).slice(0, 200), bytes });
        }
        if (!out.length) throw new HttpError(400, 'file: the request has no file part');
        return out;
      }
      api.post<{ Params: { rid: string } }>('/runs/:rid/explain', { schema: { params: ridParams } }, async (req) => {
        const r = getRun(req.params.rid);
        if (r.status !== 'done')
          throw new HttpError(409, `run '${r.id}' has no trained classifier (status ${r.status})`);
        const leave = explainGate();
        try {
          return await explain(req, r);
        } finally {
          leave();
        }
      });
      async function explain(req: FastifyRequest, r: RunRow) {
        const dir = classifierDir(runner.runDir(r.id));
        const project = getProject(r.project_id);
        if (project.kind === 'image') {
          const [img] = await readImages(req, r.project_id, 1);
          const { explainImages } = await import('../explain/gradcam.js');
          let ex: Awaited<ReturnType<typeof explainImages>>[number] | undefined;
          try {
            // old opsets (the MNIST network's 7) lack what some gradients need (MaxPool's indices): upgrade first
            const g = readOnnx(join(dir, 'model.onnx'));
            [ex] = await explainImages(g.opset < 11 ? upgradeOpset(g, 13) : g, [img!.bytes], {});
          } catch (e) {
            if (e instanceof GraftError)
              throw new HttpError(/image|decode|read/i.test(e.message) ? 415 : 400, `${img!.name}: ${e.message}`);
            throw e;
          }
          return {
            label: ex!.class.label ?? `class ${ex!.class.index}`,
            probability: ex!.class.probability,
            classIndex: ex!.class.index,
            top: ex!.top,
            layer: ex!.layer,
            overlayUrl: `data:image/png;base64,${ex!.overlay!.toString('base64')}`,
          };
        }
        const b = req.body as { text?: unknown; exampleId?: unknown } | undefined;
        let text: string | undefined;
        if (b && typeof b.exampleId === 'string') {
          const e = db.example(b.exampleId);
          if (!e || e.project_id !== r.project_id) throw notFound('example', b.exampleId);
          text = e.text ?? undefined;
        } else if (b && typeof b.text === 'string' && b.text.trim()) text = b.text.slice(0, 100_000);
        if (!text) throw new HttpError(400, 'text: send JSON {"text": "…"} or {"exampleId": "…"}');
        const { explainTexts } = await import('../explain/text.js');
        const [ex] = await explainTexts(dir, [text]);
        return {
          label: ex!.class.label ?? `class ${ex!.class.index}`,
          probability: ex!.class.probability,
          classIndex: ex!.class.index,
          tokens: ex!.tokens.map((t, i) => ({ token: t, score: ex!.scores[i]!, special: ex!.special[i]! })),
        };
      }

      // export
      const doneDir = (rid: string) => {
        const r = getRun(rid);
        if (r.status !== 'done')
          throw new HttpError(409, `run '${r.id}' has no trained classifier (status ${r.status})`);
        return { r, dir: classifierDir(runner.runDir(r.id)) };
      };
      const slug = (s: string) =>
        s
          .toLowerCase()
          .replace(/[^a-z0-9]+/g, '-')
          .replace(/^-|-$/g, '')
          .slice(0, 40) || 'model';
      api.get<{ Params: { rid: string } }>(
        '/runs/:rid/export/model.onnx',
        { schema: { params: ridParams } },
        async (req, reply) => {
          const { r, dir } = doneDir(req.params.rid);
          const p = getProject(r.project_id);
          return reply
            .type('application/octet-stream')
            .header('content-disposition', `attachment; filename="${slug(p.name)}-${r.id}.onnx"`)
            .send(readFileSync(join(dir, 'model.onnx')));
        },
      );
      api.get<{ Params: { rid: string } }>(
        '/runs/:rid/export/classifier.zip',
        { schema: { params: ridParams } },
        async (req, reply) => {
          const { r, dir } = doneDir(req.params.rid);
          const p = getProject(r.project_id);
          const files: Record<string, Uint8Array> = {};
          const top = `${slug(p.name)}-${r.id}`;
          for (const f of readdirSync(dir, { withFileTypes: true }))
            if (f.isFile()) files[`${top}/${f.name}`] = readFileSync(join(dir, f.name));
          const ev = join(runner.runDir(r.id), 'evaluation.json');
          if (existsSync(ev)) files[`${top}/evaluation.json`] = readFileSync(ev);
          return reply
            .type('application/zip')
            .header('content-disposition', `attachment; filename="${top}.zip"`)
            .send(Buffer.from(zipSync(files, { level: 6 })));
        },
      );
      api.get<{ Params: { rid: string } }>(
        '/runs/:rid/export/preprocess',
        { schema: { params: ridParams } },
        async (req) => preprocessInfo(doneDir(req.params.rid).dir),
      );
      api.get<{ Params: { rid: string } }>(
        '/runs/:rid/export/snippet',
        { schema: { params: ridParams } },
        async (req) => {
          const { r, dir } = doneDir(req.params.rid);
          return snippets(preprocessInfo(dir), `${slug(getProject(r.project_id).name)}-${r.id}`);
        },
      );
    },
    { prefix: '/api' },
  );

  // the browser app
  let uiDir = o.uiDir;
  if (uiDir === undefined) {
    const { studioUiDir } = await import('./ui/files.js');
    uiDir = studioUiDir();
  }
  if (uiDir) await app.register(fastifyStatic, { root: uiDir, prefix: '/', index: ['index.html'] });

  runner.recover();
  return {
    app,
    db,
    runner,
    registry,
    dataDir,
    routes,
    async close() {
      try {
        await app.close();
        await runner.stopAll();
        await registry.close();
        db.close();
      } finally {
        unlock();
      }
    },
  };
}

interface PreprocessInfo {
  kind: 'image' | 'text';
  inputName: string;
  outputName: string;
  labels: string[];
  width?: number;
  height?: number;
  channels?: number;
  channelOrder?: string;
  layout?: string;
  mean?: number[];
  std?: number[];
  resize?: string;
  maxLength?: number;
}

function preprocessInfo(dir: string): PreprocessInfo {
  const g = readOnnx(join(dir, 'model.onnx'));
  const labels = JSON.parse(readFileSync(join(dir, 'labels.json'), 'utf8')) as string[];
  const text = existsSync(join(dir, 'tokenizer.json'));
  const inputName = g.dataInputs()[0]?.name ?? 'input';
  const outputName = g.outputs[0]?.name ?? 'probabilities';
  if (text) {
    const s = g.metadata['graft.text'] ? (JSON.parse(g.metadata['graft.text']) as { maxLength?: number }) : {};
    return { kind: 'text', inputName, outputName, labels, ...(s.maxLength ? { maxLength: s.maxLength } : {}) };
  }
  const p = getPreprocess(g);
  return {
    kind: 'image',
    inputName,
    outputName,
    labels,
    ...(p
      ? {
          width: p.width,
          height: p.height,
          channels: p.channels,
          channelOrder: p.channelOrder,
          layout: p.layout,
          mean: p.mean,
          std: p.std,
          resize: p.resize,
        }
      : {}),
  };
}

function snippets(p: PreprocessInfo, name: string): { node: string; browser: string } {
  if (p.kind === 'text') {
    const node = `// npm install graft   (the classifier folder holds model.onnx, tokenizer.json and labels.json)
import { loadTextClassifier, predictTexts } from 'graft';
const classifier = loadTextClassifier('./${name}');
const [r] = await predictTexts(classifier, ['a text to classify']);
console.log(r.top);   // [{ label, index, probability }, …]
`;
    const browser = `<!-- The text model needs its tokenizer (tokenizer.json in the folder): serve it with
     \`graft serve ./${name}\` and call it from the page: -->
<script type="module">
const res = await fetch('http://127.0.0.1:8080/v1/models/${name}/predict', {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: ['a text to classify'] }),
});
console.log((await res.json()).predictions[0].top);
</script>
`;
    return { node, browser };
  }
  const w = p.width ?? 224,
    h = p.height ?? 224,
    c = p.channels ?? 3;
  const mean = JSON.stringify(p.mean ?? new Array(c).fill(0)),
    std = JSON.stringify(p.std ?? new Array(c).fill(1));
  const labels = JSON.stringify(p.labels);
  const node = `// npm install onnxruntime-node sharp
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
const labels = ${labels};
const session = await ort.InferenceSession.create('./${name}/model.onnx');
const { data } = await sharp('photo.jpg').removeAlpha()${c === 1 ? '.greyscale()' : ''}.resize(${w}, ${h}, { fit: '${p.resize === 'center-crop' ? 'cover' : 'fill'}' }).raw().toBuffer({ resolveWithObject: true });
const mean = ${mean}, std = ${std};
const x = new Float32Array(${c * w * h});
for (let i = 0; i < ${w * h}; i++) for (let k = 0; k < ${c}; k++) x[k * ${w * h} + i] = (data[i * ${c} + k] / 255 - mean[k]) / std[k];
const out = await session.run({ '${p.inputName}': new ort.Tensor('float32', x, [1, ${c}, ${h}, ${w}]) });
const probs = out['${p.outputName}'].data;
console.log(labels.map((l, i) => [l, probs[i]]).sort((a, b) => b[1] - a[1]).slice(0, 3));
`;
  const browser = `<script type="module">
import * as ort from 'https://cdn.jsdelivr.net/npm/onnxruntime-web/dist/ort.min.mjs';
const labels = ${labels};
const session = await ort.InferenceSession.create('./${name}/model.onnx');
const img = document.querySelector('img');               // any loaded <img> or <video> frame
const canvas = new OffscreenCanvas(${w}, ${h});
const ctx = canvas.getContext('2d');
ctx.drawImage(img, 0, 0, ${w}, ${h});
const rgba = ctx.getImageData(0, 0, ${w}, ${h}).data;
const mean = ${mean}, std = ${std};
const x = new Float32Array(${c * w * h});
for (let i = 0; i < ${w * h}; i++) {
${
  c === 1
    ? `  const grey = 0.299 * rgba[i * 4] + 0.587 * rgba[i * 4 + 1] + 0.114 * rgba[i * 4 + 2];
  x[i] = (grey / 255 - mean[0]) / std[0];`
    : `  for (let k = 0; k < 3; k++) x[k * ${w * h} + i] = (rgba[i * 4 + k] / 255 - mean[k]) / std[k];`
}
}
const out = await session.run({ '${p.inputName}': new ort.Tensor('float32', x, [1, ${c}, ${h}, ${w}]) });
const probs = out['${p.outputName}'].data;
console.log(labels.map((l, i) => [l, probs[i]]).sort((a, b) => b[1] - a[1]).slice(0, 3));
</script>
`;
  return { node, browser };
}
