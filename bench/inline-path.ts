/**
 * The main thread's cost per request of shoal's whole inline path, in process, without
 * the kernel: a read of `--pipeline` requests (RESP commands as redis-benchmark sends
 * them, or the bench protocol's 64 B echo) goes into a real Connection (frame cutter,
 * dispatcher, the example's handler, reply encoding, the gathered write) over a socket
 * stand-in that is a real Duplex stream discarding what is written. Left out are the
 * socket's syscalls, which cost the same in any Node server (as many reads and writes
 * per command as a plain `net` server's, /proc/<pid>/io); in is the part a framework can
 * make cheaper.
 *
 * This machine's pace drifts by up to 2x within a minute, in process too. So a change is
 * measured against another build in the same process: `--against <checkout>` loads that
 * checkout's dist/ (its own server, handler and connections) beside this one, and the two
 * take turns every `--slice` commands; each pair of turns gives a ratio, and the median
 * ratio is what is reported. Two builds of the same code read 0.99-1.03 (a few per cent
 * is the resolution). `--against . --against-workers 0` sets the pool's inline path
 * against workers: 0's.
 *
 *   npm run build && npm run bench:inline -- [--against ../base] [--test get,set,ping,echo]
 */
import { Duplex } from 'node:stream';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ConnectionEnv } from '../src/connection.js';

const HELP = `Usage: node dist/bench/inline-path.js [options]   (npm run bench:inline -- [options])

  --against <dir>   another checkout, built (its dist/): measured beside this one, turn about
  --workers <n>     the servers' workers (default 2: the keyspace runs inline by its affinity)
  --against-workers <n>  the other build's workers (default --workers): with --against . the
                    pool's inline path against workers: 0's
  --commands <n>    commands per test and build (default 8000000)
  --slice <n>       commands per turn (default 25000: short turns follow the drift)
  --pipeline <n>    commands per read (default 16, redis-benchmark -P 16)
  --connections <n> connections the reads rotate over (default 50, redis-benchmark -c 50)
  --test <list>     get,set,ping,incr (RESP, the Redis example), echo (the bench protocol's
                    64 B echo) (default get,set,ping; GET finds SET's value once SET ran)
  -h, --help

Prints a JSON line per test: CPU ns per request (the process's user + system time over a
turn, the median turn), and with --against the other build's and the median of the pair
ratios (this build / the other), with their range.
`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    against: { type: 'string' },
    workers: { type: 'string', default: '2' },
    'against-workers': { type: 'string' },
    commands: { type: 'string', default: '8000000' },
    slice: { type: 'string', default: '25000' },
    pipeline: { type: 'string', default: '16' },
    connections: { type: 'string', default: '50' },
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
const READS_PER_SLICE = Math.max(1, Math.round(Number(values.slice) / P));

/** RESP arrays of bulk strings, as redis-benchmark writes them. */
function command(...args: string[]): Buffer {
  return Buffer.from(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
}
/** A bench-protocol echo request (../shared/bench-protocol.md): [u32 length][u32 K = 0][payload]. */
function echo(payloadBytes: number): Buffer {
  const b = Buffer.alloc(8 + payloadBytes, 0x61);
  b.writeUInt32BE(4 + payloadBytes, 0);
  b.writeUInt32BE(0, 4);
  return b;
}
type Protocol = 'resp' | 'bench';
interface Test {
  protocol: Protocol;
  request: Buffer;
  /** Reply bytes per request it may be answered with (checked: a fast wrong answer measures nothing). */
  replyBytes: number[];
}
const TESTS: Record<string, Test> = {
  get: { protocol: 'resp', request: command('GET', 'key:__rand_int__'), replyBytes: [9, 5] },
  set: { protocol: 'resp', request: command('SET', 'key:__rand_int__', 'xxx'), replyBytes: [5] },
  ping: { protocol: 'resp', request: command('PING'), replyBytes: [7] },
  incr: { protocol: 'resp', request: command('INCR', 'counter:__rand_int__'), replyBytes: [] },
  // The bench protocol's 64 B echo (bench:shapes' echo cells): the default length framing and examples/bench-protocol.
  echo: { protocol: 'bench', request: echo(64), replyBytes: [68] },
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

const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** One build's server and connections for one protocol, from the checkout at `root`. */
async function serve(root: string, workers: number, protocol: Protocol) {
  const dist = (p: string): string => pathToFileURL(resolvePath(root, 'dist', p)).href;
  const shoal = (await import(dist('src/index.js'))) as typeof import('../src/index.js');
  const { Connection } = (await import(dist('src/connection.js'))) as typeof import('../src/connection.js');
  const server =
    protocol === 'resp'
      ? shoal.createServer({ handler: resolvePath(root, 'examples/resp/handler.js'), framing: { type: 'resp' }, workers })
      : shoal.createServer({ handler: resolvePath(root, 'examples/bench-protocol/handler.js'), workers });
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
  const written = (): number => sockets.reduce((sum, s) => sum + s.bytesWritten, 0);
  let next = 0;
  return {
    /** `reads` reads of the test's requests; resolves to CPU ns per request and reply bytes per request. */
    async run(test: Test, reads: number): Promise<{ ns: number; replyBytes: number }> {
      const read = Buffer.concat(Array.from({ length: P }, () => test.request));
      const bytes0 = written();
      const cpu0 = process.cpuUsage();
      for (let r = 0; r < reads; r++) {
        sockets[next++ % C]!.emit('data', read);
        // Let the tick's flushes and the streams' callbacks run now and then, as the event loop would.
        if (r % 64 === 63) await turn();
      }
      await turn();
      const cpu = process.cpuUsage(cpu0);
      const n = reads * P;
      return { ns: ((cpu.user + cpu.system) * 1000) / n, replyBytes: (written() - bytes0) / n };
    },
    async close(): Promise<void> {
      for (const c of conns) c.destroy();
      await server.close();
    },
  };
}
type Served = Awaited<ReturnType<typeof serve>>;

/** One build (a checkout and its workers), its servers made on first use, one per protocol. */
class Side {
  readonly #servers = new Map<Protocol, Served>();
  constructor(
    readonly root: string,
    readonly workers: number,
  ) {}
  async server(protocol: Protocol): Promise<Served> {
    let s = this.#servers.get(protocol);
    if (s === undefined) this.#servers.set(protocol, (s = await serve(this.root, this.workers, protocol)));
    return s;
  }
  async close(): Promise<void> {
    for (const s of this.#servers.values()) await s.close();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const here = fileURLToPath(new URL('../..', import.meta.url));
const sides = [new Side(here, Number(values.workers))];
if (values.against !== undefined) sides.push(new Side(resolvePath(values.against), Number(values['against-workers'] ?? values.workers)));

const slices = Math.max(1, Math.round(N / P / READS_PER_SLICE));
for (const name of values.test.split(',')) {
  const test = TESTS[name];
  if (test === undefined) throw new Error(`--test: no test '${name}' (${Object.keys(TESTS).join(', ')})`);
  const servers = await Promise.all(sides.map((s) => s.server(test.protocol)));
  // Warm-up (the JIT; GET then finds SET's key when SET ran before it).
  for (const s of servers) await s.run(test, 4 * READS_PER_SLICE);
  const ns: number[][] = sides.map(() => []);
  const ratios: number[] = [];
  for (let k = 0; k < slices; k++) {
    // Alternate which goes first, so neither always follows the other's garbage.
    const order = sides.length === 1 ? [0] : k % 2 === 0 ? [0, 1] : [1, 0];
    const pair: number[] = [];
    for (const i of order) {
      const r = await servers[i]!.run(test, READS_PER_SLICE);
      if (test.replyBytes.length > 0 && !test.replyBytes.includes(r.replyBytes)) {
        throw new Error(`${name}: ${r.replyBytes} reply bytes per request from ${sides[i]!.root} (workers ${sides[i]!.workers}), expected ${test.replyBytes.join(' or ')}`);
      }
      ns[i]!.push(r.ns);
      pair[i] = r.ns;
    }
    if (sides.length === 2) ratios.push(pair[0]! / pair[1]!);
  }
  const line: Record<string, unknown> = { test: name, workers: sides[0]!.workers, pipeline: P, nsPerCommand: Math.round(median(ns[0]!)) };
  if (sides.length === 2) {
    line.againstWorkers = sides[1]!.workers;
    line.againstNsPerCommand = Math.round(median(ns[1]!));
    line.medianRatio = Number(median(ratios).toFixed(3));
    line.ratioRange = [Number(Math.min(...ratios).toFixed(3)), Number(Math.max(...ratios).toFixed(3))];
  }
  console.log(JSON.stringify(line));
}
for (const s of sides) await s.close();
