/**
 * Reply verification for one connection, byte-exact, at the cost of one memcmp per chunk.
 *
 * Every reply of a run is the same frame E (L bytes), so a healthy reply stream is
 * E E E E ... and a chunk read from the socket is a window of it starting at some
 * offset `pos` into E. The fast path compares the whole chunk against a buffer holding
 * E repeated (`ring`) starting at `pos`, in one Buffer.compare, and counts how many
 * frame ends the chunk crossed: no per-reply JS work at all.
 *
 * When a chunk does not match, the verifier switches to the slow path: a real frame
 * decoder for the framing (length, line, ...) cuts the stream from the start of the
 * current reply, each reply body is compared to the expected body (a reply that differs
 * counts as a mismatch, and still counts as a reply), and as soon as the bytes left over
 * are again a prefix of E the fast path resumes.
 *
 *   state      bytes held                      next chunk
 *   Fast(pos)  none (E[0..pos) is implied)     compare against ring[pos..]
 *   Slow       leftover: start of a reply      decode(leftover + chunk)
 */
import { createFraming } from '../framing/index.js';
import type { FrameDecoder, Framing } from '../framing/types.js';
import type { MessageSpec } from './message.js';

/** Largest chunk compared in one call; longer chunks are compared in pieces. */
const RING_TARGET = 256 * 1024;

export class ReplyVerifier {
  /** Replies whose bytes differed from the expected reply. */
  mismatches = 0;
  readonly #frame: Buffer;
  readonly #body: Buffer;
  readonly #ring: Buffer;
  readonly #framing: Framing;
  /** Fast path: bytes of the current reply already seen (all matching). -1 = slow path. */
  #pos = 0;
  #decoder: FrameDecoder | null = null;
  #leftover: Buffer | null = null;

  constructor(spec: Pick<MessageSpec, 'reply' | 'replyBody' | 'decodeFraming' | 'maxFrame'>) {
    this.#frame = Buffer.from(spec.reply);
    this.#body = Buffer.from(spec.replyBody);
    const L = this.#frame.length;
    const copies = Math.max(2, Math.ceil(RING_TARGET / L) + 1);
    this.#ring = Buffer.allocUnsafe(copies * L);
    for (let i = 0; i < copies; i++) this.#frame.copy(this.#ring, i * L);
    this.#framing = createFraming(spec.decodeFraming, spec.maxFrame);
  }

  /** Bytes of an incomplete reply held (or implied) right now. */
  get partial(): number {
    return this.#pos >= 0 ? this.#pos : this.#leftover?.length ?? 0;
  }

  /** Forget the stream (the connection was replaced). */
  reset(): void {
    this.#pos = 0;
    this.#decoder = null;
    this.#leftover = null;
  }

  /**
   * Feed bytes [start, end) of `chunk`; returns the number of replies completed (good or
   * not). `chunk` may be reused by the caller afterwards: nothing is kept by reference.
   * Throws the decoder's ShoalError when the stream cannot be framed at all.
   */
  push(chunk: Buffer, start = 0, end = chunk.length): number {
    let completed = 0;
    let at = start;
    if (this.#pos >= 0) {
      const L = this.#frame.length;
      const ring = this.#ring;
      let pos = this.#pos;
      while (at < end) {
        const n = Math.min(end - at, ring.length - pos);
        if (ring.compare(chunk, at, at + n, pos, pos + n) !== 0) break;
        at += n;
        pos += n;
        completed += Math.floor(pos / L);
        pos %= L;
      }
      this.#pos = pos;
      if (at === end) return completed;
      // Mismatch somewhere in [at, at + n): replay from the start of the current reply.
      this.#leftover = pos > 0 ? Buffer.from(this.#frame.subarray(0, pos)) : null;
      this.#decoder = this.#framing.createDecoder();
      this.#pos = -1;
    }
    return completed + this.#slow(chunk, at, end);
  }

  #slow(chunk: Buffer, start: number, end: number): number {
    const tail = Buffer.from(chunk.subarray(start, end)); // a copy: the caller reuses chunk
    let buf = this.#leftover ? Buffer.concat([this.#leftover, tail]) : tail;
    const decoder = this.#decoder!;
    let off = 0;
    let completed = 0;
    for (;;) {
      const frame = decoder.decode(buf, off);
      if (frame === null) break;
      off += decoder.consumed;
      completed++;
      if (!frame.equals(this.#body)) this.mismatches++;
    }
    buf = buf.subarray(off);
    const L = this.#frame.length;
    if (buf.length < L && this.#frame.compare(buf, 0, buf.length, 0, buf.length) === 0) {
      // Back in step: what is left is the start of a good reply. A fresh decoder is made
      // on the next mismatch, so the one holding this partial header can go.
      this.#pos = buf.length;
      this.#decoder = null;
      this.#leftover = null;
    } else {
      this.#leftover = buf.length > 0 ? buf : null;
    }
    return completed;
  }
}
