/**
 * shoal's Redis-compatible example against redis-server, driven by redis-benchmark (C,
 * from Debian's redis-tools): shoal with workers 0 and 2, a plain Node `net` server with
 * no framework (net-resp-server.ts: what one Node thread does with these commands), and
 * redis-server, all started here on loopback and stopped by their PIDs; the runs
 * interleaved (w0, w2, node net, redis, then again; one redis-benchmark per test), medians
 * of `--runs`, with each server's CPU per command (user and system µs, from /proc) and
 * redis-benchmark's own CPU (the machine's other core: near 100 % it is the limit); then
 * the CPU-bound HASHCHAIN with workers 0 vs 2.
 *
 *   npm run build && npm run bench:resp -- [--runs 3] [--requests 1000000] [--out]
 *
 * --out writes bench/results/<date>-resp.md (-2, -3, ... when that exists). Only ratios measured in one run mean
 * anything (DESIGN.md): run it on a quiet machine.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CLI, ROOT, codeVersion, guardChildren, startServer, track, waitExit } from './harness.js';
import type { RunningServer } from './harness.js';
import { cpuTimes } from './proc.js';
import { median, ratio, round } from './stats.js';

const HELP = `Usage: node dist/bench/resp.js [options]   (npm run bench:resp -- [options])

  --runs <n>            interleaved runs, medians reported (default 3)
  --requests <n>        redis-benchmark -n per test (default 1000000: ~5 s a test; 1 s runs spread 2x)
  --clients <n>         redis-benchmark -c (default 50)
  --pipeline <n>        redis-benchmark -P (default 16)
  --tests <list>        redis-benchmark -t (default ping,set,get,incr,lpush,lpop)
  --hash-rounds <n>     SHA-256 steps per HASHCHAIN command (default 1000)
  --hash-requests <n>   HASHCHAIN commands per run (default 30000: about 10 s on 2 workers, past the workers' warm-up)
  --out                 write bench/results/<date>-resp.md (-2, -3, ... when that exists)
  -h, --help
`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    runs: { type: 'string', default: '3' },
    requests: { type: 'string', default: '1000000' },
    clients: { type: 'string', default: '50' },
    pipeline: { type: 'string', default: '16' },
    tests: { type: 'string', default: 'ping,set,get,incr,lpush,lpop' },
    'hash-rounds': { type: 'string', default: '1000' },
    'hash-requests': { type: 'string', default: '30000' },
    out: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const RUNS = Number(values.runs);
const N = Number(values.requests);
const CLIENTS = Number(values.clients);
const PIPELINE = Number(values.pipeline);
const HASH_ROUNDS = Number(values['hash-rounds']);
const HASH_N = Number(values['hash-requests']);
/** Every redis-benchmark run is bounded; the whole bench too. */
const RUN_DEADLINE_MS = 180_000;
guardChildren('bench:resp', 60 * 60_000);

interface Target {
  label: string;
  port: number;
  /** The server's process (its CPU per command is read from /proc). */
  pid: number;
  stop(): Promise<unknown>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function startShoal(workers: number): Promise<Target> {
  const args = [CLI, 'start', '--framing', 'resp', '--handler', join(ROOT, 'examples/resp/handler.js'), '--workers', String(workers), '--host', '127.0.0.1', '--port', '0', '--log-format', 'json'];
  const s: RunningServer = await startServer({ label: `shoal w${workers}`, args });
  return { label: `shoal w${workers}`, port: s.port, pid: s.pid, stop: () => s.stop() };
}

async function startNodeNet(): Promise<Target> {
  const s: RunningServer = await startServer({ label: 'node net', args: [join(ROOT, 'dist/bench/net-resp-server.js'), '--host', '127.0.0.1', '--port', '0'] });
  return { label: 'node net', port: s.port, pid: s.pid, stop: () => s.stop() };
}

async function startRedis(): Promise<Target> {
  const port = await freePort();
  // No persistence: nothing written to disk; loopback only.
  const child = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s: ${out}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)));
  });
  return {
    label: 'redis-server',
    port,
    pid: child.pid!,
    async stop() {
      if (child.pid) process.kill(child.pid, 'SIGTERM');
      if (!(await waitExit(child, 10_000)) && child.pid) process.kill(child.pid, 'SIGKILL');
    },
  };
}

function cpuSeconds(pid: number): number | null {
  const t = cpuTimes(pid);
  return t === null ? null : t.user + t.system;
}

/** The generator's CPU share of one core, by redis-benchmark run label; one figure per run. */
const generatorCpu = new Map<string, number[]>();

/** One redis-benchmark run; requests/s by test name (its --csv rows). Throws on errors. */
async function benchmark(port: number, args: string[], label: string): Promise<Map<string, number>> {
  const child = track(spawn('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-c', String(CLIENTS), '-P', String(PIPELINE), '--csv', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const started = performance.now();
  // Sampled while it runs (its /proc entry goes with it): the last sample is at most 200 ms short.
  let cpu = 0;
  let sampledAt = started;
  const sampler = setInterval(() => {
    const c = child.pid ? cpuSeconds(child.pid) : null;
    if (c !== null) {
      cpu = c;
      sampledAt = performance.now();
    }
  }, 200);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = await waitExit(child, RUN_DEADLINE_MS);
  clearInterval(sampler);
  if (!exited) {
    if (child.pid) process.kill(child.pid, 'SIGKILL');
    throw new Error(`redis-benchmark ${args.join(' ')} did not finish within ${RUN_DEADLINE_MS} ms`);
  }
  if (child.exitCode !== 0 || /error/i.test(err)) throw new Error(`redis-benchmark ${args.join(' ')} failed (${child.exitCode}): ${err.slice(0, 500)}`);
  if (sampledAt > started + 1000) generatorCpu.set(label, [...(generatorCpu.get(label) ?? []), (cpu * 1000) / (sampledAt - started)]);
  const rows = new Map<string, number>();
  for (const line of out.trim().split('\n').slice(1)) {
    const [name, rps] = line.split(',').map((c) => c.replace(/"/g, ''));
    if (name && rps) rows.set(name, Number(rps));
  }
  return rows;
}

function flush(port: number): void {
  execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'flushall'], { timeout: 10_000 });
}

const version = (cmd: string): string => {
  try {
    return execFileSync(cmd, ['--version'], { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    return `${cmd}: not found`;
  }
};

const targets = [await startShoal(0), await startShoal(2), await startNodeNet(), await startRedis()];
/** rps[target][test] = one figure per run. */
const rps = new Map<string, Map<string, number[]>>(targets.map((t) => [t.label, new Map()]));
const hash = new Map<string, number[]>();
/** serverCpu[target][test] = µs of the server's CPU per command, user and system, one per run. */
const serverCpu = new Map<string, Map<string, { user: number; system: number }[]>>(targets.map((t) => [t.label, new Map()]));
const hashArgs = ['-n', String(HASH_N), 'hashchain', String(HASH_ROUNDS), 'i am spiderman.'];
try {
  for (let run = 1; run <= RUNS; run++) {
    for (const t of targets) {
      flush(t.port);
      const rows = new Map<string, number>();
      // One redis-benchmark per test, in the same order as one run of all of them (GET after SET
      // finds its keys): the server's own CPU is then read per test.
      for (const test of values.tests!.split(',')) {
        const before = cpuTimes(t.pid);
        const got = await benchmark(t.port, ['-n', String(N), '-t', test], t.label);
        const after = cpuTimes(t.pid);
        for (const [name, v] of got) rows.set(name, v);
        if (before !== null && after !== null && got.size > 0) {
          const commands = N * got.size; // -t ping runs two tests (inline and multi-bulk)
          const m = serverCpu.get(t.label)!;
          m.set(test, [...(m.get(test) ?? []), { user: ((after.user - before.user) * 1e6) / commands, system: ((after.system - before.system) * 1e6) / commands }]);
        }
      }
      for (const [test, v] of rows) {
        const m = rps.get(t.label)!;
        m.set(test, [...(m.get(test) ?? []), v]);
      }
      process.stderr.write(`run ${run}/${RUNS} ${t.label}: ${[...rows].map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')}\n`);
    }
    for (const t of targets.slice(0, 2)) {
      const rows = await benchmark(t.port, hashArgs, `${t.label} HASHCHAIN`);
      const v = [...rows.values()][0] ?? 0;
      hash.set(t.label, [...(hash.get(t.label) ?? []), v]);
      process.stderr.write(`run ${run}/${RUNS} ${t.label}: HASHCHAIN ${HASH_ROUNDS} ${Math.round(v)}\n`);
    }
  }
} finally {
  for (const t of targets) await t.stop();
}

const [w0, w2, net, redis] = targets.map((t) => rps.get(t.label)!);
const tests = [...redis!.keys()];
const fmt = (x: number | null): string => (x === null ? '-' : String(round(x, 2)));
const k = (x: number): string => `${round(x / 1000, 1)}k`;
const lines = [
  `# RESP: shoal's Redis example vs redis-server (${new Date().toISOString().slice(0, 10)})`,
  '',
  `- command: \`redis-benchmark -c ${CLIENTS} -P ${PIPELINE} -n ${N} -t ${values.tests} --csv\`, against each server in turn, ${RUNS} interleaved runs, medians`,
  `- shoal: \`shoal start --framing resp --handler examples/resp/handler.js --workers 0|2\` (the keyspace on the main thread: the MAIN_THREAD affinity key; HASHCHAIN in the pool)`,
  `- code ${codeVersion()}, node ${process.version}, ${version('redis-server').split(' ').slice(0, 3).join(' ')}, ${version('redis-benchmark')}`,
  `- machine: ${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
  '',
  '| test | shoal w0 | shoal w2 | node net | redis-server | w2 / redis | w0 / redis | node net / redis | w2 / w0 | w0 / node net |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...tests.map((t) => {
    const a = median(w0!.get(t) ?? []);
    const b = median(w2!.get(t) ?? []);
    const n = median(net!.get(t) ?? []);
    const r = median(redis!.get(t) ?? []);
    return `| ${t} | ${k(a)} | ${k(b)} | ${k(n)} | ${k(r)} | ${fmt(ratio(b, r))} | ${fmt(ratio(a, r))} | ${fmt(ratio(n, r))} | ${fmt(ratio(b, a))} | ${fmt(ratio(a, n))} |`;
  }),
  '',
  `Server CPU per command, µs of user + system time (all the server's threads, /proc/<pid>/stat over each test's ${N.toLocaleString('en-US')} commands; medians): a figure that the generator's and the machine's pace move less than requests/s.`,
  '',
  `| test | ${targets.map((t) => t.label).join(' | ')} |`,
  `| --- |${targets.map(() => ' ---: |').join('')}`,
  ...values.tests!.split(',').map((test) => {
    const cell = (label: string): string => {
      const xs = serverCpu.get(label)?.get(test) ?? [];
      if (xs.length === 0) return '-';
      return `${round(median(xs.map((x) => x.user)), 2)} + ${round(median(xs.map((x) => x.system)), 2)}`;
    };
    return `| ${test} | ${targets.map((t) => cell(t.label)).join(' | ')} |`;
  }),
  '',
  `redis-benchmark's own CPU (share of one core, median over the runs of all ${tests.length} tests): ${[...generatorCpu]
    .map(([label, v]) => `${label} ${Math.round(median(v) * 100)} %`)
    .join(', ')}. A generator near 100 % is the limit of that column: its figure is a lower bound.`,
  '',
  `CPU-bound: \`redis-benchmark -c ${CLIENTS} -P ${PIPELINE} ${hashArgs.join(' ')}\` (a SHA-256 chain of ${HASH_ROUNDS} steps per command, no affinity: any worker)`,
  '',
  '| | shoal w0 | shoal w2 | w2 / w0 |',
  '| --- | ---: | ---: | ---: |',
  `| HASHCHAIN ${HASH_ROUNDS} (req/s) | ${round(median(hash.get('shoal w0') ?? []), 0)} | ${round(median(hash.get('shoal w2') ?? []), 0)} | ${fmt(ratio(median(hash.get('shoal w2') ?? []), median(hash.get('shoal w0') ?? [])))} |`,
  '',
  'Every run (requests/s):',
  '',
  ...targets.flatMap((t) => [...rps.get(t.label)!].map(([test, v]) => `- ${t.label} ${test}: ${v.map((x) => Math.round(x)).join(', ')}`)),
  ...[...hash].map(([label, v]) => `- ${label} HASHCHAIN: ${v.map((x) => Math.round(x)).join(', ')}`),
  '',
];
const report = lines.join('\n');
process.stdout.write(report);
if (values.out) {
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const day = new Date().toISOString().slice(0, 10);
  let file = join(dir, `${day}-resp.md`);
  for (let n = 2; existsSync(file); n++) file = join(dir, `${day}-resp-${n}.md`); // an earlier run's results stay
  writeFileSync(file, report);
  process.stderr.write(`wrote ${file}\n`);
}
