/**
 * One worker's replies on their way to the main thread: a single-producer,
 * single-consumer byte ring in shared memory. A worker publishes each message's
 * replies as soon as they are made (one atomic store), so a reply never waits for
 * other messages; the main thread drains every ring when the doorbell rings
 * (work-queue.ts CTL_DOORBELL), however many replies have piled up by then.
 *
 *   ring:    Int32 x RING_WORDS [WRITE, READ, WRITER_WAITING]  byte offsets into the body
 *   body:    records, each [u32 flags][u32 slot][u32 length][f32 cost ms][payload, padded to 4]
 *
 * A record that does not fit before the end of the body starts again at 0 behind a
 * WRAP word. The writer never lets WRITE catch up with READ (one byte short of full).
 * A payload larger than OVERFLOW_ABOVE goes as a SharedArrayBuffer through the
 * worker's overflow port instead (posted before its record is published, so the main
 * thread finds it with receiveMessageOnPort); such replies are rare and large.
 *
 * Payload by flags: the encoded reply frames of the message (R_REPLY), or the JSON of
 * the serialized error that the message's replies follow (R_ERROR: a separate record,
 * never the last one of a message), or the message's pushes (R_PUSH: one record just
 * before its R_REPLY record, payload written and read by push-wire.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import { receiveMessageOnPort } from 'node:worker_threads';

const RING_WRITE = 0;
const RING_READ = 1;
const RING_WRITER_WAITING = 2;
const RING_WORDS = 4;
const HEADER = 16;

/** The message's replies (maybe none); the last record of a message. */
export const R_REPLY = 1;
/** After writing its replies, close the connection (the 'close' error policy). */
export const R_CLOSE = 2;
/** The payload is a serialized error (JSON) for logs and metrics; more records follow. */
export const R_ERROR = 4;
/** The payload came through the overflow port. */
export const R_OVERFLOW = 8;
/** The payload is the message's pushes (push-wire.ts); its R_REPLY record follows. */
export const R_PUSH = 16;
/** Not a record: the next record is at offset 0. */
const R_WRAP = 0x80000000;

export interface ReplyRingBuffers {
  ring: SharedArrayBuffer;
}

export function createReplyRing(bytes: number): ReplyRingBuffers {
  return { ring: new SharedArrayBuffer(RING_WORDS * 4 + ((bytes + 3) & ~3)) };
}

/** Payloads above this go through the overflow port (a quarter of the ring). */
function overflowAbove(bodyBytes: number): number {
  return bodyBytes >>> 2;
}

const pad4 = (n: number): number => (n + 3) & ~3;

/** A record handed to the reader's callback: views valid until the callback returns. */
export interface ReplyRecord {
  flags: number;
  slot: number;
  costMs: number;
  /** The body of the ring (payload at [start, start + length)), or an overflow buffer. */
  bytes: Buffer;
  start: number;
  length: number;
}

/** The worker's side. */
export class ReplyWriter {
  readonly #ctl: Int32Array;
  readonly #body: Uint8Array;
  readonly #words: DataView;
  readonly #size: number;
  readonly #overflow: MessagePort;
  readonly #doorbell: Int32Array;
  readonly #doorbellIndex: number;
  readonly #waitingIndex: number;
  #write: number;
  /** Reserved record: where its header goes, where its payload is being written. */
  #at = 0;
  #payloadEnd = 0;
  #scratch: Uint8Array | null = null;

  constructor(b: ReplyRingBuffers, overflow: MessagePort, doorbell: Int32Array, doorbellIndex: number, waitingIndex: number) {
    this.#ctl = new Int32Array(b.ring, 0, RING_WORDS);
    this.#body = new Uint8Array(b.ring, RING_WORDS * 4);
    this.#words = new DataView(b.ring, RING_WORDS * 4);
    this.#size = this.#body.length;
    this.#overflow = overflow;
    this.#doorbell = doorbell;
    this.#doorbellIndex = doorbellIndex;
    this.#waitingIndex = waitingIndex;
    this.#write = Atomics.load(this.#ctl, RING_WRITE);
  }

  /**
   * Reserve a record with room for `length` payload bytes and return the buffer and
   * offset to write them at; then commit(). Blocks (bounded waits, ringing the
   * doorbell) while the ring is full.
   */
  reserve(length: number): { buf: Uint8Array; offset: number } {
    if (length > overflowAbove(this.#size)) {
      this.#scratch = new Uint8Array(new SharedArrayBuffer(length));
      this.#payloadEnd = -1;
      return { buf: this.#scratch, offset: 0 };
    }
    const need = HEADER + pad4(length);
    let w = this.#write;
    for (;;) {
      const r = Atomics.load(this.#ctl, RING_READ);
      if (w >= r) {
        if (w + need < this.#size || (w + need === this.#size && r > 0)) break; // fits before the end
        if (need < r) {
          // Fits at the start: leave a WRAP word (records are 4-aligned, so there is room for it).
          this.#words.setUint32(w, R_WRAP, true);
          w = 0;
          break;
        }
      } else if (w + need < r) {
        break;
      }
      this.#waitForRoom(r);
    }
    this.#write = w;
    this.#at = w;
    this.#payloadEnd = w + HEADER + length;
    return { buf: this.#body, offset: w + HEADER };
  }

  /** Publish the reserved record; `length` may be less than reserved. */
  commit(flags: number, slot: number, length: number, costMs: number): void {
    let f = flags;
    let at: number;
    if (this.#payloadEnd < 0) {
      const scratch = this.#scratch!;
      this.#scratch = null;
      this.#overflow.postMessage({ slot, buf: scratch.buffer, length });
      f |= R_OVERFLOW;
      // The record itself carries no payload.
      const { offset } = this.reserve(0);
      at = offset - HEADER;
      length = 0;
    } else {
      at = this.#at;
    }
    const d = this.#words;
    d.setUint32(at, f, true);
    d.setUint32(at + 4, slot, true);
    d.setUint32(at + 8, length, true);
    d.setFloat32(at + 12, costMs, true);
    this.#write = at + HEADER + pad4(length);
    if (this.#write === this.#size) this.#write = 0;
    Atomics.store(this.#ctl, RING_WRITE, this.#write);
  }

  /** Write a whole payload (copied) as one record. */
  writeRecord(flags: number, slot: number, payload: Uint8Array, costMs: number): void {
    const { buf, offset } = this.reserve(payload.length);
    buf.set(payload, offset);
    this.commit(flags, slot, payload.length, costMs);
  }

  /** Tell the main thread there is something to read (cheap when it is not parked). */
  ring(): void {
    const c = this.#doorbell;
    Atomics.add(c, this.#doorbellIndex, 1);
    if (Atomics.load(c, this.#waitingIndex) !== 0 && Atomics.exchange(c, this.#waitingIndex, 0) !== 0) {
      Atomics.notify(c, this.#doorbellIndex);
    }
  }

  #waitForRoom(read: number): void {
    Atomics.store(this.#ctl, RING_WRITER_WAITING, 1);
    // Notified whether or not the main thread announced a wait: while it polls (pool.ts
    // POLL_MS) it has not, and a pending wait of its own still ends (it drains at once).
    Atomics.add(this.#doorbell, this.#doorbellIndex, 1);
    // Cleared as ring() clears it: the main thread's backstop reads a set flag with a rung
    // doorbell as a wait no worker notified.
    Atomics.store(this.#doorbell, this.#waitingIndex, 0);
    Atomics.notify(this.#doorbell, this.#doorbellIndex);
    // Bounded: the main thread drains on every doorbell; the loop in reserve() re-checks.
    Atomics.wait(this.#ctl, RING_READ, read, 50);
    Atomics.store(this.#ctl, RING_WRITER_WAITING, 0);
  }
}

/** The main thread's side. */
export class ReplyReader {
  readonly #ctl: Int32Array;
  readonly #body: Buffer;
  readonly #words: DataView;
  readonly #size: number;
  readonly #overflow: MessagePort;
  #read: number;
  readonly #record: ReplyRecord = { flags: 0, slot: 0, costMs: 0, bytes: Buffer.alloc(0), start: 0, length: 0 };

  constructor(b: ReplyRingBuffers, overflow: MessagePort) {
    this.#ctl = new Int32Array(b.ring, 0, RING_WORDS);
    this.#body = Buffer.from(b.ring, RING_WORDS * 4);
    this.#words = new DataView(b.ring, RING_WORDS * 4);
    this.#size = this.#body.length;
    this.#overflow = overflow;
    this.#read = Atomics.load(this.#ctl, RING_READ);
  }

  /** The body of the ring: record payloads are views into it. */
  get body(): Buffer {
    return this.#body;
  }

  /**
   * Hand every published record to `each`, in order, then free their room.
   * Returns the number of records read.
   */
  drain(each: (r: ReplyRecord) => void): number {
    const end = Atomics.load(this.#ctl, RING_WRITE);
    let r = this.#read;
    let n = 0;
    const rec = this.#record;
    const d = this.#words;
    while (r !== end) {
      const flags = d.getUint32(r, true);
      if (flags === R_WRAP) {
        r = 0;
        continue;
      }
      rec.flags = flags;
      rec.slot = d.getUint32(r + 4, true);
      rec.length = d.getUint32(r + 8, true);
      rec.costMs = d.getFloat32(r + 12, true);
      rec.bytes = this.#body;
      rec.start = r + HEADER;
      if ((flags & R_OVERFLOW) !== 0) {
        const m = receiveMessageOnPort(this.#overflow)?.message as { slot: number; buf: SharedArrayBuffer; length: number } | undefined;
        if (m !== undefined) {
          rec.bytes = Buffer.from(m.buf);
          rec.start = 0;
          rec.length = m.length;
        }
      }
      r += HEADER + pad4(d.getUint32(r + 8, true));
      if (r === this.#size) r = 0;
      n++;
      each(rec);
    }
    if (n > 0) {
      this.#read = r;
      Atomics.store(this.#ctl, RING_READ, r);
      if (Atomics.load(this.#ctl, RING_WRITER_WAITING) !== 0) Atomics.notify(this.#ctl, RING_READ);
    }
    return n;
  }
}
