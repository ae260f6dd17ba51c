import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidOptionError } from './errors.js';
import { ResolvedTls } from './edge/tls.js';
import type { TlsOptions } from './edge/tls.js';
import { parseCidr } from './edge/trusted.js';
import type { ProxyMode } from './edge/proxy-protocol.js';
import { createFraming, isFraming } from './framing/index.js';
import type { BuiltinFramingOptions, Framing } from './framing/index.js';
import { ADMIN_DEFAULTS, DEFAULTS, PROXY_DEFAULTS, OPTIONS, PLAIN_SERVER_KEYS, POOL_KEYS, SERVER_KEYS } from './option-table.js';
import type { OptionDef, PlainServerKey, PlainValues, PoolKey } from './option-table.js';

export { DEFAULTS } from './option-table.js';

/** How a handler sees a message and how its return value is packed: raw bytes, a UTF-8 string, or JSON. */
export type Codec = PlainValues['codec'];
/** What a handler error does to its connection: close it, reply with an error frame, or drop that reply. */
export type ErrorPolicy = PlainValues['onHandlerError'];

/** A pino-compatible logger: shoal logs through these methods only. */
export interface Logger {
  /** Log at debug level. */
  debug(obj: unknown, msg?: string): void;
  /** Log at info level. */
  info(obj: unknown, msg?: string): void;
  /** Log at warn level. */
  warn(obj: unknown, msg?: string): void;
  /** Log at error level. */
  error(obj: unknown, msg?: string): void;
  /** A logger whose lines carry `bindings` (optional: shoal wraps a logger without one). */
  child?(bindings: Record<string, unknown>): Logger;
}

/** Routing by a message id in front of each body, to the handler module's `routes`. */
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

/** The admin options after defaults (server.options.admin). */
export interface ResolvedAdminOptions {
  port: number;
  host: string;
  allowPublic: boolean;
  metrics: boolean;
}

/** createServer() options: the plain ones come from the table (src/option-table.ts), the objects are spelled out. */
export type ServerOptions = {
  /** The handler module: a path (relative to the current directory) or a file URL. Required. */
  handler: string | URL;
  /** A built-in framing by options, or a user framing object ({ createDecoder(), encoder }). */
  framing?: BuiltinFramingOptions | Framing;
  /** Route by a message id in front of each body to the handler module's `routes`. Off by default. */
  routing?: RoutingOptions | false;
  /** The admin HTTP server (metrics, health, readiness, profiles); off when absent or null. */
  admin?: AdminOptions | null;
  /** A pino-compatible logger; default: silent. */
  logger?: Logger | null;
  /** TLS on the listener (cert and key as file paths or PEM); off when absent or null. */
  tls?: TlsOptions | null;
  /** Read a PROXY protocol header from trusted proxies; off when absent or null. */
  proxyProtocol?: ProxyProtocolOptions | null;
} & { [K in PlainServerKey]?: PlainValues[K] };

/** The options after validation and defaults (server.options). */
export type ResolvedOptions = PlainValues & {
  handlerUrl: string;
  /** `codec` was given (not defaulted): the handler module's `codec` export must then agree with it. */
  codecGiven: boolean;
  framing: Framing;
  /** Plain framing options when built in (workers then encode replies themselves), else null. */
  framingSpec: BuiltinFramingOptions | null;
  routing: { idBytes: 2 | 4 } | null;
  admin: ResolvedAdminOptions | null;
  logger: Logger;
  tls: ResolvedTls | null;
  proxyProtocol: ResolvedProxyProtocol | null;
};

/**
 * PROXY protocol (HAProxy): a trusted proxy must send the header, whose client then
 * names the connection; from any other address a header is refused.
 */
export interface ProxyProtocolOptions {
  /** Which versions a trusted proxy may send: 'v1' (text), 'v2' (binary) or 'any'. */
  mode: ProxyMode;
  /** Addresses or CIDR blocks (IPv4, IPv6) allowed to send the header. At least one. */
  trusted: string[];
  /** ms for the whole header to arrive. Default 5 s. */
  headerTimeout?: number;
}

export interface ResolvedProxyProtocol {
  mode: ProxyMode;
  trusted: string[];
  headerTimeout: number;
}

const KNOWN_KEYS: ReadonlySet<string> = new Set<string>(SERVER_KEYS);
const ADMIN_KEYS = new Set<string>(['port', 'host', 'allowPublic', 'metrics']);
const PROXY_KEYS = new Set<string>(['mode', 'trusted', 'headerTimeout']);

function resolveProxyProtocol(p: ProxyProtocolOptions | null | undefined): ResolvedProxyProtocol | null {
  if (p === undefined || p === null) return null;
  if (typeof p !== 'object') throw new InvalidOptionError(`proxyProtocol must be an object like { mode: 'v2', trusted: ['10.0.0.0/8'] } or null`);
  for (const key of Object.keys(p)) {
    if (!PROXY_KEYS.has(key)) throw new InvalidOptionError(`unknown option 'proxyProtocol.${key}'${suggest(key, PROXY_KEYS)}`);
  }
  const { mode } = p;
  if (mode !== 'v1' && mode !== 'v2' && mode !== 'any') throw new InvalidOptionError(`proxyProtocol.mode must be 'v1', 'v2' or 'any' (got ${JSON.stringify(mode)})`);
  if (!Array.isArray(p.trusted) || p.trusted.length === 0) {
    throw new InvalidOptionError("proxyProtocol.trusted must list the proxies allowed to send a header (addresses or CIDR blocks, e.g. ['10.0.0.0/8'])");
  }
  for (const c of p.trusted) parseCidr(c);
  const headerTimeout = p.headerTimeout ?? PROXY_DEFAULTS.headerTimeout;
  if (!Number.isInteger(headerTimeout) || headerTimeout < 1) {
    throw new InvalidOptionError(`proxyProtocol.headerTimeout must be an integer >= 1 (ms) (got ${JSON.stringify(headerTimeout)})`);
  }
  return { mode, trusted: [...p.trusted], headerTimeout };
}

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
  const host = a.host ?? ADMIN_DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0) throw new InvalidOptionError(`admin.host must be a non-empty string (got ${JSON.stringify(host)})`);
  const allowPublic = a.allowPublic ?? ADMIN_DEFAULTS.allowPublic;
  const metrics = a.metrics ?? ADMIN_DEFAULTS.metrics;
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

/** Check one plain option against its table entry; `name` is how errors call it (the key, or --flag). */
export function checkValue(name: string, d: OptionDef, v: unknown): unknown {
  switch (d.kind) {
    case 'int':
    case 'size':
    case 'duration': {
      const max = d.max ?? Number.MAX_SAFE_INTEGER;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < d.min || v > max) {
        const range = max === Number.MAX_SAFE_INTEGER ? `>= ${d.min}` : `from ${d.min} to ${max}`;
        throw new InvalidOptionError(`${name} must be an integer ${range} (got ${JSON.stringify(v)})`);
      }
      return v;
    }
    case 'choice':
      if (!d.choices.includes(v as string)) {
        const list = d.choices.map((c) => `'${c}'`);
        throw new InvalidOptionError(`${name} must be ${list.slice(0, -1).join(', ')} or ${list.at(-1)} (got ${JSON.stringify(v)})`);
      }
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw new InvalidOptionError(`${name} must be a boolean (got ${JSON.stringify(v)})`);
      return v;
    case 'bytes':
      if (v !== null && !(v instanceof Uint8Array)) throw new InvalidOptionError(`${name} must be a Uint8Array or null`);
      return v;
    case 'text':
      if (typeof v !== 'string' || v.length === 0) throw new InvalidOptionError(`${name} must be a non-empty string (got ${JSON.stringify(v)})`);
      return v;
    case 'custom':
      return v;
  }
}

/** The options the worker pool takes (entries marked `pool: true`). */
export function poolOptions(o: ResolvedOptions): Pick<ResolvedOptions, PoolKey> {
  return Object.fromEntries(POOL_KEYS.map((k) => [k, o[k]])) as Pick<ResolvedOptions, PoolKey>;
}

export function resolveHandlerUrl(handler: string | URL): string {
  if (handler instanceof URL) return handler.href;
  if (typeof handler !== 'string' || handler.length === 0) {
    throw new InvalidOptionError('handler is required: a module path or file URL');
  }
  if (handler.startsWith('file:')) return handler;
  return pathToFileURL(isAbsolute(handler) ? handler : resolve(handler)).href;
}

/** sendQueueLimit's default follows sendHighWater at this ratio when that is more than 16 MiB. */
const QUEUE_LIMIT_PER_HIGH_WATER = 16;

/** Validate, then default, in one block (undici style). Throws InvalidOptionError. */
export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('options must be an object');
  for (const key of Object.keys(o)) {
    if (!KNOWN_KEYS.has(key)) throw new InvalidOptionError(`unknown option '${key}'${suggest(key, KNOWN_KEYS)}`);
  }
  const given = o as Record<string, unknown>;
  const plain = {} as Record<string, unknown>;
  for (const key of PLAIN_SERVER_KEYS) plain[key] = checkValue(key, OPTIONS[key], given[key] ?? OPTIONS[key].default);
  const p = plain as PlainValues;
  const { framing, framingSpec } = resolveFraming(o.framing, p.maxFrame);
  const resolved: ResolvedOptions = {
    ...p,
    handlerUrl: resolveHandlerUrl(o.handler),
    codecGiven: given.codec !== undefined,
    framing,
    framingSpec,
    routing: resolveRouting(o.routing),
    admin: resolveAdmin(o.admin),
    logger: o.logger ?? silentLogger,
    tls: o.tls == null ? null : new ResolvedTls(o.tls),
    proxyProtocol: resolveProxyProtocol(o.proxyProtocol),
  };
  if (resolved.sendLowWater > resolved.sendHighWater) {
    throw new InvalidOptionError(
      `sendLowWater (${resolved.sendLowWater}) must not exceed sendHighWater (${resolved.sendHighWater})`,
    );
  }
  // Not given: 16 x the high water mark when that is more than the default (a server tuned for big queues keeps the ratio).
  if (o.sendQueueLimit === undefined) resolved.sendQueueLimit = Math.max(resolved.sendQueueLimit, QUEUE_LIMIT_PER_HIGH_WATER * resolved.sendHighWater);
  if (resolved.sendQueueLimit < resolved.sendHighWater) {
    throw new InvalidOptionError(
      `sendQueueLimit (${resolved.sendQueueLimit}) must not be below sendHighWater (${resolved.sendHighWater}): the high water mark pauses first, the limit cuts`,
    );
  }
  return resolved;
}

function resolveFraming(raw: BuiltinFramingOptions | Framing | undefined, maxFrame: number): { framing: Framing; framingSpec: BuiltinFramingOptions | null } {
  const rawFraming = raw ?? DEFAULTS.framing;
  if (isFraming(rawFraming)) return { framing: rawFraming, framingSpec: null };
  const framingSpec = { ...(rawFraming as BuiltinFramingOptions) };
  return { framing: createFraming(framingSpec, maxFrame), framingSpec };
}

function resolveRouting(r: RoutingOptions | false | undefined): { idBytes: 2 | 4 } | null {
  if (!r) return null;
  const idBytes = r.idBytes ?? 4;
  if (idBytes !== 2 && idBytes !== 4) throw new InvalidOptionError(`routing.idBytes must be 2 or 4 (got ${idBytes})`);
  return { idBytes };
}
