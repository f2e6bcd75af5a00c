/**
 * `graft serve MODEL_DIR…`: saved classifiers behind an HTTP API (src/server). Loads each folder (one
 * onnxruntime session each, or --instances of them), listens on 127.0.0.1 unless told otherwise (another host needs a token),
 * prints its URL, and stops cleanly on SIGINT or SIGTERM: no new connections, requests in progress
 * answered, queued inputs run, sessions released.
 */
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { int, num } from './parse.js';
import { GraftError } from '../util/errors.js';

interface ServeFlags {
  port: string;
  host: string;
  token?: string;
  maxBatch: string;
  maxDelayMs: string;
  maxQueue: string;
  maxBodyMb: string;
  maxInputs: string;
  instances: string;
  log?: boolean;
}

/** `DIR` or `NAME=DIR` (an existing path is always a folder, even with '=' in it). */
export function parseModelArg(a: string): { name?: string; dir: string } {
  const eq = a.indexOf('=');
  if (eq > 0 && !existsSync(a)) return { name: a.slice(0, eq), dir: a.slice(eq + 1) };
  return { dir: a };
}

export async function serveAction(models: string[], o: ServeFlags): Promise<void> {
  const port = int(o.port, '--port');
  if (port < 0 || port > 65535) throw new GraftError(`--port must be 0 to 65535, got ${port}`);
  const maxBatch = int(o.maxBatch, '--max-batch'),
    maxQueue = int(o.maxQueue, '--max-queue'),
    maxInputs = int(o.maxInputs, '--max-inputs'),
    instances = int(o.instances, '--instances');
  const maxDelayMs = num(o.maxDelayMs, '--max-delay-ms'),
    bodyLimitMb = num(o.maxBodyMb, '--max-body-mb');
  if (maxBatch < 1) throw new GraftError(`--max-batch must be at least 1, got ${maxBatch}`);
  if (maxDelayMs < 0) throw new GraftError(`--max-delay-ms must be at least 0, got ${maxDelayMs}`);
  if (maxQueue < 1) throw new GraftError(`--max-queue must be at least 1, got ${maxQueue}`);
  if (maxInputs < 1) throw new GraftError(`--max-inputs must be at least 1, got ${maxInputs}`);
  if (instances < 1) throw new GraftError(`--instances must be at least 1, got ${instances}`);
  if (!(bodyLimitMb > 0)) throw new GraftError(`--max-body-mb must be above 0, got ${bodyLimitMb}`);
  const token = o.token ?? process.env['GRAFT_SERVE_TOKEN'] ?? undefined;
  // loaded here, not at the top: other commands do not pay for Fastify's start-up
  const { createServer, predictRoutes } = await import('../server/app.js');
  const { ModelRegistry } = await import('../server/registry.js');
  // one libvips thread per image: concurrent requests decode in parallel on libuv's pool instead of
  // each image spreading over every core, against onnxruntime's threads
  (await import('sharp')).default.concurrency(1);
  // the safety checks (host, token) run before any model is loaded
  const app = await createServer({
    host: o.host,
    ...(token ? { token } : {}),
    bodyLimitMb,
    maxInputs,
    ...(o.log ? { logger: { level: 'info' } } : {}),
  });
  const registry = new ModelRegistry({ batching: { maxBatch, maxDelayMs, maxQueue }, instances });
  try {
    for (const a of models) {
      const { name, dir } = parseModelArg(a);
      process.stderr.write(`loading ${dir}…\n`);
      const m = await registry.add(name, dir);
      const what =
        m.kind === 'image'
          ? `image classifier, ${m.image!.width}×${m.image!.height}`
          : `text classifier, ${m.text!.maxLength} tokens`;
      process.stderr.write(
        `  ${m.name}: ${what}, ${m.labels.length} classes (${m.labels.slice(0, 6).join(', ')}${m.labels.length > 6 ? ', …' : ''})\n`,
      );
    }
    await app.register(predictRoutes, { registry });
    const url = await app.listen({ host: o.host, port });
    process.stdout.write(`graft serve: listening on ${url}\n`);
    const first = registry.list()[0]!;
    const auth = token ? ` -H "Authorization: Bearer $GRAFT_SERVE_TOKEN"` : '';
    process.stdout.write(
      first.kind === 'image'
        ? `try: curl${auth} --data-binary @photo.jpg -H 'Content-Type: image/jpeg' ${url}/v1/models/${first.name}/predict\n`
        : `try: curl${auth} -H 'Content-Type: application/json' -d '{"texts": ["some text"]}' ${url}/v1/models/${first.name}/predict\n`,
    );
    process.stdout.write(`API: ${url}/openapi.json; stop with Ctrl-C\n`);
  } catch (e) {
    await app.close();
    await registry.close();
    throw e;
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`${sig} again: exiting now\n`);
        process.exit(1);
      }
      stopping = true;
      process.stderr.write(`${sig}: stopping (answering the requests in progress)…\n`);
      void (async () => {
        await app.close();
        await registry.close();
        process.stderr.write('stopped\n');
        resolve();
      })();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

export function serveCommand(): Command {
  return new Command('serve')
    .description(
      'serve saved classifiers (image or text folders from graft train) over HTTP: GET /v1/models, POST /v1/models/NAME/predict, GET /healthz, GET /openapi.json; concurrent requests are batched',
    )
    .argument('<models...>', 'classifier folders, each DIR (named after the folder) or NAME=DIR')
    .option('--port <p>', 'TCP port (0: any free port)', '8080')
    .option('--host <h>', 'address to listen on; anything but loopback needs --token', '127.0.0.1')
    .option(
      '--token <t>',
      'bearer token required on every request, at least 16 characters (default: GRAFT_SERVE_TOKEN)',
    )
    .option('--max-batch <n>', 'most inputs per onnxruntime run (1: no batching)', '32')
    .option('--max-delay-ms <ms>', 'longest wait for a batch to fill, after its first input arrived', '5')
    .option('--max-queue <n>', 'most inputs waiting per model; more are refused with 503', '256')
    .option(
      '--max-body-mb <mb>',
      'largest request body in MiB (a raw image, JSON, or all files of a multipart request); larger: 413',
      '16',
    )
    .option('--max-inputs <n>', 'most images or texts in one request; more: 413', '64')
    .option(
      '--instances <n>',
      'onnxruntime sessions per model, each on its own thread with --threads threads; up to n batches run at once',
      '1',
    )
    .option('--log', 'log each request (JSON lines on stdout)')
    .action(serveAction);
}
