/**
 * Evaluation reports: the metrics as JSON, and one self-contained HTML page (no scripts, no external
 * files) with the confusion matrix as a heat-map and per-class precision/recall bars, both inline SVG.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Metrics } from './metrics.js';
import { atomicWrite } from '../formats/onnx.js';

export interface ReportInfo {
  title?: string;
  model?: string;
  data?: string;
  /** Anything else worth recording (shown as a table, stored in the JSON). */
  details?: Record<string, string | number>;
  /** Input files that could not be read and were skipped (listed in the page, stored in the JSON). */
  skipped?: { path: string; error: string }[];
  /** More to store in the JSON only (e.g. the whole training report). */
  extra?: Record<string, unknown>;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** White → dark blue, t in [0, 1]. */
function heat(t: number): string {
  const a = [247, 251, 255],
    b = [8, 48, 107];
  const c = a.map((x, i) => Math.round(x + (b[i]! - x) * Math.max(0, Math.min(1, t))));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** The confusion matrix as an SVG heat-map; colour is the row-normalized rate (recall of each true class), text the count. */
export function confusionSvg(m: Metrics): string {
  const K = m.labels.length;
  const cell = K <= 12 ? 44 : K <= 30 ? 24 : 14;
  const lw = Math.min(160, 8 + 7 * Math.max(...m.labels.map((l) => l.length), 4));
  const top = lw,
    left = lw;
  const W = left + K * cell + 10,
    H = top + K * cell + 30;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="${Math.min(12, cell / 2.5)}">`,
  );
  parts.push(`<text x="${left + (K * cell) / 2}" y="12" text-anchor="middle" font-size="12">predicted</text>`);
  parts.push(
    `<text x="12" y="${top + (K * cell) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 12 ${top + (K * cell) / 2})">true</text>`,
  );
  m.labels.forEach((l, k) => {
    const x = left + k * cell + cell / 2;
    parts.push(
      `<text x="${x}" y="${top - 6}" text-anchor="start" transform="rotate(-60 ${x} ${top - 6})">${esc(l)}</text>`,
    );
    parts.push(`<text x="${left - 6}" y="${top + k * cell + cell / 2 + 4}" text-anchor="end">${esc(l)}</text>`);
  });
  m.confusion.forEach((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((c, p) => {
      const rate = total ? c / total : 0;
      const x = left + p * cell,
        y = top + t * cell;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${heat(rate)}" stroke="#ccc"><title>true ${esc(m.labels[t]!)}, predicted ${esc(m.labels[p]!)}: ${c} (${(100 * rate).toFixed(1)}%)</title></rect>`,
      );
      if (cell >= 24 && c > 0)
        parts.push(
          `<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" fill="${rate > 0.5 ? '#fff' : '#000'}">${c}</text>`,
        );
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Per-class precision and recall as horizontal bar pairs. */
export function barsSvg(m: Metrics): string {
  const lw = Math.min(160, 8 + 7 * Math.max(...m.labels.map((l) => l.length), 4));
  const barW = 300,
    rowH = 26;
  const W = lw + barW + 70,
    H = 30 + m.perClass.length * rowH;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
  );
  parts.push(
    `<rect x="${lw}" y="4" width="10" height="10" fill="#3a7bd5"/><text x="${lw + 14}" y="13">precision</text>`,
  );
  parts.push(
    `<rect x="${lw + 90}" y="4" width="10" height="10" fill="#f39c12"/><text x="${lw + 104}" y="13">recall</text>`,
  );
  m.perClass.forEach((c, i) => {
    const y = 24 + i * rowH;
    parts.push(`<text x="${lw - 6}" y="${y + 14}" text-anchor="end">${esc(c.label)}</text>`);
    parts.push(
      `<rect x="${lw}" y="${y + 2}" width="${(barW * c.precision).toFixed(1)}" height="10" fill="#3a7bd5"><title>precision ${c.precision.toFixed(4)}</title></rect>`,
    );
    parts.push(
      `<rect x="${lw}" y="${y + 12}" width="${(barW * c.recall).toFixed(1)}" height="10" fill="#f39c12"><title>recall ${c.recall.toFixed(4)}</title></rect>`,
    );
    parts.push(`<text x="${lw + barW + 6}" y="${y + 16}">${c.precision.toFixed(2)} / ${c.recall.toFixed(2)}</text>`);
  });
  parts.push(`<line x1="${lw}" y1="20" x2="${lw}" y2="${H}" stroke="#888"/>`);
  parts.push('</svg>');
  return parts.join('\n');
}

export function reportHtml(m: Metrics, info: ReportInfo = {}): string {
  const title = info.title ?? 'Graft evaluation report';
  const rows: [string, string][] = [];
  if (info.model) rows.push(['model', info.model]);
  if (info.data) rows.push(['data', info.data]);
  rows.push(
    ['examples', String(m.n)],
    ['accuracy', m.accuracy.toFixed(4)],
    ['macro-F1', m.macroF1.toFixed(4)],
    ['macro precision', m.macroPrecision.toFixed(4)],
    ['macro recall', m.macroRecall.toFixed(4)],
  );
  for (const [k, v] of Object.entries(info.details ?? {})) rows.push([k, String(v)]);
  const perClass = m.perClass
    .map(
      (c) =>
        `<tr><td>${esc(c.label)}</td><td>${c.precision.toFixed(4)}</td><td>${c.recall.toFixed(4)}</td><td>${c.f1.toFixed(4)}</td><td>${c.support}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ddd; padding: 3px 10px; text-align: left; }
th { background: #f4f4f4; }
.figs { display: flex; flex-wrap: wrap; gap: 3em; align-items: flex-start; }
</style></head>
<body>
<h1>${esc(title)}</h1>
<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
<div class="figs">
<figure><figcaption>Confusion matrix (colour: share of each true class; text: count)</figcaption>
${confusionSvg(m)}
</figure>
<figure><figcaption>Precision and recall per class</figcaption>
${barsSvg(m)}
</figure>
</div>
<h2>Per class</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
${perClass}
</table>
${info.skipped?.length ? `<h2>Skipped (unreadable) files: ${info.skipped.length}</h2>\n<ul>${info.skipped.map((f) => `<li><code>${esc(f.path)}</code>: ${esc(f.error)}</li>`).join('\n')}</ul>\n` : ''}</body></html>
`;
}

/** The metrics (and info) as JSON. */
export function reportJson(m: Metrics, info: ReportInfo = {}): string {
  const { extra, ...rest } = info;
  return JSON.stringify({ ...rest, ...extra, metrics: m }, null, 2) + '\n';
}

/**
 * Write a report: `path` ending in .json gets the JSON only; otherwise the HTML goes to `path` and
 * the JSON beside it (same name, .json). Returns the files written.
 */
export function writeReport(path: string, m: Metrics, info: ReportInfo = {}): string[] {
  mkdirSync(dirname(path) || '.', { recursive: true });
  if (path.toLowerCase().endsWith('.json')) {
    atomicWrite(path, Buffer.from(reportJson(m, info)));
    return [path];
  }
  const jsonPath = path.replace(/\.html?$/i, '') + '.json';
  atomicWrite(path, Buffer.from(reportHtml(m, info)));
  atomicWrite(jsonPath, Buffer.from(reportJson(m, info)));
  return [path, jsonPath];
}
