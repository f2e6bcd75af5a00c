/**
 * Studio's state: one better-sqlite3 database (studio.db in the data folder) with migrations by
 * version (PRAGMA user_version), holding projects (image | text), classes, examples, content-addressed
 * file records, training runs and their per-epoch metrics. Ids are generated here (never taken from a
 * client or a path); every query is a prepared statement.
 *
 * File records are reference-counted by query: a file is referenced by the examples that hold its
 * sha256 and by the unfinished runs whose snapshot lists it (run_files; a run's rows go when it is done
 * or deleted). The delete methods return the sha256s they may have freed; `dropUnreferencedFiles` then
 * removes the records nothing references, and the caller removes their bytes (src/studio/app.ts).
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export type ProjectKind = 'image' | 'text';
export type RunStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled' | 'interrupted';

/** Ids: a letter for the kind of row, then 12 random base-36 characters. */
export const ID_PATTERN = '^[a-z][a-z0-9]{1,31}$';
export function newId(prefix: string): string {
  const b = randomBytes(12);
  let s = prefix;
  for (const x of b) s += (x % 36).toString(36);
  return s;
}

/** Migrations by version: entry i brings the database from version i to i + 1. */
const MIGRATIONS: string[] = [
  `CREATE TABLE projects (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('image','text')),
     created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
   CREATE TABLE classes (
     id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
     name TEXT NOT NULL, position INTEGER NOT NULL, created_at TEXT NOT NULL, UNIQUE (project_id, name));
   CREATE TABLE files (
     sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, mime TEXT NOT NULL, width INTEGER, height INTEGER, created_at TEXT NOT NULL);
   CREATE TABLE examples (
     id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
     class_id TEXT NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
     sha256 TEXT REFERENCES files(sha256), text TEXT, created_at TEXT NOT NULL);
   CREATE INDEX examples_by_class ON examples(class_id);
   CREATE INDEX examples_by_project ON examples(project_id);
   CREATE TABLE runs (
     id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
     status TEXT NOT NULL, backbone TEXT NOT NULL, method TEXT NOT NULL, settings TEXT NOT NULL,
     created_at TEXT NOT NULL, queued_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
     phase TEXT NOT NULL DEFAULT 'queued', fraction REAL NOT NULL DEFAULT 0, eta_seconds REAL,
     error TEXT, resumable TEXT, evaluation TEXT, snapshot TEXT);
   CREATE INDEX runs_by_project ON runs(project_id);
   CREATE TABLE run_metrics (
     run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
     loss REAL, accuracy REAL, val_accuracy REAL, PRIMARY KEY (run_id, epoch));`,
  // v2: which files each run's snapshot needs (kept until the run is done or deleted), filled from the snapshots
  `CREATE TABLE run_files (
     run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, sha256 TEXT NOT NULL REFERENCES files(sha256),
     PRIMARY KEY (run_id, sha256));
   CREATE INDEX run_files_by_sha ON run_files(sha256);
   CREATE INDEX examples_by_sha ON examples(sha256);
   INSERT OR IGNORE INTO run_files (run_id, sha256)
     SELECT r.id, json_extract(e.value, '$.sha256') FROM runs r, json_each(r.snapshot, '$.examples') e
     WHERE r.snapshot IS NOT NULL AND r.status != 'done' AND json_extract(e.value, '$.sha256') IN (SELECT sha256 FROM files);`,
];

export interface ProjectRow {
  id: string;
  name: string;
  kind: ProjectKind;
  created_at: string;
  updated_at: string;
}
export interface ClassRow {
  id: string;
  project_id: string;
  name: string;
  position: number;
  created_at: string;
}
export interface ExampleRow {
  id: string;
  project_id: string;
  class_id: string;
  sha256: string | null;
  text: string | null;
  created_at: string;
}
export interface FileRow {
  sha256: string;
  size: number;
  mime: string;
  width: number | null;
  height: number | null;
  created_at: string;
}
export interface RunRow {
  id: string;
  project_id: string;
  status: RunStatus;
  backbone: string;
  method: string;
  settings: string;
  created_at: string;
  queued_at: string;
  started_at: string | null;
  finished_at: string | null;
  phase: string;
  fraction: number;
  eta_seconds: number | null;
  error: string | null;
  resumable: 'checkpoint' | 'restart' | null;
  evaluation: string | null;
  snapshot: string | null;
}
export interface MetricRow {
  run_id: string;
  epoch: number;
  loss: number | null;
  accuracy: number | null;
  val_accuracy: number | null;
}

const now = () => new Date().toISOString();

export class StudioDb {
  readonly db: Database.Database;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, 'studio.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  get version(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    for (let v = this.version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  // projects
  createProject(name: string, kind: ProjectKind): ProjectRow {
    const t = now();
    const row: ProjectRow = { id: newId('p'), name, kind, created_at: t, updated_at: t };
    this.db
      .prepare(
        'INSERT INTO projects (id, name, kind, created_at, updated_at) VALUES (@id, @name, @kind, @created_at, @updated_at)',
      )
      .run(row);
    return row;
  }
  projects(): ProjectRow[] {
    return this.db.prepare('SELECT * FROM projects ORDER BY created_at DESC').all() as ProjectRow[];
  }
  project(id: string): ProjectRow | undefined {
    return this.db.prepare('SELECT * FROM projects WHERE id = ?').get(id) as ProjectRow | undefined;
  }
  renameProject(id: string, name: string): void {
    this.db.prepare('UPDATE projects SET name = ?, updated_at = ? WHERE id = ?').run(name, now(), id);
  }
  touchProject(id: string): void {
    this.db.prepare('UPDATE projects SET updated_at = ? WHERE id = ?').run(now(), id);
  }
  /** Delete a project (its classes, examples and runs go too); returns the sha256s it referenced. */
  deleteProject(id: string): string[] {
    return this.db.transaction(() => {
      const shas = this.shas(
        'SELECT sha256 FROM examples WHERE project_id = ? AND sha256 IS NOT NULL UNION SELECT f.sha256 FROM run_files f JOIN runs r ON r.id = f.run_id WHERE r.project_id = ?',
        id,
        id,
      );
      this.db.prepare('DELETE FROM projects WHERE id = ?').run(id);
      return shas;
    })();
  }

  private shas(sql: string, ...args: unknown[]): string[] {
    return (this.db.prepare(sql).all(...args) as { sha256: string }[]).map((r) => r.sha256);
  }

  // classes
  classes(projectId: string): ClassRow[] {
    return this.db
      .prepare('SELECT * FROM classes WHERE project_id = ? ORDER BY position, created_at')
      .all(projectId) as ClassRow[];
  }
  class(id: string): ClassRow | undefined {
    return this.db.prepare('SELECT * FROM classes WHERE id = ?').get(id) as ClassRow | undefined;
  }
  classByName(projectId: string, name: string): ClassRow | undefined {
    return this.db.prepare('SELECT * FROM classes WHERE project_id = ? AND name = ?').get(projectId, name) as
      | ClassRow
      | undefined;
  }
  createClass(projectId: string, name: string): ClassRow {
    const pos = (
      this.db
        .prepare('SELECT COALESCE(MAX(position), -1) + 1 AS p FROM classes WHERE project_id = ?')
        .get(projectId) as { p: number }
    ).p;
    const row: ClassRow = { id: newId('c'), project_id: projectId, name, position: pos, created_at: now() };
    this.db
      .prepare(
        'INSERT INTO classes (id, project_id, name, position, created_at) VALUES (@id, @project_id, @name, @position, @created_at)',
      )
      .run(row);
    this.touchProject(projectId);
    return row;
  }
  renameClass(id: string, name: string): void {
    this.db.prepare('UPDATE classes SET name = ? WHERE id = ?').run(name, id);
  }
  /** Delete a class and its examples; returns the sha256s they referenced. */
  deleteClass(id: string): string[] {
    return this.db.transaction(() => {
      const shas = this.shas('SELECT DISTINCT sha256 FROM examples WHERE class_id = ? AND sha256 IS NOT NULL', id);
      this.db.prepare('DELETE FROM classes WHERE id = ?').run(id);
      return shas;
    })();
  }
  classCounts(projectId: string): Map<string, number> {
    const rows = this.db
      .prepare('SELECT class_id, COUNT(*) AS n FROM examples WHERE project_id = ? GROUP BY class_id')
      .all(projectId) as { class_id: string; n: number }[];
    return new Map(rows.map((r) => [r.class_id, r.n]));
  }

  // files and examples
  file(sha256: string): FileRow | undefined {
    return this.db.prepare('SELECT * FROM files WHERE sha256 = ?').get(sha256) as FileRow | undefined;
  }
  addFile(f: Omit<FileRow, 'created_at'>): void {
    this.db
      .prepare('INSERT OR IGNORE INTO files (sha256, size, mime, width, height, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(f.sha256, f.size, f.mime, f.width, f.height, now());
  }
  addExample(projectId: string, classId: string, v: { sha256?: string; text?: string }): ExampleRow {
    const row: ExampleRow = {
      id: newId('e'),
      project_id: projectId,
      class_id: classId,
      sha256: v.sha256 ?? null,
      text: v.text ?? null,
      created_at: now(),
    };
    this.db
      .prepare(
        'INSERT INTO examples (id, project_id, class_id, sha256, text, created_at) VALUES (@id, @project_id, @class_id, @sha256, @text, @created_at)',
      )
      .run(row);
    return row;
  }
  /** Several examples in one transaction. */
  addExamples(projectId: string, items: { classId: string; sha256?: string; text?: string }[]): ExampleRow[] {
    return this.db.transaction(() => items.map((it) => this.addExample(projectId, it.classId, it)))();
  }
  example(id: string): ExampleRow | undefined {
    return this.db.prepare('SELECT * FROM examples WHERE id = ?').get(id) as ExampleRow | undefined;
  }
  examples(projectId: string, o: { classId?: string; offset?: number; limit?: number } = {}): ExampleRow[] {
    const lim = o.limit ?? -1,
      off = o.offset ?? 0;
    if (o.classId)
      return this.db
        .prepare(
          'SELECT * FROM examples WHERE project_id = ? AND class_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?',
        )
        .all(projectId, o.classId, lim, off) as ExampleRow[];
    return this.db
      .prepare('SELECT * FROM examples WHERE project_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?')
      .all(projectId, lim, off) as ExampleRow[];
  }
  exampleCount(projectId: string, classId?: string): number {
    const r = classId
      ? this.db
          .prepare('SELECT COUNT(*) AS n FROM examples WHERE project_id = ? AND class_id = ?')
          .get(projectId, classId)
      : this.db.prepare('SELECT COUNT(*) AS n FROM examples WHERE project_id = ?').get(projectId);
    return (r as { n: number }).n;
  }
  /** Delete an example; returns the sha256 it referenced (none for a text). */
  deleteExample(id: string): string[] {
    return this.db.transaction(() => {
      const shas = this.shas('SELECT sha256 FROM examples WHERE id = ? AND sha256 IS NOT NULL', id);
      this.db.prepare('DELETE FROM examples WHERE id = ?').run(id);
      return shas;
    })();
  }

  /** Whether any example or unfinished run references a file. */
  fileReferenced(sha256: string): boolean {
    return !!this.db
      .prepare('SELECT 1 FROM examples WHERE sha256 = ? UNION ALL SELECT 1 FROM run_files WHERE sha256 = ? LIMIT 1')
      .get(sha256, sha256);
  }

  /**
   * Remove the file records nothing references, among `candidates` (default: all), except those `keep`
   * accepts (files an upload in progress has stored but not yet recorded). One transaction; returns the
   * sha256s of the candidates that now have no record (their bytes may go).
   */
  dropUnreferencedFiles(candidates?: string[], keep: (sha256: string) => boolean = () => false): string[] {
    return this.db.transaction(() => {
      const list = candidates ?? this.shas('SELECT sha256 FROM files');
      const del = this.db.prepare(
        'DELETE FROM files WHERE sha256 = @s AND NOT EXISTS (SELECT 1 FROM examples WHERE sha256 = @s) AND NOT EXISTS (SELECT 1 FROM run_files WHERE sha256 = @s)',
      );
      const has = this.db.prepare('SELECT 1 FROM files WHERE sha256 = ?');
      const gone: string[] = [];
      for (const s of new Set(list)) {
        if (keep(s)) continue;
        del.run({ s });
        if (!has.get(s)) gone.push(s);
      }
      return gone;
    })();
  }

  /** Every sha256 with a file record. */
  fileShas(): Set<string> {
    return new Set(this.shas('SELECT sha256 FROM files'));
  }

  // runs
  /** A new queued run with its snapshot (JSON) and the files the snapshot needs, in one transaction. */
  createRun(
    projectId: string,
    backbone: string,
    method: string,
    settings: object,
    snapshot?: { json: string; files: string[] },
  ): RunRow {
    const t = now();
    const row: RunRow = {
      id: newId('r'),
      project_id: projectId,
      status: 'queued',
      backbone,
      method,
      settings: JSON.stringify(settings),
      created_at: t,
      queued_at: t,
      started_at: null,
      finished_at: null,
      phase: 'queued',
      fraction: 0,
      eta_seconds: null,
      error: null,
      resumable: null,
      evaluation: null,
      snapshot: snapshot?.json ?? null,
    };
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT INTO runs (id, project_id, status, backbone, method, settings, created_at, queued_at, phase, fraction, snapshot)
        VALUES (@id, @project_id, @status, @backbone, @method, @settings, @created_at, @queued_at, @phase, @fraction, @snapshot)`)
        .run(row);
      const ins = this.db.prepare('INSERT OR IGNORE INTO run_files (run_id, sha256) VALUES (?, ?)');
      for (const s of new Set(snapshot?.files ?? [])) ins.run(row.id, s);
    })();
    return row;
  }
  /** The files a run's snapshot needs (while it is not done). */
  runFiles(runId: string): string[] {
    return this.shas('SELECT sha256 FROM run_files WHERE run_id = ?', runId);
  }
  /** A run is done: its snapshot's files are no longer needed by it; returns them. */
  releaseRunFiles(runId: string): string[] {
    return this.db.transaction(() => {
      const shas = this.runFiles(runId);
      this.db.prepare('DELETE FROM run_files WHERE run_id = ?').run(runId);
      return shas;
    })();
  }
  run(id: string): RunRow | undefined {
    return this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
  }
  runs(projectId: string): RunRow[] {
    return this.db
      .prepare('SELECT * FROM runs WHERE project_id = ? ORDER BY created_at DESC, id')
      .all(projectId) as RunRow[];
  }
  runsWithStatus(status: RunStatus): RunRow[] {
    return this.db.prepare('SELECT * FROM runs WHERE status = ? ORDER BY queued_at, id').all(status) as RunRow[];
  }
  updateRun(id: string, fields: Partial<Omit<RunRow, 'id' | 'project_id'>>): void {
    const keys = Object.keys(fields);
    if (!keys.length) return;
    this.db
      .prepare(`UPDATE runs SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`)
      .run({ ...fields, id });
  }
  /** Delete a run; returns the sha256s its snapshot still referenced. */
  deleteRun(id: string): string[] {
    return this.db.transaction(() => {
      const shas = this.runFiles(id);
      this.db.prepare('DELETE FROM runs WHERE id = ?').run(id);
      return shas;
    })();
  }
  addMetric(m: MetricRow): void {
    this.db
      .prepare(
        'INSERT OR REPLACE INTO run_metrics (run_id, epoch, loss, accuracy, val_accuracy) VALUES (@run_id, @epoch, @loss, @accuracy, @val_accuracy)',
      )
      .run(m);
  }
  clearMetrics(runId: string, afterEpoch = 0): void {
    this.db.prepare('DELETE FROM run_metrics WHERE run_id = ? AND epoch > ?').run(runId, afterEpoch);
  }
  metrics(runId: string): MetricRow[] {
    return this.db.prepare('SELECT * FROM run_metrics WHERE run_id = ? ORDER BY epoch').all(runId) as MetricRow[];
  }
}
