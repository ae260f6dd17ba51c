import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidOptionError } from './errors.js';
import { createFraming, isFraming } from './framing/index.js';
import type { BuiltinFramingOptions, Framing } from './framing/index.js';

/**
 * The one place for defaults, used by createServer() and the CLI alike.
 * Every budget is finite: no Infinity anywhere (an unbounded default is a memory leak
 * waiting for a hostile peer).
 */
export const DEFAULTS = Object.freeze({
  host: '0.0.0.0',
  port: 8000,
  framing: Object.freeze({ type: 'length', lengthFieldLength: 4, byteOrder: 'be' }) as BuiltinFramingOptions,
  codec: 'raw' as Codec,
  onHandlerError: 'close' as ErrorPolicy,
  maxFrame: 1024 * 1024, // 1 MiB, whole frame on the wire (header included)
  maxInFlightPerConnection: 256, // frames read and not yet answered, per connection (x maxFrame bounds its memory)
  sendHighWater: 1024 * 1024, // 1 MiB queued for one peer: stop reading from it
  sendLowWater: 256 * 1024, // 256 KiB: resume reading
  maxPendingFrames: 65_536, // frames waiting for the pool (all connections): pause all reading
  maxPendingBytes: 64 * 1024 * 1024, // 64 MiB of frames waiting for the pool
  batchMaxFrames: 512, // frames in one pool task
  batchMaxBytes: 1024 * 1024, // 1 MiB of frames in one pool task
  tasksPerWorker: 2, // batches in flight per worker: one running, one ready to start
  drainTimeout: 10_000, // ms allowed for graceful shutdown before sockets are destroyed
  sendTimeout: 30_000, // ms a peer may stay above the high water mark before it is cut
  idleTimeout: 0, // ms of silence before closing a connection; 0 = off (as net.Server)
  handlerTimeout: 0, // ms one message may run in a worker; 0 = off
  maxConnections: 10_000, // open connections; beyond it new ones are closed at once
  maxConnectionsPerIp: 0, // 0 = off
  startupTimeout: 30_000, // ms for every worker to load the handler and run setup()
  backlog: 4096, // kernel accept queue (clamped by net.core.somaxconn); Node's 511 overflowed on bursts
  atomics: 'sync' as 'sync' | 'async' | 'disabled',
  adminHost: '127.0.0.1', // the admin HTTP server (off unless admin.port is set) binds loopback only by default
});

export type Codec = 'raw' | 'utf8' | 'json';
export type ErrorPolicy = 'close' | 'error-frame' | 'drop';

export interface Logger {
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
  child?(bindings: Record<string, unknown>): Logger;
}

export interface RoutingOptions {
  /** Size of the big-endian message id in front of every body: 2 or 4 bytes (zinx uses 4). */
  idBytes?: 2 | 4;
}

/**
 * The admin HTTP server: /metrics, /healthz, /readyz, /debug/*. Off unless set.
 * It serves heap snapshots and CPU profiles of the live process: keep it private.
 */
export interface AdminOptions {
  /** TCP port (0: any free port). */
  port: number;
  /** Address to bind. Default 127.0.0.1; a non-loopback address needs allowPublic. */
  host?: string;
  /** Allow a non-loopback host (e.g. 0.0.0.0 in a container whose port is not published). Default false. */
  allowPublic?: boolean;
  /** Measure handler durations and pool waits in the workers for /metrics. Default true. */
  metrics?: boolean;
}

export interface ResolvedAdminOptions {
  port: number;
  host: string;
  allowPublic: boolean;
  metrics: boolean;
}

export interface ServerOptions {
  /** The handler module: a path (relative to the current directory) or a file URL. Required. */
  handler: string | URL;
  /** Worker threads; 0 runs handlers inline on the main thread. Default: available parallelism. */
  workers?: number;
  /** A built-in framing by options, or a user framing object ({ createDecoder(), encoder }). */
  framing?: BuiltinFramingOptions | Framing;
  /** How a handler sees a message and how its return value is packed. Default 'raw'. */
  codec?: Codec;
  /** Route by a message id in front of each body to the handler module's `routes`. Off by default. */
  routing?: RoutingOptions | false;
  /** What a handler error does to its connection: 'close' (default), 'error-frame' or 'drop'. */
  onHandlerError?: ErrorPolicy;
  /** Bytes sent to every connection when shutdown begins (a GOAWAY); then serve until the peer closes. */
  goAway?: Uint8Array | null;
  maxFrame?: number;
  maxInFlightPerConnection?: number;
  sendHighWater?: number;
  sendLowWater?: number;
  maxPendingFrames?: number;
  maxPendingBytes?: number;
  batchMaxFrames?: number;
  batchMaxBytes?: number;
  tasksPerWorker?: number;
  drainTimeout?: number;
  sendTimeout?: number;
  idleTimeout?: number;
  handlerTimeout?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  startupTimeout?: number;
  /** Length of the kernel's accept queue for this listener. Default 4096. */
  backlog?: number;
  atomics?: 'sync' | 'async' | 'disabled';
  /** The admin HTTP server (metrics, health, readiness, profiles); off when absent or null. */
  admin?: AdminOptions | null;
  /** A pino-compatible logger; default: silent. */
  logger?: Logger | null;
}

export interface ResolvedOptions {
  handlerUrl: string;
  workers: number;
  framing: Framing;
  /** Plain framing options when built in (workers then encode replies themselves), else null. */
  framingSpec: BuiltinFramingOptions | null;
  codec: Codec;
  routing: { idBytes: 2 | 4 } | null;
  onHandlerError: ErrorPolicy;
  goAway: Uint8Array | null;
  maxFrame: number;
  maxInFlightPerConnection: number;
  sendHighWater: number;
  sendLowWater: number;
  maxPendingFrames: number;
  maxPendingBytes: number;
  batchMaxFrames: number;
  batchMaxBytes: number;
  tasksPerWorker: number;
  drainTimeout: number;
  sendTimeout: number;
  idleTimeout: number;
  handlerTimeout: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  startupTimeout: number;
  backlog: number;
  atomics: 'sync' | 'async' | 'disabled';
  admin: ResolvedAdminOptions | null;
  logger: Logger;
}

const KNOWN_KEYS = new Set<string>([
  'handler', 'workers', 'framing', 'codec', 'routing', 'onHandlerError', 'goAway', 'logger',
  'maxFrame', 'maxInFlightPerConnection', 'sendHighWater', 'sendLowWater', 'maxPendingFrames',
  'maxPendingBytes', 'batchMaxFrames', 'batchMaxBytes', 'tasksPerWorker', 'drainTimeout',
  'sendTimeout', 'idleTimeout', 'handlerTimeout', 'maxConnections', 'maxConnectionsPerIp',
  'startupTimeout', 'atomics', 'admin', 'backlog',
]);
const ADMIN_KEYS = new Set<string>(['port', 'host', 'allowPublic', 'metrics']);

/** localhost, 127.0.0.0/8, ::1 and ::ffff:127.x: addresses no other machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(h) || /^::ffff:127\./.test(h);
  return false;
}

function resolveAdmin(a: AdminOptions | null | undefined): ResolvedAdminOptions | null {
  if (a === undefined || a === null) return null;
  if (typeof a !== 'object') throw new InvalidOptionError(`admin must be an object like { port: 9090 } or null (got ${JSON.stringify(a)})`);
  for (const key of Object.keys(a)) {
    if (!ADMIN_KEYS.has(key)) throw new InvalidOptionError(`unknown option 'admin.${key}'${suggest(key, ADMIN_KEYS)}`);
  }
  const { port } = a;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidOptionError(`admin.port must be an integer from 0 to 65535 (got ${JSON.stringify(port)})`);
  }
  const host = a.host ?? DEFAULTS.adminHost;
  if (typeof host !== 'string' || host.length === 0) throw new InvalidOptionError(`admin.host must be a non-empty string (got ${JSON.stringify(host)})`);
  const allowPublic = a.allowPublic ?? false;
  const metrics = a.metrics ?? true;
  if (typeof allowPublic !== 'boolean') throw new InvalidOptionError(`admin.allowPublic must be a boolean (got ${JSON.stringify(allowPublic)})`);
  if (typeof metrics !== 'boolean') throw new InvalidOptionError(`admin.metrics must be a boolean (got ${JSON.stringify(metrics)})`);
  if (!allowPublic && !isLoopback(host)) {
    throw new InvalidOptionError(
      `admin.host '${host}' is not a loopback address: the admin server exposes heap snapshots and profiles; ` +
        'bind 127.0.0.1, or set admin.allowPublic: true (CLI: --admin-allow-public) if the network is private',
    );
  }
  return { port, host, allowPublic, metrics };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

/** A logger whose lines carry `bindings`: the logger's child() (pino), or a wrapper when it has none. */
export function childLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  if (logger.child) return logger.child(bindings);
  const bind = (obj: unknown): unknown => (obj !== null && typeof obj === 'object' ? { ...bindings, ...obj } : { ...bindings, msg: obj });
  return {
    debug: (obj, msg) => logger.debug(bind(obj), msg),
    info: (obj, msg) => logger.info(bind(obj), msg),
    warn: (obj, msg) => logger.warn(bind(obj), msg),
    error: (obj, msg) => logger.error(bind(obj), msg),
    child: (more) => childLogger(logger, { ...bindings, ...more }),
  };
}

/** Levenshtein distance, for "did you mean" hints on unknown option names. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

export function suggest(name: string, candidates: Iterable<string>): string {
  let best = '';
  let bestD = Infinity;
  for (const c of candidates) {
    const dd = distance(name.toLowerCase(), c.toLowerCase());
    if (dd < bestD) [best, bestD] = [c, dd];
  }
  return bestD <= Math.max(2, name.length / 3) ? ` (did you mean '${best}'?)` : '';
}

function int(o: ServerOptions, key: keyof typeof DEFAULTS & keyof ServerOptions, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = (o[key] ?? DEFAULTS[key]) as number;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new InvalidOptionError(`${key} must be an integer ${range} (got ${JSON.stringify(v)})`);
  }
  return v;
}

export function resolveHandlerUrl(handler: string | URL): string {
  if (handler instanceof URL) return handler.href;
  if (typeof handler !== 'string' || handler.length === 0) {
    throw new InvalidOptionError('handler is required: a module path or file URL');
  }
  if (handler.startsWith('file:')) return handler;
  return pathToFileURL(isAbsolute(handler) ? handler : resolve(handler)).href;
}

/** Validate, then default, in one block (undici style). Throws InvalidOptionError. */
export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('options must be an object');
  for (const key of Object.keys(o)) {
    if (!KNOWN_KEYS.has(key)) throw new InvalidOptionError(`unknown option '${key}'${suggest(key, KNOWN_KEYS)}`);
  }
  const handlerUrl = resolveHandlerUrl(o.handler);
  const workers = o.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 0 || workers > 1024) {
    throw new InvalidOptionError(`workers must be an integer from 0 to 1024 (got ${JSON.stringify(o.workers)})`);
  }
  const maxFrame = int(o, 'maxFrame', 1, 2 ** 31 - 1);
  const rawFraming = o.framing ?? DEFAULTS.framing;
  let framing: Framing;
  let framingSpec: BuiltinFramingOptions | null;
  if (isFraming(rawFraming)) {
    framing = rawFraming;
    framingSpec = null;
  } else {
    framingSpec = { ...(rawFraming as BuiltinFramingOptions) };
    framing = createFraming(framingSpec, maxFrame);
  }
  const codec = o.codec ?? DEFAULTS.codec;
  if (codec !== 'raw' && codec !== 'utf8' && codec !== 'json') {
    throw new InvalidOptionError(`codec must be 'raw', 'utf8' or 'json' (got ${JSON.stringify(codec)})`);
  }
  let routing: { idBytes: 2 | 4 } | null = null;
  if (o.routing) {
    const idBytes = o.routing.idBytes ?? 4;
    if (idBytes !== 2 && idBytes !== 4) throw new InvalidOptionError(`routing.idBytes must be 2 or 4 (got ${idBytes})`);
    routing = { idBytes };
  }
  const onHandlerError = o.onHandlerError ?? DEFAULTS.onHandlerError;
  if (onHandlerError !== 'close' && onHandlerError !== 'error-frame' && onHandlerError !== 'drop') {
    throw new InvalidOptionError(`onHandlerError must be 'close', 'error-frame' or 'drop' (got ${JSON.stringify(onHandlerError)})`);
  }
  if (o.goAway != null && !(o.goAway instanceof Uint8Array)) throw new InvalidOptionError('goAway must be a Uint8Array or null');
  const atomics = o.atomics ?? DEFAULTS.atomics;
  if (atomics !== 'sync' && atomics !== 'async' && atomics !== 'disabled') {
    throw new InvalidOptionError(`atomics must be 'sync', 'async' or 'disabled' (got ${JSON.stringify(atomics)})`);
  }
  const resolved: ResolvedOptions = {
    handlerUrl,
    workers,
    framing,
    framingSpec,
    codec,
    routing,
    onHandlerError,
    goAway: o.goAway ?? null,
    maxFrame,
    maxInFlightPerConnection: int(o, 'maxInFlightPerConnection', 1),
    sendHighWater: int(o, 'sendHighWater', 1),
    sendLowWater: int(o, 'sendLowWater', 0),
    maxPendingFrames: int(o, 'maxPendingFrames', 1),
    maxPendingBytes: int(o, 'maxPendingBytes', 1),
    batchMaxFrames: int(o, 'batchMaxFrames', 1, 1 << 20),
    batchMaxBytes: int(o, 'batchMaxBytes', 1, 2 ** 31 - 1),
    tasksPerWorker: int(o, 'tasksPerWorker', 1, 64),
    drainTimeout: int(o, 'drainTimeout', 0),
    sendTimeout: int(o, 'sendTimeout', 0),
    idleTimeout: int(o, 'idleTimeout', 0),
    handlerTimeout: int(o, 'handlerTimeout', 0),
    maxConnections: int(o, 'maxConnections', 1),
    maxConnectionsPerIp: int(o, 'maxConnectionsPerIp', 0),
    startupTimeout: int(o, 'startupTimeout', 1),
    backlog: int(o, 'backlog', 1, 65535),
    atomics,
    admin: resolveAdmin(o.admin),
    logger: o.logger ?? silentLogger,
  };
  if (resolved.sendLowWater > resolved.sendHighWater) {
    throw new InvalidOptionError(
      `sendLowWater (${resolved.sendLowWater}) must not exceed sendHighWater (${resolved.sendHighWater})`,
    );
  }
  return resolved;
}
