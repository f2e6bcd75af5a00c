/**
 * The HTTP side of `graft serve` (and of Graft Studio, which reuses it): `createServer` builds a Fastify
 * app with the safety rules, and `predictRoutes` is the plugin with the prediction API over a
 * ModelRegistry (src/server/registry.ts):
 *
 *   GET  /healthz                    liveness and the number of models
 *   GET  /v1/models                  the models, their classes, batching limits and counters
 *   GET  /v1/models/:name            one model
 *   POST /v1/models/:name/predict    an image (raw image/* body), images (multipart), or {"texts": […]}
 *   GET  /openapi.json               the OpenAPI 3 document, generated from the route schemas
 *
 * Safety: loopback by default; any other address needs a bearer token, then checked on every route
 * (401). On loopback, a Host header that is not a loopback name is refused (403: DNS rebinding). A
 * state-changing request (POST, PUT, PATCH, DELETE) from a browser must be same-origin (the
 * `sameOrigin` hook, 403), unless it carries the valid bearer token (a browser never adds one on its
 * own, so it cannot be forged cross-site). Body and file limits → 413, files that do not decode as
 * images → 415 naming the file, bad JSON or fields → 400 naming the field, a full queue → 503. Every
 * error is JSON: { error, message } (and `hint` when there is one).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  type onRequestHookHandler,
} from 'fastify';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import { GraftError } from '../util/errors.js';
import { NAME_PATTERN, type ImageInput, type ModelRegistry } from './registry.js';

/** An error with its HTTP status. */
export class HttpError extends GraftError {
  constructor(
    readonly statusCode: number,
    message: string,
    hint?: string,
  ) {
    super(message, hint);
    this.name = 'HttpError';
  }
}

const ERROR_NAMES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'too_many_requests',
  500: 'internal_error',
  503: 'unavailable',
};

/** Fastify's and @fastify/multipart's error codes, by the status they mean here. */
const CODE_STATUS: Record<string, number> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_REQ_FILE_TOO_LARGE: 413,
  FST_FILES_LIMIT: 413,
  FST_PARTS_LIMIT: 413,
  FST_FIELDS_LIMIT: 413,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_INVALID_MULTIPART_CONTENT_TYPE: 415,
  FST_ERR_CTP_INVALID_JSON_BODY: 400,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
  FST_PROTO_VIOLATION: 400,
};

export interface ErrorBody {
  error: string;
  message: string;
  hint?: string;
}

/** The status and JSON body for any error thrown while handling a request. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  const e = err as { statusCode?: number; code?: string; validation?: unknown; message?: string; hint?: string };
  let status: number | undefined = (e.code ? CODE_STATUS[e.code] : undefined) ?? e.statusCode;
  if (e.validation) status = 400;
  if (status === undefined) status = err instanceof GraftError ? 400 : 500;
  if (!(status >= 400 && status <= 599)) status = 500;
  const message = status >= 500 && !(err instanceof GraftError) ? 'internal error' : String(e.message ?? err);
  return {
    status,
    body: {
      error: ERROR_NAMES[status] ?? `http_${status}`,
      message,
      ...(err instanceof GraftError && err.hint ? { hint: err.hint } : {}),
    },
  };
}

/** Whether a host name or address is this machine's loopback. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return (
    h === 'localhost' ||
    h.endsWith('.localhost') ||
    h === '::1' ||
    /^127(\.\d{1,3}){3}$/.test(h) ||
    h === '::ffff:127.0.0.1'
  );
}

/** Host name of a Host header value ("name:port", "[v6]:port"). */
function hostName(header: string): string {
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(header);
  if (m) return m[1]!;
  const i = header.lastIndexOf(':');
  return i >= 0 && header.indexOf(':') === i ? header.slice(0, i) : header;
}

const sha = (s: string) => createHash('sha256').update(s).digest();

declare module 'fastify' {
  interface FastifyRequest {
    /** The request carried the server's bearer token. */
    bearerAuthenticated: boolean;
  }
}

/** onRequest hook: every request must carry `Authorization: Bearer <token>` (compared in constant time), else 401. */
export function bearerAuth(token: string): onRequestHookHandler {
  const want = sha(token);
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (m && timingSafeEqual(sha(m[1]!), want)) {
      req.bearerAuthenticated = true;
      return;
    }
    reply.header('www-authenticate', 'Bearer realm="graft"');
    throw new HttpError(
      401,
      h ? 'the bearer token is not valid' : 'this server needs a bearer token',
      'send Authorization: Bearer <the --token given to the server>',
    );
  };
}

export interface SameOriginOptions {
  /** Requests that skip the check (default: those that carried the server's bearer token). */
  exempt?: (req: FastifyRequest) => boolean;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * onRequest hook against cross-site request forgery: a POST, PUT, PATCH or DELETE is refused (403)
 * when `Sec-Fetch-Site` says it came from another site or origin (anything but `same-origin` or
 * `none`), or when an `Origin` header names another origin than the request's own Host (or is
 * `null`). Requests without either header (curl, scripts, other servers: not a browser) pass, as do
 * requests that `exempt` accepts (by default, those that carried the server's bearer token).
 */
export function sameOrigin(o: SameOriginOptions = {}): onRequestHookHandler {
  const exempt = o.exempt ?? ((req: FastifyRequest) => req.bearerAuthenticated === true);
  return async (req: FastifyRequest) => {
    if (!STATE_CHANGING.has(req.method) || exempt(req)) return;
    const site = req.headers['sec-fetch-site'];
    if (typeof site === 'string' && site !== 'same-origin' && site !== 'none')
      throw new HttpError(
        403,
        `cross-origin request refused (Sec-Fetch-Site: ${site})`,
        "state-changing requests from a browser must come from this server's own pages",
      );
    const origin = req.headers.origin;
    if (origin === undefined) return;
    let ok = false;
    try {
      const u = new URL(origin);
      ok =
        origin !== 'null' &&
        u.host.toLowerCase() === String(req.headers.host ?? '').toLowerCase() &&
        u.protocol === `${req.protocol}:`;
    } catch {
      ok = false;
    }
    if (!ok)
      throw new HttpError(
        403,
        `cross-origin request refused (Origin: ${origin})`,
        "state-changing requests from a browser must come from this server's own pages",
      );
  };
}

/** onRequest hook for a loopback server: the Host header must name a loopback host (a DNS-rebinding page's host does not). */
export function loopbackHost(allowed: string[] = []): onRequestHookHandler {
  const extra = new Set(allowed.map((h) => h.toLowerCase()));
  return async (req: FastifyRequest) => {
    const host = req.headers.host;
    if (typeof host === 'string' && (isLoopback(hostName(host)) || extra.has(hostName(host).toLowerCase()))) return;
    throw new HttpError(
      403,
      `Host ${JSON.stringify(host ?? '')} is not a loopback name; this server answers only on localhost`,
      'browse to http://127.0.0.1:PORT or http://localhost:PORT; to serve a network, use --host with --token',
    );
  };
}

export interface ServerOptions {
  /** The address to listen on (default 127.0.0.1). Anything but loopback needs `token`. */
  host?: string;
  /** Bearer token required on every route. */
  token?: string;
  /** Largest request body, MiB (default 16): a raw image, a JSON body, or all the files of a multipart request together. */
  bodyLimitMb?: number;
  /** Most inputs (files or texts) in one request (default 64). */
  maxInputs?: number;
  /** Fastify's logger (default off). */
  logger?: FastifyServerOptions['logger'];
  /** The OpenAPI document's title (default "Graft"). */
  title?: string;
  /** Extra Host names accepted on loopback (e.g. a name from /etc/hosts). */
  allowedHosts?: string[];
}

/** The limits the prediction routes read from the app (set by createServer). */
interface Limits {
  bodyLimit: number;
  maxInputs: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    graftLimits: Limits;
  }
}

/** At least 16 characters: a token guards a network-facing server. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * A Fastify app with Graft's safety rules (hooks, limits, JSON errors) and the OpenAPI generator
 * registered; add `predictRoutes` (and other routes) to it, then `listen({ host, port })`. Refuses a
 * non-loopback host without a token.
 */
export async function createServer(o: ServerOptions = {}): Promise<FastifyInstance> {
  const host = o.host ?? '127.0.0.1';
  const loopback = isLoopback(host);
  if (o.token !== undefined && o.token.length < MIN_TOKEN_LENGTH)
    throw new GraftError(
      `the token must be at least ${MIN_TOKEN_LENGTH} characters`,
      'make one with: openssl rand -hex 32',
    );
  if (!loopback && !o.token)
    throw new GraftError(
      `listening on ${host} (not loopback) needs a token: every request must then carry it`,
      'add --token T (or set GRAFT_SERVE_TOKEN); make one with: openssl rand -hex 32',
    );
  const bodyLimitMb = o.bodyLimitMb ?? 16;
  if (!(bodyLimitMb > 0) || !Number.isFinite(bodyLimitMb))
    throw new GraftError(`the body limit must be a positive number of MiB, got ${bodyLimitMb}`);
  const maxInputs = o.maxInputs ?? 64;
  if (!Number.isInteger(maxInputs) || maxInputs < 1)
    throw new GraftError(`the input limit must be a positive integer, got ${maxInputs}`);
  const bodyLimit = Math.floor(bodyLimitMb * 1024 * 1024);
  // strict bodies: no array coercion ({"texts": "x"} is an error, not ["x"]) and no silent removal of unknown
  // fields (additionalProperties: false refuses them); scalars are still coerced (query strings are text)
  const ajv = {
    customOptions: { coerceTypes: true, removeAdditional: false, useDefaults: true, allErrors: false },
  } as const;
  const app = Fastify({ logger: o.logger ?? false, bodyLimit, requestTimeout: 120_000, ajv });
  app.decorate('graftLimits', { bodyLimit, maxInputs });
  app.decorateRequest('bearerAuthenticated', false);
  app.setErrorHandler((err, req, reply) => {
    const { status, body } = errorResponse(err);
    if (status >= 500 && status !== 503) req.log.error(err);
    void reply.code(status).type('application/json; charset=utf-8').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  if (loopback) app.addHook('onRequest', loopbackHost(o.allowedHosts));
  if (o.token) app.addHook('onRequest', bearerAuth(o.token));
  app.addHook('onRequest', sameOrigin());
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: o.title ?? 'Graft', description: 'Trained Graft classifiers behind an HTTP API.', version: '1' },
      ...(o.token
        ? {
            components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
            security: [{ bearer: [] }],
          }
        : {}),
    },
  });
  app.get('/openapi.json', { schema: { summary: 'This OpenAPI document', tags: ['meta'] } }, async () => app.swagger());
  return app;
}

export interface PredictRoutesOptions {
  registry: ModelRegistry;
}

const errorSchema = {
  type: 'object',
  properties: { error: { type: 'string' }, message: { type: 'string' }, hint: { type: 'string' } },
  required: ['error', 'message'],
} as const;

const modelInfoSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    kind: { type: 'string', enum: ['image', 'text'] },
    labels: { type: 'array', items: { type: 'string' } },
    image: {
      type: 'object',
      properties: { width: { type: 'integer' }, height: { type: 'integer' }, channels: { type: 'integer' } },
    },
    text: { type: 'object', properties: { maxLength: { type: 'integer' }, mode: { type: 'string' } } },
    batching: {
      type: 'object',
      properties: {
        maxBatch: { type: 'integer' },
        maxDelayMs: { type: 'number' },
        maxQueue: { type: 'integer' },
        runs: { type: 'integer', description: 'onnxruntime runs (batches) so far' },
        inputs: { type: 'integer' },
        largestBatch: { type: 'integer' },
        waiting: { type: 'integer' },
        running: { type: 'integer' },
        mostRunning: { type: 'integer', description: 'most batches that ran at the same time' },
        instances: { type: 'integer', description: 'onnxruntime sessions of this model' },
        refused: { type: 'integer' },
      },
    },
  },
  required: ['name', 'kind', 'labels'],
} as const;

const predictionSchema = {
  type: 'object',
  properties: {
    model: { type: 'string' },
    predictions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          input: { type: 'string', description: 'the file name, "image" for a raw body, or texts[i]' },
          top: {
            type: 'array',
            items: {
              type: 'object',
              properties: { label: { type: 'string' }, index: { type: 'integer' }, probability: { type: 'number' } },
              required: ['label', 'index', 'probability'],
            },
          },
          truncated: { type: 'boolean', description: "text cut at the model's maximum length" },
        },
        required: ['input', 'top'],
      },
    },
  },
  required: ['model', 'predictions'],
} as const;

const nameParams = {
  type: 'object',
  properties: {
    name: { type: 'string', pattern: NAME_PATTERN.source, description: "the model's name (GET /v1/models)" },
  },
  required: ['name'],
} as const;

const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [c, { description: ERROR_NAMES[c], ...errorSchema }]));

/** Accepted raw image bodies: image/* (decode-checked, whatever the type says) and application/octet-stream. */
const RAW_IMAGE = /^(image\/[\w.+-]+|application\/octet-stream)(;.*)?$/i;
/** Raw 8-bit pixels (row by row, channels interleaved), sized by the width, height and channels query fields. */
export const PIXELS_TYPE = 'application/vnd.graft.pixels';
const RAW_PIXELS = /^application\/vnd\.graft\.pixels(;.*)?$/i;

/** File names are shown, never used as paths: control characters dropped, at most 200 characters. */
function shownName(name: string | undefined, fallback: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
  const s = (name ?? '').replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 200);
  return s || fallback;
}

/**
 * The prediction API over `registry`, as a Fastify plugin (encapsulated: it registers its own
 * multipart and raw-image body parsers). Register it on an app made by createServer, optionally with a
 * prefix: `await app.register(predictRoutes, { registry })`.
 */
export async function predictRoutes(app: FastifyInstance, opts: PredictRoutesOptions): Promise<void> {
  const { registry } = opts;
  const limits: Limits = app.graftLimits ?? { bodyLimit: app.initialConfig.bodyLimit ?? 1 << 20, maxInputs: 64 };
  await app.register(multipart, {
    limits: {
      fileSize: limits.bodyLimit,
      files: limits.maxInputs,
      fields: 8,
      fieldSize: 4096,
      parts: limits.maxInputs + 8,
      headerPairs: 64,
    },
    throwFileSizeLimit: true,
  });
  app.addContentTypeParser(RAW_IMAGE, { parseAs: 'buffer', bodyLimit: limits.bodyLimit }, (_req, body, done) =>
    done(null, body),
  );
  app.addContentTypeParser(RAW_PIXELS, { parseAs: 'buffer', bodyLimit: limits.bodyLimit }, (_req, body, done) =>
    done(null, body),
  );

  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: the server answers, and how many models it serves',
        tags: ['meta'],
        response: {
          200: {
            type: 'object',
            properties: { status: { type: 'string' }, models: { type: 'integer' } },
            required: ['status', 'models'],
          },
        },
      },
    },
    async () => ({ status: 'ok', models: registry.size }),
  );

  app.get(
    '/v1/models',
    {
      schema: {
        summary: 'The models served',
        tags: ['models'],
        response: {
          200: {
            type: 'object',
            properties: { models: { type: 'array', items: modelInfoSchema } },
            required: ['models'],
          },
        },
      },
    },
    async () => ({ models: registry.list() }),
  );

  app.get<{ Params: { name: string } }>(
    '/v1/models/:name',
    {
      schema: {
        summary: 'One model',
        tags: ['models'],
        params: nameParams,
        response: { 200: modelInfoSchema, ...errors(400, 404) },
      },
    },
    async (req) => registry.get(req.params.name).info(),
  );

  const textBody = {
    type: 'object',
    properties: {
      texts: {
        type: 'array',
        minItems: 1,
        items: { type: 'string', minLength: 1 },
        description: `texts to classify (a text model; at most ${limits.maxInputs})`,
      },
    },
    required: ['texts'],
    additionalProperties: false,
  } as const;

  app.post<{
    Params: { name: string };
    Querystring: { top: number; filename?: string; width?: number; height?: number; channels?: number };
    Body: unknown;
  }>(
    '/v1/models/:name/predict',
    {
      schema: {
        summary: 'Top classes with probabilities for each input',
        description:
          'An image model takes one image as the raw body (Content-Type image/* or application/octet-stream), or raw 8-bit ' +
          `pixels (Content-Type ${PIXELS_TYPE}: row by row, channels interleaved, sized by the width, height and channels ` +
          "query fields; no decoding, none at all at the model's own size), or one or more " +
          `image files as multipart/form-data (at most ${limits.maxInputs}, ${limits.bodyLimit} bytes in all). A text model takes ` +
          'JSON {"texts": [...]}. Images are checked by decoding them, not by their name or type. Concurrent requests to one ' +
          'model run together in dynamic batches.',
        tags: ['models'],
        params: nameParams,
        querystring: {
          type: 'object',
          properties: {
            top: {
              type: 'integer',
              minimum: 1,
              maximum: 10000,
              default: 5,
              description: 'classes per input, most probable first',
            },
            filename: {
              type: 'string',
              maxLength: 200,
              description: 'raw body: the name shown for the image (default "image")',
            },
            width: { type: 'integer', minimum: 1, description: `${PIXELS_TYPE} body: pixels per row` },
            height: { type: 'integer', minimum: 1, description: `${PIXELS_TYPE} body: rows` },
            channels: {
              type: 'integer',
              enum: [1, 3, 4],
              description: `${PIXELS_TYPE} body: 1 (grey), 3 (RGB) or 4 (RGBA)`,
            },
          },
        },
        body: { content: { 'application/json': { schema: textBody } } },
        response: { 200: predictionSchema, ...errors(400, 401, 403, 404, 413, 415, 503) },
      },
      config: {
        // the raw and multipart bodies, for the document only (Fastify does not validate those types)
        swaggerTransform: ({ schema, url }: { schema: object; url: string }) => ({
          url,
          schema: {
            ...schema,
            body: {
              content: {
                'application/json': { schema: textBody },
                'image/*': { schema: { type: 'string', format: 'binary' } },
                [PIXELS_TYPE]: { schema: { type: 'string', format: 'binary' } },
                'multipart/form-data': {
                  schema: {
                    type: 'object',
                    properties: { file: { type: 'array', items: { type: 'string', format: 'binary' } } },
                  },
                },
              },
            },
          },
        }),
      },
    },
    async (req) => {
      const model = registry.get(req.params.name);
      const top = req.query.top;
      if (req.isMultipart()) {
        const images: ImageInput[] = [];
        let total = 0;
        for await (const part of req.parts()) {
          if (part.type !== 'file') continue;
          const bytes = await part.toBuffer();
          total += bytes.length;
          if (total > limits.bodyLimit)
            throw new HttpError(
              413,
              `the files add up to more than ${limits.bodyLimit} bytes`,
              'send fewer or smaller images per request (--max-body-mb)',
            );
          images.push({ name: shownName(part.filename, `file ${images.length + 1}`), bytes });
        }
        if (!images.length)
          throw new HttpError(400, 'file: the multipart body has no file', 'send each image as a file part');
        return { model: model.name, predictions: await model.predictImages(images, { top }) };
      }
      const body = req.body;
      if (Buffer.isBuffer(body) && RAW_PIXELS.test(req.headers['content-type'] ?? '')) {
        const { width, height, channels } = req.query;
        for (const [k, v] of Object.entries({ width, height, channels }))
          if (v === undefined) throw new HttpError(400, `querystring/${k}: required with Content-Type ${PIXELS_TYPE}`);
        const image: ImageInput = {
          name: shownName(req.query.filename, 'image'),
          bytes: body,
          pixels: { width: width!, height: height!, channels: channels! },
        };
        return { model: model.name, predictions: await model.predictImages([image], { top }) };
      }
      if (Buffer.isBuffer(body)) {
        if (!body.length) throw new HttpError(400, 'body: the image is empty');
        return {
          model: model.name,
          predictions: await model.predictImages([{ name: shownName(req.query.filename, 'image'), bytes: body }], {
            top,
          }),
        };
      }
      const texts = (body as { texts?: unknown } | undefined)?.texts;
      if (!Array.isArray(texts))
        throw new HttpError(415, 'send an image (image/* body or multipart files) or JSON {"texts": [...]}');
      if (texts.length > limits.maxInputs)
        throw new HttpError(413, `${texts.length} texts, over the limit of ${limits.maxInputs} inputs per request`);
      return { model: model.name, predictions: await model.predictTexts(texts as string[], { top }) };
    },
  );
}
