/** Small inline-SVG line charts for the training curves (loss; accuracy), redrawn as epochs arrive. */

const NS = 'http://www.w3.org/2000/svg';

export interface Series {
  name: string;
  points: [number, number][];
  className: string;
}

function el<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** An SVG chart of the series over x (epochs); yRange fixes the axis (e.g. [0, 1] for accuracy). */
export function lineChart(title: string, series: Series[], testid: string, yRange?: [number, number]): SVGSVGElement {
  const W = 320,
    H = 160,
    L = 40,
    R = 10,
    T = 22,
    B = 24;
  const svg = el('svg', {
    viewBox: `0 0 ${W} ${H}`,
    width: W,
    height: H,
    role: 'img',
    'aria-label': title,
    'data-testid': testid,
    class: 'chart',
  });
  const all = series.flatMap((s) => s.points);
  const t = el('text', { x: L, y: 14, class: 'chart-title' });
  t.textContent = title;
  svg.append(t);
  const xs = all.map((p) => p[0]),
    ys = all.map((p) => p[1]).filter(Number.isFinite);
  const x0 = Math.min(1, ...xs),
    x1 = Math.max(x0 + 1, ...xs);
  let y0 = yRange ? yRange[0] : Math.min(...ys),
    y1 = yRange ? yRange[1] : Math.max(...ys);
  if (!Number.isFinite(y0) || !Number.isFinite(y1)) [y0, y1] = [0, 1];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  svg.append(
    el('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }),
    el('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }),
  );
  for (const [v, y] of [
    [y1, sy(y1)],
    [y0, sy(y0)],
  ] as const) {
    const lab = el('text', { x: L - 4, y: y + 4, 'text-anchor': 'end', class: 'tick' });
    lab.textContent = Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2);
    svg.append(lab);
  }
  const xl = el('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'tick' });
  xl.textContent = xs.length ? `epoch ${Math.max(...xs)}` : 'epoch';
  svg.append(xl);
  let ly = T + 2;
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length) {
      svg.append(
        el('polyline', {
          points: pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' '),
          class: `line ${s.className}`,
          'data-points': pts.length,
        }),
      );
      for (const [x, y] of pts.length <= 40 ? pts : [])
        svg.append(el('circle', { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2, class: `dot ${s.className}` }));
    }
    if (series.length > 1) {
      const legend = el('text', { x: W - R - 4, y: ly + 8, 'text-anchor': 'end', class: `legend ${s.className}` });
      legend.textContent = s.name;
      svg.append(legend);
      ly += 12;
    }
  }
  return svg;
}
