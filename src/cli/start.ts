import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { InvalidOptionError } from '../errors.js';
import type { BuiltinFramingOptions } from '../framing/types.js';
import { DEFAULTS, suggest } from '../options.js';
import type { ServerOptions } from '../options.js';
import { createServer } from '../server.js';
import { handleSignals } from '../shutdown.js';
import { parseChoice, parseDuration, parseEscapes, parseInteger, parseSize } from './args.js';

export const START_HELP = `Usage: shoal start --handler <module> [options]

Start a shoal server: the main thread accepts and frames, a pool of worker
threads runs the handler, replies go back in order.

Server
  --handler <path>            handler module (ESM or CommonJS) (required)
  --host <addr>               address to bind (default ${DEFAULTS.host})
  --port <n>                  port to bind (default ${DEFAULTS.port}; 0 = any free port)
  --workers <n>               worker threads; 0 = run handlers on the main thread
                              (default: available parallelism, ${availableParallelism()} here)
  --codec <raw|utf8|json>     what handlers see and return (default ${DEFAULTS.codec})
  --routing <2|4>             route by a 2- or 4-byte message id to the module's routes
  --on-handler-error <p>      close | error-frame | drop (default ${DEFAULTS.onHandlerError})

Framing (default: length, a 4-byte big-endian length then the body)
  --framing <type>            length | line | delimiter | fixed | raw
  --max-frame <size>          largest frame, header included (default 1MiB)
  --length-field-offset <n>   length: bytes before the length field (default 0)
  --length-field-length <n>   length: 1, 2, 3, 4 or 8 (default 4)
  --byte-order <be|le>        length: byte order of the field (default be)
  --length-adjustment <n>     length: added to the field to get the bytes after it (default 0)
  --strip <n>                 length: bytes stripped from the front (default: the header)
  --delimiter <text>          delimiter: the bytes ending a frame (escapes: \\n \\r \\0 \\xNN)
  --frame-length <n>          fixed: the size of every frame
  --eol <lf|crlf>             line: what replies end with (default lf)

Budgets (sizes like 64KiB, durations like 500ms, 10s, 5m)
  --max-connections <n>       open connections (default ${DEFAULTS.maxConnections})
  --backlog <n>               kernel accept queue, clamped by somaxconn (default ${DEFAULTS.backlog})
  --max-connections-per-ip <n> per remote address, 0 = off (default 0)
  --max-in-flight <n>         frames in flight per connection (default ${DEFAULTS.maxInFlightPerConnection})
  --send-high-water <size>    queued bytes that pause reading a connection (default 1MiB)
  --send-low-water <size>     queued bytes that resume it (default 256KiB)
  --send-timeout <dur>        cut a peer above the high water mark this long, 0 = off (default 30s)
  --idle-timeout <dur>        close a silent connection, 0 = off (default 5m under the CLI)
  --handler-timeout <dur>     kill a handler running this long, 0 = off (default 0)
  --max-pending <n>           frames waiting for the pool before all reading pauses (default ${DEFAULTS.maxPendingFrames})
  --batch-max-frames <n>      frames per pool task (default ${DEFAULTS.batchMaxFrames})
  --drain-timeout <dur>       graceful shutdown deadline (default 10s)
  --go-away <text>            bytes sent to every connection when shutdown begins
                              (escapes as --delimiter); then serve until the peer closes

Admin HTTP server (off unless --admin-port is given)
  --admin-port <n>            serve /metrics, /healthz, /readyz, /debug/{stats,profile,heap}
  --admin-host <addr>         address to bind (default ${DEFAULTS.adminHost}; loopback only unless
                              --admin-allow-public: it serves heap snapshots and profiles)
  --admin-allow-public        allow a non-loopback --admin-host (e.g. 0.0.0.0 in a container)

Logging
  --log-level <level>         fatal | error | warn | info | debug | silent (default info)

  -h, --help                  this help

Signals: SIGINT, SIGTERM or SIGQUIT drain and exit 0; a second signal exits 1 at once.

Examples
  shoal start --handler examples/bench-protocol/handler.js
  shoal start --handler ./echo.js --framing line --codec utf8 --port 7000
  shoal start --handler ./api.js --codec json --routing 4 --workers 4
`;

const FLAGS = {
  handler: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  workers: { type: 'string' },
  codec: { type: 'string' },
  routing: { type: 'string' },
  'on-handler-error': { type: 'string' },
  framing: { type: 'string' },
  'max-frame': { type: 'string' },
  'length-field-offset': { type: 'string' },
  'length-field-length': { type: 'string' },
  'byte-order': { type: 'string' },
  'length-adjustment': { type: 'string' },
  strip: { type: 'string' },
  delimiter: { type: 'string' },
  'frame-length': { type: 'string' },
  eol: { type: 'string' },
  'max-connections': { type: 'string' },
  backlog: { type: 'string' },
  'max-connections-per-ip': { type: 'string' },
  'max-in-flight': { type: 'string' },
  'send-high-water': { type: 'string' },
  'send-low-water': { type: 'string' },
  'send-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'handler-timeout': { type: 'string' },
  'max-pending': { type: 'string' },
  'batch-max-frames': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'go-away': { type: 'string' },
  'admin-port': { type: 'string' },
  'admin-host': { type: 'string' },
  'admin-allow-public': { type: 'boolean' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The CLI's idle timeout: a standalone server should not keep dead peers forever. */
const CLI_IDLE_TIMEOUT = 5 * 60_000;

type Values = { [K in keyof typeof FLAGS]?: (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

/** Parse argv with node:util parseArgs; unknown flags get a did-you-mean hint. */
export function parseFlags<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(argv: string[], flags: T): {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
} {
  try {
    const r = parseArgs({ args: argv, options: flags, strict: true, allowPositionals: true });
    return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
  } catch (err) {
    const m = /Unknown option '(-{1,2})([^']+)'/.exec((err as Error).message);
    if (m) throw new InvalidOptionError(`unknown flag ${m[1]}${m[2]}${suggest(m[2]!, Object.keys(flags)).replace(/'([^']+)'/, "'--$1'")}`);
    throw new InvalidOptionError((err as Error).message);
  }
}

/** Map flags to ServerOptions; the CLI only maps, options.ts validates. */
export function startOptionsFromFlags(v: Values): { options: ServerOptions; host: string; port: number; logLevel: string } {
  if (!v.handler) throw new InvalidOptionError('--handler is required (e.g. --handler examples/echo/handler.js)');
  const maxFrame = v['max-frame'] !== undefined ? parseSize('max-frame', v['max-frame']) : DEFAULTS.maxFrame;
  const type = parseChoice('framing', v.framing ?? 'length', ['length', 'line', 'delimiter', 'fixed', 'raw'] as const);
  let framing: BuiltinFramingOptions;
  switch (type) {
    case 'length': {
      const lengthFieldLength = parseInteger('length-field-length', v['length-field-length'] ?? '4', 1, 8) as 1 | 2 | 3 | 4 | 8;
      framing = {
        type,
        lengthFieldOffset: parseInteger('length-field-offset', v['length-field-offset'] ?? '0', 0),
        lengthFieldLength,
        byteOrder: parseChoice('byte-order', v['byte-order'] ?? 'be', ['be', 'le'] as const),
        lengthAdjustment: parseInteger('length-adjustment', v['length-adjustment'] ?? '0', -(2 ** 31), 2 ** 31),
      };
      if (v.strip !== undefined) framing.initialBytesToStrip = parseInteger('strip', v.strip, 0);
      break;
    }
    case 'line':
      framing = { type, eol: parseChoice('eol', v.eol ?? 'lf', ['lf', 'crlf'] as const) === 'crlf' ? '\r\n' : '\n' };
      break;
    case 'delimiter':
      if (!v.delimiter) throw new InvalidOptionError('--framing delimiter needs --delimiter <text>');
      framing = { type, delimiter: parseEscapes(v.delimiter) };
      break;
    case 'fixed':
      if (!v['frame-length']) throw new InvalidOptionError('--framing fixed needs --frame-length <n>');
      framing = { type, frameLength: parseInteger('frame-length', v['frame-length'], 1) };
      break;
    case 'raw':
      framing = { type };
      break;
  }
  const options: ServerOptions = {
    handler: v.handler,
    workers: v.workers !== undefined ? parseInteger('workers', v.workers, 0, 1024) : availableParallelism(),
    framing,
    maxFrame,
    codec: parseChoice('codec', v.codec ?? DEFAULTS.codec, ['raw', 'utf8', 'json'] as const),
    onHandlerError: parseChoice('on-handler-error', v['on-handler-error'] ?? DEFAULTS.onHandlerError, ['close', 'error-frame', 'drop'] as const),
    idleTimeout: v['idle-timeout'] !== undefined ? parseDuration('idle-timeout', v['idle-timeout']) : CLI_IDLE_TIMEOUT,
  };
  if (v.routing !== undefined) options.routing = { idBytes: parseChoice('routing', v.routing, ['2', '4'] as const) === '2' ? 2 : 4 };
  if (v['max-connections'] !== undefined) options.maxConnections = parseInteger('max-connections', v['max-connections'], 1);
  if (v.backlog !== undefined) options.backlog = parseInteger('backlog', v.backlog, 1, 65535);
  if (v['max-connections-per-ip'] !== undefined) options.maxConnectionsPerIp = parseInteger('max-connections-per-ip', v['max-connections-per-ip'], 0);
  if (v['max-in-flight'] !== undefined) options.maxInFlightPerConnection = parseInteger('max-in-flight', v['max-in-flight'], 1);
  if (v['send-high-water'] !== undefined) options.sendHighWater = parseSize('send-high-water', v['send-high-water']);
  if (v['send-low-water'] !== undefined) options.sendLowWater = parseSize('send-low-water', v['send-low-water']);
  if (v['send-timeout'] !== undefined) options.sendTimeout = parseDuration('send-timeout', v['send-timeout']);
  if (v['handler-timeout'] !== undefined) options.handlerTimeout = parseDuration('handler-timeout', v['handler-timeout']);
  if (v['max-pending'] !== undefined) options.maxPendingFrames = parseInteger('max-pending', v['max-pending'], 1);
  if (v['batch-max-frames'] !== undefined) options.batchMaxFrames = parseInteger('batch-max-frames', v['batch-max-frames'], 1);
  if (v['drain-timeout'] !== undefined) options.drainTimeout = parseDuration('drain-timeout', v['drain-timeout']);
  if (v['go-away'] !== undefined) options.goAway = parseEscapes(v['go-away']);
  if (v['admin-port'] !== undefined) {
    options.admin = { port: parseInteger('admin-port', v['admin-port'], 0, 65535) };
    if (v['admin-host'] !== undefined) options.admin.host = v['admin-host'];
    if (v['admin-allow-public']) options.admin.allowPublic = true;
  } else if (v['admin-host'] !== undefined || v['admin-allow-public']) {
    throw new InvalidOptionError('--admin-host and --admin-allow-public need --admin-port <n>');
  }
  const port = parseInteger('port', v.port ?? String(DEFAULTS.port), 0, 65535);
  const logLevel = parseChoice('log-level', v['log-level'] ?? 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const);
  return { options, host: v.host ?? DEFAULTS.host, port, logLevel };
}

export async function startMain(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, FLAGS);
  if (values.help) {
    process.stdout.write(START_HELP);
    return 0;
  }
  const { options, host, port, logLevel } = startOptionsFromFlags(values as Values);
  const logger = pino({ level: logLevel, base: { pid: process.pid } });
  options.logger = logger;
  const server = createServer(options);
  const effective = { ...server.options, framing: server.options.framingSpec ?? server.options.framing.name, logger: undefined, goAway: server.options.goAway ? `${server.options.goAway.length} bytes` : null };
  logger.info({ config: effective }, 'starting');
  handleSignals(server, logger);
  await server.listen({ host, port });
  return -1; // keep running: exit happens on a signal
}
