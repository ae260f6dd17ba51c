import { FrameInvalidError, FrameTooLargeError, InvalidOptionError } from '../errors.js';
import type { ByteOrder, FrameDecoder, FrameEncoder, Framing, LengthFramingOptions } from './types.js';
import { viewOf } from './view.js';

/**
 * Length-field framing with Netty's LengthFieldBasedFrameDecoder parameters.
 *
 * Default ([u32 BE length][body], the bench protocol):
 *
 *   BEFORE (7 bytes)                    AFTER (3 bytes)
 *   +--------+----------------+         +----------------+
 *   | Length | Actual Content |  ---->  | Actual Content |
 *   | 0x0003 | "HI?"          |         | "HI?"          |
 *   +--------+----------------+         +----------------+
 *
 * Whole frame on the wire = lengthFieldOffset + lengthFieldLength + (field + lengthAdjustment).
 * `maxFrame` bounds that whole frame; it is checked on the raw field before any body byte is
 * buffered, so a header claiming 4 GiB fails at once without allocating anything.
 */
export interface ResolvedLengthOptions {
  lengthFieldOffset: number;
  lengthFieldLength: 1 | 2 | 3 | 4 | 8;
  byteOrder: ByteOrder;
  lengthAdjustment: number;
  initialBytesToStrip: number;
  maxFrame: number;
}

const FIELD_MAX: Record<number, number> = { 1: 0xff, 2: 0xffff, 3: 0xffffff, 4: 0xffffffff, 8: Number.MAX_SAFE_INTEGER };

export function resolveLengthOptions(o: LengthFramingOptions, defaultMaxFrame: number): ResolvedLengthOptions {
  const lengthFieldOffset = o.lengthFieldOffset ?? 0;
  const lengthFieldLength = o.lengthFieldLength ?? 4;
  const byteOrder = o.byteOrder ?? 'be';
  const lengthAdjustment = o.lengthAdjustment ?? 0;
  const headerLength = lengthFieldOffset + lengthFieldLength;
  const initialBytesToStrip = o.initialBytesToStrip ?? headerLength;
  const maxFrame = o.maxFrame ?? defaultMaxFrame;
  if (!Number.isInteger(lengthFieldOffset) || lengthFieldOffset < 0) {
    throw new InvalidOptionError(`framing.lengthFieldOffset must be an integer >= 0 (got ${lengthFieldOffset})`);
  }
  // Not `in FIELD_MAX`: that admits the string '4' (from JSON or a CLI flag, which then turns
  // `offset + length` into string concatenation) and inherited keys such as 'toString'.
  if (typeof lengthFieldLength !== 'number' || !Object.hasOwn(FIELD_MAX, lengthFieldLength)) {
    throw new InvalidOptionError(`framing.lengthFieldLength must be 1, 2, 3, 4 or 8 (got ${JSON.stringify(lengthFieldLength)})`);
  }
  if (byteOrder !== 'be' && byteOrder !== 'le') {
    throw new InvalidOptionError(`framing.byteOrder must be 'be' or 'le' (got ${String(byteOrder)})`);
  }
  if (!Number.isInteger(lengthAdjustment)) {
    throw new InvalidOptionError(`framing.lengthAdjustment must be an integer (got ${lengthAdjustment})`);
  }
  if (!Number.isInteger(initialBytesToStrip) || initialBytesToStrip < 0) {
    throw new InvalidOptionError(`framing.initialBytesToStrip must be an integer >= 0 (got ${initialBytesToStrip})`);
  }
  if (!Number.isInteger(maxFrame) || maxFrame < headerLength) {
    throw new InvalidOptionError(
      `framing.maxFrame (${maxFrame}) must be an integer >= lengthFieldOffset (${lengthFieldOffset}) + lengthFieldLength (${lengthFieldLength})`,
    );
  }
  if (initialBytesToStrip > headerLength + Math.max(0, lengthAdjustment)) {
    throw new InvalidOptionError(
      `framing.initialBytesToStrip (${initialBytesToStrip}) must not exceed lengthFieldOffset (${lengthFieldOffset}) + lengthFieldLength (${lengthFieldLength}) + max(0, lengthAdjustment (${lengthAdjustment}))`,
    );
  }
  return { lengthFieldOffset, lengthFieldLength, byteOrder, lengthAdjustment, initialBytesToStrip, maxFrame };
}

export function readLengthField(buf: Uint8Array, at: number, bytes: number, order: ByteOrder): number {
  let v = 0;
  if (order === 'be') {
    for (let i = 0; i < bytes; i++) v = v * 256 + buf[at + i]!;
  } else {
    for (let i = bytes - 1; i >= 0; i--) v = v * 256 + buf[at + i]!;
  }
  return v; // exact up to 2^53; an 8-byte field beyond that is caught by maxFrame first
}

function writeLengthField(out: Uint8Array, at: number, bytes: number, order: ByteOrder, value: number): void {
  for (let i = 0; i < bytes; i++) {
    const byte = Math.floor(value / 2 ** (8 * i)) & 0xff;
    out[order === 'be' ? at + bytes - 1 - i : at + i] = byte;
  }
}

/**
 * Stateless (it reads the header again when more bytes arrive, a few byte loads), so
 * one instance serves every connection (Netty's @Sharable): 64 B less per connection.
 * `consumed` and `needed` describe the last decode() call; the reader reads them at once.
 */
export class LengthFieldDecoder implements FrameDecoder {
  consumed = 0;
  needed = 0;
  readonly #o: ResolvedLengthOptions;
  readonly #headerLength: number;

  constructor(o: ResolvedLengthOptions) {
    this.#o = o;
    this.#headerLength = o.lengthFieldOffset + o.lengthFieldLength;
  }

  decode(buf: Buffer, offset: number): Buffer | null {
    const avail = buf.length - offset;
    const o = this.#o;
    const headerLength = this.#headerLength;
    if (avail < headerLength) {
      this.needed = headerLength;
      return null;
    }
    const raw = readLengthField(buf, offset + o.lengthFieldOffset, o.lengthFieldLength, o.byteOrder);
    // Raw value first: no arithmetic on a hostile number before we know it is sane.
    if (raw > o.maxFrame - Math.min(0, o.lengthAdjustment)) {
      throw new FrameTooLargeError(headerLength + raw + o.lengthAdjustment, o.maxFrame);
    }
    const frameLength = headerLength + raw + o.lengthAdjustment;
    if (frameLength < headerLength) {
      throw new FrameInvalidError(`length field ${raw} + lengthAdjustment ${o.lengthAdjustment} is less than 0 bytes after the header`);
    }
    if (frameLength > o.maxFrame) throw new FrameTooLargeError(frameLength, o.maxFrame);
    if (frameLength < o.initialBytesToStrip) {
      throw new FrameInvalidError(`frame of ${frameLength} bytes is shorter than initialBytesToStrip ${o.initialBytesToStrip}`);
    }
    if (avail < frameLength) {
      this.needed = frameLength;
      return null;
    }
    this.consumed = frameLength;
    return viewOf(buf, offset + o.initialBytesToStrip, offset + frameLength);
  }
}

/**
 * Writes [lengthFieldOffset zero bytes][length field][body]. The field holds
 * body.length - lengthAdjustment, so the decoder with the same options reads the body back.
 */
export class LengthFieldEncoder implements FrameEncoder {
  readonly #o: ResolvedLengthOptions;
  readonly #headerLength: number;
  constructor(o: ResolvedLengthOptions) {
    this.#o = o;
    this.#headerLength = o.lengthFieldOffset + o.lengthFieldLength;
  }

  frameLength(bodyLength: number): number {
    const o = this.#o;
    const field = bodyLength - o.lengthAdjustment;
    const total = this.#headerLength + bodyLength;
    if (total > o.maxFrame) throw new FrameTooLargeError(total, o.maxFrame);
    if (field < 0 || field > FIELD_MAX[o.lengthFieldLength]!) {
      throw new FrameInvalidError(`a reply of ${bodyLength} bytes gives length field ${field}, outside the ${o.lengthFieldLength}-byte field`);
    }
    return total;
  }

  encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number {
    const total = this.frameLength(body.length);
    out.set(body, offset + this.#writeHeader(body.length, out, offset));
    return total;
  }

  encodeHeader(bodyLength: number, out: Uint8Array, offset: number): number {
    this.frameLength(bodyLength); // the same checks as a whole frame
    return this.#writeHeader(bodyLength, out, offset);
  }

  /** The header of a body already checked by frameLength(). */
  #writeHeader(bodyLength: number, out: Uint8Array, offset: number): number {
    const o = this.#o;
    out.fill(0, offset, offset + o.lengthFieldOffset);
    const at = offset + o.lengthFieldOffset;
    const field = bodyLength - o.lengthAdjustment;
    if (o.lengthFieldLength === 4 && o.byteOrder === 'be') {
      out[at] = field >>> 24;
      out[at + 1] = (field >>> 16) & 0xff;
      out[at + 2] = (field >>> 8) & 0xff;
      out[at + 3] = field & 0xff;
    } else {
      writeLengthField(out, at, o.lengthFieldLength, o.byteOrder, field);
    }
    return this.#headerLength;
  }
}

export function lengthFraming(options: LengthFramingOptions, defaultMaxFrame: number): Framing {
  const o = resolveLengthOptions(options, defaultMaxFrame);
  const encoder = new LengthFieldEncoder(o);
  const decoder = new LengthFieldDecoder(o); // stateless: shared by every connection
  return { name: 'length', createDecoder: () => decoder, encoder };
}
