/**
 * Text tokenizers: Hugging Face `tokenizer.json` (WordPiece, BPE, Unigram) through the maintained
 * `@huggingface/tokenizers` library, plus what Graft adds on top: batch encoding into int64 tensors
 * with padding ('longest' or 'max_length'), truncation that warns naming the rows it cut (never
 * silently), attention masks and token type ids.
 *
 * Special tokens are found from the tokenizer's own post-processor (by encoding a probe with and
 * without special tokens), so truncation keeps e.g. `[CLS] … [SEP]` intact for BERT and adds
 * nothing for GPT-2-style tokenizers.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Tensor } from '../graph/tensor.js';
import { GraftError } from '../util/errors.js';
import { insideFolder } from '../util/paths.js';

export interface EncodeBatchOptions {
  /** Longest sequence (special tokens included); default: the tokenizer's model_max_length. */
  maxLength?: number;
  /** 'longest' pads to the longest row in the batch (default), 'max_length' to maxLength. */
  padding?: 'longest' | 'max_length';
  /** Cut rows longer than maxLength (default true, with a warning naming them); false → error. */
  truncation?: boolean;
  /** Add the model's special tokens ([CLS] … [SEP] for BERT); default true. */
  addSpecialTokens?: boolean;
  /** Row number of texts[0] in the caller's dataset, for messages (default 0). */
  rowOffset?: number;
  /** Row number (e.g. file line) of each text, for messages (overrides rowOffset). */
  rows?: readonly number[];
  /** What the texts come from (a file name), for messages. */
  source?: string;
  /** Where truncation warnings go (default: console.warn). */
  warn?: (message: string) => void;
}

export interface EncodedBatch {
  /** int64 [n, len] */
  inputIds: Tensor;
  /** int64 [n, len]: 1 for real tokens, 0 for padding. */
  attentionMask: Tensor;
  /** int64 [n, len]: all 0 for single sequences. */
  tokenTypeIds: Tensor;
  /** Real (unpadded) length of each row, special tokens included. */
  lengths: number[];
  /** Indices (within this batch) of rows that were truncated. */
  truncated: number[];
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

interface TokenizerConfigJson {
  model_max_length?: number;
  pad_token?: string | { content: string };
  cls_token?: string | { content: string };
  sep_token?: string | { content: string };
  bos_token?: string | { content: string };
  eos_token?: string | { content: string };
  unk_token?: string | { content: string };
  mask_token?: string | { content: string };
  [k: string]: unknown;
}

function tokenName(t: string | { content: string } | undefined): string | undefined {
  if (t === undefined || t === null) return undefined;
  const name: unknown = typeof t === 'string' ? t : typeof t === 'object' ? t.content : undefined;
  return typeof name === 'string' ? name : undefined;
}

/**
 * Every token id tokenizer.json declares (model vocab, added tokens, post-processor special tokens) is an
 * integer in [0, MAX_VOCAB), checked before the library sees the file: it sizes tables by the largest id, so
 * one stray id of 2^31 would cost gigabytes and minutes.
 */
function checkIds(json: Record<string, unknown>, label: string): void {
  const bad = (where: string, v: unknown): never => {
    throw new GraftError(
      `${label}: ${where} has token id ${JSON.stringify(v)}; ids must be integers from 0 to ${MAX_VOCAB - 1}`,
    );
  };
  let maxId = -1;
  let maxAt = '';
  const ok = (v: unknown, where = '') => {
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < MAX_VOCAB)) return false;
    if (v > maxId) {
      maxId = v;
      maxAt = where;
    }
    return true;
  };
  const model = json['model'] as Record<string, unknown>;
  const vocab = model['vocab'];
  if (Array.isArray(vocab)) {
    if (vocab.length >= MAX_VOCAB)
      throw new GraftError(`${label}: a vocabulary of ${vocab.length} entries is over the limit of ${MAX_VOCAB}`);
    for (const e of vocab)
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number')
        throw new GraftError(`${label}: a Unigram vocab entry is not [piece, score]`);
  } else if (vocab !== null && typeof vocab === 'object') {
    for (const [tok, id] of Object.entries(vocab)) if (!ok(id, `vocab entry '${tok}'`)) bad(`vocab entry '${tok}'`, id);
  }
  const added = json['added_tokens'];
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new GraftError(`${label}: added_tokens is not a list`);
    for (const a of added) {
      if (a === null || typeof a !== 'object' || typeof (a as { content?: unknown }).content !== 'string')
        throw new GraftError(`${label}: an added token has no content`);
      const where = `added token '${(a as { content: string }).content}'`;
      if (!ok((a as { id?: unknown }).id, where)) bad(where, (a as { id?: unknown }).id);
    }
  }
  const visit = (v: unknown, depth: number): void => {
    if (v === null || typeof v !== 'object' || depth > 32) return;
    const o = v as Record<string, unknown>;
    if (Array.isArray(o['ids'])) for (const id of o['ids']) if (!ok(id)) bad('the post-processor', id);
    for (const k of Object.keys(o)) visit(o[k], depth + 1);
  };
  visit(json['post_processor'], 0);
  // the library's tables cost time and memory in proportion to the largest id (~0.15 s per million): a file
  // may declare ids up to 2^20, or up to 4× its number of entries, whichever is larger
  const entries =
    (Array.isArray(vocab)
      ? vocab.length
      : vocab !== null && typeof vocab === 'object'
        ? Object.keys(vocab).length
        : 0) + (Array.isArray(added) ? added.length : 0);
  const limit = Math.max(2 ** 20, 4 * entries);
  if (maxId >= limit)
    throw new GraftError(
      `${label}: ${maxAt || 'a token'} has token id ${maxId}, far beyond the ${entries} entries the file holds (ids must be below ${limit}: 2^20, or 4 × the number of entries when that is larger)`,
    );
}

/** Largest vocabulary accepted (2^24 ids; real tokenizers have at most a few hundred thousand). */
const MAX_VOCAB = 2 ** 24;

/** A loaded tokenizer with Graft's batch-encoding conventions. */
export class TextTokenizer {
  readonly vocabSize: number;
  readonly padId: number;
  readonly clsId: number | undefined;
  readonly sepId: number | undefined;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly unkId: number | undefined;
  readonly maskId: number | undefined;
  /** Default maximum length (special tokens included). */
  readonly modelMaxLength: number;
  /** sha256 of tokenizer.json (+ config): identifies the tokenizer in cache keys. */
  readonly fingerprint: string;
  /** The model type from tokenizer.json ('WordPiece', 'BPE', 'Unigram', …). */
  readonly modelType: string;
  /** Ids added around a single sequence by the post-processor. */
  readonly prefixIds: number[];
  readonly suffixIds: number[];
  private readonly hf: Tokenizer;
  private readonly label: string;

  constructor(
    readonly tokenizerJson: Record<string, unknown>,
    readonly config: TokenizerConfigJson = {},
    opts: { maxLength?: number; label?: string } = {},
  ) {
    const label = opts.label ?? 'tokenizer.json';
    this.label = label;
    const model = tokenizerJson['model'] as { type?: string } | undefined;
    if (!model || typeof model !== 'object')
      throw new GraftError(`${label}: not a Hugging Face tokenizer.json (no "model" section)`);
    if (model.type !== undefined && !['BPE', 'WordPiece', 'WordLevel', 'Unigram'].includes(model.type))
      throw new GraftError(
        `${label}: unsupported tokenizer model type ${JSON.stringify(model.type)} (BPE, WordPiece, WordLevel or Unigram)`,
      );
    checkIds(tokenizerJson, label);
    try {
      this.hf = new Tokenizer(tokenizerJson, config);
    } catch (e) {
      throw new GraftError(`${label}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    this.modelType = String(model.type ?? inferModelType(model));
    const vocab = this.hf.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    // the model's embedding table is sized by the largest id: one stray huge id must not claim gigabytes
    if (!Number.isSafeInteger(maxId) || maxId >= MAX_VOCAB)
      throw new GraftError(
        `${label}: token id ${maxId} is out of range (a vocabulary of ${vocab.size} entries; ids must be below ${MAX_VOCAB})`,
      );
    this.vocabSize = Math.max(vocab.size, maxId + 1);
    const id = (name: string | undefined): number | undefined =>
      name === undefined ? undefined : this.hf.token_to_id(name);
    const first = (...names: (string | undefined)[]): number | undefined => {
      for (const n of names) {
        const v = id(n);
        if (v !== undefined) return v;
      }
      return undefined;
    };
    this.clsId = first(tokenName(this.config.cls_token), '[CLS]', '<s>');
    this.sepId = first(tokenName(this.config.sep_token), '[SEP]', '</s>');
    this.bosId = first(tokenName(this.config.bos_token), '<s>', '<|endoftext|>');
    this.eosId = first(tokenName(this.config.eos_token), '</s>', '<|endoftext|>');
    this.unkId = first(tokenName(this.config.unk_token), '[UNK]', '<unk>');
    this.maskId = first(tokenName(this.config.mask_token), '[MASK]', '<mask>');
    this.padId = first(tokenName(this.config.pad_token), '[PAD]', '<pad>') ?? this.eosId ?? 0;
    const mml = Number(this.config.model_max_length);
    this.modelMaxLength = opts.maxLength ?? (Number.isFinite(mml) && mml > 0 && mml < 1e6 ? mml : 512);
    // Find what the post-processor wraps around a single sequence (a tokenizer.json the library accepted
    // but cannot run fails here, named, rather than on the first real text).
    const probe = 'a';
    let bare: number[], full: number[];
    try {
      bare = this.hf.encode(probe, { add_special_tokens: false }).ids;
      full = this.hf.encode(probe, { add_special_tokens: true }).ids;
    } catch (e) {
      throw new GraftError(`${label}: the tokenizer cannot encode text: ${(e as Error).message}`);
    }
    for (const id of full)
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw new GraftError(`${label}: the post-processor adds token id ${String(id)}, outside the vocabulary`);
    const at = findSub(full, bare);
    if (at < 0) {
      this.prefixIds = [];
      this.suffixIds = [];
    } else {
      this.prefixIds = full.slice(0, at);
      this.suffixIds = full.slice(at + bare.length);
    }
    this.fingerprint = createHash('sha256')
      .update(JSON.stringify(tokenizerJson))
      .update(JSON.stringify(config))
      .digest('hex');
  }

  /** The library's ids for a text, checked: a damaged tokenizer.json can make it return holes (undefined). */
  private encodeRaw(text: string): number[] {
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    for (const id of ids)
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw new GraftError(
          `${this.label}: the tokenizer produced token id ${String(id)} for ${JSON.stringify(text.slice(0, 40))}; is its "model" section complete?`,
        );
    return ids;
  }

  /** Ids of one text (special tokens added unless addSpecialTokens is false), no truncation. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = this.encodeRaw(text);
    return opts.addSpecialTokens === false ? ids : [...this.prefixIds, ...ids, ...this.suffixIds];
  }

  /** Token strings of one text (no special tokens). */
  tokenize(text: string): string[] {
    return this.hf.tokenize(text, { add_special_tokens: false });
  }

  decode(ids: ArrayLike<number | bigint>, opts: DecodeOptions = {}): string {
    const arr: number[] = Array.from(ids as ArrayLike<number | bigint>, (v) => Number(v));
    if (!arr.length) return ''; // the library rejects an empty id list (e.g. a row that stopped at end-of-text at once)
    return this.hf.decode(arr, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** Encode a batch into int64 tensors (see EncodeBatchOptions). */
  encodeBatch(texts: readonly string[], opts: EncodeBatchOptions = {}): EncodedBatch {
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    const special = opts.addSpecialTokens === false ? 0 : this.prefixIds.length + this.suffixIds.length;
    if (!(maxLength > special))
      throw new GraftError(`max length ${maxLength} leaves no room for text (${special} special tokens)`);
    const truncation = opts.truncation ?? true;
    const rows: number[][] = [];
    const truncated: number[] = [];
    const origLen: number[] = [];
    for (let i = 0; i < texts.length; i++) {
      const text = texts[i];
      if (typeof text !== 'string') throw new GraftError(`${where(opts, i)}: text is not a string`);
      let ids = this.encodeRaw(text);
      if (ids.length + special > maxLength) {
        if (!truncation)
          throw new GraftError(
            `${where(opts, i)}: text is ${ids.length + special} tokens, longer than the maximum ${maxLength}`,
            'raise --max-length or allow truncation',
          );
        truncated.push(i);
        origLen.push(ids.length + special);
        ids = ids.slice(0, maxLength - special);
      }
      rows.push(special ? [...this.prefixIds, ...ids, ...this.suffixIds] : ids);
    }
    if (truncated.length) {
      const shown = truncated.slice(0, 8).map((r, k) => `row ${rowOf(opts, r)} (${origLen[k]} tokens)`);
      const more = truncated.length > 8 ? ` and ${truncated.length - 8} more` : '';
      const msg = `warning: ${opts.source ? opts.source + ': ' : ''}truncated ${truncated.length} text(s) to ${maxLength} tokens: ${shown.join(', ')}${more}`;
      (opts.warn ?? ((m: string) => console.warn(m)))(msg);
    }
    const lengths = rows.map((r) => r.length);
    const len = opts.padding === 'max_length' ? maxLength : Math.max(1, ...lengths);
    const n = rows.length;
    const ids = new BigInt64Array(n * len);
    const mask = new BigInt64Array(n * len);
    const types = new BigInt64Array(n * len);
    const pad = BigInt(this.padId);
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      for (let j = 0; j < len; j++) {
        if (j < r.length) {
          ids[i * len + j] = BigInt(r[j]!);
          mask[i * len + j] = 1n;
        } else ids[i * len + j] = pad;
      }
    }
    return {
      inputIds: { dtype: 'int64', dims: [n, len], data: ids },
      attentionMask: { dtype: 'int64', dims: [n, len], data: mask },
      tokenTypeIds: { dtype: 'int64', dims: [n, len], data: types },
      lengths,
      truncated,
    };
  }
}

function rowOf(opts: EncodeBatchOptions, i: number): number {
  return opts.rows?.[i] ?? i + (opts.rowOffset ?? 0);
}

function where(opts: EncodeBatchOptions, i: number): string {
  return `${opts.source ?? 'text'} row ${rowOf(opts, i)}`;
}

function findSub(hay: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function inferModelType(model: Record<string, unknown>): string {
  if (Array.isArray(model['vocab'])) return 'Unigram';
  if ('merges' in model) return 'BPE';
  return 'WordPiece';
}

/**
 * Load a tokenizer from a folder holding tokenizer.json (and optionally tokenizer_config.json), or
 * from a tokenizer.json path directly.
 */
export async function loadTokenizer(path: string, opts: { maxLength?: number } = {}): Promise<TextTokenizer> {
  return loadTokenizerSync(path, opts);
}

export function loadTokenizerSync(path: string, opts: { maxLength?: number } = {}): TextTokenizer {
  // a folder's files must stay in it (symlinks included); a tokenizer.json named directly is the user's choice
  const file = path.endsWith('.json') ? path : insideFolder(path, 'tokenizer.json', 'tokenizer file');
  if (!existsSync(file))
    throw new GraftError(`no tokenizer at ${file}`, 'a text model folder needs a Hugging Face tokenizer.json');
  const dir = path.endsWith('.json') ? join(file, '..') : path;
  const json = readJson(file);
  const cfgFile = insideFolder(dir, 'tokenizer_config.json', 'tokenizer config');
  const cfg = existsSync(cfgFile) ? (readJson(cfgFile) as TokenizerConfigJson) : {};
  return new TextTokenizer(json, cfg, { ...opts, label: file });
}

function readJson(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new GraftError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new GraftError(`${file}: not a JSON object`);
  return v as Record<string, unknown>;
}
