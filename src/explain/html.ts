/**
 * A small self-contained HTML page of token attributions: each token shaded by its score (red speaks
 * for the explained class, blue against it), with the score on hover.
 */
import type { TextExplanation } from './text.js';

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The background of a token with score s, where m is the largest |score| of its text. */
function shade(s: number, m: number): string {
  const t = m > 0 ? Math.min(1, Math.abs(s) / m) : 0;
  const rgb =
    s >= 0
      ? [255, Math.round(255 - 160 * t), Math.round(255 - 160 * t)]
      : [Math.round(255 - 160 * t), Math.round(255 - 100 * t), 255];
  return `rgb(${rgb.join(',')})`;
}

export function attributionsHtml(items: readonly TextExplanation[], title = 'Graft: token attributions'): string {
  const rows = items.map((e) => {
    const m = e.scores.reduce((a, s, i) => (e.special[i] ? a : Math.max(a, Math.abs(s))), 0);
    const toks = e.tokens
      .map(
        (t, i) =>
          `<span class="t${e.special[i] ? ' s' : ''}" style="background:${shade(e.scores[i]!, m)}" title="${e.scores[i]!.toExponential(3)}">${esc(t)}</span>`,
      )
      .join(' ');
    const cls = `${esc(e.class.label ?? `class ${e.class.index}`)} (${e.class.probability.toFixed(3)})`;
    return `<div class="item"><div class="text">${esc(e.text)}</div><div class="cls">explained class: ${cls}</div><div class="toks">${toks}</div></div>`;
  });
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}.item{margin:1.5em 0}
.text{color:#555}.cls{font-size:.9em;margin:.3em 0}.t{padding:.1em .25em;border-radius:.2em;line-height:2;font-family:ui-monospace,monospace}
.s{opacity:.5}</style></head><body><h1>${esc(title)}</h1>
<p>Gradient × input on the word embeddings: red tokens speak for the explained class, blue ones against it (hover for the score).</p>
${rows.join('\n')}
</body></html>
`;
}
