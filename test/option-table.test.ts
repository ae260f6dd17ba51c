import { describe, expect, it } from 'vitest';
import { parseChoice, parseDuration, parseEscapes, parseInteger, parseSize } from '../dist/src/cli/args.js';
import { START_HELP, startOptionsFromFlags } from '../dist/src/cli/start.js';
import { resolveLengthOptions } from '../dist/src/framing/length.js';
import { ADMIN_DEFAULTS, DEFAULTS, OPTIONS, OPTION_KEYS, SERVER_KEYS, flagOf, helpDefault } from '../dist/src/option-table.js';
import type { OptionDef } from '../dist/src/option-table.js';
import { resolveOptions } from '../dist/src/options.js';
import { createServer } from '../dist/src/index.js';
import { EXAMPLES } from './helpers/server.js';

const handler = '/tmp/h.js';

/** The --help text of one flag: its line and the continuation lines under it. */
function helpOf(flag: string): string {
  const lines = START_HELP.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`  --${flag} `) || l === `  --${flag}` || l.startsWith(`  --${flag}  `));
  if (at < 0) return '';
  let end = at + 1;
  while (end < lines.length && /^ {20,}\S/.test(lines[end]!)) end++;
  return lines.slice(at, end).join(' ').replace(/\s+/g, ' ');
}

/** Read a default back as the flag would take it: the text --help prints must parse to the value the code uses. */
function parseAsFlag(d: OptionDef, text: string): unknown {
  switch (d.kind) {
    case 'int':
      return parseInteger('x', text, d.min, d.max);
    case 'size':
      return parseSize('x', text);
    case 'duration':
      return parseDuration('x', text);
    case 'choice':
      return parseChoice('x', text, d.choices);
    case 'text':
      return text;
    default:
      return text;
  }
}

describe('the option table', () => {
  it('every option has a flag (or says why not), and --help lists every flag', () => {
    for (const key of OPTION_KEYS) {
      const d = OPTIONS[key] as OptionDef;
      if (d.kind === 'custom') {
        const flags = d.subFlags ?? [];
        if (flags.length === 0) expect(d.noFlag, `${key} has neither a flag nor a reason`).toMatch(/\w/);
        for (const f of flags) expect(helpOf(f.flag), `--${f.flag} (${key}) in --help`).not.toBe('');
      } else {
        expect(helpOf(flagOf(key)), `--${flagOf(key)} (${key}) in --help`).not.toBe('');
      }
    }
    // The four that had no flag before the table.
    for (const flag of ['max-pending-bytes', 'offload', 'atomics']) expect(helpOf(flag)).not.toBe('');
  });

  it('--help shows the default the code really uses when the flag is absent', async () => {
    const lib = resolveOptions({ handler }) as unknown as Record<string, unknown>;
    // The CLI-only values (host, port, logLevel, logFormat, ...) next to the server's.
    const { options, ...cliOnly } = startOptionsFromFlags({ handler });
    const cli = { ...(resolveOptions(options) as unknown as Record<string, unknown>), ...cliOnly };
    for (const key of OPTION_KEYS) {
      const d = OPTIONS[key] as OptionDef;
      if (d.kind === 'custom') continue;
      // The library default is DEFAULTS and what resolveOptions() fills in.
      expect(DEFAULTS[key as keyof typeof DEFAULTS], `DEFAULTS.${key}`).toEqual(d.default);
      if ((d.scope ?? 'server') === 'server') expect(lib[key], `resolveOptions default of ${key}`).toEqual(d.default);
      const shown = helpDefault(key);
      if (shown === null) continue; // a boolean flag: off unless given
      expect(helpOf(flagOf(key)), `--${flagOf(key)}`).toContain(`(default ${shown})`);
      if (d.defaultText !== undefined) continue;
      // What --help prints, read back as the flag, is what `shoal start` uses without the flag.
      expect(parseAsFlag(d, shown), `--help default of --${flagOf(key)}`).toEqual(cli[key]);
    }
    expect(cli.workers).toBe(DEFAULTS.workers);
    expect(helpOf('workers')).toContain(`${DEFAULTS.workers} here`);
    expect(cli.idleTimeout).toBe(5 * 60_000); // the CLI's own default
    expect(lib.idleTimeout).toBe(0);
    expect(helpOf('go-away')).toContain('(default none)');
    expect(cli.goAway).toBeNull();
  });

  it('the framing and admin flags print their modules\' real defaults', () => {
    const length = resolveLengthOptions({ type: 'length' }, 1024);
    expect(helpOf('length-field-offset')).toContain(`(default ${length.lengthFieldOffset})`);
    expect(helpOf('length-field-length')).toContain(`(default ${length.lengthFieldLength})`);
    expect(helpOf('byte-order')).toContain(`(default ${length.byteOrder})`);
    expect(helpOf('length-adjustment')).toContain(`(default ${length.lengthAdjustment})`);
    expect(helpOf('admin-host')).toContain(`(default ${ADMIN_DEFAULTS.host})`);
    const { options } = startOptionsFromFlags({ handler, 'admin-port': '0' });
    expect(resolveOptions(options).admin).toEqual({ port: 0, ...ADMIN_DEFAULTS });
    expect(resolveOptions(startOptionsFromFlags({ handler, 'admin-port': '0', 'admin-metrics': 'off' }).options).admin?.metrics).toBe(false);
  });

  it('every createServer() key is in the table, and the table accepts nothing else', () => {
    const o = resolveOptions({ handler, workers: 0 });
    for (const key of SERVER_KEYS) expect(key === 'handler' || key in o, key).toBe(true);
    expect(() => resolveOptions({ handler, host: '0.0.0.0' } as never)).toThrow(/unknown option 'host'/);
  });

  it('each flag reaches its option: the pool ones and a sample of the others', () => {
    const { options } = startOptionsFromFlags({
      handler, 'max-pending-bytes': '2MiB', offload: 'never', atomics: 'async',
      'startup-timeout': '5s', 'max-in-flight': '9', 'send-timeout': '1m', 'go-away': 'BYE\\n', port: '7000',
    });
    const o = resolveOptions(options);
    expect([o.maxPendingBytes, o.offload, o.atomics, o.startupTimeout]).toEqual([2 * 1024 * 1024, 'never', 'async', 5000]);
    expect([o.maxInFlightPerConnection, o.sendTimeout]).toEqual([9, 60_000]);
    expect(Buffer.from(o.goAway!).equals(parseEscapes('BYE\\n'))).toBe(true);
    expect(() => startOptionsFromFlags({ handler, atomics: 'spin' })).toThrow(/--atomics must be one of sync, async/);
    expect(() => startOptionsFromFlags({ handler, offload: 'sometimes' })).toThrow(/--offload must be one of auto, always, never/);
    expect(() => startOptionsFromFlags({ handler, 'max-pending-bytes': '0' })).toThrow(/--max-pending-bytes must be an integer >= 1/);
    expect(() => startOptionsFromFlags({ handler, eol: 'crlf' })).toThrow(/--eol applies to --framing line only/);
  });

  it('listen() without an address binds the table\'s library default (loopback, any free port)', async () => {
    expect([DEFAULTS.host, DEFAULTS.port]).toEqual(['127.0.0.1', 0]);
    const server = createServer({ handler: EXAMPLES.echo, workers: 0 });
    try {
      const address = await server.listen();
      expect(address.address).toBe(DEFAULTS.host);
      expect(address.port).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });
});
