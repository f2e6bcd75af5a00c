/**
 * Operator census: which ONNX operator types exported models use, how many ONNX node tests each has, and
 * whether Graft has a gradient rule for it. Reads the exports of bench/op-census.py (torchvision models
 * and hand-written transformer blocks, Debian's PyTorch), the text models of ../shared and the node
 * tests of Debian's libonnx-testdata, and writes the table into docs/conformance.md between the
 * op-census markers (bench/conformance.ts keeps that section when it rewrites the file).
 *
 *   /usr/bin/python3 bench/op-census.py            # once: exports to .graft-cache/op-census
 *   npx tsx bench/op-census.ts [--dir .graft-cache/op-census] [--doc docs/conformance.md]
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeOnnx } from '../src/formats/onnx.js';
import { opStatus } from '../src/autodiff/check-model.js';
import { DEBIAN_NODE_TESTS, listNodeTests, testOperator } from '../src/autodiff/conformance.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CENSUS_BEGIN = '<!-- op-census -->';
export const CENSUS_END = '<!-- /op-census -->';

/** The census section of a conformance doc (markers included), or '' when it has none. */
export function censusSection(doc: string): string {
  const a = doc.indexOf(CENSUS_BEGIN);
  const b = doc.indexOf(CENSUS_END);
  return a >= 0 && b > a ? doc.slice(a, b + CENSUS_END.length) : '';
}

/** Operator counts of the nodes and, recursively, of their subgraphs (If/Loop branches, kept as protobuf objects). */
function opCounts(
  nodes: { opType: string; domain?: string; attrs: Record<string, { type: string; value: unknown }> }[],
  m = new Map<string, number>(),
): Map<string, number> {
  type P = { op_type?: string; domain?: string; attribute?: { g?: { node?: P[] }; graphs?: { node?: P[] }[] }[] };
  const visitProto = (ns: P[] | undefined) => {
    for (const n of ns ?? []) {
      const k = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.op_type}` : n.op_type!;
      m.set(k, (m.get(k) ?? 0) + 1);
      for (const at of n.attribute ?? []) {
        visitProto(at.g?.node);
        for (const sg of at.graphs ?? []) visitProto(sg.node);
      }
    }
  };
  for (const n of nodes) {
    const k = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    m.set(k, (m.get(k) ?? 0) + 1);
    for (const at of Object.values(n.attrs)) {
      if (at.type !== 'raw') continue;
      const v = at.value as { g?: { node?: P[] }; graphs?: { node?: P[] }[] };
      visitProto(v.g?.node);
      for (const sg of v.graphs ?? []) visitProto(sg.node);
    }
  }
  return m;
}

interface Row {
  op: string;
  models: number;
  nodes: number;
  tests: number;
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      dir: { type: 'string', default: join(ROOT, '.graft-cache/op-census') },
      doc: { type: 'string', default: join(ROOT, 'docs/conformance.md') },
      suite: { type: 'string', default: DEBIAN_NODE_TESTS },
    },
  });
  const files = existsSync(a.dir!)
    ? readdirSync(a.dir!)
        .filter((f) => f.endsWith('.onnx'))
        .sort()
        .map((f) => join(a.dir!, f))
    : [];
  const text = join(ROOT, '../shared/models/text');
  if (existsSync(text))
    for (const d of readdirSync(text).sort())
      if (existsSync(join(text, d, 'onnx/model.onnx'))) files.push(join(text, d, 'onnx/model.onnx'));
  if (files.length === 0) throw new Error(`no exports in ${a.dir}: run /usr/bin/python3 bench/op-census.py first`);
  const rows = new Map<string, Row>();
  const row = (op: string) => rows.get(op) ?? rows.set(op, { op, models: 0, nodes: 0, tests: 0 }).get(op)!;
  const names: string[] = [];
  for (const f of files) {
    const g = decodeOnnx(readFileSync(f), { baseDir: dirname(f) });
    const name = f.includes('/shared/models/text/') ? basename(dirname(dirname(f))) : basename(f, '.onnx');
    names.push(name);
    for (const [op, n] of opCounts(g.nodes)) {
      const r = row(op);
      r.models++;
      r.nodes += n;
    }
  }
  let suite = 0;
  if (existsSync(a.suite!)) {
    const tests = listNodeTests(a.suite!);
    const all = new Map(tests.map((t) => [t.name, t]));
    for (const t of tests) {
      let op: string;
      try {
        op = testOperator(t, decodeOnnx(readFileSync(join(t.dir, 'model.onnx'))), all);
      } catch {
        continue;
      }
      if (op.includes('+') || op.endsWith('(expanded)')) continue;
      row(op).tests++;
      suite++;
    }
  }
  const failures = existsSync(join(a.dir!, 'failures.json'))
    ? (JSON.parse(readFileSync(join(a.dir!, 'failures.json'), 'utf8')) as {
        torch?: string;
        failures?: Record<string, string>;
      })
    : {};
  const sorted = [...rows.values()].sort((x, y) => y.models - x.models || y.tests - x.tests || (x.op < y.op ? -1 : 1));
  const inExports = sorted.filter((r) => r.models > 0);
  const missing = sorted.filter((r) => opStatus(r.op) === 'MISSING' && (r.models > 0 || r.tests >= 3));
  const line = (r: Row) => `| ${r.op} | ${r.models} | ${r.nodes} | ${r.tests} | ${opStatus(r.op)} |`;
  const section = [
    CENSUS_BEGIN,
    '## Operator census',
    '',
    `Written by \`npx tsx bench/op-census.ts\` over ${names.length} exported models (\`bench/op-census.py\`, PyTorch ${failures.torch ?? '?'} ` +
      `with torchvision, opset 17, weights=None; and the text models of \`../shared/models/text\`) and the ${suite} single-operator node tests: ` +
      'for each operator type, the models that use it, its nodes over all of them, its node tests, and whether Graft has a gradient rule.',
    '',
    `Models: ${names.join(', ')}.`,
    ...(failures.failures && Object.keys(failures.failures).length
      ? [
          '',
          `Not exported (the exporter refused): ${Object.entries(failures.failures)
            .map(([k, v]) => `${k} (${v.slice(0, 120).replace(/\|/g, '\\|')})`)
            .join('; ')}.`,
        ]
      : []),
    '',
    '### Operators without a gradient rule (in an export, or in at least 3 node tests)',
    '',
    '| operator | models | nodes | node tests | status |',
    '| --- | ---: | ---: | ---: | --- |',
    ...(missing.length ? missing.map(line) : ['| (none) | | | | |']),
    '',
    '### Every operator in the exports',
    '',
    '| operator | models | nodes | node tests | status |',
    '| --- | ---: | ---: | ---: | --- |',
    ...inExports.map(line),
    CENSUS_END,
  ].join('\n');
  const doc = existsSync(a.doc!) ? readFileSync(a.doc!, 'utf8') : '';
  const old = censusSection(doc);
  writeFileSync(a.doc!, old ? doc.replace(old, section) : `${doc.trimEnd()}\n\n${section}\n`);
  process.stdout.write(
    `${names.length} models, ${rows.size} operator types, ${missing.length} without a rule: ${missing.map((r) => `${r.op} (${r.models}/${r.tests})`).join(', ')}\nwrote ${a.doc}\n`,
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
