/**
 * The CLI's logger: pino, as JSON lines for a log shipper, or short human lines
 * (pino-pretty) for a person at a terminal. `--log-format auto` (the default) picks
 * pretty when stdout is a TTY and JSON otherwise (piped, redirected, under systemd).
 */
import { pino } from 'pino';
import type { Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';

/** `--log-format` (its entry in src/option-table.ts: logFormat). */
export type LogFormat = 'auto' | 'pretty' | 'json';

/** pretty or json, for a format and whether stdout is a terminal. */
export function effectiveLogFormat(format: LogFormat, isTTY: boolean): 'pretty' | 'json' {
  if (format === 'auto') return isTTY ? 'pretty' : 'json';
  return format;
}

export function createCliLogger(level: string, format: LogFormat, stdout: NodeJS.WriteStream = process.stdout): PinoLogger {
  if (effectiveLogFormat(format, stdout.isTTY === true) === 'json') return pino({ level, base: { pid: process.pid } });
  const stream = pretty({
    colorize: stdout.isTTY === true && pretty.isColorSupported,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
    // Written before the process exits (the shutdown path calls process.exit()).
    sync: true,
    destination: 1,
  });
  return pino({ level }, stream);
}

/** Option names whose values are always secret (a TLS passphrase). */
const SECRET = /passphrase|secret|password|token/i;
/** Option names that may hold key material (tls.key, tls.pfx): a path is shown, PEM is not. */
const KEY_MATERIAL = /key|pfx/i;

function looksLikeMaterial(value: unknown): boolean {
  return value instanceof Uint8Array || (typeof value === 'string' && value.includes('-----BEGIN'));
}

/**
 * The resolved options as a log record: functions and loggers dropped, byte values
 * summarized, objects with a toJSON() (the resolved tls option) shown as they describe
 * themselves, and secrets redacted, so the dump never prints key material.
 */
export function configForLog(value: unknown, name = ''): unknown {
  if (value === null || value === undefined) return value;
  if (name !== '' && (SECRET.test(name) || (KEY_MATERIAL.test(name) && looksLikeMaterial(value)))) return '[redacted]';
  if (typeof value === 'function') return undefined;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (value instanceof URL) return value.href;
  if (Array.isArray(value)) return value.map((v) => configForLog(v, name));
  if (typeof value === 'object') {
    const own = typeof (value as { toJSON?: unknown }).toJSON === 'function' ? (value as { toJSON(): unknown }).toJSON() : value;
    if (own === null || typeof own !== 'object') return configForLog(own, name);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(own)) {
      if (k === 'logger') continue;
      const shown = configForLog(v, k);
      if (shown !== undefined) out[k] = shown;
    }
    return out;
  }
  return value;
}
