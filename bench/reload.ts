/**
 * Hot reload under load (issue 12): `npm run bench:reload [-- options]`.
 *
 * `shoal start` (a separate process, 2 workers) serves a handler that answers
 * `v<N>|<request>`; this process keeps `--connections` x `--depth` requests in flight
 * (the shoal client, pipelined) for `--duration` seconds, and every `--every` seconds
 * rewrites the handler file as the next version and sends SIGHUP. The last reload writes
 * a broken file: the old code must keep serving. Every reply is checked (it answers its
 * request; its version never goes back on a connection).
 *
 * Reports errors, closed connections, reloads done / refused, the version switches, and
 * latency p50 / p99 / max of requests sent during a switch (from the SIGHUP to the
 * server's "reloaded" log line) against the steady state (every other request).
 * Prints a markdown table; with --out writes <date>-reload.md there. Do not run it on a
 * machine others are testing on.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { connect } from '../src/index.js';
import type { Client } from '../src/index.js';
import { CLI, ROOT, guardChildren, numberOption, sleep, track, waitExit } from './harness.js';
import { round } from './stats.js';

const HELP = `Usage: node dist/bench/reload.js [options]   (npm run bench:reload -- [options])

  --connections <n>  client connections (default 16)
  --depth <n>        requests in flight per connection (default 8)
  --duration <s>     seconds of load (default 20)
  --every <s>        seconds between reloads (default 3); the last one is a broken handler
  --work-us <n>      busy-loop microseconds per message in the handler (default 20)
  --workers <n>      shoal workers (default 2)
  --out <dir>        write <date>-reload.md there (e.g. bench/results)
  -h, --help
`;

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    depth: { type: 'string', default: '8' },
    duration: { type: 'string', default: '20' },
    every: { type: 'string', default: '3' },
    'work-us': { type: 'string', default: '20' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const num = (name: keyof typeof values, min: number): number => numberOption(values, name, min);
const CONNECTIONS = num('connections', 1);
const DEPTH = num('depth', 1);
const DURATION = num('duration', 1) * 1000;
const EVERY = num('every', 0.5) * 1000;
const WORK_US = num('work-us', 0);
const WORKERS = num('workers', 1);

guardChildren('reload', DURATION + 120_000);
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

// ---------------------------------------------------------------------------- the server

const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-reload-'));
const file = join(dir, 'handler.js');
const handlerSource = (version: number): string => `// bench/reload.ts: generation ${version}
const prefix = Buffer.from('v${version}|');
export default (frame) => {
  const end = process.hrtime.bigint() + ${WORK_US * 1000}n;
  while (process.hrtime.bigint() < end);
  return Buffer.concat([prefix, frame]);
};
`;
writeFileSync(file, handlerSource(1));

const child = track(spawn(process.execPath, [CLI, 'start', '--handler', file, '--workers', String(WORKERS), '--host', '127.0.0.1', '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
let stderr = '';
child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
type LogLine = { msg?: string; port?: number; startMs?: number; drainMs?: number; drained?: boolean; level?: number };
const logWaiters: ((l: LogLine) => void)[] = [];
createInterface({ input: child.stdout! }).on('line', (line) => {
  let rec: LogLine;
  try {
    rec = JSON.parse(line) as LogLine;
  } catch {
    return;
  }
  for (const w of logWaiters.splice(0)) w(rec);
});
/** The next log line whose msg is one of `msgs` (bounded). */
function nextLog(msgs: string[], ms: number): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${msgs.join(' / ')} log line within ${ms} ms: ${stderr}`)), ms);
    const wait = (l: LogLine): void => {
      if (l.msg !== undefined && msgs.includes(l.msg)) {
        clearTimeout(timer);
        resolve(l);
      } else logWaiters.push(wait);
    };
    logWaiters.push(wait);
  });
}
const port = (await nextLog(['listening'], 30_000)).port!;

// ---------------------------------------------------------------------------- the load

/** Latency samples: send time (ms since start) and latency (ms), in two growing arrays. */
const sentAt: number[] = [];
const latency: number[] = [];
let errors = 0;
let closedConnections = 0;
let badReplies = 0;
let versionWentBack = 0;
const versionsSeen = new Set<number>();
const t0 = performance.now();
let stopping = false;

async function lane(client: Client, c: number, state: { next: number; version: number }): Promise<void> {
  while (!stopping) {
    const i = state.next++;
    const body = `${c}:${i}`;
    const ts = performance.now();
    let reply: Buffer;
    try {
      reply = await client.request(body);
    } catch {
      errors++;
      return;
    }
    sentAt.push(ts - t0);
    latency.push(performance.now() - ts);
    const text = reply.toString();
    const bar = text.indexOf('|');
    const version = Number(text.slice(1, bar));
    if (text.slice(bar + 1) !== body) badReplies++;
    // Lanes of one connection are answered in order: a version lower than one seen before is a switch gone back.
    if (version < state.version) versionWentBack++;
    state.version = Math.max(state.version, version);
    versionsSeen.add(version);
  }
}

const clients: Client[] = [];
const lanes: Promise<void>[] = [];
for (let c = 0; c < CONNECTIONS; c++) {
  const client = await connect({ port, timeout: 10_000 });
  client.socket.once('close', () => {
    if (!stopping) closedConnections++;
  });
  clients.push(client);
  const state = { next: 0, version: 0 };
  for (let d = 0; d < DEPTH; d++) lanes.push(lane(client, c, state));
}

// ---------------------------------------------------------------------------- the reloads

interface Switch {
  version: number;
  from: number;
  to: number;
  outcome: string;
  startMs?: number;
  drainMs?: number;
}
const switches: Switch[] = [];
const reloads = Math.max(1, Math.floor(DURATION / EVERY) - 1);
let version = 1;
for (let k = 0; k < reloads; k++) {
  await sleep(EVERY);
  const broken = k === reloads - 1;
  const v = broken ? version : version + 1;
  writeFileSync(file, broken ? 'export default (frame) => {  // broken on purpose: a syntax error\n' : handlerSource(v));
  const done = nextLog(['reloaded', 'reload failed: the running code keeps serving'], 30_000);
  const from = performance.now() - t0;
  process.kill(child.pid!, 'SIGHUP');
  const rec = await done;
  const to = performance.now() - t0;
  switches.push({ version: v, from, to, outcome: rec.msg === 'reloaded' ? 'reloaded' : 'refused (old code kept)', startMs: rec.startMs, drainMs: rec.drainMs });
  if (!broken) version = v;
  log(`reload ${k + 1}/${reloads}: ${switches.at(-1)!.outcome} in ${round(to - from, 0)} ms`);
}
await sleep(Math.max(0, DURATION - (performance.now() - t0)));
stopping = true;
await Promise.race([Promise.all(lanes), sleep(15_000)]);
for (const c of clients) c.close();
child.kill('SIGTERM');
const exited = await waitExit(child, 15_000);
rmSync(dir, { recursive: true, force: true });

// ---------------------------------------------------------------------------- report

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const during: number[] = [];
const steady: number[] = [];
for (let i = 0; i < sentAt.length; i++) {
  const t = sentAt[i]!;
  (switches.some((s) => t >= s.from && t <= s.to) ? during : steady).push(latency[i]!);
}
const row = (name: string, xs: number[]): string =>
  `| ${name} | ${xs.length.toLocaleString('en-US')} | ${round(percentile(xs, 50), 2)} | ${round(percentile(xs, 99), 2)} | ${round(xs.reduce((m, x) => (x > m ? x : m), 0), 2)} |`;
const p99ratio = percentile(steady, 99) > 0 ? percentile(during, 99) / percentile(steady, 99) : 0;
const date = new Date().toISOString().slice(0, 10);
const md = [
  `# Hot reload under load, ${date}`,
  '',
  `\`npm run bench:reload -- --connections ${CONNECTIONS} --depth ${DEPTH} --duration ${DURATION / 1000} --every ${EVERY / 1000} --work-us ${WORK_US} --workers ${WORKERS}\``,
  `on ${hostname()} (${cpus().length} cores, Node ${process.version}): ${CONNECTIONS} x ${DEPTH} pipelined requests for ${DURATION / 1000} s, a reload`,
  `(handler file rewritten, SIGHUP) every ${EVERY / 1000} s, the last one a broken file. "During a switch": requests sent between the SIGHUP and the`,
  "server's reloaded / reload failed log line.",
  '',
  '| | value |',
  '|---|---:|',
  `| requests answered | ${sentAt.length.toLocaleString('en-US')} |`,
  `| errors | ${errors} |`,
  `| connections closed by the server | ${closedConnections} |`,
  `| replies not answering their request | ${badReplies} |`,
  `| a connection's version going back | ${versionWentBack} |`,
  `| reloads done / refused | ${switches.filter((s) => s.outcome === 'reloaded').length} / ${switches.filter((s) => s.outcome !== 'reloaded').length} |`,
  `| versions seen | ${[...versionsSeen].sort((a, b) => a - b).join(', ')} |`,
  `| server exited cleanly | ${exited && child.exitCode === 0 ? 'yes' : `no (${child.exitCode ?? child.signalCode})`} |`,
  '',
  '| requests | n | p50 ms | p99 ms | max ms |',
  '|---|---:|---:|---:|---:|',
  row('steady state', steady),
  row('during a switch', during),
  '',
  `p99 during a switch / steady: ${round(p99ratio)}x`,
  '',
  '| reload | outcome | SIGHUP to log line, ms | new pool start, ms | old pool drain, ms |',
  '|---:|---|---:|---:|---:|',
  ...switches.map((s, k) => `| ${k + 1} | ${s.outcome} | ${round(s.to - s.from, 0)} | ${s.startMs === undefined ? '' : round(s.startMs, 0)} | ${s.drainMs === undefined ? '' : round(s.drainMs, 0)} |`),
  '',
].join('\n');
process.stdout.write(md);
if (values.out) {
  mkdirSync(values.out, { recursive: true });
  const out = join(values.out, `${date}-reload.md`);
  writeFileSync(out, md);
  log(`wrote ${out}`);
}
process.exit(errors + closedConnections + badReplies + versionWentBack === 0 ? 0 : 1);
