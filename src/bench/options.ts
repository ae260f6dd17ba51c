/**
 * `shoal bench` options: one defaults object, flag mapping, validation.
 *
 * Flags follow autocannon where they mean the same thing (-c, -p, -d, -a, -R, -w, -t,
 * -j, -n); a bare number for a duration means seconds, as in autocannon.
 */
import { DEFAULTS as SERVER_DEFAULTS } from '../options.js';
import { InvalidOptionError } from '../errors.js';
import type { BuiltinFramingOptions } from '../framing/types.js';
import { parseChoice, parseDuration, parseEscapes, parseInteger, parseSize } from '../cli/args.js';
import { parseFlags } from '../cli/start.js';

export type BenchProtocol = 'bench' | 'echo';

export interface BenchOptions {
  host: string;
  port: number;
  /** Concurrent connections (spread over the generator threads). */
  connections: number;
  /** Requests in flight per connection. */
  pipelining: number;
  /** ms of measured load (after the warm-up); ignored when `amount` is set. */
  duration: number;
  /** Total requests to send, then stop; 0 = run for `duration`. */
  amount: number;
  /** Open loop: total requests per second over all connections; 0 = closed loop. */
  rate: number;
  /** Generator threads (worker_threads); 0 = drive the load from the main thread. */
  workers: number;
  /** ms without any reply while requests are in flight before a connection counts them as timeouts. */
  timeout: number;
  /** ms of load before measuring starts. */
  warmup: number;
  /** Payload bytes per request. */
  size: number;
  /** Bench-protocol K (0 = echo; K > 0 = K chained SHA-256 steps per message). */
  iterations: number;
  /** 'bench': [u32 K][payload] bodies (shared/bench-protocol.md); 'echo': the payload alone, echoed. */
  protocol: BenchProtocol;
  framing: BuiltinFramingOptions;
  maxFrame: number;
  /** Speak TLS; `ca` (a PEM file) verifies the server, `insecure` skips verification. */
  tls: { ca: string | null; insecure: boolean } | null;
  json: boolean;
  progress: boolean;
  /** After the server's FIN, re-send the unanswered requests on a new connection (shoal's retry-safe close). */
  reconnect: boolean;
}

export const BENCH_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  connections: 10, // as autocannon
  pipelining: 1, // as autocannon
  duration: 10_000, // ms, as autocannon
  amount: 0, // 0 = off
  rate: 0, // 0 = closed loop
  workers: 0, // 0 = main thread
  timeout: 10_000, // ms, as autocannon
  warmup: 0, // ms
  size: 64, // bytes of payload
  iterations: 0, // bench-protocol K: echo
  maxFrame: SERVER_DEFAULTS.maxFrame, // as the server: 1 MiB of body plus the 4-byte header
});

export const BENCH_HELP = `Usage: shoal bench [options] [HOST:]PORT

Load-test a TCP server speaking the bench protocol ([u32 K][payload], replies
verified byte for byte) or, with --protocol echo, any shoal framing echoing a
raw payload. Durations: a bare number is seconds (autocannon), or 500ms, 10s, 2m.

Load
  -c, --connections <n>     concurrent connections (default ${BENCH_DEFAULTS.connections})
  -p, --pipelining <n>      requests in flight per connection (default ${BENCH_DEFAULTS.pipelining})
  -d, --duration <dur>      measured time (default 10)
  -a, --amount <n>          send this many requests in total, then stop (overrides -d)
  -R, --rate <n>            open loop: this many requests/s in total; latency counts from
                            the intended send time (coordinated omission corrected)
  -w, --workers <n>         generator threads (default 0: the main thread)
  -t, --timeout <dur>       a connection with requests in flight and no reply for this
                            long counts them as timeouts and reconnects (default 10)
      --warmup <dur>        load before measuring starts (default 0)
      --reconnect           after the server closes a connection in order (FIN), re-send
                            its unanswered requests on a new one: a shoal server answers
                            all it read before a FIN (rolling restarts, max age); they are
                            counted as re-sent, their replies verified. A reset still loses
                            them (outcome unknown)

Message
  -s, --size <size>         payload bytes (default ${BENCH_DEFAULTS.size}; 16KiB, 1k ...)
  -k, --iterations <n>      bench-protocol K: 0 = echo, K = K chained SHA-256 (default 0)
      --protocol <p>        bench | echo (default bench for length framing, else echo)
      --framing <type>      length | line | delimiter | fixed | raw (default length)
      --length-field-length <n>  length: 1, 2, 3, 4 or 8 (default 4)
      --byte-order <be|le>  length: byte order (default be)
      --delimiter <text>    delimiter: bytes ending a frame (escapes: \\n \\r \\0 \\xNN)
      --frame-length <n>    fixed: frame size (default: --size)
      --eol <lf|crlf>       line: what requests end with (default lf)
      --max-frame <size>    largest reply accepted (default 1MiB of body + its 4-byte header)

TLS
      --tls                 connect with TLS (the handshake is not timed; replies are)
      --ca <file>           PEM CA that the server's certificate must chain to
                            (default: the system's CAs)
      --insecure            do not verify the server's certificate (self-signed tests)

Output
  -j, --json                print one JSON object instead of tables
  -n, --no-progress         no progress bar
  -h, --help                this help

Exit status: 0 when every reply arrived and matched; 1 on any mismatch, timeout,
reset or connect error; 2 on bad flags.

Examples
  shoal bench -c 64 -p 16 -d 5 8000
  shoal bench -c 16 -p 4 -k 1100 -d 10 127.0.0.1:8000
  shoal bench -c 64 -p 16 -R 20000 -d 10 8000
`;

const FLAGS = {
  connections: { type: 'string', short: 'c' },
  pipelining: { type: 'string', short: 'p' },
  duration: { type: 'string', short: 'd' },
  amount: { type: 'string', short: 'a' },
  rate: { type: 'string', short: 'R' },
  workers: { type: 'string', short: 'w' },
  timeout: { type: 'string', short: 't' },
  warmup: { type: 'string' },
  size: { type: 'string', short: 's' },
  iterations: { type: 'string', short: 'k' },
  protocol: { type: 'string' },
  framing: { type: 'string' },
  'length-field-length': { type: 'string' },
  'byte-order': { type: 'string' },
  delimiter: { type: 'string' },
  'frame-length': { type: 'string' },
  eol: { type: 'string' },
  'max-frame': { type: 'string' },
  tls: { type: 'boolean' },
  ca: { type: 'string' },
  insecure: { type: 'boolean' },
  json: { type: 'boolean', short: 'j' },
  'no-progress': { type: 'boolean', short: 'n' },
  reconnect: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** autocannon: `-d 10` is ten seconds; units are accepted too ("500ms", "2m"). */
export function parseSeconds(flag: string, value: string): number {
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000);
  return parseDuration(flag, value);
}

/** "8000", ":8000", "host:8000", "[::1]:8000". */
/** HOST:PORT as a user writes it, an IPv6 host in brackets (the inverse of parseTarget). */
export function formatTarget(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function parseTarget(value: string): { host: string; port: number } {
  const m = /^(?:(?:\[([^\]]+)\]|([^:[\]]*)):)?(\d+)$/.exec(value.trim());
  if (!m) throw new InvalidOptionError(`target must be [HOST:]PORT (got '${value}')`);
  const host = m[1] ?? (m[2] || BENCH_DEFAULTS.host);
  const port = parseInteger('port', m[3]!, 1, 65535);
  return { host, port };
}

export function parseBenchArgs(argv: string[]): { help: true } | { help: false; options: BenchOptions } {
  const { values: v, positionals } = parseFlags(argv, FLAGS);
  if (v.help) return { help: true };
  if (positionals.length !== 1) {
    throw new InvalidOptionError(`expected one target [HOST:]PORT, got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`);
  }
  const s = (name: string): string | undefined => v[name] as string | undefined;
  const { host, port } = parseTarget(positionals[0]!);
  const maxFrame = s('max-frame') !== undefined ? parseSize('max-frame', s('max-frame')!) : BENCH_DEFAULTS.maxFrame;
  const type = parseChoice('framing', s('framing') ?? 'length', ['length', 'line', 'delimiter', 'fixed', 'raw'] as const);
  let size = s('size') !== undefined ? parseSize('size', s('size')!) : BENCH_DEFAULTS.size;
  let framing: BuiltinFramingOptions;
  switch (type) {
    case 'length':
      framing = {
        type,
        lengthFieldLength: parseInteger('length-field-length', s('length-field-length') ?? '4', 1, 8) as 1 | 2 | 3 | 4 | 8,
        byteOrder: parseChoice('byte-order', s('byte-order') ?? 'be', ['be', 'le'] as const),
      };
      break;
    case 'line':
      framing = { type, eol: parseChoice('eol', s('eol') ?? 'lf', ['lf', 'crlf'] as const) === 'crlf' ? '\r\n' : '\n' };
      break;
    case 'delimiter':
      if (!s('delimiter')) throw new InvalidOptionError('--framing delimiter needs --delimiter <text>');
      framing = { type, delimiter: parseEscapes(s('delimiter')!) };
      break;
    case 'fixed': {
      const frameLength = s('frame-length') !== undefined ? parseInteger('frame-length', s('frame-length')!, 1) : size;
      if (s('size') !== undefined && frameLength !== size) {
        throw new InvalidOptionError(`--framing fixed: --size (${size}) must equal --frame-length (${frameLength})`);
      }
      size = frameLength;
      framing = { type, frameLength };
      break;
    }
    case 'raw':
      framing = { type };
      break;
  }
  if (!v.tls && (s('ca') !== undefined || v.insecure)) throw new InvalidOptionError('--ca and --insecure need --tls');
  if (s('ca') !== undefined && v.insecure) throw new InvalidOptionError('--ca and --insecure exclude each other: verify against the CA, or not at all');
  const protocol = parseChoice('protocol', s('protocol') ?? (type === 'length' ? 'bench' : 'echo'), ['bench', 'echo'] as const);
  const options: BenchOptions = {
    host,
    port,
    connections: s('connections') !== undefined ? parseInteger('connections', s('connections')!, 1, 100_000) : BENCH_DEFAULTS.connections,
    pipelining: s('pipelining') !== undefined ? parseInteger('pipelining', s('pipelining')!, 1, 65_536) : BENCH_DEFAULTS.pipelining,
    duration: s('duration') !== undefined ? parseSeconds('duration', s('duration')!) : BENCH_DEFAULTS.duration,
    amount: s('amount') !== undefined ? parseInteger('amount', s('amount')!, 1) : BENCH_DEFAULTS.amount,
    rate: s('rate') !== undefined ? parseInteger('rate', s('rate')!, 1) : BENCH_DEFAULTS.rate,
    workers: s('workers') !== undefined ? parseInteger('workers', s('workers')!, 0, 256) : BENCH_DEFAULTS.workers,
    timeout: s('timeout') !== undefined ? parseSeconds('timeout', s('timeout')!) : BENCH_DEFAULTS.timeout,
    warmup: s('warmup') !== undefined ? parseSeconds('warmup', s('warmup')!) : BENCH_DEFAULTS.warmup,
    size,
    iterations: s('iterations') !== undefined ? parseInteger('iterations', s('iterations')!, 0, 0xffffffff) : BENCH_DEFAULTS.iterations,
    protocol,
    framing,
    maxFrame,
    tls: v.tls ? { ca: s('ca') ?? null, insecure: v.insecure === true } : null,
    json: v.json === true,
    progress: v['no-progress'] !== true,
    reconnect: v.reconnect === true,
  };
  return { help: false, options: validateBenchOptions(options) };
}

/** Defaults merged and cross-field checks done once; used by the CLI and by runBench(). */
export function validateBenchOptions(partial: Partial<BenchOptions> & { port: number }): BenchOptions {
  const o: BenchOptions = {
    ...BENCH_DEFAULTS,
    protocol: partial.framing && partial.framing.type !== 'length' ? 'echo' : 'bench',
    framing: { type: 'length' },
    tls: null,
    json: false,
    progress: false,
    reconnect: false,
    ...partial,
  };
  const int = (name: keyof BenchOptions, min: number): void => {
    const value = o[name] as number;
    if (!Number.isInteger(value) || value < min) throw new InvalidOptionError(`${name} must be an integer >= ${min} (got ${value})`);
  };
  int('port', 1);
  int('connections', 1);
  int('pipelining', 1);
  int('duration', 1);
  int('amount', 0);
  int('rate', 0);
  int('workers', 0);
  int('timeout', 1);
  int('warmup', 0);
  int('size', 0);
  int('iterations', 0);
  if (o.workers > o.connections) {
    throw new InvalidOptionError(`--workers (${o.workers}) must not exceed --connections (${o.connections}): each thread drives its own connections`);
  }
  if (o.amount > 0 && o.warmup > 0) throw new InvalidOptionError('--warmup applies to timed runs, not to --amount');
  if (o.protocol === 'bench' && o.framing.type !== 'length') {
    throw new InvalidOptionError(`the bench protocol needs length framing (replies differ in size from requests); use --protocol echo with --framing ${o.framing.type}`);
  }
  if (o.protocol === 'echo' && o.iterations > 0) throw new InvalidOptionError('--iterations needs --protocol bench');
  if (o.protocol === 'echo' && o.size === 0) throw new InvalidOptionError('--protocol echo needs --size >= 1');
  return o;
}
