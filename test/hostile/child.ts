import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { ROOT } from '../helpers/server.js';

/**
 * A shoal server in a child process, started through the CLI
 * (`node dist/src/cli.js start --port 0 ...`).
 *
 * Why a child and not the test process: the cases that assert on memory and
 * descriptors need the server's figures alone. In the test process, the attacking
 * clients' own sockets and write buffers (a never-reading client queues megabytes
 * on its side too), vitest and the canary would all count against the server.
 * It also exercises the CLI flags and log lines a user would see, and lets a
 * case send a real SIGTERM.
 */
export { ROOT };
export const HOSTILE_HANDLER = `${ROOT}test/fixtures/hostile/handler.js`;

/** The hostile handler's special K values (test/fixtures/hostile/handler.js). */
export const K = { LOOP: 0xffffffff, EXIT: 0xfffffffe, SPIN: 0xfffffffd, SLEEP: 0xfffffffc } as const;

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface ChildServer {
  proc: ChildProcess;
  pid: number;
  port: number;
  /** Every JSON log line so far (pino, one object per line). */
  logs: LogLine[];
  /** Resident set size, bytes, from /proc/<pid>/status. */
  rss(): number;
  /** Open descriptors, from /proc/<pid>/fd. */
  fds(): number;
  /** OS threads (main, libuv, V8, pool workers), from /proc/<pid>/task. */
  threads(): number;
  /** Wait until the server has at most `base` descriptors; on timeout the error lists what they are. */
  fdsBackTo(base: number, ms: number): Promise<number>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** SIGTERM, wait up to `ms`, then SIGKILL. Only ever signals this child's pid. */
  stop(ms?: number): Promise<void>;
}

export async function spawnServer(flags: string[], startTimeout = 15_000): Promise<ChildServer> {
  const args = [
    `${ROOT}dist/src/cli.js`,
    'start',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--workers',
    '2',
    '--handler',
    HOSTILE_HANDLER,
    '--log-level',
    'info',
    ...flags,
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const logs: LogLine[] = [];
  let stderr = '';
  let partial = '';
  let onListening: ((port: number) => void) | null = null;
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const entry = JSON.parse(line) as LogLine;
        logs.push(entry);
        if (entry.msg === 'listening' && onListening) onListening(entry.port as number);
      } catch {
        logs.push({ level: 0, msg: line });
      }
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (t: string) => (stderr += t));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const pid = proc.pid!;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen within ${startTimeout} ms; stderr: ${stderr}`)), startTimeout);
    onListening = (p) => {
      clearTimeout(timer);
      resolve(p);
    };
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening; stderr: ${stderr}`));
    });
  });
  const proc_ = `/proc/${pid}`;
  return {
    proc,
    pid,
    port,
    logs,
    rss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`${proc_}/status`, 'utf8'));
      return Number(m![1]) * 1024;
    },
    fds: () => readdirSync(`${proc_}/fd`).length,
    threads: () => readdirSync(`${proc_}/task`).length,
    async fdsBackTo(base: number, ms: number) {
      const t0 = Date.now();
      for (;;) {
        const n = readdirSync(`${proc_}/fd`).length;
        if (n <= base) return Date.now() - t0;
        if (Date.now() - t0 > ms) throw new Error(`server descriptors not back to ${base} within ${ms} ms (${n}): ${describeFds(pid)}; TCP states on its port: ${tcpStates(port)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    exited,
    async stop(ms = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
      if ((await Promise.race([exited, late])) === 'late') {
        proc.kill('SIGKILL');
        await exited;
      }
      clearTimeout(timer);
    },
  };
}

/** What a process's descriptors are, by kind (socket, pipe, anon_inode:[eventfd], ...), to explain a leak. */
export function describeFds(pid: number): string {
  const kinds = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, '').replace(/^\/.*/, 'file');
    } catch {
      continue;
    }
    kinds.set(target, (kinds.get(target) ?? 0) + 1);
  }
  return JSON.stringify(Object.fromEntries(kinds));
}

/** Counts of TCP states on a local port, from ss(8), to explain a failure (diagnostic only). */
export function tcpStates(port: number): string {
  try {
    const out = execFileSync('ss', ['-tanH', 'state', 'all', `( sport = :${port} )`], { encoding: 'utf8', timeout: 5000 });
    const counts = new Map<string, number>();
    for (const line of out.split('\n')) {
      const state = line.trim().split(/\s+/)[0];
      if (state) counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    return JSON.stringify(Object.fromEntries(counts));
  } catch (err) {
    return `(ss failed: ${(err as Error).message})`;
  }
}

/** Log lines with this message (e.g. 'connection error', 'budget hit'). */
export function logsWith(server: ChildServer, msg: string): LogLine[] {
  return server.logs.filter((l) => l.msg === msg);
}

/** Soft and hard limits on open files of this process (children inherit them). */
export function fdLimit(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line
    .replace('Max open files', '')
    .trim()
    .split(/\s+/)
    .map((v) => (v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v)));
  return { soft: soft!, hard: hard! };
}

/** A bench-protocol request frame: [u32 len][u32 K][payload]. */
export function benchFrame(k: number, payload: Uint8Array | string = ''): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const out = Buffer.allocUnsafe(8 + p.length);
  out.writeUInt32BE(4 + p.length, 0);
  out.writeUInt32BE(k >>> 0, 4);
  p.copy(out, 8);
  return out;
}

export const MiB = 1024 * 1024;

/** Measured figures, printed only with SHOAL_TEST_VERBOSE=1 (the suite stays quiet by default). */
export function note(text: string): void {
  if (process.env.SHOAL_TEST_VERBOSE) console.info(text);
}
