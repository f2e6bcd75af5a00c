/**
 * `graft/train`: Training graphs and the training loop: compileTraining, losses, the Trainer, fit with its schedules, early stopping, checkpoints and layer groups, the learning-rate finder, and the optimizers.
 */
export { compileTraining, selectTrainable, findTies, untieParameters, type Tie, type TrainingOptions, type TrainingGraph, type TrainableSpec } from './training-graph.js';
export { addLoss, type LossSpec } from './losses.js';
export { Trainer, type TrainerOptions } from './trainer.js';
export { fit, predictLabels, accuracy, type Examples, type FitOptions } from './fit.js';
export { evaluate, resolveClassWeights, type FitResult, type EarlyStopping, type StepInfo, type EpochInfo } from './fit.js';
export { makeSchedule, type ScheduleSpec, type Schedule } from './schedule.js';
export { lrFind, findLr, lrFindSvg, lrFindAscii, writeLrFindSvg, type LrFindOptions, type LrFindResult } from './lr-finder.js';
export { writeCheckpoint, readCheckpoint, readLatestCheckpoint, listCheckpoints, type CheckpointState } from './checkpoint.js';
export { layerGroups, discriminativeScales } from './layer-groups.js';
export { AdamW, SGD, clipGradNorm, makeOptimizer, type Optimizer, type OptimizerSpec } from '../optim/optimizer.js';
export { sizeOf, batchOf, type ExampleBatches, type TrainingData } from './fit.js';
