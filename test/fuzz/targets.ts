/**
 * Fuzz targets, one per reader of untrusted files, and the structure-aware mutator they share. A target's
 * input is a small folder of files (`Files`: name → bytes); its seeds are valid folders made here (written to
 * test/fixtures/fuzz-corpus/<target>/<seed>/ by make-corpus.ts, and read back from there by the tests and
 * bench/fuzz.ts); `run` feeds one folder to the reader. The contract every target checks: a reader returns,
 * or throws a GraftError; anything else (TypeError, RangeError, an out-of-memory, a hang) is a bug.
 *
 * Mutations (fast-check arbitraries, so failures shrink to a minimal list): bit flips, byte sets, truncation,
 * inserted and duplicated runs, "interesting" integers written over 2/4/8-byte fields (lengths, counts,
 * offsets, dims), and, for JSON files (model.json, tokenizer.json, checkpoint manifests) and JSON inside
 * binaries (the safetensors header, ONNX's ModelProto as an object tree), replacement of a node of the tree
 * by a hostile value (huge, negative, fractional numbers, wrong types, random dims).
 */
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { decodeOnnx, encodeOnnx } from '../../src/formats/onnx.js';
import { ONNX_PROTO } from '../../src/formats/onnx-schema.js';
import { decodeTflite } from '../../src/formats/tflite.js';
import { readTfjs } from '../../src/formats/tfjs.js';
import { decodeSafetensors, encodeSafetensors } from '../../src/formats/safetensors.js';
import { parseIdx } from '../../src/data/idx.js';
import { readTextTable } from '../../src/data/text-table.js';
import { readPixelCsv } from '../../src/data/tabular.js';
import { loadTokenizerSync } from '../../src/text/tokenizer.js';
import { readCheckpoint, writeCheckpoint } from '../../src/train/checkpoint.js';
import { FeatureCache } from '../../src/features/cache.js';
import { Graph } from '../../src/graph/graph.js';
import { GraftError } from '../../src/util/errors.js';
import { writeTflite, f32, i32, mixedOrderTflite } from '../helpers/tflite-writer.js';

export type Files = Record<string, Uint8Array>;

/** A scratch folder that holds one input's files at a time (for readers that take paths). */
export class Scratch {
  readonly dir: string;
  private names: string[] = [];
  constructor(base = tmpdir()) {
    this.dir = mkdtempSync(join(base, 'graft-fuzz-'));
  }
  write(files: Files): string {
    for (const n of this.names) rmSync(join(this.dir, n), { force: true, recursive: true });
    // anything the reader itself left (temporary files) goes too
    for (const n of readdirSync(this.dir)) rmSync(join(this.dir, n), { force: true, recursive: true });
    this.names = Object.keys(files);
    for (const [n, b] of Object.entries(files)) {
      mkdirSync(join(this.dir, n, '..'), { recursive: true });
      writeFileSync(join(this.dir, n), b);
    }
    return this.dir;
  }
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Target {
  name: string;
  /** Valid inputs, deterministic: seed name → files. */
  seeds(): Record<string, Files>;
  /** Feed one input to the reader. Returns, or throws (only GraftError is allowed). */
  run(files: Files, scratch: Scratch): void;
  /** A file's bytes as a JSON-like tree and back, for structure-aware mutation (default: JSON files). */
  tree?(name: string, bytes: Uint8Array): { value: unknown; back(v: unknown): Uint8Array } | undefined;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const json = (v: unknown) => enc.encode(JSON.stringify(v));
const quiet = { warn: () => {} };

/* -------------------------------------------------------------------------------------------- seeds */

function onnxSeed(): Uint8Array {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.initializers.set('w', { dtype: 'float32', dims: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
  g.initializers.set('b', { dtype: 'float32', dims: [2], data: Float32Array.from([0.5, -0.5]) });
  g.initializers.set('shape', { dtype: 'int64', dims: [2], data: BigInt64Array.from([1n, -1n]) });
  g.inputs = [{ name: 'x', dtype: 'float32', shape: ['batch', 3] }];
  g.outputs = [{ name: 'y', dtype: 'float32', shape: ['batch', 2] }];
  g.nodes = [
    {
      name: 'gemm',
      opType: 'Gemm',
      domain: '',
      inputs: ['x', 'w', 'b'],
      outputs: ['h'],
      attrs: { alpha: { type: 'float', value: 1 } },
    },
    {
      name: 'c',
      opType: 'Constant',
      domain: '',
      inputs: [],
      outputs: ['k'],
      attrs: { value: { type: 'tensor', value: { dtype: 'float32', dims: [1], data: Float32Array.from([2]) } } },
    },
    { name: 'mul', opType: 'Mul', domain: '', inputs: ['h', 'k'], outputs: ['m'], attrs: {} },
    {
      name: 'sm',
      opType: 'Softmax',
      domain: '',
      inputs: ['m'],
      outputs: ['y'],
      attrs: { axis: { type: 'int', value: -1 } },
    },
  ];
  return encodeOnnx(g);
}

function tfliteSeeds(): Record<string, Files> {
  const mixed = mixedOrderTflite([0.5, -1]);
  const conv = writeTflite({
    tensors: [
      { name: 'x', shape: [1, 4, 4, 2] },
      { name: 'w', shape: [3, 2, 2, 2], data: f32(Array.from({ length: 24 }, (_, i) => (i % 5) / 5 - 0.4)) },
      { name: 'b', shape: [3], data: f32([0.1, 0, -0.1]) },
      { name: 'y', shape: [1, 2, 2, 3] },
      {
        name: 'wq',
        shape: [4, 3],
        type: 9,
        data: Uint8Array.from([1, 2, 3, 250, 5, 6, 7, 8, 9, 10, 11, 12]),
        quant: { scale: [0.1, 0.2, 0.3, 0.4], zeroPoint: [0, 0, 0, 0], dim: 0 },
      },
      { name: 'flatshape', shape: [2], type: 2, data: i32([-1, 3]) },
      { name: 'f', shape: [4, 3] },
      { name: 'z', shape: [4, 4] },
    ],
    ops: [
      {
        code: 3,
        inputs: [0, 1, 2],
        outputs: [3],
        options: {
          type: 1,
          fields: [
            ['byte', 0, 1],
            ['int', 1, 2],
            ['int', 2, 2],
            ['byte', 3, 1],
          ],
        },
      },
      { code: 22, inputs: [3, 5], outputs: [6] },
      { code: 9, inputs: [6, 4], outputs: [7], options: { type: 8, fields: [['byte', 0, 0]] } },
    ],
    inputs: [0],
    outputs: [7],
  });
  return { mixed: { 'model.tflite': mixed }, conv: { 'model.tflite': conv } };
}

const floatsBin = (v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

function tfjsLayersSeeds(): Record<string, Files> {
  const dense = {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: {
        name: 's',
        layers: [
          {
            class_name: 'Dense',
            config: { name: 'd', units: 2, activation: 'softmax', use_bias: true, batch_input_shape: [null, 3] },
          },
        ],
      },
    },
    weightsManifest: [
      {
        paths: ['group1-shard1of1.bin'],
        weights: [
          { name: 'd/kernel', shape: [3, 2], dtype: 'float32' },
          { name: 'd/bias', shape: [2], dtype: 'float32' },
        ],
      },
    ],
  };
  const conv = {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: {
        name: 'c',
        layers: [
          {
            class_name: 'Conv2D',
            config: {
              name: 'conv',
              filters: 2,
              kernel_size: [2, 2],
              strides: [1, 1],
              padding: 'valid',
              activation: 'relu',
              use_bias: true,
              data_format: 'channels_last',
              dilation_rate: [1, 1],
              batch_input_shape: [null, 4, 4, 1],
            },
          },
          {
            class_name: 'MaxPooling2D',
            config: {
              name: 'pool',
              pool_size: [2, 2],
              strides: [1, 1],
              padding: 'valid',
              data_format: 'channels_last',
            },
          },
          { class_name: 'Flatten', config: { name: 'flat' } },
          { class_name: 'Dense', config: { name: 'out', units: 3, activation: 'softmax', use_bias: true } },
        ],
      },
    },
    weightsManifest: [
      {
        paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'],
        weights: [
          { name: 'conv/kernel', shape: [2, 2, 1, 2], dtype: 'float32' },
          { name: 'conv/bias', shape: [2], dtype: 'float32' },
          {
            name: 'out/kernel',
            shape: [8, 3],
            dtype: 'float32',
            quantization: { dtype: 'uint8', scale: 0.01, min: -1 },
          },
          { name: 'out/bias', shape: [3], dtype: 'float32', quantization: { dtype: 'float16' } },
        ],
      },
    ],
  };
  const reshape = {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: {
        name: 'r',
        layers: [
          { class_name: 'Reshape', config: { name: 'rs', target_shape: [2, 3, 1], batch_input_shape: [null, 6] } },
          { class_name: 'Permute', config: { name: 'pm', dims: [2, 1, 3] } },
          { class_name: 'Flatten', config: { name: 'fl' } },
          { class_name: 'Dense', config: { name: 'o', units: 2, activation: 'linear', use_bias: false } },
        ],
      },
    },
    weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'o/kernel', shape: [6, 2], dtype: 'float32' }] }],
  };
  const convBytes = new Uint8Array([
    ...floatsBin([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0, 0.1]),
    ...Array.from({ length: 24 }, (_, i) => i * 10),
    0,
    60,
    0,
    0,
    0,
    188,
  ]);
  return {
    dense: { 'model.json': json(dense), 'group1-shard1of1.bin': floatsBin([1, 2, 3, 4, 5, 6, 0.5, -0.5]) },
    conv: {
      'model.json': json(conv),
      'group1-shard1of2.bin': convBytes.subarray(0, 32),
      'group1-shard2of2.bin': convBytes.subarray(32),
    },
    reshape: { 'model.json': json(reshape), 'w.bin': floatsBin([1, 0, 0, 1, 1, 1, 0.5, 0.5, -1, 1, 2, 0]) },
  };
}

/** The dense layers model as a .min.js bundle pair (nsfwjs's layout: `module.exports=` a literal, the shard base64). */
function tfjsBundleSeeds(): Record<string, Files> {
  const dense = tfjsLayersSeeds()['dense']!;
  const m = JSON.parse(dec.decode(dense['model.json']!)) as { weightsManifest: { paths: string[] }[] };
  m.weightsManifest[0]!.paths = ['group1-shard1of1'];
  const literal = JSON.stringify(m)
    .replace(/"(\w+)":/g, '$1:')
    .replace(/true/g, '!0')
    .replace(/false/g, '!1');
  return {
    dense: {
      'model.min.js': enc.encode(`!function(){var e={};e.exports=${literal},module.exports=e.exports}();`),
      'group1-shard1of1.min.js': enc.encode(
        `module.exports="${Buffer.from(dense['group1-shard1of1.bin']!).toString('base64')}";`,
      ),
    },
  };
}

function tfjsGraphSeeds(): Record<string, Files> {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const ilist = (v: number[]) => ({ list: { i: v.map(String) } });
  const F = { type: 'DT_FLOAT' };
  const C = (name: string, dtype = 'DT_FLOAT') => ({
    name,
    op: 'Const',
    attr: { dtype: { type: dtype }, value: { tensor: { dtype } } },
  });
  const nodes = [
    {
      name: 'x',
      op: 'Placeholder',
      attr: { dtype: F, shape: { shape: { dim: [{ size: '-1' }, { size: '4' }, { size: '4' }, { size: '1' }] } } },
    },
    C('k'),
    C('bias'),
    C('shape', 'DT_INT32'),
    C('dense'),
    {
      name: 'conv',
      op: 'Conv2D',
      input: ['x', 'k'],
      attr: {
        T: F,
        strides: ilist([1, 1, 1, 1]),
        padding: { s: b64('VALID') },
        data_format: { s: b64('NHWC') },
        dilations: ilist([1, 1, 1, 1]),
      },
    },
    { name: 'biased', op: 'BiasAdd', input: ['conv', 'bias'], attr: { T: F, data_format: { s: b64('NHWC') } } },
    { name: 'relu', op: 'Relu', input: ['biased'], attr: { T: F } },
    { name: 'flat', op: 'Reshape', input: ['relu', 'shape'], attr: { T: F } },
    {
      name: 'logits',
      op: 'MatMul',
      input: ['flat', 'dense'],
      attr: { T: F, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    { name: 'probs', op: 'Softmax', input: ['logits'], attr: { T: F } },
  ];
  const model = {
    format: 'graph-model',
    modelTopology: { node: nodes, versions: { producer: 175 } },
    weightsManifest: [
      {
        paths: ['group1-shard1of1.bin'],
        weights: [
          { name: 'k', shape: [2, 2, 1, 2], dtype: 'float32' },
          { name: 'bias', shape: [2], dtype: 'float32' },
          { name: 'shape', shape: [2], dtype: 'int32' },
          { name: 'dense', shape: [18, 2], dtype: 'float32' },
        ],
      },
    ],
  };
  const bin = new Uint8Array([
    ...floatsBin([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0, 0.1]),
    ...new Uint8Array(Int32Array.from([-1, 18]).buffer),
    ...floatsBin(Array.from({ length: 36 }, (_, i) => ((i * 7) % 11) / 11 - 0.5)),
  ]);
  return { conv: { 'model.json': json(model), 'group1-shard1of1.bin': bin } };
}

function safetensorsSeeds(): Record<string, Files> {
  return {
    mixed: {
      'model.safetensors': encodeSafetensors(
        {
          w: { dtype: 'float32', dims: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
          h: { dtype: 'float16', dims: [2], data: Uint16Array.from([0x3c00, 0xc000]) },
          i: { dtype: 'int64', dims: [1], data: BigInt64Array.from([7n]) },
          s: { dtype: 'uint8', dims: [], data: Uint8Array.from([9]) },
        },
        { format: 'pt' },
      ),
    },
  };
}

function idxSeeds(): Record<string, Files> {
  const images = new Uint8Array([
    0,
    0,
    8,
    3,
    0,
    0,
    0,
    2,
    0,
    0,
    0,
    3,
    0,
    0,
    0,
    3,
    ...Array.from({ length: 18 }, (_, i) => i * 13),
  ]);
  const labels = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 1, 0]);
  return {
    plain: { 'images.idx': images, 'labels.idx': labels },
    gzip: { 'images.idx.gz': gzipSync(images), 'labels.idx.gz': gzipSync(labels) },
  };
}

function textTableSeeds(): Record<string, Files> {
  const csv = 'text,label\n"great film, loved it",pos\nterrible,neg\n"said ""meh""",neg\nfine,pos\n';
  return {
    csv: { 'data.csv': enc.encode(csv) },
    tsv: { 'data.tsv': enc.encode('text\tlabel\ngreat film\tpos\nbad\tneg\n') },
    jsonl: { 'data.jsonl': enc.encode('{"text":"great","label":"pos"}\n{"text":"bad","label":1}\n') },
    headerless: { 'data.csv': enc.encode('a long review text here,1\nanother long text,0\nthird text line,1\n') },
    gzip: { 'data.csv.gz': gzipSync(enc.encode(csv)) },
  };
}

function pixelSeeds(): Record<string, Files> {
  const rows = [
    [0, 16, 8, 4, 1],
    [15, 0, 3, 2, 0],
    [1, 2, 3, 4, 9],
  ];
  return { digits: { 'pixels.csv': enc.encode(rows.map((r) => r.join(',')).join('\n') + '\n') } };
}

function tokenizerSeeds(): Record<string, Files> {
  const added = (id: number, content: string) => ({
    id,
    content,
    special: true,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
  });
  const wordpiece = {
    version: '1.0',
    added_tokens: [added(0, '[PAD]'), added(1, '[UNK]'), added(2, '[CLS]'), added(3, '[SEP]')],
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: {
        '[PAD]': 0,
        '[UNK]': 1,
        '[CLS]': 2,
        '[SEP]': 3,
        hello: 4,
        world: 5,
        good: 6,
        '##s': 7,
        film: 8,
        a: 9,
        b: 10,
      },
    },
  };
  const bpeVocab: Record<string, number> = { '<pad>': 0, '</s>': 1 };
  for (const t of ['a', 'b', 'c', 'Ġ', 'ab', 'abc', 'Ġa', 'Ġab', 'Ġabc']) bpeVocab[t] = Object.keys(bpeVocab).length;
  const bpe = {
    version: '1.0',
    added_tokens: [added(0, '<pad>'), added(1, '</s>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      vocab: bpeVocab,
      merges: ['Ġ a', 'Ġa b', 'Ġab c', 'a b', 'ab c'],
      unk_token: null,
      ignore_merges: false,
    },
  };
  return {
    wordpiece: {
      'tokenizer.json': json(wordpiece),
      'tokenizer_config.json': json({
        model_max_length: 16,
        pad_token: '[PAD]',
        cls_token: '[CLS]',
        sep_token: '[SEP]',
      }),
    },
    bpe: { 'tokenizer.json': json(bpe), 'tokenizer_config.json': json({ pad_token: '<pad>', eos_token: '</s>' }) },
  };
}

function checkpointSeeds(): Record<string, Files> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-fuzz-seed-'));
  try {
    writeCheckpoint(dir, {
      epoch: 1,
      step: 4,
      rng: [1, 2, 3, 4],
      losses: [0.9, -0],
      weights: new Map([
        ['fc.w', Float32Array.from([1, 2, 3])],
        ['fc.b', Float32Array.from([0])],
      ]),
      bestWeights: new Map([['fc.w', Float32Array.from([1, 2, 2])]]),
      optimizer: { kind: 'adam', meta: { t: 4 }, tensors: new Map([['m/fc.w', Float32Array.from([0.1, 0.2, 0.3])]]) },
      early: { best: 0.5, bestEpoch: 1, bad: 0, stopped: false },
      config: { lr: 0.01 },
    });
    const files: Files = {};
    for (const f of readdirSync(dir)) files[f] = new Uint8Array(readFileSync(join(dir, f)));
    return { adam: files };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function featureCacheSeeds(): Record<string, Files> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-fuzz-seed-'));
  try {
    const c = FeatureCache.open(dir);
    c.putMany(CACHE_KEYS.map((key, i) => ({ key, vector: Float32Array.from({ length: 4 + i }, (_, j) => j / 4 - i) })));
    const f = readdirSync(dir).find((n) => n.endsWith('.shard'))!;
    return { three: { 'a.shard': new Uint8Array(readFileSync(join(dir, f))) } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const CACHE_KEYS = ['one', 'two', 'three'];

/* ------------------------------------------------------------------------------------------ targets */

const Onnx = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');

const only = (files: Files, name: string): Uint8Array => files[name] ?? Object.values(files)[0] ?? new Uint8Array(0);

export const TARGETS: Target[] = [
  {
    name: 'onnx',
    seeds: () => ({ gemm: { 'model.onnx': onnxSeed() } }),
    run: (f, s) => void decodeOnnx(only(f, 'model.onnx'), { baseDir: s.dir }, 'model.onnx'),
    tree: (_n, bytes) => {
      let value: unknown;
      try {
        value = Onnx.toObject(Onnx.decode(bytes), { longs: Number, bytes: Array, defaults: false });
      } catch {
        return undefined;
      }
      return {
        value,
        back: (v) => {
          try {
            return Onnx.encode(Onnx.fromObject(v as object)).finish();
          } catch {
            return bytes; // the mutated tree is not a ModelProto protobufjs can write: keep the input
          }
        },
      };
    },
  },
  { name: 'tflite', seeds: tfliteSeeds, run: (f) => void decodeTflite(only(f, 'model.tflite'), {}, 'model.tflite') },
  {
    name: 'tfjs-layers',
    seeds: tfjsLayersSeeds,
    run: (f, s) => void readTfjs(join(s.write(f), 'model.json'), { labels: false }),
  },
  {
    name: 'tfjs-bundle',
    seeds: tfjsBundleSeeds,
    run: (f, s) => void readTfjs(join(s.write(f), 'model.min.js'), { labels: false }),
  },
  {
    name: 'tfjs-graph',
    seeds: tfjsGraphSeeds,
    run: (f, s) => void readTfjs(join(s.write(f), 'model.json'), { labels: false }),
  },
  {
    name: 'safetensors',
    seeds: safetensorsSeeds,
    run: (f) => void decodeSafetensors(only(f, 'model.safetensors'), 'model.safetensors'),
    tree: (_n, bytes) => {
      if (bytes.length < 8) return undefined;
      const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      if (n > bytes.length - 8) return undefined;
      let value: unknown;
      try {
        value = JSON.parse(dec.decode(bytes.subarray(8, 8 + n)));
      } catch {
        return undefined;
      }
      const data = bytes.subarray(8 + n);
      return {
        value,
        back: (v) => {
          const head = enc.encode(JSON.stringify(v) ?? 'null');
          const out = new Uint8Array(8 + head.length + data.length);
          new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
          out.set(head, 8);
          out.set(data, 8 + head.length);
          return out;
        },
      };
    },
  },
  {
    name: 'idx',
    seeds: idxSeeds,
    run: (f) => {
      for (const [n, b] of Object.entries(f)) parseIdx(b, n);
    },
  },
  {
    name: 'text-table',
    seeds: textTableSeeds,
    run: (f, s) => {
      const dir = s.write(f);
      for (const n of Object.keys(f)) readTextTable(join(dir, n));
    },
  },
  {
    name: 'pixel-csv',
    seeds: pixelSeeds,
    run: (f, s) => {
      const dir = s.write(f);
      for (const n of Object.keys(f)) readPixelCsv(join(dir, n));
    },
  },
  {
    name: 'tokenizer',
    seeds: tokenizerSeeds,
    run: (f, s) => {
      const tok = loadTokenizerSync(s.write(f));
      const b = tok.encodeBatch(['hello world', 'good films abc', ''], { maxLength: 8, ...quiet });
      tok.decode([...(b.inputIds.data as BigInt64Array)].map(Number).filter((id) => id >= 0 && id < tok.vocabSize));
    },
  },
  { name: 'checkpoint', seeds: checkpointSeeds, run: (f, s) => void readCheckpoint(s.write(f), 1) },
  {
    name: 'feature-cache',
    seeds: featureCacheSeeds,
    run: (f, s) => {
      const c = FeatureCache.open(s.write(f));
      c.getMany(CACHE_KEYS);
    },
  },
];

export function target(name: string): Target {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`no fuzz target '${name}' (targets: ${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}

/* --------------------------------------------------------------------------------------- the corpus */

export const CORPUS_DIR = new URL('../fixtures/fuzz-corpus/', import.meta.url).pathname;
export const REGRESSIONS_DIR = new URL('../fixtures/fuzz-regressions/', import.meta.url).pathname;

/** A folder of inputs (`<dir>/<case>/<files>`) as case name → files. */
export function readCases(dir: string): Record<string, Files> {
  const out: Record<string, Files> = {};
  let cases: string[] = [];
  try {
    cases = readdirSync(dir).sort();
  } catch {
    return out;
  }
  for (const c of cases) {
    const cdir = join(dir, c);
    if (!statSync(cdir).isDirectory()) continue;
    const files: Files = {};
    const walk = (d: string, prefix: string) => {
      for (const f of readdirSync(d).sort()) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p, `${prefix}${f}/`);
        else files[`${prefix}${f}`] = new Uint8Array(readFileSync(p));
      }
    };
    walk(cdir, '');
    out[c] = files;
  }
  return out;
}

/** The committed corpus of a target (seed name → files). */
export function corpus(t: Target): Record<string, Files> {
  return readCases(join(CORPUS_DIR, t.name));
}

/** Write files as one case folder. */
export function writeCase(dir: string, files: Files): void {
  rmSync(dir, { recursive: true, force: true });
  for (const [n, b] of Object.entries(files)) {
    mkdirSync(join(dir, n, '..'), { recursive: true });
    writeFileSync(join(dir, n), b);
  }
}

/* ------------------------------------------------------------------------------------- mutations */

const INTERESTING = [
  0,
  1,
  2,
  7,
  8,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x7fff,
  0x8000,
  0xffff,
  0x10000,
  0x7fffffff,
  0x80000000,
  0xffffffff,
  2 ** 31 + 1,
  2 ** 32 + 1,
  2 ** 53,
];
const NUMBERS = [
  0,
  1,
  -1,
  2,
  3,
  0.5,
  -0.5,
  1e6,
  -1e6,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  -(2 ** 31),
  2 ** 53,
  2 ** 53 + 2,
  1e300,
  -1e300,
  65536,
  46341,
  1e-300,
];

/** A hostile JSON value: numbers at the edges, wrong types, random dims. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...NUMBERS),
  fc.integer(),
  fc.array(fc.oneof(fc.constantFrom(...NUMBERS), fc.integer({ min: -3, max: 70000 })), { maxLength: 6 }),
  fc.constantFrom(
    null,
    true,
    false,
    '',
    'float32',
    'int64',
    'F32',
    '../../etc/passwd',
    '/etc/passwd',
    '%2e%2e/x',
    'x'.repeat(200),
    {},
    [],
    [[]],
    { a: 1 },
  ),
  fc.string({ maxLength: 8 }),
);

export type Mutation =
  | { k: 'flip'; file: number; pos: number; bit: number }
  | { k: 'set'; file: number; pos: number; val: number }
  | { k: 'trunc'; file: number; pos: number }
  | { k: 'insert'; file: number; pos: number; bytes: Uint8Array }
  | { k: 'dup'; file: number; pos: number; len: number; times: number }
  | { k: 'int'; file: number; pos: number; width: 1 | 2 | 4 | 8; le: boolean; val: number; align: boolean }
  | { k: 'tree'; file: number; node: number; val: unknown }
  | { k: 'drop'; file: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('flip' as const), file: fc.nat(), pos: fc.nat(), bit: fc.nat({ max: 7 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant('set' as const), file: fc.nat(), pos: fc.nat(), val: fc.nat({ max: 255 }) }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('trunc' as const), file: fc.nat(), pos: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('insert' as const),
      file: fc.nat(),
      pos: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('dup' as const),
      file: fc.nat(),
      pos: fc.nat(),
      len: fc.integer({ min: 1, max: 64 }),
      times: fc.integer({ min: 1, max: 8 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('int' as const),
      file: fc.nat(),
      pos: fc.nat(),
      width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
      le: fc.boolean(),
      val: fc.oneof(fc.constantFrom(...INTERESTING), fc.nat()),
      align: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ k: fc.constant('tree' as const), file: fc.nat(), node: fc.nat(), val: hostileValue }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drop' as const), file: fc.nat() }) },
);

/** An input: which seed, then the mutations applied in order. */
export const inputArb = fc.record({ seed: fc.nat(), muts: fc.array(mutationArb, { minLength: 1, maxLength: 4 }) });
export type Input = { seed: number; muts: Mutation[] };

/** Every node of a JSON-like tree, as (parent, key) pairs, in a fixed order (typed arrays are leaves). */
function nodes(root: unknown): [Record<string | number, unknown>, string | number][] {
  const out: [Record<string | number, unknown>, string | number][] = [];
  const visit = (v: unknown, depth: number) => {
    if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v) || depth > 24) return;
    const o = v as Record<string | number, unknown>;
    const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(o);
    for (const k of keys) {
      out.push([o, k]);
      if (out.length > 50000) return;
      visit(o[k], depth + 1);
    }
  };
  visit(root, 0);
  return out;
}

function treeOf(
  t: Target,
  name: string,
  bytes: Uint8Array,
): { value: unknown; back(v: unknown): Uint8Array } | undefined {
  if (t.tree) return t.tree(name, bytes);
  if (!/\.json$/i.test(name)) return undefined;
  try {
    return { value: JSON.parse(dec.decode(bytes)), back: (v) => enc.encode(JSON.stringify(v) ?? 'null') };
  } catch {
    return undefined;
  }
}

/** Apply one mutation to a copy of the files. */
export function mutate(t: Target, files: Files, m: Mutation): Files {
  const names = Object.keys(files);
  if (!names.length) return files;
  const name = names[m.file % names.length]!;
  const b = files[name]!;
  const out: Files = { ...files };
  const at = (n: number) => ('pos' in m && b.length ? m.pos % (b.length + n) : 0);
  switch (m.k) {
    case 'flip':
      if (b.length) {
        const c = b.slice();
        c[at(0)]! ^= 1 << m.bit;
        out[name] = c;
      }
      break;
    case 'set':
      if (b.length) {
        const c = b.slice();
        c[at(0)] = m.val;
        out[name] = c;
      }
      break;
    case 'trunc':
      out[name] = b.slice(0, at(0));
      break;
    case 'insert': {
      const p = at(1);
      out[name] = new Uint8Array([...b.subarray(0, p), ...m.bytes, ...b.subarray(p)]);
      break;
    }
    case 'dup': {
      const p = at(0),
        piece = b.subarray(p, p + m.len);
      const parts = [b.subarray(0, p + piece.length)];
      for (let i = 0; i < m.times; i++) parts.push(piece);
      parts.push(b.subarray(p + piece.length));
      out[name] = new Uint8Array(Buffer.concat(parts));
      break;
    }
    case 'int': {
      if (b.length < m.width) break;
      let p = m.pos % (b.length - m.width + 1);
      if (m.align) p -= p % m.width;
      const c = b.slice();
      const dv = new DataView(c.buffer);
      const v = m.val;
      if (m.width === 1) dv.setUint8(p, v & 0xff);
      else if (m.width === 2) dv.setUint16(p, v & 0xffff, m.le);
      else if (m.width === 4) dv.setUint32(p, v >>> 0, m.le);
      else dv.setBigUint64(p, BigInt(Math.min(Math.max(0, Math.floor(v)), 2 ** 64 - 1)), m.le);
      out[name] = c;
      break;
    }
    case 'tree': {
      const tr = treeOf(t, name, b);
      if (!tr) break;
      const all = nodes(tr.value);
      if (!all.length) {
        out[name] = tr.back(m.val);
        break;
      }
      const [parent, key] = all[m.node % all.length]!;
      parent[key] = m.val;
      out[name] = tr.back(tr.value);
      break;
    }
    case 'drop':
      if (names.length > 1) delete out[name];
      break;
  }
  return out;
}

/** The files an input stands for, given the target's seeds (in a fixed order). */
export function materialize(t: Target, seeds: Files[], input: Input): Files {
  let files = seeds[input.seed % seeds.length]!;
  for (const m of input.muts) files = mutate(t, files, m);
  return files;
}

/** Run one input; returns the error when it is not a GraftError (a crash), else undefined. */
export function runOne(t: Target, files: Files, scratch: Scratch): unknown {
  try {
    t.run(files, scratch);
  } catch (e) {
    if (e instanceof GraftError) return undefined;
    return e ?? new Error(`threw ${String(e)}`);
  }
  return undefined;
}
