/**
 * The pool's threads: the Piscina binding and each worker's life.
 *
 * Every worker runs one serve task for its whole life (workers/serve.ts), with a
 * generation and a reply ring of its own. Piscina does what it does well: it starts
 * the threads, replaces one that dies, and terminates one whose task we abort (the
 * handlerTimeout watchdog here). When a worker dies, this module waits until its
 * thread is gone — nothing can write to shared memory any more — and hands it to the
 * dispatcher to recover its messages; a replacement serve task starts at once.
 */
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import type { MessagePort, Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { ShoalError, errorFromCode, serializeError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import { waitAtMost } from '../wait.js';
import { WORKER_CELL_BYTES, W_CURRENT, W_STARTED, W_THREAD } from './protocol.js';
import type { ControlMessage, ControlRequest, ServeResult, ServeTask, WorkerNotice, WorkerSpec } from './protocol.js';
import { ReplyReader, createReplyRing } from './reply-ring.js';
import { CTL_CONTROL, CTL_STOP, MAX_GEN, wakeAll } from './work-queue.js';
import type { WorkQueueBuffers, WorkQueueView } from './work-queue.js';

const WORKER_FILE = fileURLToPath(new URL('../../workers/worker.js', import.meta.url));

/** Each worker's reply ring; replies above a quarter of it take the overflow port. */
const RING_BYTES = 1024 * 1024;
/** Wait at most this long (ms) for a dead worker's thread to be gone before its messages are recovered anyway. */
const EXIT_WAIT_MS = 5000;

/** Why a worker was replaced: we terminated it (handlerTimeout), or it exited or crashed by itself. */
export type RestartReason = 'handler_timeout' | 'exit';

/** One worker's serve task, as the main thread tracks it (a replacement gets a new one). */
export interface Serving {
  index: number;
  /** The owner tag of the message slots this worker takes (work-queue.ts). */
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

/** What the dispatcher does when a worker's life changes. */
export interface WorkerEvents {
  /** A worker is ready to take messages. */
  ready(): void;
  /** A worker's thread is gone: read its ring, recover its messages. */
  gone(s: Serving, err: unknown): void;
  /** A worker could not load the handler; `others` says whether another one serves. */
  loadFailed(error: SerializedError, others: boolean): void;
  restarted(reason: RestartReason, threadId: number): void;
  /** A worker's error outside any task (Piscina replaces the worker). */
  error(err: SerializedError): void;
}

export interface WorkerOptions {
  workers: number;
  /** ms one message may run before its worker is terminated; 0 = off. */
  handlerTimeout: number;
}

export class WorkerSet {
  readonly #o: WorkerOptions;
  readonly #spec: WorkerSpec;
  readonly #queue: WorkQueueBuffers;
  readonly #view: WorkQueueView;
  readonly #ctl: Int32Array;
  readonly #events: WorkerEvents;
  #pool: Piscina | null = null;
  readonly #serving: (Serving | null)[];
  /** Dead workers whose messages are not recovered yet (their rings are still read). */
  readonly #retiring = new Set<Serving>();
  #gen = 0;
  #closing = false;
  #watchdog: NodeJS.Timeout | null = null;
  readonly #restarts: Record<RestartReason, number> = { handler_timeout: 0, exit: 0 };
  #controlId = 0;
  readonly #answers = new Map<number, (n: Extract<WorkerNotice, { type: 'answer' }>) => void>();
  #readyWaiters: (() => void)[] = [];

  constructor(options: WorkerOptions, spec: WorkerSpec, queue: WorkQueueBuffers, view: WorkQueueView, events: WorkerEvents) {
    this.#o = options;
    this.#spec = spec;
    this.#queue = queue;
    this.#view = view;
    this.#ctl = view.ctl;
    this.#events = events;
    this.#serving = new Array(options.workers).fill(null);
  }

  /** Start the threads and a serve task on each (see ready()). */
  start(): void {
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
    this.#pool.on('error', (err: unknown) => this.#events.error(serializeError(err)));
    for (let i = 0; i < o.workers; i++) this.#startWorker(i);
    if (o.handlerTimeout > 0) {
      this.#watchdog = setInterval(this.#checkDeadlines, Math.max(10, Math.min(250, o.handlerTimeout / 4)));
      this.#watchdog.unref();
    }
  }

  /** Resolves with null once every worker is ready, or with why not (a load error, the time). */
  async allReady(timeoutMs: number): Promise<SerializedError | null> {
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

  /**
   * Call `read` with every reply ring to read: the live workers', and those of dead ones
   * not recovered yet. A callback, not a generator: the pool drains the rings as often as
   * once per message, and a generator is an allocation each time.
   */
  forEachRing(read: (ring: ReplyReader) => void): void {
    const serving = this.#serving;
    for (let i = 0; i < serving.length; i++) {
      const s = serving[i];
      if (s != null) read(s.ring);
    }
    if (this.#retiring.size > 0) for (const s of this.#retiring) read(s.ring);
  }

  /** Workers replaced since start, by reason. */
  get restarts(): Readonly<Record<RestartReason, number>> {
    return this.#restarts;
  }

  /** The Piscina pool, for the admin endpoint (thread list, utilization). */
  get pool(): Piscina | null {
    return this.#pool;
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
    const task: ServeTask = { kind: 'serve', gen, shard: index, queue: this.#queue, ring, cell, overflow: overflow.port2, control: control.port2 };
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
      this.#events.ready();
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
    if (this.#closing) return;
    this.#events.loadFailed(r.loadError, this.#serving.some((x) => x !== null && x.ready && x.loadError === null));
  }

  /** The worker died: once its thread is gone, the dispatcher recovers its messages; a replacement starts now. */
  #onServeFailed(s: Serving, err: unknown): void {
    if (this.#closing) return;
    this.#retiring.add(s);
    const reason: RestartReason = s.killed ? 'handler_timeout' : 'exit';
    const threadId = s.threadId >= 0 ? s.threadId : Atomics.load(s.cell, W_THREAD);
    const worker = s.worker ?? this.#pool?.threads.find((w) => w.threadId === threadId) ?? null;
    // A Worker that has exited reads threadId -1.
    const gone = worker !== null && worker.threadId >= 0 ? waitAtMost(once(worker, 'exit'), EXIT_WAIT_MS) : Promise.resolve();
    void gone.then(() => {
      this.#retiring.delete(s);
      if (!this.#closing) this.#events.gone(s, err);
    });
    this.#restarts[reason]++;
    this.#events.restarted(reason, threadId);
    this.#startWorker(s.index);
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
        s.abort?.abort(); // Piscina terminates the worker and starts a replacement
      }
    }
  };

  /**
   * Deliver a control request to the worker whose threadId is `request.target`.
   * Resolves with its answer; rejects if that worker is gone or did not answer in time.
   */
  async control(request: ControlRequest, timeoutMs: number): Promise<unknown> {
    if (this.#pool === null || this.#closing) throw new ShoalError('SHOAL_SERVER_CLOSED', 'the pool is closed');
    const s = this.#serving.find((x) => x !== null && x.ready && x.threadId === request.target);
    if (s === undefined || s === null) throw new ShoalError('SHOAL_WORKER_DIED', `worker ${request.target} did not answer (it is gone)`);
    const id = ++this.#controlId;
    const answered = new Promise<Extract<WorkerNotice, { type: 'answer' }>>((resolve) => this.#answers.set(id, resolve));
    const message: ControlMessage = { id, request };
    s.control.postMessage(message);
    Atomics.add(this.#ctl, CTL_CONTROL, 1);
    wakeAll(this.#view); // a parked worker wakes and reads its port
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

  /** Stop every worker: each finishes what it holds and runs teardown(). Bounded by timeoutMs. */
  async stop(timeoutMs: number): Promise<void> {
    this.#closing = true;
    if (this.#watchdog) clearInterval(this.#watchdog);
    Atomics.store(this.#ctl, CTL_STOP, 1);
    wakeAll(this.#view);
    await waitAtMost(Promise.all(this.#serving.map((s) => s?.done)), timeoutMs);
  }

  async destroy(): Promise<void> {
    this.#closing = true;
    if (this.#watchdog) clearInterval(this.#watchdog);
    const pool = this.#pool;
    this.#pool = null;
    if (pool) await pool.destroy().catch(() => {});
    for (const s of this.#serving) s?.control.close();
  }
}
