/**
 * A training session: the compiled training graph in one onnxruntime session, the trainable weights
 * as Float32Arrays updated in place by the optimizer, and a forward-only session for predictions.
 */
import type { Graph } from '../graph/graph.js';
import type { Tensor } from '../graph/tensor.js';
import { Session, type Feeds, type RuntimeOptions } from '../runtime/session.js';
import { compileTraining, type TrainingGraph, type TrainingOptions } from './training-graph.js';
import { promoteToInputs } from '../autodiff/grad-graph.js';
import { makeOptimizer, clipGradNorm, type Optimizer, type OptimizerSpec } from '../optim/optimizer.js';
import { GraftError } from '../util/errors.js';

export interface TrainerOptions extends TrainingOptions {
  optimizer?: OptimizerSpec;
  /** Base learning rate (default 1e-3). */
  lr?: number;
  /** Clip the global gradient norm to this value. */
  clipNorm?: number;
  runtime?: RuntimeOptions;
}

export interface StepResult {
  loss: number;
  gradNorm?: number;
  /** The custom loss's extra outputs, by name. */
  values?: Record<string, Tensor>;
}

export class Trainer {
  readonly params = new Map<string, Float32Array>();
  readonly stateValues = new Map<string, Float32Array>();
  readonly optimizer: Optimizer;
  lr: number;
  steps = 0;
  private predictSession?: Session;
  /** The options it was created with (to build a like trainer: unfreezing, resume). */
  readonly options: TrainerOptions;

  private constructor(
    readonly tg: TrainingGraph,
    private session: Session,
    private opts: TrainerOptions,
  ) {
    this.options = opts;
    for (const [k, t] of tg.initial) this.params.set(k, Float32Array.from(t.data as Float32Array));
    for (const [k, t] of tg.stateInitial) this.stateValues.set(k, Float32Array.from(t.data as Float32Array));
    this.optimizer = makeOptimizer(opts.optimizer ?? { kind: 'adamw' });
    this.lr = opts.lr ?? 1e-3;
  }

  static async create(model: Graph, opts: TrainerOptions = {}): Promise<Trainer> {
    const tg = await compileTraining(model, opts);
    const session = await Session.fromGraph(tg.graph, opts.runtime, `${model.name} (training)`);
    return new Trainer(tg, session, opts);
  }

  private paramFeeds(): Feeds {
    const f: Feeds = {};
    for (const [k, v] of this.params) f[k] = { dtype: 'float32', dims: this.tg.initial.get(k)!.dims, data: v };
    for (const [k, v] of this.stateValues)
      f[k] = { dtype: 'float32', dims: this.tg.stateInitial.get(k)!.dims, data: v };
    return f;
  }

  /**
   * Forward, loss, backward and one optimizer update. `target` feeds a built-in loss's target; a
   * custom loss's inputs come in `inputs` beside the model's.
   */
  async step(inputs: Feeds, target?: Tensor, lr = this.lr): Promise<StepResult> {
    const feeds: Feeds = { ...inputs, ...(target ? { [this.tg.target]: target } : {}) };
    for (const k of [...this.tg.dataInputs, ...this.tg.targets])
      if (!feeds[k]) throw new GraftError(`missing input '${k}' for the training step`);
    const res = await this.session.run({ ...feeds, ...this.paramFeeds() });
    const grads = new Map<string, Float32Array>();
    for (const [p, gname] of this.tg.grads) grads.set(p, res[gname]!.data as Float32Array);
    const loss = Number(res[this.tg.loss]!.data[0]);
    if (!Number.isFinite(loss))
      throw new GraftError(`the loss became ${loss} at step ${this.steps + 1}; lower the learning rate`);
    const gradNorm = this.opts.clipNorm ? clipGradNorm(grads, this.opts.clipNorm) : undefined;
    this.optimizer.step(this.params, grads, lr);
    for (const [k, out] of this.tg.state) this.stateValues.set(k, Float32Array.from(res[out]!.data as Float32Array));
    this.steps++;
    const values = this.tg.extraOutputs.length
      ? Object.fromEntries(this.tg.extraOutputs.map((k) => [k, res[k]!]))
      : undefined;
    return { loss, ...(gradNorm !== undefined ? { gradNorm } : {}), ...(values ? { values } : {}) };
  }

  /** The model's output for a batch, with the current weights. */
  async predict(inputs: Feeds): Promise<Tensor> {
    if (!this.predictSession) {
      const g = this.tg.model.clone();
      g.outputs = [{ name: this.tg.output }];
      g.prune();
      // a custom loss's own parameters (a domain classifier…) are not part of the model
      promoteToInputs(
        g,
        this.tg.params.filter((k) => g.initializers.has(k)),
      );
      this.predictSession = await Session.fromGraph(g, this.opts.runtime, `${g.name} (predict)`);
    }
    const feeds: Feeds = { ...inputs };
    const wanted = new Set(this.predictSession.inputNames);
    for (const [k, v] of this.params)
      if (wanted.has(k)) feeds[k] = { dtype: 'float32', dims: this.tg.initial.get(k)!.dims, data: v };
    const res = await this.predictSession.run(feeds);
    return res[this.tg.output]!;
  }

  /** The model with trained weights (and updated BatchNorm statistics) written back as initializers. */
  toGraph(): Graph {
    const g = this.tg.model.clone();
    const used = new Set(g.nodes.flatMap((n) => n.inputs));
    for (const [k, v] of this.params)
      if (used.has(k))
        g.initializers.set(k, {
          dtype: 'float32',
          dims: [...this.tg.initial.get(k)!.dims],
          data: Float32Array.from(v),
        });
    for (const [k, v] of this.stateValues)
      g.initializers.set(k, {
        dtype: 'float32',
        dims: [...this.tg.stateInitial.get(k)!.dims],
        data: Float32Array.from(v),
      });
    return g;
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.predictSession?.release();
  }
}
