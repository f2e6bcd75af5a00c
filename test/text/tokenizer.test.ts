/** Tokenizers: the real bert-mini WordPiece tokenizer, and tiny BPE / Unigram tokenizer.json files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asset, needs } from '../helpers/assets.js';
import { loadTokenizer, TextTokenizer } from '../../src/text/tokenizer.js';
import { loadModelFolder } from '../../src/text/model-folder.js';

const BERT = () => asset('models/text/bert-mini-debian');
const needsBert = needs('models/text/bert-mini-debian');

test('WordPiece (bert-mini): special tokens, subwords, round trip', { skip: needsBert }, async () => {
  const tok = await loadTokenizer(BERT());
  assert.equal(tok.vocabSize, 8192);
  assert.equal(tok.padId, 0);
  assert.equal(tok.clsId, 2);
  assert.equal(tok.sepId, 3);
  const ids = tok.encode('Unbelievably GOOD film.');
  assert.equal(ids[0], 2);
  assert.equal(ids[ids.length - 1], 3);
  assert.ok(
    tok.tokenize('unbelievably').some((t) => t.startsWith('##')),
    'splits a rare word into word pieces',
  );
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'unbelievably good film.');
  assert.match(tok.decode(ids), /^\[CLS\] .* \[SEP\]$/);
  assert.equal(tok.decode([]), '', 'no ids (a row that ended at once) decode to the empty string');
});

test('encodeBatch: padding, masks, truncation warns naming the row', { skip: needsBert }, async () => {
  const tok = await loadTokenizer(BERT());
  const warnings: string[] = [];
  const long = 'a very long review '.repeat(30);
  const b = tok.encodeBatch(['fine', long, 'not bad at all'], {
    maxLength: 12,
    source: 'r.csv',
    rowOffset: 10,
    warn: (m) => warnings.push(m),
  });
  assert.deepEqual(b.inputIds.dims, [3, 12]);
  assert.equal(b.inputIds.dtype, 'int64');
  assert.deepEqual(b.truncated, [1]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /r\.csv.*row 11/);
  const ids = b.inputIds.data as BigInt64Array;
  const mask = b.attentionMask.data as BigInt64Array;
  // Row 0: [CLS] fine [SEP] then padding with mask 0.
  assert.equal(b.lengths[0], 3);
  assert.deepEqual([...ids.slice(0, 4)].map(Number), [2, tok.encode('fine', { addSpecialTokens: false })[0], 3, 0]);
  assert.deepEqual([...mask.slice(0, 4)].map(Number), [1, 1, 1, 0]);
  // The truncated row keeps its closing [SEP].
  assert.equal(Number(ids[12 + 11]), 3);
  assert.equal(b.lengths[1], 12);
  // 'longest' padding without truncation needed: width is the longest row.
  const c = tok.encodeBatch(['fine', 'not bad at all'], { maxLength: 64 });
  assert.equal(c.inputIds.dims[1], Math.max(...c.lengths));
  const d = tok.encodeBatch(['fine'], { maxLength: 20, padding: 'max_length' });
  assert.deepEqual(d.inputIds.dims, [1, 20]);
  assert.throws(
    () => tok.encodeBatch([long], { maxLength: 12, truncation: false, source: 'x.csv' }),
    /x\.csv row 0.*longer than/,
  );
});

test('model folder loads offline: config, tokenizer, graph', {
  skip: needs('models/text/bert-mini-debian', 'models/text/gpt2-mini-debian'),
}, async () => {
  const m = await loadModelFolder(BERT());
  assert.equal(m.hiddenSize, 256);
  assert.equal(m.maxPositions, 128);
  assert.deepEqual(m.graph.inputs.map((i) => i.name).sort(), ['attention_mask', 'input_ids', 'token_type_ids']);
  const g = await loadModelFolder(asset('models/text/gpt2-mini-debian'));
  assert.deepEqual(g.tokenizer.prefixIds, []);
  assert.deepEqual(g.tokenizer.suffixIds, []);
  assert.equal(g.tokenizer.eosId, 3);
});

test('BPE tokenizer.json (byte-level)', () => {
  const bytes = ['a', 'b', 'c', 'Ġ'];
  const vocab: Record<string, number> = { '<pad>': 0, '</s>': 1 };
  for (const t of [...bytes, 'ab', 'abc', 'Ġa', 'Ġab', 'Ġabc']) vocab[t] = Object.keys(vocab).length;
  const json = {
    version: '1.0',
    added_tokens: [
      { id: 0, content: '<pad>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 1, content: '</s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      vocab,
      merges: ['Ġ a', 'Ġa b', 'Ġab c', 'a b', 'ab c'],
      unk_token: null,
      ignore_merges: false,
    },
  };
  const tok = new TextTokenizer(json, { pad_token: '<pad>', eos_token: '</s>' });
  const ids = tok.encode('abc abc');
  assert.deepEqual(ids, [vocab['abc'], vocab['Ġabc']]);
  assert.equal(tok.decode(ids), 'abc abc');
  assert.equal(tok.padId, 0);
  const b = tok.encodeBatch(['abc', 'abc abc ab'], {});
  assert.deepEqual(b.lengths, [1, 3]);
  assert.deepEqual([...(b.attentionMask.data as BigInt64Array)].map(Number), [1, 0, 0, 1, 1, 1]);
});

test('Unigram tokenizer.json (SentencePiece-style)', () => {
  const vocab: [string, number][] = [
    ['<unk>', 0],
    ['<pad>', 0],
    ['</s>', 0],
    ['▁', -2],
    ['▁good', -1],
    ['▁film', -1],
    ['s', -3],
    ['▁films', -8],
    ['g', -5],
    ['o', -5],
    ['d', -5],
    ['f', -5],
    ['i', -5],
    ['l', -5],
    ['m', -5],
  ];
  const json = {
    version: '1.0',
    added_tokens: [
      { id: 0, content: '<unk>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 1, content: '<pad>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 2, content: '</s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
      ],
      special_tokens: { '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' },
    model: { type: 'Unigram', unk_id: 0, vocab },
  };
  const tok = new TextTokenizer(json, { pad_token: '<pad>', eos_token: '</s>', unk_token: '<unk>' });
  assert.equal(tok.modelType, 'Unigram');
  assert.deepEqual(tok.suffixIds, [2]);
  assert.deepEqual(tok.prefixIds, []);
  const ids = tok.encode('good films');
  assert.deepEqual(ids, [4, 5, 6, 2]);
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'good films');
  const b = tok.encodeBatch(['good films good films'], { maxLength: 3, warn: () => {} });
  assert.deepEqual([...(b.inputIds.data as BigInt64Array)].map(Number), [4, 5, 2]);
  assert.equal(tok.padId, 1);
});
