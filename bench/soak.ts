/**
 * The soak (issue 4): `node dist/bench/soak.js [--minutes 10]`.
 *
 * A shoal server in a child process (the CLI, 2 workers, the bench protocol)
 * gets mixed load for --minutes: echo connections (K = 0, payloads of 16 B to
 * 4 KiB) and CPU-bound ones (K = 110 and 1100), all pipelined, every reply
 * checked. Every --churn-ms one connection is replaced, alternately by a clean
 * half-close (all its replies must arrive) and by an RST with requests in flight
 * (those are lost by design and not counted as errors). Every --interval seconds
 * the server's RSS, descriptors and threads are read from /proc/<pid>.
 *
 * Prints a line per sample and start/max/end; writes the curve to
 * bench/results/soak-<date>.json. Bounded: the run stops itself after --minutes,
 * the server gets SIGTERM (SIGKILL 15 s later if it has not exited), only by pid.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { cpus, hostname, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { expectedBenchReply } from '../src/bench/message.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli.js');
const HANDLER = join(ROOT, 'examples/bench-protocol/handler.js');
const MiB = 1024 * 1024;

const HELP = `Usage: node dist/bench/soak.js [options]

  --minutes <n>        length of the run (default 10)
  --interval <s>       seconds between RSS samples (default 10)
  --workers <n>        server worker threads (default 2)
  --echo-conns <n>     echo connections (default 16)
  --cpu-conns <n>      CPU-bound connections, K = 110 and 1100 (default 4)
  --depth <n>          requests in flight per connection (default 8)
  --echo-rate <n>      echo requests/s over all echo connections; 0 = as fast as it goes (default 5000)
  --cpu-rate <n>       CPU-bound requests/s over all CPU connections; 0 = as fast as it goes (default 200)
  --churn-ms <n>       replace one connection this often (default 2000)
  --warmup <s>         seconds excluded from the flatness figures (default: 20% of the run, at most 60)
  --out <dir>          results directory (default bench/results)
  -h, --help
`;

interface Options {
  minutes: number;
  interval: number;
  workers: number;
  echoConns: number;
  cpuConns: number;
  depth: number;
  echoRate: number;
  cpuRate: number;
  churnMs: number;
  warmup: number;
  out: string;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string' },
      interval: { type: 'string' },
      workers: { type: 'string' },
      'echo-conns': { type: 'string' },
      'cpu-conns': { type: 'string' },
      depth: { type: 'string' },
      'echo-rate': { type: 'string' },
      'cpu-rate': { type: 'string' },
      'churn-ms': { type: 'string' },
      warmup: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return null;
  const num = (name: string, v: string | undefined, dflt: number, min: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min} (got ${v})`);
    return n;
  };
  const minutes = num('minutes', values.minutes, 10, 0.05);
  return {
    minutes,
    interval: num('interval', values.interval, 10, 1),
    workers: num('workers', values.workers, 2, 0),
    echoConns: num('echo-conns', values['echo-conns'], 16, 1),
    cpuConns: num('cpu-conns', values['cpu-conns'], 4, 0),
    depth: num('depth', values.depth, 8, 1),
    echoRate: num('echo-rate', values['echo-rate'], 5000, 0),
    cpuRate: num('cpu-rate', values['cpu-rate'], 200, 0),
    churnMs: num('churn-ms', values['churn-ms'], 2000, 100),
    warmup: num('warmup', values.warmup, Math.min(60, minutes * 60 * 0.2), 0),
    out: values.out ?? join(ROOT, 'bench/results'),
  };
}

// ---------------------------------------------------------------------------- the server

interface Server {
  proc: ChildProcess;
  pid: number;
  port: number;
  warnings: number;
  errors: number;
  lastWarnings: string[];
}

async function startServer(workers: number): Promise<Server> {
  const proc = spawn(
    process.execPath,
    [CLI, 'start', '--host', '127.0.0.1', '--port', '0', '--workers', String(workers), '--handler', HANDLER, '--log-level', 'info'],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT },
  );
  const server: Server = { proc, pid: proc.pid!, port: 0, warnings: 0, errors: 0, lastWarnings: [] };
  let partial = '';
  let stderr = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (t: string) => (stderr = (stderr + t).slice(-4000)));
  server.port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen within 30 s: ${stderr}`)), 30_000);
    proc.once('exit', (code) => reject(new Error(`server exited (${code}) before listening: ${stderr}`)));
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        let entry: { level?: number; msg?: string; port?: number; code?: string; budget?: string };
        try {
          entry = JSON.parse(line);
        } catch {
          continue;
        }
        if (entry.msg === 'listening') {
          clearTimeout(timer);
          resolve(entry.port!);
        }
        if ((entry.level ?? 0) >= 50) server.errors++;
        else if ((entry.level ?? 0) >= 40) {
          server.warnings++;
          server.lastWarnings = [...server.lastWarnings.slice(-4), `${entry.msg} ${entry.code ?? entry.budget ?? ''}`.trim()];
        }
      }
    });
  });
  return server;
}

async function stopServer(server: Server): Promise<{ code: number | null; signal: string | null; ms: number }> {
  const { proc } = server;
  const t0 = Date.now();
  if (proc.exitCode !== null || proc.signalCode !== null) return { code: proc.exitCode, signal: proc.signalCode, ms: 0 };
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  process.kill(server.pid, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 15_000)));
  const first = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (first === 'late') {
    process.kill(server.pid, 'SIGKILL');
    return { ...(await exited), ms: Date.now() - t0 };
  }
  return { ...first, ms: Date.now() - t0 };
}

function procStats(pid: number): { rss: number; hwm: number; fds: number; threads: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), fds: readdirSync(`/proc/${pid}/fd`).length, threads: readdirSync(`/proc/${pid}/task`).length };
}

// ---------------------------------------------------------------------------- the load

interface Message {
  frame: Buffer;
  expect: Buffer;
}

function frameOf(k: number, payload: Buffer): Buffer {
  const f = Buffer.allocUnsafe(8 + payload.length);
  f.writeUInt32BE(4 + payload.length, 0);
  f.writeUInt32BE(k, 4);
  payload.copy(f, 8);
  return f;
}

/** Fixed message sets, expected replies computed once (verifying a K = 1100 reply costs no CPU in the loop). */
function messageSets(): { echo: Message[]; cpu: Message[] } {
  const echo = Array.from({ length: 32 }, (_, i) => {
    const payload = randomBytes(16 << i % 9); // 16 B .. 4 KiB
    return { frame: frameOf(0, payload), expect: payload };
  });
  const cpu = Array.from({ length: 16 }, (_, i) => {
    const payload = randomBytes(32 + i);
    const k = i % 2 === 0 ? 110 : 1100;
    return { frame: frameOf(k, payload), expect: expectedBenchReply(k, payload) };
  });
  return { echo, cpu };
}

interface Counters {
  requests: number;
  errors: number;
  errorSamples: string[];
  opened: number;
  churnedClean: number;
  churnedReset: number;
  lostOnReset: number;
}

const REPLY_TIMEOUT_MS = 10_000;

/** One client connection: pipelined requests from a message set, replies checked in order. */
class LoadConn {
  readonly #socket: Socket;
  readonly #set: Message[];
  readonly #depth: number;
  readonly #counters: Counters;
  readonly #inFlight: { m: Message; at: number }[] = [];
  #input: Buffer = Buffer.alloc(0);
  #next = Math.floor(Math.random() * 1000);
  #ending = false;
  #dead = false;
  tokens = 0;
  readonly closed: Promise<void>;

  constructor(port: number, set: Message[], depth: number, counters: Counters) {
    this.#set = set;
    this.#depth = depth;
    this.#counters = counters;
    counters.opened++;
    this.#socket = netConnect({ host: '127.0.0.1', port });
    this.#socket.setNoDelay(true);
    this.#socket.on('data', (c: Buffer) => this.#onData(c));
    this.#socket.on('error', (e) => {
      if (!this.#dead) this.#error(`socket error: ${e.message}`);
    });
    this.closed = new Promise((r) => this.#socket.once('close', () => r()));
    void this.closed.then(() => {
      if (!this.#dead && this.#inFlight.length > 0) this.#error(`connection closed with ${this.#inFlight.length} replies missing`);
      this.#dead = true;
    });
  }

  get alive(): boolean {
    return !this.#dead && !this.#ending;
  }

  #error(text: string): void {
    this.#counters.errors++;
    if (this.#counters.errorSamples.length < 20) this.#counters.errorSamples.push(`${new Date().toISOString()} ${text}`);
  }

  /** Send while the window and the rate allow (tokens < 0 = unpaced). */
  pump(): void {
    if (!this.alive) return;
    const parts: Buffer[] = [];
    while (this.#inFlight.length < this.#depth && (this.tokens < 0 || this.tokens >= 1)) {
      if (this.tokens > 0) this.tokens--;
      const m = this.#set[this.#next++ % this.#set.length]!;
      this.#inFlight.push({ m, at: Date.now() });
      parts.push(m.frame);
    }
    if (parts.length > 0) this.#socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  #onData(chunk: Buffer): void {
    this.#input = this.#input.length === 0 ? chunk : Buffer.concat([this.#input, chunk]);
    let off = 0;
    while (this.#input.length - off >= 4) {
      const len = this.#input.readUInt32BE(off);
      if (this.#input.length - off < 4 + len) break;
      const reply = this.#input.subarray(off + 4, off + 4 + len);
      off += 4 + len;
      const head = this.#inFlight.shift();
      if (!head) {
        this.#error('a reply nobody asked for');
        continue;
      }
      if (!reply.equals(head.m.expect)) this.#error(`wrong reply (${reply.length} bytes, expected ${head.m.expect.length})`);
      this.#counters.requests++;
    }
    this.#input = off === this.#input.length ? Buffer.alloc(0) : this.#input.subarray(off);
    this.pump();
  }

  /** The oldest request has waited too long. */
  stuck(now: number): boolean {
    const head = this.#inFlight[0];
    return head !== undefined && now - head.at > REPLY_TIMEOUT_MS;
  }

  /** Clean churn: no more requests; every reply must still arrive, then both sides close. */
  async end(): Promise<void> {
    this.#ending = true;
    this.#socket.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closed, new Promise((r) => (timer = setTimeout(r, REPLY_TIMEOUT_MS)))]);
    clearTimeout(timer);
    if (!this.#dead) {
      this.#error('a half-closed connection was not closed by the server');
      this.reset();
    }
  }

  /** Abrupt churn: RST with requests in flight (those replies are lost by design). */
  reset(): number {
    const lost = this.#inFlight.length;
    this.#dead = true;
    this.#socket.resetAndDestroy();
    return lost;
  }
}

// ---------------------------------------------------------------------------- the run

interface Sample {
  t: number;
  rssMiB: number;
  hwmMiB: number;
  fds: number;
  threads: number;
  requests: number;
  rps: number;
  errors: number;
  connections: number;
  churned: number;
  load1: number;
}

function slope(points: { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

async function main(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  if (o === null) {
    process.stdout.write(HELP);
    return 0;
  }
  const sets = messageSets();
  const server = await startServer(o.workers);
  const stopOnSignal = (): void => {
    if (server.proc.exitCode === null) process.kill(server.pid, 'SIGKILL');
    process.exit(130);
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);

  const counters: Counters = { requests: 0, errors: 0, errorSamples: [], opened: 0, churnedClean: 0, churnedReset: 0, lostOnReset: 0 };
  const echo: LoadConn[] = Array.from({ length: o.echoConns }, () => new LoadConn(server.port, sets.echo, o.depth, counters));
  const cpu: LoadConn[] = Array.from({ length: o.cpuConns }, () => new LoadConn(server.port, sets.cpu, o.depth, counters));
  const groups = [
    { conns: echo, set: sets.echo, rate: o.echoRate },
    { conns: cpu, set: sets.cpu, rate: o.cpuRate },
  ];

  const started = Date.now();
  const until = started + o.minutes * 60_000;
  const first = procStats(server.pid);
  const samples: Sample[] = [];
  let lastRequests = 0;
  let lastAt = started;
  const takeSample = (): void => {
    const now = Date.now();
    const p = procStats(server.pid);
    const s: Sample = {
      t: round((now - started) / 1000, 0),
      rssMiB: round(p.rss / MiB),
      hwmMiB: round(p.hwm / MiB),
      fds: p.fds,
      threads: p.threads,
      requests: counters.requests,
      rps: Math.round(((counters.requests - lastRequests) * 1000) / Math.max(1, now - lastAt)),
      errors: counters.errors,
      connections: echo.length + cpu.length,
      churned: counters.churnedClean + counters.churnedReset,
      load1: round(loadavg()[0]!, 2),
    };
    lastRequests = counters.requests;
    lastAt = now;
    samples.push(s);
    process.stdout.write(
      `t=${String(s.t).padStart(4)}s  rss ${s.rssMiB.toFixed(1).padStart(6)} MiB  fds ${String(s.fds).padStart(4)}  threads ${s.threads}  ${String(s.rps).padStart(6)} req/s  errors ${s.errors}  churned ${s.churned}  load ${s.load1}\n`,
    );
  };
  process.stdout.write(
    `soak: ${o.minutes} min, server pid ${server.pid} port ${server.port}, ${o.echoConns} echo + ${o.cpuConns} cpu connections x ${o.depth} in flight, ` +
      `echo ${o.echoRate || 'unpaced'} req/s, cpu ${o.cpuRate || 'unpaced'} req/s, churn every ${o.churnMs} ms\n`,
  );
  samples.push({ t: 0, rssMiB: round(first.rss / MiB), hwmMiB: round(first.hwm / MiB), fds: first.fds, threads: first.threads, requests: 0, rps: 0, errors: 0, connections: 0, churned: 0, load1: round(loadavg()[0]!, 2) });

  // Pacing: every 10 ms each group gets rate/100 tokens, shared over its live connections.
  const TICK = 10;
  const pacer = setInterval(() => {
    for (const g of groups) {
      const live = g.conns.filter((c) => c.alive);
      if (live.length === 0) continue;
      for (const c of live) {
        if (g.rate === 0) c.tokens = -1;
        else c.tokens = Math.min(c.tokens + (g.rate * TICK) / 1000 / live.length, o.depth * 2);
        c.pump();
      }
    }
  }, TICK);

  let churnTurn = 0;
  const churn = setInterval(() => {
    const g = groups[churnTurn % 3 === 2 && cpu.length > 0 ? 1 : 0]!;
    const i = Math.floor(Math.random() * g.conns.length);
    const old = g.conns[i]!;
    g.conns[i] = new LoadConn(server.port, g.set, o.depth, counters);
    if (churnTurn++ % 2 === 0) {
      counters.churnedClean++;
      void old.end();
    } else {
      counters.churnedReset++;
      counters.lostOnReset += old.reset();
    }
  }, o.churnMs);

  const watchdog = setInterval(() => {
    const now = Date.now();
    for (const g of groups) {
      g.conns.forEach((c, i) => {
        if (c.alive && c.stuck(now)) {
          counters.errors++;
          if (counters.errorSamples.length < 20) counters.errorSamples.push(`${new Date().toISOString()} no reply within ${REPLY_TIMEOUT_MS} ms`);
          c.reset();
          g.conns[i] = new LoadConn(server.port, g.set, o.depth, counters);
        }
      });
    }
  }, 1000);

  await new Promise<void>((resolve) => {
    const sampler = setInterval(() => {
      if (server.proc.exitCode !== null || server.proc.signalCode !== null) {
        clearInterval(sampler);
        resolve();
        return;
      }
      takeSample();
      if (Date.now() >= until - 500) {
        clearInterval(sampler);
        resolve();
      }
    }, o.interval * 1000);
  });
  clearInterval(pacer);
  clearInterval(churn);
  clearInterval(watchdog);
  const serverDied = server.proc.exitCode !== null || server.proc.signalCode !== null;

  // Stop the load cleanly: every connection half-closes and collects its last replies.
  await Promise.all([...echo, ...cpu].map((c) => (c.alive ? c.end() : Promise.resolve())));
  const exit = await stopServer(server);

  const warm = samples.filter((s) => s.t >= o.warmup);
  const rss = samples.map((s) => s.rssMiB);
  const warmRss = warm.map((s) => s.rssMiB);
  const summary = {
    rssStartMiB: rss[0]!,
    rssMaxMiB: Math.max(...rss),
    rssEndMiB: rss[rss.length - 1]!,
    afterWarmup: {
      fromS: o.warmup,
      minMiB: warmRss.length ? Math.min(...warmRss) : null,
      maxMiB: warmRss.length ? Math.max(...warmRss) : null,
      slopeMiBPerMin: round(slope(warm.map((s) => ({ x: s.t / 60, y: s.rssMiB }))), 2),
    },
    fdsStart: samples[0]!.fds,
    fdsEnd: samples[samples.length - 1]!.fds,
    requests: counters.requests,
    errors: counters.errors,
    errorSamples: counters.errorSamples,
    connectionsOpened: counters.opened,
    churnedClean: counters.churnedClean,
    churnedReset: counters.churnedReset,
    requestsLostOnReset: counters.lostOnReset,
    serverWarnings: server.warnings,
    serverErrors: server.errors,
    lastServerWarnings: server.lastWarnings,
    serverDiedDuringRun: serverDied,
    serverExit: exit,
  };
  const date = new Date(started).toISOString().slice(0, 10);
  mkdirSync(o.out, { recursive: true });
  const file = join(o.out, `soak-${date}.json`);
  const result = {
    kind: 'soak',
    startedAt: new Date(started).toISOString(),
    machine: { host: hostname(), cpus: cpus().length, memGiB: round(totalmem() / 1024 ** 3), node: process.version },
    options: { ...o, out: undefined },
    server: { workers: o.workers, handler: 'examples/bench-protocol/handler.js', flags: 'CLI defaults' },
    summary,
    samples,
  };
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    `\nRSS start ${summary.rssStartMiB} MiB, max ${summary.rssMaxMiB} MiB, end ${summary.rssEndMiB} MiB; ` +
      `after ${o.warmup} s warm-up ${summary.afterWarmup.minMiB}..${summary.afterWarmup.maxMiB} MiB, slope ${summary.afterWarmup.slopeMiBPerMin} MiB/min\n` +
      `${counters.requests} requests, ${counters.errors} errors, ${counters.opened} connections opened (${counters.churnedClean} clean + ${counters.churnedReset} reset churns), ` +
      `server exit ${exit.code ?? exit.signal} after ${exit.ms} ms\nwrote ${file}\n`,
  );
  return counters.errors === 0 && !serverDied && exit.code === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(2);
  },
);
