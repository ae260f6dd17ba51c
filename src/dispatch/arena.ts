/**
 * Room for messages in the work queue's shared data buffer (work-queue.ts), handed
 * out by the main thread and given back when each message's replies are in.
 *
 * The buffer is cut into chunks. Small messages are packed one after another into
 * the current chunk; a chunk is free again once every message in it is done, so a
 * message whose handler runs for seconds holds one chunk, not the whole buffer (a
 * ring freed in order would stall behind it). A message larger than a chunk takes a
 * run of free chunks of its own. The lowest free chunk is used first, so the pages
 * in use stay few and warm.
 */

/** Chunk size: many small messages share one; a 16 KiB echo still packs four. */
export const CHUNK_BYTES = 64 * 1024;

export class Arena {
  readonly #chunks: number;
  /** Per chunk: messages in it that are not done; -1 = free. */
  readonly #live: Int32Array;
  /** Per chunk: how many chunks its run spans (1 for a packed chunk). */
  readonly #span: Int32Array;
  #current = -1;
  #used = 0;

  constructor(bytes: number) {
    this.#chunks = Math.floor(bytes / CHUNK_BYTES);
    if (this.#chunks < 1) throw new RangeError(`an arena needs at least ${CHUNK_BYTES} bytes, got ${bytes}`);
    this.#live = new Int32Array(this.#chunks).fill(-1);
    this.#span = new Int32Array(this.#chunks).fill(1);
  }

  /** The largest message this arena can ever hold. */
  get capacity(): number {
    return this.#chunks * CHUNK_BYTES;
  }

  /**
   * Room for `bytes`: its offset in the buffer, or -1 when there is none now (the
   * message waits on the main thread until some room is given back).
   */
  alloc(bytes: number): number {
    if (bytes > CHUNK_BYTES) return this.#allocRun(Math.ceil(bytes / CHUNK_BYTES));
    const cur = this.#current;
    if (cur >= 0 && this.#used + bytes <= CHUNK_BYTES) {
      const at = cur * CHUNK_BYTES + this.#used;
      this.#used += bytes;
      this.#live[cur]!++;
      return at;
    }
    const next = this.#allocRun(1);
    if (next < 0) return -1;
    this.#seal();
    this.#current = next / CHUNK_BYTES;
    this.#used = bytes;
    return next;
  }

  /** Give back the room of the message at `offset`. */
  free(offset: number): void {
    const c = Math.floor(offset / CHUNK_BYTES);
    const left = --this.#live[c]!;
    if (left === 0 && c !== this.#current) this.#release(c);
  }

  /** The packed chunk is full: it is released once its last message is done. */
  #seal(): void {
    const cur = this.#current;
    this.#current = -1;
    if (cur >= 0 && this.#live[cur] === 0) this.#release(cur);
  }

  #release(c: number): void {
    const span = this.#span[c]!;
    for (let k = 0; k < span; k++) this.#live[c + k] = -1;
    this.#span[c] = 1;
  }

  /** The lowest run of `n` free chunks, taken with one message in it; its offset, or -1. */
  #allocRun(n: number): number {
    const live = this.#live;
    let start = 0;
    let len = 0;
    for (let c = 0; c < this.#chunks; c++) {
      if (live[c] !== -1) {
        len = 0;
        start = c + 1;
        continue;
      }
      if (++len === n) {
        for (let k = 0; k < n; k++) live[start + k] = 0;
        live[start] = 1;
        this.#span[start] = n;
        return start * CHUNK_BYTES;
      }
    }
    return -1;
  }
}
