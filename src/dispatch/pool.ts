import { EventEmitter } from 'node:events';
import type { Piscina } from 'piscina';
import { HandlerLoadError, ShoalError, errorFromCode, serializeError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import type { Framing } from '../framing/types.js';
import { Context, HandlerRuntime, defaultErrorReply, loadAffinityKey } from '../../workers/runtime.js';
import type { ErrorPolicy } from '../../workers/runtime.js';
import { waitAtMost } from '../wait.js';
import { ConnectionShards, MAIN_THREAD, shardOfKey } from './affinity.js';
import type { AffinityKeyFn, AffinityMode } from './affinity.js';
import { Arena } from './arena.js';
import { FairQueue } from './fair-queue.js';
import { InlineExecutor, frameReplies } from './inline.js';
import type { HandlerTiming } from './inline.js';
import { OffloadPolicy, RUN_INLINE, RUN_INLINE_TIMED, RUN_POOL } from './offload.js';
import type { OffloadMode, Placement } from './offload.js';
import type { ControlRequest, IdleWait, WorkerSpec } from './protocol.js';
import { R_CLOSE, R_ERROR, R_PUSH } from './reply-ring.js';
import { readPushes } from './push-wire.js';
import type { Push } from './push-wire.js';
import type { ReplyReader, ReplyRecord } from './reply-ring.js';
import { WorkerSet } from './workers.js';
import { deathError, fateOf, timeoutError } from './recovery.js';
import { QUEUE_AHEAD_MS, aheadLimit } from './sizing.js';
import { proxyToBytes } from '../edge/proxy-wire.js';
import type { RestartReason, Serving } from './workers.js';
import {
  ADDR_ENTRIES,
  ADDR_ENTRY_BYTES,
  ADDR_INLINE,
  CTL_DOORBELL,
  CTL_MAIN_WAITING,
  FIELDS,
  F_ADDR_INDEX,
  F_ADDR_LENGTH,
  F_PROXY_LENGTH,
  F_CONNECTION,
  F_LENGTH,
  F_OFFSET,
  F_PORT,
  F_SEQUENCE,
  F_SHARD,
  F_SHORT,
  HOLD_BELOW_MS,
  STATE_FREE,
  STATE_QUEUED,
  STATE_QUEUED_OWN,
  WorkQueueView,
  WorkQueueWriter,
  createWorkQueue,
} from './work-queue.js';
import type { WorkQueueBuffers } from './work-queue.js';
import type { DispatchEvents, Dispatcher, DispatcherStats, DispatchTarget } from './types.js';

/**
 * Message slots: messages handed to the pool and not yet answered (waiting in the
 * queue, running, or async). More wait on the main thread, in the fair queue.
 */
const MESSAGE_SLOTS = 4096;

/**
 * How often the main thread reads the rings and refills the queue whatever the doorbell says
 * (ms), while messages are out or waiting. The doorbell's wait has no timeout (see #arm());
 * this bounds a lost wake-up, of which there is none by construction, and a refill nothing
 * else asked for.
 */
const DOORBELL_BACKSTOP_MS = 100;

/**
 * While frames wait in the fair queue (demand exceeds what the shared queue holds, so
 * each worker has about QUEUE_AHEAD_MS of work queued), the main thread reads the rings
 * every POLL_MS instead of waking on each reply: as a network driver switches from
 * interrupts to polling under load (NAPI). A wake-up costs this 2-core VM's main thread
 * ~50 us of CPU however little it then does, and at ~1 ms messages it woke ~1.8 times
 * per message: 20-22 % of a core taken from the workers. A reply then waits up to
 * POLL_MS more, while the queue ahead of it holds QUEUE_AHEAD_MS of work anyway. The
 * doorbell takes over again as soon as the fair queue is empty.
 */
const POLL_MS = 1;

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
  /** 'connection': a connection's messages run on one worker, in order (affinity.ts). */
  affinity: AffinityMode;
  /** 'auto': workers may hold a reply's doorbell for a short next message (F_SHORT); 'off': never. */
  replyHold: 'auto' | 'off';
}

/** What #shardFor returns when the module's affinityKey() threw (the message got the error policy). */
const SHARD_FAILED = -2;
/** What #shardFor returns for the MAIN_THREAD key: run inline, in order. */
const SHARD_MAIN = -3;

export type { RestartReason } from './workers.js';

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
  readonly #workers: WorkerSet;

  readonly #buffers: WorkQueueBuffers;
  readonly #view: WorkQueueView;
  readonly #writer: WorkQueueWriter;
  readonly #arena: Arena;
  readonly #data: Buffer;
  readonly #metricsOn: boolean;
  readonly #routeBytes: 0 | 2 | 4;
  readonly #reframe: boolean;
  /** replyHold 'auto': F_SHORT may be set, letting a worker hold a reply's doorbell. */
  readonly #holdReplies: boolean;
  /** Remote addresses in the shared address table, by text. */
  readonly #addresses = new Map<string, number>();

  /** Per message slot: who asked, which message, its kind, where its bytes are, retries. */
  readonly #targets: (DispatchTarget | null)[] = new Array(MESSAGE_SLOTS).fill(null);
  readonly #seqs = new Uint32Array(MESSAGE_SLOTS);
  readonly #keys = new Float64Array(MESSAGE_SLOTS);
  readonly #offsets = new Int32Array(MESSAGE_SLOTS);
  readonly #retries = new Uint8Array(MESSAGE_SLOTS);
  /** A message's pushes (its R_PUSH record), until its R_REPLY record delivers them with its replies. */
  readonly #pushes: (Push[] | null)[] = new Array(MESSAGE_SLOTS).fill(null);
  readonly #free = new Int32Array(MESSAGE_SLOTS);
  /** Per message slot: the shard it must run on, or -1 (any worker). */
  readonly #slotShard = new Int16Array(MESSAGE_SLOTS).fill(-1);
  #freeTop = 0;
  /** Messages in the pool: queued, running or async. */
  #outstanding = 0;

  /** Frames waiting for room in the shared queue, one lane per connection. */
  readonly #queue: FairQueue;
  #saturated = false;
  /** Moving average of handler time per pooled message (ms): sizes how much the queue holds. */
  #cost = 0;

  readonly #policy: OffloadPolicy;
  /** Affinity: 'connection' shards, or the module's affinityKey (set at start); #affine if either. */
  readonly #connectionShards: ConnectionShards | null;
  #affinityKey: AffinityKeyFn | null = null;
  #affine: boolean;
  /** Messages waiting or running per shard; shards whose worker needs a wake-up this turn. */
  readonly #shardLoad: Int32Array;
  readonly #shardsToWake: Uint8Array;
  #anyShardToWake = false;
  #inline: InlineExecutor | null = null;
  /** Set by the admin server when metrics are on: times the messages run inline. */
  onHandlerTiming: HandlerTiming | null = null;

  #armed = false;
  #backstop: NodeJS.Timeout | null = null;
  /** Set while the main thread polls the rings (POLL_MS) instead of waiting on the doorbell. */
  #pollTimer: NodeJS.Timeout | null = null;
  /** How replies were read: wakeStats(). */
  #doorbellWakes = 0;
  #polls = 0;
  #backstopReplies = 0;
  /** Replies the backstop read while a wait was pending, rung or not (held ones, lost wake-ups). */
  #backstopReads = 0;
  #repliesRead = 0;
  #draining = false;
  #wakeQueued = false;
  #lastBell = 0;
  /** The doorbell's value when the pending wait was armed (#arm()) or announced again (#onPoll). */
  #armedBell = 0;
  #started = false;
  #closing = false;
  #framesSent = 0;
  #inlineRun = 0;

  constructor(options: PoolOptions, spec: WorkerSpec, framing: Framing, events: DispatchEvents) {
    super();
    this.#o = options;
    this.#spec = spec;
    this.#framing = framing;
    this.#events = events;
    // A connection's turn in the refill: as many of its frames as the workers run at once, twice (fair-queue.ts).
    this.#queue = new FairQueue(2 * options.workers);
    // Room for several of the largest frames (with their address) at once.
    const dataBytes = Math.max(16 * 1024 * 1024, 4 * (spec.maxFrame + 64));
    this.#buffers = createWorkQueue(MESSAGE_SLOTS, dataBytes, options.workers);
    this.#view = new WorkQueueView(this.#buffers);
    this.#writer = new WorkQueueWriter(this.#view);
    this.#arena = new Arena(dataBytes);
    this.#data = Buffer.from(this.#buffers.data);
    for (let s = MESSAGE_SLOTS - 1; s >= 0; s--) this.#free[this.#freeTop++] = s;
    this.#metricsOn = spec.metrics != null;
    this.#routeBytes = spec.runtime.routing?.idBytes ?? 0;
    this.#reframe = spec.framing === null;
    this.#holdReplies = options.replyHold !== 'off';
    // A stuck handler can be stopped only in a worker: with a handlerTimeout, 'auto' keeps every message in the pool.
    this.#policy = new OffloadPolicy(options.offload === 'auto' && options.handlerTimeout > 0 ? 'always' : options.offload);
    this.#connectionShards = options.affinity === 'connection' ? new ConnectionShards(options.workers) : null;
    this.#affine = this.#connectionShards !== null;
    this.#shardLoad = new Int32Array(options.workers);
    this.#shardsToWake = new Uint8Array(options.workers);
    this.#workers = new WorkerSet(options, spec, this.#buffers, this.#view, {
      // Messages may have queued while no worker was ready: they are taken now.
      ready: () => this.#writer.wake(1),
      gone: (w, err) => this.#recover(w, err),
      loadFailed: (error, others) => this.#onLoadFailed(error, others),
      restarted: (reason, threadId) => this.emit('workerRestart', reason, threadId),
      error: (error) => this.#events.workerFailure(error, 0),
    });
  }

  get saturated(): boolean {
    return this.#saturated;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const inline = this.#policy.mode === 'always' ? Promise.resolve(null) : HandlerRuntime.load(this.#spec.runtime, 0);
    this.#workers.start();
    this.#started = true;
    this.#backstop = setInterval(this.#onBackstop, DOORBELL_BACKSTOP_MS);
    this.#backstop.unref();
    let failure: SerializedError | null = null;
    try {
      const runtime = await inline;
      if (runtime !== null) this.#inline = new InlineExecutor(runtime, this.#framing, this.#events, this.#spec.handlerTimeout);
      const key = runtime !== null ? runtime.affinityKey : await loadAffinityKey(this.#spec.runtime.handlerUrl);
      if (key !== null && o.affinity === 'connection') {
        throw new HandlerLoadError(`${this.#spec.runtime.handlerUrl} exports affinityKey() and affinity is 'connection': choose one`);
      }
      this.#affinityKey = key;
      this.#affine ||= key !== null;
      failure = await this.#workers.allReady(o.startupTimeout);
    } catch (err) {
      failure = serializeError(err);
    }
    if (failure !== null) {
      this.#closing = true;
      this.#stopBackstop();
      await this.#workers.destroy();
      throw new HandlerLoadError(failure.message);
    }
  }

  /** A worker cannot load the handler (a replacement, the module changed on disk). */
  #onLoadFailed(error: SerializedError, others: boolean): void {
    if (others) {
      this.#events.workerFailure(error, 0);
      return;
    }
    // No worker can run the handler: nothing queued can run.
    this.#events.workerFailure(error, this.#outstanding + this.#queue.size);
    this.#failAllWaiting(error);
  }

  /**
   * A dead worker's messages (its thread is gone): the replies it published are
   * delivered, then each message it held meets its fate (recovery.ts).
   */
  #recover(s: Serving, err: unknown): void {
    this.#drainRing(s.ring);
    const died = deathError(err);
    const state = this.#view.state;
    let failed = 0;
    let error = died;
    for (let slot = 0; slot < MESSAGE_SLOTS; slot++) {
      const fate = fateOf(Atomics.load(state, slot), s.gen, this.#retries[slot]!, this.#slotShard[slot]! >= 0);
      if (fate === null) continue;
      if (fate === 'retry') {
        this.#retries[slot]!++;
        this.#requeue(slot);
        continue;
      }
      let why = died;
      if (fate === 'culprit') {
        if (slot === s.timedOut) error = why = timeoutError(this.#o.handlerTimeout);
        this.#policy.pin(this.#keys[slot]!); // it killed or hung its worker: never a kind for the main thread
      }
      this.#applyPolicy(slot, why);
      failed++;
    }
    // Until the cost estimate recovers, the queue holds little: the next crash or hang
    // then holds up a few messages, not hundreds queued behind it.
    this.#cost = Math.max(this.#cost, QUEUE_AHEAD_MS);
    this.#events.workerFailure(error, failed);
    // Its replacement starts with empty state: whatever it kept for its connections or keys is gone.
    if (this.#affine) this.emit('affinityLost', { threadId: s.threadId, reason: s.killed ? 'handler_timeout' : 'exit' });
    // The failed messages' slots are free: what waits on the main thread moves into the queue
    // now (no reply may come to trigger a drain when every message out has failed).
    this.#drainAndArm();
  }

  /** True when messages have affinity (the 'connection' option, or the module's affinityKey). */
  get affine(): boolean {
    return this.#affine;
  }

  /** Put a message back in the shared queue (a retry). */
  #requeue(slot: number): void {
    this.#pushes[slot] = null; // the run again writes its own (maybe different) pushes
    if (this.#writer.hasRoom) {
      this.#writer.append(slot);
      this.#wakeSoon();
      return;
    }
    // No queue position free (cannot happen while positions outnumber slots twice): wait on the main thread.
    const target = this.#targets[slot]!;
    const seq = this.#seqs[slot]!;
    const at = this.#view.frameOffset(slot);
    const frame = Buffer.from(this.#data.subarray(at, at + this.#view.fields[slot * FIELDS + F_LENGTH]!));
    this.#release(slot);
    this.#queue.requeue([target], [seq], [frame]);
  }

  /** Every worker is gone for good: what waits gets the error policy. */
  #failAllWaiting(error: SerializedError): void {
    const state = this.#view.state;
    for (let slot = 0; slot < MESSAGE_SLOTS; slot++) {
      const s = Atomics.load(state, slot);
      // Waiting in either queue; the compareExchange wins it from a worker taking it now.
      if ((s === STATE_QUEUED || s === STATE_QUEUED_OWN) && Atomics.compareExchange(state, slot, s, STATE_FREE) === s) this.#applyPolicy(slot, error);
    }
    while (this.#queue.size > 0) {
      const t = this.#queue.take(this.#queue.size, Infinity);
      for (let k = 0; k < t.frames.length; k++) this.#policyFor(t.targets[k]!, t.seqs[k]!, error);
    }
  }

  /**
   * Deliver a control request to the worker whose threadId is `request.target`.
   * Resolves with its answer; rejects if that worker is gone or did not answer in time.
   */
  control(request: ControlRequest, timeoutMs: number): Promise<unknown> {
    if (this.#closing) return Promise.reject(new ShoalError('SHOAL_SERVER_CLOSED', 'the pool is closed'));
    return this.#workers.control(request, timeoutMs);
  }

  /** Workers replaced since start, by reason. */
  get restarts(): Readonly<Record<RestartReason, number>> {
    return this.#workers.restarts;
  }

  /** The kind of a message for the offload decision: its route id, or -1 (one kind) without routing. */
  #keyOf(frame: Buffer): number {
    const n = this.#routeBytes;
    if (n === 0 || frame.length < n) return -1;
    return n === 4 ? frame.readUInt32BE(0) : frame.readUInt16BE(0);
  }

  submit(target: DispatchTarget, seq: number, frame: Buffer): void {
    const key = this.#keyOf(frame);
    const shard = this.#affine ? this.#shardFor(target, seq, frame) : -1;
    if (shard === SHARD_FAILED) return;
    if (this.#inline !== null) {
      const where = this.#placement(key, shard);
      if (where === RUN_INLINE && this.onHandlerTiming === null) {
        // The common case, as short as workers: 0's path (a cheap message pays for every call here).
        this.#inlineRun++;
        this.#inline.run(target, seq, frame);
        return;
      }
      if (where !== RUN_POOL) {
        this.#runInline(target, seq, frame, key, where === RUN_INLINE_TIMED);
        return;
      }
    }
    this.#framesSent++;
    const q = this.#queue;
    if (q.size > 0 || !this.#dispatch(target, seq, frame, key, shard)) q.push(target, seq, frame);
    if (!this.#saturated && (q.size + this.#view.depth >= this.#o.maxPendingFrames || q.bytes >= this.#o.maxPendingBytes)) {
      this.#saturated = true;
      this.emit('saturated');
    }
  }

  /**
   * Where a message runs: a keyless one where the offload puts its kind; one with affinity in
   * its worker (its state is there), unless its shard is the main thread or everything runs
   * inline ('never'), and then never as a sample (it says nothing of its kind's cost).
   */
  #placement(key: number, shard: number): Placement {
    if (shard === -1) return this.#policy.route(key);
    return shard === SHARD_MAIN || this.#policy.mode === 'never' ? RUN_INLINE : RUN_POOL;
  }

  /** The shard a message must run on, -1 for any worker, SHARD_FAILED if affinityKey() threw. */
  #shardFor(target: DispatchTarget, seq: number, frame: Buffer): number {
    const conns = this.#connectionShards;
    if (conns !== null) return conns.of(target, this.#loadOf);
    let k: unknown;
    try {
      k = this.#affinityKey!(frame);
    } catch (err) {
      this.#policyFor(target, seq, serializeError(err));
      return SHARD_FAILED;
    }
    if (k === null || k === undefined) return -1;
    // Without the module on the main thread (offload 'always'), the main thread's key is one worker's shard.
    if (k === MAIN_THREAD) return this.#inline !== null ? SHARD_MAIN : 0;
    return shardOfKey(k as string | number | Uint8Array, this.#o.workers);
  }

  readonly #loadOf = (shard: number): number => this.#shardLoad[shard]!;

  /** Run a message here; `sampled`: time it for its kind's cost (RUN_INLINE_TIMED). */
  #runInline(target: DispatchTarget, seq: number, frame: Buffer, key: number, sampled: boolean): void {
    this.#inlineRun++;
    const exec = this.#inline!;
    const timing = this.onHandlerTiming;
    if (!sampled && timing === null) {
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
    if (sampled) this.#policy.observe(key, t1 - t0);
    if (timing !== null) {
      if (r instanceof Promise) void r.then((ctx) => timing.end(ctx.routeId, t0));
      else timing.end(r.routeId, t0);
    }
  }

  /** How many messages the shared queue may hold ahead of the workers (QUEUE_AHEAD_MS of work each). */
  #depthLimit(): number {
    return aheadLimit(this.#o.workers, this.#cost);
  }

  /**
   * Copy a message into the shared queue, or into its shard's own queue (`shard` >= 0);
   * false when there is no room for it now. A shard's queue holds as much work ahead
   * as the shared queue holds for one worker.
   */
  #dispatch(target: DispatchTarget, seq: number, frame: Buffer, key: number, shard: number): boolean {
    const depth = this.#view.depth;
    if (this.#freeTop === 0 || depth >= this.#o.maxPendingFrames) return false;
    if (shard < 0) {
      if (!this.#writer.hasRoom || depth >= this.#depthLimit()) return false;
    } else if (!this.#writer.hasOwnRoom(shard) || this.#view.ownDepth(shard) >= aheadLimit(1, this.#cost)) {
      return false;
    }
    const addr = target.remoteAddress;
    const index = this.#addressIndex(addr);
    const inline = index === ADDR_INLINE ? addr.length : 0;
    const proxy = target.proxy != null ? proxyToBytes(target.proxy) : null;
    const proxyLength = proxy === null ? 0 : proxy.length;
    const at = this.#arena.alloc(inline + proxyLength + frame.length);
    if (at < 0) return false;
    const slot = this.#free[--this.#freeTop]!;
    const data = this.#data;
    const addrLength = inline > 0 ? data.write(addr, at, 'latin1') : 0;
    if (proxy !== null) data.set(proxy, at + addrLength);
    data.set(frame, at + addrLength + proxyLength);
    const f = this.#view.fields;
    const b = slot * FIELDS;
    f[b + F_CONNECTION] = target.id;
    f[b + F_SEQUENCE] = seq;
    f[b + F_OFFSET] = at;
    f[b + F_ADDR_LENGTH] = addrLength;
    f[b + F_LENGTH] = frame.length;
    f[b + F_PORT] = target.remotePort;
    f[b + F_ADDR_INDEX] = index;
    f[b + F_PROXY_LENGTH] = proxyLength;
    f[b + F_SHARD] = shard + 1;
    f[b + F_SHORT] = this.#holdReplies && this.#policy.shortBelow(key, HOLD_BELOW_MS) ? 1 : 0;
    if (this.#metricsOn) this.#view.queuedAt[slot] = performance.timeOrigin + performance.now();
    this.#targets[slot] = target;
    this.#seqs[slot] = seq;
    this.#keys[slot] = key;
    this.#offsets[slot] = at;
    this.#retries[slot] = 0;
    this.#slotShard[slot] = shard;
    this.#outstanding++;
    if (shard < 0) {
      this.#writer.append(slot);
    } else {
      this.#shardLoad[shard]!++;
      this.#writer.appendOwn(slot, shard);
      this.#shardsToWake[shard] = 1;
      this.#anyShardToWake = true;
    }
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
    // Peeked, and taken only once it has a place: the first one without room stays first.
    for (let frame = q.peekFrame(); frame !== null; frame = q.peekFrame()) {
      const target = q.peekTarget();
      const seq = q.peekSeq();
      const key = this.#keyOf(frame);
      const shard = this.#affine ? this.#shardFor(target, seq, frame) : -1;
      if (shard === SHARD_FAILED) {
        q.shift(); // its error policy ran
        continue;
      }
      const where = this.#inline !== null ? this.#placement(key, shard) : RUN_POOL;
      if (where !== RUN_POOL) {
        q.shift();
        this.#runInline(target, seq, frame, key, where === RUN_INLINE_TIMED);
        continue;
      }
      if (!this.#dispatch(target, seq, frame, key, shard)) break;
      q.shift();
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
    const ownOnly = this.#anyShardToWake && this.#view.depth === 0;
    if (this.#anyShardToWake) {
      this.#anyShardToWake = false;
      const wake = this.#shardsToWake;
      for (let shard = 0; shard < wake.length; shard++) {
        if (wake[shard] === 0) continue;
        wake[shard] = 0;
        this.#writer.wakeShard(shard);
      }
    }
    const sleepers = this.#writer.sleepers;
    if (sleepers > 0 && !ownOnly) this.#writer.wake(Math.min(sleepers, Math.max(1, this.#view.depth)));
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
    if (this.#outstanding === 0 || this.#closing) return;
    // While polling, workers need not notify (the wait is only there for when polling ends).
    if (this.#pollTimer === null) Atomics.store(ctl, CTL_MAIN_WAITING, 1);
    // A worker that publishes after the load above changes the doorbell or sees
    // CTL_MAIN_WAITING and notifies (reply-ring.ts ring()). No timeout: each wait's timeout
    // is a delayed platform task with a libuv timer of its own, kept in a list that every
    // resolved wait scans (node's DeleteFromScheduledTasks), and most waits are resolved
    // long before it. One interval timer (#backstop) bounds a lost wake-up instead.
    const w = Atomics.waitAsync(ctl, CTL_DOORBELL, seen);
    this.#armed = true;
    this.#armedBell = seen;
    if (w.async) void w.value.then(this.#onDoorbell);
    else {
      // Rang while we read: read again after I/O had its turn. No wait is pending, so none is
      // announced (workers need not notify, and the backstop finds no wait to call lost).
      Atomics.store(ctl, CTL_MAIN_WAITING, 0);
      setImmediate(this.#onDoorbell);
    }
  }

  readonly #onBackstop = (): void => {
    if (this.#draining || this.#closing || (this.#outstanding === 0 && this.#queue.size === 0)) return;
    // A wait announced and pending that no worker notified (a worker that notifies clears
    // CTL_MAIN_WAITING) though the doorbell rang: a lost wake-up, which the backstop ends.
    // (Replies whose doorbell a worker holds for a short next message have not rung it.)
    const ctl = this.#view.ctl;
    const waiting = this.#armed && this.#pollTimer === null && Atomics.load(ctl, CTL_MAIN_WAITING) === 1;
    const unnotified = waiting && Atomics.load(ctl, CTL_DOORBELL) !== this.#armedBell;
    const before = this.#repliesRead;
    this.#drainAndArm();
    if (waiting) this.#backstopReads += this.#repliesRead - before;
    if (unnotified) this.#backstopReplies += this.#repliesRead - before;
  };

  /** Read the rings and refill the queue, then wait on the doorbell if messages are out: one drain either way (#arm() drains first). */
  #drainAndArm(): void {
    if (!this.#armed && !this.#draining) this.#arm();
    else this.#drainAll();
  }

  /**
   * End a pending doorbell wait (it has no timeout): V8 holds every pending waiter, with its
   * promise and this queue's shared memory, until it is notified. A closed pool (a hot
   * reload closes one each time) must not leave one behind.
   */
  #releaseWait(): void {
    if (!this.#armed) return;
    const ctl = this.#view.ctl;
    Atomics.add(ctl, CTL_DOORBELL, 1);
    Atomics.notify(ctl, CTL_DOORBELL);
  }

  #stopBackstop(): void {
    if (this.#backstop !== null) clearInterval(this.#backstop);
    this.#backstop = null;
  }

  readonly #onDoorbell = (): void => {
    this.#doorbellWakes++;
    this.#armed = false;
    Atomics.store(this.#view.ctl, CTL_MAIN_WAITING, 0);
    if (this.#closing) return;
    if (this.#outstanding > 0 || this.#queue.size > 0) this.#arm();
  };

  #drainAll(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      this.#lastBell = Atomics.load(this.#view.ctl, CTL_DOORBELL);
      this.#workers.forEachRing(this.#drainRing);
      if (this.#queue.size > 0 || this.#saturated) this.#refill();
    } finally {
      this.#draining = false;
    }
    if (this.#queue.size > 0 && this.#pollTimer === null && !this.#closing) this.#startPolling();
  }

  #startPolling(): void {
    Atomics.store(this.#view.ctl, CTL_MAIN_WAITING, 0);
    this.#pollTimer = setTimeout(this.#onPoll, POLL_MS);
  }

  #stopPolling(): void {
    if (this.#pollTimer !== null) clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
  }

  readonly #onPoll = (): void => {
    this.#pollTimer = null;
    this.#polls++;
    if (this.#closing) return;
    this.#drainAll(); // polls again (a new timer) while frames still wait in the fair queue
    if (this.#pollTimer !== null) return;
    // Back to the doorbell. A wait pending since polling began must be announced whether or
    // not messages are out now (the next one dispatched finds it armed and adds none), then
    // the rings read once more: a reply published before the announcement did not notify.
    if (this.#armed) {
      Atomics.store(this.#view.ctl, CTL_MAIN_WAITING, 1);
      // Rings while polling owed no notify: a lost wake-up is a ring after this announcement.
      this.#armedBell = Atomics.load(this.#view.ctl, CTL_DOORBELL);
      this.#drainAll();
    } else if (this.#outstanding > 0) {
      this.#arm();
    }
  };

  readonly #drainRing = (ring: ReplyReader): void => {
    ring.drain(this.#onRecord);
  };

  readonly #onRecord = (r: ReplyRecord): void => {
    const slot = r.slot;
    const target = this.#targets[slot];
    if (target === null || target === undefined) return;
    if ((r.flags & R_ERROR) !== 0) {
      const error = JSON.parse(r.bytes.toString('utf8', r.start, r.start + r.length)) as SerializedError;
      this.#events.handlerError(target, this.#seqs[slot]!, error);
      return;
    }
    if ((r.flags & R_PUSH) !== 0) {
      // Assigned, not appended: a retried message (its worker died) writes its pushes again.
      this.#pushes[slot] = readPushes(r.bytes, r.start, r.length, this.#reframe ? this.#framing : null);
      return;
    }
    const pushes = this.#pushes[slot] ?? null;
    this.#repliesRead++;
    let bytes: Buffer | null = null;
    if (r.length > 0) {
      bytes = Buffer.allocUnsafe(r.length);
      r.bytes.copy(bytes, 0, r.start, r.start + r.length);
      if (this.#reframe) bytes = this.#frameRecords(bytes);
    }
    const seq = this.#seqs[slot]!;
    const cost = r.costMs;
    this.#cost = this.#cost === 0 ? cost : this.#cost + (cost - this.#cost) * 0.1;
    // A message with affinity never runs inline: its cost must not move its kind (keyless ones may differ).
    if (this.#slotShard[slot] === -1) this.#policy.observe(this.#keys[slot]!, cost);
    this.#release(slot);
    target.deliver(seq, 1, bytes, (r.flags & R_CLOSE) !== 0, pushes);
  };

  /** A message is done: its slot and its bytes are free again. */
  #release(slot: number): void {
    this.#targets[slot] = null;
    const shard = this.#slotShard[slot]!;
    if (shard >= 0) {
      this.#shardLoad[shard]!--;
      this.#slotShard[slot] = -1;
    }
    this.#pushes[slot] = null; // a message that failed on this side (its worker died) sends none
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
      inline.runner.fail(target, Context.of(target, seq), errorFromCode(error));
      return;
    }
    this.#events.handlerError(target, seq, error);
    const policy = this.#o.onHandlerError;
    let errorFrame: Buffer | null = null;
    if (policy === 'error-frame') {
      try {
        const own = this.#framing.errorReply?.(error);
        errorFrame = own !== undefined ? Buffer.from(own.buffer, own.byteOffset, own.byteLength) : frameReplies(this.#framing, defaultErrorReply(error));
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

  /**
   * How the main thread came to read replies: woken by the doorbell, polling (POLL_MS,
   * while frames wait in the fair queue), replies the backstop read while a wait was
   * announced, the doorbell had rung and no worker had notified it (a lost wake-up: 0 unless
   * something is wrong), and every reply the backstop read while a wait was announced (held
   * replies included: rare, as a hold lasts well under a millisecond).
   */
  wakeStats(): { doorbellWakes: number; polls: number; backstopReplies: number; backstopReads: number } {
    return { doorbellWakes: this.#doorbellWakes, polls: this.#polls, backstopReplies: this.#backstopReplies, backstopReads: this.#backstopReads };
  }

  /** Messages run inline by the adaptive offload, and kinds inline / in the pool now. */
  offloadStats(): { inlineMessages: number; pooledMessages: number; inlineKinds: number; pooledKinds: number } {
    const k = this.#policy.summary();
    return { inlineMessages: this.#inlineRun, pooledMessages: this.#framesSent, inlineKinds: k.inline, pooledKinds: k.pool };
  }

  /** The pool, for the admin endpoint (thread list, utilization). */
  get pool(): Piscina | null {
    return this.#workers.pool;
  }

  /**
   * Let the messages in the pool finish (their connections are gone or drained, but
   * a worker killed mid-message would only log noise), then stop every worker (each
   * runs teardown()), then destroy the threads. Every step is bounded by timeoutMs.
   */
  async close(timeoutMs: number): Promise<void> {
    if (!this.#started || this.#closing) return;
    // Frames still waiting belong to connections that were destroyed: nobody is left to answer.
    this.#queue.clear();
    if (this.#outstanding > 0) await waitAtMost(new Promise((r) => this.once('idle', r)), timeoutMs);
    this.#closing = true;
    this.#stopBackstop();
    this.#stopPolling();
    this.#releaseWait();
    await this.#workers.stop(timeoutMs);
    const inline = this.#inline?.runner.runtime;
    if (inline) await waitAtMost(inline.teardown().catch(() => {}), timeoutMs);
    await this.#workers.destroy();
  }
}
