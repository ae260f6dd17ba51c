import { FrameTooLargeError, InvalidOptionError } from '../errors.js';
import type { FrameDecoder, FrameEncoder, Framing, RawFramingOptions } from './types.js';

/**
 * Raw framing: whatever bytes are buffered when asked form one frame (the seed's
 * model_03: each read is a message). Boundaries depend on how TCP segments
 * the stream, so this suits only protocols that do not care (echo, proxies).
 * Replies are written as they are.
 */
export class RawDecoder implements FrameDecoder {
  consumed = 0;
  needed = 0;
  readonly #max: number;
  constructor(maxFrame: number) {
    this.#max = maxFrame;
  }
  decode(buf: Buffer, offset: number): Buffer | null {
    const avail = buf.length - offset;
    if (avail === 0) {
      this.needed = 1;
      return null;
    }
    const take = Math.min(avail, this.#max);
    this.consumed = take;
    return buf.subarray(offset, offset + take);
  }
}

/** Encoder of raw framing: replies go out as they are. */
export class RawEncoder implements FrameEncoder {
  readonly #max: number;
  constructor(maxFrame: number) {
    this.#max = maxFrame;
  }
  frameLength(bodyLength: number): number {
    if (bodyLength > this.#max) throw new FrameTooLargeError(bodyLength, this.#max);
    return bodyLength;
  }
  encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number {
    this.frameLength(body.length);
    out.set(body, offset);
    return body.length;
  }
}

export function rawFraming(options: RawFramingOptions, defaultMaxFrame: number): Framing {
  const max = options.maxFrame ?? defaultMaxFrame;
  if (!Number.isInteger(max) || max < 1) throw new InvalidOptionError(`framing.maxFrame must be an integer >= 1 (got ${max})`);
  return { name: 'raw', createDecoder: () => new RawDecoder(max), encoder: new RawEncoder(max) };
}
