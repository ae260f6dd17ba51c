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

/** A process's CPU seconds so far, user and system (all its threads), or null when it is gone. */
export function cpuTimes(pid: number): { user: number; system: number } | null {
  const fields = statFields(read(`/proc/${pid}/stat`));
  if (fields === null) return null;
  return { user: Number(fields[11]) / ticksPerSecond(), system: Number(fields[12]) / ticksPerSecond() };
}

/** The fields of a `/proc/.../stat` line after the command name (which may hold spaces and parentheses), or null. */
function statFields(stat: string | null): string[] | null {
  return stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ') : null;
}

/** user + system CPU time in clock ticks (0 when gone). */
export function cpuTicks(pid: number): number {
  const t = cpuTimes(pid);
  return t === null ? 0 : Math.round((t.user + t.system) * ticksPerSecond());
}

/** user + system clock ticks of a `/proc/.../stat` line (fields 14 and 15), or 0. */
export function statTicks(stat: string | null): number {
  const fields = statFields(stat);
  return fields === null ? 0 : Number(fields[11]) + Number(fields[12]) || 0;
}

/**
 * CPU ticks of a process's main thread alone (its thread id is its pid): for shoal the
 * thread that owns every socket, for a cluster worker the whole server. The rest of a
 * process's time is its other threads': pool workers, V8's GC helpers, libuv's pool.
 */
export function mainThreadTicks(pid: number): number {
  return statTicks(read(`/proc/${pid}/task/${pid}/stat`));
}

/** CPU ticks the whole machine spent busy (all cores; steal counts as busy: the core was not ours). */
export function systemBusyTicks(): number {
  const stat = read('/proc/stat');
  if (!stat) return 0;
  const f = stat.slice(0, stat.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
}

export interface Sample {
  /** ms since the epoch. */
  t: number;
  rssKiB: number;
  ticks: number;
  /** The main threads' part of `ticks` (mainThreadTicks() of each process). */
  mainTicks: number;
  /** systemBusyTicks() at the same moment. */
  systemTicks: number;
  processes: number;
}

export function sampleTree(pid: number): Sample {
  const pids = processTree(pid);
  let rss = 0;
  let ticks = 0;
  let mainTicks = 0;
  for (const p of pids) {
    rss += rssKiB(p);
    ticks += cpuTicks(p);
    mainTicks += mainThreadTicks(p);
  }
  return { t: Date.now(), rssKiB: rss, ticks, mainTicks, systemTicks: systemBusyTicks(), processes: pids.length };
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

  /**
   * CPU between two wall-clock times, % of one core (from the samples nearest to them):
   * of the process tree, of its processes' main threads, and of the whole machine.
   */
  cpuPercent(from: number, to: number): { tree: number; main: number; system: number } {
    const nearest = (t: number): Sample =>
      this.samples.reduce((best, s) => (Math.abs(s.t - t) < Math.abs(best.t - t) ? s : best), this.samples[0]!);
    const a = nearest(from);
    const b = nearest(to);
    if (b.t <= a.t) return { tree: 0, main: 0, system: 0 };
    const per = (ticks: number): number => (ticks / ticksPerSecond() / ((b.t - a.t) / 1000)) * 100;
    return { tree: per(b.ticks - a.ticks), main: per(b.mainTicks - a.mainTicks), system: per(b.systemTicks - a.systemTicks) };
  }
}
