/** Flag value parsers shared by every `shoal` subcommand. They throw InvalidOptionError naming the flag. */
import { InvalidOptionError } from '../errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
};

/** "500ms", "10s", "5m", "1h" or a bare number of milliseconds. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(value.trim());
  if (!m) throw new InvalidOptionError(`--${flag} must be a duration like 500ms, 10s, 5m or a number of ms (got '${value}')`);
  return Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 'ms').toLowerCase()]!);
}

/** "1MiB", "64KiB", "512k" or a bare number of bytes. */
export function parseSize(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]+)?$/i.exec(value.trim());
  const unit = SIZE_UNITS[(m?.[2] ?? 'b').toLowerCase()];
  if (!m || unit === undefined) throw new InvalidOptionError(`--${flag} must be a size like 1MiB, 64KiB or a number of bytes (got '${value}')`);
  return Math.round(Number(m[1]) * unit);
}

export function parseInteger(flag: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || n < min || n > max) {
    throw new InvalidOptionError(`--${flag} must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`} (got '${value}')`);
  }
  return n;
}

export function parseChoice<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw new InvalidOptionError(`--${flag} must be one of ${choices.join(', ')} (got '${value}')`);
  }
  return value as T;
}

/** "\n", "\r\n", "\0" and \xNN escapes in a delimiter given on the command line. */
export function parseEscapes(value: string): Buffer {
  const text = value.replace(/\\(n|r|t|0|\\|x([0-9a-fA-F]{2}))/g, (_, c: string, hex?: string) =>
    hex ? String.fromCharCode(parseInt(hex, 16)) : ({ n: '\n', r: '\r', t: '\t', '0': '\0', '\\': '\\' } as Record<string, string>)[c]!,
  );
  return Buffer.from(text, 'latin1');
}
