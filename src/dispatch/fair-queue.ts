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
 * A connection holds a lane exactly while it is in one of the queue's two rings
 * (a drained lane is detached).
 */
class Lane {
  frames: (Buffer | null)[] = [];
  seqs: number[] = [];
  head = 0;
  tail = 0;
  /** Frames taken in its current turn. */
  taken = 0;
}

/** Frames taken for one batch, as parallel arrays. */
export interface Taken {
  targets: DispatchTarget[];
  seqs: number[];
  frames: Buffer[];
  bytes: number;
}

/** A ring of connections in turn order: [head, list.length) is live. */
class Ring {
  list: DispatchTarget[] = [];
  head = 0;
  get empty(): boolean {
    return this.head >= this.list.length;
  }
  first(): DispatchTarget {
    return this.list[this.head]!;
  }
  dropFirst(): void {
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.list.length) {
      this.list = this.list.slice(this.head);
      this.head = 0;
    }
  }
  pushFront(t: DispatchTarget): void {
    if (this.head > 0) this.list[--this.head] = t;
    else this.list.unshift(t);
  }
  clear(): void {
    this.list = [];
    this.head = 0;
  }
}

/**
 * The frames waiting for the pool, one lane per connection, taken in turns.
 *
 * A single FIFO let one connection with a thousand pipelined frames delay every
 * other connection's next message by a thousand frames; here connections take turns,
 * each giving a share of its frames, so a light client's message goes out after one
 * turn of each busy connection at most. Within a lane, order is the connection's
 * sequence order, so its frames sit together and their replies coalesce into one write.
 *
 * As in fq_codel, a connection that had nothing waiting starts in the `fresh` ring,
 * which goes before the others: a client with one message now and then overtakes the
 * pipeliners' turns instead of waiting behind each of them. A connection stays fresh
 * for one turn only, so none can hold on to the front by staying busy.
 */
export class FairQueue {
  /** Connections whose lane is new: their first turn goes first. */
  readonly #fresh = new Ring();
  /** Connections that had a whole turn and still have frames waiting. */
  readonly #ready = new Ring();
  #size = 0;
  #bytes = 0;
  readonly #spare: Lane[] = [];
  readonly #shiftQuantum: number;

  /**
   * `shiftQuantum`: how many frames shift() takes from one connection before it is the
   * next one's turn (take() has its own share). The pool passes twice its workers: a
   * connection's pipelined frames then run side by side and their replies come back
   * together, to leave in one write. One at a time (1), 64 connections x 4 pipelined
   * ~100 us messages made 0.79 writes and 0.73 reads per message (w0: 0.20 and 0.20)
   * and ran 10-17 % slower; a larger quantum saved no more syscalls, and only makes
   * the other connections wait longer for their turn.
   */
  constructor(shiftQuantum = 1) {
    this.#shiftQuantum = Math.max(1, Math.floor(shiftQuantum));
  }

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
      this.#fresh.list.push(target);
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
        this.#fresh.pushFront(t);
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

  /** The ring whose first connection has the turn, or null when nothing waits. */
  #turnRing(): Ring | null {
    if (!this.#fresh.empty) return this.#fresh;
    return this.#ready.empty ? null : this.#ready;
  }

  /**
   * Take up to `want` frames (and about `maxBytes`, at least one frame) for one
   * batch: a share from each waiting connection in turn.
   */
  take(want: number, maxBytes: number): Taken {
    const out: Taken = { targets: [], seqs: [], frames: [], bytes: 0 };
    for (let ring = this.#turnRing(); ring !== null && out.frames.length < want; ring = this.#turnRing()) {
      const waiting = this.#fresh.list.length - this.#fresh.head + this.#ready.list.length - this.#ready.head;
      const quantum = Math.max(MIN_QUANTUM, Math.ceil((want - out.frames.length) / waiting));
      const t = ring.first();
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
      this.#endTurn(ring, t, lane);
      if (full) break;
    }
    this.#size -= out.frames.length;
    this.#bytes -= out.bytes;
    return out;
  }

  /**
   * The frame next in turn, or null when nothing waits; peekTarget() and peekSeq() say
   * whose it is, shift() takes it. The pool moves frames one at a time while the shared
   * queue has room: a take(1) and, on the first that finds no room, a requeue() cost two
   * arrays and a Map per refill, and requeue() copies the lane (4 % of the main thread at
   * 64 x 4 pipelined, ~100 us messages).
   */
  peekFrame(): Buffer | null {
    const ring = this.#turnRing();
    if (ring === null) return null;
    const lane = ring.first().lane as Lane;
    return lane.frames[lane.head]!;
  }

  /** The connection of the frame peekFrame() gave. */
  peekTarget(): DispatchTarget {
    return this.#turnRing()!.first();
  }

  /** The sequence number of the frame peekFrame() gave. */
  peekSeq(): number {
    const lane = this.#turnRing()!.first().lane as Lane;
    return lane.seqs[lane.head]!;
  }

  /**
   * Take the frame peekFrame() gave (the caller holds it). The connection keeps its turn
   * for up to `shiftQuantum` frames; with a quantum of 1, shift() is take(1).
   */
  shift(): void {
    const ring = this.#turnRing();
    if (ring === null) return;
    const t = ring.first();
    const lane = t.lane as Lane;
    const f = lane.frames[lane.head]!;
    lane.frames[lane.head] = null;
    lane.head++;
    this.#size--;
    this.#bytes -= f.length;
    if (lane.head < lane.tail && ++lane.taken < this.#shiftQuantum) return;
    this.#endTurn(ring, t, lane);
  }

  /** A connection's turn is over: it leaves its ring, and goes to the back of `ready` if frames remain. */
  #endTurn(ring: Ring, t: DispatchTarget, lane: Lane): void {
    ring.dropFirst();
    lane.taken = 0;
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
    this.#ready.list.push(t);
  }

  #recycle(lane: Lane): void {
    // Its frames were nulled as they were taken: a spare lane holds no socket memory.
    if (this.#spare.length >= SPARE_LANES || lane.frames.length > SPARE_LANE_MAX) return;
    lane.head = lane.tail = 0;
    this.#spare.push(lane);
  }

  /** Drop everything waiting (shutdown: nobody is left to answer). */
  clear(): void {
    for (const ring of [this.#fresh, this.#ready]) {
      for (let i = ring.head; i < ring.list.length; i++) ring.list[i]!.lane = null;
      ring.clear();
    }
    this.#size = 0;
    this.#bytes = 0;
  }
}
