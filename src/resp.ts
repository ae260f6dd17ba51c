/**
 * RESP2 replies for handlers under the `resp` codec (with `framing: { type: 'resp' }`).
 *
 *     import { resp } from 'shoal';
 *     export const codec = 'resp';
 *     export default function (args) {            // args: Buffer[], e.g. [<GET>, <key>]
 *       return resp.bulk(store.get(args[1].toString('latin1')) ?? null);
 *     }
 *
 * A handler returns one RespValue, which becomes exactly one reply:
 *
 *   resp.simple('OK')       +OK            a status line (no CR/LF inside)
 *   resp.error('ERR x')     -ERR x         the whole line: Redis prefixes (ERR, WRONGTYPE) included
 *   resp.integer(3), 3      :3             a safe integer or a bigint
 *   resp.bulk(b), 'text'    $4 text        bytes (Uint8Array) or a string (UTF-8)
 *   null, resp.nil          $-1            the null bulk string (GET of a missing key)
 *   resp.nullArray          *-1            the null array
 *   [a, b, ...]             *2 ...         an array of any of these, nested as deep as needed
 *
 * `undefined` sends no reply (for a handler that answers with ctx.send() only).
 */
import { HandlerError } from './errors.js';

/** A RESP status, error, integer or bulk reply built by the helpers below (or a null array). */
export interface RespReply {
  /** Which RESP2 type this is. */
  readonly type: 'simple' | 'error' | 'integer' | 'bulk' | 'null-array';
  /** The status or error text, the integer, or the bulk's bytes (null for a null array). */
  readonly value: string | number | bigint | Uint8Array | null;
}

/** What a `resp` handler may return: helpers' replies, or the plain values they stand for. */
export type RespValue = RespReply | string | Uint8Array | number | bigint | null | readonly RespValue[];

const reply = (type: RespReply['type'], value: RespReply['value']): RespReply => Object.freeze({ type, value });
const LINE_BREAK = /[\r\n]/;

/** Builders for RESP2 replies. */
export const resp = Object.freeze({
  /** `+text`: a status reply. Throws if the text contains CR or LF (it would end the line). */
  simple(text: string): RespReply {
    if (LINE_BREAK.test(text)) throw new HandlerError(`a RESP simple string cannot contain CR or LF (got ${JSON.stringify(text)})`);
    return reply('simple', text);
  },
  /** `-message`: an error reply; start with Redis's prefix (`ERR ...`, `WRONGTYPE ...`). CR and LF become spaces. */
  error(message: string): RespReply {
    return reply('error', message.replace(/[\r\n]+/g, ' '));
  },
  /** `:n`: an integer reply (a safe integer or a bigint). */
  integer(n: number | bigint): RespReply {
    checkInteger(n);
    return reply('integer', n);
  },
  /** `$len bytes`: a bulk string (a string is sent as UTF-8); null is the null bulk string. */
  bulk(data: string | Uint8Array | null): RespReply | null {
    if (data === null) return null;
    return reply('bulk', typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  },
  /** An array reply (the same as returning the array itself). */
  array(items: readonly RespValue[]): readonly RespValue[] {
    return items;
  },
  /** `$-1`, the null bulk string (the same as returning null). */
  nil: null,
  /** `*-1`, the null array. */
  nullArray: reply('null-array', null),
  /** `+OK`. */
  ok: reply('simple', 'OK'),
  /** `+PONG`. */
  pong: reply('simple', 'PONG'),
});

function checkInteger(n: unknown): void {
  if (typeof n === 'bigint') return;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    throw new HandlerError(`a RESP integer must be a safe integer or a bigint (got ${String(n)}); send other numbers as bulk strings`);
  }
}

function isReply(v: object): v is RespReply {
  return 'type' in v && 'value' in v && !(v instanceof Uint8Array) && !Array.isArray(v);
}

/** Bytes of the encoded value (a first pass, so the reply is written into one buffer). */
function encodedLength(v: RespValue): number {
  if (v === null) return 5; // $-1\r\n
  switch (typeof v) {
    case 'string':
      return bulkLength(Buffer.byteLength(v, 'utf8'));
    case 'number':
    case 'bigint':
      checkInteger(v);
      return 3 + String(v).length;
    case 'object': {
      if (v instanceof Uint8Array) return bulkLength(v.length);
      if (Array.isArray(v)) {
        let n = 3 + String(v.length).length;
        for (const item of v as readonly RespValue[]) n += encodedLength(item);
        return n;
      }
      if (isReply(v)) {
        switch (v.type) {
          case 'simple':
          case 'error':
            return 3 + Buffer.byteLength(v.value as string, 'utf8');
          case 'integer':
            return 3 + String(v.value).length;
          case 'bulk':
            return bulkLength((v.value as Uint8Array).length);
          case 'null-array':
            return 5;
        }
      }
    }
  }
  throw new HandlerError(`a 'resp' handler must return a RESP value (resp.* helpers, a string, bytes, an integer, null or an array of them); got ${describe(v)}`);
}

const bulkLength = (n: number): number => 1 + digits(n) + 2 + n + 2;

/** Decimal digits of a non-negative safe integer (no string made). */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Write a non-negative safe integer's decimal digits at `at`; returns the end. */
function writeDigits(out: Buffer, at: number, n: number): number {
  const end = at + digits(n);
  let i = end;
  do {
    const q = Math.floor(n / 10);
    out[--i] = 0x30 + (n - q * 10);
    n = q;
  } while (n > 0);
  return end;
}

/** `<type><n>\r\n` for a non-negative safe integer n: a bulk's or an array's header, or an integer reply. */
function writeHeader(out: Buffer, at: number, type: number, n: number): number {
  out[at] = type;
  at = writeDigits(out, at + 1, n);
  out[at] = CR;
  out[at + 1] = LF;
  return at + 2;
}

const CR = 0x0d;
const LF = 0x0a;
const DOLLAR = 0x24;
const COLON = 0x3a;

function describe(v: unknown): string {
  if (typeof v === 'number') return `the number ${v}`;
  return v === undefined ? 'undefined inside an array' : typeof v === 'object' ? (v?.constructor?.name ?? 'an object') : typeof v;
}

function writeAscii(out: Buffer, at: number, text: string): number {
  return at + out.write(text, at, 'latin1');
}

function writeValue(v: RespValue, out: Buffer, at: number): number {
  if (v === null) return writeAscii(out, at, '$-1\r\n');
  switch (typeof v) {
    case 'string': {
      const n = Buffer.byteLength(v, 'utf8');
      at = writeAscii(out, at, `$${n}\r\n`);
      at += out.write(v, at, 'utf8');
      return writeAscii(out, at, '\r\n');
    }
    case 'number':
      if (v >= 0) return writeHeader(out, at, COLON, v);
      return writeAscii(out, at, `:${v}\r\n`);
    case 'bigint':
      return writeAscii(out, at, `:${v}\r\n`);
    default:
      break;
  }
  if (v instanceof Uint8Array) return writeBulk(v, out, at);
  if (Array.isArray(v)) {
    at = writeAscii(out, at, `*${v.length}\r\n`);
    for (const item of v as readonly RespValue[]) at = writeValue(item, out, at);
    return at;
  }
  const r = v as RespReply;
  switch (r.type) {
    case 'simple':
    case 'error':
      out[at++] = r.type === 'simple' ? 0x2b : 0x2d;
      at += out.write(r.value as string, at, 'utf8');
      return writeAscii(out, at, '\r\n');
    case 'integer':
      return writeAscii(out, at, `:${r.value as number | bigint}\r\n`);
    case 'bulk':
      return writeBulk(r.value as Uint8Array, out, at);
    case 'null-array':
      return writeAscii(out, at, '*-1\r\n');
  }
}

function writeBulk(b: Uint8Array, out: Buffer, at: number): number {
  const n = b.length;
  at = writeHeader(out, at, DOLLAR, n);
  out.set(b, at);
  at += n;
  out[at] = CR;
  out[at + 1] = LF;
  return at + 2;
}

/**
 * The replies most commands give, encoded once. Shared by every reply that is one of
 * them: reply bytes are only ever read (written to sockets, copied into rings).
 */
const NIL_BYTES = Buffer.from('$-1\r\n', 'latin1');
const OK_BYTES = Buffer.from('+OK\r\n', 'latin1');
const PONG_BYTES = Buffer.from('+PONG\r\n', 'latin1');
const NULL_ARRAY_BYTES = Buffer.from('*-1\r\n', 'latin1');

/** One RESP value as wire bytes (the `resp` codec's encoder). Throws HandlerError for what RESP2 cannot carry. */
export function encodeResp(value: RespValue): Buffer {
  // The common replies first, without the general two passes (GET, SET, INCR, PING on every command).
  if (value === null) return NIL_BYTES;
  if (value === resp.ok) return OK_BYTES;
  if (value === resp.pong) return PONG_BYTES;
  if (value === resp.nullArray) return NULL_ARRAY_BYTES;
  if (value instanceof Uint8Array) {
    const out = Buffer.allocUnsafe(bulkLength(value.length));
    writeBulk(value, out, 0);
    return out;
  }
  if (typeof value === 'number' && value >= 0 && Number.isSafeInteger(value)) {
    const out = Buffer.allocUnsafe(3 + digits(value));
    writeHeader(out, 0, COLON, value);
    return out;
  }
  const out = Buffer.allocUnsafe(encodedLength(value));
  writeValue(value, out, 0);
  return out;
}
