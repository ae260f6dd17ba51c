/**
 * The main thread's cost per command of shoal's whole inline path, in process, without
 * the kernel: a read of `--pipeline` RESP commands as redis-benchmark sends them goes
 * into a real Connection (frame cutter, dispatcher, the Redis example's handler, reply
 * encoding, the gathered write) over a socket stand-in that is a real Duplex stream
 * discarding what is written. What is left out is the socket's syscalls, which cost the
 * same in any Node server (bench:resp: system time per command equal to a plain `net`
 * server's); what is in is the part a framework can make cheaper.
 *
 * This machine's pace drifts by up to 2x within a minute, in process too. So a change is
 * measured against another build in the same process: `--against <checkout>` loads that
 * checkout's dist/ (its own server, handler and connections) beside this one, and the two
 * take turns every `--slice` commands; each pair of turns gives a ratio, and the median
 * ratio is what is reported.
 *
 *   npm run build && npm run bench:inline -- [--against ../base] [--test get,set,ping]
 */
import { Duplex } from 'node:stream';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ConnectionEnv } from '../src/connection.js';

const HELP = `Usage: node dist/bench/inline-path.js [options]   (npm run bench:inline -- [options])

  --against <dir>   another checkout, built (its dist/): measured beside this one, turn about
  --workers <n>     the servers' workers (default 2: the keyspace runs inline by its affinity)
  --commands <n>    commands per test and build (default 4000000)
  --slice <n>       commands per turn (default 100000)
  --pipeline <n>    commands per read (default 16, redis-benchmark -P 16)
  --connections <n> connections the reads rotate over (default 50, redis-benchmark -c 50)
  --test <list>     get,set,ping,incr (default get,set,ping; GET finds SET's value once SET ran)
  -h, --help

Prints a JSON line per test: ns per command (CPU time of the process over wall time of
the turns: the median turn), and with --against the other build's and the median ratio.
`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    against: { type: 'string' },
    workers: { type: 'string', default: '2' },
    commands: { type: 'string', default: '4000000' },
    slice: { type: 'string', default: '100000' },
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
function command(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
}
const COMMANDS: Record<string, string> = {
  get: command('GET', 'key:__rand_int__'),
  set: command('SET', 'key:__rand_int__', 'xxx'),
  ping: command('PING'),
  incr: command('INCR', 'counter:__rand_int__'),
};
/** What each test's commands are answered with (checked: a fast wrong answer measures nothing). */
const REPLY_BYTES: Record<string, number[]> = { get: [9, 5], set: [5], ping: [7], incr: [] };

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

/** One build's server and connections, from the checkout at `root`. */
async function side(root: string) {
  const dist = (p: string): string => pathToFileURL(resolvePath(root, 'dist', p)).href;
  const shoal = (await import(dist('src/index.js'))) as typeof import('../src/index.js');
  const { Connection } = (await import(dist('src/connection.js'))) as typeof import('../src/connection.js');
  const handler = resolvePath(root, 'examples/resp/handler.js');
  const server = shoal.createServer({ handler, framing: { type: 'resp' }, workers: Number(values.workers) });
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
    root,
    /** `reads` reads of the test's commands; resolves to CPU ns per command and reply bytes per command. */
    async run(test: string, reads: number): Promise<{ ns: number; replyBytes: number }> {
      const read = Buffer.from(COMMANDS[test]!.repeat(P));
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

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const here = fileURLToPath(new URL('../..', import.meta.url));
const sides = [await side(here)];
if (values.against !== undefined) sides.push(await side(resolvePath(values.against)));

const slices = Math.max(1, Math.round(N / P / READS_PER_SLICE));
for (const test of values.test.split(',')) {
  if (COMMANDS[test] === undefined) throw new Error(`--test: no test '${test}' (get, set, ping, incr)`);
  // Warm-up (the JIT; GET then finds SET's key when SET ran before it).
  for (const s of sides) await s.run(test, 4 * READS_PER_SLICE);
  const ns: number[][] = sides.map(() => []);
  const ratios: number[] = [];
  for (let k = 0; k < slices; k++) {
    // Alternate which goes first, so neither always follows the other's garbage.
    const order = sides.length === 1 ? [0] : k % 2 === 0 ? [0, 1] : [1, 0];
    const pair: number[] = [];
    for (const i of order) {
      const r = await sides[i]!.run(test, READS_PER_SLICE);
      const expected = REPLY_BYTES[test]!;
      if (expected.length > 0 && !expected.includes(r.replyBytes)) throw new Error(`${test}: ${r.replyBytes} reply bytes per command from ${sides[i]!.root}, expected ${expected.join(' or ')}`);
      ns[i]!.push(r.ns);
      pair[i] = r.ns;
    }
    if (sides.length === 2) ratios.push(pair[0]! / pair[1]!);
  }
  const line: Record<string, unknown> = { test, workers: Number(values.workers), pipeline: P, nsPerCommand: Math.round(median(ns[0]!)) };
  if (sides.length === 2) {
    line.againstNsPerCommand = Math.round(median(ns[1]!));
    line.medianRatio = Number(median(ratios).toFixed(3));
    line.ratioRange = [Number(Math.min(...ratios).toFixed(3)), Number(Math.max(...ratios).toFixed(3))];
  }
  console.log(JSON.stringify(line));
}
for (const s of sides) await s.close();
