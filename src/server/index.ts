/** `graft serve` as a library: the model registry, dynamic batching, and the Fastify app and routes. */
export {
  createServer,
  predictRoutes,
  sameOrigin,
  bearerAuth,
  loopbackHost,
  isLoopback,
  errorResponse,
  HttpError,
  MIN_TOKEN_LENGTH,
} from './app.js';
export type { ServerOptions, PredictRoutesOptions, SameOriginOptions, ErrorBody } from './app.js';
export {
  ModelRegistry,
  ServedModel,
  prepareImage,
  checkModelName,
  NAME_PATTERN,
  DEFAULT_MAX_PIXELS,
  ModelNotFoundError,
  UnsupportedInputError,
  InputTooLargeError,
  BadFieldError,
} from './registry.js';
export type {
  ModelInfo,
  RegistryOptions,
  ImageInput,
  ServePredictOptions,
  ServedPrediction,
  ClassProbability,
} from './registry.js';
export { Batcher, QueueFullError, BatcherClosedError } from './batcher.js';
export type { BatcherOptions, BatcherStats, Admission } from './batcher.js';
export { ThreadedSession, SessionPool, ModelRunError } from './threaded-session.js';
