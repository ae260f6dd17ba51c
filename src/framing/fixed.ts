import { FrameInvalidError, InvalidOptionError } from '../errors.js';
import type { FixedFramingOptions, FrameDecoder, FrameEncoder, Framing } from './types.js';
import { viewOf } from './view.js';

/**
 * Fixed-length framing: every frame is exactly `frameLength` bytes.
 *
 *   BEFORE "ABCDEFG" (frameLength 3)   AFTER "ABC", "DEF"   ("G" waits for more)
 */
export class FixedLengthDecoder implements FrameDecoder {
  consumed = 0;
  needed = 0;
  readonly #len: number;
  constructor(frameLength: number) {
    this.#len = frameLength;
  }
  decode(buf: Buffer, offset: number): Buffer | null {
    if (buf.length - offset < this.#len) {
      this.needed = this.#len;
      return null;
    }
    this.consumed = this.#len;
    return viewOf(buf, offset, offset + this.#len);
  }
}

/** Encoder of fixed framing: a reply must be exactly frameLength bytes. */
export class FixedLengthEncoder implements FrameEncoder {
  readonly #len: number;
  constructor(frameLength: number) {
    this.#len = frameLength;
  }
  frameLength(bodyLength: number): number {
    if (bodyLength !== this.#len) {
      throw new FrameInvalidError(`fixed framing needs replies of exactly ${this.#len} bytes (got ${bodyLength})`);
    }
    return bodyLength;
  }
  encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number {
    this.frameLength(body.length);
    out.set(body, offset);
    return body.length;
  }
}

export function fixedFraming(options: FixedFramingOptions, maxFrame: number): Framing {
  const n = options.frameLength;
  if (!Number.isInteger(n) || n < 1 || n > maxFrame) {
    throw new InvalidOptionError(`framing.frameLength must be an integer from 1 to maxFrame (${maxFrame}) (got ${n})`);
  }
  return { name: 'fixed', createDecoder: () => new FixedLengthDecoder(n), encoder: new FixedLengthEncoder(n) };
}
