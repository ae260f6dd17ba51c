/**
 * The load-shape grid of `npm run bench:shapes` (issue 10): which cells, which servers,
 * and the pure arithmetic over their runs (medians, ratios, the generator-saturation mark,
 * the open-loop rate, the tables). bench/shapes.ts runs it; nothing here does I/O.
 */
import type { Calibration } from './scenarios.js';
import { median, ratio, round } from './stats.js';

export type ShapeServerId = 'pool' | 'inline' | 'cluster' | 'ref' | 'net';
export type Cost = '100us' | '1ms' | 'echo64' | 'echo16k';

export interface ShapeCell {
  id: string;
  kind: 'closed' | 'open';
  title: string;
  cost: Cost;
  connections: number;
  pipeline: number;
  size: number;
  k: number | 'k100' | 'k1ms';
  /**
   * Open loop: the closed cell whose measured capacity (pool server) sets the rate. A
   * non-pipelined one: open-loop requests leave one by one, as they do from real clients,
   * so pipelined capacity would overstate what the server can carry that way.
   */
  capacityOf?: string;
}

/** connections x pipeline of the CPU-bound grid. */
export const SHAPES: Array<[number, number]> = [
  [1, 16],
  [16, 4],
  [32, 2],
  [64, 1],
  [256, 1],
];

const COSTS: Array<{ cost: Cost; k: 'k100' | 'k1ms'; label: string }> = [
  { cost: '100us', k: 'k100', label: '~100 µs' },
  { cost: '1ms', k: 'k1ms', label: '~1 ms' },
];

export const CELLS: ShapeCell[] = [
  ...COSTS.flatMap(({ cost, k, label }) =>
    SHAPES.map(([c, p]): ShapeCell => ({ id: `${c}x${p}-${cost}`, kind: 'closed', title: `${c} × ${p}, ${label}`, cost, connections: c, pipeline: p, size: 64, k })),
  ),
  { id: 'echo64', kind: 'closed', title: '64 B echo, 64 × 16', cost: 'echo64', connections: 64, pipeline: 16, size: 64, k: 0 },
  { id: 'echo16k', kind: 'closed', title: '16 KiB echo, 16 × 4', cost: 'echo16k', connections: 16, pipeline: 4, size: 16 * 1024, k: 0 },
  { id: 'open-100us', kind: 'open', title: 'open loop, ~100 µs', cost: '100us', connections: 64, pipeline: 16, size: 64, k: 'k100', capacityOf: '64x1-100us' },
  { id: 'open-1ms', kind: 'open', title: 'open loop, ~1 ms', cost: '1ms', connections: 64, pipeline: 16, size: 64, k: 'k1ms', capacityOf: '64x1-1ms' },
  { id: 'open-echo64', kind: 'open', title: 'open loop, 64 B echo', cost: 'echo64', connections: 64, pipeline: 16, size: 64, k: 0, capacityOf: 'echo64-64x1' },
];

/** Closed cells measured only as the capacity behind an open-loop cell, not part of the grid. */
export const PROBES: ShapeCell[] = [
  { id: 'echo64-64x1', kind: 'closed', title: '64 B echo, 64 × 1', cost: 'echo64', connections: 64, pipeline: 1, size: 64, k: 0 },
];

/** The two extra runs besides the cells: cold-start memory and the generator agreement check. */
export const EXTRAS = ['memory', 'agree'] as const;
export type Extra = (typeof EXTRAS)[number];

/** Cells the agreement check drives with both generators (pool server): one CPU-bound, one cheap. */
export const AGREE_CELLS = ['16x4-1ms', 'echo64'];

export function kValue(cell: ShapeCell, c: Calibration): number {
  return cell.k === 'k100' ? c.k100 : cell.k === 'k1ms' ? c.k1ms : cell.k;
}

/**
 * --only: cell ids and group names (closed, open, echo, 100us, 1ms, memory, agree), comma
 * separated; empty = everything. Unknown names are an error, not silently nothing.
 */
export function selectCells(only: string | undefined): { cells: ShapeCell[]; extras: Extra[] } {
  if (!only) return { cells: CELLS, extras: [...EXTRAS] };
  const cells = new Set<ShapeCell>();
  const extras = new Set<Extra>();
  for (const name of only.split(',').map((s) => s.trim()).filter(Boolean)) {
    const matched = CELLS.filter(
      (c) => c.id === name || c.kind === name || (name === 'echo' && c.k === 0) || (c.cost === name && typeof c.k !== 'number'),
    );
    if ((EXTRAS as readonly string[]).includes(name)) extras.add(name as Extra);
    else if (matched.length === 0) throw new Error(`--only: no cell or group "${name}" (cells: ${CELLS.map((c) => c.id).join(', ')}; groups: closed, open, echo, 100us, 1ms, memory, agree)`);
    for (const c of matched) cells.add(c);
  }
  return { cells: CELLS.filter((c) => cells.has(c)), extras: EXTRAS.filter((e) => extras.has(e)) };
}

/** The open-loop rate: `fraction` of the measured capacity, two significant digits. */
export function openRate(capacity: number, fraction: number): number {
  const r = capacity * fraction;
  if (!(r > 0)) return 0;
  const step = 10 ** Math.max(0, Math.floor(Math.log10(r)) - 1);
  return Math.max(1, Math.round(r / step) * step);
}

// ---------------------------------------------------------------------------- runs -> cells

/** What one run of a cell measured (loadgen figures; latencies in ms). */
export interface RunFigures {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
  errors: number;
  /** Generator CPU, % of one core (process), and its busiest thread. */
  genCpu: number;
  genSaturated: boolean;
  serverPeakRssMiB: number;
  serverCpu: number;
  /** The server processes' main threads' part of serverCpu (shoal: the I/O thread; the rest is workers and V8's helpers). */
  mainCpu: number;
  otherCpu: number;
}

export interface CellSummary {
  runs: number;
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
  errors: number;
  genCpu: number;
  /** Some run of this cell had a generator thread at >= 90 % of a core. */
  genSaturated: boolean;
  peakRssMiB: number;
  serverCpu: number;
  mainCpu: number;
  otherCpu: number;
}

export function summarize(runs: RunFigures[]): CellSummary {
  const m = (f: (r: RunFigures) => number, d = 3): number => round(median(runs.map(f)), d);
  const rps = runs.map((r) => r.rps);
  return {
    runs: runs.length,
    rps: m((r) => r.rps, 1),
    rpsMin: runs.length ? round(Math.min(...rps), 1) : 0,
    rpsMax: runs.length ? round(Math.max(...rps), 1) : 0,
    p50: m((r) => r.p50),
    p90: m((r) => r.p90),
    p99: m((r) => r.p99),
    p99_9: m((r) => r.p99_9),
    max: m((r) => r.max),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    genCpu: m((r) => r.genCpu, 1),
    genSaturated: runs.some((r) => r.genSaturated),
    peakRssMiB: m((r) => r.serverPeakRssMiB, 1),
    serverCpu: m((r) => r.serverCpu, 1),
    mainCpu: m((r) => r.mainCpu, 1),
    otherCpu: m((r) => r.otherCpu, 1),
  };
}

export type Summaries = Record<string, Partial<Record<ShapeServerId, CellSummary>>>;

/** Median CPU of other processes (% of one core) above which a cell's figures are noise: the cores were shared. */
export const NOISY_OTHER_CPU = 20;

/** One ratio of req/s, pool over a baseline; `saturated` when either side's generator was, `noisy` when either side's machine was busy. */
export interface Ratio {
  value: number | null;
  saturated: boolean;
  noisy: boolean;
}

/** The baselines the pool is held against, in table order (those measured). */
export const BASELINES: Array<{ id: ShapeServerId; column: string }> = [
  { id: 'inline', column: 'workers: 2 / workers: 0' },
  { id: 'cluster', column: 'workers: 2 / cluster' },
  { id: 'ref', column: 'workers: 2 / ref' },
];

export function ratioOf(row: Partial<Record<ShapeServerId, CellSummary>> | undefined, baseline: ShapeServerId): Ratio {
  const a = row?.pool;
  const b = row?.[baseline];
  const busy = (x: CellSummary | undefined): boolean => (x?.otherCpu ?? 0) > NOISY_OTHER_CPU;
  return { value: ratio(a?.rps, b?.rps), saturated: Boolean(a?.genSaturated || b?.genSaturated), noisy: busy(a) || busy(b) };
}

/** "1.85×", with ⚑ when the generator used >= 90 % of a core on either side, ≈ when other load made it noise. */
export function formatRatio(r: Ratio): string {
  return r.value === null ? 'n/a' : `${r.value.toFixed(2)}×${r.saturated ? ' ⚑' : ''}${r.noisy ? ' ≈' : ''}`;
}

// ---------------------------------------------------------------------------- memory, agreement

export interface MemoryFigures {
  connections: number;
  opened: number;
  failed: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
}

/** RSS per used connection, KiB: (after - before) / connections opened. */
export function perConnectionKiB(m: MemoryFigures): number | null {
  return m.opened > 0 ? round((m.rssAfterKiB - m.rssBeforeKiB) / m.opened, 2) : null;
}

/** Both generators' req/s on one cell, index i = run i of each (run back to back on fresh servers). */
export interface AgreeFigures {
  loadgenRps: number[];
  shoalBenchRps: number[];
  loadgenCpu: number[];
  shoalBenchCpu: number[];
}

/**
 * shoal bench's req/s over loadgen's: ~1.0 when neither generator is the bottleneck. The
 * median of the per-run ratios (each pair ran back to back, so slow drift of a shared
 * machine cancels), and the ratio of the medians.
 */
export function agreement(a: AgreeFigures): { loadgen: number; shoalBench: number; ratio: number | null; pairedRatio: number | null } {
  const l = median(a.loadgenRps);
  const s = median(a.shoalBenchRps);
  const pairs = a.loadgenRps.slice(0, a.shoalBenchRps.length).map((x, i) => ratio(a.shoalBenchRps[i], x)).filter((x): x is number => x !== null);
  return {
    loadgen: round(l, 1),
    shoalBench: round(s, 1),
    ratio: ratio(s, l) === null ? null : round(s / l, 3),
    pairedRatio: pairs.length ? round(median(pairs), 3) : null,
  };
}

// ---------------------------------------------------------------------------- tables

export interface ServerLabel {
  id: ShapeServerId;
  label: string;
}

/** The ratio table: one row per closed cell, one column per baseline measured. */
export function ratioTable(cells: ShapeCell[], summaries: Summaries, servers: ServerLabel[]): string[] {
  const closed = cells.filter((c) => c.kind === 'closed');
  const bases = BASELINES.filter((b) => servers.some((s) => s.id === b.id));
  if (closed.length === 0 || !servers.some((s) => s.id === 'pool') || bases.length === 0) return [];
  const lines = [
    `| load | ${servers.map((s) => `${s.label} req/s`).join(' | ')} | ${bases.map((b) => b.column).join(' | ')} |`,
    `|---|${servers.map(() => '--:|').join('')}${bases.map(() => '--:|').join('')}`,
  ];
  for (const c of closed) {
    const row = summaries[c.id];
    const rps = servers.map((s) => {
      const x = row?.[s.id];
      return x ? `${Math.round(x.rps).toLocaleString('en-US')}${x.genSaturated ? ' ⚑' : ''}${x.errors ? ` (${x.errors} errors)` : ''}` : 'n/a';
    });
    lines.push(`| ${c.title} | ${rps.join(' | ')} | ${bases.map((b) => formatRatio(ratioOf(row, b.id))).join(' | ')} |`);
  }
  return lines;
}

/** The open-loop table: the rate, and p50 / p99 per server. */
export function openTable(cells: ShapeCell[], summaries: Summaries, servers: ServerLabel[], rates: Record<string, number>): string[] {
  const open = cells.filter((c) => c.kind === 'open');
  if (open.length === 0) return [];
  const lines = [
    `| load | rate req/s | ${servers.map((s) => `${s.label} p50 / p99 ms`).join(' | ')} |`,
    `|---|--:|${servers.map(() => '--:|').join('')}`,
  ];
  for (const c of open) {
    const row = summaries[c.id];
    const cols = servers.map((s) => {
      const x = row?.[s.id];
      if (!x) return 'n/a';
      const short = x.rps < (rates[c.id] ?? 0) * 0.97 ? ` (carried ${Math.round(x.rps)} req/s)` : '';
      return `${x.p50.toFixed(3)} / ${x.p99.toFixed(3)}${x.genSaturated ? ' ⚑' : ''}${short}${x.errors ? ` (${x.errors} errors)` : ''}`;
    });
    lines.push(`| ${c.title} | ${rates[c.id] ?? 'n/a'} | ${cols.join(' | ')} |`);
  }
  return lines;
}
