/**
 * What a worker keeps between jobs and checks before one: this worker's name, the last few models,
 * datasets and cache handles it used (the shards of one run share them), and that the paths a job
 * names exist here (they must be on a filesystem every worker shares).
 */
import { existsSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Graph } from '../graph/graph.js';
import { loadModel } from '../formats/load.js';
import { loadLabelledImages, type LabelledImages } from '../data/labelled-images.js';
import { FeatureCache } from '../features/cache.js';
import { prepareExtraction, type PreparedExtraction } from '../features/extract.js';
import { GraftError } from '../util/errors.js';

/** A labelled image dataset by path (what loadLabelledImages reads). */
export interface DataSpec {
  path: string;
  labelsData?: string;
  maxPerClass?: number;
}

/** This worker's name in progress and results: host:pid. */
export const WORKER_NAME = `${hostname()}:${process.pid}`;

// a worker keeps the last few models, datasets and cache handles it used (shards of one run share them)
const models = new Map<string, Graph>();
const datasets = new Map<string, LabelledImages>();
const caches = new Map<string, FeatureCache>();
const extractors = new Map<string, PreparedExtraction>();

/** A model file's identity here: its path and modification time (a model rewritten in place is loaded again). */
function modelKey(path: string): string {
  return `${path}\0${statSync(path).mtimeMs}`;
}

/** A cache handle per folder, refreshed with the shards other workers wrote since. */
export function cacheFor(dir: string): FeatureCache {
  const c = remember(caches, dir, () => FeatureCache.open(dir), 4);
  c.refresh();
  return c;
}

function remember<T>(m: Map<string, T>, key: string, make: () => T, keep = 2, drop?: (v: T) => void): T {
  let v = m.get(key);
  if (v === undefined) {
    v = make();
    m.set(key, v);
    while (m.size > keep) {
      const k = m.keys().next().value!;
      const old = m.get(k)!;
      m.delete(k);
      drop?.(old);
    }
  }
  return v;
}

/** The path must exist on this worker: else the job cannot succeed here (nor on a retry). */
export function mustSee(path: string, what: string): void {
  if (!existsSync(path))
    throw new GraftError(
      `${what} ${path} does not exist on ${WORKER_NAME}`,
      'the model, the data, the cache and the output folder must be on paths every worker can reach (a shared filesystem)',
    );
}

export function loadData(d: DataSpec): LabelledImages {
  mustSee(d.path, 'the data');
  return remember(datasets, JSON.stringify(d), () =>
    loadLabelledImages(d.path, {
      ...(d.labelsData ? { labelsData: d.labelsData } : {}),
      ...(d.maxPerClass ? { maxPerClass: d.maxPerClass } : {}),
    }),
  );
}

export function loadModelOnce(path: string): Graph {
  mustSee(path, 'the model');
  return remember(models, modelKey(path), () => loadModel(path));
}

/**
 * The model at `path` cut at `node` (default: its final classifier's input), with its hash and one
 * onnxruntime session, kept for every shard this worker runs on it (the last two kept; older
 * sessions released).
 */
export function extractorFor(path: string, node: string | undefined): PreparedExtraction {
  const model = loadModelOnce(path);
  return remember(
    extractors,
    `${modelKey(path)}\0${node ?? ''}`,
    () => prepareExtraction(model, node),
    2,
    (old) => {
      void old.release();
    },
  );
}
