/**
 * Text classification report: frozen mean-pooled bert-mini features + logistic regression, linear
 * probe then fine-tune (LP-FT), plain fine-tuning (random head), SetFit-style contrastive tuning, and
 * TF-IDF + logistic regression, and prompt-based fine-tuning (masked-LM head scoring bad/good at
 * `{text} it was [MASK] .`), side by side at 8 / 50 / 500 labels per class on the review snippets
 * (one fixed 1,000-example test set; training labels drawn per seed from the rest), plus SpamAssassin
 * (frozen features, TF-IDF and LP-FT at max length 128) and the French/Dutch/German reviews (language
 * shift) with frozen features and TF-IDF.
 *
 *   GRAFT_THREADS=1 npx tsx bench/text-classify.ts [--budgets 8,50,500] [--seeds 3] [--out docs/text-classify.json] [--quick]
 *
 * Writes the JSON results and regenerates the classification section of docs/text.md from them
 * (between the `<!-- text-classify:begin -->` / `<!-- text-classify:end -->` markers).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { assetPath } from '../src/data/assets.js';
import { loadModelFolderSync } from '../src/text/model-folder.js';
import { readTextTable, loadSpamAssassin, type TextTable } from '../src/data/text-table.js';
import { TextFeatureExtractor, fitTextHead, finetuneText, predictTextProba } from '../src/text/classify.js';
import { trainSetFit } from '../src/text/setfit.js';
import { finetunePrompt, predictPromptProba } from '../src/text/prompt.js';
import { trainTfidfClassifier } from '../src/text/tfidf.js';
import { openCache } from '../src/features/cache.js';
import { Rng } from '../src/util/random.js';
import { atomicWrite } from '../src/formats/onnx.js';
import { argmax } from '../src/util/vectors.js';

const args = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1]! : d;
};
const budgets = arg('--budgets', '8,50,500').split(',').map(Number);
const seeds = Number(arg('--seeds', '3'));
const seeds500 = Number(arg('--seeds500', '1'));
const outFile = arg('--out', 'docs/text-classify.json');
const stages = arg('--stages', 'snippets,spam,shift').split(',');
const maxLength = Number(arg('--max-length', '64'));
const quiet = () => {};

const model = loadModelFolderSync(assetPath('models/text/bert-mini-debian'));
const cache = openCache(arg('--cache', '/tmp/graft-text-cache'));
const extractor = new TextFeatureExtractor(model, 'mean');

interface Row {
  task: string;
  perClass: number;
  seed: number;
  method: string;
  accuracy: number;
  seconds: number;
  note?: string;
}
const results: Row[] =
  existsSync(outFile) && args.includes('--resume')
    ? (JSON.parse(readFileSync(outFile, 'utf8')) as { rows: Row[] }).rows
    : [];
const have = (r: Omit<Row, 'accuracy' | 'seconds'>) =>
  results.some((x) => x.task === r.task && x.perClass === r.perClass && x.seed === r.seed && x.method === r.method);
const save = () => {
  atomicWrite(
    outFile,
    Buffer.from(JSON.stringify({ model: 'bert-mini-debian', maxLength, rows: results }, null, 1) + '\n'),
  );
  writeDoc();
};
const acc = (pred: number[], y: number[]) => pred.filter((p, i) => p === y[i]).length / y.length;

async function record(r: Omit<Row, 'accuracy' | 'seconds'>, f: () => Promise<number>) {
  if (have(r)) return;
  const t0 = Date.now();
  const a = await f();
  const row = { ...r, accuracy: a, seconds: (Date.now() - t0) / 1000 };
  results.push(row);
  console.log(JSON.stringify(row));
  save();
}

/** Fixed test set (seed 0 stratified split) and per-seed training picks from the rest. */
function picks(t: TextTable, testPerClass: number, per: number, seed: number) {
  const rng0 = new Rng(0);
  const test: number[] = [];
  const pool: number[][] = [];
  for (const c of t.classes.keys()) {
    const idx = rng0.shuffle(t.y.map((v, i) => (v === c ? i : -1)).filter((i) => i >= 0));
    test.push(...idx.slice(0, testPerClass));
    pool.push(idx.slice(testPerClass));
  }
  const rng = new Rng(1000 + seed);
  const train = pool.flatMap((p) => rng.shuffle([...p]).slice(0, per));
  return { train, test };
}

async function classification(
  task: string,
  t: TextTable,
  testPerClass: number,
  per: number,
  seed: number,
  methods: string[],
  ml: number,
) {
  const { train, test } = picks(t, testPerClass, per, seed);
  const trX = train.map((i) => t.texts[i]!),
    trY = train.map((i) => t.y[i]!);
  const teX = test.map((i) => t.texts[i]!),
    teY = test.map((i) => t.y[i]!);
  const base = { task, perClass: per, seed };
  const feats = async (ix: number[]) =>
    extractor.extract(
      ix.map((i) => t.texts[i]!),
      { maxLength: ml, cache, warn: quiet },
    );
  let head: Awaited<ReturnType<typeof fitTextHead>> | undefined;
  const probe = async () => (head ??= await fitTextHead(await feats(train), trY, seed));
  const evalGraph = async (g: Parameters<typeof predictTextProba>[0]) =>
    acc((await predictTextProba(g, model.tokenizer, teX, { maxLength: ml, warn: quiet })).map(argmax), teY);
  const steps = (n: number) => Math.max(3 * Math.ceil(n / 16), 60);
  for (const m of methods) {
    if (m === 'tfidf')
      await record({ ...base, method: 'TF-IDF + LR' }, async () =>
        acc((await trainTfidfClassifier(trX, trY, { seed })).predict(teX), teY),
      );
    if (m === 'frozen')
      await record({ ...base, method: 'frozen features + LR' }, async () =>
        (await probe()).accuracy(await feats(test), teY),
      );
    if (m === 'lpft')
      await record({ ...base, method: 'LP-FT (probe head, then full fine-tune, lr 1e-4)' }, async () => {
        const r = await finetuneText(model, trX, trY, {
          classes: t.classes.length,
          maxLength: ml,
          seed,
          head: await probe(),
          lr: 1e-4,
          epochs: 3,
          minSteps: steps(trX.length),
          warn: quiet,
        });
        return evalGraph(r.graph);
      });
    if (m === 'plain')
      await record({ ...base, method: 'plain fine-tune (random head, lr 1e-4)' }, async () => {
        const r = await finetuneText(model, trX, trY, {
          classes: t.classes.length,
          maxLength: ml,
          seed,
          lr: 1e-4,
          epochs: 3,
          minSteps: steps(trX.length),
          warn: quiet,
        });
        return evalGraph(r.graph);
      });
    if (m === 'lora')
      await record({ ...base, method: 'LP + LoRA r8 (lr 5e-4)' }, async () => {
        const r = await finetuneText(model, trX, trY, {
          classes: t.classes.length,
          maxLength: ml,
          seed,
          head: await probe(),
          mode: 'lora',
          loraRank: 8,
          lr: 5e-4,
          epochs: 3,
          minSteps: steps(trX.length),
          warn: quiet,
        });
        return evalGraph(r.graph);
      });
    if (m === 'setfit')
      await record({ ...base, method: 'SetFit (contrastive pairs, then LR)' }, async () => {
        const r = await trainSetFit(model, trX, trY, {
          maxLength: ml,
          seed,
          lr: 2e-5 * 5,
          steps: Math.min(Math.ceil((20 * 2 * trX.length) / 16), 120),
        });
        const a = r.head.accuracy(await r.extractor.extract(teX, { maxLength: ml, warn: quiet }), teY);
        await r.extractor.release();
        return a;
      });
    if (m === 'prompt')
      await record({ ...base, method: 'prompt-based FT (MLM head, bad/good, lr 3e-5)' }, async () => {
        const r = await finetunePrompt(model, trX, trY, {
          labelWords: labelWords(t),
          maxLength: ml,
          seed,
          lr: 3e-5,
          epochs: 10,
          minSteps: 70,
          batchSize: 16,
          warn: quiet,
        });
        return acc(
          (await predictPromptProba(r, model.tokenizer, teX, { maxLength: ml, warn: quiet })).map(argmax),
          teY,
        );
      });
  }
}

/** Label word per class for prompt-based tuning; only the polarity tables' -1/1 (class 0 = -1 = bad, 1 = 1 = good). */
function labelWords(t: TextTable): string[] {
  if (t.classes.join() !== '-1,1')
    throw new Error(`prompt rows expect classes -1, 1 (bad, good), got ${t.classes.join(', ')}`);
  return ['bad', 'good'];
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
function sd(xs: number[]): number {
  const m = mean(xs);
  return xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
}

function table(task: string): string {
  const rows = results.filter((r) => r.task === task);
  const methods = [...new Set(rows.map((r) => r.method))];
  const pcs = [...new Set(rows.map((r) => r.perClass))].sort((a, b) => a - b);
  const head = `| method | ${pcs.map((p) => `${p} / class`).join(' | ')} |\n|---|${pcs.map(() => '---').join('|')}|\n`;
  return (
    head +
    methods
      .map(
        (m) =>
          `| ${m} | ${pcs
            .map((p) => {
              const a = rows.filter((r) => r.method === m && r.perClass === p).map((r) => r.accuracy);
              return a.length
                ? `${mean(a).toFixed(3)}${a.length > 1 ? ` ± ${sd(a).toFixed(3)}` : ''} (${a.length})`
                : '–';
            })
            .join(' | ')} |`,
      )
      .join('\n') +
    '\n'
  );
}

/** Per budget: mean paired difference of each fine-tuning method against frozen features (same seed = same texts). */
function paired(task: string): string {
  const rows = results.filter((r) => r.task === task);
  const frozen = rows.filter((r) => r.method === 'frozen features + LR');
  const lines: string[] = [];
  for (const m of [...new Set(rows.map((r) => r.method))].filter(
    (m) => m !== 'frozen features + LR' && m !== 'TF-IDF + LR',
  ))
    for (const p of [...new Set(rows.map((r) => r.perClass))].sort((a, b) => a - b)) {
      const d = rows
        .filter((r) => r.method === m && r.perClass === p)
        .flatMap((r) => {
          const f = frozen.find((x) => x.perClass === p && x.seed === r.seed);
          return f ? [r.accuracy - f.accuracy] : [];
        });
      if (d.length)
        lines.push(
          `| ${m} | ${p} | ${d.map((x) => (x >= 0 ? '+' : '') + x.toFixed(3)).join(', ')} | ${(mean(d) >= 0 ? '+' : '') + mean(d).toFixed(3)} | ${d.filter((x) => x > 0).length}/${d.length} |`,
        );
    }
  return lines.length
    ? `\nAgainst frozen features, per seed (same training texts):\n\n| method | labels / class | difference per seed | mean | seeds won |\n|---|---|---|---|---|\n${lines.join('\n')}\n`
    : '';
}

function writeDoc() {
  const doc = 'docs/text.md';
  if (!existsSync(doc)) return;
  const text = readFileSync(doc, 'utf8');
  const begin = '<!-- text-classify:begin -->',
    end = '<!-- text-classify:end -->';
  const a = text.indexOf(begin),
    b = text.indexOf(end);
  if (a < 0 || b < 0) return;
  const tasks = [...new Set(results.map((r) => r.task))];
  const body =
    `\n_Generated by \`bench/text-classify.ts\` from \`${outFile}\` (bert-mini-debian, max length ${maxLength}; accuracy, mean ± sd over (n) seeds; fixed test set per task)._\n\n` +
    tasks.map((t) => `#### ${t}\n\n${table(t)}${paired(t)}`).join('\n');
  writeFileSync(doc, text.slice(0, a + begin.length) + body + text.slice(b));
}

const snippets = readTextTable(assetPath('datasets/reviews/polarity-en-pang&lee2.csv'));
if (stages.includes('snippets'))
  for (const per of budgets) {
    const methods =
      per <= 8
        ? ['tfidf', 'frozen', 'lpft', 'plain', 'setfit', 'prompt']
        : per <= 50
          ? ['tfidf', 'frozen', 'lpft', 'plain', 'lora', 'setfit', 'prompt']
          : ['tfidf', 'frozen', 'lpft', 'prompt'];
    for (let s = 0; s < (per >= 500 ? seeds500 : seeds); s++)
      await classification('review snippets (pang&lee2, 1,000 test)', snippets, 500, per, s, methods, maxLength);
  }
if (stages.includes('spam')) {
  const spam = loadSpamAssassin();
  for (const per of [8, 50])
    for (let s = 0; s < seeds; s++)
      await classification(
        'SpamAssassin (ham vs spam, 1,000 test)',
        spam,
        500,
        per,
        s,
        ['tfidf', 'frozen', 'lpft'],
        128,
      );
}
if (stages.includes('shift'))
  for (const [lang, file, testPer] of [
    ['French', 'polarity-fr-amazon.csv', 250],
    ['Dutch', 'polarity-nl-bol.com.csv', 250],
    ['German', 'polarity-de-amazon.csv', 50],
  ] as const) {
    const t = readTextTable(assetPath(`datasets/reviews/${file}`));
    for (let s = 0; s < seeds; s++)
      await classification(
        `language shift: ${lang} reviews (${2 * testPer} test)`,
        t,
        testPer,
        50,
        s,
        ['tfidf', 'frozen'],
        128,
      );
  }
await extractor.release();
save();
