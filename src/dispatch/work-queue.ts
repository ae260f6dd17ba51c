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
 *   QUEUED    waiting; a worker takes it with one compareExchange QUEUED -> RUNNING(gen)
 *   RUNNING   taken by the worker of generation `gen`; its handler runs (or ran) synchronously
 *   ASYNC     the handler returned a promise that has not settled
 * The main thread frees a slot when its last reply record arrives (reply-ring.ts). A
 * worker that dies leaves its slots RUNNING/ASYNC with its generation: the main thread
 * finds them once the thread has exited (nothing can write any more) and retries or
 * fails them (pool.ts). Taking by compareExchange on the slot itself makes ownership
 * and taking one atomic step: no window in which a message is taken but not owned.
 *
 * HEAD only hints where the oldest waiting message is: a worker that read a stale
 * position may take a later message out of order, which is harmless (a connection
 * puts its replies back in sequence order); a position whose slot is no longer
 * QUEUED is skipped.
 */

export const CTL_TAIL = 0;
export const CTL_HEAD = 1;
/** Workers parked in Atomics.wait on TAIL. */
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
export const FIELDS = 8;
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

export interface WorkQueueBuffers {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  addresses: SharedArrayBuffer;
  slots: number;
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

  constructor(b: WorkQueueBuffers) {
    const slots = b.slots;
    const orderLength = orderSize(slots);
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
    this.data = new Uint8Array(b.data);
    this.addresses = new Uint8Array(b.addresses);
    this.slots = slots;
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

/** The buffers for `slots` message slots and `dataBytes` of message data. */
export function createWorkQueue(slots: number, dataBytes: number): WorkQueueBuffers {
  const bytes = align8(CTL_WORDS * 4 + slots * 4 + slots * FIELDS * 4) + slots * 8 + orderSize(slots) * 4;
  return {
    control: new SharedArrayBuffer(bytes),
    data: new SharedArrayBuffer(dataBytes),
    addresses: new SharedArrayBuffer(ADDR_ENTRIES * ADDR_ENTRY_BYTES),
    slots,
  };
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
    Atomics.notify(this.view.ctl, CTL_TAIL, n);
  }
}

/** A worker's side: take the oldest waiting message, park when there is none. */
export class WorkQueueReader {
  readonly view: WorkQueueView;

  constructor(view: WorkQueueView) {
    this.view = view;
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

  /**
   * Park until a message may be waiting, `stop` or a control request is raised, or
   * `timeoutMs` passes. Returns at once if the queue is not empty.
   */
  park(timeoutMs: number, controlSeen: number): void {
    const ctl = this.view.ctl;
    const t = Atomics.load(ctl, CTL_TAIL);
    if (Atomics.load(ctl, CTL_HEAD) !== t) return;
    Atomics.add(ctl, CTL_SLEEPERS, 1);
    // Checked again after announcing ourselves: a writer that appended before seeing
    // SLEEPERS > 0 changed TAIL, so the wait below returns at once ('not-equal').
    if (Atomics.load(ctl, CTL_HEAD) === t && Atomics.load(ctl, CTL_STOP) === 0 && Atomics.load(ctl, CTL_CONTROL) === controlSeen) {
      Atomics.wait(ctl, CTL_TAIL, t, timeoutMs);
    }
    Atomics.sub(ctl, CTL_SLEEPERS, 1);
  }

  /** Like park(), without blocking the thread: the event loop runs while it waits. */
  async parkAsync(timeoutMs: number, controlSeen: number): Promise<void> {
    const ctl = this.view.ctl;
    const t = Atomics.load(ctl, CTL_TAIL);
    if (Atomics.load(ctl, CTL_HEAD) !== t) return;
    Atomics.add(ctl, CTL_SLEEPERS, 1);
    try {
      if (Atomics.load(ctl, CTL_HEAD) === t && Atomics.load(ctl, CTL_STOP) === 0 && Atomics.load(ctl, CTL_CONTROL) === controlSeen) {
        const w = Atomics.waitAsync(ctl, CTL_TAIL, t, timeoutMs);
        if (w.async) await w.value;
      }
    } finally {
      Atomics.sub(ctl, CTL_SLEEPERS, 1);
    }
  }
}
