import { FrameInvalidError, FrameTooLargeError, InvalidOptionError } from '../errors.js';
import type { DelimiterFramingOptions, FrameDecoder, FrameEncoder, Framing, LineFramingOptions } from './types.js';
import { viewOf } from './view.js';

/**
 * Delimiter framing: a frame is every byte up to the delimiter (excluded).
 * Line framing is the '\n' delimiter, optionally stripping a '\r' before it.
 *
 *   BEFORE "ab\ncd\r\n"   AFTER "ab", "cd"   (line, stripCR)
 *
 * A maximum length is mandatory: without one a peer that never sends the
 * delimiter grows our buffer forever. It is enforced as bytes are scanned, so
 * an overlong frame fails as soon as it is certainly longer than maxFrame: at
 * maxFrame + 1 bytes without a delimiter, unless the last bytes may still be the
 * start of one (then at most maxFrame + delimiter length bytes are held).
 */
export class DelimiterDecoder implements FrameDecoder {
  consumed = 0;
  needed = 0;
  readonly #delim: Buffer;
  readonly #max: number;
  readonly #stripCR: boolean;
  /** Bytes after the frame start already searched without finding the delimiter. */
  #scanned = 0;

  constructor(delimiter: Buffer, maxFrame: number, stripCR: boolean) {
    this.#delim = delimiter;
    this.#max = maxFrame;
    this.#stripCR = stripCR;
  }

  decode(buf: Buffer, offset: number): Buffer | null {
    const delim = this.#delim;
    // Resume just before where the last scan stopped, in case a multi-byte delimiter straddles it.
    const from = offset + Math.max(0, this.#scanned - delim.length + 1);
    const at = delim.length === 1 ? buf.indexOf(delim[0]!, from) : buf.indexOf(delim, from);
    if (at < 0) {
      const avail = buf.length - offset;
      if (avail > this.#max) {
        // Fail as soon as the frame is certainly too long: every byte counts except a tail that
        // may still turn out to be the start of the delimiter (or a '\r' that stripCR removes).
        const known = avail - this.#openTail(buf, offset);
        if (known > this.#max) throw new FrameTooLargeError(known, this.#max);
      }
      this.#scanned = avail;
      this.needed = avail + 1;
      return null;
    }
    let end = at;
    if (this.#stripCR && end > offset && buf[end - 1] === 0x0d) end--;
    if (end - offset > this.#max) throw new FrameTooLargeError(end - offset, this.#max);
    this.#scanned = 0;
    this.consumed = at + delim.length - offset;
    return viewOf(buf, offset, end);
  }

  /** Length of the longest suffix of buf[offset..] that could still be cut off the frame. */
  #openTail(buf: Buffer, offset: number): number {
    const delim = this.#delim;
    const avail = buf.length - offset;
    let tail = 0;
    // The longest suffix that is a proper prefix of the delimiter (O(d²), only past maxFrame).
    for (let k = Math.min(delim.length - 1, avail); k > 0; k--) {
      if (buf.compare(delim, 0, k, buf.length - k, buf.length) === 0) {
        tail = k;
        break;
      }
    }
    if (this.#stripCR && tail < avail && buf[buf.length - tail - 1] === 0x0d) tail++;
    return tail;
  }
}

/**
 * Appends the trailer, and refuses a body the peer's decoder would cut differently:
 * one containing the delimiter (or overlapping it with the trailer), or, for lines
 * whose CR is stripped, one ending in '\r'. Otherwise the peer would read more
 * replies than were sent and every later reply would be matched to the wrong request.
 */
export class DelimiterEncoder implements FrameEncoder {
  readonly #trailer: Buffer;
  readonly #max: number;
  readonly #delimiter: Buffer;
  readonly #stripCR: boolean;
  constructor(trailer: Buffer, maxFrame: number, delimiter: Buffer = trailer, stripCR = false) {
    this.#trailer = trailer;
    this.#max = maxFrame;
    this.#delimiter = delimiter;
    this.#stripCR = stripCR;
  }
  frameLength(bodyLength: number): number {
    if (bodyLength > this.#max) throw new FrameTooLargeError(bodyLength, this.#max);
    return bodyLength + this.#trailer.length;
  }
  encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number {
    const total = this.frameLength(body.length);
    out.set(body, offset);
    out.set(this.#trailer, offset + body.length);
    // The trailer ends in the delimiter, so the first match from `offset` is inside this
    // frame: a one-byte delimiter is found in place, without a view per reply.
    const d = this.#delimiter;
    const first = d.length === 1 ? out.indexOf(d[0]!, offset) - offset : Buffer.from(out.buffer, out.byteOffset + offset, total).indexOf(d);
    const cut = first >= 0 && this.#stripCR && first > 0 && out[offset + first - 1] === 0x0d ? first - 1 : first;
    if (cut !== body.length) {
      throw new FrameInvalidError(`a reply of ${body.length} bytes would be cut at byte ${cut} by the peer: it contains the delimiter${this.#stripCR ? ' or ends in \\r' : ''}`);
    }
    return total;
  }
}

function checkMax(maxFrame: number, type: string): void {
  if (!Number.isInteger(maxFrame) || maxFrame < 1) {
    throw new InvalidOptionError(`framing.maxFrame for '${type}' framing must be an integer >= 1 (got ${maxFrame})`);
  }
}

export function lineFraming(options: LineFramingOptions, defaultMaxFrame: number): Framing {
  const maxFrame = options.maxFrame ?? defaultMaxFrame;
  checkMax(maxFrame, 'line');
  const stripCR = options.stripCR ?? true;
  const eol = options.eol ?? '\n';
  if (eol !== '\n' && eol !== '\r\n') throw new InvalidOptionError(`framing.eol must be '\\n' or '\\r\\n' (got ${JSON.stringify(eol)})`);
  const lf = Buffer.from('\n');
  const encoder = new DelimiterEncoder(Buffer.from(eol), maxFrame, lf, stripCR);
  return { name: 'line', createDecoder: () => new DelimiterDecoder(lf, maxFrame, stripCR), encoder };
}

export function delimiterFraming(options: DelimiterFramingOptions, defaultMaxFrame: number): Framing {
  const maxFrame = options.maxFrame ?? defaultMaxFrame;
  checkMax(maxFrame, 'delimiter');
  const d = options.delimiter;
  if (typeof d !== 'string' && !(d instanceof Uint8Array)) {
    throw new InvalidOptionError('framing.delimiter must be a string or a Uint8Array');
  }
  const delim = Buffer.from(d);
  if (delim.length === 0) throw new InvalidOptionError('framing.delimiter must be at least one byte');
  return {
    name: 'delimiter',
    createDecoder: () => new DelimiterDecoder(delim, maxFrame, false),
    encoder: new DelimiterEncoder(delim, maxFrame, delim),
  };
}
