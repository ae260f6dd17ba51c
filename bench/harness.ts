/**
 * What every benchmark runner in bench/ needs around its load: child processes it can
 * always kill (by pid, on exit, past a deadline), servers started on a free loopback port
 * and stopped with SIGTERM, and the commit the figures belong to.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../src/bench/run.js';
import { processTree } from './proc.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'dist/src/cli.js');
export const CLUSTER = join(ROOT, 'dist/bench/cluster-server.js');
export const HANDLER_DIR = join(ROOT, 'examples/bench-protocol');
export const HANDLER = join(HANDLER_DIR, 'handler.js');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A numeric command-line option (parseArgs gives strings): a number >= min, or an error naming the flag. */
export function numberOption(values: Record<string, unknown>, name: string, min: number): number {
  const n = Number(values[name]);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min} (got ${String(values[name])})`);
  return n;
}

// ---------------------------------------------------------------------------- children

const children = new Set<ChildProcess>();

/** Track a child so that it is killed (by its pid) when this process exits or is stopped. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
}

/** Kill every tracked child on exit, on SIGINT/SIGTERM, and when `deadlineMs` passes. */
export function guardChildren(name: string, deadlineMs: number): void {
  process.on('exit', killAll);
  for (const s of ['SIGINT', 'SIGTERM'] as const) {
    process.on(s, () => {
      killAll();
      process.exit(130);
    });
  }
  setTimeout(() => {
    process.stderr.write(`${name}: overall deadline reached, stopping\n`);
    killAll();
    process.exit(1);
  }, deadlineMs).unref();
}

export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

// ---------------------------------------------------------------------------- servers

/** A server to start: `node <args>`; it logs pino-style JSON lines, one `"msg":"listening"` with its port. */
export interface ServerCommand {
  label: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Open-file limit the server needs (raised with prlimit when the hard limit is lower). */
  nofile?: number;
}

export interface RunningServer {
  pid: number;
  port: number;
  warnings: string[];
  stop(): Promise<{ code: number | null; signal: string | null; ms: number; killed: boolean }>;
}

/** This process's open-file limits, from /proc/self/limits (null when unreadable). */
export function openFileLimits(): { soft: number; hard: number } | null {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return null;
    const n = (s: string): number => (s === 'unlimited' ? Infinity : Number(s));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return null;
  }
}

/**
 * The executable and argv for `node <args>` with at least `nofile` open files. Node raises
 * its own soft limit to the hard one at startup, so only a low hard limit needs prlimit
 * (which execs the command: the pid stays the server's).
 */
export function withOpenFiles(nofile: number | undefined, args: string[]): { file: string; argv: string[] } {
  const limits = openFileLimits();
  if (nofile === undefined || (limits && limits.hard >= nofile)) return { file: process.execPath, argv: args };
  if (existsSync('/usr/bin/prlimit')) return { file: '/usr/bin/prlimit', argv: [`--nofile=${nofile}:${nofile}`, process.execPath, ...args] };
  return { file: '/bin/sh', argv: ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, process.execPath, ...args] };
}

export async function startServer(cmd: ServerCommand): Promise<RunningServer> {
  const { file, argv } = withOpenFiles(cmd.nofile, cmd.args);
  const child = track(spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: cmd.cwd ?? ROOT, env: cmd.env ?? process.env }));
  const warnings: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`${cmd.label} server did not listen within 30 s: ${stderr}`));
    }, 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let rec: { level?: number; msg?: string; port?: number };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        warnings.push(line.slice(0, 500));
        return;
      }
      if (rec.msg === 'listening' && typeof rec.port === 'number') {
        clearTimeout(timer);
        resolve(rec.port);
      } else if ((rec.level ?? 0) >= 40) {
        warnings.push(line.slice(0, 500));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${cmd.label} server exited (${code ?? signal}) before listening: ${stderr}`));
    });
  });
  return {
    pid: child.pid!,
    port,
    warnings,
    async stop() {
      const t0 = Date.now();
      const tree = processTree(child.pid!); // a cluster's processes, to kill them too if it hangs
      child.kill('SIGTERM');
      let killed = false;
      if (!(await waitExit(child, 20_000))) {
        killed = true;
        for (const p of tree) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        await waitExit(child, 5000);
      }
      if (stderr.trim()) warnings.push(`stderr: ${stderr.trim().slice(0, 500)}`);
      return { code: child.exitCode, signal: child.signalCode, ms: Date.now() - t0, killed };
    },
  };
}

export interface BenchChild {
  result: BenchResult | null;
  code: number | null;
  stderr: string;
}

/** `shoal bench <args> --json` in a child process, killed (by pid) past `deadlineMs`. */
export async function runShoalBench(args: string[], deadlineMs: number): Promise<BenchChild> {
  const child = track(spawn(process.execPath, [CLI, 'bench', ...args, '--json', '--no-progress'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT }));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = await waitExit(child, deadlineMs);
  if (!exited) {
    if (child.pid) process.kill(child.pid, 'SIGKILL');
    await waitExit(child, 5000);
    err += `\nbench killed after ${deadlineMs} ms`;
  }
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  let result: BenchResult | null = null;
  try {
    result = line ? (JSON.parse(line) as BenchResult) : null;
  } catch {
    result = null;
  }
  return { result, code: child.exitCode, stderr: err.trim() };
}

// ---------------------------------------------------------------------------- provenance

/** The code measured: git commit (+ "-dirty" with local changes), or $SHOAL_COMMIT for a tree without .git. */
export function codeVersion(root = ROOT): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--untracked-files=no');
    return dirty ? `${head}-dirty` : head;
  } catch {
    return process.env.SHOAL_COMMIT ?? 'unknown';
  }
}
