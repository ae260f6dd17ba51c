import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { PiscinaTask } from 'piscina';
import { HandlerLoadError, ShoalError, errorFromCode, serializeError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import type { Framing } from '../framing/types.js';
import { defaultErrorReply } from '../../workers/runtime.js';
import type { ErrorPolicy } from '../../workers/runtime.js';
import { FairQueue } from './fair-queue.js';
import type { Taken } from './fair-queue.js';
import { frameReplies } from './inline.js';
import { cacheWorkerInterfaces } from './piscina-interface.js';
import { waitAtMost } from '../wait.js';
import { META_IN, META_OUT, META_PEER, PROGRESS_BYTES, PROGRESS_CELL, PROGRESS_ASYNC, PROGRESS_INDEX, PROGRESS_NOT_STARTED, PROGRESS_STARTED, STATUS_CLOSE, STATUS_REPLY } from './protocol.js';
import type { BarrierResult, BarrierTask, BatchResult, BatchTask, ControlRequest, WorkerSpec } from './protocol.js';
import type { DispatchEvents, Dispatcher, DispatcherStats, DispatchTarget } from './types.js';

/** Piscina's view of a worker, as its load balancer sees it (the type is not exported by name). */
type PiscinaWorker = Parameters<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer'] & {}>[1][number];

const WORKER_FILE = fileURLToPath(new URL('../../workers/worker.js', import.meta.url));

/**
 * How much work one batch should carry, in ms of handler time. Large enough that
 * the fixed cost per task (~0.15 ms across the main thread and the worker) is
 * amortized, small enough that a slot never holds a long queue of CPU-heavy
 * messages while another core idles. Measured at ~1 ms per message (bench
 * protocol K=3280, 16 conns x 4, workers:2, 2 runs each): 2 ms -> 1,360 req/s,
 * 5 ms -> 1,455, 10 ms -> 1,505; at ~100 µs per message no difference beyond noise.
 */
const TARGET_BATCH_MS = 10;
/**
 * A batch queued behind a busy worker (its spare slot) must carry at least this many
 * ms of work, or a full batch: enough that the worker goes straight on to it instead
 * of idling through a reply round trip, while echo-cheap frames still wait to fill a
 * batch. At ~100 µs per message, 16 conns x 4 (64 messages out, so batches never
 * fill): full batches only -> 16.0-16.4k req/s, 1 ms -> 16.5-17.0k; no change at ~1 ms.
 */
const SPARE_MS = 1;

export interface PoolOptions {
  workers: number;
  tasksPerWorker: number;
  batchMaxFrames: number;
  batchMaxBytes: number;
  maxPendingFrames: number;
  maxPendingBytes: number;
  startupTimeout: number;
  atomics: 'sync' | 'async' | 'disabled';
  onHandlerError: ErrorPolicy;
  /** ms one message's handler may run before its worker is terminated; 0 = off. */
  handlerTimeout: number;
}

/**
 * A slot's shared buffers (see protocol.ts), reused batch after batch. Made on the
 * slot's first batch, resized when a batch does not fit (or would waste more than
 * 4x), and replaced after a failed batch: a worker we gave up on may still be
 * running and must not write into a later batch's buffers.
 */
interface SlotArena {
  input: SharedArrayBuffer | null;
  output: SharedArrayBuffer | null;
  /** Reply bytes of the slot's last batch: replies may be much larger than requests. */
  outputUsed: number;
  /** The progress cell at the head of `input`. */
  progress: Float64Array;
}

/** Arena buffers are never made smaller than this, nor resized while within 4x of the need. */
const ARENA_MIN_BYTES = 64 * 1024;

/** A buffer of at least `need` bytes: `have` while it fits without wasting more than 4x. */
function sized(have: SharedArrayBuffer | null, need: number): SharedArrayBuffer | null {
  return have !== null && have.byteLength >= need && have.byteLength <= Math.max(4 * need, ARENA_MIN_BYTES) ? have : null;
}

/** What the main thread remembers of a batch in flight, to route replies and to retry. */
interface InFlightBatch {
  targets: DispatchTarget[];
  seqs: number[];
  /** The frames themselves (views of socket chunks), kept for a retry if the worker dies. */
  frames: Buffer[];
  /** Its slot (freed when the batch settles) and the progress cell in that slot's input. */
  slot: number;
  progress: Float64Array;
  abort: AbortController | null;
  /** Index of the message killed by handlerTimeout, else -1. */
  timedOut: number;
  /** Piscina's id of the worker it was given to, -1 if not known (see #balance). */
  worker: number;
}

/** Piscina's rejection for tasks that shared a worker we terminated (not their fault). */
const THREAD_TERMINATION = 'Terminating worker thread';
/** A message in a dying batch whose culprit cannot be named is retried at most this often. */
const MAX_BLIND_RETRIES = 1;

/** Why a worker was replaced: we terminated it (handlerTimeout), or it exited or crashed by itself. */
export type RestartReason = 'handler_timeout' | 'exit';

/**
 * Batches frames from every connection into one Piscina task per batch.
 *
 * Frames submitted during one turn of the event loop are collected and sent at
 * setImmediate, split over the free task slots (so one busy connection can use
 * every core). When every slot is busy, frames wait here and the next batch
 * grows, up to batchMaxFrames / batchMaxBytes. The wait queue is bounded:
 * past maxPendingFrames or maxPendingBytes the dispatcher is 'saturated' and the
 * server pauses reading on every connection until it drains to half.
 */
export class PoolDispatcher extends EventEmitter implements Dispatcher {
  readonly #o: PoolOptions;
  readonly #spec: WorkerSpec;
  readonly #framing: Framing;
  readonly #events: DispatchEvents;
  readonly #slots: number;
  #pool: Piscina | null = null;

  /** Frames waiting for a slot, one lane per connection, taken round-robin. */
  readonly #queue = new FairQueue();
  #scheduled = false;
  #saturated = false;
  #stamp = 0;
  /** Moving average of handler time per frame (ms), measured in the workers. */
  #costPerFrame = 0;
  #closing = false;
  /** Batches in flight, scanned by the handlerTimeout watchdog. */
  readonly #inFlight = new Set<InFlightBatch>();
  #watchdog: NodeJS.Timeout | null = null;
  /** Shared buffers by slot, and the slots no batch in flight holds. */
  readonly #arenas: SlotArena[] = [];
  readonly #freeSlots: number[] = [];
  /** Blind retries per frame (only touched on the failure path). */
  readonly #retries = new WeakMap<Buffer, number>();

  /** Batches in flight per worker (by Piscina worker id), and how many workers have none. */
  readonly #perWorker = new Map<number, number>();
  #busyWorkers = 0;
  /** The batch pool.run() is placing right now, for #balance to note its worker. */
  #placing: InFlightBatch | null = null;
  /** Piscina's worker views are cached once seen (see piscina-interface.ts). */
  #viewsCached = false;
  #framesInFlight = 0;
  #batchesSent = 0;
  #framesSent = 0;
  /** Workers we terminated for handlerTimeout whose 'workerDestroy' has not come yet. */
  #killed = 0;
  readonly #restarts: Record<RestartReason, number> = { handler_timeout: 0, exit: 0 };
  /** Control tasks run one at a time (each occupies every worker briefly). */
  #controlChain: Promise<unknown> = Promise.resolve();

  constructor(options: PoolOptions, spec: WorkerSpec, framing: Framing, events: DispatchEvents) {
    super();
    this.#o = options;
    this.#framing = framing;
    this.#events = events;
    this.#slots = options.workers * options.tasksPerWorker;
    for (let i = 0; i < this.#slots; i++) {
      this.#arenas.push({ input: null, output: null, outputUsed: 0, progress: new Float64Array(PROGRESS_CELL) });
      this.#freeSlots.push(i);
    }
    this.#spec = spec;
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
      concurrentTasksPerWorker: o.tasksPerWorker,
      // We never have more than `slots` batches out; the bound is a guard, not a queue.
      maxQueue: this.#slots * 2,
      atomics: o.atomics,
      workerData: this.#spec,
      loadBalancer: this.#balance,
    });
    // A worker's uncaught error outside a task: Piscina replaces the worker; we only log.
    this.#pool.on('error', (err: unknown) => this.#events.workerFailure(serializeError(err), 0));
    const results = await this.#barrier('init', o.startupTimeout);
    const failed = results.find((r) => r.error !== null);
    if (failed) {
      await this.#destroyPool();
      throw new HandlerLoadError(failed.error!.message);
    }
    // Every worker destroyed from here on, other than by close(), is replaced by Piscina: a restart.
    // A Worker that already exited reads threadId -1, so ids are remembered while the workers live.
    const pool = this.#pool;
    const ids = new Map<Worker, number>();
    const remember = (): void => {
      for (const w of pool.threads) if (w.threadId >= 0 && !ids.has(w)) ids.set(w, w.threadId);
    };
    remember();
    pool.on('workerCreate', remember);
    pool.on('workerDestroy', (info: { id: number }) => {
      let threadId = info.id;
      this.#forgetWorker(info.id);
      for (const [w, id] of ids) {
        if (w.threadId >= 0 && w.threadId !== info.id) continue; // alive, and not this one
        ids.delete(w);
        this.#forgetWorker(id);
        if (threadId < 0) threadId = id;
      }
      if (this.#closing) return;
      let reason: RestartReason = 'exit';
      if (this.#killed > 0) {
        this.#killed--;
        reason = 'handler_timeout';
      }
      this.#restarts[reason]++;
      this.emit('workerRestart', reason, threadId);
    });
    if (o.handlerTimeout > 0) {
      this.#watchdog = setInterval(this.#checkDeadlines, Math.max(10, Math.min(250, o.handlerTimeout / 4)));
      this.#watchdog.unref();
    }
  }

  /**
   * Piscina's least-busy choice (an idle worker first, else the one with the fewest
   * tasks; an abortable task only to an idle worker, as Piscina does), noting which
   * worker got the batch: "is some worker idle?" cannot be told from the number of
   * batches out when one worker holds two.
   */
  readonly #balance = (task: PiscinaTask, workers: PiscinaWorker[]): PiscinaWorker | null => {
    if (!this.#viewsCached && workers.length > 0) {
      cacheWorkerInterfaces(workers[0]!);
      this.#viewsCached = true;
    }
    let chosen: PiscinaWorker | null = null;
    let least = this.#o.tasksPerWorker;
    for (const w of workers) {
      if (w.currentUsage === 0) {
        chosen = w;
        break;
      }
      if (w.isRunningAbortableTask || task.isAbortable) continue;
      if (w.currentUsage < least) {
        chosen = w;
        least = w.currentUsage;
      }
    }
    const batch = this.#placing;
    if (chosen !== null && batch !== null) {
      this.#placing = null;
      batch.worker = chosen.id;
      const n = this.#perWorker.get(chosen.id) ?? 0;
      if (n === 0) this.#busyWorkers++;
      this.#perWorker.set(chosen.id, n + 1);
    }
    return chosen;
  };

  /** A destroyed worker holds no batch any more (its batches fail on their own). */
  #forgetWorker(id: number): void {
    const held = this.#perWorker.get(id);
    if (held === undefined) return;
    if (held > 0) this.#busyWorkers--;
    this.#perWorker.delete(id);
  }

  /** Workers with no batch of ours, as far as we know (a batch placed later by Piscina is not known). */
  #idleWorkers(): number {
    return Math.max(0, this.#o.workers - this.#busyWorkers);
  }

  /** Terminate the worker of any batch whose running handler is past handlerTimeout. */
  readonly #checkDeadlines = (): void => {
    const now = Date.now();
    const limit = this.#o.handlerTimeout;
    for (const b of this.#inFlight) {
      const index = b.progress[PROGRESS_INDEX]!;
      if (index >= 0 && b.timedOut < 0 && now - b.progress[PROGRESS_STARTED]! > limit) {
        b.timedOut = index;
        this.#killed++;
        b.abort?.abort(); // Piscina terminates the worker; Piscina starts a replacement
      }
    }
  };

  /**
   * Run `kind` once on every worker. Piscina chooses workers, so we send
   * workers × tasksPerWorker copies: each worker joins once and blocks at the
   * barrier until all have joined, so no worker can take every copy.
   */
  async #barrier(kind: BarrierTask['kind'], timeoutMs: number, control?: ControlRequest): Promise<BarrierResult[]> {
    const pool = this.#pool!;
    const parties = this.#o.workers;
    const task: BarrierTask = { kind, barrier: new Int32Array(new SharedArrayBuffer(8)), parties, timeoutMs };
    if (control) task.control = control;
    const copies = Array.from({ length: this.#slots }, () =>
      pool.run(task).then(
        (r: BarrierResult) => r,
        (err: unknown): BarrierResult => ({ threadId: -1, again: false, error: serializeError(err) }),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs + 1000)));
    const all = await Promise.race([Promise.all(copies), timeout]);
    clearTimeout(timer);
    if (all === 'timeout') {
      return [{ threadId: -1, again: false, error: { code: 'SHOAL_HANDLER_LOAD_FAILED', message: `workers did not finish ${kind} within ${timeoutMs} ms` } }];
    }
    const joined = all.filter((r) => !r.again);
    if (!joined.some((r) => r.error) && new Set(joined.map((r) => r.threadId)).size < parties) {
      return [{ threadId: -1, again: false, error: { code: 'SHOAL_HANDLER_LOAD_FAILED', message: `only ${joined.length} of ${parties} workers finished ${kind} within ${timeoutMs} ms` } }];
    }
    return joined;
  }

  /**
   * Deliver a control request to the worker whose threadId is `request.target`
   * (through a barrier: the others join and go on). Resolves with its answer;
   * rejects if that worker did not answer (it exited) or failed.
   */
  control(request: ControlRequest, timeoutMs: number): Promise<unknown> {
    const run = async (): Promise<unknown> => {
      if (this.#pool === null || this.#closing) throw new ShoalError('SHOAL_SERVER_CLOSED', 'the pool is closed');
      const results = await this.#barrier('control', timeoutMs, request);
      const answer = results.find((r) => r.threadId === request.target);
      if (answer === undefined) {
        const failed = results.find((r) => r.error !== null);
        throw new ShoalError('SHOAL_WORKER_DIED', failed?.error?.message ?? `worker ${request.target} did not answer (it is gone)`);
      }
      if (answer.error !== null) throw errorFromCode(answer.error);
      return answer.value;
    };
    const next = this.#controlChain.then(run, run);
    this.#controlChain = next.catch(() => {});
    return next;
  }

  /** Workers replaced since start, by reason. */
  get restarts(): Readonly<Record<RestartReason, number>> {
    return this.#restarts;
  }

  submit(target: DispatchTarget, seq: number, frame: Buffer): void {
    const q = this.#queue;
    q.push(target, seq, frame);
    if (!this.#saturated && (q.size >= this.#o.maxPendingFrames || q.bytes >= this.#o.maxPendingBytes)) {
      this.#saturated = true;
      this.emit('saturated');
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.size === 0 || this.#inFlight.size >= this.#slots) return;
    // Every worker busy: a small batch sent now would only wait in a worker's queue and
    // cost a task of overhead. Let it grow to a full batch, or until a worker frees up
    // (#settled calls us again).
    if (this.#idleWorkers() === 0 && !this.#spareWorthy()) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  /** Send what waits, split over the free slots. */
  readonly #flush = (): void => {
    this.#scheduled = false;
    const o = this.#o;
    const q = this.#queue;
    let free = this.#slots - this.#inFlight.size;
    if (q.size === 0 || free <= 0 || this.#pool === null) return;
    const cap = this.#batchCap();
    while (q.size > 0 && free > 0) {
      // Idle workers share what waits evenly (one busy connection can use every core);
      // the spare slots behind busy workers take only full batches.
      const idle = this.#idleWorkers();
      let want: number;
      if (idle > 0) want = Math.min(cap, Math.ceil(q.size / idle));
      else if (this.#spareWorthy()) want = cap;
      else break;
      this.#send(q.take(want, o.batchMaxBytes));
      free--;
    }
    if (this.#saturated && q.size <= o.maxPendingFrames / 2 && q.bytes <= o.maxPendingBytes / 2) {
      this.#saturated = false;
      this.emit('unsaturated');
    }
  };

  /** The slot's arena with room for `inputBytes` of input and about `outputBytes` of replies. */
  #arena(slot: number, inputBytes: number, outputBytes: number): SlotArena {
    const a = this.#arenas[slot]!;
    const input = sized(a.input, inputBytes);
    if (input === null) {
      a.input = new SharedArrayBuffer(Math.max(inputBytes, ARENA_MIN_BYTES));
      a.progress = new Float64Array(a.input, 0, PROGRESS_CELL);
    }
    // The output grows in the worker when replies outsize this guess (see #onResult).
    const need = Math.max(outputBytes, a.outputUsed);
    a.output = sized(a.output, need) ?? new SharedArrayBuffer(Math.max(need, ARENA_MIN_BYTES));
    return a;
  }

  /** Is what waits worth a batch queued behind a busy worker? */
  #spareWorthy(): boolean {
    const size = this.#queue.size;
    return size >= this.#batchCap() || size * this.#costPerFrame >= SPARE_MS;
  }

  /** Frames per batch: about TARGET_BATCH_MS of work, within [1, batchMaxFrames]. */
  #batchCap(): number {
    const cost = this.#costPerFrame;
    if (cost <= 0) return this.#o.batchMaxFrames;
    return Math.max(1, Math.min(this.#o.batchMaxFrames, Math.floor(TARGET_BATCH_MS / cost)));
  }

  #send({ targets, seqs, frames, bytes }: Taken): void {
    const count = frames.length;
    // Number the batch's distinct connections first: their table sits before the bodies.
    const stamp = ++this.#stamp;
    const distinct: DispatchTarget[] = [];
    for (let k = 0; k < count; k++) {
      const t = targets[k]!;
      if (t.batchStamp !== stamp) {
        t.batchStamp = stamp;
        t.batchPeer = distinct.length;
        distinct.push(t);
      }
    }
    const peerCount = distinct.length;
    const peersAt = PROGRESS_BYTES + count * META_IN * 4;
    const dataStart = peersAt + peerCount * META_PEER * 4;
    const slot = this.#freeSlots.pop()!;
    // Replies are about as large as requests for most protocols, plus their headers.
    const arena = this.#arena(slot, dataStart + bytes, bytes + count * 16);
    const buf = arena.input!;
    const meta = new Uint32Array(buf, PROGRESS_BYTES, count * META_IN);
    const peers = new Uint32Array(buf, peersAt, peerCount * META_PEER);
    const data = new Uint8Array(buf, dataStart);
    // Addresses as a short de-duplicated list (most peers share a few), not a string per peer.
    const addrs: string[] = [];
    let lastAddr = '';
    let lastIndex = -1;
    for (let p = 0; p < peerCount; p++) {
      const t = distinct[p]!;
      const addr = t.remoteAddress;
      if (addr !== lastAddr || lastIndex < 0) {
        lastIndex = addrs.indexOf(addr);
        if (lastIndex < 0) lastIndex = addrs.push(addr) - 1;
        lastAddr = addr;
      }
      peers[p * META_PEER] = t.id;
      peers[p * META_PEER + 1] = t.remotePort;
      peers[p * META_PEER + 2] = lastIndex;
    }
    let off = 0;
    for (let k = 0; k < count; k++) {
      const t = targets[k]!;
      const f = frames[k]!;
      const m = k * META_IN;
      meta[m] = t.batchPeer;
      meta[m + 1] = seqs[k]! >>> 0;
      meta[m + 2] = off;
      meta[m + 3] = f.length;
      data.set(f, off);
      off += f.length;
    }
    const progress = arena.progress;
    progress[PROGRESS_INDEX] = PROGRESS_NOT_STARTED;
    const task: BatchTask = { kind: 'batch', count, peerCount, input: buf, output: arena.output!, addrs };
    // Metrics on: the worker measures the queue wait from here (counters live in shared memory).
    if (this.#spec.metrics) task.sentAt = performance.timeOrigin + performance.now();
    const abort = this.#o.handlerTimeout > 0 ? new AbortController() : null;
    const batch: InFlightBatch = { targets, seqs, frames, slot, progress, abort, timedOut: -1, worker: -1 };
    this.#inFlight.add(batch);
    this.#framesInFlight += count;
    this.#batchesSent++;
    this.#framesSent += count;
    this.#placing = batch;
    this.#pool!.run(task, { signal: abort?.signal ?? null }).then(
      (r: BatchResult) => this.#onResult(batch, r),
      (err: unknown) => this.#onFailure(batch, err),
    );
    this.#placing = null; // Piscina queued it (no worker ready): its worker stays unknown
  }

  #settled(batch: InFlightBatch): void {
    const count = batch.targets.length;
    this.#inFlight.delete(batch);
    this.#freeSlots.push(batch.slot);
    if (batch.worker >= 0) {
      // Entries stay at 0 rather than being deleted (set/delete churn reallocates the
      // Map); a destroyed worker's entry is gone already (see start()).
      const had = this.#perWorker.get(batch.worker);
      if (had !== undefined) {
        if (had === 1) this.#busyWorkers--;
        this.#perWorker.set(batch.worker, had - 1);
      }
    }
    this.#framesInFlight -= count;
    if (this.#inFlight.size === 0 && this.#queue.size === 0) this.emit('idle');
    this.#schedule();
  }

  #onResult(batch: InFlightBatch, result: BatchResult): void {
    const { targets, seqs } = batch;
    const n = targets.length;
    // Copy the replies out before the slot is free again: they may wait in send queues.
    const arena = this.#arenas[batch.slot]!;
    if (result.output !== undefined) arena.output = result.output;
    arena.outputUsed = result.length;
    const data = Buffer.allocUnsafe(result.length);
    if (result.length > 0) data.set(new Uint8Array(arena.output!, 0, result.length));
    this.#settled(batch);
    if (result.loadError) {
      // A replacement worker could not load the handler: nothing in this batch can run.
      this.#events.workerFailure(result.loadError, n);
      for (let k = 0; k < n; k++) this.#applyPolicy(targets[k]!, seqs[k]!, result.loadError);
      return;
    }
    const { meta } = result;
    const cost = result.elapsedMs / n;
    this.#costPerFrame = this.#costPerFrame === 0 ? cost : this.#costPerFrame * 0.8 + cost * 0.2;
    if (result.errors !== null) {
      for (const e of result.errors) this.#events.handlerError(targets[e.index]!, seqs[e.index]!, e);
    }
    const reframe = this.#spec.framing === null;
    let i = 0;
    while (i < n) {
      const t = targets[i]!;
      const status = meta[i * META_OUT]!;
      const start = meta[i * META_OUT + 1]!;
      let end = start + meta[i * META_OUT + 2]!;
      let j = i + 1;
      // Coalesce a run of one connection's messages whose replies sit back to back.
      if (status === STATUS_REPLY) {
        while (
          j < n &&
          targets[j] === t &&
          seqs[j] === seqs[j - 1]! + 1 && // retried frames may sit next to later ones
          meta[j * META_OUT] === STATUS_REPLY &&
          meta[j * META_OUT + 1] === end
        ) {
          end += meta[j * META_OUT + 2]!;
          j++;
        }
      }
      let bytes: Buffer | null = end > start ? data.subarray(start, end) : null;
      if (bytes !== null && reframe) bytes = this.#reframe(bytes);
      t.deliver(seqs[i]!, j - i, bytes, status === STATUS_CLOSE);
      i = j;
    }
  }

  /** A user framing cannot run in workers: they sent [u32 length][body] records; frame them here. */
  #reframe(records: Buffer): Buffer | null {
    const bodies: Uint8Array[] = [];
    for (let off = 0; off < records.length; ) {
      const len = records.readUInt32BE(off);
      bodies.push(records.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    return frameReplies(this.#framing, bodies);
  }

  /**
   * The task failed as a whole: its worker died (process.exit, a crash, or we
   * terminated it for handlerTimeout), or it shared a worker we terminated.
   * The message that was running (the culprit, named by the progress cell) gets
   * the error policy; the others did nothing wrong and are retried on a live
   * worker. When no culprit can be named, each message is retried at most
   * MAX_BLIND_RETRIES times, then gets the policy: nothing is silently lost and
   * a message that kills every worker cannot loop forever.
   */
  #onFailure(batch: InFlightBatch, err: unknown): void {
    const { targets, seqs, frames } = batch;
    // Its worker may still be running (a timed-out handler is terminated asynchronously):
    // the next batch of this slot gets fresh buffers that it cannot write into.
    const arena = this.#arenas[batch.slot]!;
    arena.input = arena.output = null;
    this.#settled(batch);
    if (this.#closing) return; // killed by close() at its deadline: the connections are gone
    const message = (err as Error)?.message ?? String(err);
    let culprit = -1;
    let error: SerializedError;
    let blind = false;
    if (batch.timedOut >= 0) {
      culprit = batch.timedOut;
      error = { code: 'SHOAL_HANDLER_TIMEOUT', message: `handler ran past handlerTimeout (${this.#o.handlerTimeout} ms); its worker was replaced` };
    } else if (/queue is at limit/i.test(message)) {
      // Cannot happen while we keep to our slots; if it does, say so instead of blaming a worker.
      error = { code: 'SHOAL_POOL_SATURATED', message: `the pool refused the batch: ${message}` };
    } else if (message === THREAD_TERMINATION) {
      error = { code: 'SHOAL_WORKER_DIED', message: 'worker terminated while this batch was queued on it' };
    } else {
      const at = batch.progress[PROGRESS_INDEX]!;
      // A batch that never started is innocent; one in its async phase cannot name a culprit.
      culprit = at >= 0 ? at : -1;
      blind = at === PROGRESS_ASYNC;
      error = err instanceof ShoalError ? err.toJSON() : { code: 'SHOAL_WORKER_DIED', message: `worker died: ${message}` };
    }
    this.#events.workerFailure(error, culprit >= 0 ? 1 : blind ? targets.length : 0);
    const retry: number[] = [];
    for (let k = 0; k < targets.length; k++) {
      if (k === culprit) {
        this.#applyPolicy(targets[k]!, seqs[k]!, error);
        continue;
      }
      if (blind) {
        const n = (this.#retries.get(frames[k]!) ?? 0) + 1;
        if (n > MAX_BLIND_RETRIES) {
          this.#applyPolicy(targets[k]!, seqs[k]!, error);
          continue;
        }
        this.#retries.set(frames[k]!, n);
      }
      retry.push(k);
    }
    if (culprit >= 0 || blind) {
      // Until the cost estimate recovers, batches carry one message: the next crash
      // takes down one message, not a batch that must be retried.
      this.#costPerFrame = Math.max(this.#costPerFrame, TARGET_BATCH_MS);
    }
    if (retry.length > 0) {
      // Back to the front of their lanes: these are the oldest frames.
      this.#queue.requeue(
        retry.map((k) => targets[k]!),
        retry.map((k) => seqs[k]!),
        retry.map((k) => frames[k]!),
      );
      this.#schedule();
    }
  }

  /** The error policy, applied on the main thread (the module's errorReply() is not reachable here). */
  #applyPolicy(target: DispatchTarget, seq: number, error: SerializedError): void {
    this.#events.handlerError(target, seq, error);
    const policy = this.#o.onHandlerError;
    let errorFrame: Buffer | null = null;
    if (policy === 'error-frame') {
      try {
        errorFrame = frameReplies(this.#framing, defaultErrorReply(error)) as Buffer | null;
      } catch {
        errorFrame = null;
      }
    }
    target.deliver(seq, 1, errorFrame, policy === 'close');
  }

  stats(): DispatcherStats {
    return {
      workers: this.#o.workers,
      pendingFrames: this.#queue.size,
      pendingBytes: this.#queue.bytes,
      batchesInFlight: this.#inFlight.size,
      framesInFlight: this.#framesInFlight,
      batchesSent: this.#batchesSent,
      framesSent: this.#framesSent,
      saturated: this.#saturated,
    };
  }

  /** The pool, for the admin endpoint (thread list, utilization). */
  get pool(): Piscina | null {
    return this.#pool;
  }

  /**
   * Let batches in flight finish (their connections are gone or drained, but a
   * worker killed mid-task would only log noise), then teardown() everywhere,
   * then destroy the threads. Every step is bounded by timeoutMs.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.#pool === null) return;
    this.#closing = true;
    if (this.#watchdog) clearInterval(this.#watchdog);
    // Frames still waiting belong to connections that were destroyed: nobody is left to answer.
    this.#queue.clear();
    if (this.#inFlight.size > 0) await waitAtMost(new Promise((r) => this.once('idle', r)), timeoutMs);
    // A control task still out (a profile being stopped) would hold workers at its barrier: let it end first.
    await waitAtMost(this.#controlChain, timeoutMs);
    await this.#barrier('teardown', timeoutMs).catch(() => []);
    await this.#destroyPool();
  }

  async #destroyPool(): Promise<void> {
    const pool = this.#pool;
    this.#pool = null;
    if (pool) await pool.destroy().catch(() => {});
  }
}

