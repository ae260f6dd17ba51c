import { BadRequestError, FrameInvalidError, InvalidOptionError, RespProtocolError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import type { FrameDecoder, FrameEncoder, Framing, RespFramingOptions } from './types.js';
import { viewOf } from './view.js';

/**
 * RESP2 framing (Redis's protocol), the request side: a command is an array of bulk
 * strings, or an inline command (one line of words, what `telnet` and
 * `redis-benchmark -t ping_inline` send).
 *
 *   BEFORE "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"   AFTER the same 22 bytes, one frame
 *   BEFORE "PING\r\n"                          AFTER "PING"  (inline: the line, EOL removed)
 *   BEFORE "\r\n*0\r\nPING\n"                  AFTER "PING"  (blank lines, empty arrays: skipped)
 *
 * A frame is the command's bytes as they came, never copied and never parsed into
 * strings on the main thread: the cutter only walks the headers (Netty's RedisDecoder
 * states, with RedisArrayAggregator's job done by counting elements). parseCommand()
 * below, run by the `resp` codec, turns a frame into its arguments: in a worker by
 * walking the headers again, on the main thread right after the cut from the places the
 * cutter recorded (`cut`).
 *
 * Bounds, each checked as soon as the header that would break it is in, before a
 * byte of its body is buffered:
 * - `maxFrame`: the whole command (blank lines before it included);
 * - `maxArrayLength`: elements of one command (`*1000000000` fails at once);
 * - `maxBulkLength`: one argument (`$4294967296` fails at once);
 * - an inline command longer than `maxInlineLength` (Redis's PROTO_INLINE_MAX_SIZE).
 * Every violation is a RespProtocolError whose message is Redis's own ("Protocol
 * error: invalid bulk length", ...); the framing's errorReply() sends it to the peer
 * as `-ERR ...` before the connection closes, as Redis does.
 */

/** The limits of `{ type: 'resp' }`, in one place (README documents each). */
export const RESP_DEFAULTS = Object.freeze({
  /** Elements of one command: Redis refuses more than 1024 * 1024 arguments too (client-query limits aside). */
  maxArrayLength: 1024 * 1024,
  /** Bytes of one inline command: Redis's PROTO_INLINE_MAX_SIZE, 64 KiB. */
  maxInlineLength: 64 * 1024,
  // maxBulkLength and maxFrame default to the server's maxFrame (a bulk cannot be larger than its command).
});

/** The RESP framing's limits after defaults (what a RespDecoder is made with). */
export interface ResolvedRespOptions {
  /** Largest whole command in bytes (blank lines before it included). */
  maxFrame: number;
  /** Most elements of one command. */
  maxArrayLength: number;
  /** Largest single argument in bytes. */
  maxBulkLength: number;
  /** Longest inline command in bytes. */
  maxInlineLength: number;
}

const CR = 0x0d;
const LF = 0x0a;
const STAR = 0x2a;
const DOLLAR = 0x24;
/** A count line is a sign and at most 19 digits: anything longer is refused before its CR arrives. */
const MAX_COUNT_LINE = 21;
/** The smallest element, `$0\r\n\r\n`: a count that could not fit in maxFrame fails at its header. */
const MIN_ELEMENT = 6;

/**
 * The integer in buf[from, to) (an optional '-' and 1 to 19 digits), or NaN. No string
 * is made: this runs on the main thread for every header.
 */
export function parseCount(buf: Uint8Array, from: number, to: number): number {
  let i = from;
  let negative = false;
  if (i < to && buf[i] === 0x2d) {
    negative = true;
    i++;
  }
  if (i === to || to - i > 19) return NaN;
  let n = 0;
  for (; i < to; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

/**
 * The CR ending a count line that starts at `from`, or -1. Looked for in JS over at most
 * MAX_COUNT_LINE + 1 bytes: a count line is a few bytes, and a native indexOf() call costs
 * more than the scan. A line with no CR that soon is refused by the caller either way.
 */
function findCR(buf: Uint8Array, from: number, to: number): number {
  const stop = to < from + MAX_COUNT_LINE + 1 ? to : from + MAX_COUNT_LINE + 1;
  for (let i = from; i < stop; i++) if (buf[i] === CR) return i;
  return -1;
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === CR || c === LF || c === 0x0b || c === 0x0c;

/**
 * Splits an inline command into arguments like Redis's sdssplitargs(): words separated
 * by spaces; "double quotes" with \n \r \t \b \a \\ \" \xHH escapes; 'single quotes'
 * with \' only. Unquoted words are views of `line`; quoted ones are copies. Returns null
 * for unbalanced quotes (or a closing quote not followed by a space), as Redis does.
 */
export function splitInline(line: Buffer): Buffer[] | null {
  const args: Buffer[] = [];
  const n = line.length;
  let i = 0;
  for (;;) {
    while (i < n && isSpace(line[i]!)) i++;
    if (i >= n) return args;
    const q = line[i]!;
    if (q !== 0x22 && q !== 0x27) {
      const start = i;
      while (i < n && !isSpace(line[i]!) && line[i] !== 0x22 && line[i] !== 0x27) i++;
      if (i < n && !isSpace(line[i]!)) {
        // A quote inside a word ("ab"c"): Redis reads it as part of the word unless it opens one.
        const word = quotedWord(line, start, i);
        if (word === null) return null;
        args.push(word.value);
        i = word.end;
        continue;
      }
      args.push(line.subarray(start, i));
      continue;
    }
    const word = quotedWord(line, i, i);
    if (word === null) return null;
    args.push(word.value);
    i = word.end;
  }
}

/** A word made of a plain prefix line[start, at) and quoted parts from `at` on; null if unbalanced. */
function quotedWord(line: Buffer, start: number, at: number): { value: Buffer; end: number } | null {
  const out: number[] = [...line.subarray(start, at)];
  const n = line.length;
  let i = at;
  while (i < n && !isSpace(line[i]!)) {
    const q = line[i]!;
    if (q !== 0x22 && q !== 0x27) {
      out.push(q);
      i++;
      continue;
    }
    i++;
    let closed = false;
    while (i < n) {
      const c = line[i]!;
      if (q === 0x22 && c === 0x5c && i + 1 < n) {
        const e = line[i + 1]!;
        if (e === 0x78 && i + 3 < n && isHex(line[i + 2]!) && isHex(line[i + 3]!)) {
          out.push(parseInt(String.fromCharCode(line[i + 2]!, line[i + 3]!), 16));
          i += 4;
          continue;
        }
        out.push(ESCAPES[e] ?? e);
        i += 2;
        continue;
      }
      if (q === 0x27 && c === 0x5c && i + 1 < n && line[i + 1] === 0x27) {
        out.push(0x27);
        i += 2;
        continue;
      }
      if (c === q) {
        closed = true;
        i++;
        break;
      }
      out.push(c);
      i++;
    }
    // Redis: a closing quote must be followed by a space or the end.
    if (!closed || (i < n && !isSpace(line[i]!))) return null;
  }
  return { value: Buffer.from(out), end: i };
}

const ESCAPES: Record<number, number> = { 0x6e: LF, 0x72: CR, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 };
const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

/** Commands of at most this many elements have their arguments' places recorded by the decoder (`cut`). */
const MAX_RECORDED = 32;

/**
 * Where the arguments of the command the decoder cut last are, so that parseCommand(),
 * when it runs on the same thread right after (the main thread's inline path), does not
 * walk the headers a second time. Only a command cut whole within one decode() call is
 * recorded (a command split over reads is not: another connection's decoder may have
 * written here in between). One per thread: `frame` is the exact view the decoder
 * returned, so any other frame, or this one parsed twice, takes the walk.
 */
const cut = {
  /** The frame the spans are of, or null. Cleared once parsed: it holds no input alive for long. */
  frame: null as Buffer | null,
  count: 0,
  /** For each argument, its start in the frame and its length. */
  spans: new Int32Array(2 * MAX_RECORDED),
};

/**
 * The arguments of a frame cut by RespDecoder: views into `frame` (no copy) for an
 * array command; for an inline one, views or (quoted words) copies. The reader of the
 * format the decoder below writes, kept beside it.
 */
export function parseCommand(frame: Buffer): Buffer[] {
  if (frame === cut.frame) {
    // Cut on this thread a moment ago: the decoder read these headers already.
    cut.frame = null;
    const n = cut.count;
    const spans = cut.spans;
    const args = new Array<Buffer>(n);
    for (let k = 0; k < n; k++) args[k] = viewOf(frame, spans[2 * k]!, spans[2 * k]! + spans[2 * k + 1]!);
    return args;
  }
  if (frame.length === 0 || frame[0] !== STAR) {
    const args = splitInline(frame);
    if (args === null) throw new RespProtocolError('SHOAL_FRAME_INVALID', 'unbalanced quotes in request');
    return args;
  }
  // The RESP framing has checked all of this; the checks stay for a frame cut by another framing.
  const end = frame.length;
  let cr = findCR(frame, 1, end);
  const count = cr < 0 ? NaN : parseCount(frame, 1, cr);
  if (!(count >= 0) || count > end) throw new BadRequestError('not a RESP command: bad array header');
  const args = new Array<Buffer>(count);
  let p = cr + 2;
  for (let k = 0; k < count; k++) {
    cr = frame[p] === DOLLAR ? findCR(frame, p + 1, end) : -1;
    const len = cr < 0 ? NaN : parseCount(frame, p + 1, cr);
    if (!(len >= 0) || cr + 4 + len > frame.length) throw new BadRequestError(`not a RESP command: bad bulk header of element ${k}`);
    p = cr + 2;
    args[k] = viewOf(frame, p, p + len);
    p += len + 2;
  }
  return args;
}

/** No command yet: the next byte starts one (or a blank line, or an empty array). */
const HEAD = -1;
/** What #inline returns for a blank line: consumed with the next command, nothing to emit. */
const SKIPPED = Symbol('skipped');

/**
 * Cuts RESP2 commands. State between calls (Netty's RedisDecoder states, tokio's
 * `Head | Data(n)`): where the command starts after skipped bytes, how far its headers
 * were walked, elements left, and the length of the bulk whose body is awaited, so a
 * header is never parsed twice however the stream is split.
 */
export class RespDecoder implements FrameDecoder {
  consumed = 0;
  needed = 0;
  readonly #o: ResolvedRespOptions;
  /** Bytes from `offset` before the command: blank lines and empty arrays (consumed with it). */
  #start = 0;
  /** Bytes from `offset` walked so far (headers and whole elements). */
  #pos = 0;
  /** Elements still to read, or HEAD. */
  #left = HEAD;
  /** Body length of the bulk whose `$n` header was read, or -1 (its header is next). */
  #bulk = -1;

  constructor(options: ResolvedRespOptions) {
    this.#o = options;
  }

  decode(buf: Buffer, offset: number): Buffer | null {
    const end = buf.length;
    let p = offset + this.#pos;
    /** Elements recorded in `cut` for this command, or -1: not recorded (begun in an earlier call, or too many elements). */
    let recorded = -1;
    for (;;) {
      if (this.#left === HEAD) {
        const s = offset + this.#start;
        if (s >= end) return this.#more(buf, offset, s);
        if (buf[s] !== STAR) {
          const line = this.#inline(buf, offset, p);
          if (line !== SKIPPED) return line;
          p = offset + this.#pos;
          continue;
        }
        // An array header is parsed whole or not at all, so here p === s.
        const cr = findCR(buf, p + 1, end);
        if (cr < 0 || cr + 1 >= end) {
          if (end - p > MAX_COUNT_LINE) throw new RespProtocolError('SHOAL_FRAME_INVALID', 'invalid multibulk length');
          return this.#more(buf, offset, p);
        }
        const count = parseCount(buf, p + 1, cr);
        if (Number.isNaN(count) || buf[cr + 1] !== LF) throw new RespProtocolError('SHOAL_FRAME_INVALID', 'invalid multibulk length');
        p = cr + 2;
        if (count <= 0) {
          // Redis ignores `*0` and `*-1`: skipped like a blank line.
          this.#skipTo(p - offset);
          continue;
        }
        const o = this.#o;
        if (count > o.maxArrayLength) {
          throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', `invalid multibulk length (${count} elements, maxArrayLength is ${o.maxArrayLength})`);
        }
        const least = p - offset + count * MIN_ELEMENT;
        if (least > o.maxFrame) {
          throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', `invalid multibulk length (${count} elements need at least ${least} bytes, maxFrame is ${o.maxFrame})`);
        }
        this.#left = count;
        this.#bulk = -1;
        // The spans are about to be overwritten: whatever frame they were of loses them now.
        cut.frame = null;
        recorded = count <= MAX_RECORDED ? 0 : -1;
      }
      // Inside an array: a `$n` header, then n bytes and CRLF, per element.
      if (this.#bulk < 0) {
        if (p >= end) return this.#more(buf, offset, p);
        if (buf[p] !== DOLLAR) throw new RespProtocolError('SHOAL_FRAME_INVALID', `expected '$', got '${printable(buf[p]!)}'`);
        const cr = findCR(buf, p + 1, end);
        if (cr < 0 || cr + 1 >= end) {
          if (end - p > MAX_COUNT_LINE) throw new RespProtocolError('SHOAL_FRAME_INVALID', 'invalid bulk length');
          return this.#more(buf, offset, p);
        }
        const len = parseCount(buf, p + 1, cr);
        if (Number.isNaN(len) || len < 0 || buf[cr + 1] !== LF) throw new RespProtocolError('SHOAL_FRAME_INVALID', 'invalid bulk length');
        const o = this.#o;
        if (len > o.maxBulkLength) {
          throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', `invalid bulk length (${len} bytes, maxBulkLength is ${o.maxBulkLength})`);
        }
        p = cr + 2;
        if (recorded >= 0) {
          cut.spans[2 * recorded] = p - offset - this.#start;
          cut.spans[2 * recorded + 1] = len;
          recorded++;
        }
        // The rest of the command needs at least this bulk and a minimal element for each one left.
        const least = p - offset + len + 2 + (this.#left - 1) * MIN_ELEMENT;
        if (least > o.maxFrame) {
          throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', `command of at least ${least} bytes exceeds maxFrame (${o.maxFrame})`);
        }
        this.#bulk = len;
      }
      const after = p + this.#bulk + 2;
      if (after > end) {
        // Exactly how many bytes to wait for: the reader then merges a big value once.
        this.#pos = p - offset;
        this.needed = after - offset;
        return null;
      }
      if (buf[after - 2] !== CR || buf[after - 1] !== LF) throw new RespProtocolError('SHOAL_FRAME_INVALID', 'expected CRLF after a bulk string');
      p = after;
      this.#bulk = -1;
      if (--this.#left === 0) {
        const frame = this.#emit(buf, offset, viewOf(buf, offset + this.#start, p), p);
        cut.frame = recorded >= 0 ? frame : null;
        cut.count = recorded;
        return frame;
      }
    }
  }

  /** An inline command: the line up to '\n', without its '\r' (SKIPPED: it was blank). */
  #inline(buf: Buffer, offset: number, p: number): Buffer | null | typeof SKIPPED {
    const lf = buf.indexOf(LF, p);
    const lineStart = offset + this.#start;
    if (lf < 0) {
      if (buf.length - lineStart > this.#o.maxInlineLength) throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', 'too big inline request');
      return this.#more(buf, offset, buf.length);
    }
    let lineEnd = lf;
    if (lineEnd > lineStart && buf[lineEnd - 1] === CR) lineEnd--;
    if (lineEnd - lineStart > this.#o.maxInlineLength) throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', 'too big inline request');
    const line = buf.subarray(lineStart, lineEnd);
    let blank = true;
    for (let i = 0; i < line.length; i++) {
      if (!isSpace(line[i]!)) {
        blank = false;
        break;
      }
    }
    if (blank) {
      this.#skipTo(lf + 1 - offset);
      return SKIPPED;
    }
    // Quotes are rare: only then is the line split here, to refuse unbalanced ones as Redis does.
    if ((line.includes(0x22) || line.includes(0x27)) && splitInline(line) === null) {
      throw new RespProtocolError('SHOAL_FRAME_INVALID', 'unbalanced quotes in request');
    }
    return this.#emit(buf, offset, line, lf + 1);
  }

  /** Blank lines and empty arrays are consumed with the next command; they count toward maxFrame. */
  #skipTo(rel: number): void {
    if (rel > this.#o.maxFrame) throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', `${rel} bytes of blank lines exceed maxFrame (${this.#o.maxFrame})`);
    this.#start = rel;
    this.#pos = rel;
    this.#left = HEAD;
    this.#bulk = -1;
  }

  #more(buf: Buffer, offset: number, p: number): null {
    this.#pos = p - offset;
    this.needed = buf.length - offset + 1;
    return null;
  }

  #emit(_buf: Buffer, offset: number, frame: Buffer, end: number): Buffer {
    this.consumed = end - offset;
    this.#start = 0;
    this.#pos = 0;
    this.#left = HEAD;
    this.#bulk = -1;
    return frame;
  }
}

function printable(c: number): string {
  return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
}

/**
 * The end of the one RESP2 value at body[at], or -1 if it is not a whole, well-formed
 * value: `+`, `-`, `:` lines (no CR or LF inside), `$n` bulks (`$-1` null), `*n`
 * arrays (`*-1` null) of values. Iterative: a deeply nested reply cannot overflow the stack.
 */
export function respValueEnd(body: Uint8Array, at: number): number {
  const n = body.length;
  let p = at;
  let pending = 1; // values still to read at this point
  while (pending > 0) {
    if (p >= n) return -1;
    const type = body[p]!;
    let cr = -1;
    for (let i = p + 1; i < n; i++) {
      const c = body[i]!;
      if (c === CR) {
        cr = i;
        break;
      }
      if (c === LF) return -1;
    }
    if (cr < 0 || cr + 1 >= n || body[cr + 1] !== LF) return -1;
    pending--;
    const next = cr + 2;
    if (type === 0x2b || type === 0x2d) {
      p = next;
    } else if (type === 0x3a) {
      if (Number.isNaN(parseCount(body, p + 1, cr))) return -1;
      p = next;
    } else if (type === DOLLAR) {
      const len = parseCount(body, p + 1, cr);
      if (len === -1) {
        p = next;
        continue;
      }
      if (!(len >= 0) || next + len + 2 > n || body[next + len] !== CR || body[next + len + 1] !== LF) return -1;
      p = next + len + 2;
    } else if (type === STAR) {
      const count = parseCount(body, p + 1, cr);
      if (!(count >= -1)) return -1;
      if (count > 0) pending += count;
      p = next;
    } else {
      return -1;
    }
  }
  return p;
}

/**
 * A reply body must be exactly one RESP value (what the `resp` codec makes, or bytes a
 * `raw` handler wrote, like `+PONG\r\n`): anything else would make the client read a
 * different number of replies than were sent, and match every later one to the wrong
 * command. Checked on the headers only: a bulk's body is skipped by its length.
 */
export class RespEncoder implements FrameEncoder {
  readonly identity = true;
  readonly #max: number;
  constructor(maxFrame: number) {
    this.#max = maxFrame;
  }
  frameLength(bodyLength: number): number {
    if (bodyLength > this.#max) throw new RespProtocolError('SHOAL_FRAME_TOO_LARGE', `a reply of ${bodyLength} bytes exceeds maxFrame (${this.#max})`);
    return bodyLength;
  }
  encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number {
    const length = this.frameLength(body.length);
    if (respValueEnd(body, 0) !== body.length) {
      throw new FrameInvalidError(`a reply of ${body.length} bytes is not one RESP value (return a RESP value under the 'resp' codec, or write e.g. '+OK\\r\\n')`);
    }
    out.set(body, offset);
    return length;
  }
}

/** `-ERR <message>\r\n`, with any CR or LF in the message turned into spaces (they would end the line). */
export function respErrorLine(message: string): Buffer {
  return Buffer.from(`-ERR ${message.replace(/[\r\n]+/g, ' ')}\r\n`, 'utf8');
}

/**
 * What the peer is told before its connection closes on a bad frame or a failed
 * message: Redis's `-ERR Protocol error: ...` for frame errors, `-ERR <message>` else.
 */
export function respErrorReply(error: SerializedError): Uint8Array {
  const frame = error.code.startsWith('SHOAL_FRAME_') && !error.message.startsWith('Protocol error');
  return respErrorLine(frame ? `Protocol error: ${error.message}` : error.message);
}

function checkLimit(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new InvalidOptionError(`framing.${name} for 'resp' framing must be an integer >= ${min} (got ${JSON.stringify(value)})`);
}

export function resolveRespOptions(options: RespFramingOptions, defaultMaxFrame: number): ResolvedRespOptions {
  const maxFrame = options.maxFrame ?? defaultMaxFrame;
  checkLimit('maxFrame', maxFrame, 16);
  const maxArrayLength = options.maxArrayLength ?? RESP_DEFAULTS.maxArrayLength;
  checkLimit('maxArrayLength', maxArrayLength, 1);
  const maxBulkLength = options.maxBulkLength ?? maxFrame;
  checkLimit('maxBulkLength', maxBulkLength, 0);
  if (maxBulkLength > maxFrame) {
    throw new InvalidOptionError(`framing.maxBulkLength (${maxBulkLength}) must not exceed framing.maxFrame (${maxFrame}): one argument cannot be larger than its command`);
  }
  return { maxFrame, maxArrayLength, maxBulkLength, maxInlineLength: Math.min(RESP_DEFAULTS.maxInlineLength, maxFrame) };
}

export function respFraming(options: RespFramingOptions, defaultMaxFrame: number): Framing {
  const resolved = resolveRespOptions(options, defaultMaxFrame);
  return {
    name: 'resp',
    createDecoder: () => new RespDecoder(resolved),
    encoder: new RespEncoder(resolved.maxFrame),
    errorReply: respErrorReply,
  };
}

const lower = (c: number): number => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c);

/**
 * Whether the command in `frame` (as RespDecoder cut it) is `name`, in any case, read in
 * place: no string, no view. For a module's affinityKey(), which runs on the main thread
 * for every message.
 */
export function commandIs(frame: Uint8Array, name: string): boolean {
  let at: number;
  let len: number;
  if (frame[0] === STAR) {
    const end = frame.length;
    let p = findCR(frame, 1, end) + 2; // a frame the decoder cut has CRLF after its count
    if (p === 1 || frame[p] !== DOLLAR) return false;
    const cr = findCR(frame, p + 1, end);
    len = cr < 0 ? NaN : parseCount(frame, p + 1, cr);
    p = cr + 2;
    at = p;
  } else {
    at = 0;
    while (at < frame.length && isSpace(frame[at]!)) at++;
    let end = at;
    while (end < frame.length && !isSpace(frame[end]!)) end++;
    len = end - at;
  }
  if (len !== name.length || at + len > frame.length) return false;
  for (let i = 0; i < len; i++) if (lower(frame[at + i]!) !== lower(name.charCodeAt(i))) return false;
  return true;
}
