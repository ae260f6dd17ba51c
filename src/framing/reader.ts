import { FrameTruncatedError, ShoalError } from '../errors.js';
import type { FrameDecoder } from './types.js';

/**
 * The one driver loop over a FrameDecoder (Netty's ByteToMessageDecoder).
 *
 * Chunks are kept as they arrive; they are merged into one buffer only when the
 * decoder says it has enough bytes to make progress, so a large frame arriving
 * in many small chunks is copied once, not once per chunk. Frames returned are
 * views into the chunk (or merged buffer), never copies.
 */
export class FrameReader {
  readonly #decoder: FrameDecoder;
  #buf: Buffer = Buffer.alloc(0);
  #off = 0;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #needed = 1;

  constructor(decoder: FrameDecoder) {
    this.#decoder = decoder;
  }

  /** Bytes received and not yet cut into frames. */
  get buffered(): number {
    return this.#buf.length - this.#off + this.#pendingBytes;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.#off === this.#buf.length && this.#pendingBytes === 0) {
      this.#buf = chunk;
      this.#off = 0;
    } else {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
    }
  }

  /** The next whole frame, or null when more bytes are needed. Throws the decoder's ShoalError. */
  next(): Buffer | null {
    const decoder = this.#decoder;
    for (;;) {
      const avail = this.#buf.length - this.#off;
      if (avail >= this.#needed && avail > 0) {
        const frame = decoder.decode(this.#buf, this.#off);
        if (frame !== null) {
          const consumed = decoder.consumed;
          if (!(consumed > 0) || consumed > avail) {
            // A decoder that emits without consuming would loop forever (Netty rejects it too).
            throw new ShoalError('SHOAL_FRAME_INVALID', `decoder consumed ${consumed} of ${avail} bytes for a frame`);
          }
          this.#off += consumed;
          this.#needed = 1;
          return frame;
        }
        this.#needed = Math.max(decoder.needed, avail + 1);
      }
      if (this.#pendingBytes === 0 || avail + this.#pendingBytes < this.#needed) return null;
      this.#merge();
    }
  }

  /** The peer finished: leftover bytes are an incomplete frame. */
  end(): void {
    const left = this.buffered;
    this.#discard();
    if (left > 0) throw new FrameTruncatedError(left);
  }

  #merge(): void {
    const parts = this.#off < this.#buf.length ? [this.#buf.subarray(this.#off), ...this.#pending] : this.#pending;
    this.#buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.#off = 0;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #discard(): void {
    this.#buf = Buffer.alloc(0);
    this.#off = 0;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#needed = 1;
  }
}
