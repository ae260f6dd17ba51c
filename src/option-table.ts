import { availableParallelism } from 'node:os';
import { resolveLengthOptions } from './framing/length.js';
import { HOLD_BELOW_MS, HOLD_WINDOW_MS } from './dispatch/work-queue.js';

/**
 * Every option of shoal, once: createServer(), listen() and `shoal start`.
 *
 * From this table come DEFAULTS, the validation in resolveOptions() (src/options.ts),
 * the types ServerOptions / ResolvedOptions, the flags of `shoal start`, its `--help`
 * text with the real defaults (src/cli/start.ts), and the options handed to the pool
 * (`pool: true`). test/option-table.test.ts checks that every entry has a flag and that
 * `--help` prints the default the code really uses.
 *
 * Adding an option is one entry here, then the code that reads it:
 *
 *     // ms a connection may live before it is drained; 0 = off
 *     maxConnectionAge: { kind: 'duration', default: 0, min: 0, group: 'budgets',
 *                         help: 'drain a connection this old, 0 = off' },
 *
 * - `kind` says how the value is validated and how its flag is parsed: `int`, `size`
 *   (flag takes 64KiB, 1MiB), `duration` (ms; flag takes 500ms, 10s, 5m), `choice`
 *   (`choices`), `bool` (a flag without value), `bytes` (a Uint8Array or null; flag text
 *   with \n \r \0 \xNN escapes), `text`. `min`/`max` bound the numbers.
 * - `flag` defaults to the kebab-case key (`maxConnectionAge` -> `--max-connection-age`);
 *   `arg` is what --help shows after it (default by kind).
 * - `cliDefault` when `shoal start` defaults differently from the library (say why);
 *   `defaultText` when the default is not a plain value (printed in --help as is).
 * - `scope`: 'server' (a createServer() option, the default), 'listen' (a listen()
 *   option) or 'cli' (a flag only). `pool: true` also hands it to the worker pool.
 * - Options that are objects (framing, admin, routing, handler, logger) are `custom`:
 *   their flags are listed in `subFlags`; resolveOptions() and the CLI each have one
 *   function per custom option (the compiler checks none is missing).
 */

/** The --help sections, in print order. */
export const GROUPS = {
  server: 'Server',
  framing: 'Framing (default: length, a 4-byte big-endian length then the body)',
  budgets: 'Budgets (sizes like 64KiB, durations like 500ms, 10s, 5m)',
  shutdown: 'Shutdown and connection lifetime',
  pool: 'Worker pool',
  edge: 'TLS and PROXY protocol (off unless --tls-cert / --proxy-protocol is given)',
  admin: 'Admin HTTP server (off unless --admin-port is given)',
  development: 'Development',
  logging: 'Logging',
} as const;
export type Group = keyof typeof GROUPS;

interface Common {
  group: Group;
  /** One line for --help (README says more). */
  help: string;
  flag?: string;
  arg?: string;
  defaultText?: string;
  scope?: 'server' | 'listen' | 'cli';
  pool?: true;
}
export interface NumberDef extends Common {
  kind: 'int' | 'size' | 'duration';
  default: number;
  cliDefault?: number;
  min: number;
  max?: number;
}
export interface ChoiceDef extends Common {
  kind: 'choice';
  choices: readonly string[];
  default: string;
}
export interface BoolDef extends Common {
  kind: 'bool';
  default: boolean;
}
export interface BytesDef extends Common {
  kind: 'bytes';
  default: null;
}
export interface TextDef extends Common {
  kind: 'text';
  default: string;
  cliDefault?: string;
}
/** A flag of a custom option (e.g. --length-field-offset of framing). */
export interface SubFlag {
  flag: string;
  arg?: string;
  boolean?: true;
  help: string;
  defaultText?: string;
}
export interface CustomDef extends Common {
  kind: 'custom';
  /** Absent: the option has no flag; then `noFlag` says why. */
  subFlags?: readonly SubFlag[];
  noFlag?: string;
}
export type OptionDef = NumberDef | ChoiceDef | BoolDef | BytesDef | TextDef | CustomDef;

/** The length framing's own defaults (src/framing/length.ts owns them), for --help. */
const LENGTH = resolveLengthOptions({ type: 'length' }, 1024);

/** The admin server's defaults (admin.port has none: giving it turns the server on). */
export const ADMIN_DEFAULTS = Object.freeze({ host: '127.0.0.1', allowPublic: false, metrics: true });

/** PROXY protocol defaults (proxyProtocol.mode and .trusted have none: giving them turns it on). */
export const PROXY_DEFAULTS = Object.freeze({ headerTimeout: 5_000 }); // ms for a trusted proxy's whole header

const KiB = 1024;
const MiB = 1024 * 1024;

export const OPTIONS = {
  // ---- server ----------------------------------------------------------------
  handler: {
    kind: 'custom', group: 'server', help: 'handler module (ESM, CommonJS, or TypeScript through tsx) (required)',
    subFlags: [{ flag: 'handler', arg: '<path>', help: 'handler module: ESM, CommonJS, or TypeScript .ts/.mts/.cts through tsx (npm install tsx) (required)' }],
  },
  host: {
    kind: 'text', scope: 'listen', group: 'server', arg: '<addr>', help: 'address to bind',
    default: '127.0.0.1', // listen(): loopback unless told otherwise
    cliDefault: '0.0.0.0', // a standalone server is there to be reached
  },
  port: {
    kind: 'int', scope: 'listen', group: 'server', help: 'port to bind; 0 = any free port', min: 0, max: 65535,
    default: 0, // listen(): any free port (tests, embedding)
    cliDefault: 8000,
  },
  workers: {
    kind: 'int', group: 'server', pool: true, help: 'worker threads; 0 = run handlers on the main thread', min: 0, max: 1024,
    default: availableParallelism(),
    defaultText: `available parallelism, ${availableParallelism()} here`,
  },
  codec: {
    kind: 'choice', group: 'server', arg: '<raw|utf8|json|resp>', help: "what handlers see and return; a module's `codec` export sets it too",
    choices: ['raw', 'utf8', 'json', 'resp'], default: 'raw',
  },
  routing: {
    kind: 'custom', group: 'server', help: 'route by a message id to the module routes',
    subFlags: [{ flag: 'routing', arg: '<2|4>', help: "route by a 2- or 4-byte message id to the module's routes" }],
  },
  onHandlerError: {
    kind: 'choice', group: 'server', pool: true, arg: '<p>', help: 'close | error-frame | drop',
    choices: ['close', 'error-frame', 'drop'], default: 'close',
  },

  // ---- framing ---------------------------------------------------------------
  framing: {
    kind: 'custom', group: 'framing', help: 'how bytes are cut into frames',
    subFlags: [
      { flag: 'framing', arg: '<type>', help: 'length | line | delimiter | fixed | raw | resp', defaultText: 'length' },
      { flag: 'length-field-offset', arg: '<n>', help: 'length: bytes before the length field', defaultText: String(LENGTH.lengthFieldOffset) },
      { flag: 'length-field-length', arg: '<n>', help: 'length: 1, 2, 3, 4 or 8', defaultText: String(LENGTH.lengthFieldLength) },
      { flag: 'byte-order', arg: '<be|le>', help: 'length: byte order of the field', defaultText: LENGTH.byteOrder },
      { flag: 'length-adjustment', arg: '<n>', help: 'length: added to the field to get the bytes after it', defaultText: String(LENGTH.lengthAdjustment) },
      { flag: 'strip', arg: '<n>', help: 'length: bytes stripped from the front', defaultText: 'the header' },
      { flag: 'delimiter', arg: '<text>', help: 'delimiter: the bytes ending a frame (escapes: \\n \\r \\0 \\xNN)' },
      { flag: 'frame-length', arg: '<n>', help: 'fixed: the size of every frame' },
      { flag: 'eol', arg: '<lf|crlf>', help: 'line: what replies end with', defaultText: 'lf' },
    ],
  },
  // 1 MiB of body plus the default 4-byte length header: the bench protocol's "default 1 MiB" is LEN.
  maxFrame: { kind: 'size', group: 'framing', help: 'largest frame, header included', default: 1 * MiB + 4, min: 1, max: 2 ** 31 - 1 },

  // ---- budgets ---------------------------------------------------------------
  maxConnections: { kind: 'int', group: 'budgets', help: 'open connections; more are accepted and closed at once', default: 10_000, min: 1 },
  maxConnectionsPerIp: { kind: 'int', group: 'budgets', help: 'open connections per remote address, 0 = off', default: 0, min: 0 },
  // Node's 511 overflowed on connection bursts; the kernel clamps it by net.core.somaxconn.
  backlog: { kind: 'int', group: 'budgets', help: 'kernel accept queue, clamped by somaxconn', default: 4096, min: 1, max: 65535 },
  // x maxFrame bounds one connection's memory.
  maxInFlightPerConnection: { kind: 'int', group: 'budgets', flag: 'max-in-flight', help: 'frames read and not yet answered, per connection', default: 256, min: 1 },
  sendHighWater: { kind: 'size', group: 'budgets', help: 'queued reply bytes that pause reading a connection', default: 1 * MiB, min: 1 },
  sendLowWater: { kind: 'size', group: 'budgets', help: 'queued reply bytes that resume it', default: 256 * KiB, min: 0 },
  sendTimeout: { kind: 'duration', group: 'budgets', help: 'cut a peer above the high water mark this long, 0 = off', default: 30_000, min: 0 },
  // Pushes (broadcasts to a group) are not bounded by what the peer itself sends, as replies
  // are by maxInFlight: a member that stops reading is cut here, before sendTimeout, so a
  // fast broadcaster cannot grow its queue without bound. 16 x the high water mark.
  sendQueueLimit: {
    kind: 'size', group: 'budgets', help: 'queued bytes past which a push cuts a connection (SHOAL_SEND_QUEUE_FULL)', min: 1,
    default: 16 * MiB, defaultText: '16MiB, or 16 x --send-high-water if more',
  },
  idleTimeout: {
    kind: 'duration', group: 'budgets', help: 'close a silent connection with nothing in flight, 0 = off',
    default: 0, // as net.Server
    cliDefault: 5 * 60_000, // a standalone server should not keep dead peers forever
    min: 0,
  },
  handlerTimeout: { kind: 'duration', group: 'budgets', pool: true, help: 'replace a worker whose handler runs this long, 0 = off', default: 0, min: 0 },
  maxPendingFrames: { kind: 'int', group: 'budgets', pool: true, flag: 'max-pending', help: 'frames waiting for the pool before all reading pauses', default: 65_536, min: 1 },
  maxPendingBytes: { kind: 'size', group: 'budgets', pool: true, help: 'bytes of frames waiting for the pool before all reading pauses', default: 64 * MiB, min: 1 },

  // ---- shutdown and connection lifetime ----------------------------------------
  // Readiness (/readyz) turns false at once, but the listener stays open this long, so a
  // balancer polling readiness moves new connections away before they would be refused.
  lameDuck: { kind: 'duration', group: 'shutdown', help: 'on shutdown, answer /readyz 503 but keep accepting this long before draining', default: 0, min: 0 },
  drainTimeout: { kind: 'duration', group: 'shutdown', help: 'graceful shutdown deadline, counted after the lame duck', default: 10_000, min: 0 },
  // gRPC's MAX_CONNECTION_AGE: after a deploy, long-lived connections re-spread over the
  // instances behind a balancer. Jittered per connection so a fleet does not reconnect at once.
  maxConnectionAge: {
    kind: 'duration', group: 'shutdown', default: 0, min: 0,
    help: 'a connection this old (+-10% jitter) gets the going-away frame or an orderly drain close, 0 = off',
  },
  maxConnectionAgeGrace: {
    kind: 'duration', group: 'shutdown', default: 10_000, min: 0,
    help: 'after maxConnectionAge, a connection still open this long is destroyed',
  },
  goAway: {
    kind: 'bytes', group: 'shutdown', arg: '<text>', default: null, defaultText: 'none',
    help: 'bytes sent to every connection when shutdown begins (escapes as --delimiter); then serve until the peer closes',
  },

  // ---- worker pool -------------------------------------------------------------
  offload: {
    kind: 'choice', group: 'pool', pool: true, arg: '<mode>', choices: ['auto', 'always', 'never'], default: 'auto',
    help: 'auto: kinds of message cheaper than a thread hop run inline, measured | always: every message to the pool | never: all inline',
  },
  affinity: {
    kind: 'choice', group: 'pool', pool: true, arg: '<mode>', choices: ['none', 'connection'], default: 'none',
    help: "connection: each connection's messages run on one worker, one at a time, in order (worker-local session state) | none: any free worker (a module's affinityKey() export shards by key)",
  },
  // Trades HOLD_WINDOW_MS + HOLD_BELOW_MS at most on one reply for one main-thread wake-up per several (work-queue.ts).
  replyHold: {
    kind: 'choice', group: 'pool', pool: true, arg: '<mode>', choices: ['auto', 'off'], default: 'auto',
    help: `auto: a worker holds a published reply's wake-up while it runs a next message measured under ${HOLD_BELOW_MS} ms, for ${HOLD_WINDOW_MS} ms at most, so several replies leave in one wake-up and one write | off: each reply wakes the main thread at once`,
  },
  startupTimeout: { kind: 'duration', group: 'pool', pool: true, help: 'every worker must load the handler and run setup() within this', default: 30_000, min: 1 },
  atomics: {
    kind: 'choice', group: 'pool', pool: true, arg: '<mode>', choices: ['sync', 'async'], default: 'sync',
    help: 'how an idle worker waits: sync (Atomics.wait, the fastest wake-up) | async (its event loop keeps turning)',
  },

  // ---- TLS and PROXY protocol (src/edge/) ---------------------------------------
  tls: {
    kind: 'custom', group: 'edge', help: 'TLS on the listener',
    subFlags: [
      { flag: 'tls-cert', arg: '<file>', help: 'serve TLS with this PEM certificate (chain); SIGHUP re-reads it' },
      { flag: 'tls-key', arg: '<file>', help: 'the PEM private key of --tls-cert; SIGHUP re-reads it' },
      { flag: 'tls-ca', arg: '<file>', help: 'PEM CAs that client certificates must chain to' },
      { flag: 'tls-request-cert', boolean: true, help: 'require a client certificate signed by --tls-ca' },
    ],
  },
  // Cuts handshake slowloris: a peer that opens TCP and never finishes the handshake.
  tlsHandshakeTimeout: { kind: 'duration', group: 'edge', help: 'close a connection whose TLS handshake takes this long, 0 = off', default: 10_000, min: 0 },
  proxyProtocol: {
    kind: 'custom', group: 'edge', help: 'PROXY protocol from trusted proxies',
    subFlags: [
      { flag: 'proxy-protocol', arg: '<v1|v2|any>', help: 'read a PROXY protocol header (HAProxy send-proxy / send-proxy-v2) from --trusted-proxy peers' },
      { flag: 'trusted-proxy', arg: '<cidr,...>', help: 'addresses or CIDR blocks allowed (and required) to send the header; a header from any other is refused' },
      { flag: 'proxy-header-timeout', arg: '<dur>', help: 'a trusted proxy must send its whole header within this', defaultText: `${PROXY_DEFAULTS.headerTimeout / 1000}s` },
    ],
  },

  // ---- admin -------------------------------------------------------------------
  admin: {
    kind: 'custom', group: 'admin', help: 'the admin HTTP server',
    subFlags: [
      { flag: 'admin-port', arg: '<n>', help: 'serve /metrics, /healthz, /readyz, /debug/{stats,profile,heap}' },
      { flag: 'admin-host', arg: '<addr>', help: 'address to bind; loopback only unless --admin-allow-public (it serves heap snapshots and profiles)', defaultText: ADMIN_DEFAULTS.host },
      { flag: 'admin-allow-public', boolean: true, help: 'allow a non-loopback --admin-host (e.g. 0.0.0.0 in a container)' },
      { flag: 'admin-metrics', arg: '<on|off>', help: 'measure handler durations and pool waits in the workers for /metrics', defaultText: ADMIN_DEFAULTS.metrics ? 'on' : 'off' },
    ],
  },

  // ---- development ---------------------------------------------------------------
  watch: {
    kind: 'bool', scope: 'cli', group: 'development', default: false,
    help: 'reload the handler (as SIGHUP does) when a source file under its directory changes (node_modules and dist ignored)',
  },

  // ---- logging -----------------------------------------------------------------
  logger: { kind: 'custom', group: 'logging', help: 'a pino-compatible logger', noFlag: 'an object: the CLI makes a pino logger at --log-level' },
  logLevel: {
    kind: 'choice', scope: 'cli', group: 'logging', arg: '<level>', help: 'fatal | error | warn | info | debug | trace | silent',
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info',
  },
  logFormat: {
    kind: 'choice', scope: 'cli', group: 'logging', arg: '<format>',
    help: 'auto | pretty | json: auto is short human lines on a terminal, JSON lines otherwise',
    choices: ['auto', 'pretty', 'json'], default: 'auto',
  },
} as const satisfies Record<string, OptionDef>;

export type OptionTable = typeof OPTIONS;
export type OptionKey = keyof OptionTable;
type Def<K extends OptionKey> = OptionTable[K];

/** The value type of a plain (non-custom) entry. */
export type ValueOf<D> = D extends { kind: 'int' | 'size' | 'duration' }
  ? number
  : D extends { kind: 'choice'; choices: readonly (infer C)[] }
    ? C
    : D extends { kind: 'bool' }
      ? boolean
      : D extends { kind: 'bytes' }
        ? Uint8Array | null
        : D extends { kind: 'text' }
          ? string
          : never;

type ScopeOf<D> = D extends { scope: infer S } ? S : 'server';
/** Plain entries of createServer(): validated and defaulted by kind. */
export type PlainServerKey = { [K in OptionKey]: Def<K> extends { kind: 'custom' } ? never : ScopeOf<Def<K>> extends 'server' ? K : never }[OptionKey];
/** Custom entries (objects): each has its own resolver in options.ts. */
export type CustomKey = { [K in OptionKey]: Def<K> extends { kind: 'custom' } ? K : never }[OptionKey];
export type PoolKey = { [K in OptionKey]: Def<K> extends { pool: true } ? K : never }[OptionKey];
export type PlainValues = { [K in PlainServerKey]: ValueOf<Def<K>> };

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The flag of a plain entry (without the dashes). */
export function flagOf(key: OptionKey): string {
  const d = OPTIONS[key] as OptionDef;
  return d.flag ?? kebab(key);
}

export const OPTION_KEYS = Object.keys(OPTIONS) as OptionKey[];

/** Keys createServer() accepts. */
export const SERVER_KEYS: readonly OptionKey[] = OPTION_KEYS.filter((k) => ((OPTIONS[k] as OptionDef).scope ?? 'server') === 'server');
export const PLAIN_SERVER_KEYS = SERVER_KEYS.filter((k) => OPTIONS[k].kind !== 'custom') as PlainServerKey[];
export const POOL_KEYS = OPTION_KEYS.filter((k) => (OPTIONS[k] as OptionDef).pool === true) as PoolKey[];

type DefaultOf<K extends OptionKey> = Def<K> extends { default: infer V } ? (V extends number ? number : V) : never;
type Defaults = { readonly [K in OptionKey as Def<K> extends { default: unknown } ? K : never]: DefaultOf<K> };

/** Every plain default, derived from OPTIONS (library values; the CLI's differ where `cliDefault` says). */
export const DEFAULTS: Defaults & { readonly framing: { readonly type: 'length'; readonly lengthFieldLength: 4; readonly byteOrder: 'be' } } =
  Object.freeze({
    ...(Object.fromEntries(OPTION_KEYS.filter((k) => 'default' in OPTIONS[k]).map((k) => [k, (OPTIONS[k] as { default: unknown }).default])) as Defaults),
    framing: Object.freeze({ type: 'length', lengthFieldLength: 4, byteOrder: 'be' } as const),
  });

const SIZE_STEPS: [number, string][] = [[1024 ** 3, 'GiB'], [MiB, 'MiB'], [KiB, 'KiB']];
const DURATION_STEPS: [number, string][] = [[3_600_000, 'h'], [60_000, 'm'], [1000, 's']];

/** A value as its flag would take it (1048576 -> 1MiB, 300000 -> 5m): what --help prints. */
export function formatValue(d: OptionDef, value: unknown): string {
  if (typeof value === 'number' && value > 0 && (d.kind === 'size' || d.kind === 'duration')) {
    for (const [unit, name] of d.kind === 'size' ? SIZE_STEPS : DURATION_STEPS) if (value % unit === 0) return `${value / unit}${name}`;
    return d.kind === 'duration' ? `${value}ms` : String(value);
  }
  return String(value);
}

/** The default --help prints for a plain entry, or null for a flag without one (a boolean). */
export function helpDefault(key: OptionKey): string | null {
  const d = OPTIONS[key] as OptionDef;
  if (d.defaultText !== undefined) return d.defaultText;
  if (d.kind === 'custom' || d.kind === 'bool') return null;
  const value = 'cliDefault' in d && d.cliDefault !== undefined ? d.cliDefault : d.default;
  return formatValue(d, value);
}
