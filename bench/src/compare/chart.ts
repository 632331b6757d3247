// An SVG chart of a compare run, hand-written (a few line charts need no plotting library): one row per
// workload, throughput and p99 latency against concurrency, one line per system. Opens in any browser.

export interface ChartSeries {
  readonly system: string;
  /** By concurrency: [clients, ops/s, p99 ms]; a missing point (the system skipped that cell) is left out. */
  readonly points: readonly (readonly [number, number, number])[];
}

export interface ChartRow {
  readonly workload: string;
  readonly series: readonly ChartSeries[];
}

const COLORS: Readonly<Record<string, string>> = { flotilla: '#1f6feb', etcd: '#d1661b', baseline: '#7d8590' };
const PANEL_W = 420;
const PANEL_H = 230;
const MARGIN = { left: 64, right: 16, top: 34, bottom: 40 };
const ROW_H = PANEL_H + MARGIN.top + MARGIN.bottom;
const COL_W = PANEL_W + MARGIN.left + MARGIN.right;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round step for about `count` ticks up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  return step;
}

const tickText = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(0)}k` : v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v >= 10 ? v.toFixed(0) : v.toFixed(1));

function panel(x0: number, y0: number, title: string, concurrencies: readonly number[], series: readonly ChartSeries[], pick: (p: readonly [number, number, number]) => number): string {
  const values = series.flatMap((s) => s.points.map(pick));
  const max = Math.max(1e-9, ...values);
  const step = niceStep(max, 5);
  const top = Math.ceil((max * 1.05) / step) * step;
  // Concurrencies are spaced evenly (they grow geometrically: 1, 16, 64, 256).
  const xOf = (c: number) => x0 + MARGIN.left + (concurrencies.length === 1 ? PANEL_W / 2 : (concurrencies.indexOf(c) / (concurrencies.length - 1)) * PANEL_W);
  const yOf = (v: number) => y0 + MARGIN.top + PANEL_H - (v / top) * PANEL_H;
  const out: string[] = [];
  out.push(`<text x="${x0 + MARGIN.left}" y="${y0 + 20}" font-size="14" font-weight="600">${esc(title)}</text>`);
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = yOf(v);
    out.push(`<line x1="${x0 + MARGIN.left}" x2="${x0 + MARGIN.left + PANEL_W}" y1="${y}" y2="${y}" stroke="#d0d7de" stroke-width="1"/>`);
    out.push(`<text x="${x0 + MARGIN.left - 6}" y="${y + 4}" font-size="11" text-anchor="end" fill="#57606a">${tickText(v)}</text>`);
  }
  for (const c of concurrencies) {
    out.push(`<text x="${xOf(c)}" y="${y0 + MARGIN.top + PANEL_H + 16}" font-size="11" text-anchor="middle" fill="#57606a">${c}</text>`);
  }
  out.push(`<text x="${x0 + MARGIN.left + PANEL_W / 2}" y="${y0 + MARGIN.top + PANEL_H + 32}" font-size="11" text-anchor="middle" fill="#57606a">clients (concurrent requests)</text>`);
  for (const s of series) {
    const color = COLORS[s.system] ?? '#000';
    const dash = s.system === 'baseline' ? ' stroke-dasharray="5 4"' : '';
    const pts = s.points.map((p) => `${xOf(p[0]).toFixed(1)},${yOf(pick(p)).toFixed(1)}`);
    if (pts.length > 1) out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    for (const p of s.points) {
      out.push(`<circle cx="${xOf(p[0]).toFixed(1)}" cy="${yOf(pick(p)).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${s.system}, ${p[0]} clients: ${tickText(pick(p))}`)}</title></circle>`);
    }
  }
  return out.join('\n');
}

/** The whole chart: a legend, then per workload ops/s (left) and p99 ms (right) against clients. */
export function compareChartSvg(o: { title: string; subtitle: string; concurrencies: readonly number[]; rows: readonly ChartRow[] }): string {
  const header = 64;
  const width = COL_W * 2;
  const height = header + ROW_H * o.rows.length;
  const systems = [...new Set(o.rows.flatMap((r) => r.series.map((s) => s.system)))];
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif">`);
  parts.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  parts.push(`<text x="16" y="24" font-size="16" font-weight="700">${esc(o.title)}</text>`);
  parts.push(`<text x="16" y="44" font-size="12" fill="#57606a">${esc(o.subtitle)}</text>`);
  systems.forEach((system, i) => {
    const x = width - 130 * (systems.length - i);
    const color = COLORS[system] ?? '#000';
    parts.push(`<line x1="${x}" x2="${x + 22}" y1="20" y2="20" stroke="${color}" stroke-width="3"${system === 'baseline' ? ' stroke-dasharray="5 4"' : ''}/>`);
    parts.push(`<text x="${x + 28}" y="24" font-size="12">${esc(system)}</text>`);
  });
  o.rows.forEach((row, i) => {
    const y0 = header + i * ROW_H;
    parts.push(panel(0, y0, `${row.workload}: throughput (ops/s)`, o.concurrencies, row.series, (p) => p[1]));
    parts.push(panel(COL_W, y0, `${row.workload}: p99 latency (ms)`, o.concurrencies, row.series, (p) => p[2]));
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
