/**
 * Hot reload (issue 12): the dispatcher the server and its connections hold.
 *
 * It forwards every message to the current dispatcher. swap() makes a new one
 * (which loads the handler afresh: new worker threads have fresh module caches)
 * and starts it; only once it is ready do new messages go to it. Messages already
 * submitted finish on the old one, which is then closed (teardown(), bounded).
 * A connection numbers its messages and releases replies in sequence order, so
 * every message before the switch is answered by the old code and every one
 * after it by the new: each connection's replies switch exactly once.
 *
 * Only the Dispatcher interface is used: the pools behind it are not touched.
 */
import { EventEmitter } from 'node:events';
import { ShoalError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import { waitAtMost } from '../wait.js';
import type { ProxyHeader } from '../edge/proxy-protocol.js';
import type { DispatchEvents, Dispatcher, DispatcherStats, DispatchTarget, FramedBytes } from './types.js';
import type { Push } from './push-wire.js';

/** Makes the dispatcher of one generation (0 = the first, made by the server's constructor). */
export type DispatcherFactory = (events: DispatchEvents, generation: number) => Dispatcher;

/** How often a draining dispatcher is checked for its last reply (the interface has no 'idle' event). */
const DRAIN_POLL_MS = 5;

/**
 * A connection as one dispatcher generation sees it. DispatchTarget's scratch field
 * (lane) belongs to one dispatcher: while an old one drains, a
 * new one must not read or overwrite them, so every generation after the first gets
 * its own view of each connection (the first uses the connection itself: a server
 * that never reloads pays nothing).
 */
class TargetView implements DispatchTarget {
  lane: unknown = null;
  readonly id: number;
  constructor(readonly target: DispatchTarget) {
    this.id = target.id;
  }
  get remoteAddress(): string {
    return this.target.remoteAddress;
  }
  get remotePort(): number {
    return this.target.remotePort;
  }
  get proxy(): ProxyHeader | null {
    return this.target.proxy ?? null;
  }
  deliver(seq: number, count: number, bytes: FramedBytes | null, close: boolean, pushes: Push[] | null = null): void {
    this.target.deliver(seq, count, bytes, close, pushes);
  }
}

interface Generation {
  readonly number: number;
  readonly dispatcher: Dispatcher;
  /** null for generation 0, which sees the connections themselves. */
  readonly views: WeakMap<DispatchTarget, TargetView> | null;
  saturated: boolean;
  /** Set by the first #retire(): a generation is closed once. */
  closing: Promise<void> | null;
}

const SUMMED = ['pendingFrames', 'pendingBytes', 'batchesInFlight', 'framesInFlight', 'batchesSent', 'framesSent'] as const;

/** What reload() resolves with. */
export interface SwapReport {
  /** The generation now serving (1 after the first reload). */
  generation: number;
  /** Time to load and start the new dispatcher, ms. */
  startMs: number;
  /** Time the old one took to answer what it had, ms. */
  drainMs: number;
  /** False when the old dispatcher still had messages at the deadline (they got no reply). */
  drained: boolean;
}

export class SwappableDispatcher extends EventEmitter implements Dispatcher {
  readonly #factory: DispatcherFactory;
  readonly #events: DispatchEvents;
  #current: Generation;
  /** Every generation not yet closed: the current one and any still draining. */
  readonly #live = new Set<Generation>();
  #saturated = false;
  /** swap() calls run one after another. */
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Counters of closed generations, so that stats() stays monotonic across reloads. */
  readonly #retired = { batchesSent: 0, framesSent: 0, restarts: {} as Record<string, number> };

  constructor(factory: DispatcherFactory, events: DispatchEvents) {
    super();
    this.#factory = factory;
    this.#events = events;
    this.#current = this.#make(0);
    this.#live.add(this.#current);
  }

  /** The dispatcher serving new messages now (the admin endpoint and metrics read its pool). */
  get current(): Dispatcher {
    return this.#current.dispatcher;
  }

  get generation(): number {
    return this.#current.number;
  }

  get saturated(): boolean {
    return this.#saturated;
  }

  start(): Promise<void> {
    return this.#current.dispatcher.start();
  }

  submit(target: DispatchTarget, seq: number, frame: Buffer): void {
    const g = this.#current;
    if (g.views === null) {
      g.dispatcher.submit(target, seq, frame);
      return;
    }
    let view = g.views.get(target);
    if (view === undefined) g.views.set(target, (view = new TargetView(target)));
    g.dispatcher.submit(view, seq, frame);
  }

  /**
   * Start a new generation and switch to it; resolves once the old one has answered
   * what it had and is closed. If the new one fails to start, the old one keeps
   * serving and this rejects with its error (SHOAL_HANDLER_LOAD_FAILED for a handler
   * that does not load). Calls are serialized.
   */
  swap(drainTimeoutMs: number, closeTimeoutMs: number): Promise<SwapReport> {
    const run = this.#chain.then(() => this.#swap(drainTimeoutMs, closeTimeoutMs));
    this.#chain = run.catch(() => {});
    return run;
  }

  async #swap(drainTimeoutMs: number, closeTimeoutMs: number): Promise<SwapReport> {
    if (this.#closed) throw new ShoalError('SHOAL_SERVER_CLOSED', 'reload after close');
    const t0 = performance.now();
    const next = this.#make(this.#current.number + 1);
    this.#live.add(next);
    try {
      await next.dispatcher.start();
    } catch (err) {
      await this.#retire(next, closeTimeoutMs);
      throw err;
    }
    if (this.#closed) {
      await this.#retire(next, closeTimeoutMs);
      throw new ShoalError('SHOAL_SERVER_CLOSED', 'server closed while reloading');
    }
    const old = this.#current;
    this.#current = next;
    // Worker-local state of connections or keys stays with the old workers, which now stop.
    if ((old.dispatcher as { affine?: boolean }).affine === true) this.emit('affinityLost', { threadId: -1, reason: 'reload' });
    const t1 = performance.now();
    const drained = await this.#drain(old, drainTimeoutMs);
    const t2 = performance.now();
    await this.#retire(old, closeTimeoutMs);
    return { generation: next.number, startMs: t1 - t0, drainMs: t2 - t1, drained };
  }

  /** Wait (bounded) until `g` has nothing waiting and nothing in flight. */
  async #drain(g: Generation, timeoutMs: number): Promise<boolean> {
    const idle = (): boolean => {
      const s = g.dispatcher.stats();
      return s.pendingFrames === 0 && s.framesInFlight === 0;
    };
    if (idle()) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => {
      timer = setInterval(() => {
        if (idle() || this.#closed) resolve();
      }, DRAIN_POLL_MS);
    });
    try {
      await waitAtMost(done, timeoutMs);
    } finally {
      clearInterval(timer);
    }
    return idle();
  }

  #retire(g: Generation, timeoutMs: number): Promise<void> {
    g.closing ??= this.#close(g, timeoutMs);
    return g.closing;
  }

  async #close(g: Generation, timeoutMs: number): Promise<void> {
    await g.dispatcher.close(timeoutMs).catch(() => {});
    this.#live.delete(g);
    const s = g.dispatcher.stats();
    this.#retired.batchesSent += s.batchesSent;
    this.#retired.framesSent += s.framesSent;
    const restarts = (g.dispatcher as { restarts?: Readonly<Record<string, number>> }).restarts ?? {};
    for (const [reason, n] of Object.entries(restarts)) this.#retired.restarts[reason] = (this.#retired.restarts[reason] ?? 0) + n;
    g.dispatcher.removeAllListeners();
    g.saturated = false;
    this.#updateSaturation();
  }

  #make(number: number): Generation {
    const views = number === 0 ? null : new WeakMap<DispatchTarget, TargetView>();
    const target = (t: DispatchTarget): DispatchTarget => (t instanceof TargetView ? t.target : t);
    const events: DispatchEvents = {
      handlerError: (t: DispatchTarget, seq: number, error: SerializedError) => this.#events.handlerError(target(t), seq, error),
      workerFailure: (error: SerializedError, messages: number) => this.#events.workerFailure(error, messages),
    };
    const dispatcher = this.#factory(events, number);
    const g: Generation = { number, dispatcher, views, saturated: false, closing: null };
    dispatcher.on('saturated', () => {
      g.saturated = true;
      this.#updateSaturation();
    });
    dispatcher.on('unsaturated', () => {
      g.saturated = false;
      this.#updateSaturation();
    });
    dispatcher.on('workerRestart', (...args: unknown[]) => this.emit('workerRestart', ...args));
    dispatcher.on('affinityLost', (...args: unknown[]) => this.emit('affinityLost', ...args));
    return g;
  }

  /** Saturated while any live generation is (a draining one's queue counts against memory too). */
  #updateSaturation(): void {
    let any = false;
    for (const g of this.#live) any ||= g.saturated;
    if (any === this.#saturated) return;
    this.#saturated = any;
    this.emit(any ? 'saturated' : 'unsaturated');
  }

  /** Workers replaced since start, by reason, over every generation (for the metrics). */
  get restarts(): Readonly<Record<string, number>> {
    const out: Record<string, number> = { ...this.#retired.restarts };
    for (const g of this.#live) {
      const r = (g.dispatcher as { restarts?: Readonly<Record<string, number>> }).restarts ?? {};
      for (const [reason, n] of Object.entries(r)) out[reason] = (out[reason] ?? 0) + n;
    }
    return out;
  }

  /** The current generation's figures; queue and in-flight figures include a draining one's, counters every generation's. */
  stats(): DispatcherStats {
    const out: DispatcherStats = { ...this.#current.dispatcher.stats(), saturated: this.#saturated };
    for (const g of this.#live) {
      if (g === this.#current) continue;
      const s = g.dispatcher.stats();
      for (const k of SUMMED) out[k] += s[k];
    }
    out.batchesSent += this.#retired.batchesSent;
    out.framesSent += this.#retired.framesSent;
    return out;
  }

  /** Close every generation (a reload under way finds the server closed and stops). */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    await waitAtMost(this.#chain, timeoutMs);
    await Promise.all([...this.#live].map((g) => this.#retire(g, timeoutMs)));
  }
}
