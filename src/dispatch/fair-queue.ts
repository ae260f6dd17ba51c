import type { DispatchTarget } from './types.js';

/**
 * A lane gives at least this many frames per turn: a burst that arrived together
 * (one read's worth of pipelined requests) stays in one batch, so its replies come
 * back together and leave in one write. Splitting it over batches cost the 64-byte
 * echo benchmark ~40%: more writes, more reordering.
 */
const MIN_QUANTUM = 32;

/**
 * Drained lanes kept for reuse. A connection with one message at a time (most, under
 * an open-loop load) drains its lane on every batch; a new lane each time was the
 * main thread's largest allocation per request (~430 B), and garbage means scavenges,
 * which pause every connection.
 */
const SPARE_LANES = 256;
/** A lane whose arrays grew past this is not kept (one burst must not pin memory). */
const SPARE_LANE_MAX = 64;

/**
 * One connection's frames waiting for the pool: [head, tail) of the arrays, oldest
 * first. Written by index, not push(), so a recycled lane keeps its arrays' storage.
 * A connection holds a lane exactly while it is in the ready ring (take() detaches
 * a drained lane).
 */
class Lane {
  frames: (Buffer | null)[] = [];
  seqs: number[] = [];
  head = 0;
  tail = 0;
}

/** Frames taken for one batch, as parallel arrays. */
export interface Taken {
  targets: DispatchTarget[];
  seqs: number[];
  frames: Buffer[];
  bytes: number;
}

/**
 * The frames waiting for the pool, one lane per connection, taken round-robin.
 *
 * A single FIFO let one connection with a thousand pipelined frames delay every
 * other connection's next message by a thousand frames; here each batch takes an
 * equal share from every waiting connection, so a light client's message goes
 * out in the next batch however busy the heavy one is. Within a lane, order is
 * the connection's sequence order, so its frames sit together in a batch and
 * their replies coalesce into one write.
 */
export class FairQueue {
  /** Targets with waiting frames, in turn order; [#readyHead, length) is live. */
  #ready: DispatchTarget[] = [];
  #readyHead = 0;
  #size = 0;
  #bytes = 0;
  readonly #spare: Lane[] = [];

  /** Frames waiting. */
  get size(): number {
    return this.#size;
  }
  /** Bytes of frames waiting. */
  get bytes(): number {
    return this.#bytes;
  }

  push(target: DispatchTarget, seq: number, frame: Buffer): void {
    if (target.lane == null) {
      target.lane = this.#spare.pop() ?? new Lane();
      this.#ready.push(target);
    }
    const lane = target.lane as Lane;
    lane.frames[lane.tail] = frame;
    lane.seqs[lane.tail] = seq;
    lane.tail++;
    this.#size++;
    this.#bytes += frame.length;
  }

  /**
   * Put frames back at the front of their lanes (a retry after a worker died):
   * they are older than anything waiting, and their lanes go first.
   */
  requeue(targets: DispatchTarget[], seqs: number[], frames: Buffer[]): void {
    const byTarget = new Map<DispatchTarget, number[]>();
    targets.forEach((t, k) => {
      const list = byTarget.get(t);
      if (list) list.push(k);
      else byTarget.set(t, [k]);
    });
    for (const [t, ks] of byTarget) {
      if (t.lane == null) {
        t.lane = new Lane();
        if (this.#readyHead > 0) this.#ready[--this.#readyHead] = t;
        else this.#ready.unshift(t);
      }
      const lane = t.lane as Lane;
      lane.frames = [...ks.map((k) => frames[k]!), ...lane.frames.slice(lane.head, lane.tail)];
      lane.seqs = [...ks.map((k) => seqs[k]!), ...lane.seqs.slice(lane.head, lane.tail)];
      lane.head = 0;
      lane.tail = lane.frames.length;
      for (const k of ks) this.#bytes += frames[k]!.length;
      this.#size += ks.length;
    }
  }

  /**
   * Take up to `want` frames (and about `maxBytes`, at least one frame) for one
   * batch: an equal share from each waiting connection in turn.
   */
  take(want: number, maxBytes: number): Taken {
    const out: Taken = { targets: [], seqs: [], frames: [], bytes: 0 };
    const ready = this.#ready;
    while (out.frames.length < want && this.#readyHead < ready.length) {
      const waiting = ready.length - this.#readyHead;
      const quantum = Math.max(MIN_QUANTUM, Math.ceil((want - out.frames.length) / waiting));
      const t = ready[this.#readyHead++]!;
      const lane = t.lane as Lane;
      let k = 0;
      let full = false;
      while (k < quantum && lane.head < lane.tail) {
        const f = lane.frames[lane.head]!;
        if (out.frames.length > 0 && out.bytes + f.length > maxBytes) {
          full = true;
          break;
        }
        out.targets.push(t);
        out.seqs.push(lane.seqs[lane.head]!);
        out.frames.push(f);
        out.bytes += f.length;
        lane.frames[lane.head] = null; // the batch holds it now
        lane.head++;
        k++;
        if (out.frames.length >= want) break;
      }
      this.#endTurn(t, lane);
      if (full) break;
    }
    this.#compactReady();
    this.#size -= out.frames.length;
    this.#bytes -= out.bytes;
    return out;
  }

  /**
   * The frame next in turn (the one take(1) would give), or null when nothing waits;
   * peekTarget() and peekSeq() say whose it is, shift() takes it. The pool moves frames
   * one at a time while the shared queue has room: a take(1) and, on the first that finds
   * no room, a requeue() cost two arrays and a Map per refill, and requeue() copies the
   * lane (4 % of the main thread at 64 x 4 pipelined, ~100 us messages).
   */
  peekFrame(): Buffer | null {
    if (this.#readyHead >= this.#ready.length) return null;
    const lane = this.#ready[this.#readyHead]!.lane as Lane;
    return lane.frames[lane.head]!;
  }

  /** The connection of the frame peekFrame() gave. */
  peekTarget(): DispatchTarget {
    return this.#ready[this.#readyHead]!;
  }

  /** The sequence number of the frame peekFrame() gave. */
  peekSeq(): number {
    const lane = this.#ready[this.#readyHead]!.lane as Lane;
    return lane.seqs[lane.head]!;
  }

  /** Take the frame peekFrame() gave, exactly as take(1) would (the caller holds it). */
  shift(): void {
    if (this.#readyHead >= this.#ready.length) return;
    const t = this.#ready[this.#readyHead++]!;
    const lane = t.lane as Lane;
    const f = lane.frames[lane.head]!;
    lane.frames[lane.head] = null;
    lane.head++;
    this.#size--;
    this.#bytes -= f.length;
    this.#endTurn(t, lane);
    this.#compactReady();
  }

  /** A lane's turn is over: detach it if drained, else it goes again after the others. */
  #endTurn(t: DispatchTarget, lane: Lane): void {
    if (lane.head === lane.tail) {
      t.lane = null; // an idle connection keeps no lane (one is taken again on its next frame)
      this.#recycle(lane);
      return;
    }
    if (lane.head > 1024 && lane.head * 2 > lane.tail) {
      lane.frames = lane.frames.slice(lane.head, lane.tail);
      lane.seqs = lane.seqs.slice(lane.head, lane.tail);
      lane.tail -= lane.head;
      lane.head = 0;
    }
    this.#ready.push(t); // its turn again after the others
  }

  #compactReady(): void {
    if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
      this.#ready = this.#ready.slice(this.#readyHead);
      this.#readyHead = 0;
    }
  }

  #recycle(lane: Lane): void {
    // Its frames were nulled as they were taken: a spare lane holds no socket memory.
    if (this.#spare.length >= SPARE_LANES || lane.frames.length > SPARE_LANE_MAX) return;
    lane.head = lane.tail = 0;
    this.#spare.push(lane);
  }

  /** Drop everything waiting (shutdown: nobody is left to answer). */
  clear(): void {
    for (let i = this.#readyHead; i < this.#ready.length; i++) this.#ready[i]!.lane = null;
    this.#ready = [];
    this.#readyHead = 0;
    this.#size = 0;
    this.#bytes = 0;
  }
}
