/**
 * `graft/scale`: scale-out on BullMQ + Redis: workers, sharded feature extraction with a head fit
 * once every shard is cached, top-block fine-tuning with its activations cached by shards, sweeps and data-efficiency curves with one job per cell.
 */
export { QUEUE_NAME, parseQueueUrl, checkReachable } from './connection.js';
export { startWorker, type WorkerOptions, type RunningWorker } from './worker.js';
export {
  trainFeaturesOnQueue,
  extractionOrder,
  shardRows,
  type QueueRunOptions,
  type QueueProgress,
  type QueueFeatureReport,
} from './features.js';
export {
  processJob,
  type GraftJob,
  type GraftJobResult,
  type ExtractShardJob,
  type ExtractShardResult,
  type FitHeadJob,
  type FitHeadResult,
  type FeatureJobOptions,
} from './jobs.js';
export type { ShardProgress, ShardedProgress } from './sharded.js';
export type { DataSpec } from './load.js';
export {
  checkSweepSpec,
  readSweepSpec,
  absoluteSpec,
  gridCells,
  runSweepCell,
  SWEEP_MODES,
  type SweepSpec,
  type SweepMode,
  type CellResult,
  type CellScores,
} from './cells.js';
export { runSweep, sweepMarkdown, writeSweep, type SweepResult, type SweepRunOptions } from './sweep.js';
export { curveOnQueue, type CurveQueueOptions } from './curve.js';
export {
  finetuneImagesOnQueue,
  activationShards,
  type FinetuneQueueOptions,
  type QueueFinetuneReport,
  type FinetuneJobOptions,
  type ActivationShardJob,
  type ActivationShardResult,
  type FinetuneTopJob,
  type FinetuneTopResult,
} from './finetune.js';
