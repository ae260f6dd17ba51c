import { parseArgs } from 'node:util';
import { InvalidOptionError } from '../errors.js';
import type { BuiltinFramingOptions } from '../framing/types.js';
import { GROUPS, OPTIONS, OPTION_KEYS, flagOf, helpDefault } from '../option-table.js';
import type { CustomKey, Group, OptionDef, OptionKey, SubFlag } from '../option-table.js';
import { checkValue, suggest } from '../options.js';
import type { ServerOptions } from '../options.js';
import { createServer } from '../server.js';
import { handleReloadSignal, handleSignals } from '../shutdown.js';
import { parseChoice, parseDuration, parseEscapes, parseInteger, parseSize } from './args.js';
import { configForLog, createCliLogger } from './logger.js';
import { watchHandler } from './watch.js';
import type { LogFormat } from './logger.js';

// Flags, --help and the mapping to createServer() options all come from the option
// table (src/option-table.ts); this file only adds what is particular to the command line.

const HELP_HEAD = `Usage: shoal start --handler <module> [options]

Start a shoal server: the main thread accepts and frames, a pool of worker
threads runs the handler, replies go back in order.
`;

const HELP_TAIL = `
  -h, --help                  this help

Signals: SIGINT, SIGTERM or SIGQUIT drain and exit 0; a second signal exits 1 at once.
SIGHUP reloads what can change under a running server: the handler (without dropping a
connection; a handler that fails to load is logged and the running code keeps serving)
and, with TLS, the certificate and key (new handshakes use them; a bad file keeps the old).

Examples
  shoal start --handler examples/bench-protocol/handler.js
  shoal start --handler ./echo.js --framing line --codec utf8 --port 7000
  shoal start --handler ./api.js --codec json --routing 4 --workers 4
`;

const HELP_WIDTH = 100;
const HELP_COLUMN = 30;

const ARG_BY_KIND: Record<string, string> = { int: '<n>', size: '<size>', duration: '<dur>', choice: '<value>', text: '<text>', bytes: '<text>' };

/** Every flag of `shoal start`, as --help lists it, in table order. */
function helpEntries(): { group: Group; flag: string; arg: string; help: string; dflt: string | null }[] {
  const out: { group: Group; flag: string; arg: string; help: string; dflt: string | null }[] = [];
  for (const key of OPTION_KEYS) {
    const d = OPTIONS[key] as OptionDef;
    if (d.kind === 'custom') {
      for (const f of (d.subFlags ?? []) as readonly SubFlag[]) out.push({ group: d.group, flag: f.flag, arg: f.arg ?? '', help: f.help, dflt: f.defaultText ?? null });
    } else {
      out.push({ group: d.group, flag: flagOf(key), arg: d.kind === 'bool' ? '' : (d.arg ?? ARG_BY_KIND[d.kind]!), help: d.help, dflt: helpDefault(key) });
    }
  }
  return out;
}

/** "  --flag <arg>   help (default X)", wrapped; "(default X)" is never split. */
function helpLine(flag: string, arg: string, help: string, dflt: string | null): string {
  const left = `  --${flag}${arg ? ` ${arg}` : ''}`;
  const words = help.split(' ');
  if (dflt !== null) words.push(`(default ${dflt})`);
  const lines: string[] = [];
  let line = left.length < HELP_COLUMN ? left.padEnd(HELP_COLUMN) : `${left} `;
  let fresh = true;
  for (const w of words) {
    if (!fresh && line.length + 1 + w.length > HELP_WIDTH) {
      lines.push(line);
      line = ' '.repeat(HELP_COLUMN);
      fresh = true;
    }
    line += fresh ? w : ` ${w}`;
    fresh = false;
  }
  lines.push(line);
  return lines.join('\n');
}

function buildHelp(): string {
  const entries = helpEntries();
  const sections = (Object.keys(GROUPS) as Group[]).map((g) => {
    const lines = entries.filter((e) => e.group === g).map((e) => helpLine(e.flag, e.arg, e.help, e.dflt));
    return `${GROUPS[g]}\n${lines.join('\n')}\n`;
  });
  return `${HELP_HEAD}\n${sections.join('\n')}${HELP_TAIL}`;
}

export const START_HELP = buildHelp();

type FlagSpec = { type: 'string' | 'boolean'; short?: string };
const FLAGS: Record<string, FlagSpec> = { help: { type: 'boolean', short: 'h' } };
for (const e of helpEntries()) FLAGS[e.flag] = { type: e.arg === '' ? 'boolean' : 'string' };

type Values = Record<string, string | boolean | undefined>;

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

/** A plain option's flag value, parsed and checked against its table entry. */
function parseFlagValue(key: OptionKey, raw: string | boolean): unknown {
  const d = OPTIONS[key] as OptionDef;
  const flag = flagOf(key);
  const text = String(raw);
  switch (d.kind) {
    case 'int':
      return parseInteger(flag, text, d.min, d.max);
    case 'size':
      return checkValue(`--${flag}`, d, parseSize(flag, text));
    case 'duration':
      return checkValue(`--${flag}`, d, parseDuration(flag, text));
    case 'choice':
      return parseChoice(flag, text, d.choices);
    case 'bool':
      return raw === true;
    case 'bytes':
      return parseEscapes(text);
    case 'text':
      return checkValue(`--${flag}`, d, text);
    case 'custom':
      throw new Error(`${key} is a custom option: map it in CUSTOM_FROM_FLAGS`);
  }
}

/** The CLI value of a plain option: its flag, else the CLI's own default, else (undefined) the library's. */
function cliValue(key: OptionKey, v: Values): unknown {
  const raw = v[flagOf(key)];
  if (raw !== undefined) return parseFlagValue(key, raw);
  const d = OPTIONS[key] as OptionDef;
  return 'cliDefault' in d ? d.cliDefault : undefined;
}

/** Flags that apply to one framing type only. */
const FRAMING_FLAGS: Record<string, BuiltinFramingOptions['type']> = {
  'length-field-offset': 'length', 'length-field-length': 'length', 'byte-order': 'length', 'length-adjustment': 'length',
  strip: 'length', delimiter: 'delimiter', 'frame-length': 'fixed', eol: 'line',
};

function framingFromFlags(v: Values): BuiltinFramingOptions {
  const s = (flag: string): string | undefined => v[flag] as string | undefined;
  const type = parseChoice('framing', s('framing') ?? 'length', ['length', 'line', 'delimiter', 'fixed', 'raw', 'resp'] as const);
  for (const [flag, only] of Object.entries(FRAMING_FLAGS)) {
    if (s(flag) !== undefined && only !== type) throw new InvalidOptionError(`--${flag} applies to --framing ${only} only (got --framing ${type})`);
  }
  switch (type) {
    case 'length': {
      // Only what is given: the framing module owns its defaults.
      const f: BuiltinFramingOptions & { type: 'length' } = { type };
      if (s('length-field-offset') !== undefined) f.lengthFieldOffset = parseInteger('length-field-offset', s('length-field-offset')!, 0);
      if (s('length-field-length') !== undefined) f.lengthFieldLength = parseInteger('length-field-length', s('length-field-length')!, 1, 8) as 1 | 2 | 3 | 4 | 8;
      if (s('byte-order') !== undefined) f.byteOrder = parseChoice('byte-order', s('byte-order')!, ['be', 'le'] as const);
      if (s('length-adjustment') !== undefined) f.lengthAdjustment = parseInteger('length-adjustment', s('length-adjustment')!, -(2 ** 31), 2 ** 31);
      if (s('strip') !== undefined) f.initialBytesToStrip = parseInteger('strip', s('strip')!, 0);
      return f;
    }
    case 'line':
      return { type, eol: parseChoice('eol', s('eol') ?? 'lf', ['lf', 'crlf'] as const) === 'crlf' ? '\r\n' : '\n' };
    case 'delimiter':
      if (!s('delimiter')) throw new InvalidOptionError('--framing delimiter needs --delimiter <text>');
      return { type, delimiter: parseEscapes(s('delimiter')!) };
    case 'fixed':
      if (!s('frame-length')) throw new InvalidOptionError('--framing fixed needs --frame-length <n>');
      return { type, frameLength: parseInteger('frame-length', s('frame-length')!, 1) };
    case 'raw':
    case 'resp':
      return { type };
  }
}

/** One mapping per custom (object) option of the table; the compiler checks none is missing. */
const CUSTOM_FROM_FLAGS: { [K in CustomKey]: (v: Values) => ServerOptions[K] | undefined } = {
  handler: (v) => {
    if (!v.handler) throw new InvalidOptionError('--handler is required (e.g. --handler examples/echo/handler.js)');
    return v.handler as string;
  },
  framing: framingFromFlags,
  routing: (v) =>
    v.routing === undefined ? undefined : { idBytes: parseChoice('routing', v.routing as string, ['2', '4'] as const) === '2' ? 2 : 4 },
  admin: (v) => {
    if (v['admin-port'] === undefined) {
      if (v['admin-host'] !== undefined || v['admin-allow-public'] || v['admin-metrics'] !== undefined) {
        throw new InvalidOptionError('--admin-host, --admin-allow-public and --admin-metrics need --admin-port <n>');
      }
      return undefined;
    }
    const admin: NonNullable<ServerOptions['admin']> = { port: parseInteger('admin-port', v['admin-port'] as string, 0, 65535) };
    if (v['admin-host'] !== undefined) admin.host = v['admin-host'] as string;
    if (v['admin-allow-public']) admin.allowPublic = true;
    if (v['admin-metrics'] !== undefined) admin.metrics = parseChoice('admin-metrics', v['admin-metrics'] as string, ['on', 'off'] as const) === 'on';
    return admin;
  },
  logger: () => undefined, // made in startMain from --log-level and --log-format
  tls: (v) => {
    const cert = v['tls-cert'] as string | undefined;
    const key = v['tls-key'] as string | undefined;
    if (cert === undefined && key === undefined) {
      if (v['tls-ca'] !== undefined || v['tls-request-cert']) throw new InvalidOptionError('--tls-ca and --tls-request-cert need --tls-cert and --tls-key');
      return undefined;
    }
    if (cert === undefined || key === undefined) throw new InvalidOptionError('TLS needs both --tls-cert <file> and --tls-key <file>');
    const tls: NonNullable<ServerOptions['tls']> = { cert, key };
    if (v['tls-ca'] !== undefined) tls.ca = v['tls-ca'] as string;
    if (v['tls-request-cert']) {
      if (tls.ca === undefined) throw new InvalidOptionError('--tls-request-cert needs --tls-ca <file> (the CAs client certificates must chain to)');
      tls.requestCert = true;
    }
    return tls;
  },
  proxyProtocol: (v) => {
    const mode = v['proxy-protocol'] as string | undefined;
    if (mode === undefined) {
      if (v['trusted-proxy'] !== undefined || v['proxy-header-timeout'] !== undefined) {
        throw new InvalidOptionError('--trusted-proxy and --proxy-header-timeout need --proxy-protocol v1|v2|any');
      }
      return undefined;
    }
    const trusted = v['trusted-proxy'] as string | undefined;
    if (trusted === undefined) throw new InvalidOptionError('--proxy-protocol needs --trusted-proxy <cidr,...> (the proxies allowed to send the header)');
    const pp: NonNullable<ServerOptions['proxyProtocol']> = {
      mode: parseChoice('proxy-protocol', mode, ['v1', 'v2', 'any'] as const),
      trusted: trusted.split(',').map((c) => c.trim()).filter((c) => c !== ''),
    };
    if (v['proxy-header-timeout'] !== undefined) pp.headerTimeout = parseDuration('proxy-header-timeout', v['proxy-header-timeout'] as string);
    return pp;
  },
};

/** Map flags to ServerOptions (plus listen() and CLI-only values); options.ts validates. */
export function startOptionsFromFlags(v: Values): { options: ServerOptions; host: string; port: number; logLevel: string; logFormat: LogFormat; watch: boolean } {
  const options = {} as Record<string, unknown>;
  for (const key of OPTION_KEYS) {
    const d = OPTIONS[key] as OptionDef;
    if ((d.scope ?? 'server') !== 'server') continue;
    const value = d.kind === 'custom' ? CUSTOM_FROM_FLAGS[key as CustomKey](v) : cliValue(key, v);
    if (value !== undefined) options[key] = value;
  }
  const orDefault = (key: 'host' | 'port' | 'logLevel' | 'logFormat' | 'watch'): unknown => cliValue(key, v) ?? OPTIONS[key].default;
  return {
    options: options as ServerOptions,
    host: orDefault('host') as string,
    port: orDefault('port') as number,
    logLevel: orDefault('logLevel') as string,
    logFormat: orDefault('logFormat') as LogFormat,
    watch: orDefault('watch') as boolean,
  };
}

export async function startMain(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, FLAGS);
  if (values.help) {
    process.stdout.write(START_HELP);
    return 0;
  }
  const { options, host, port, logLevel, logFormat, watch } = startOptionsFromFlags(values as Values);
  const logger = createCliLogger(logLevel, logFormat);
  options.logger = logger;
  const server = createServer(options);
  // The whole resolved configuration is for debugging (~900 characters); a person wants one line.
  const tls = server.options.tls;
  logger.info({ handler: server.options.handlerUrl, workers: server.options.workers, ...(tls !== null ? { tls: configForLog(tls) } : {}) }, 'starting');
  logger.debug({ config: configForLog({ ...server.options, framing: server.options.framingSpec ?? server.options.framing.name }) }, 'resolved options');
  handleSignals(server, logger);
  handleReloadSignal(server, logger);
  await server.listen({ host, port });
  if (watch) watchHandler(server, logger);
  return -1; // keep running: exit happens on a signal
}
