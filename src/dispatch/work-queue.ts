/**
 * The pool's one work queue, in shared memory: the main thread appends messages,
 * whichever worker is free takes the oldest. No message waits behind a busy worker
 * while another is idle (work is pulled, not pushed), and handing one over costs a
 * copy into shared memory and a few atomic stores: no task, no promise, no postMessage.
 *
 * Two SharedArrayBuffers, made by the main thread and shared with every worker:
 *
 *   control: Int32 x CTL_WORDS   [TAIL, HEAD, SLEEPERS, STOP, DOORBELL, MAIN_WAITING, CONTROL]
 *            Int32 x slots       state of each message slot (below)
 *            Uint32 x slots x F  fields: connection id, sequence, data offset,
 *                                address length, frame length, remote port
 *            Float64 x slots     when the message was queued (metrics only)
 *            Int32 x order       message slots in queue order, positions [HEAD, TAIL)
 *   data:    bytes of the messages: [remote address, latin1, unless in the table]
 *            [PROXY header (proxy-wire.ts), only behind a trusted proxy][frame body]
 *   addresses: ADDR_ENTRIES x ADDR_ENTRY_BYTES [length][latin1 text]: the remote
 *            addresses seen so far, each written once; a message names its entry
 *            (F_ADDR_INDEX) instead of carrying the text (writing it per message cost
 *            ~8% of the main thread's time per pooled message). Entries never change,
 *            so a message in flight always reads its own; once the table is full, new
 *            addresses travel inline before the frame.
 *
 * A message slot's state:
 *   FREE      the main thread owns it (filling it, or it is done)
 *   QUEUED    waiting in the shared queue; a worker takes it with one compareExchange QUEUED -> RUNNING(gen)
 *   QUEUED_OWN  waiting in a shard's own queue; only that shard's worker takes it (QUEUED_OWN -> RUNNING)
 *   RUNNING   taken by the worker of generation `gen`; its handler runs (or ran) synchronously
 *   ASYNC     the handler returned a promise that has not settled
 * The main thread frees a slot when its last reply record arrives (reply-ring.ts). A
 * worker that dies leaves its slots RUNNING/ASYNC with its generation: the main thread
 * finds them once the thread has exited (nothing can write any more) and retries or
 * fails them (pool.ts). Taking by compareExchange on the slot itself makes ownership
 * and taking one atomic step: no window in which a message is taken but not owned.
 *
 * Affinity (pool.ts): a message with a shard (a worker position 0..shards-1, stable
 * across that worker's replacements) goes to that shard's own queue instead, a
 * single-producer single-consumer ring only its worker reads, in order. Each shard
 * also has its park words: a worker parks on its own WAKE word, so the main thread
 * wakes exactly the worker a message is for (or, for the shared queue, as many
 * parked workers as there are messages).
 *
 *   shards:  Int32 x SHARD_WORDS x shards  [OWN_TAIL, OWN_HEAD, PARKED, WAKE] each
 *            Int32 x ownSize x shards      each shard's ring of message slots
 *
 * HEAD only hints where the oldest waiting message is: a worker that read a stale
 * position may take a later message out of order, which is harmless (a connection
 * puts its replies back in sequence order); a position whose slot is no longer
 * QUEUED is skipped. The two queued states differ for that reason: a stale shared
 * position may name a slot that was freed and queued again in a shard's own queue,
 * and its compareExchange (QUEUED -> RUNNING) must not take that message from its shard.
 */

export const CTL_TAIL = 0;
export const CTL_HEAD = 1;
/** Workers parked (each on its shard's WAKE word). */
export const CTL_SLEEPERS = 2;
/** 1: workers finish what they hold and return (shutdown). */
export const CTL_STOP = 3;
/** Bumped by a worker each time it publishes replies; the main thread waits on it. */
export const CTL_DOORBELL = 4;
/** 1 while the main thread is parked in Atomics.waitAsync on DOORBELL. */
export const CTL_MAIN_WAITING = 5;
/** Bumped when a control request is posted to some worker (they check their port). */
export const CTL_CONTROL = 6;
const CTL_WORDS = 8;

export const STATE_FREE = 0;
export const STATE_QUEUED = 1;
/** Generation 0 with a running phase: no taken state has generation 0, so this is no owner's either. */
export const STATE_QUEUED_OWN = 2;
export const PHASE_RUNNING = 2;
export const PHASE_ASYNC = 3;
const PHASE_BITS = 2;
const PHASE_MASK = (1 << PHASE_BITS) - 1;

export const F_CONNECTION = 0;
export const F_SEQUENCE = 1;
export const F_OFFSET = 2;
export const F_ADDR_LENGTH = 3;
export const F_LENGTH = 4;
export const F_PORT = 5;
export const F_ADDR_INDEX = 6;
/** Bytes of the connection's PROXY header (proxy-wire.ts) between the address and the frame; 0 without one. */
export const F_PROXY_LENGTH = 7;
/** The shard whose worker alone runs this message, plus one; 0: any worker (the shared queue). */
export const F_SHARD = 8;
/** 1: the message's kind is expected to take under HOLD_BELOW_MS, so a reply may wait for it (workers/serve.ts). */
export const F_SHORT = 9;
export const FIELDS = 10;

/**
 * A worker's published reply may wait (its doorbell unrung) while the same worker runs a
 * message whose kind is expected to take less than this (ms), so that the main thread,
 * parked on the doorbell, wakes once for several replies (HOLD_WINDOW_MS below).
 */
export const HOLD_BELOW_MS = 0.2;

/**
 * A published reply's doorbell waits while its worker runs more messages when the main
 * thread is parked on it and the next message is expected to be short (F_SHORT: under
 * HOLD_BELOW_MS): the main thread then wakes once, and writes once, for several replies.
 * The hold ends before a message that starts HOLD_WINDOW_MS or more after the oldest
 * waiting reply was published, so a reply waits at most HOLD_WINDOW_MS + HOLD_BELOW_MS
 * (a misjudged message aside). On one connection with 16 pipelined ~100 us messages a
 * wake-up and a write per reply took 18 us of its time per request
 * (bench/results/2026-12-03-hold.md has the figures).
 */
export const HOLD_WINDOW_MS = 0.15;
/** F_ADDR_INDEX of a message whose address travels inline. */
export const ADDR_INLINE = 0xffffffff;
export const ADDR_ENTRIES = 4096;
export const ADDR_ENTRY_BYTES = 64;

/** The state word of a slot taken by generation `gen` (>= 1), in `phase`. */
export function owned(gen: number, phase: number): number {
  return (gen << PHASE_BITS) | phase;
}
export function phaseOf(state: number): number {
  return state & PHASE_MASK;
}
export function genOf(state: number): number {
  return state >>> PHASE_BITS;
}
/** Generations wrap below this (state words are Int32, two bits hold the phase). */
export const MAX_GEN = 2 ** 29;

const OWN_TAIL = 0;
const OWN_HEAD = 1;
const PARKED = 2;
const WAKE = 3;
const SHARD_WORDS = 4;

export interface WorkQueueBuffers {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  addresses: SharedArrayBuffer;
  slots: number;
  /** Worker positions: one own queue and one set of park words each. */
  shards: number;
}

/** Typed views over the queue's buffers, the same on both sides. */
export class WorkQueueView {
  readonly ctl: Int32Array;
  readonly state: Int32Array;
  readonly fields: Uint32Array;
  readonly queuedAt: Float64Array;
  readonly order: Int32Array;
  readonly orderMask: number;
  readonly data: Uint8Array;
  readonly addresses: Uint8Array;
  readonly slots: number;
  readonly shards: number;
  /** Per shard: [OWN_TAIL, OWN_HEAD, PARKED, WAKE]. */
  readonly shardWords: Int32Array;
  /** Per shard, its own ring of message slots (ownSize positions each). */
  readonly own: Int32Array;
  readonly ownMask: number;

  constructor(b: WorkQueueBuffers) {
    const slots = b.slots;
    const orderLength = orderSize(slots);
    const ownLength = ownSize(slots);
    let off = 0;
    this.ctl = new Int32Array(b.control, off, CTL_WORDS);
    off += CTL_WORDS * 4;
    this.state = new Int32Array(b.control, off, slots);
    off += slots * 4;
    this.fields = new Uint32Array(b.control, off, slots * FIELDS);
    off += slots * FIELDS * 4;
    off = align8(off);
    this.queuedAt = new Float64Array(b.control, off, slots);
    off += slots * 8;
    this.order = new Int32Array(b.control, off, orderLength);
    this.orderMask = orderLength - 1;
    off += orderLength * 4;
    this.shardWords = new Int32Array(b.control, off, b.shards * SHARD_WORDS);
    off += b.shards * SHARD_WORDS * 4;
    this.own = new Int32Array(b.control, off, b.shards * ownLength);
    this.ownMask = ownLength - 1;
    this.data = new Uint8Array(b.data);
    this.addresses = new Uint8Array(b.addresses);
    this.slots = slots;
    this.shards = b.shards;
  }

  /** Messages in shard `shard`'s own queue. */
  ownDepth(shard: number): number {
    const w = this.shardWords;
    const b = shard * SHARD_WORDS;
    return (Atomics.load(w, b + OWN_TAIL) - Atomics.load(w, b + OWN_HEAD)) | 0;
  }

  /** Where slot `slot`'s frame body starts in the data (after its inline address and PROXY header). */
  frameOffset(slot: number): number {
    const b = slot * FIELDS;
    const f = this.fields;
    return f[b + F_OFFSET]! + f[b + F_ADDR_LENGTH]! + f[b + F_PROXY_LENGTH]!;
  }

  /** Queue positions in use (waiting, or stale entries the head has not passed yet). */
  get depth(): number {
    return (Atomics.load(this.ctl, CTL_TAIL) - Atomics.load(this.ctl, CTL_HEAD)) | 0;
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Queue positions: a power of two, twice the slots (room for stale positions). */
function orderSize(slots: number): number {
  let n = 1;
  while (n < slots * 2) n *= 2;
  return n;
}

/** A shard's own queue: a power of two that holds every slot (positions are never stale there). */
function ownSize(slots: number): number {
  let n = 1;
  while (n < slots) n *= 2;
  return n;
}

/** The buffers for `slots` message slots, `dataBytes` of message data and `shards` worker positions. */
export function createWorkQueue(slots: number, dataBytes: number, shards = 1): WorkQueueBuffers {
  const bytes = align8(CTL_WORDS * 4 + slots * 4 + slots * FIELDS * 4) + slots * 8 + orderSize(slots) * 4 + shards * (SHARD_WORDS + ownSize(slots)) * 4;
  return {
    control: new SharedArrayBuffer(bytes),
    data: new SharedArrayBuffer(dataBytes),
    addresses: new SharedArrayBuffer(ADDR_ENTRIES * ADDR_ENTRY_BYTES),
    slots,
    shards,
  };
}

/** Wake the worker of `shard` if it is parked; true if it was. */
function wakeShard(v: WorkQueueView, shard: number): boolean {
  const b = shard * SHARD_WORDS;
  if (Atomics.load(v.shardWords, b + PARKED) === 0) return false;
  Atomics.add(v.shardWords, b + WAKE, 1);
  Atomics.notify(v.shardWords, b + WAKE);
  return true;
}

/**
 * Wake every worker, parked or about to park (stop, a control request): each WAKE
 * word changes, so a worker between its checks and its wait does not sleep either.
 */
export function wakeAll(v: WorkQueueView): void {
  for (let shard = 0; shard < v.shards; shard++) {
    const b = shard * SHARD_WORDS;
    Atomics.add(v.shardWords, b + WAKE, 1);
    Atomics.notify(v.shardWords, b + WAKE);
  }
}

/** The main thread's side: append a filled slot, wake a parked worker. */
export class WorkQueueWriter {
  readonly view: WorkQueueView;
  #tail = 0;

  constructor(view: WorkQueueView) {
    this.view = view;
  }

  /** Room for one more queue position? (Else the message waits on the main thread.) */
  get hasRoom(): boolean {
    return this.view.depth < this.view.order.length;
  }

  /** Room in shard `shard`'s own queue? */
  hasOwnRoom(shard: number): boolean {
    return this.view.ownDepth(shard) < this.view.ownMask + 1;
  }

  /**
   * Fill slot `slot`'s fields first (F_SHARD = shard + 1); this makes it visible to
   * shard `shard`'s worker alone, behind that shard's earlier messages.
   */
  appendOwn(slot: number, shard: number): void {
    const v = this.view;
    const w = v.shardWords;
    const b = shard * SHARD_WORDS;
    const t = Atomics.load(w, b + OWN_TAIL);
    v.own[shard * (v.ownMask + 1) + (t & v.ownMask)] = slot;
    Atomics.store(v.state, slot, STATE_QUEUED_OWN);
    Atomics.store(w, b + OWN_TAIL, (t + 1) | 0);
  }

  /** Wake shard `shard`'s worker if it is parked (after appendOwn). */
  wakeShard(shard: number): void {
    if (Atomics.load(this.view.ctl, CTL_SLEEPERS) > 0) wakeShard(this.view, shard);
  }

  /** Fill slot `slot`'s fields first; this makes it visible to the workers. */
  append(slot: number): void {
    const v = this.view;
    const t = this.#tail;
    v.order[t & v.orderMask] = slot;
    Atomics.store(v.state, slot, STATE_QUEUED);
    this.#tail = (t + 1) | 0;
    Atomics.store(v.ctl, CTL_TAIL, this.#tail);
  }

  /** Workers parked waiting for work. */
  get sleepers(): number {
    return Atomics.load(this.view.ctl, CTL_SLEEPERS);
  }

  /** Wake up to `n` parked workers. */
  wake(n: number): void {
    const v = this.view;
    for (let shard = 0; shard < v.shards && n > 0; shard++) if (wakeShard(v, shard)) n--;
  }
}

/** A worker's side: take the oldest waiting message, park when there is none. */
export class WorkQueueReader {
  readonly view: WorkQueueView;
  /** This worker's position: its own queue and park words. */
  readonly shard: number;
  readonly #base: number;
  readonly #ownBase: number;

  constructor(view: WorkQueueView, shard = 0) {
    this.view = view;
    this.shard = shard;
    this.#base = shard * SHARD_WORDS;
    this.#ownBase = shard * (view.ownMask + 1);
  }

  /** Is a message waiting in this worker's own queue? */
  get hasOwn(): boolean {
    const w = this.view.shardWords;
    return Atomics.load(w, this.#base + OWN_TAIL) !== Atomics.load(w, this.#base + OWN_HEAD);
  }

  /**
   * Take the next message of this worker's own queue, in order: its slot, or -1. A
   * position whose slot is no longer QUEUED_OWN for this shard (the main thread failed
   * it) is skipped.
   */
  takeOwn(gen: number): number {
    const v = this.view;
    const w = v.shardWords;
    const running = owned(gen, PHASE_RUNNING);
    for (;;) {
      const h = Atomics.load(w, this.#base + OWN_HEAD);
      if (h === Atomics.load(w, this.#base + OWN_TAIL)) return -1;
      const slot = v.own[this.#ownBase + (h & v.ownMask)]!;
      Atomics.store(w, this.#base + OWN_HEAD, (h + 1) | 0);
      if (v.fields[slot * FIELDS + F_SHARD] === this.shard + 1 && Atomics.compareExchange(v.state, slot, STATE_QUEUED_OWN, running) === STATE_QUEUED_OWN) return slot;
    }
  }

  /** Take a waiting message for generation `gen`: its slot, or -1 when none waits. */
  take(gen: number): number {
    const { ctl, state, order, orderMask } = this.view;
    const running = owned(gen, PHASE_RUNNING);
    for (;;) {
      const h = Atomics.load(ctl, CTL_HEAD);
      if (h === Atomics.load(ctl, CTL_TAIL)) return -1;
      const slot = order[h & orderMask]!;
      // Past this position whoever takes it (or found it taken already).
      Atomics.compareExchange(ctl, CTL_HEAD, h, (h + 1) | 0);
      if (Atomics.compareExchange(state, slot, STATE_QUEUED, running) === STATE_QUEUED) return slot;
    }
  }

  /** Nothing to take: the shared queue is empty and so is our own (when `own`: we may take from it now). */
  #idle(own: boolean, controlSeen: number): boolean {
    const ctl = this.view.ctl;
    return (
      Atomics.load(ctl, CTL_HEAD) === Atomics.load(ctl, CTL_TAIL) &&
      (!own || !this.hasOwn) &&
      Atomics.load(ctl, CTL_STOP) === 0 &&
      Atomics.load(ctl, CTL_CONTROL) === controlSeen
    );
  }

  /**
   * Announce that we park and check once more; returns the WAKE value to wait on, or
   * null if there is work after all (then we are not announced). A writer appends
   * first and reads SLEEPERS/PARKED after; we announce first and read the queues
   * after: one of the two sees the other, so no wake-up is lost.
   */
  #announce(own: boolean, controlSeen: number): number | null {
    const w = this.view.shardWords;
    const wake = Atomics.load(w, this.#base + WAKE);
    if (!this.#idle(own, controlSeen)) return null;
    Atomics.store(w, this.#base + PARKED, 1);
    Atomics.add(this.view.ctl, CTL_SLEEPERS, 1);
    if (this.#idle(own, controlSeen)) return wake;
    this.#unannounce();
    return null;
  }

  /** Wake this worker's own park (from its own event loop: an async message settled). */
  wakeSelf(): void {
    Atomics.add(this.view.shardWords, this.#base + WAKE, 1);
    Atomics.notify(this.view.shardWords, this.#base + WAKE);
  }

  #unannounce(): void {
    Atomics.sub(this.view.ctl, CTL_SLEEPERS, 1);
    Atomics.store(this.view.shardWords, this.#base + PARKED, 0);
  }

  /**
   * Park until a message may be waiting, `stop` or a control request is raised, or
   * `timeoutMs` passes. Returns at once if there is work. `own`: a message in our
   * own queue counts as work (false while our own queue must wait, see serve.ts).
   */
  park(timeoutMs: number, controlSeen: number, own = true): void {
    const wake = this.#announce(own, controlSeen);
    if (wake === null) return;
    Atomics.wait(this.view.shardWords, this.#base + WAKE, wake, timeoutMs);
    this.#unannounce();
  }

  /** Like park(), without blocking the thread: the event loop runs while it waits. */
  async parkAsync(timeoutMs: number, controlSeen: number, own = true): Promise<void> {
    const wake = this.#announce(own, controlSeen);
    if (wake === null) return;
    try {
      const w = Atomics.waitAsync(this.view.shardWords, this.#base + WAKE, wake, timeoutMs);
      if (w.async) await w.value;
    } finally {
      this.#unannounce();
    }
  }
}
