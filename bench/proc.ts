/**
 * Server resource sampling from procfs (Linux): RSS and CPU of a process and all its
 * descendants (a cluster's processes; a pool's threads are inside the process already).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let clkTck = 0;
/** Clock ticks per second of /proc/<pid>/stat times. */
export function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null; // the process is gone
  }
}

/** pid and every descendant, via /proc/<pid>/task/<tid>/children. */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      const kids = read(`/proc/${p}/task/${tid}/children`);
      if (kids) for (const k of kids.trim().split(/\s+/)) if (k) stack.push(Number(k));
    }
  }
  return out;
}

/** Resident set size in KiB (0 when gone). */
export function rssKiB(pid: number): number {
  const status = read(`/proc/${pid}/status`);
  const m = status ? /^VmRSS:\s+(\d+)\s+kB/m.exec(status) : null;
  return m ? Number(m[1]) : 0;
}

/** user + system CPU time in clock ticks (0 when gone). */
export function cpuTicks(pid: number): number {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

export interface Sample {
  /** ms since the epoch. */
  t: number;
  rssKiB: number;
  ticks: number;
  processes: number;
}

export function sampleTree(pid: number): Sample {
  const pids = processTree(pid);
  let rss = 0;
  let ticks = 0;
  for (const p of pids) {
    rss += rssKiB(p);
    ticks += cpuTicks(p);
  }
  return { t: Date.now(), rssKiB: rss, ticks, processes: pids.length };
}

/** Samples a process tree on a timer until stopped. */
export class Sampler {
  readonly samples: Sample[] = [];
  #timer: NodeJS.Timeout | null = null;
  constructor(readonly pid: number) {}

  start(intervalMs = 200): this {
    this.samples.push(sampleTree(this.pid));
    this.#timer = setInterval(() => this.samples.push(sampleTree(this.pid)), intervalMs);
    return this;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.samples.push(sampleTree(this.pid));
  }

  peakRssKiB(from = 0, to = Infinity): number {
    return Math.max(0, ...this.samples.filter((s) => s.t >= from && s.t <= to).map((s) => s.rssKiB));
  }

  /** CPU between two wall-clock times, % of one core (from the samples nearest to them). */
  cpuPercent(from: number, to: number): number {
    const nearest = (t: number): Sample =>
      this.samples.reduce((best, s) => (Math.abs(s.t - t) < Math.abs(best.t - t) ? s : best), this.samples[0]!);
    const a = nearest(from);
    const b = nearest(to);
    if (b.t <= a.t) return 0;
    return ((b.ticks - a.ticks) / ticksPerSecond() / ((b.t - a.t) / 1000)) * 100;
  }
}
