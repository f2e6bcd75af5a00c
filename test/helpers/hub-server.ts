/**
 * A Hugging Face hub on 127.0.0.1 for tests: the routes @huggingface/hub and Graft's hub client call
 * (GET /api/models/{repo}/revision/{rev}, GET /api/models/{repo}/tree/{rev}[/{path}],
 * GET|HEAD /{repo}/resolve/{rev}/{path}) with the hub's headers (ETag, X-Repo-Commit, X-Linked-Etag,
 * X-Linked-Size, Content-Length, Accept-Ranges; Range → 206 + Content-Range; X-Error-Code on errors;
 * 401 for a private repository without the token). Faults on demand: drop or stall a download half way,
 * flip a byte, hide a file. Every request is logged with the body bytes it was sent.
 * Also `tinyModelRepo()`: a Transformers.js-layout model folder (a real ONNX network written by Graft).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Graph } from '../../src/graph/graph.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { encodeOnnx } from '../../src/formats/onnx.js';

export interface HubRepoSpec {
  /** ORG/NAME */
  id: string;
  files: Record<string, Uint8Array | string>;
  /** Which files are stored with LFS (sha256 ETag, X-Linked-Etag). Default: .onnx/.onnx_data files and files of 10 KiB or more. */
  lfs?: (path: string, size: number) => boolean;
  /** Served only with `Authorization: Bearer <token>`; 401 otherwise. */
  private?: boolean;
}

export interface RequestLog {
  method: string;
  /** Path and query as received. */
  url: string;
  range?: string;
  authorized: boolean;
  status: number;
  /** Body bytes written for this request (file bytes for resolve requests). */
  bodyBytes: number;
}

interface StoredFile {
  data: Buffer;
  lfs: boolean;
  /** git blob sha1 (every file has one; for LFS files it is the pointer's) */
  oid: string;
  sha256: string;
}

interface StoredRepo {
  id: string;
  private: boolean;
  commit: string;
  files: Map<string, StoredFile>;
}

export interface HubServer {
  /** http://127.0.0.1:PORT — use as HF_ENDPOINT. */
  url: string;
  /** The token private repositories accept (starts with hf_, as the client requires). */
  token: string;
  requests: RequestLog[];
  /** The commit hash `main` resolves to in a repository. */
  commit(repo: string): string;
  /** The blob name (ETag) the hub gives a file: sha256 for LFS files, git sha1 otherwise. */
  etag(repo: string, path: string): string;
  /** The next download of this file sends only its first `bytes` bytes, then drops the connection. */
  dropAfter(repo: string, path: string, bytes: number): void;
  /** The next download of this file sends its first `bytes` bytes, then nothing more (the connection stays open). */
  stallAfter(repo: string, path: string, bytes: number): void;
  /** Downloads of this file have the byte at `index` flipped (until clearFaults). */
  corrupt(repo: string, path: string, index?: number): void;
  /** Downloads of this file answer 404 EntryNotFound, though the tree lists it (until clearFaults). */
  hide(repo: string, path: string): void;
  clearFaults(): void;
  /** The resolve requests (downloads) logged for a file path. */
  downloads(path: string): RequestLog[];
  close(): Promise<void>;
}

export const gitBlobSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function lfsPointer(f: Buffer): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(f)}\nsize ${f.length}\n`);
}

function store(spec: HubRepoSpec): StoredRepo {
  const isLfs = spec.lfs ?? ((p: string, n: number) => /\.onnx(_data)?$/.test(p) || n >= 10240);
  const files = new Map<string, StoredFile>();
  for (const [path, content] of Object.entries(spec.files).sort(([a], [b]) => a.localeCompare(b))) {
    const data = Buffer.from(content);
    const lfs = isLfs(path, data.length);
    files.set(path, { data, lfs, oid: gitBlobSha1(lfs ? lfsPointer(data) : data), sha256: sha256(data) });
  }
  const commit = createHash('sha1')
    .update([...files].map(([p, f]) => `${p} ${f.oid}`).join('\n'))
    .digest('hex');
  return { id: spec.id, private: !!spec.private, commit, files };
}

export async function startHubServer(specs: HubRepoSpec[], opts: { token?: string } = {}): Promise<HubServer> {
  const token = opts.token ?? 'hf_test_token_0123456789';
  const repos = new Map(specs.map((s) => [s.id, store(s)]));
  const requests: RequestLog[] = [];
  const drops = new Map<string, number>();
  const stalls = new Map<string, number>();
  const corrupted = new Map<string, number>();
  const hidden = new Set<string>();

  const json = (res: ServerResponse, log: RequestLog, status: number, body: unknown, errorCode?: string) => {
    const s = JSON.stringify(body);
    log.status = status;
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(s),
      ...(errorCode ? { 'X-Error-Code': errorCode } : {}),
    });
    res.end(s);
  };

  /** The repository a request names, or an error already answered. */
  const repoFor = (
    name: string,
    req: IncomingMessage,
    res: ServerResponse,
    log: RequestLog,
  ): StoredRepo | undefined => {
    const r = repos.get(name);
    if (r?.private && !log.authorized) {
      json(res, log, 401, { error: 'Invalid username or password.' }, 'RepoNotFound');
      return undefined;
    }
    if (!r) {
      json(res, log, 404, { error: 'Repository not found' }, 'RepoNotFound');
      return undefined;
    }
    void req;
    return r;
  };
  const revisionOk = (r: StoredRepo, rev: string) => rev === 'main' || rev === 'HEAD' || rev === r.commit;

  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const log: RequestLog = {
      method: req.method ?? 'GET',
      url: req.url ?? '',
      ...(req.headers.range ? { range: req.headers.range } : {}),
      authorized: req.headers.authorization === `Bearer ${token}`,
      status: 0,
      bodyBytes: 0,
    };
    requests.push(log);
    const parts = u.pathname.split('/').slice(1).map(decodeURIComponent);

    // /api/models/ORG/NAME/revision/REV
    if (parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'revision') {
      const r = repoFor(`${parts[2]}/${parts[3]}`, req, res, log);
      if (!r) return;
      const rev = parts.slice(5).join('/');
      if (!revisionOk(r, rev)) return json(res, log, 404, { error: `Invalid rev id: ${rev}` }, 'RevisionNotFound');
      return json(res, log, 200, {
        _id: `id-${r.id}`,
        id: r.id,
        sha: r.commit,
        private: r.private,
        gated: false,
        downloads: 0,
        likes: 0,
        pipeline_tag: null,
        lastModified: '2024-01-01T00:00:00.000Z',
        siblings: [...r.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    // /api/models/ORG/NAME/tree/REV[/PATH]?recursive=
    if (parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'tree') {
      const r = repoFor(`${parts[2]}/${parts[3]}`, req, res, log);
      if (!r) return;
      const rev = parts[5] ?? 'main';
      if (!revisionOk(r, rev)) return json(res, log, 404, { error: `Invalid rev id: ${rev}` }, 'RevisionNotFound');
      const base = parts.slice(6).join('/');
      const recursive = u.searchParams.get('recursive') === 'true';
      const prefix = base ? `${base}/` : '';
      const entries: unknown[] = [];
      const dirs = new Set<string>();
      for (const [path, f] of r.files) {
        if (!path.startsWith(prefix)) continue;
        const rest = path.slice(prefix.length).split('/');
        for (let i = 1; i < rest.length && (recursive || i === 1); i++) dirs.add(prefix + rest.slice(0, i).join('/'));
        if (!recursive && rest.length > 1) continue;
        entries.push({
          type: 'file',
          oid: f.oid,
          size: f.data.length,
          path,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.data.length, pointerSize: lfsPointer(f.data).length } } : {}),
        });
      }
      for (const d of dirs)
        entries.push({ type: 'directory', oid: createHash('sha1').update(d).digest('hex'), size: 0, path: d });
      return json(res, log, 200, entries);
    }
    // /ORG/NAME/resolve/REV/PATH
    if (parts[2] === 'resolve' && parts.length >= 5) {
      const r = repoFor(`${parts[0]}/${parts[1]}`, req, res, log);
      if (!r) return;
      const rev = parts[3]!;
      if (!revisionOk(r, rev)) return json(res, log, 404, { error: `Invalid rev id: ${rev}` }, 'RevisionNotFound');
      const path = parts.slice(4).join('/');
      const f = r.files.get(path);
      const key = `${r.id}/${path}`;
      if (!f || hidden.has(key)) return json(res, log, 404, { error: 'Entry not found' }, 'EntryNotFound');
      let data = f.data;
      if (corrupted.has(key)) {
        data = Buffer.from(data);
        const i = corrupted.get(key)!;
        data[i] = data[i]! ^ 0xff;
      }
      const size = data.length;
      const headers: Record<string, string | number> = {
        'Content-Type': 'application/octet-stream',
        'Accept-Ranges': 'bytes',
        'X-Repo-Commit': r.commit,
        ETag: `"${f.lfs ? f.sha256 : f.oid}"`,
        ...(f.lfs ? { 'X-Linked-Etag': `"${f.sha256}"`, 'X-Linked-Size': size } : {}),
      };
      let start = 0;
      let end = size - 1;
      let status = 200;
      const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
      if (m) {
        start = m[1] ? Number(m[1]) : size - Number(m[2]);
        end = m[1] && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
        if (start >= size || start > end) {
          log.status = 416;
          res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
          return res.end();
        }
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      }
      const body = data.subarray(start, end + 1);
      headers['Content-Length'] = body.length;
      log.status = status;
      res.writeHead(status, headers);
      if (req.method === 'HEAD') return res.end();
      const drop = drops.get(key);
      if (drop !== undefined) {
        drops.delete(key);
        const part = body.subarray(0, Math.max(0, drop - start));
        log.bodyBytes = part.length;
        res.write(part, () => setTimeout(() => res.socket?.destroy(), 30));
        return;
      }
      const stall = stalls.get(key);
      if (stall !== undefined) {
        stalls.delete(key);
        const part = body.subarray(0, Math.max(0, stall - start));
        log.bodyBytes = part.length;
        res.write(part);
        return;
      }
      log.bodyBytes = body.length;
      return res.end(body);
    }
    json(res, log, 404, { error: 'not found' });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  const get = (repo: string) => {
    const r = repos.get(repo);
    if (!r) throw new Error(`no repo ${repo} on the test hub`);
    return r;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    requests,
    commit: (repo) => get(repo).commit,
    etag: (repo, path) => {
      const f = get(repo).files.get(path)!;
      return f.lfs ? f.sha256 : f.oid;
    },
    dropAfter: (repo, path, bytes) => void drops.set(`${repo}/${path}`, bytes),
    stallAfter: (repo, path, bytes) => void stalls.set(`${repo}/${path}`, bytes),
    corrupt: (repo, path, index = 0) => void corrupted.set(`${repo}/${path}`, index),
    hide: (repo, path) => void hidden.add(`${repo}/${path}`),
    clearFaults: () => {
      drops.clear();
      stalls.clear();
      corrupted.clear();
      hidden.clear();
    },
    downloads: (path) =>
      requests.filter(
        (q) =>
          q.method === 'GET' &&
          /\/resolve\//.test(q.url) &&
          decodeURIComponent(q.url.split('?')[0]!).endsWith(`/${path}`),
      ),
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/**
 * A tiny model folder in the Transformers.js layout: config.json, a real fp32 ONNX network
 * (x [N,256] → Gemm → Tanh → Gemm → logits [N,3], about 66 KB) as onnx/model.onnx, a quantized
 * variant beside it (which commands must not download), and a README.
 */
export function tinyModelRepo(seed = 1): Record<string, Uint8Array | string> {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.2;
  const w = (dims: number[]): Tensor => ({
    dtype: 'float32',
    dims,
    data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, rnd),
  });
  const g = new Graph();
  g.name = 'tiny';
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['N', 256] });
  g.initializers.set('W1', w([64, 256]));
  g.initializers.set('b1', w([64]));
  g.initializers.set('W2', w([3, 64]));
  g.nodes.push({
    name: 'fc1',
    opType: 'Gemm',
    domain: '',
    inputs: ['x', 'W1', 'b1'],
    outputs: ['h'],
    attrs: { transB: { type: 'int', value: 1 } },
  });
  g.nodes.push({ name: 'act', opType: 'Tanh', domain: '', inputs: ['h'], outputs: ['t'], attrs: {} });
  g.nodes.push({
    name: 'fc2',
    opType: 'Gemm',
    domain: '',
    inputs: ['t', 'W2'],
    outputs: ['logits'],
    attrs: { transB: { type: 'int', value: 1 } },
  });
  g.outputs = [{ name: 'logits', dtype: 'float32', shape: ['N', 3] }];
  const model = encodeOnnx(g);
  return {
    'config.json': JSON.stringify({ model_type: 'tiny', id2label: { 0: 'a', 1: 'b', 2: 'c' } }, null, 2),
    'README.md': '# tiny\nA test model.\n',
    'onnx/model.onnx': model,
    'onnx/model_quantized.onnx': model.subarray(0, 4096),
  };
}
