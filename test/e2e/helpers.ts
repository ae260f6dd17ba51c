/**
 * The e2e suite's parts: real `shoal start` processes and real outside programs
 * (HAProxy, redis-cli, nc, ...), each started here on loopback and stopped by its PID.
 * Nothing outlives its test file: call stopAll() in afterAll/afterEach.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = `${ROOT}dist/src/cli.js`;

const started: ChildProcess[] = [];

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout + stderr match `pattern` (rejects if the process exits first or after `ms`). */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Send `signal` to this PID (if still running) and wait for it to exit, SIGKILL after `ms`. */
  stop(signal?: NodeJS.Signals, ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start a program; its output is kept for waitFor(). */
export function startProgram(cmd: string, args: string[], opts: { input?: string | Buffer; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${cmd} (is it installed?)`);
  started.push(child);
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  child.stdout!.on('data', (c: Buffer) => ((out += c.toString()), wake()));
  child.stderr!.on('data', (c: Buffer) => ((err += c.toString()), wake()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      setImmediate(wake);
    }),
  );
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const waitFor = (pattern: RegExp, ms = 15_000): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cmd}: no ${pattern} within ${ms} ms; output:\n${out}\n${err}`)), ms);
      const check = (): void => {
        const m = (out + err).match(pattern);
        if (m) {
          clearTimeout(timer);
          return resolve(m);
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          clearTimeout(timer);
          return reject(new Error(`${cmd} exited before ${pattern}; output:\n${out}\n${err}`));
        }
        waiters.push(check);
      };
      check();
    });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', ms = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, signal);
      const timer = setTimeout(() => child.exitCode === null && child.signalCode === null && process.kill(child.pid!, 'SIGKILL'), ms);
      const r = await exited;
      clearTimeout(timer);
      return r;
    }
    return exited;
  };
  return { child, pid: child.pid, stdout: () => out, stderr: () => err, waitFor, exited, stop };
}

/** Run a program to its end (bounded by `ms`); resolves with its output and exit code. */
export async function runProgram(cmd: string, args: string[], opts: { input?: string | Buffer; ms?: number } = {}): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  started.push(child);
  const chunks: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  child.stdin!.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.ms ?? 30_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('exit', (c) => resolve(c));
    child.once('error', reject); // e.g. ENOENT: the program is not installed
  });
  clearTimeout(timer);
  return { code, stdout: Buffer.concat(chunks), stderr: err };
}

/**
 * `shoal start ARGS` on 127.0.0.1 and a free port (unless ARGS name one); resolves
 * once it logs "listening", with the port it bound.
 */
export async function startShoal(args: string[]): Promise<Proc & { port: number }> {
  const withPort = args.includes('--port') ? args : [...args, '--port', '0'];
  const withHost = withPort.includes('--host') ? withPort : [...withPort, '--host', '127.0.0.1'];
  const p = startProgram(process.execPath, [CLI, 'start', ...withHost]);
  const m = await p.waitFor(/"port":(\d+)[^\n]*"msg":"listening"/);
  return Object.assign(p, { port: Number(m[1]) });
}

/** Stop every process this file started that is still running (SIGKILL), by PID. */
export function stopAll(): void {
  for (const c of started.splice(0)) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

/** A port free on `host` right now (bound, read, released). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Parsed JSON log lines (pino) of a `shoal start` process. */
export function shoalLogs(p: Proc): { msg?: string; [k: string]: unknown }[] {
  return p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as { msg?: string };
      } catch {
        return {};
      }
    });
}
