import { EventEmitter, once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import type { MessagePort, Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { HandlerLoadError, ShoalError, errorFromCode, serializeError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import type { Framing } from '../framing/types.js';
import { Context, HandlerRuntime, defaultErrorReply } from '../../workers/runtime.js';
import type { ErrorPolicy } from '../../workers/runtime.js';
import { waitAtMost } from '../wait.js';
import { Arena } from './arena.js';
import { FairQueue } from './fair-queue.js';
import { InlineExecutor, frameReplies } from './inline.js';
import type { HandlerTiming } from './inline.js';
import { OffloadPolicy } from './offload.js';
import type { OffloadMode } from './offload.js';
import { WORKER_CELL_BYTES, W_CURRENT, W_STARTED, W_THREAD } from './protocol.js';
import type { ControlMessage, ControlRequest, IdleWait, ServeResult, ServeTask, WorkerNotice, WorkerSpec } from './protocol.js';
import { R_CLOSE, R_ERROR, ReplyReader, createReplyRing } from './reply-ring.js';
import type { ReplyRecord } from './reply-ring.js';
import {
  CTL_CONTROL,
  CTL_DOORBELL,
  CTL_MAIN_WAITING,
  CTL_STOP,
  CTL_TAIL,
  ADDR_ENTRIES,
  ADDR_ENTRY_BYTES,
  ADDR_INLINE,
  FIELDS,
  F_ADDR_INDEX,
  F_ADDR_LENGTH,
  F_CONNECTION,
  F_LENGTH,
  F_OFFSET,
  F_PORT,
  F_SEQUENCE,
  MAX_GEN,
  PHASE_ASYNC,
  PHASE_RUNNING,
  STATE_FREE,
  STATE_QUEUED,
  WorkQueueView,
  WorkQueueWriter,
  createWorkQueue,
  genOf,
  phaseOf,
} from './work-queue.js';
import type { WorkQueueBuffers } from './work-queue.js';
import type { DispatchEvents, Dispatcher, DispatcherStats, DispatchTarget } from './types.js';

const WORKER_FILE = fileURLToPath(new URL('../../workers/worker.js', import.meta.url));

/**
 * Message slots: messages handed to the pool and not yet answered (waiting in the
 * queue, running, or async). More wait on the main thread, in the fair queue.
 */
const MESSAGE_SLOTS = 4096;
/** Each worker's reply ring; replies above a quarter of it take the overflow port. */
const RING_BYTES = 1024 * 1024;
/**
 * How much work (ms) the shared queue holds per worker beyond what runs: enough that
 * a worker finishing a message finds the next one without a round trip through the
 * main thread, little enough that a light connection's message, waiting in the fair
 * queue, is not stuck behind a heavy one's hundreds (the queue is first come, first
 * served; the fair queue behind it takes every connection in turn). Bounded per
 * worker by AHEAD_MIN and AHEAD_MAX messages; AHEAD_MIN while the cost is unknown
 * (the first burst) and after a worker died (the next message may kill one too).
 */
const QUEUE_AHEAD_MS = 2;
const AHEAD_MIN = 2;
/**
 * Measured in-process (200k pooled 64 B echoes, 256 in flight, 2 workers, main thread
 * busy time per message; bench/handoff.ts): 32 -> 6.6-7.6 µs, 256 -> 4.8-5.1 µs (the
 * workers ran dry and parked, and each wake is a futex syscall on the main thread).
 */
const AHEAD_MAX = 256;
/** A message of a dying worker whose culprit cannot be named is retried at most this often. */
const MAX_BLIND_RETRIES = 1;
/** Wait at most this long (ms) for a dead worker's thread to be gone before its messages are recovered anyway. */
const EXIT_WAIT_MS = 5000;

export interface PoolOptions {
  workers: number;
  maxPendingFrames: number;
  maxPendingBytes: number;
  startupTimeout: number;
  /** How an idle worker waits (protocol.ts IdleWait). */
  atomics: IdleWait;
  offload: OffloadMode;
  onHandlerError: ErrorPolicy;
  /** ms one message's handler may run before its worker is terminated; 0 = off. */
  handlerTimeout: number;
}

/** Why a worker was replaced: we terminated it (handlerTimeout), or it exited or crashed by itself. */
export type RestartReason = 'handler_timeout' | 'exit';

/** One worker's serve task, as the main thread tracks it (a replacement gets a new one). */
interface Serving {
  index: number;
  gen: number;
  cell: Int32Array;
  started: Float64Array;
  ring: ReplyReader;
  control: MessagePort;
  abort: AbortController | null;
  threadId: number;
  worker: Worker | null;
  ready: boolean;
  /** This worker cannot load the handler: it serves nothing. */
  loadError: SerializedError | null;
  /** Terminated by the watchdog; the slot of the message that ran too long. */
  killed: boolean;
  timedOut: number;
  done: Promise<void>;
}

/**
 * The pool: frames go into one shared queue (work-queue.ts) that every free worker
 * pulls from, one message at a time; each reply comes back through its worker's ring
 * (reply-ring.ts) as soon as it is made. Cheap kinds of messages run inline instead
 * (offload.ts). Frames that do not fit the queue (it holds about QUEUE_AHEAD_MS of
 * work per worker) wait on the main thread in a fair queue, one lane per connection;
 * past maxPendingFrames or maxPendingBytes the dispatcher is 'saturated' and the
 * server pauses reading on every connection until it drains to half.
 */
export class PoolDispatcher extends EventEmitter implements Dispatcher {
  readonly #o: PoolOptions;
  readonly #spec: WorkerSpec;
  readonly #framing: Framing;
  readonly #events: DispatchEvents;
  #pool: Piscina | null = null;

  readonly #buffers: WorkQueueBuffers;
  readonly #view: WorkQueueView;
  readonly #writer: WorkQueueWriter;
  readonly #arena: Arena;
  readonly #data: Buffer;
  readonly #metricsOn: boolean;
  readonly #routeBytes: 0 | 2 | 4;
  readonly #reframe: boolean;
  /** Remote addresses in the shared address table, by text. */
  readonly #addresses = new Map<string, number>();

  /** Per message slot: who asked, which message, its kind, where its bytes are, retries. */
  readonly #targets: (DispatchTarget | null)[] = new Array(MESSAGE_SLOTS).fill(null);
  readonly #seqs = new Uint32Array(MESSAGE_SLOTS);
  readonly #keys = new Float64Array(MESSAGE_SLOTS);
  readonly #offsets = new Int32Array(MESSAGE_SLOTS);
  readonly #retries = new Uint8Array(MESSAGE_SLOTS);
  readonly #free = new Int32Array(MESSAGE_SLOTS);
  #freeTop = 0;
  /** Messages in the pool: queued, running or async. */
  #outstanding = 0;

  /** Frames waiting for room in the shared queue, one lane per connection. */
  readonly #queue = new FairQueue();
  #saturated = false;
  /** Moving average of handler time per pooled message (ms): sizes how much the queue holds. */
  #cost = 0;

  readonly #policy: OffloadPolicy;
  #inline: InlineExecutor | null = null;
  /** Set by the admin server when metrics are on: times the messages run inline. */
  onHandlerTiming: HandlerTiming | null = null;

  readonly #serving: (Serving | null)[];
  /** Dead workers whose messages are not recovered yet (their rings are still read). */
  readonly #retiring = new Set<Serving>();
  #gen = 0;
  #armed = false;
  #draining = false;
  #wakeQueued = false;
  #lastBell = 0;
  #closing = false;
  #watchdog: NodeJS.Timeout | null = null;
  #framesSent = 0;
  #inlineRun = 0;
  #killed = 0;
  readonly #restarts: Record<RestartReason, number> = { handler_timeout: 0, exit: 0 };
  #controlId = 0;
  readonly #answers = new Map<number, (n: Extract<WorkerNotice, { type: 'answer' }>) => void>();
  #readyWaiters: (() => void)[] = [];

  constructor(options: PoolOptions, spec: WorkerSpec, framing: Framing, events: DispatchEvents) {
    super();
    this.#o = options;
    this.#spec = spec;
    this.#framing = framing;
    this.#events = events;
    // Room for several of the largest frames (with their address) at once.
    const dataBytes = Math.max(16 * 1024 * 1024, 4 * (spec.maxFrame + 64));
    this.#buffers = createWorkQueue(MESSAGE_SLOTS, dataBytes);
    this.#view = new WorkQueueView(this.#buffers);
    this.#writer = new WorkQueueWriter(this.#view);
    this.#arena = new Arena(dataBytes);
    this.#data = Buffer.from(this.#buffers.data);
    for (let s = MESSAGE_SLOTS - 1; s >= 0; s--) this.#free[this.#freeTop++] = s;
    this.#metricsOn = spec.metrics != null;
    this.#routeBytes = spec.runtime.routing?.idBytes ?? 0;
    this.#reframe = spec.framing === null;
    // A stuck handler can be stopped only in a worker: with a handlerTimeout, 'auto' keeps every message in the pool.
    this.#policy = new OffloadPolicy(options.offload === 'auto' && options.handlerTimeout > 0 ? 'always' : options.offload);
    this.#serving = new Array(options.workers).fill(null);
  }

  get saturated(): boolean {
    return this.#saturated;
  }

  async start(): Promise<void> {
    const o = this.#o;
    this.#pool = new Piscina({
      filename: WORKER_FILE,
      minThreads: o.workers,
      maxThreads: o.workers,
      // Piscina kills idle workers at once by default; shoal keeps its threads for its life.
      idleTimeout: 2 ** 31 - 1,
      // One serve task per worker, for the worker's life.
      concurrentTasksPerWorker: 1,
      maxQueue: o.workers * 2,
      atomics: 'disabled',
      workerData: this.#spec,
    });
    // A worker's uncaught error outside a task: Piscina replaces the worker; we only log.
    this.#pool.on('error', (err: unknown) => this.#events.workerFailure(serializeError(err), 0));
    const inline = this.#policy.mode === 'always' ? Promise.resolve(null) : HandlerRuntime.load(this.#spec.runtime, 0);
    for (let i = 0; i < o.workers; i++) this.#startWorker(i);
    let failure: SerializedError | null = null;
    try {
      const runtime = await inline;
      if (runtime !== null) this.#inline = new InlineExecutor(runtime, this.#framing, this.#events, this.#spec.handlerTimeout);
      failure = await this.#allReady(o.startupTimeout);
    } catch (err) {
      failure = serializeError(err);
    }
    if (failure !== null) {
      this.#closing = true;
      await this.#destroyPool();
      throw new HandlerLoadError(failure.message);
    }
    if (o.handlerTimeout > 0) {
      this.#watchdog = setInterval(this.#checkDeadlines, Math.max(10, Math.min(250, o.handlerTimeout / 4)));
      this.#watchdog.unref();
    }
  }

  /** Resolves with null once every worker is ready, or with why not (a load error, the time). */
  async #allReady(timeoutMs: number): Promise<SerializedError | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const serving = this.#serving;
      const failed = serving.find((s) => s?.loadError);
      if (failed) return failed.loadError;
      const ready = serving.filter((s) => s?.ready).length;
      if (ready === serving.length) return null;
      const left = deadline - Date.now();
      if (left <= 0) {
        return { code: 'SHOAL_HANDLER_LOAD_FAILED', message: `only ${ready} of ${serving.length} workers loaded the handler within ${timeoutMs} ms` };
      }
      await waitAtMost(new Promise<void>((r) => this.#readyWaiters.push(r)), left);
    }
  }

  #wakeReadyWaiters(): void {
    const w = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const r of w) r();
  }

  /** Start (or restart) worker `index`'s serve task, with a generation and a ring of its own. */
  #startWorker(index: number): void {
    const gen = (this.#gen = (this.#gen % (MAX_GEN - 1)) + 1);
    const ring = createReplyRing(RING_BYTES);
    const control = new MessageChannel();
    const overflow = new MessageChannel();
    const cell = new SharedArrayBuffer(WORKER_CELL_BYTES);
    const abort = this.#o.handlerTimeout > 0 ? new AbortController() : null;
    const s: Serving = {
      index,
      gen,
      cell: new Int32Array(cell, 0, 2),
      started: new Float64Array(cell, 0, 2),
      ring: new ReplyReader(ring, overflow.port1),
      control: control.port1,
      abort,
      threadId: -1,
      worker: null,
      ready: false,
      loadError: null,
      killed: false,
      timedOut: -1,
      done: Promise.resolve(),
    };
    s.cell[W_CURRENT] = -1;
    s.cell[W_THREAD] = -1;
    control.port1.on('message', (n: WorkerNotice) => this.#onNotice(s, n));
    control.port1.unref();
    const task: ServeTask = { kind: 'serve', gen, queue: this.#buffers, ring, cell, overflow: overflow.port2, control: control.port2 };
    this.#serving[index] = s;
    s.done = this.#pool!.run(task, { transferList: [overflow.port2, control.port2] as never, signal: abort?.signal ?? null }).then(
      (r: ServeResult) => this.#onServeEnd(s, r),
      (err: unknown) => this.#onServeFailed(s, err),
    );
  }

  #onNotice(s: Serving, n: WorkerNotice): void {
    if (n.type === 'ready') {
      s.threadId = n.threadId;
      s.worker = this.#pool?.threads.find((w) => w.threadId === n.threadId) ?? null;
      s.ready = true;
      this.#wakeReadyWaiters();
      // Messages may have queued while no worker was ready (they are taken now).
      this.#writer.wake(1);
      return;
    }
    const answer = this.#answers.get(n.id);
    if (answer) {
      this.#answers.delete(n.id);
      answer(n);
    }
  }

  /** A serve task ended without its worker dying: shutdown, or a handler that does not load. */
  #onServeEnd(s: Serving, r: ServeResult): void {
    if (r.loadError === undefined) return;
    s.loadError = r.loadError;
    this.#wakeReadyWaiters();
    if (this.#closing || this.#serving.some((x) => x !== null && x.ready && x.loadError === null)) {
      if (!this.#closing) this.#events.workerFailure(r.loadError, 0);
      return;
    }
    // No worker can run the handler (a replacement failed to load it): nothing queued can run.
    this.#events.workerFailure(r.loadError, this.#outstanding + this.#queue.size);
    this.#failAllWaiting(r.loadError);
  }

  /**
   * The worker died (it exited, crashed, or we terminated it for handlerTimeout). Once
   * its thread is gone (nothing can write any more) its replies are read and its
   * messages recovered; a replacement starts at once.
   */
  #onServeFailed(s: Serving, err: unknown): void {
    if (this.#closing) return;
    this.#retiring.add(s);
    const reason: RestartReason = s.killed ? 'handler_timeout' : 'exit';
    const threadId = s.threadId >= 0 ? s.threadId : Atomics.load(s.cell, W_THREAD);
    const worker = s.worker ?? this.#pool?.threads.find((w) => w.threadId === threadId) ?? null;
    const gone = worker !== null && worker.threadId >= 0 ? waitAtMost(once(worker, 'exit'), EXIT_WAIT_MS) : Promise.resolve();
    void gone.then(() => {
      this.#retiring.delete(s);
      if (this.#closing) return;
      this.#recover(s, err);
    });
    if (s.killed) this.#killed--;
    this.#restarts[reason]++;
    this.emit('workerRestart', reason, threadId);
    this.#startWorker(s.index);
  }

  /**
   * A dead worker's messages: replies it published are delivered; the message that
   * was running (the culprit) gets the error policy; the others did nothing wrong and
   * are queued again. A message in its async phase cannot be told from a culprit: it
   * is retried at most MAX_BLIND_RETRIES times, then gets the policy, so nothing is
   * silently lost and a message that kills every worker cannot loop forever.
   */
  #recover(s: Serving, err: unknown): void {
    this.#drainRing(s.ring);
    const message = (err as Error)?.message ?? String(err);
    const died: SerializedError = err instanceof ShoalError ? err.toJSON() : { code: 'SHOAL_WORKER_DIED', message: `worker died: ${message}` };
    const timeout: SerializedError = {
      code: 'SHOAL_HANDLER_TIMEOUT',
      message: `handler ran past handlerTimeout (${this.#o.handlerTimeout} ms); its worker was replaced`,
    };
    const state = this.#view.state;
    let failed = 0;
    let error = died;
    for (let slot = 0; slot < MESSAGE_SLOTS; slot++) {
      const st = Atomics.load(state, slot);
      if (st <= STATE_QUEUED || genOf(st) !== s.gen) continue;
      if (phaseOf(st) === PHASE_RUNNING) {
        if (slot === s.timedOut) error = timeout;
        this.#policy.pin(this.#keys[slot]!); // it killed or hung its worker: never a kind for the main thread
        this.#applyPolicy(slot, slot === s.timedOut ? timeout : died);
        failed++;
      } else if (phaseOf(st) === PHASE_ASYNC && ++this.#retries[slot]! > MAX_BLIND_RETRIES) {
        this.#applyPolicy(slot, died);
        failed++;
      } else {
        this.#requeue(slot);
      }
    }
    // Until the cost estimate recovers, the queue holds little: the next crash or hang
    // then holds up a few messages, not hundreds queued behind it.
    this.#cost = Math.max(this.#cost, QUEUE_AHEAD_MS);
    this.#events.workerFailure(error, failed);
    this.#ensureArmed();
  }

  /** Put a message back in the shared queue (a retry). */
  #requeue(slot: number): void {
    if (this.#writer.hasRoom) {
      this.#writer.append(slot);
      this.#wakeSoon();
      return;
    }
    // No queue position free (cannot happen while positions outnumber slots twice): wait on the main thread.
    const target = this.#targets[slot]!;
    const seq = this.#seqs[slot]!;
    const b = slot * FIELDS;
    const at = this.#offsets[slot]! + this.#view.fields[b + F_ADDR_LENGTH]!;
    const frame = Buffer.from(this.#data.subarray(at, at + this.#view.fields[b + F_LENGTH]!));
    this.#release(slot);
    this.#queue.requeue([target], [seq], [frame]);
  }

  /** Every worker is gone for good: what waits gets the error policy. */
  #failAllWaiting(error: SerializedError): void {
    const state = this.#view.state;
    for (let slot = 0; slot < MESSAGE_SLOTS; slot++) {
      if (Atomics.compareExchange(state, slot, STATE_QUEUED, STATE_FREE) === STATE_QUEUED) this.#applyPolicy(slot, error);
    }
    while (this.#queue.size > 0) {
      const t = this.#queue.take(this.#queue.size, Infinity);
      for (let k = 0; k < t.frames.length; k++) this.#policyFor(t.targets[k]!, t.seqs[k]!, error);
    }
  }

  /** Terminate the worker whose running handler is past handlerTimeout. */
  readonly #checkDeadlines = (): void => {
    const now = Date.now();
    const limit = this.#o.handlerTimeout;
    for (const s of this.#serving) {
      if (s === null || s.killed || !s.ready) continue;
      const current = Atomics.load(s.cell, W_CURRENT);
      if (current >= 0 && now - s.started[W_STARTED]! > limit) {
        s.killed = true;
        s.timedOut = current;
        this.#killed++;
        s.abort?.abort(); // Piscina terminates the worker and starts a replacement
      }
    }
  };

  /**
   * Deliver a control request to the worker whose threadId is `request.target`.
   * Resolves with its answer; rejects if that worker is gone or did not answer in time.
   */
  async control(request: ControlRequest, timeoutMs: number): Promise<unknown> {
    const s = this.#serving.find((x) => x !== null && x.ready && x.threadId === request.target);
    if (this.#pool === null || this.#closing) throw new ShoalError('SHOAL_SERVER_CLOSED', 'the pool is closed');
    if (s === undefined || s === null) throw new ShoalError('SHOAL_WORKER_DIED', `worker ${request.target} did not answer (it is gone)`);
    const id = ++this.#controlId;
    const answered = new Promise<Extract<WorkerNotice, { type: 'answer' }>>((resolve) => this.#answers.set(id, resolve));
    const message: ControlMessage = { id, request };
    s.control.postMessage(message);
    const ctl = this.#view.ctl;
    Atomics.add(ctl, CTL_CONTROL, 1);
    Atomics.notify(ctl, CTL_TAIL); // a parked worker wakes and reads its port
    let answer: Extract<WorkerNotice, { type: 'answer' }> | undefined;
    await waitAtMost(
      answered.then((a) => (answer = a)),
      timeoutMs,
    );
    this.#answers.delete(id);
    if (answer === undefined) throw new ShoalError('SHOAL_WORKER_DIED', `worker ${request.target} did not answer within ${timeoutMs} ms`);
    if (answer.error !== undefined) throw errorFromCode(answer.error);
    return answer.value;
  }

  /** Workers replaced since start, by reason. */
  get restarts(): Readonly<Record<RestartReason, number>> {
    return this.#restarts;
  }

  /** The kind of a message for the offload decision: its route id, or -1 (one kind) without routing. */
  #keyOf(frame: Buffer): number {
    const n = this.#routeBytes;
    if (n === 0 || frame.length < n) return -1;
    return n === 4 ? frame.readUInt32BE(0) : frame.readUInt16BE(0);
  }

  submit(target: DispatchTarget, seq: number, frame: Buffer): void {
    const key = this.#keyOf(frame);
    if (this.#inline !== null && this.#policy.inline(key)) {
      this.#runInline(target, seq, frame, key);
      return;
    }
    this.#framesSent++;
    const q = this.#queue;
    if (q.size > 0 || !this.#dispatch(target, seq, frame, key)) q.push(target, seq, frame);
    if (!this.#saturated && (q.size + this.#view.depth >= this.#o.maxPendingFrames || q.bytes >= this.#o.maxPendingBytes)) {
      this.#saturated = true;
      this.emit('saturated');
    }
  }

  #runInline(target: DispatchTarget, seq: number, frame: Buffer, key: number): void {
    this.#inlineRun++;
    const exec = this.#inline!;
    const timing = this.onHandlerTiming;
    if (!this.#policy.sampleInline(key) && timing === null) {
      exec.run(target, seq, frame);
      return;
    }
    exec.timeNext = true;
    exec.clock = -1;
    const t0 = performance.now();
    const r = exec.run(target, seq, frame);
    // The handler's time, not the socket write after it (an async handler: its synchronous part).
    const t1 = exec.clock >= 0 ? exec.clock : performance.now();
    exec.timeNext = false;
    this.#policy.observe(key, t1 - t0);
    if (timing !== null) {
      if (r instanceof Promise) void r.then((ctx) => timing.end(ctx.routeId, t0));
      else timing.end(r.routeId, t0);
    }
  }

  /** How many messages the shared queue may hold ahead of the workers (QUEUE_AHEAD_MS of work each). */
  #depthLimit(): number {
    const w = this.#o.workers;
    if (this.#cost <= 0) return AHEAD_MIN * w;
    return Math.min(AHEAD_MAX * w, Math.max(AHEAD_MIN * w, Math.ceil((w * QUEUE_AHEAD_MS) / this.#cost)));
  }

  /** Copy a message into the shared queue; false when there is no room for it now. */
  #dispatch(target: DispatchTarget, seq: number, frame: Buffer, key: number): boolean {
    const depth = this.#view.depth;
    if (this.#freeTop === 0 || !this.#writer.hasRoom || depth >= this.#depthLimit() || depth >= this.#o.maxPendingFrames) return false;
    const addr = target.remoteAddress;
    const index = this.#addressIndex(addr);
    const inline = index === ADDR_INLINE ? addr.length : 0;
    const at = this.#arena.alloc(inline + frame.length);
    if (at < 0) return false;
    const slot = this.#free[--this.#freeTop]!;
    const data = this.#data;
    const addrLength = inline > 0 ? data.write(addr, at, 'latin1') : 0;
    data.set(frame, at + addrLength);
    const f = this.#view.fields;
    const b = slot * FIELDS;
    f[b + F_CONNECTION] = target.id;
    f[b + F_SEQUENCE] = seq;
    f[b + F_OFFSET] = at;
    f[b + F_ADDR_LENGTH] = addrLength;
    f[b + F_LENGTH] = frame.length;
    f[b + F_PORT] = target.remotePort;
    f[b + F_ADDR_INDEX] = index;
    if (this.#metricsOn) this.#view.queuedAt[slot] = performance.timeOrigin + performance.now();
    this.#targets[slot] = target;
    this.#seqs[slot] = seq;
    this.#keys[slot] = key;
    this.#offsets[slot] = at;
    this.#retries[slot] = 0;
    this.#outstanding++;
    this.#writer.append(slot);
    this.#wakeSoon();
    this.#ensureArmed();
    return true;
  }

  /** The address table entry of `addr` (written the first time it is seen), or ADDR_INLINE once the table is full. */
  #addressIndex(addr: string): number {
    const known = this.#addresses.get(addr);
    if (known !== undefined) return known;
    if (this.#addresses.size >= ADDR_ENTRIES || addr.length >= ADDR_ENTRY_BYTES) return ADDR_INLINE;
    const index = this.#addresses.size;
    const table = this.#view.addresses;
    const at = index * ADDR_ENTRY_BYTES;
    table[at] = Buffer.from(table.buffer, at + 1, ADDR_ENTRY_BYTES - 1).write(addr, 'latin1');
    this.#addresses.set(addr, index);
    return index;
  }

  /** Move what waits on the main thread into the shared queue while there is room. */
  #refill(): void {
    const q = this.#queue;
    while (q.size > 0) {
      const t = q.take(1, Infinity);
      const target = t.targets[0]!;
      const seq = t.seqs[0]!;
      const frame = t.frames[0]!;
      const key = this.#keyOf(frame);
      if (this.#inline !== null && this.#policy.inline(key)) {
        this.#runInline(target, seq, frame, key);
        continue;
      }
      if (!this.#dispatch(target, seq, frame, key)) {
        q.requeue(t.targets, t.seqs, t.frames);
        break;
      }
    }
    if (this.#saturated && q.size + this.#view.depth <= this.#o.maxPendingFrames / 2 && q.bytes <= this.#o.maxPendingBytes / 2) {
      this.#saturated = false;
      this.emit('unsaturated');
    }
  }

  /** Once per turn of work (a microtask): wake parked workers for what was queued, read replies that are in. */
  #wakeSoon(): void {
    if (this.#wakeQueued) return;
    this.#wakeQueued = true;
    queueMicrotask(this.#wake);
  }

  readonly #wake = (): void => {
    this.#wakeQueued = false;
    const sleepers = this.#writer.sleepers;
    if (sleepers > 0) this.#writer.wake(Math.min(sleepers, Math.max(1, this.#view.depth)));
    // Under load the main thread is awake anyway: read replies now rather than on the doorbell's wake-up.
    if (!this.#draining && Atomics.load(this.#view.ctl, CTL_DOORBELL) !== this.#lastBell) this.#drainAll();
  };

  #ensureArmed(): void {
    if (!this.#armed && !this.#draining) this.#arm();
  }

  /**
   * Read every reply that is in, then wait (without blocking) for the doorbell, as
   * long as messages are out. The doorbell's value is read before the rings, so a
   * reply published after the read changes it and the wait returns at once.
   */
  #arm(): void {
    const ctl = this.#view.ctl;
    const seen = Atomics.load(ctl, CTL_DOORBELL);
    this.#drainAll();
    if (this.#outstanding === 0 || this.#pool === null) return;
    Atomics.store(ctl, CTL_MAIN_WAITING, 1);
    const w = Atomics.waitAsync(ctl, CTL_DOORBELL, seen, 1000);
    this.#armed = true;
    if (w.async) void w.value.then(this.#onDoorbell);
    else setImmediate(this.#onDoorbell); // rang while we read: read again after I/O had its turn
  }

  readonly #onDoorbell = (): void => {
    this.#armed = false;
    Atomics.store(this.#view.ctl, CTL_MAIN_WAITING, 0);
    if (this.#outstanding > 0 || this.#queue.size > 0) this.#arm();
  };

  #drainAll(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      this.#lastBell = Atomics.load(this.#view.ctl, CTL_DOORBELL);
      for (const s of this.#serving) if (s !== null) this.#drainRing(s.ring);
      for (const s of this.#retiring) this.#drainRing(s.ring);
      if (this.#queue.size > 0 || this.#saturated) this.#refill();
    } finally {
      this.#draining = false;
    }
  }

  #drainRing(ring: ReplyReader): void {
    ring.drain(this.#onRecord);
  }

  readonly #onRecord = (r: ReplyRecord): void => {
    const slot = r.slot;
    const target = this.#targets[slot];
    if (target === null || target === undefined) return;
    if ((r.flags & R_ERROR) !== 0) {
      const error = JSON.parse(r.bytes.toString('utf8', r.start, r.start + r.length)) as SerializedError;
      this.#events.handlerError(target, this.#seqs[slot]!, error);
      return;
    }
    let bytes: Buffer | null = null;
    if (r.length > 0) {
      bytes = Buffer.allocUnsafe(r.length);
      r.bytes.copy(bytes, 0, r.start, r.start + r.length);
      if (this.#reframe) bytes = this.#frameRecords(bytes);
    }
    const seq = this.#seqs[slot]!;
    const cost = r.costMs;
    this.#cost = this.#cost === 0 ? cost : this.#cost + (cost - this.#cost) * 0.1;
    this.#policy.observe(this.#keys[slot]!, cost);
    this.#release(slot);
    target.deliver(seq, 1, bytes, (r.flags & R_CLOSE) !== 0);
  };

  /** A message is done: its slot and its bytes are free again. */
  #release(slot: number): void {
    this.#targets[slot] = null;
    this.#arena.free(this.#offsets[slot]!);
    Atomics.store(this.#view.state, slot, STATE_FREE);
    this.#free[this.#freeTop++] = slot;
    if (--this.#outstanding === 0 && this.#queue.size === 0) this.emit('idle');
  }

  /** A user framing cannot run in workers: they sent [u32 length][body] records; frame them here. */
  #frameRecords(records: Buffer): Buffer | null {
    const bodies: Uint8Array[] = [];
    for (let off = 0; off < records.length; ) {
      const len = records.readUInt32BE(off);
      bodies.push(records.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    return frameReplies(this.#framing, bodies);
  }

  /** The error policy for a pooled message that failed on the main thread's side (its worker died). */
  #applyPolicy(slot: number, error: SerializedError): void {
    const target = this.#targets[slot]!;
    const seq = this.#seqs[slot]!;
    this.#release(slot);
    this.#policyFor(target, seq, error);
  }

  #policyFor(target: DispatchTarget, seq: number, error: SerializedError): void {
    const inline = this.#inline;
    if (inline !== null) {
      // The module is loaded here too: its errorReply() shapes the error frame, as in a worker.
      const ctx = new Context(target.id, seq, target.remoteAddress, target.remotePort, undefined);
      inline.runner.fail(target, ctx, errorFromCode(error));
      return;
    }
    this.#events.handlerError(target, seq, error);
    const policy = this.#o.onHandlerError;
    let errorFrame: Buffer | null = null;
    if (policy === 'error-frame') {
      try {
        errorFrame = frameReplies(this.#framing, defaultErrorReply(error));
      } catch {
        errorFrame = null;
      }
    }
    target.deliver(seq, 1, errorFrame, policy === 'close');
  }

  stats(): DispatcherStats {
    return {
      workers: this.#o.workers,
      // Waiting for a worker: on the main thread, and in the shared queue (what maxPendingFrames bounds).
      pendingFrames: this.#queue.size + this.#view.depth,
      pendingBytes: this.#queue.bytes,
      batchesInFlight: this.#outstanding,
      framesInFlight: this.#outstanding,
      batchesSent: this.#framesSent,
      framesSent: this.#framesSent + this.#inlineRun,
      saturated: this.#saturated,
    };
  }

  /** Messages run inline by the adaptive offload, and kinds inline / in the pool now. */
  offloadStats(): { inlineMessages: number; pooledMessages: number; inlineKinds: number; pooledKinds: number } {
    const k = this.#policy.summary();
    return { inlineMessages: this.#inlineRun, pooledMessages: this.#framesSent, inlineKinds: k.inline, pooledKinds: k.pool };
  }

  /** The pool, for the admin endpoint (thread list, utilization). */
  get pool(): Piscina | null {
    return this.#pool;
  }

  /**
   * Let the messages in the pool finish (their connections are gone or drained, but
   * a worker killed mid-message would only log noise), then stop every worker (each
   * runs teardown()), then destroy the threads. Every step is bounded by timeoutMs.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.#pool === null) return;
    if (this.#watchdog) clearInterval(this.#watchdog);
    // Frames still waiting belong to connections that were destroyed: nobody is left to answer.
    this.#queue.clear();
    if (this.#outstanding > 0) await waitAtMost(new Promise((r) => this.once('idle', r)), timeoutMs);
    this.#closing = true;
    const ctl = this.#view.ctl;
    Atomics.store(ctl, CTL_STOP, 1);
    Atomics.notify(ctl, CTL_TAIL);
    await waitAtMost(Promise.all(this.#serving.map((s) => s?.done)), timeoutMs);
    const inline = this.#inline?.runner.runtime;
    if (inline) await waitAtMost(inline.teardown().catch(() => {}), timeoutMs);
    await this.#destroyPool();
  }

  async #destroyPool(): Promise<void> {
    const pool = this.#pool;
    this.#pool = null;
    if (pool) await pool.destroy().catch(() => {});
    for (const s of this.#serving) s?.control.close();
  }
}
