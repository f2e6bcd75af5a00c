/** `graft models [NAME] [--json]`: the curated catalog (src/hub/catalog.ts) as a table, as JSON, or one entry in full. */
import { CATALOG, findCatalogEntry, catalogNames, type CatalogEntry } from '../hub/catalog.js';
import { GraftError } from '../util/errors.js';

/** Where an entry comes from, in one line: the hub repository or the URL. */
export function sourceLine(e: CatalogEntry): string {
  const s = e.source;
  return s.kind === 'hub' ? `hf:${s.repo}${s.revision ? `@${s.revision}` : ''}` : s.url;
}

function sizeText(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** The download size of an entry: exact for url entries, the hub page's rounded size of the model file otherwise. */
export function entrySize(e: CatalogEntry): string {
  if (e.source.kind === 'url') return sizeText(e.source.size);
  const model = e.files.find((f) => f.path.endsWith('.onnx'));
  return model?.size !== undefined ? sizeText(model.size) : model?.approxSize ? `≈${model.approxSize}` : '?';
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export function formatCatalogTable(entries: readonly CatalogEntry[] = CATALOG): string {
  const rows = [['NAME', 'KIND', 'SIZE', 'LICENCE', 'SOURCE', 'FOR']];
  for (const e of entries)
    rows.push([
      e.name,
      e.kind,
      entrySize(e),
      e.licence,
      e.source.kind === 'hub' ? sourceLine(e) : 'url (sha256-verified)',
      e.description,
    ]);
  return table(rows);
}

export function formatCatalogEntry(e: CatalogEntry): string {
  const s = e.source;
  const lines = [
    `${e.name} (${e.kind})`,
    `  for:           ${e.description}`,
    `  origin:        ${e.origin}`,
    `  licence:       ${e.licence}`,
    `  source:        ${sourceLine(e)}`,
    ...(s.kind === 'url'
      ? [`  sha256:        ${s.sha256}`, `  size:          ${s.size} bytes (${sizeText(s.size)})`]
      : [`  pulls:         ${s.include.join(' ')}`]),
    `  files:`,
    ...e.files.map(
      (f) => `    ${f.path}${f.size !== undefined ? `  ${f.size} bytes` : f.approxSize ? `  ≈${f.approxSize}` : ''}`,
    ),
    `  input:         ${e.input}`,
    `  preprocessing: ${e.preprocessing}`,
    ...(e.notes ? [`  notes:         ${e.notes}`] : []),
    `  use:           --model ${e.name} (downloaded into the Hugging Face cache on first use)`,
  ];
  return lines.join('\n') + '\n';
}

export function modelsCommand(name: string | undefined, o: { json?: boolean }): void {
  if (name === undefined) {
    process.stdout.write(o.json ? JSON.stringify(CATALOG, null, 2) + '\n' : formatCatalogTable());
    return;
  }
  const e = findCatalogEntry(name);
  if (!e)
    throw new GraftError(
      `no model named "${name}" in the catalog`,
      `known names: ${catalogNames().join(', ')} (graft models lists them)`,
    );
  process.stdout.write(o.json ? JSON.stringify(e, null, 2) + '\n' : formatCatalogEntry(e));
}
