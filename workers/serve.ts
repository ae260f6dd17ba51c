/**
 * A worker's life: take the oldest waiting message from the shared queue, run it,
 * publish its replies at once, take the next; park when there is none.
 *
 * The loop is an async function that yields to this thread's event loop now and then
 * (timers and I/O of handlers, promise continuations) and whenever an async handler
 * is pending; otherwise it parks in Atomics.wait ('sync' idle wait: the fastest wake
 * up) or Atomics.waitAsync ('async': the event loop runs while idle).
 */
import { receiveMessageOnPort } from 'node:worker_threads';
import { startCpuProfile, stopCpuProfile } from '../src/admin/profile.js';
import type { WorkerMeter } from '../src/admin/shared.js';
import { serializeError } from '../src/errors.js';
import type { SerializedError } from '../src/errors.js';
import { R_CLOSE, R_ERROR, R_PUSH, R_REPLY, ReplyWriter } from '../src/dispatch/reply-ring.js';
import { pushesLength, writePushes } from '../src/dispatch/push-wire.js';
import {
  CTL_CONTROL,
  CTL_DOORBELL,
  CTL_MAIN_WAITING,
  CTL_STOP,
  ADDR_ENTRY_BYTES,
  ADDR_INLINE,
  F_ADDR_INDEX,
  F_ADDR_LENGTH,
  F_PROXY_LENGTH,
  F_CONNECTION,
  F_LENGTH,
  F_OFFSET,
  F_PORT,
  F_SEQUENCE,
  F_SHORT,
  FIELDS,
  HOLD_WINDOW_MS,
  PHASE_ASYNC,
  WorkQueueReader,
  WorkQueueView,
  owned,
} from '../src/dispatch/work-queue.js';
import { W_CURRENT, W_STARTED, W_THREAD } from '../src/dispatch/protocol.js';
import type { ControlMessage, ControlRequest, IdleWait, ServeTask, WorkerNotice } from '../src/dispatch/protocol.js';
import type { FrameEncoder } from '../src/framing/types.js';
import { MessageRunner } from './message.js';
import type { ReplySink } from './message.js';
import { Context } from './runtime.js';
import type { HandlerRuntime, Replies } from './runtime.js';

/** A parked worker wakes at least this often (ms) to let its event loop turn. */
const PARK_MS = 20;
/** While busy, the event loop turns at least this often (ms): handlers' timers, the loop-delay monitor. */
const YIELD_MS = 10;
/** With async handlers pending, this often (ms): their I/O completes only in a loop turn. */
const YIELD_PENDING_MS = 1;


const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const encoder8 = new TextEncoder();

/** With a user framing the workers have no encoder: a push body goes bare, the main thread frames it. */
const BARE: FrameEncoder = {
  frameLength: (n) => n,
  encodeInto: (body, buf, off) => {
    buf.set(body, off);
    return body.length;
  },
};

/** Writes a message's outcome into the reply ring, framed by the built-in encoder. */
class RingSink implements ReplySink<number> {
  readonly #out: ReplyWriter;
  readonly #encoder: FrameEncoder | null;
  /** While a handler runs synchronously: when it started, and the clock read at its commit (-1: none yet). */
  inSync = false;
  /** Replies published by synchronous runs whose doorbell has not rung yet (see HOLD_WINDOW_MS). */
  unrung = 0;
  /** When the oldest of them was published (performance.now()). */
  heldSince = 0;
  t0 = 0;
  clock = -1;
  /** Sync handler time of each pending async message, by slot: an async message's cost is its sync part. */
  readonly asyncCost: Float64Array;

  /** Reply bodies are already frames (RESP, HandlerRuntime.repliesFramed): copied without the framing's check. */
  readonly #framed: boolean;

  constructor(out: ReplyWriter, encoder: FrameEncoder | null, slots: number, framed: boolean) {
    this.#out = out;
    this.#encoder = encoder;
    this.asyncCost = new Float64Array(slots);
    this.#framed = encoder !== null && encoder.identity === true && framed;
  }

  replies(slot: number, ctx: Context, replies: Replies, close: boolean): void {
    const enc = this.#encoder;
    // Sized first: frameLength throws for a reply over maxFrame before anything is written.
    let total = 0;
    if (replies !== null) {
      if (Array.isArray(replies)) for (const r of replies) total += enc ? enc.frameLength(r.length) : 4 + r.length;
      else total = enc ? enc.frameLength(replies.length) : 4 + replies.length;
    }
    const pushes = ctx.encodedPushes;
    if (pushes !== null) {
      // The pushes' record first (sized before either is written: all or nothing); their R_REPLY follows.
      const framer = enc ?? BARE;
      const { buf, offset } = this.#out.reserve(pushesLength(pushes, framer));
      this.#out.commit(R_PUSH, slot, writePushes(pushes, framer, buf, offset), 0);
    }
    const { buf, offset } = this.#out.reserve(total);
    let off = offset;
    if (replies !== null) {
      if (Array.isArray(replies)) for (const r of replies) off += this.#one(r, buf, off);
      else off += this.#one(replies, buf, off);
    }
    let cost: number;
    if (this.inSync) cost = (this.clock = performance.now()) - this.t0;
    else cost = this.asyncCost[slot]!;
    this.#out.commit(close ? R_REPLY | R_CLOSE : R_REPLY, slot, off - offset, cost);
    // A synchronous reply's doorbell is the loop's to ring (it may hold it for the next one).
    if (!this.inSync) this.#out.ring();
    else if (this.unrung++ === 0) this.heldSince = this.clock;
  }

  /** Ring the doorbell for the replies published but not yet announced. */
  ringOwed(): void {
    if (this.unrung === 0) return;
    this.unrung = 0;
    this.#out.ring();
  }

  /** One reply frame; with no encoder (a user framing) as [u32 BE length][body] for the main thread to frame. */
  #one(body: Uint8Array, buf: Uint8Array, off: number): number {
    const enc = this.#encoder;
    if (this.#framed) {
      buf.set(body, off);
      return body.length; // sized by frameLength() in replies()
    }
    if (enc !== null) return enc.encodeInto(body, buf, off);
    new DataView(buf.buffer, buf.byteOffset).setUint32(off, body.length);
    buf.set(body, off + 4);
    return 4 + body.length;
  }

  failed(slot: number, _ctx: Context, error: SerializedError): void {
    this.#out.writeRecord(R_ERROR, slot, encoder8.encode(JSON.stringify(error)), 0);
  }
}

export async function serve(task: ServeTask, runtime: HandlerRuntime, encoder: FrameEncoder | null, threadId: number, meter: WorkerMeter | null, handlerTimeout: number, idleWait: IdleWait): Promise<void> {
  const view = new WorkQueueView(task.queue);
  const reader = new WorkQueueReader(view, task.shard);
  const { ctl, state, fields, queuedAt, data, addresses } = view;
  const out = new ReplyWriter(task.ring, task.overflow, ctl, CTL_DOORBELL, CTL_MAIN_WAITING);
  const cell = new Int32Array(task.cell, 0, 2);
  const started = new Float64Array(task.cell, 0, 2);
  cell[W_CURRENT] = -1;
  Atomics.store(cell, W_THREAD, threadId);
  const sink = new RingSink(out, encoder, view.slots, runtime.repliesFramed);
  const runner = new MessageRunner<number>(runtime, sink, handlerTimeout);
  const dataBuffer = data.buffer as SharedArrayBuffer;
  const gen = task.gen;
  const asyncPhase = owned(gen, PHASE_ASYNC);
  const timed = handlerTimeout > 0;
  let pending = 0;
  /** A message of our own queue (affinity) is async and pending: the next one waits for it (one at a time, in order). */
  let ownBusy = false;
  let controlSeen = Atomics.load(ctl, CTL_CONTROL);
  let lastTurn = performance.now();

  const notice = (n: WorkerNotice): void => task.control.postMessage(n);
  notice({ type: 'ready', threadId });

  const settle = (route: number | undefined, t0: number) => (): void => {
    pending--;
    if (meter !== null) meter.handlers(route, performance.now() - t0, 1);
  };
  const settleOwn = (route: number | undefined, t0: number) => (): void => {
    ownBusy = false;
    settle(route, t0)();
    reader.wakeSelf(); // we may be parked with our own queue waiting on this message
  };

  let tPrev = performance.now();
  for (;;) {
    if (Atomics.load(ctl, CTL_STOP) !== 0) break;
    const c = Atomics.load(ctl, CTL_CONTROL);
    if (c !== controlSeen) {
      controlSeen = c;
      sink.ringOwed();
      await answerControls(task);
    }
    // Our own queue first: only this worker can run those messages.
    let slot = ownBusy ? -1 : reader.takeOwn(gen);
    const own = slot >= 0;
    if (!own) slot = reader.take(gen);
    if (slot < 0) {
      sink.ringOwed();
      if (pending > 0 || idleWait === 'async') await reader.parkAsync(PARK_MS, controlSeen, !ownBusy);
      else {
        reader.park(PARK_MS, controlSeen, !ownBusy);
        if (performance.now() - lastTurn >= PARK_MS) {
          await turn();
          lastTurn = performance.now();
        }
      }
      tPrev = performance.now();
      meter?.idle(tPrev);
      continue;
    }

    const b = slot * FIELDS;
    if (sink.unrung > 0 && (fields[b + F_SHORT] === 0 || tPrev - sink.heldSince >= HOLD_WINDOW_MS || Atomics.load(ctl, CTL_MAIN_WAITING) === 0)) sink.ringOwed();

    const at = fields[b + F_OFFSET]!;
    const addrLength = fields[b + F_ADDR_LENGTH]!;
    const proxyLength = fields[b + F_PROXY_LENGTH]!;
    const frame = Buffer.from(dataBuffer, view.frameOffset(slot), fields[b + F_LENGTH]!);
    const index = fields[b + F_ADDR_INDEX]!;
    const ctx =
      index === ADDR_INLINE
        ? new Context(fields[b + F_CONNECTION]!, fields[b + F_SEQUENCE]!, null, fields[b + F_PORT]!, undefined, data, at, addrLength)
        : new Context(fields[b + F_CONNECTION]!, fields[b + F_SEQUENCE]!, null, fields[b + F_PORT]!, undefined, addresses, index * ADDR_ENTRY_BYTES + 1, addresses[index * ADDR_ENTRY_BYTES]!);
    // A copy: a handler may read ctx.proxy after its message (and these bytes) are done.
    if (proxyLength > 0) ctx.setProxy(Buffer.from(data.subarray(at + addrLength, at + addrLength + proxyLength)));
    if (timed) started[W_STARTED] = Date.now();
    cell[W_CURRENT] = slot;
    const t0 = tPrev;
    sink.t0 = t0;
    sink.clock = -1;
    sink.inSync = true;
    const done = runner.run(slot, frame, ctx);
    sink.inSync = false;
    const t1 = sink.clock >= 0 ? sink.clock : performance.now();
    cell[W_CURRENT] = -1;
    if (done !== undefined) {
      Atomics.store(state, slot, asyncPhase);
      sink.asyncCost[slot] = t1 - t0;
      pending++;
      if (own) {
        ownBusy = true;
        void done.then(settleOwn(ctx.routeId, t0));
      } else {
        void done.then(settle(ctx.routeId, t0));
      }
    } else if (meter !== null) {
      meter.handlers(ctx.routeId, t1 - t0, 1);
    }
    if (meter !== null) {
      const wait = performance.timeOrigin + t0 - queuedAt[slot]!;
      meter.batch(1, wait > 0 ? wait : 0, t1 - t0, t1);
    }
    tPrev = t1;
    if (t1 - lastTurn >= (pending > 0 ? YIELD_PENDING_MS : YIELD_MS)) {
      sink.ringOwed();
      await turn();
      lastTurn = tPrev = performance.now();
    }
  }

  sink.ringOwed();
  // Stopping: what is pending finishes (the main thread bounds how long it waits for us).
  // (Not parkAsync: with STOP raised it returns at once, and a loop of microtasks would starve their I/O.)
  while (pending > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  await runtime.teardown();
}

async function answerControls(task: ServeTask): Promise<void> {
  for (;;) {
    const m = receiveMessageOnPort(task.control)?.message as ControlMessage | undefined;
    if (m === undefined) return;
    let answer: WorkerNotice;
    try {
      answer = { type: 'answer', id: m.id, value: await control(m.request) };
    } catch (err) {
      answer = { type: 'answer', id: m.id, error: serializeError(err) };
    }
    task.control.postMessage(answer);
  }
}

async function control(req: ControlRequest): Promise<unknown> {
  switch (req.op) {
    case 'profile-start':
      await startCpuProfile(req.intervalUs);
      return null;
    case 'profile-stop':
      return stopCpuProfile();
  }
}
