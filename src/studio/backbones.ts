/**
 * The backbones Studio offers: the local models under GRAFT_ASSETS (the MNIST network, the Coral
 * MobileNets, bert-mini), catalog entries already in the Hugging Face cache (never downloaded from
 * here), and any model folder or file on the server named by the user (`folder:<absolute path>`).
 * Also the training methods per project kind with their default settings.
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { assetPath } from '../data/assets.js';
import { CATALOG } from '../hub/catalog.js';
import { pullCatalogEntry } from '../hub/resolve.js';
import { isTextModelFolder } from '../text/model-folder.js';
import { GraftError } from '../util/errors.js';
import { DEFAULTS } from './job.js';

export type Kind = 'image' | 'text';

export interface Backbone {
  id: string;
  label: string;
  kind: Kind;
  source: 'local' | 'hub' | 'folder';
  detail: string;
  methods: string[];
}

interface LocalModel {
  rel: string;
  label: string;
  kind: Kind;
  detail: string;
  methods: string[];
}

const LOCAL: LocalModel[] = [
  {
    rel: 'models/onnxjs-demo/mnist.onnx',
    label: 'MNIST CNN (tiny; 28×28 grey digits)',
    kind: 'image',
    detail: '28×28 grey, 26 KB',
    methods: ['features', 'finetune'],
  },
  {
    rel: 'models/coral/mobilenet_v2_1.0_224_quant.tflite',
    label: 'MobileNetV2 1.0 (ImageNet, int8 TFLite)',
    kind: 'image',
    detail: '224×224 RGB',
    methods: ['features', 'finetune'],
  },
  {
    rel: 'models/coral/tf2_mobilenet_v2_1.0_224_ptq.tflite',
    label: 'MobileNetV2 1.0 TF2 (ImageNet, int8 TFLite)',
    kind: 'image',
    detail: '224×224 RGB',
    methods: ['features', 'finetune'],
  },
  {
    rel: 'models/coral/mobilenet_v1_0.25_128_quant.tflite',
    label: 'MobileNetV1 0.25 (ImageNet, int8 TFLite, fast)',
    kind: 'image',
    detail: '128×128 RGB',
    methods: ['features', 'finetune'],
  },
  {
    rel: 'models/text/bert-mini-debian',
    label: 'bert-mini (4 layers, 256 wide)',
    kind: 'text',
    detail: 'max 512 tokens',
    methods: ['features', 'top-layers', 'lora'],
  },
];

const IMAGE_METHODS = ['features', 'finetune'];
const TEXT_METHODS = ['features', 'top-layers', 'lora'];

/** All backbones available now for a kind. */
export async function listBackbones(kind: Kind): Promise<{ backbones: Backbone[]; default: string | null }> {
  const out: Backbone[] = [];
  for (const m of LOCAL) {
    if (m.kind !== kind || !existsSync(assetPath(m.rel))) continue;
    out.push({ id: `local:${m.rel}`, label: m.label, kind, source: 'local', detail: m.detail, methods: m.methods });
  }
  for (const e of CATALOG) {
    const k: Kind | undefined = e.kind === 'image' ? 'image' : e.kind === 'text-encoder' ? 'text' : undefined;
    if (k !== kind) continue;
    if (!(await cachedCatalogPath(e.name))) continue;
    out.push({
      id: `hub:${e.name}`,
      label: `${e.name}: ${e.description}`,
      kind,
      source: 'hub',
      detail: e.input,
      methods: kind === 'image' ? IMAGE_METHODS : TEXT_METHODS,
    });
  }
  const preferred =
    kind === 'image' ? 'local:models/coral/mobilenet_v1_0.25_128_quant.tflite' : 'local:models/text/bert-mini-debian';
  return { backbones: out, default: out.find((b) => b.id === preferred)?.id ?? out[0]?.id ?? null };
}

async function cachedCatalogPath(name: string): Promise<string | undefined> {
  const e = CATALOG.find((c) => c.name === name);
  if (!e) return undefined;
  try {
    return (await pullCatalogEntry(e, { offline: true, preferCache: true })).path;
  } catch {
    return undefined;
  }
}

/** The path a backbone id stands for, checked against the project kind and method. */
export async function resolveBackbone(id: string, kind: Kind, method: string): Promise<string> {
  let path: string | undefined;
  let methods = kind === 'image' ? IMAGE_METHODS : TEXT_METHODS;
  if (id.startsWith('local:')) {
    const m = LOCAL.find((x) => `local:${x.rel}` === id);
    if (!m) throw new GraftError(`backbone: unknown local model '${id.slice(6)}'`);
    if (m.kind !== kind) throw new GraftError(`backbone: ${m.label} is a ${m.kind} model; this is a ${kind} project`);
    path = assetPath(m.rel);
    if (!existsSync(path)) throw new GraftError(`backbone: ${path} is missing (GRAFT_ASSETS)`);
    methods = m.methods;
  } else if (id.startsWith('hub:')) {
    path = await cachedCatalogPath(id.slice(4));
    if (!path)
      throw new GraftError(
        `backbone: catalog model '${id.slice(4)}' is not in the local cache`,
        `run \`graft pull ${id.slice(4)}\` first`,
      );
  } else if (id.startsWith('folder:')) {
    path = id.slice(7);
    if (!isAbsolute(path))
      throw new GraftError(`backbone: a folder must be an absolute path on the server, got '${path}'`);
    if (!existsSync(path)) throw new GraftError(`backbone: ${path} does not exist`);
    if (kind === 'text' && !isTextModelFolder(path))
      throw new GraftError(
        `backbone: ${path} is not a text model folder (config.json, tokenizer.json, onnx/model.onnx)`,
      );
    if (kind === 'image' && statSync(path).isDirectory() && isTextModelFolder(path))
      throw new GraftError(`backbone: ${path} is a text model folder; this is an image project`);
  } else throw new GraftError(`backbone: '${id}' is not a backbone id (local:…, hub:… or folder:<absolute path>)`);
  if (!methods.includes(method))
    throw new GraftError(`method: '${method}' does not apply to this backbone (${methods.join(', ')})`);
  return path;
}

export interface MethodInfo {
  id: string;
  label: string;
  description: string;
  default: boolean;
  settings: Record<string, { default: number | boolean; min?: number; max?: number }>;
}

const RANGES: Record<string, { min?: number; max?: number }> = {
  epochs: { min: 1, max: 200 },
  learningRate: { min: 1e-6, max: 1 },
  holdout: { min: 0.05, max: 0.5 },
  batchSize: { min: 1, max: 512 },
  topBlocks: { min: 1, max: 10 },
  loraRank: { min: 1, max: 64 },
  seed: { min: 0, max: 2 ** 31 - 1 },
};

const LABELS: Record<string, [string, string]> = {
  features: [
    'Frozen features + head',
    'The backbone stays as it is; a logistic-regression head is fitted on its features (fast, good with few examples).',
  ],
  finetune: [
    'Fine-tune the top blocks',
    'The last blocks of the backbone train with a new head (slower; better with more examples). Checkpoints every epoch.',
  ],
  'top-layers': ['Fine-tune the top layer', 'The last encoder layer and a new head train on the texts.'],
  lora: ['LoRA adapters', 'Low-rank adapters on every encoder layer train with a new head.'],
};

export function listMethods(kind: Kind): MethodInfo[] {
  const d = DEFAULTS[kind] as Record<string, Record<string, number | boolean>>;
  return Object.entries(d).map(([id, s], i) => ({
    id,
    label: LABELS[id]![0],
    description: LABELS[id]![1],
    default: i === 0,
    settings: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { default: v, ...(RANGES[k] ?? {}) }])),
  }));
}
