/**
 * Studio's state: one better-sqlite3 database (studio.db in the data folder) with migrations by
 * version (PRAGMA user_version), holding projects (image | text), classes, examples, content-addressed
 * file records, training runs and their per-epoch metrics. Ids are generated here (never taken from a
 * client or a path); every query is a prepared statement.
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
];

export interface ProjectRow { id: string; name: string; kind: ProjectKind; created_at: string; updated_at: string }
export interface ClassRow { id: string; project_id: string; name: string; position: number; created_at: string }
export interface ExampleRow { id: string; project_id: string; class_id: string; sha256: string | null; text: string | null; created_at: string }
export interface FileRow { sha256: string; size: number; mime: string; width: number | null; height: number | null; created_at: string }
export interface RunRow {
  id: string; project_id: string; status: RunStatus; backbone: string; method: string; settings: string;
  created_at: string; queued_at: string; started_at: string | null; finished_at: string | null;
  phase: string; fraction: number; eta_seconds: number | null; error: string | null;
  resumable: 'checkpoint' | 'restart' | null; evaluation: string | null; snapshot: string | null;
}
export interface MetricRow { run_id: string; epoch: number; loss: number | null; accuracy: number | null; val_accuracy: number | null }

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
    this.db.prepare('INSERT INTO projects (id, name, kind, created_at, updated_at) VALUES (@id, @name, @kind, @created_at, @updated_at)').run(row);
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
  deleteProject(id: string): void {
    this.db.prepare('DELETE FROM projects WHERE id = ?').run(id);
  }

  // classes
  classes(projectId: string): ClassRow[] {
    return this.db.prepare('SELECT * FROM classes WHERE project_id = ? ORDER BY position, created_at').all(projectId) as ClassRow[];
  }
  class(id: string): ClassRow | undefined {
    return this.db.prepare('SELECT * FROM classes WHERE id = ?').get(id) as ClassRow | undefined;
  }
  classByName(projectId: string, name: string): ClassRow | undefined {
    return this.db.prepare('SELECT * FROM classes WHERE project_id = ? AND name = ?').get(projectId, name) as ClassRow | undefined;
  }
  createClass(projectId: string, name: string): ClassRow {
    const pos = (this.db.prepare('SELECT COALESCE(MAX(position), -1) + 1 AS p FROM classes WHERE project_id = ?').get(projectId) as { p: number }).p;
    const row: ClassRow = { id: newId('c'), project_id: projectId, name, position: pos, created_at: now() };
    this.db.prepare('INSERT INTO classes (id, project_id, name, position, created_at) VALUES (@id, @project_id, @name, @position, @created_at)').run(row);
    this.touchProject(projectId);
    return row;
  }
  renameClass(id: string, name: string): void {
    this.db.prepare('UPDATE classes SET name = ? WHERE id = ?').run(name, id);
  }
  deleteClass(id: string): void {
    this.db.prepare('DELETE FROM classes WHERE id = ?').run(id);
  }
  classCounts(projectId: string): Map<string, number> {
    const rows = this.db.prepare('SELECT class_id, COUNT(*) AS n FROM examples WHERE project_id = ? GROUP BY class_id').all(projectId) as { class_id: string; n: number }[];
    return new Map(rows.map((r) => [r.class_id, r.n]));
  }

  // files and examples
  file(sha256: string): FileRow | undefined {
    return this.db.prepare('SELECT * FROM files WHERE sha256 = ?').get(sha256) as FileRow | undefined;
  }
  addFile(f: Omit<FileRow, 'created_at'>): void {
    this.db.prepare('INSERT OR IGNORE INTO files (sha256, size, mime, width, height, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(f.sha256, f.size, f.mime, f.width, f.height, now());
  }
  addExample(projectId: string, classId: string, v: { sha256?: string; text?: string }): ExampleRow {
    const row: ExampleRow = { id: newId('e'), project_id: projectId, class_id: classId, sha256: v.sha256 ?? null, text: v.text ?? null, created_at: now() };
    this.db.prepare('INSERT INTO examples (id, project_id, class_id, sha256, text, created_at) VALUES (@id, @project_id, @class_id, @sha256, @text, @created_at)').run(row);
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
    const lim = o.limit ?? -1, off = o.offset ?? 0;
    if (o.classId) return this.db.prepare('SELECT * FROM examples WHERE project_id = ? AND class_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?').all(projectId, o.classId, lim, off) as ExampleRow[];
    return this.db.prepare('SELECT * FROM examples WHERE project_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?').all(projectId, lim, off) as ExampleRow[];
  }
  exampleCount(projectId: string, classId?: string): number {
    const r = classId
      ? this.db.prepare('SELECT COUNT(*) AS n FROM examples WHERE project_id = ? AND class_id = ?').get(projectId, classId)
      : this.db.prepare('SELECT COUNT(*) AS n FROM examples WHERE project_id = ?').get(projectId);
    return (r as { n: number }).n;
  }
  deleteExample(id: string): void {
    this.db.prepare('DELETE FROM examples WHERE id = ?').run(id);
  }

  // runs
  createRun(projectId: string, backbone: string, method: string, settings: object): RunRow {
    const t = now();
    const row: RunRow = {
      id: newId('r'), project_id: projectId, status: 'queued', backbone, method, settings: JSON.stringify(settings),
      created_at: t, queued_at: t, started_at: null, finished_at: null, phase: 'queued', fraction: 0, eta_seconds: null,
      error: null, resumable: null, evaluation: null, snapshot: null,
    };
    this.db.prepare(`INSERT INTO runs (id, project_id, status, backbone, method, settings, created_at, queued_at, phase, fraction)
      VALUES (@id, @project_id, @status, @backbone, @method, @settings, @created_at, @queued_at, @phase, @fraction)`).run(row);
    return row;
  }
  run(id: string): RunRow | undefined {
    return this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
  }
  runs(projectId: string): RunRow[] {
    return this.db.prepare('SELECT * FROM runs WHERE project_id = ? ORDER BY created_at DESC, id').all(projectId) as RunRow[];
  }
  runsWithStatus(status: RunStatus): RunRow[] {
    return this.db.prepare('SELECT * FROM runs WHERE status = ? ORDER BY queued_at, id').all(status) as RunRow[];
  }
  updateRun(id: string, fields: Partial<Omit<RunRow, 'id' | 'project_id'>>): void {
    const keys = Object.keys(fields);
    if (!keys.length) return;
    this.db.prepare(`UPDATE runs SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...fields, id });
  }
  deleteRun(id: string): void {
    this.db.prepare('DELETE FROM runs WHERE id = ?').run(id);
  }
  addMetric(m: MetricRow): void {
    this.db.prepare('INSERT OR REPLACE INTO run_metrics (run_id, epoch, loss, accuracy, val_accuracy) VALUES (@run_id, @epoch, @loss, @accuracy, @val_accuracy)').run(m);
  }
  clearMetrics(runId: string, afterEpoch = 0): void {
    this.db.prepare('DELETE FROM run_metrics WHERE run_id = ? AND epoch > ?').run(runId, afterEpoch);
  }
  metrics(runId: string): MetricRow[] {
    return this.db.prepare('SELECT * FROM run_metrics WHERE run_id = ? ORDER BY epoch').all(runId) as MetricRow[];
  }
}
