/**
 * `graft/train`: Training graphs and the one training loop: compileTraining, losses, the Trainer, trainLoop with batch sources and callbacks (schedules, early stopping, checkpoints, unfreezing, progress, logging), fit on it, layer groups, the learning-rate finder, and the optimizers.
 */
export {
  compileTraining,
  selectTrainable,
  findTies,
  untieParameters,
  type Tie,
  type TrainingOptions,
  type TrainingGraph,
  type TrainableSpec,
} from './training-graph.js';
export { addLoss, type LossSpec } from './losses.js';
export { Trainer, type TrainerOptions } from './trainer.js';
export { fit, predictLabels, type Examples, type FitOptions } from './fit.js';
export { accuracy } from '../util/vectors.js';
export {
  evaluate,
  resolveClassWeights,
  type FitResult,
  type EarlyStopping,
  type StepInfo,
  type EpochInfo,
} from './fit.js';
export { makeSchedule, type ScheduleSpec, type Schedule } from './schedule.js';
export {
  lrFind,
  findLr,
  lrFindSvg,
  lrFindAscii,
  writeLrFindSvg,
  type LrFindOptions,
  type LrFindResult,
} from './lr-finder.js';
export {
  writeCheckpoint,
  readCheckpoint,
  readLatestCheckpoint,
  listCheckpoints,
  type CheckpointState,
} from './checkpoint.js';
export { layerGroups, discriminativeScales } from './layer-groups.js';
export { AdamW, SGD, clipGradNorm, makeOptimizer, type Optimizer, type OptimizerSpec } from '../optim/optimizer.js';
export { sizeOf, batchOf, type ExampleBatches, type TrainingData } from './fit.js';
export {
  trainLoop,
  shuffledBatches,
  steppedBatches,
  totalSteps,
  type Batch,
  type BatchSource,
  type Callback,
  type CallbackState,
  type EpochLogs,
  type StepLogs,
  type LoopContext,
  type LoopOptions,
  type LoopResult,
} from './loop.js';
export {
  LearningRate,
  EarlyStoppingCallback,
  Checkpoint,
  Unfreezing,
  Progress,
  Logger,
  StopAfter,
  runCallbacks,
  type EarlyStoppingOptions,
  type CheckpointOptions,
  type ProgressOptions,
  type RunOptions,
} from './callbacks.js';
export { exampleSource, Validation, declaredClassCount } from './fit.js';
export { linearSchedule } from './schedule.js';
