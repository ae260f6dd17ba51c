/**
 * Fan-out throughput (issue 12): pushes delivered per second, `npm run bench:fanout [-- options]`.
 *
 * Two scenarios: one sender broadcasting to a group of N members ("1 -> N"), and N members
 * all broadcasting to the group ("N -> N"); every sender is a member and keeps `--window`
 * broadcasts in flight (it counts its own broadcasts coming back). Against three servers,
 * each a separate process: shoal with 2 workers (offload always: every broadcast made in a
 * worker, carried through the reply ring), shoal with workers: 0 (inline), and a plain Node
 * `net` server doing the same fan-out on its main thread (bench/net-fanout-server.ts).
 * Interleaved (run r is the outer loop), the median of the runs per cell, ratios against
 * the plain server; server CPU (its process tree, % of one core) and the generator's CPU
 * (this process: it reads every delivered push, and in JS it may be the bottleneck).
 *
 * Prints a markdown table; with --out writes bench/results/<date>-fanout.md. Do not run it
 * on a machine others are testing on: the figures are only worth their quiet.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CLI, ROOT, guardChildren, numberOption, sleep, startServer } from './harness.js';
import type { RunningServer, ServerCommand } from './harness.js';
import { sampleTree, ticksPerSecond } from './proc.js';
import { median, ratio, round } from './stats.js';

const HELP = `Usage: node dist/bench/fanout.js [options]   (npm run bench:fanout -- [options])

  --members <n>     members of the group in "1 -> N" (default 64)
  --senders <n>     members (all senders) in "N -> N" (default 16)
  --window <n>      broadcasts in flight per sender (default 32)
  --body <bytes>    broadcast body size (default 64)
  --duration <s>    seconds measured per run (default 5)
  --warmup <s>      seconds before measuring (default 1)
  --runs <n>        interleaved runs, median reported (default 5)
  --servers <ids>   shoal-2,shoal-0,net (default all)
  --out <dir>       write <date>-fanout.md there (e.g. bench/results)
  -h, --help
`;

const { values } = parseArgs({
  options: {
    members: { type: 'string', default: '64' },
    senders: { type: 'string', default: '16' },
    window: { type: 'string', default: '32' },
    body: { type: 'string', default: '64' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    runs: { type: 'string', default: '5' },
    servers: { type: 'string', default: 'shoal-2,shoal-0,net' },
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
const MEMBERS = num('members', 1);
const SENDERS = num('senders', 1);
const WINDOW = num('window', 1);
const BODY = num('body', 4);
const DURATION = num('duration', 0.5) * 1000;
const WARMUP = num('warmup', 0) * 1000;
const RUNS = num('runs', 1);

const HANDLER = join(ROOT, 'dist/bench/fanout-handler.js');
const NET = join(ROOT, 'dist/bench/net-fanout-server.js');
const SERVERS: Record<string, ServerCommand> = {
  'shoal-2': { label: 'shoal workers 2', args: [CLI, 'start', '--handler', HANDLER, '--workers', '2', '--offload', 'always', '--host', '127.0.0.1', '--port', '0'] },
  'shoal-0': { label: 'shoal workers 0', args: [CLI, 'start', '--handler', HANDLER, '--workers', '0', '--host', '127.0.0.1', '--port', '0'] },
  net: { label: 'plain Node net', args: [NET, '--host', '127.0.0.1', '--port', '0'] },
};
const serverIds = values.servers!.split(',').filter(Boolean);
for (const id of serverIds) if (!(id in SERVERS)) throw new Error(`unknown server ${id} (shoal-2, shoal-0, net)`);

// One run per cell and server is bounded; the whole bench too.
const RUN_DEADLINE_MS = WARMUP + DURATION + 30_000;
guardChildren('fanout', 2 * 60_000 + RUNS * serverIds.length * 2 * RUN_DEADLINE_MS);

const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

// ---------------------------------------------------------------------------- the load

const JOIN = Buffer.from([0, 0, 0, 1, 0x4a]);

/** One member: counts the frames it receives; a sender also keeps `window` broadcasts in flight. */
class Peer {
  received = 0;
  sent = 0;
  own = 0;
  #joined!: () => void;
  readonly joined = new Promise<void>((r) => (this.#joined = r));
  #header = Buffer.alloc(4);
  #headerHave = 0;
  /** Body bytes of the current frame still to come; -1: reading a header. */
  #bodyLeft = -1;
  #bodyAt = 0;
  #from = -1;
  #sending = false;
  readonly #frame: Buffer;

  constructor(
    readonly socket: Socket,
    readonly index: number,
  ) {
    socket.setNoDelay(true);
    // [len][ 'B' ][u16 sender][padding]
    this.#frame = Buffer.alloc(4 + BODY, 0x2e);
    this.#frame.writeUInt32BE(BODY, 0);
    this.#frame[4] = 0x42;
    this.#frame.writeUInt16BE(index, 5);
    socket.on('data', (c: Buffer) => this.#onData(c));
    socket.on('error', () => {});
  }

  start(): void {
    this.#sending = true;
    this.#fill();
  }

  stop(): void {
    this.#sending = false;
  }

  get inFlight(): number {
    return this.sent - this.own;
  }

  #fill(): void {
    if (!this.#sending) return;
    const n = WINDOW - this.inFlight;
    if (n <= 0) return;
    const out = n === 1 ? this.#frame : Buffer.concat(Array.from({ length: n }, () => this.#frame));
    this.sent += n;
    this.socket.write(out);
  }

  /** Count frames without copying them: a header (maybe split), then the body, whose bytes 1-2 name its sender. */
  #onData(c: Buffer): void {
    let at = 0;
    let own = 0;
    while (at < c.length) {
      if (this.#bodyLeft < 0) {
        const take = Math.min(4 - this.#headerHave, c.length - at);
        c.copy(this.#header, this.#headerHave, at, at + take);
        this.#headerHave += take;
        at += take;
        if (this.#headerHave < 4) break;
        this.#headerHave = 0;
        this.#bodyLeft = this.#header.readUInt32BE(0);
        this.#bodyAt = 0;
        this.#from = 0;
        continue;
      }
      const take = Math.min(this.#bodyLeft, c.length - at);
      // Sender id: body bytes 1 and 2.
      for (let k = 0; k < take; k++) {
        const pos = this.#bodyAt + k;
        if (pos === 0 && c[at + k] === 0x6a) this.#from = -2; // "j": the join's reply
        else if (pos === 1) this.#from = c[at + k]! << 8;
        else if (pos === 2) this.#from |= c[at + k]!;
        else if (pos > 2) break;
      }
      this.#bodyAt += take;
      this.#bodyLeft -= take;
      at += take;
      if (this.#bodyLeft === 0) {
        this.#bodyLeft = -1;
        if (this.#from === -2) this.#joined();
        else {
          this.received++;
          if (this.#from === this.index) own++;
        }
      }
    }
    if (own > 0) {
      this.own += own;
      this.#fill();
    }
  }
}

interface RunFigures {
  pushesPerSecond: number;
  serverCpu: number;
  generatorCpu: number;
}

async function connectPeers(port: number, n: number): Promise<Peer[]> {
  const peers: Peer[] = [];
  for (let i = 0; i < n; i++) {
    const socket = netConnect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const p = new Peer(socket, i);
    socket.write(JOIN);
    peers.push(p);
  }
  await withDeadline(Promise.all(peers.map((p) => p.joined)), 10_000, 'members joining');
  return peers;
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no end within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

async function runOnce(server: RunningServer, members: number, senders: number): Promise<RunFigures> {
  const peers = await connectPeers(server.port, members);
  const sending = peers.slice(0, senders);
  for (const p of sending) p.start();
  await sleep(WARMUP);
  const total = (): number => peers.reduce((n, p) => n + p.received, 0);
  const r0 = total();
  const s0 = sampleTree(server.pid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(DURATION);
  const r1 = total();
  const s1 = sampleTree(server.pid);
  const c1 = process.cpuUsage(c0);
  const wall = performance.now() - t0;
  for (const p of sending) p.stop();
  // Let what is in flight arrive (bounded), so the next run starts on a quiet server.
  const deadline = Date.now() + 5_000;
  while (sending.some((p) => p.inFlight > 0) && Date.now() < deadline) await sleep(10);
  for (const p of peers) p.socket.destroy();
  return {
    pushesPerSecond: ((r1 - r0) / wall) * 1000,
    serverCpu: (((s1.ticks - s0.ticks) / ticksPerSecond()) * 1000 * 100) / wall,
    generatorCpu: (((c1.user + c1.system) / 1000) * 100) / wall,
  };
}

// ---------------------------------------------------------------------------- main

const SCENARIOS = [
  { id: `1 -> ${MEMBERS}`, members: MEMBERS, senders: 1 },
  { id: `${SENDERS} -> ${SENDERS}`, members: SENDERS, senders: SENDERS },
];

const servers = new Map<string, RunningServer>();
for (const id of serverIds) servers.set(id, await startServer(SERVERS[id]!));
const figures = new Map<string, RunFigures[]>();
try {
  for (let r = 0; r < RUNS; r++) {
    for (const sc of SCENARIOS) {
      for (const id of serverIds) {
        const f = await withDeadline(runOnce(servers.get(id)!, sc.members, sc.senders), RUN_DEADLINE_MS, `${sc.id} on ${id}`);
        const key = `${sc.id}|${id}`;
        figures.set(key, [...(figures.get(key) ?? []), f]);
        log(`run ${r + 1}/${RUNS} ${sc.id.padEnd(9)} ${id.padEnd(8)} ${Math.round(f.pushesPerSecond)} pushes/s, server ${round(f.serverCpu, 0)}% CPU, generator ${round(f.generatorCpu, 0)}%`);
      }
    }
  }
} finally {
  for (const s of servers.values()) await s.stop();
}

const lines = [
  `| scenario | server | pushes/s (median of ${RUNS}) | vs plain net | server CPU (% of a core) | generator CPU (% of a core) |`,
  '|---|---|---:|---:|---:|---:|',
];
for (const sc of SCENARIOS) {
  const net = figures.get(`${sc.id}|net`);
  const netRate = net ? median(net.map((f) => f.pushesPerSecond)) : undefined;
  for (const id of serverIds) {
    const fs = figures.get(`${sc.id}|${id}`)!;
    const rate = median(fs.map((f) => f.pushesPerSecond));
    const vs = ratio(rate, netRate);
    lines.push(
      `| ${sc.id} | ${SERVERS[id]!.label} | ${Math.round(rate).toLocaleString('en-US')} | ${vs === null ? '' : `${round(vs)}x`} | ${round(median(fs.map((f) => f.serverCpu)), 0)} | ${round(median(fs.map((f) => f.generatorCpu)), 0)} |`,
    );
  }
}
const date = new Date().toISOString().slice(0, 10);
const md = [
  `# Fan-out throughput, ${date}`,
  '',
  `\`npm run bench:fanout -- --members ${MEMBERS} --senders ${SENDERS} --window ${WINDOW} --body ${BODY} --duration ${DURATION / 1000} --runs ${RUNS}\` on ${hostname()} (${cpus().length} cores, Node ${process.version}).`,
  'Pushes delivered per second, counted at the members (a broadcast to N members counts N); every sender is a member and keeps',
  `${WINDOW} broadcasts in flight. shoal workers 2 runs with --offload always (each broadcast is made in a worker); the plain server`,
  'fans out on its main thread. The generator is this one JS process: when its CPU is near 100 % it, not the server, is the limit.',
  '',
  ...lines,
  '',
].join('\n');
process.stdout.write(md);
if (values.out) {
  mkdirSync(values.out, { recursive: true });
  const file = join(values.out, `${date}-fanout.md`);
  writeFileSync(file, md);
  log(`wrote ${file}`);
}
