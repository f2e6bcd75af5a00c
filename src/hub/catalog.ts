/**
 * The curated model catalog behind `graft models` and `--model NAME`: each entry names a hub
 * repository (Transformers.js ONNX layout) or a plain HTTPS file with its sha256 and size, and says
 * what the model is for, where it comes from, its licence, input size and preprocessing.
 *
 * Every id, URL, sha256 and byte count below was read from its publisher (the ONNX Model Zoo's
 * ONNX_HUB_MANIFEST.json at github.com/onnx/models commit b1eeaa1, and the hub's LFS pointers);
 * nothing is guessed. Hub files have no `size` here: the hub reports the exact size (and its sha256
 * as the ETag) when they are pulled; `approxSize` is the rounded size the hub's file page shows.
 */

import type { ImagePreprocess } from '../formats/preprocess.js';

/** Where an entry's files come from. */
export type CatalogSource =
  /** A Hugging Face hub repository; `include` are the globs pulled when the entry is used as a model. */
  | { kind: 'hub'; repo: string; revision?: string; include: string[] }
  /** One plain HTTPS file, verified by its sha256 and size, stored in the same cache. */
  | { kind: 'url'; url: string; sha256: string; size: number; file: string };

export interface CatalogEntry {
  /** The name users type: `--model mobilenet-v2`. */
  name: string;
  kind: 'image' | 'text-encoder' | 'text-generation';
  /** What it is for, one line. */
  description: string;
  /** Who made it and where it was published. */
  origin: string;
  licence: string;
  source: CatalogSource;
  /** The files a use of the entry downloads, with sizes in bytes where known. */
  files: { path: string; size?: number; approxSize?: string }[];
  /** Image models: input size and preprocessing in words; text models: max tokens. */
  input: string;
  preprocessing: string;
  /** Anything a user should know before relying on the entry (limits, what was not verified). */
  notes?: string;
  /**
   * Plain-file image models: the preprocessing recorded on the graph when the file is loaded (hub
   * entries bring theirs in preprocessor_config.json). Absent where the publisher does not state it.
   */
  imagePreprocess?: ImagePreprocess;
}

/** The ONNX Model Zoo at the commit whose ONNX_HUB_MANIFEST.json gave the sha256s and sizes below. */
const ZOO =
  'https://github.com/onnx/models/raw/b1eeaa1ac722dcc1cd1a8284bde34393dab61c3d/validated/vision/classification';
const ZOO_ORIGIN = 'ONNX Model Zoo (github.com/onnx/models, validated/vision/classification), ImageNet-1k';
const IMAGENET_CROP =
  'shorter side resized to 256, centre crop 224×224, RGB, /255, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]';

const IMAGE_FILES = ['onnx/model.onnx', 'config.json', 'preprocessor_config.json'];
const TEXT_FILES = [
  'onnx/model.onnx',
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.txt',
];

function zoo(o: {
  name: string;
  description: string;
  path: string;
  sha256: string;
  size: number;
  notes?: string;
}): CatalogEntry {
  const file = o.path.slice(o.path.lastIndexOf('/') + 1);
  return {
    name: o.name,
    kind: 'image',
    description: o.description,
    origin: ZOO_ORIGIN,
    licence: 'Apache-2.0',
    source: { kind: 'url', url: `${ZOO}/${o.path}`, sha256: o.sha256, size: o.size, file },
    files: [{ path: file, size: o.size }],
    input: '1×3×224×224 float32 (NCHW)',
    preprocessing: IMAGENET_CROP,
    imagePreprocess: {
      layout: 'NCHW',
      width: 224,
      height: 224,
      channels: 3,
      channelOrder: 'RGB',
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
      resize: 'center-crop',
      fit: { shortestEdge: 256 },
      resample: 'bilinear',
      source: 'file',
    },
    ...(o.notes ? { notes: o.notes } : {}),
  };
}

export const CATALOG: readonly CatalogEntry[] = [
  zoo({
    name: 'vgg16',
    description: 'VGG-16 ImageNet classifier (138M parameters); 4096-wide features before the last Gemm',
    path: 'vgg/model/vgg16-12.onnx',
    sha256: '722c42f53ca03a5480296bf8f9c85a151de3eed9ec982d7d2302ff6e2900c67b',
    size: 553437752,
    notes: 'the model file fixes the batch dimension at 1',
  }),
  zoo({
    name: 'resnet50',
    description: 'ResNet-50 v1 ImageNet classifier (25.6M parameters); 2048-wide pooled features',
    path: 'resnet/model/resnet50-v1-12.onnx',
    sha256: '3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526',
    size: 102576593,
  }),
  zoo({
    name: 'mobilenet-v2',
    description: 'MobileNetV2 1.0 ImageNet classifier (3.5M parameters); small and fast, 1280-wide features',
    path: 'mobilenet/model/mobilenetv2-12.onnx',
    sha256: 'c0c3f76d93fa3fd6580652a45618618a220fced18babf65774ed169de0432ad5',
    size: 13964571,
  }),
  {
    name: 'inception-v3',
    kind: 'image',
    description: 'Inception-v3 ImageNet classifier (23.9M parameters, torchvision weights); 2048-wide features',
    origin: 'Qualcomm AI Hub export of torchvision inception_v3 (huggingface.co/qualcomm/Inception-v3, commit 509e028)',
    licence: 'BSD-3-Clause',
    source: {
      kind: 'url',
      url: 'https://huggingface.co/qualcomm/Inception-v3/resolve/509e028bd029517de182e20eed8e1744faa48cd1/Inception-v3.onnx',
      sha256: 'ec1c6d3fc7f4b572631c65ee6d82484cb57359a1edc750c21ab3a2931ceec800',
      size: 95332968,
      file: 'Inception-v3.onnx',
    },
    files: [{ path: 'Inception-v3.onnx', size: 95332968 }],
    input: '1×3×224×224 float32 (NCHW; the model card gives 224×224)',
    preprocessing: 'shorter side resized to 256, centre crop 224×224, RGB, /255 (values 0–1)',
    notes:
      "the ONNX Model Zoo has no Inception-v3, so this is Qualcomm's export; its model card says input resolution 224×224, and Qualcomm's ImageNet wrapper normalises (ImageNet mean/std) inside the graph — check with `graft classify` before relying on it",
  },
  {
    name: 'vit-b16',
    kind: 'image',
    description: 'ViT-B/16 ImageNet classifier (86M parameters), Transformers.js export; 768-wide [CLS] features',
    origin: 'Google (google/vit-base-patch16-224), ONNX by Xenova for Transformers.js',
    licence: 'Apache-2.0',
    source: { kind: 'hub', repo: 'Xenova/vit-base-patch16-224', include: IMAGE_FILES },
    files: [
      { path: 'onnx/model.onnx', approxSize: '347 MB' },
      { path: 'config.json', approxSize: '69.7 kB' },
      { path: 'preprocessor_config.json', approxSize: '327 B' },
    ],
    input: '3×224×224 (pixel_values)',
    preprocessing: 'from preprocessor_config.json: resized to 224×224, /255, mean 0.5, std 0.5',
  },
  {
    name: 'convnext-tiny',
    kind: 'image',
    description: 'ConvNeXt-Tiny ImageNet classifier (28M parameters), Transformers.js export',
    origin: 'Meta AI (facebook/convnext-tiny-224), ONNX by Xenova for Transformers.js',
    licence: 'Apache-2.0',
    source: { kind: 'hub', repo: 'Xenova/convnext-tiny-224', include: IMAGE_FILES },
    files: [
      { path: 'onnx/model.onnx', approxSize: '115 MB' },
      { path: 'config.json', approxSize: '69.8 kB' },
      { path: 'preprocessor_config.json', approxSize: '410 B' },
    ],
    input: '3×224×224 (pixel_values)',
    preprocessing:
      'from preprocessor_config.json (ConvNeXt: shorter side to 224/crop_pct, centre crop 224), /255, ImageNet mean/std',
  },
  {
    name: 'dinov2-small',
    kind: 'image',
    description:
      'DINOv2 ViT-S/14 self-supervised backbone (22M parameters): general-purpose image features, no classifier',
    origin: 'Meta AI (facebook/dinov2-small), ONNX by Xenova for Transformers.js',
    licence: 'Apache-2.0',
    source: {
      kind: 'hub',
      repo: 'Xenova/dinov2-small',
      include: ['onnx/model.onnx', 'config.json', 'preprocessor_config.json'],
    },
    files: [
      { path: 'onnx/model.onnx', approxSize: '88.5 MB' },
      { path: 'config.json' },
      { path: 'preprocessor_config.json' },
    ],
    input: '3×224×224 (pixel_values)',
    preprocessing: 'from preprocessor_config.json: shorter side to 256, centre crop 224, /255, ImageNet mean/std',
    notes: 'a feature extractor: use it with `graft train features` (there is no classifier to fine-tune)',
  },
  {
    name: 'bert-base',
    kind: 'text-encoder',
    description: 'BERT-base uncased (110M parameters), masked-LM head, Transformers.js export',
    origin: 'Google (google-bert/bert-base-uncased), ONNX by Xenova for Transformers.js',
    licence: 'Apache-2.0',
    source: { kind: 'hub', repo: 'Xenova/bert-base-uncased', include: TEXT_FILES },
    files: [
      { path: 'onnx/model.onnx', approxSize: '438 MB' },
      { path: 'config.json' },
      { path: 'tokenizer.json', approxSize: '711 kB' },
      { path: 'tokenizer_config.json' },
      { path: 'special_tokens_map.json' },
      { path: 'vocab.txt', approxSize: '232 kB' },
    ],
    input: 'up to 512 tokens',
    preprocessing: 'WordPiece tokenizer (tokenizer.json), lower-cased',
  },
  {
    name: 'distilbert',
    kind: 'text-encoder',
    description: 'DistilBERT base uncased (66M parameters): BERT distilled to 6 layers, Transformers.js export',
    origin: 'Hugging Face (distilbert/distilbert-base-uncased), ONNX by Xenova for Transformers.js',
    licence: 'Apache-2.0',
    source: { kind: 'hub', repo: 'Xenova/distilbert-base-uncased', include: TEXT_FILES },
    files: [
      { path: 'onnx/model.onnx', approxSize: '268 MB' },
      { path: 'config.json' },
      { path: 'tokenizer.json' },
      { path: 'tokenizer_config.json' },
      { path: 'special_tokens_map.json' },
      { path: 'vocab.txt' },
    ],
    input: 'up to 512 tokens',
    preprocessing: 'WordPiece tokenizer (tokenizer.json), lower-cased',
  },
  {
    name: 'minilm-l6',
    kind: 'text-encoder',
    description: 'all-MiniLM-L6-v2 sentence embeddings (22M parameters, 384-wide): fast text features and SetFit',
    origin: 'sentence-transformers (sentence-transformers/all-MiniLM-L6-v2), ONNX by Xenova for Transformers.js',
    licence: 'Apache-2.0',
    source: { kind: 'hub', repo: 'Xenova/all-MiniLM-L6-v2', include: TEXT_FILES },
    files: [
      { path: 'onnx/model.onnx', approxSize: '90.4 MB' },
      { path: 'config.json', approxSize: '650 B' },
      { path: 'tokenizer.json', approxSize: '712 kB' },
      { path: 'tokenizer_config.json' },
      { path: 'special_tokens_map.json' },
      { path: 'vocab.txt', approxSize: '232 kB' },
    ],
    input: 'up to 512 positions (trained on 256 tokens)',
    preprocessing: 'WordPiece tokenizer (tokenizer.json), lower-cased; mean pooling',
  },
  {
    name: 'gpt2',
    kind: 'text-generation',
    description: 'GPT-2 small (124M parameters) causal language model, Transformers.js export',
    origin: 'OpenAI (openai-community/gpt2), ONNX by Xenova for Transformers.js',
    licence: 'MIT',
    source: {
      kind: 'hub',
      repo: 'Xenova/gpt2',
      include: [
        'onnx/decoder_model.onnx',
        'config.json',
        'generation_config.json',
        'tokenizer.json',
        'tokenizer_config.json',
        'special_tokens_map.json',
      ],
    },
    files: [
      { path: 'onnx/decoder_model.onnx', approxSize: '654 MB' },
      { path: 'config.json' },
      { path: 'generation_config.json' },
      { path: 'tokenizer.json' },
      { path: 'tokenizer_config.json' },
      { path: 'special_tokens_map.json' },
    ],
    input: 'up to 1024 tokens',
    preprocessing: 'byte-level BPE tokenizer (tokenizer.json)',
    notes: 'Transformers.js ships GPT-2 as onnx/decoder_model.onnx (no past key/values), not onnx/model.onnx',
  },
];

/** The plain-file catalog entry whose file has this name (e.g. `mobilenetv2-12.onnx`), if any. */
export function catalogEntryForFile(fileName: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.source.kind === 'url' && e.source.file === fileName);
}

export function findCatalogEntry(name: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.name === name);
}

/** The catalog's names, for error messages. */
export function catalogNames(): string[] {
  return CATALOG.map((e) => e.name);
}
