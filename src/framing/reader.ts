import { FrameTruncatedError, ShoalError } from '../errors.js';
import type { FrameDecoder } from './types.js';

/**
 * The one driver loop over a FrameDecoder (Netty's ByteToMessageDecoder).
 *
 * Chunks are kept as they arrive; they are merged into one buffer only when the
 * decoder says it has enough bytes to make progress, so a large frame arriving
 * in many small chunks is copied once, not once per chunk. Frames returned are
 * views into the chunk (or merged buffer), never copies.
 *
 * A decoder that cannot say how many bytes it needs (a delimiter scan) asks for
 * one more byte each time, so every new chunk causes a merge. Merged bytes go
 * into a buffer grown geometrically (Vec-style): a later chunk is appended into
 * its spare room, and the bytes already held are copied only when it doubles,
 * so a long line arriving in small chunks costs O(n) copying, not O(n²). The price
 * is memory: the buffer may be up to twice the bytes held (the decoder's maxFrame
 * bounds those).
 * Bytes before #off are never written again: frames handed out still view them.
 */
/** One shared empty buffer: a reader on an idle connection allocates nothing. */
const EMPTY = Buffer.alloc(0);

/** Drives a FrameDecoder over a byte stream: push() chunks in, frames come out in order. */
export class FrameReader {
  readonly #decoder: FrameDecoder;
  /** Bytes received: [#off, #buf.length) not yet cut. A chunk, or a view of #room. */
  #buf: Buffer = EMPTY;
  #off = 0;
  /** The buffer we allocated for merges when #buf views its start, else null (never a peer's chunk). */
  #room: Buffer | null = null;
  /** Chunks not merged yet (null while there are none: idle readers allocate nothing). */
  #pending: Buffer[] | null = null;
  #pendingBytes = 0;
  #needed = 1;

  constructor(decoder: FrameDecoder) {
    this.#decoder = decoder;
  }

  /** Bytes received and not yet cut into frames. */
  get buffered(): number {
    return this.#buf.length - this.#off + this.#pendingBytes;
  }

  /** Feed one chunk of the stream; emits every complete frame it finishes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.#off === this.#buf.length && this.#pendingBytes === 0) {
      this.#buf = chunk;
      this.#off = 0;
      this.#room = null;
    } else {
      (this.#pending ??= []).push(chunk);
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
      if (this.#pendingBytes === 0 && avail === 0 && this.#buf !== EMPTY) {
        // Drained: drop the last chunk (or a merge buffer up to 2x a frame) so an idle
        // connection holds no bytes. Frames already handed out keep their own views.
        this.#buf = EMPTY;
        this.#off = 0;
        this.#room = null;
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
    const held = this.#buf.length - this.#off;
    const pending = this.#pending ?? [];
    const room = this.#room;
    if (held === 0 && pending.length === 1) {
      // Nothing left of the current buffer: the waiting chunk becomes it, uncopied.
      this.#buf = pending[0]!;
      this.#off = 0;
      this.#room = null;
    } else if (room !== null && this.#buf.length + this.#pendingBytes <= room.length) {
      // Append into the spare room after the held bytes; nothing already held moves.
      let end = this.#buf.length;
      for (const c of pending) {
        room.set(c, end);
        end += c.length;
      }
      this.#buf = room.subarray(0, end);
    } else {
      // A new buffer, with room to double when the held bytes are most of it (a growing scan);
      // just the bytes needed when new chunks are most of it (a known length, copied once).
      const total = held + this.#pendingBytes;
      const next = Buffer.allocUnsafe(Math.max(total, 2 * held));
      next.set(this.#buf.subarray(this.#off), 0);
      let end = held;
      for (const c of pending) {
        next.set(c, end);
        end += c.length;
      }
      this.#buf = next.subarray(0, end);
      this.#off = 0;
      this.#room = next;
    }
    this.#pending = null;
    this.#pendingBytes = 0;
  }

  #discard(): void {
    this.#buf = EMPTY;
    this.#off = 0;
    this.#room = null;
    this.#pending = null;
    this.#pendingBytes = 0;
    this.#needed = 1;
  }
}
