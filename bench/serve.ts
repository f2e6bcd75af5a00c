/**
 * `graft serve` under load (issue 13, item 8): autocannon with C concurrent clients (default 32) on
 * loopback, each POSTing the same JPEG to one image classifier, against `graft serve` run as a child
 * process (its own process and event loop, as deployed) with dynamic batching on (--max-batch 32,
 * --max-delay-ms 5) and off (--max-batch 1); p50/p99 latency and requests/s.
 *
 * The peer: plain onnxruntime-node in this process, one InferenceSession on the same model.onnx with
 * the same session options as the server's (intra-op threads, graph optimization 'all', pool threads
 * not spinning), and C concurrent async callers, each looping `await session.run()` on ONE pre-decoded
 * image (a [1, C, H, W] tensor made once, before timing): no HTTP, no JPEG decoding, no batching.
 * Target: batched `graft serve` throughput ≥ 80 % of the peer's at 32 clients. A second peer row uses
 * onnxruntime's default spinning (threads spin-wait between runs), and a third decodes the JPEG in
 * each caller before its run (Graft's prepareImage, the server's decoding), for reference.
 *
 * The model: a feature classifier (logistic head) on the Coral MobileNetV2 (224×224, 1280-d features)
 * fitted here on 10 Fashion-MNIST classes × 8 images, when ../shared has both; else the bundled MNIST
 * network's 10-digit classifier (28×28 grey). The request image: Coral's cat photo resized to
 * --side px (default 256) as JPEG quality 85, decoded and fitted by the server per request; with
 * --request pixels, the same image decoded and fitted once by the client and sent as raw pixels at the
 * model's size (Content-Type application/vnd.graft.pixels), which the server only normalizes.
 *
 * Rounds are interleaved (peer, batched, unbatched, peer, …) and each row reports the median round.
 * CPU time per request is measured too (the server process's user + system time from /proc, the
 * peer's from process.cpuUsage): on a shared, loaded machine, requests/s follow the neighbours' load,
 * while CPU per request does much less.
 *
 *   npx tsx bench/serve.ts                       # 3 rounds × 10 s per configuration, 32 clients, 2 threads
 *   npx tsx bench/serve.ts --duration 5 --rounds 1 --connections 8 --threads 1
 * Options: --connections N (32), --duration S (10), --rounds N (3), --threads N (onnxruntime intra-op
 * threads for the server's sessions and the peer's; default GRAFT_THREADS, else 2), --side PX (256),
 * --max-delay-ms M (5), --model mnist (force the bundled MNIST classifier), --request jpeg|pixels (jpeg),
 * --max-batch B[,BxI…] (32: one batched server per entry, I instances each), --classifier DIR (a saved one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { assetPath, projectRoot } from '../src/data/assets.js';
import { loadModel } from '../src/formats/load.js';
import { makeBatchDynamic } from '../src/graph/rewrites.js';
import { getPreprocess, setPreprocess } from '../src/formats/preprocess.js';
import { loadLabelledImages, greyToBmp } from '../src/data/labelled-images.js';
import { readPixelCsv } from '../src/data/tabular.js';
import { trainFeatureClassifier } from '../src/features/classifier.js';
import { prepareImage, type ImageInput } from '../src/server/registry.js';
import { PIXELS_TYPE } from '../src/server/app.js';
import { loadPixels } from '../src/data/image.js';
import { sessionOptions } from '../src/runtime/session.js';

interface LatencyStats {
  p50: number;
  p99: number;
  average: number;
}
interface AcResult {
  requests: { average: number; total: number };
  latency: LatencyStats;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
type Autocannon = (o: Record<string, unknown>) => Promise<AcResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const argv = process.argv.slice(2);
if (argv.includes('--help')) {
  console.log(
    'npx tsx bench/serve.ts [--connections 32] [--duration 10] [--rounds 3] [--threads 2] [--side 256] [--max-batch 32[,8,4x2,…]] [--max-delay-ms 5] [--model mnist] [--classifier DIR] [--request jpeg|pixels]',
  );
  process.exit(0);
}
const flag = (name: string, dflt: number): number => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a non-negative number`);
  return v;
};
const connections = flag('connections', 32),
  duration = flag('duration', 10),
  rounds = flag('rounds', 3);
const threads = flag('threads', Number(process.env['GRAFT_THREADS']) || 2),
  side = flag('side', 256),
  maxDelay = flag('max-delay-ms', 5);
/**
 * One batched server per --max-batch entry (a comma list), each measured in every round: `B` is
 * --max-batch B; `BxI` adds --instances I, each instance with --threads / I onnxruntime threads.
 */
const servers = (argv.includes('--max-batch') ? argv[argv.indexOf('--max-batch') + 1]! : '32').split(',').map((v) => {
  const [b, i = 1] = v.split('x').map(Number);
  if (!Number.isInteger(b) || b! < 2 || !Number.isInteger(i) || i < 1)
    throw new Error('--max-batch takes B or BxI entries (B ≥ 2 inputs per run, I ≥ 1 instances), comma-separated');
  return { maxBatch: b!, instances: i, threads: Math.max(1, Math.floor(threads / i)), label: v };
});
const requestKind = argv.includes('--request') ? argv[argv.indexOf('--request') + 1]! : 'jpeg';
if (requestKind !== 'jpeg' && requestKind !== 'pixels') throw new Error('--request is jpeg or pixels');
const forceMnist = argv[argv.indexOf('--model') + 1] === 'mnist' && argv.includes('--model');

const tmp = mkdtempSync(join(tmpdir(), 'graft-bench-serve-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

/** The classifier folder and a description of it. */
async function classifier(): Promise<{ dir: string; what: string }> {
  const given = argv.indexOf('--classifier');
  if (given >= 0) return { dir: resolve(argv[given + 1]!), what: `the saved classifier ${argv[given + 1]}` };
  const coral = assetPath('models/coral/mobilenet_v2_1.0_224_quant.tflite');
  const fm = assetPath('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');
  const dir = join(tmp, 'clf');
  if (!forceMnist && existsSync(coral) && existsSync(fm)) {
    const data = loadLabelledImages(fm, { maxPerClass: 8 });
    await trainFeatureClassifier(coral, data, { valFraction: 0, testFraction: 0.25, out: dir, seed: 0 });
    return {
      dir,
      what: 'Coral MobileNetV2 1.0 224 (uint8 TFLite imported as float ONNX) + logistic head, 10 Fashion-MNIST classes',
    };
  }
  const g = makeBatchDynamic(loadModel(assetPath('models/onnxjs-demo/mnist.onnx')));
  setPreprocess(g, {
    layout: 'NCHW',
    width: 28,
    height: 28,
    channels: 1,
    channelOrder: 'GRAY',
    mean: [0],
    std: [1 / 255],
    resize: 'stretch',
    source: 'flag',
  });
  const t = readPixelCsv(assetPath('datasets/digits-8x8/digits.csv.gz'));
  const px = t.pixels.slice(0, 300).map((p) =>
    greyToBmp(
      Uint8Array.from(p, (v) => Math.round((v * 255) / 16)),
      t.side,
      t.side,
    ),
  );
  await trainFeatureClassifier(
    g,
    {
      inputs: px,
      labels: t.labels.slice(0, 300),
      classes: Array.from({ length: 10 }, (_, i) => String(i)),
      names: [],
      kind: 'idx',
    },
    { out: dir, seed: 0 },
  );
  return { dir, what: 'bundled MNIST CNN (onnxjs demo) + logistic head, 10 digits' };
}

async function requestImage(): Promise<Buffer> {
  const photo = assetPath('models/coral/cat_720p.jpg');
  const src = existsSync(photo)
    ? sharp(photo)
    : sharp({ create: { width: 640, height: 480, channels: 3, background: '#468' } });
  return src.resize(side, side, { fit: 'cover' }).jpeg({ quality: 85 }).toBuffer();
}

/** Start `graft serve` (the TypeScript sources, as the tests do) and return its URL and process id. */
function startServer(
  dir: string,
  maxBatch: number,
  o: { instances?: number; threads?: number } = {},
): Promise<{ url: string; pid: number }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(projectRoot, 'src/cli/main.ts'),
      '--threads',
      String(o.threads ?? threads),
      'serve',
      `m=${dir}`,
      '--port',
      '0',
      '--max-batch',
      String(maxBatch),
      '--max-delay-ms',
      String(maxDelay),
      '--max-queue',
      '4096',
      '--instances',
      String(o.instances ?? 1),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '',
    err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((res, rej) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) res({ url: m[1]!, pid: child.pid! });
    });
    child.on('exit', (code) => rej(new Error(`graft serve exited (${code}): ${err}`)));
  });
}

interface Row {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  batch?: number;
  cpuMs?: number;
}

/** CPU time (user + system, all threads) of a process so far, ms: /proc/PID/stat's utime and stime (100 ticks/s). */
function cpuMsOf(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function load(server: { url: string; pid: number }, req: Request, seconds: number): Promise<Row> {
  const url = server.url;
  const c0 = cpuMsOf(server.pid);
  const r = await autocannon({
    url: `${url}/v1/models/m/predict?top=1${req.query}`,
    method: 'POST',
    connections,
    duration: seconds,
    headers: { 'content-type': req.contentType },
    body: req.body,
  });
  const cpu = cpuMsOf(server.pid) - c0;
  return {
    p50: r.latency.p50,
    p99: r.latency.p99,
    rps: r.requests.total / r.duration,
    errors: r.non2xx + r.errors + r.timeouts,
    cpuMs: cpu / Math.max(1, r.requests.total),
  };
}

async function stats(url: string): Promise<{ runs: number; inputs: number }> {
  const m = ((await (await fetch(`${url}/v1/models/m`)).json()) as { batching: { runs: number; inputs: number } })
    .batching;
  return { runs: m.runs, inputs: m.inputs };
}

/** The peer: `connections` concurrent callers on one session, each running one pre-decoded image at a time. */
async function peer(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, seconds: number): Promise<Row> {
  const lat: number[] = [];
  const c0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await session.run(feeds);
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return {
    p50: q(0.5),
    p99: q(0.99),
    rps: lat.length / secs,
    errors: 0,
    cpuMs: (c.user + c.system) / 1000 / lat.length,
  };
}

/** The peer with decoding: each caller decodes the JPEG request (Graft's prepareImage, as the server does), then runs it alone. */
async function peerDecoding(session: ort.InferenceSession, seconds: number): Promise<Row> {
  const lat: number[] = [];
  const c0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  const name = session.inputNames[0]!;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        const x = await prepareImage(request.image, pre);
        await session.run({ [name]: new ort.Tensor('float32', x, [1, pre.channels, pre.height, pre.width]) });
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return {
    p50: q(0.5),
    p99: q(0.99),
    rps: lat.length / secs,
    errors: 0,
    cpuMs: (c.user + c.system) / 1000 / lat.length,
  };
}

const median = (rows: Row[]): Row => [...rows].sort((a, b) => a.rps - b.rps)[Math.floor(rows.length / 2)]!;

const { dir, what } = await classifier();
const jpeg = await requestImage();
const model = loadModel(dir);
const pre = getPreprocess(model)!;
/** What each client sends: the JPEG, or its pixels fitted to the model's input once, by the client. */
interface Request {
  body: Buffer;
  contentType: string;
  query: string;
  image: ImageInput;
}
const request: Request = await (async () => {
  if (requestKind === 'jpeg')
    return { body: jpeg, contentType: 'image/jpeg', query: '', image: { name: 'bench', bytes: jpeg } };
  const px = await loadPixels(jpeg, pre);
  const body = Buffer.from(px.data.buffer, px.data.byteOffset, px.data.byteLength);
  const dims = { width: px.width, height: px.height, channels: px.channels };
  return {
    body,
    contentType: PIXELS_TYPE,
    query: `&width=${dims.width}&height=${dims.height}&channels=${dims.channels}`,
    image: { name: 'bench', bytes: body, pixels: dims },
  };
})();
const x = await prepareImage(request.image, pre);
const modelBytes = readFileSync(join(dir, 'model.onnx'));
const session = await ort.InferenceSession.create(
  modelBytes,
  sessionOptions({ threads, config: { 'session.intra_op.allow_spinning': '0' } }),
);
const spinning = await ort.InferenceSession.create(modelBytes, sessionOptions({ threads }));
const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', x, [1, pre.channels, pre.height, pre.width]) };
const batchedServers: { url: string; pid: number }[] = [];
for (const v of servers) batchedServers.push(await startServer(dir, v.maxBatch, v));
const alone = await startServer(dir, 1);
// warm-up: every server and the peers, 2 s each
for (const s of batchedServers) await load(s, request, 2);
await load(alone, request, 2);
await peer(session, feeds, 2);
await peer(spinning, feeds, 2);

const res: Record<'peer' | 'spinning' | 'decoding' | 'unbatched', Row[]> & { batched: Row[][] } = {
  peer: [],
  spinning: [],
  decoding: [],
  batched: servers.map(() => []),
  unbatched: [],
};
const load0 = loadavg()[0]!;
for (let r = 0; r < rounds; r++) {
  res.peer.push(await peer(session, feeds, duration));
  const bs: Row[] = [];
  for (const [i, server] of batchedServers.entries()) {
    const s0 = await stats(server.url);
    const b = await load(server, request, duration);
    const s1 = await stats(server.url);
    bs.push({ ...b, batch: (s1.inputs - s0.inputs) / Math.max(1, s1.runs - s0.runs) });
    res.batched[i]!.push(bs[i]!);
  }
  res.unbatched.push(await load(alone, request, duration));
  res.spinning.push(await peer(spinning, feeds, duration));
  res.decoding.push(await peerDecoding(session, duration));
  process.stderr.write(
    `round ${r + 1}/${rounds}: peer ${res.peer[r]!.rps.toFixed(1)}/s, batched ${bs.map((b, i) => `(${servers[i]!.label}) ${b.rps.toFixed(1)}`).join(', ')}/s, unbatched ${res.unbatched[r]!.rps.toFixed(1)}/s, spinning peer ${res.spinning[r]!.rps.toFixed(1)}/s, decoding peer ${res.decoding[r]!.rps.toFixed(1)}/s\n`,
  );
}
const load1 = loadavg()[0]!;
await session.release();
await spinning.release();

const p = median(res.peer),
  bAll = res.batched.map(median),
  u = median(res.unbatched),
  sp = median(res.spinning),
  dp = median(res.decoding);
const fmt = (v: number) => v.toFixed(1);
console.log(
  `\ngraft serve under load, ${new Date().toISOString().slice(0, 10)}: ${connections} concurrent clients, ${duration} s × ${rounds} rounds (median round), onnxruntime threads ${threads}`,
);
console.log(
  requestKind === 'jpeg'
    ? `model: ${what}; request: ${side}×${side} JPEG, ${jpeg.length} bytes`
    : `model: ${what}; request: raw pixels at the model's size (the ${side}×${side} JPEG decoded and fitted by the client), ${request.body.length} bytes`,
);
console.log(
  `machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}); load average ${load0.toFixed(2)} before, ${load1.toFixed(2)} after`,
);
console.log('');
console.log('| configuration | requests/s | p50 ms | p99 ms | errors | mean batch | CPU ms / request |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const [i, b] of bAll.entries())
  console.log(
    `| graft serve, batching on (--max-batch ${servers[i]!.maxBatch}${servers[i]!.instances > 1 ? ` --instances ${servers[i]!.instances} --threads ${servers[i]!.threads}` : ''}, --max-delay-ms ${maxDelay}) | ${fmt(b.rps)} | ${fmt(b.p50)} | ${fmt(b.p99)} | ${b.errors} | ${b.batch?.toFixed(1)} | ${fmt(b.cpuMs!)} |`,
  );
console.log(
  `| graft serve, batching off (--max-batch 1) | ${fmt(u.rps)} | ${fmt(u.p50)} | ${fmt(u.p99)} | ${u.errors} | 1 | ${fmt(u.cpuMs!)} |`,
);
console.log(
  `| peer: onnxruntime-node in-process, ${connections} callers × batch 1, pre-decoded input, server's session options | ${fmt(p.rps)} | ${fmt(p.p50)} | ${fmt(p.p99)} | 0 | 1 | ${fmt(p.cpuMs!)} |`,
);
console.log(
  `| (reference) the same peer with onnxruntime's default spin-waiting threads | ${fmt(sp.rps)} | ${fmt(sp.p50)} | ${fmt(sp.p99)} | 0 | 1 | ${fmt(sp.cpuMs!)} |`,
);
console.log(
  `| (reference) the peer preparing each request first (Graft's prepareImage, as the server: ${requestKind === 'jpeg' ? 'JPEG decoded and fitted' : 'pixels normalized'}) | ${fmt(dp.rps)} | ${fmt(dp.p50)} | ${fmt(dp.p99)} | 0 | 1 | ${fmt(dp.cpuMs!)} |`,
);
console.log('');
for (const [i, b] of bAll.entries()) {
  const ratio = b.rps / p.rps;
  console.log(`${servers[i]!.label}:`);
  console.log(
    `  batched / peer throughput: ${(100 * ratio).toFixed(1)} % (target ≥ 80 %: ${ratio >= 0.8 ? 'met' : 'missed'})`,
  );
  // per round: the ratio to the peer measured in the same round (drift in the machine's load cancels better)
  const per = res.batched[i]!.map((r, k) => r.rps / res.peer[k]!.rps).sort((x, y) => x - y);
  console.log(
    `  batched / peer per round: ${per.map((v) => (100 * v).toFixed(0) + ' %').join(', ')} (median ${(100 * per[Math.floor(per.length / 2)]!).toFixed(1)} %)`,
  );
  console.log(`  batched / decoding peer throughput: ${((100 * b.rps) / dp.rps).toFixed(1)} %`);
  console.log(
    `  CPU time per request, peer / batched: ${((100 * p.cpuMs!) / b.cpuMs!).toFixed(1)} % (on an otherwise idle machine, where both are CPU-bound, the throughput ratio tends to this)`,
  );
}
console.log(`unbatched / peer: ${((100 * u.rps) / p.rps).toFixed(1)} %`);
process.exit(0);
