import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { ROOT } from '../helpers/server.js';
import { within } from '../helpers/wire.js';

// `shoal` as a user runs it: a real process, real signals.

export const CLI = `${ROOT}dist/src/cli.js`;

export type LogLine = { msg?: string; [k: string]: unknown };

export interface Run {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Parsed pino lines of stdout (non-JSON lines skipped). */
  logs(): LogLine[];
  /** Resolves with the `nth` (1 = first) log line whose msg includes `text`. */
  waitForLog(text: string, ms?: number, nth?: number): Promise<LogLine>;
  /** Resolves once stdout (as text) matches `pattern`. */
  waitForOutput(pattern: RegExp, ms?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running: ChildProcess[] = [];

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Another copy of the CLI (default: this repository's build). */
  cli?: string;
}

export function run(args: string[], opts: RunOptions = {}): Run {
  const child = spawn(process.execPath, [opts.cli ?? CLI, ...args], { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as LogLine;
        } catch {
          return {};
        }
      });
  /** Resolves when `found()` returns a value; rejects if the process exits first. */
  const waitUntil = <T>(found: () => T | undefined, what: string, ms: number): Promise<T> =>
    within(
      new Promise<T>((resolve, reject) => {
        const check = () => {
          const hit = found();
          if (hit !== undefined) return resolve(hit);
          if (child.exitCode !== null || child.signalCode !== null) {
            return reject(new Error(`process exited before ${what}; stderr: ${err}`));
          }
          waiters.push(check);
        };
        child.once('exit', () => setImmediate(check));
        check();
      }),
      ms,
      what,
    );
  const waitForLog = (text: string, ms = 15_000, nth = 1) =>
    waitUntil(() => logs().filter((l) => l.msg?.includes(text))[nth - 1], `the log line '${text}' (#${nth})`, ms);
  const waitForOutput = (pattern: RegExp, ms = 15_000) =>
    waitUntil(() => (pattern.test(out) ? true : undefined), `output matching ${pattern}`, ms).then(() => {});
  return { child, stdout: () => out, stderr: () => err, logs, waitForLog, waitForOutput, exited };
}

/** Nothing outlives its test: call from afterEach. */
export function killAll(): void {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
