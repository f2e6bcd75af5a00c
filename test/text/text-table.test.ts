/** Text datasets: the real review corpora and SpamAssassin, and each malformed-input error naming file and line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { asset, needs } from '../helpers/assets.js';
import { readTextTable, loadSpamAssassin } from '../../src/data/text-table.js';
import { GraftError } from '../../src/util/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-text-'));
const file = (name: string, content: string | Uint8Array): string => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

test('review corpora: headerless label,text (and text,label) CSV with multi-line quoted fields', {
  skip: needs('datasets/reviews/polarity-en-pang&lee2.csv', 'datasets/reviews/polarity-fr-amazon.csv'),
}, () => {
  const en = readTextTable(asset('datasets/reviews/polarity-en-pang&lee2.csv'));
  assert.equal(en.texts.length, 4000);
  assert.deepEqual(en.classes, ['-1', '1']);
  assert.equal(en.y.filter((v) => v === 1).length, 2000);
  assert.match(en.texts[0]!, /^the rock is destined/);
  assert.ok(en.texts[0]!.includes('" conan "'), 'doubled quotes unescaped');
  assert.equal(en.rows[1], 3, 'rows are file lines (the first record spans two lines)');
  const fr = readTextTable(asset('datasets/reviews/polarity-fr-amazon.csv'));
  assert.equal(fr.texts.length, 1500);
  assert.deepEqual(fr.classes, ['-1', '1']);
  assert.match(fr.texts[0]!, /^Une catastrophe/);
  assert.equal(fr.labels[0], '-1');
});

test('CSV with a header, JSONL, and .gz', () => {
  const csv = 'id,review,stars\n1,"great, really",pos\n2,awful,neg\n';
  const t = readTextTable(file('a.csv', csv), { textColumn: 'review', labelColumn: 'stars' });
  assert.deepEqual(t.texts, ['great, really', 'awful']);
  assert.deepEqual(t.classes, ['neg', 'pos']);
  assert.deepEqual(t.y, [1, 0]);
  const gz = readTextTable(file('a.csv.gz', gzipSync(csv)), { textColumn: 'review', labelColumn: 'stars' });
  assert.deepEqual(gz.texts, t.texts);
  const j = readTextTable(file('b.jsonl', '{"t":"fine","y":1}\n\n{"t":"bad","y":0}\n'), {
    textColumn: 't',
    labelColumn: 'y',
  });
  assert.deepEqual(j.texts, ['fine', 'bad']);
  assert.deepEqual(j.rows, [1, 3]);
});

test('a quote inside an unquoted field is literal, not the start of a field that swallows rows', () => {
  const t = readTextTable(
    file('stray.csv', 'text,label\nthe 5" screen is great,pos\nbad "value,neg\n"quoted, ok",pos\n'),
  );
  assert.deepEqual(t.texts, ['the 5" screen is great', 'bad "value', 'quoted, ok']);
  assert.deepEqual(t.labels, ['pos', 'neg', 'pos']);
  assert.deepEqual(t.rows, [2, 3, 4]);
});

test('headerless file with only the text column given: the label is guessed among the other columns', () => {
  // column 1 (the chosen text) has the fewest distinct values, column 2 the longest: neither may become the label
  const csv =
    'a,title x,a long body text here that is long\nb,title x,another long body text that is longer still\nc,title y,a third long body text\n';
  const t = readTextTable(file('h.csv', csv), { textColumn: 1 });
  assert.deepEqual(t.texts, ['title x', 'title x', 'title y']);
  assert.deepEqual(t.labels, ['a', 'b', 'c']);
});

test('errors name the file and the line', () => {
  const err = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof GraftError && re.test(e.message));
  const p1 = file('empty.csv', 'text,label\nok,1\n  ,0\n');
  err(() => readTextTable(p1), /empty\.csv: line 3: empty text/);
  err(
    () => readTextTable(file('nolabel.csv', 'text,stars\nok,1\n'), { textColumn: 'text', labelColumn: 'label' }),
    /nolabel\.csv: no label column "label".*columns: text, stars/,
  );
  err(() => readTextTable(file('short.csv', 'text,label\nok,1\nonly text\n')), /short\.csv: line 3: no label column/);
  const bad = Buffer.concat([Buffer.from('text,label\nok,1\ncaf'), Buffer.from([0xe9]), Buffer.from(',0\n')]);
  err(() => readTextTable(file('latin1.csv', bad)), /latin1\.csv: line 3 is not valid UTF-8/);
  err(() => readTextTable(file('q.csv', 'text,label\n"open,1\nx,0\n')), /q\.csv: line 2: unterminated quoted field/);
  err(
    () => readTextTable(file('c.jsonl', '{"text":"a","label":1}\n{"text": "b", label: 0}\n')),
    /c\.jsonl: line 2: not valid JSON/,
  );
  err(() => readTextTable(file('d.jsonl', '{"text":"a"}\n')), /d\.jsonl: line 1: no label field "label"/);
  err(() => readTextTable(join(dir, 'missing.csv')), /not found/);
});

test('SpamAssassin e-mails from the npm package', () => {
  const s = loadSpamAssassin({ groups: ['easy-ham-1', 'spam-1'] });
  assert.deepEqual(s.classes, ['ham', 'spam']);
  assert.equal(s.y.filter((v) => v === 0).length, 2500);
  assert.equal(s.y.filter((v) => v === 1).length, 500);
  assert.ok(s.texts.every((t) => t.length > 0 && t.length <= 4000));
  assert.ok(!s.texts.some((t) => /^Return-Path:/m.test(t)), 'headers other than Subject are dropped');
});
