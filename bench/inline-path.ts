/**
 * The main thread's cost per command of shoal's whole inline path, in process, without
 * the kernel: a read of `--pipeline` RESP commands as redis-benchmark sends them goes
 * into a real Connection (frame cutter, dispatcher, the Redis example's handler, reply
 * encoding, the gathered write) over a socket stand-in that is a real Duplex stream
 * discarding what is written. What is left out is the socket's syscalls, which cost the
 * same in any Node server (bench:resp: system time per command equal to a plain `net`
 * server's); what is in is the part a framework can make cheaper.
 *
 * Over loopback the same figures drift by +-15-30 % from minute to minute (bench:resp);
 * here a run of a few million commands repeats within a few per cent, so changes of the
 * hot path can be compared: run it before and after, interleaved, several times.
 *
 *   npm run build && npm run bench:inline -- [--workers 2] [--commands 4000000] [--pipeline 16] [--test get,set,ping]
 */
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createServer } from '../src/index.js';
import { Connection } from '../src/connection.js';
import type { ConnectionEnv } from '../src/connection.js';

const HELP = `Usage: node dist/bench/inline-path.js [options]

  --workers <n>     the server's workers (default 2: the keyspace runs inline by its affinity)
  --commands <n>    commands per test and round (default 4000000)
  --pipeline <n>    commands per read (default 16, redis-benchmark -P 16)
  --connections <n> connections the reads rotate over (default 50, redis-benchmark -c 50)
  --rounds <n>      rounds over the tests, the median reported (default 5)
  --test <list>     get,set,ping,incr (default get,set,ping)
  -h, --help
`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    workers: { type: 'string', default: '2' },
    commands: { type: 'string', default: '4000000' },
    pipeline: { type: 'string', default: '16' },
    connections: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '5' },
    test: { type: 'string', default: 'get,set,ping' },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const N = Number(values.commands);
const P = Number(values.pipeline);
const C = Number(values.connections);
const ROUNDS = Number(values.rounds);

/** RESP arrays of bulk strings, as redis-benchmark writes them. */
function command(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
}
const COMMANDS: Record<string, string> = {
  get: command('GET', 'key:__rand_int__'),
  set: command('SET', 'key:__rand_int__', 'xxx'),
  ping: command('PING'),
  incr: command('INCR', 'counter:__rand_int__'),
};

/** A socket stand-in: a real Duplex (cork, write, writev as Node's streams do them) that drops what it is given. */
class NullSocket extends Duplex {
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort: number;
  bytesWritten = 0;
  constructor(port: number) {
    super({ allowHalfOpen: true });
    this.remotePort = port;
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.bytesWritten += chunk.length;
    cb();
  }
  override _writev(chunks: { chunk: Buffer }[], cb: () => void): void {
    for (const c of chunks) this.bytesWritten += c.chunk.length;
    cb();
  }
}

const handler = fileURLToPath(new URL('../../examples/resp/handler.js', import.meta.url));
const server = createServer({ handler, framing: { type: 'resp' }, workers: Number(values.workers) });
await server.listen({ host: '127.0.0.1', port: 0 });
const o = server.options;
const env: ConnectionEnv = {
  framing: o.framing,
  dispatcher: server.dispatcher,
  limits: {
    maxInFlight: o.maxInFlightPerConnection,
    sendHighWater: o.sendHighWater,
    sendLowWater: o.sendLowWater,
    sendTimeout: o.sendTimeout,
    sendQueueLimit: o.sendQueueLimit,
    idleTimeout: o.idleTimeout,
    maxAge: o.maxConnectionAge,
    maxAgeGrace: o.maxConnectionAgeGrace,
    goAway: o.goAway,
  },
  hooks: { onClose() {}, onError() {}, onBudget() {}, onLateReplies() {}, onPushes() {} },
  logger: o.logger,
};
const sockets = Array.from({ length: C }, (_, i) => new NullSocket(40_000 + i));
const conns = sockets.map((s, i) => new Connection(i + 1, s as never, env));

/** Runs one test; resolves to ns per command (wall and the process's CPU). */
async function runTest(name: string): Promise<{ wallNs: number; cpuNs: number; bytes: number }> {
  const read = Buffer.from(COMMANDS[name]!.repeat(P));
  const reads = Math.ceil(N / P);
  let bytes0 = 0;
  for (const s of sockets) bytes0 += s.bytesWritten;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < reads; r++) {
    sockets[r % C]!.emit('data', read);
    // Let the tick's flushes and Node's stream callbacks run now and then, as the event loop would.
    if (r % 64 === 63) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await new Promise<void>((resolve) => setImmediate(resolve));
  const wall = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  let bytes = -bytes0;
  for (const s of sockets) bytes += s.bytesWritten;
  const n = reads * P;
  return { wallNs: wall / n, cpuNs: ((cpu.user + cpu.system) * 1000) / n, bytes: bytes / n };
}

const tests = values.test.split(',');
const results = new Map<string, number[]>();
// The first round warms the JIT up and fills the keys GET reads.
for (const t of tests) await runTest(t);
for (let round = 0; round < ROUNDS; round++) {
  for (const t of tests) {
    const r = await runTest(t);
    (results.get(t) ?? results.set(t, []).get(t)!).push(r.wallNs);
    if (round === 0) process.stderr.write(`${t}: ${r.bytes.toFixed(1)} reply bytes per command\n`);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [t, xs] of results) {
  console.log(JSON.stringify({ test: t, workers: Number(values.workers), pipeline: P, nsPerCommand: Math.round(median(xs)), runs: xs.map((x) => Math.round(x)) }));
}
for (const c of conns) c.destroy();
await server.close();
