/**
 * Charts for the matrix results as plain SVG strings: no dependency, readable diffs.
 * Small multiples (one panel per scenario, each with its own scale), since the
 * scenarios differ by three orders of magnitude in req/s.
 */

export interface Series {
  label: string;
  color: string;
}

export interface Panel {
  title: string;
  subtitle?: string;
  /** values[series] (null = not measured). */
  values: Array<number | null>;
  /** Text above each bar (defaults to the value). */
  labels?: string[];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948'];

export function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** Bars per panel, one colour per series, linear scale from 0 per panel. */
export function barPanels(title: string, series: Series[], panels: Panel[], opts: { columns?: number; unit?: string } = {}): string {
  const columns = opts.columns ?? 3;
  const pw = 300;
  const ph = 210;
  const top = 56;
  const rows = Math.ceil(panels.length / columns);
  const width = columns * pw + 20;
  const height = top + rows * ph + 20;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
  ];
  series.forEach((s, i) => {
    const x = 12 + i * 190;
    out.push(`<rect x="${x}" y="34" width="12" height="12" fill="${s.color}"/>`, `<text x="${x + 17}" y="44">${esc(s.label)}</text>`);
  });
  panels.forEach((p, i) => {
    const x0 = 10 + (i % columns) * pw;
    const y0 = top + Math.floor(i / columns) * ph;
    const plotTop = y0 + 58; // room for the subtitle and the tallest bar's label
    const plotH = ph - 92;
    const max = Math.max(1e-9, ...p.values.map((v) => v ?? 0));
    out.push(`<text x="${x0 + 10}" y="${y0 + 18}" font-weight="bold">${esc(p.title)}</text>`);
    if (p.subtitle) out.push(`<text x="${x0 + 10}" y="${y0 + 33}" fill="#555" font-size="11">${esc(p.subtitle)}</text>`);
    out.push(`<line x1="${x0 + 10}" y1="${plotTop + plotH}" x2="${x0 + pw - 20}" y2="${plotTop + plotH}" stroke="#999"/>`);
    const n = p.values.length;
    const slot = (pw - 40) / n;
    p.values.forEach((v, j) => {
      const bx = x0 + 15 + j * slot;
      const bw = slot - 10;
      if (v === null) {
        out.push(`<text x="${bx + bw / 2}" y="${plotTop + plotH - 4}" text-anchor="middle" fill="#999">n/a</text>`);
        return;
      }
      const h = Math.max(1, (v / max) * plotH);
      out.push(`<rect x="${bx.toFixed(1)}" y="${(plotTop + plotH - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${series[j]!.color}"/>`);
      const label = p.labels?.[j] ?? compact(v);
      out.push(`<text x="${(bx + bw / 2).toFixed(1)}" y="${(plotTop + plotH - h - 4).toFixed(1)}" text-anchor="middle">${esc(label)}</text>`);
    });
    if (opts.unit) out.push(`<text x="${x0 + 10}" y="${plotTop + plotH + 16}" fill="#555" font-size="11">${esc(opts.unit)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Latency percentiles: per panel (scenario) one group per server, one bar per percentile,
 * log scale shared by all panels so they compare.
 */
export function latencyPanels(
  title: string,
  servers: string[],
  percentiles: Series[],
  panels: Array<{ title: string; subtitle?: string; values: Array<Array<number | null>> }>,
  columns = 3,
): string {
  const pw = 300;
  const ph = 230;
  const top = 56;
  const rows = Math.ceil(panels.length / columns);
  const width = columns * pw + 20;
  const height = top + rows * ph + 20;
  const all = panels.flatMap((p) => p.values.flat()).filter((v): v is number => v !== null && v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, 1))));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
  ];
  percentiles.forEach((s, i) => {
    const x = 12 + i * 90;
    out.push(`<rect x="${x}" y="34" width="12" height="12" fill="${s.color}"/>`, `<text x="${x + 17}" y="44">${esc(s.label)}</text>`);
  });
  out.push(`<text x="${12 + percentiles.length * 90 + 10}" y="44" fill="#555">ms, log scale ${lo}–${hi}</text>`);
  panels.forEach((p, i) => {
    const x0 = 10 + (i % columns) * pw;
    const y0 = top + Math.floor(i / columns) * ph;
    const plotTop = y0 + 44;
    const plotH = ph - 90;
    const y = (v: number): number => plotTop + plotH - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;
    out.push(`<text x="${x0 + 10}" y="${y0 + 18}" font-weight="bold">${esc(p.title)}</text>`);
    if (p.subtitle) out.push(`<text x="${x0 + 10}" y="${y0 + 33}" fill="#555" font-size="11">${esc(p.subtitle)}</text>`);
    for (let d = lo; d <= hi; d *= 10) {
      out.push(`<line x1="${x0 + 10}" y1="${y(d).toFixed(1)}" x2="${x0 + pw - 20}" y2="${y(d).toFixed(1)}" stroke="#eee"/>`);
      out.push(`<text x="${x0 + pw - 18}" y="${(y(d) + 4).toFixed(1)}" fill="#999" font-size="9">${d}</text>`);
    }
    const group = (pw - 40) / servers.length;
    servers.forEach((name, j) => {
      const gx = x0 + 15 + j * group;
      const bw = (group - 12) / percentiles.length;
      percentiles.forEach((s, k) => {
        const v = p.values[j]?.[k] ?? null;
        if (v === null || !(v > 0)) return;
        const yy = y(v);
        out.push(`<rect x="${(gx + k * bw).toFixed(1)}" y="${yy.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${(plotTop + plotH - yy).toFixed(1)}" fill="${s.color}"/>`);
      });
      out.push(`<text x="${(gx + (group - 12) / 2).toFixed(1)}" y="${plotTop + plotH + 14}" text-anchor="middle" font-size="10">${esc(name)}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Colour of a ratio on a log scale: 1.0 pale yellow, 2.0 and above deep green, 0.5 and
 * below red; in between interpolated.
 */
export function ratioColor(r: number): string {
  const t = Math.max(-1, Math.min(1, Math.log2(r))); // -1 at 0.5×, 0 at 1×, +1 at 2×
  const mix = (a: number[], b: number[], f: number): string =>
    '#' + a.map((x, i) => Math.round(x + (b[i]! - x) * f).toString(16).padStart(2, '0')).join('');
  const neutral = [0xf7, 0xf1, 0xc8];
  return t >= 0 ? mix(neutral, [0x1a, 0x98, 0x50], t) : mix(neutral, [0xd7, 0x30, 0x27], -t);
}

/**
 * A heat map of ratios: one row per load, one column per comparison, each cell coloured by
 * its ratio (ratioColor) and labelled with it; a marked cell (the generator used >= 90 %
 * of a core) gets a ⚑ and a dashed border, a noisy one (the cores were shared) a ≈ and
 * faded colour.
 */
export function heatMap(
  title: string,
  rows: string[],
  columns: string[],
  cells: Array<Array<{ value: number | null; marked: boolean; noisy?: boolean }>>,
  note = '',
): string {
  const left = 190;
  const cw = 150;
  const ch = 28;
  const top = 76;
  const width = left + columns.length * cw + 20;
  const height = top + rows.length * ch + 50;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
  ];
  if (note) out.push(`<text x="12" y="40" fill="#555" font-size="11">${esc(note)}</text>`);
  columns.forEach((c, j) => out.push(`<text x="${left + j * cw + cw / 2}" y="${top - 8}" text-anchor="middle" font-weight="bold">${esc(c)}</text>`));
  rows.forEach((r, i) => {
    const y = top + i * ch;
    out.push(`<text x="${left - 8}" y="${y + ch / 2 + 4}" text-anchor="end">${esc(r)}</text>`);
    columns.forEach((_, j) => {
      const cell = cells[i]?.[j] ?? { value: null, marked: false };
      const x = left + j * cw;
      const fill = cell.value === null ? '#eeeeee' : ratioColor(cell.value);
      const border = cell.marked ? ' stroke="#000" stroke-width="1.5" stroke-dasharray="4 2"' : ' stroke="#fff"';
      const fade = cell.noisy ? ' fill-opacity="0.45"' : '';
      out.push(`<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="${fill}"${fade}${border}/>`);
      const label = cell.value === null ? 'n/a' : `${cell.value.toFixed(2)}×${cell.marked ? ' ⚑' : ''}${cell.noisy ? ' ≈' : ''}`;
      out.push(`<text x="${x + cw / 2}" y="${y + ch / 2 + 4}" text-anchor="middle">${esc(label)}</text>`);
    });
  });
  out.push(
    `<text x="12" y="${top + rows.length * ch + 24}" fill="#555" font-size="11">${esc('red < 1× (slower than the baseline), yellow 1×, green 2× (the physical limit on 2 cores); ⚑ generator used ≥ 90 % of a core; ≈ (faded) other load on the cores: noise')}</text>`,
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}
