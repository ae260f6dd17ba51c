/**
 * The benchmark matrix: which servers, which loads (issue 3), and the targets they are held to.
 * Every scenario speaks the bench protocol (shared/bench-protocol.md) and is driven by
 * `shoal bench`; CPU cost per message is set by K, calibrated once per machine.
 */

export interface Calibration {
  /** µs of handler CPU per SHA-256 step, measured with the bench-protocol handler itself. */
  stepUs: number;
  /** K for ~100 µs of CPU per message. */
  k100: number;
  /** K for ~1 ms of CPU per message. */
  k1ms: number;
  measuredAt: string;
  node: string;
  /** SHA-256 of the handler sources the calibration was made with (a new handler recalibrates). */
  handlerHash: string;
}

export type ServerId = 'inline' | 'pool' | 'cluster';

export interface ServerSpec {
  id: ServerId;
  label: string;
}

export function servers(n: number): ServerSpec[] {
  return [
    { id: 'inline', label: 'shoal workers:0' },
    { id: 'pool', label: `shoal workers:${n}` },
    { id: 'cluster', label: `cluster ×${n} (workers:0)` },
  ];
}

export interface Scenario {
  id: string;
  title: string;
  connections: number;
  pipelining: number;
  size: number;
  /** K: a number, or which calibrated K. */
  k: number | 'k100' | 'k1ms';
  /** Open loop total req/s; 0 = closed loop. */
  rate: number;
  note: string;
}

export const SCENARIOS: Scenario[] = [
  { id: 'echo64', title: '64 B echo', connections: 64, pipelining: 16, size: 64, k: 0, rate: 0, note: '64 conns × 16 pipelined' },
  { id: 'echo16k', title: '16 KiB echo', connections: 16, pipelining: 4, size: 16 * 1024, k: 0, rate: 0, note: '16 conns × 4 pipelined' },
  { id: 'cpu100us', title: 'CPU ~100 µs/msg', connections: 16, pipelining: 4, size: 64, k: 'k100', rate: 0, note: '16 conns × 4 pipelined' },
  { id: 'cpu1ms', title: 'CPU ~1 ms/msg', connections: 16, pipelining: 4, size: 64, k: 'k1ms', rate: 0, note: '16 conns × 4 pipelined' },
  { id: 'single', title: '1 conn, CPU ~1 ms/msg', connections: 1, pipelining: 32, size: 64, k: 'k1ms', rate: 0, note: 'one connection × 32 pipelined' },
  { id: 'rate20k', title: '64 B echo at 20k req/s', connections: 64, pipelining: 16, size: 64, k: 0, rate: 20_000, note: 'open loop, 64 conns, ≤ 16 in flight each' },
];

export function kOf(s: Scenario, c: Calibration): number {
  return s.k === 'k100' ? c.k100 : s.k === 'k1ms' ? c.k1ms : s.k;
}

/** One measured figure per (scenario, server): medians over the interleaved runs. */
export interface Cell {
  runs: number;
  /** req/s, median and spread of the runs. */
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p50: number;
  p99: number;
  p99_9: number;
  /** Server peak RSS (all its processes), MiB. */
  peakRssMiB: number;
  /** Server CPU during the measured window, % of one core (all its processes and threads). */
  cpu: number;
  /** Generator process CPU, % of one core. */
  genCpu: number;
  genSaturated: boolean;
  errors: number;
  serverWarnings: number;
  /** Median CPU used by other processes on the machine during the runs, % of one core. */
  otherCpu: number;
}

export interface TargetCheck {
  id: string;
  text: string;
  measured: string;
  met: boolean | null;
}

type Cells = Record<string, Partial<Record<ServerId, Cell>>>;

const ratio = (a: number | undefined, b: number | undefined): number | null =>
  a !== undefined && b !== undefined && b > 0 ? a / b : null;
const fmt = (x: number | null, d = 2): string => (x === null ? 'n/a' : `${x.toFixed(d)}×`);

/** Issue 3's targets for this 2-core machine, checked against one matrix run. */
export function checkTargets(cells: Cells, idle: Partial<Record<ServerId, { perConnKiB: number }>>, n: number): TargetCheck[] {
  const out: TargetCheck[] = [];
  const rps = (s: string, id: ServerId): number | undefined => cells[s]?.[id]?.rps;
  const add = (id: string, text: string, value: number | null, min: number, extra = ''): void => {
    out.push({ id, text, measured: fmt(value) + extra, met: value === null ? null : value >= min });
  };
  add('cpu1ms-inline', `CPU ~1 ms: workers:${n} ≥ 1.9× inline`, ratio(rps('cpu1ms', 'pool'), rps('cpu1ms', 'inline')), 1.9);
  add('cpu1ms-cluster', `CPU ~1 ms: workers:${n} ≥ 1.0× cluster`, ratio(rps('cpu1ms', 'pool'), rps('cpu1ms', 'cluster')), 1.0);
  const memPool = cells.cpu1ms?.pool?.peakRssMiB;
  const memCluster = cells.cpu1ms?.cluster?.peakRssMiB;
  out.push({
    id: 'cpu1ms-memory',
    text: `CPU ~1 ms: workers:${n} uses less memory than the cluster`,
    measured: memPool !== undefined && memCluster !== undefined ? `${memPool.toFixed(0)} MiB vs ${memCluster.toFixed(0)} MiB` : 'n/a',
    met: memPool !== undefined && memCluster !== undefined ? memPool < memCluster : null,
  });
  add('cpu100us-inline', `CPU ~100 µs: workers:${n} ≥ 1.8× inline`, ratio(rps('cpu100us', 'pool'), rps('cpu100us', 'inline')), 1.8);
  add('cpu100us-cluster', `CPU ~100 µs: workers:${n} ≥ 0.95× cluster`, ratio(rps('cpu100us', 'pool'), rps('cpu100us', 'cluster')), 0.95);
  add('single-inline', `1 connection, CPU-bound: workers:${n} ≥ 1.7× inline`, ratio(rps('single', 'pool'), rps('single', 'inline')), 1.7);
  add('echo64-inline', `64 B echo: workers:${n} ≥ 0.7× inline`, ratio(rps('echo64', 'pool'), rps('echo64', 'inline')), 0.7);
  const p99Pool = cells.rate20k?.pool?.p99;
  const p99Inline = cells.rate20k?.inline?.p99;
  const r = ratio(p99Pool, p99Inline);
  out.push({
    id: 'rate20k-p99',
    text: `20k req/s open loop: workers:${n} p99 ≤ 2× inline's p99`,
    measured: r === null ? 'n/a' : `${p99Pool!.toFixed(3)} ms vs ${p99Inline!.toFixed(3)} ms (${fmt(r)})`,
    met: r === null ? null : r <= 2,
  });
  for (const id of ['pool', 'inline'] as const) {
    const v = idle[id]?.perConnKiB;
    out.push({
      id: `idle-${id}`,
      text: `idle connections (${id === 'pool' ? `workers:${n}` : 'workers:0'}): ≤ 5 KiB RSS each`,
      measured: v === undefined ? 'n/a' : `${v.toFixed(2)} KiB`,
      met: v === undefined ? null : v <= 5,
    });
  }
  return out;
}
