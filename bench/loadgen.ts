/**
 * The native load generator (bench/loadgen/loadgen.c): built here with the system C
 * compiler into bench/loadgen/build/ (git-ignored) when missing or older than its sources,
 * and run as a child process whose JSON result is parsed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { ROOT, track, waitExit } from './harness.js';

export const LOADGEN_DIR = join(ROOT, 'bench/loadgen');
export const LOADGEN_BIN = join(LOADGEN_DIR, 'build/loadgen');
/** A generator thread at or above this share of one core is the bottleneck of its cell (as in loadgen.c). */
export const SATURATED_PERCENT = 90;

/** loadgen --json, closed or open loop. Latencies in ms. */
export interface LoadgenResult {
  generator: 'loadgen';
  target: string;
  connections: number;
  pipeline: number;
  threads: number;
  size: number;
  k: number;
  rate: number;
  warmup: number;
  duration: number;
  /** Wall-clock ms (epoch) of the start; the measured window begins `warmup` s later. */
  startedAtMs: number;
  requests: { total: number; perSecond: number; sent: number; answered: number };
  latency: { count: number; min: number; mean: number; p50: number; p90: number; p99: number; p99_9: number; max: number };
  errors: { total: number; mismatches: number; timeouts: number; resets: number; connectErrors: number; lost: number };
  /** Generator CPU in the measured window, % of one core: the process, and each thread. */
  cpu: { percent: number; threads: number[]; saturated: boolean };
}

/** loadgen --hold: the connections opened and kept. */
export interface HoldResult {
  opened: number;
  failed: number;
  mismatches: number;
  connectErrors: number;
  resets: number;
  ms: number;
}

/** Whether the generator itself was the bottleneck: any thread at >= 90 % of a core. */
export function generatorSaturated(cpu: { percent: number; threads: number[] }): boolean {
  const busiest = Math.max(0, ...cpu.threads);
  return busiest >= SATURATED_PERCENT || cpu.percent / Math.max(1, cpu.threads.length) >= SATURATED_PERCENT;
}

const newestSource = (): number =>
  Math.max(...readdirSync(LOADGEN_DIR).filter((f) => /\.[ch]$/.test(f)).map((f) => statSync(join(LOADGEN_DIR, f)).mtimeMs));

/**
 * The generator's path, compiled first if it is missing or older than a source (or `force`).
 * Throws, saying why, when the C compiler is missing or fails.
 */
export function buildLoadgen(opts: { cc?: string; bin?: string; force?: boolean } = {}): string {
  const cc = opts.cc ?? process.env.CC ?? 'cc';
  const bin = opts.bin ?? LOADGEN_BIN;
  if (!opts.force && existsSync(bin) && statSync(bin).mtimeMs >= newestSource()) return bin;
  mkdirSync(dirname(bin), { recursive: true });
  const sources = readdirSync(LOADGEN_DIR).filter((f) => f.endsWith('.c')).map((f) => join(LOADGEN_DIR, f));
  const tmp = `${bin}.${process.pid}.tmp`; // then renamed: a concurrent build never runs a half-written binary
  try {
    execFileSync(cc, ['-O2', '-pthread', '-o', tmp, ...sources], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    renameSync(tmp, bin);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = e.code === 'ENOENT' ? `the C compiler "${cc}" is not installed (apt-get install gcc)` : (e.stderr?.toString() ?? e.message);
    throw new Error(`cannot build the load generator (${sources.join(' ')}): ${why}`);
  }
  return bin;
}

/** Options of one loadgen run, as its flags. */
export interface LoadgenOptions {
  port: number;
  host?: string;
  connections: number;
  pipeline: number;
  threads?: number;
  durationS: number;
  warmupS?: number;
  size?: number;
  k?: number;
  /** Open loop, req/s in total (0 = closed loop). */
  rate?: number;
  timeoutS?: number;
}

export function loadgenArgs(o: LoadgenOptions): string[] {
  const args = ['-c', String(o.connections), '-p', String(o.pipeline), '-t', String(o.threads ?? 1), '-d', String(o.durationS)];
  if (o.warmupS) args.push('-w', String(o.warmupS));
  if (o.size !== undefined) args.push('-s', String(o.size));
  if (o.k !== undefined) args.push('-k', String(o.k));
  if (o.rate) args.push('-R', String(o.rate));
  if (o.timeoutS !== undefined) args.push('-T', String(o.timeoutS));
  args.push('--json', `${o.host ?? '127.0.0.1'}:${o.port}`);
  return args;
}

export interface LoadgenRun {
  result: LoadgenResult | null;
  code: number | null;
  stderr: string;
}

/** Run the generator to its end (killed by pid past its own duration + 60 s). */
export async function runLoadgen(o: LoadgenOptions): Promise<LoadgenRun> {
  const bin = buildLoadgen();
  const child = track(spawn(bin, loadgenArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const deadline = ((o.warmupS ?? 0) + o.durationS + (o.timeoutS ?? 5)) * 1000 + 60_000;
  if (!(await waitExit(child, deadline))) {
    if (child.pid) process.kill(child.pid, 'SIGKILL');
    await waitExit(child, 5000);
    err += `\nloadgen killed after ${deadline} ms`;
  }
  let result: LoadgenResult | null = null;
  try {
    result = JSON.parse(out.trim()) as LoadgenResult;
  } catch {
    result = null;
  }
  return { result, code: child.exitCode, stderr: err.trim() };
}

/**
 * Open `count` connections to the port, one verified request each, and hold them until
 * release() (cold-start memory). The generator raises its own file limit.
 */
export async function holdConnections(port: number, count: number, opts: { size?: number; holdSeconds?: number } = {}): Promise<{ result: HoldResult; release(): Promise<void> }> {
  const bin = buildLoadgen();
  const holdSeconds = opts.holdSeconds ?? 120;
  const args = ['--hold', String(count), '--hold-seconds', String(holdSeconds), '-s', String(opts.size ?? 64), '-k', '0', `127.0.0.1:${port}`];
  const child = track(spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const line = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`loadgen --hold ${count}: no result within ${holdSeconds} s`)), holdSeconds * 1000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(t);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`loadgen --hold exited (${code}): ${err}`));
    });
  }).catch(async (e: unknown) => {
    if (child.pid && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    throw e;
  });
  return {
    result: JSON.parse(line) as HoldResult,
    async release() {
      child.stdin!.end();
      if (!(await waitExit(child, 10_000)) && child.pid) process.kill(child.pid, 'SIGKILL');
      await waitExit(child, 5000);
    },
  };
}
