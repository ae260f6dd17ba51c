import { EventEmitter, once } from 'node:events';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { clockMs } from './clock.js';
import { AdminServer } from './admin/server.js';
import { createSharedMetrics } from './admin/shared.js';
import { Connection } from './connection.js';
import type { Budget, ConnectionEnv, ConnectionHooks } from './connection.js';
import { InlineDispatcher } from './dispatch/inline.js';
import { ProxyAdmission } from './edge/admission.js';
import type { AdmissionHooks, Peer } from './edge/admission.js';
import { TlsTerminator } from './edge/tls.js';
import { TrustedProxies } from './edge/trusted.js';
import { PoolDispatcher } from './dispatch/pool.js';
import { SwappableDispatcher } from './dispatch/swap.js';
import type { SwapReport } from './dispatch/swap.js';
import type { DispatchEvents, Dispatcher, DispatcherStats } from './dispatch/types.js';
import { ShoalError } from './errors.js';
import type { SerializedError } from './errors.js';
import { DEFAULTS } from './option-table.js';
import { poolOptions, resolveOptions } from './options.js';
import { waitAtMost } from './wait.js';
import type { ResolvedOptions, ServerOptions } from './options.js';
import { PushHub } from './push.js';
import type { PushCounters } from './push.js';
import { frameOne } from './dispatch/push-wire.js';
import { checkBody, checkConnectionId, checkGroup, encodeBody } from '../workers/runtime.js';
import type { BroadcastOptions } from '../workers/runtime.js';

/**
 * Server lifecycle (Go's net/http Server, fastify's close order):
 *
 *   new --listen()--> starting --> listening --close()--> lameDuck --> closing --> closed
 *
 * close() is graceful and idempotent (every caller gets the same promise):
 *   1. readiness turns false, 'closing' is emitted;
 *   1b. lame duck (options.lameDuck, 0 = none): the listener stays open and new
 *      connections are served as usual, so a balancer polling readiness moves them
 *      away before they would be refused; destroy() cuts it short;
 *   2. the listener closes: new connections are refused; 'draining' is emitted;
 *   3. every connection drains (see Connection.shutdown);
 *   4. at drainTimeout what is left is destroyed;
 *   5. the admin server closes (it answered 503 on /readyz since step 1);
 *   6. teardown() runs in every worker (bounded), the pool is destroyed.
 * destroy() does the same at once, without draining.
 */
export type ServerState = 'new' | 'starting' | 'listening' | 'lameDuck' | 'closing' | 'closed';

/** Where listen() binds: port (0 = any free port) and host (default 127.0.0.1). */
export interface ListenOptions {
  port?: number;
  host?: string;
}

/** Totals since the server started, over open and closed connections. */
export interface ServerCounters extends PushCounters {
  connectionsAccepted: number;
  connectionsRejected: number;
  framesIn: number;
  repliesOut: number;
  bytesIn: number;
  bytesOut: number;
  lateReplies: number;
  frameErrors: number;
  handlerErrors: number;
  workerFailures: number;
  /** PROXY headers refused from untrusted addresses (forged client addresses). */
  proxyHeadersRefused: number;
  /** Trusted peers whose PROXY header was malformed, missing or late. */
  proxyHeaderErrors: number;
  /** TLS handshakes that failed or ran past tlsHandshakeTimeout. */
  tlsHandshakeFailures: number;
  /** Hot reloads that switched to the new code. */
  reloads: number;
  /** Hot reloads refused because the new handler did not load (the old code kept serving). */
  reloadFailures: number;
}

/** Every budget that can be hit, by the option that sets it. */
export type BudgetName = Budget | 'maxConnections' | 'maxConnectionsPerIp' | 'maxPendingFrames' | 'handlerTimeout' | 'drainTimeout';

/** A snapshot of the server (server.stats()): state, connections, counters, budget hits and the dispatcher queue. */
export interface ServerStats {
  state: ServerState;
  budgetHits: Partial<Record<BudgetName, number>>;
  connections: { active: number; paused: number; queuedBytes: number; inFlight: number };
  counters: ServerCounters;
  dispatcher: DispatcherStats;
}

/** What close() reports: connections open when it began, how many drained, how many were destroyed at the deadline. */
export interface DrainReport {
  /** Connections open when close() began. */
  connections: number;
  /** Of those, how many closed gracefully before the deadline. */
  drained: number;
  /** Destroyed at the deadline. */
  destroyed: number;
}

const TICK_MS = 250;
/** A budget hit (or an edge refusal) is logged at most this often per kind (with the count in between). */
const BUDGET_LOG_INTERVAL_MS = 5_000;
/** Where a raw socket handed to TLS keeps the peer its PROXY header named. */
const PEER = Symbol('shoal.peer');
type RawSocket = Socket & { [PEER]?: Peer | null };
/** Budgets that are ordinary back pressure or routine (max age): logged at debug, not warn. */
const BACKPRESSURE: ReadonlySet<BudgetName> = new Set(['maxInFlightPerConnection', 'sendHighWater', 'maxConnectionAge']);

/** The server: accepts, frames, dispatches to the worker pool, and returns replies in order. Made by createServer(). */
export class ShoalServer extends EventEmitter {
  readonly options: ResolvedOptions;
  readonly #dispatcher: SwappableDispatcher;
  readonly #connections = new Set<Connection>();
  readonly #perIp = new Map<string, number>();
  /** Where the next resume-after-saturation round starts (fairness). */
  #resumeCursor = 0;
  /** One hooks object for every connection (not closures per connection). */
  readonly #hooks: ConnectionHooks = {
    onClose: (conn, error) => this.#onConnectionClose(conn, error),
    onError: (conn, error) => this.#onConnectionError(conn, error),
    onBudget: (conn, budget) => this.#budgetHit(budget, { conn: conn.id, remote: conn.remoteAddress }),
    onLateReplies: (_conn, count) => {
      this.#counters.lateReplies += count;
    },
    onPushes: (conn, pushes, dropped) => {
      if (dropped) this.#push.dropped(pushes);
      else this.#push.apply(conn, pushes);
    },
  };
  /** The push groups (issue 12), and the connections by id once a push names one; made in the constructor (it needs the options). */
  readonly #push: PushHub<Connection>;
  readonly #counters: ServerCounters = {
    connectionsAccepted: 0,
    connectionsRejected: 0,
    framesIn: 0,
    repliesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    lateReplies: 0,
    frameErrors: 0,
    handlerErrors: 0,
    workerFailures: 0,
    proxyHeadersRefused: 0,
    proxyHeaderErrors: 0,
    tlsHandshakeFailures: 0,
    reloads: 0,
    reloadFailures: 0,
    // Read from the push hub by stats().
    pushesSent: 0,
    pushesUndelivered: 0,
    pushesDropped: 0,
  };
  /** What every connection shares: framing, dispatcher, limits, hooks, logger. */
  readonly #connectionEnv: ConnectionEnv;
  #net: NetServer | null = null;
  #state: ServerState = 'new';
  #nextId = 1;
  #tick: NodeJS.Timeout | null = null;
  #closing: Promise<DrainReport> | null = null;
  /** Ends the lame duck early (destroy()). */
  #endLameDuck: (() => void) | null = null;
  readonly #budgetHits: Partial<Record<BudgetName, number>> = {};
  readonly #budgetLogged = new Map<string, { at: number; count: number }>();
  readonly #admin: AdminServer | null;
  /** PROXY protocol (options.proxyProtocol), else null: no stage before the Connection. */
  readonly #trusted: TrustedProxies | null;
  /** Sockets waiting for (or being checked for) their PROXY header. */
  readonly #admissions = new Map<Socket, ProxyAdmission>();
  readonly #admissionHooks: AdmissionHooks = {
    admitted: ({ socket, peer }) => {
      this.#admissions.delete(socket);
      this.#afterProxy(socket, peer);
    },
    refused: (socket, error) => {
      this.#admissions.delete(socket);
      if (error.code === 'SHOAL_PROXY_HEADER_REFUSED') this.#counters.proxyHeadersRefused++;
      else this.#counters.proxyHeaderErrors++;
      this.#edgeRefused(error, socket.remoteAddress);
    },
  };
  /** TLS termination (options.tls), else null: sockets go to the Connection as they are. */
  readonly #tls: TlsTerminator | null;
  /** Raw sockets in a TLS handshake. */
  readonly #handshakes = new Set<RawSocket>();

  constructor(options: ServerOptions) {
    super();
    const o = (this.options = resolveOptions(options));
    this.#push = new PushHub<Connection>(o.sendHighWater, this.#connections);
    const events: DispatchEvents = {
      handlerError: (target, seq, error) => this.#onHandlerError(target as Connection, seq, error),
      workerFailure: (error, messages) => {
        this.#counters.workerFailures++;
        if (error.code === 'SHOAL_HANDLER_TIMEOUT') this.#budgetHit('handlerTimeout', { messages });
        o.logger.error({ err: error, messages }, 'worker failed; its messages got the error policy');
        this.emit('workerFailure', error, messages);
      },
    };
    // Metrics on: workers count into shared memory, read by the admin server when scraped.
    // Every generation of workers (see reload()) counts into the same slots.
    const shared = o.admin?.metrics && o.workers > 0 ? createSharedMetrics(o.workers) : null;
    this.#dispatcher = new SwappableDispatcher((dispatchEvents, generation) => this.#createDispatcher(dispatchEvents, generation, shared), events);
    this.#dispatcher.on('saturated', () => {
      this.#budgetHit('maxPendingFrames', { pending: this.#dispatcher.stats().pendingFrames });
      for (const c of this.#connections) c.setPoolPaused(true);
    });
    this.#dispatcher.on('unsaturated', () => this.#resumeReading());
    this.#dispatcher.on('workerRestart', (reason: string, threadId: number) => {
      o.logger.warn({ reason, threadId }, 'worker replaced');
    });
    // With affinity, a worker's state for its connections or keys died with it (or with a reload's old pool).
    this.#dispatcher.on('affinityLost', (info: { threadId: number; reason: string }) => {
      o.logger.warn(info, 'worker-local state lost (affinity)');
      this.emit('affinityLost', info);
    });
    this.#admin = o.admin ? new AdminServer(this, o.admin, shared) : null;
    this.#trusted = o.proxyProtocol ? new TrustedProxies(o.proxyProtocol.trusted) : null;
    this.#tls = o.tls
      ? new TlsTerminator(o.tls, o.tlsHandshakeTimeout, {
          secure: (socket) => this.#onSecure(socket),
          failed: (error, remote) => {
            this.#counters.tlsHandshakeFailures++;
            this.#edgeRefused(error, remote);
          },
        })
      : null;
    const limits = {
      maxInFlight: o.maxInFlightPerConnection,
      sendHighWater: o.sendHighWater,
      sendLowWater: o.sendLowWater,
      sendTimeout: o.sendTimeout,
      sendQueueLimit: o.sendQueueLimit,
      idleTimeout: o.idleTimeout,
      maxAge: o.maxConnectionAge,
      maxAgeGrace: o.maxConnectionAgeGrace,
      goAway: o.goAway,
    };
    this.#connectionEnv = { framing: o.framing, dispatcher: this.#dispatcher, limits, hooks: this.#hooks, logger: o.logger };
  }

  get state(): ServerState {
    return this.#state;
  }

  /** False from the moment close() begins: a balancer should stop sending connections. */
  get ready(): boolean {
    return this.#state === 'listening';
  }

  /** What connections submit to; `.current` is the generation serving now (it changes on reload()). */
  get dispatcher(): SwappableDispatcher {
    return this.#dispatcher;
  }

  /**
   * The dispatcher of one generation: 0 at construction, one more per reload(). Workers
   * load the handler fresh (a new thread has an empty module cache); on the main thread
   * (`workers: 0`) the handler module is imported again under a new URL query, which
   * re-evaluates that module only (what it imports stays cached).
   */
  #createDispatcher(events: DispatchEvents, generation: number, shared: SharedArrayBuffer | null): Dispatcher {
    const o = this.options;
    // New worker threads load the module afresh; the main thread (workers: 0, or the pool's
    // adaptive offload) needs a new URL to import it again.
    const handlerUrl = generation === 0 ? o.handlerUrl : withReloadQuery(o.handlerUrl, generation);
    const runtime = {
      handlerUrl, codec: o.codec, codecGiven: o.codecGiven, routing: o.routing, onHandlerError: o.onHandlerError,
      respErrors: o.framingSpec?.type === 'resp',
    };
    if (o.workers === 0) {
      const inline = new InlineDispatcher(runtime, o.framing, events, o.handlerTimeout);
      // The admin server (made after generation 0) sets generation 0's timing itself.
      inline.onHandlerTiming = this.#admin?.metrics?.onHandlerTiming ?? null;
      return inline;
    }
    const pool = new PoolDispatcher(
      poolOptions(o),
      { runtime, framing: o.framingSpec, maxFrame: o.maxFrame, handlerTimeout: o.handlerTimeout, idleWait: o.atomics, metrics: shared },
      o.framing,
      events,
    );
    // Messages its offload runs inline are timed on the main thread (generation 0: by the admin server).
    pool.onHandlerTiming = this.#admin?.metrics?.onHandlerTiming ?? null;
    return pool;
  }

  /**
   * Hot reload: load the handler again in a new pool (setup() runs there) and switch
   * to it once every worker is ready. No connection is dropped and no reply lost:
   * messages already dispatched finish on the old pool, which then runs teardown()
   * and stops (bounded by drainTimeout). Each connection's replies switch from old
   * to new code exactly once. If the new handler does not load, the old pool keeps
   * serving and this rejects with SHOAL_HANDLER_LOAD_FAILED. Calls are serialized.
   * Emits 'reload' with the report.
   */
  async reload(): Promise<SwapReport> {
    if (this.#state !== 'listening') {
      throw new ShoalError('SHOAL_SERVER_CLOSED', `reload() called on a server that is ${this.#state}`);
    }
    const o = this.options;
    o.logger.info({ generation: this.#dispatcher.generation + 1, handler: o.handlerUrl }, 'reload: loading the handler');
    let report: SwapReport;
    try {
      report = await this.#dispatcher.swap(o.drainTimeout, Math.max(1000, Math.min(5000, o.drainTimeout)));
    } catch (err) {
      if ((err as ShoalError).code !== 'SHOAL_SERVER_CLOSED') {
        this.#counters.reloadFailures++;
        o.logger.error({ code: (err as ShoalError).code, err: (err as Error).message }, 'reload failed: the running code keeps serving');
      }
      throw err;
    }
    this.#counters.reloads++;
    if (!report.drained) o.logger.warn({ ...report }, 'reload: the old pool did not answer everything before drainTimeout');
    o.logger.info({ ...report }, 'reloaded');
    this.emit('reload', report);
    return report;
  }

  /** The admin HTTP server (options.admin), or null. */
  get admin(): AdminServer | null {
    return this.#admin;
  }

  /** Warm every worker (load the handler, run setup()), then listen. Rejects with a ShoalError. */
  async listen(opts: ListenOptions = {}): Promise<AddressInfo> {
    if (this.#state !== 'new') {
      throw new ShoalError('SHOAL_SERVER_CLOSED', `listen() called on a server that is ${this.#state}`);
    }
    this.#state = 'starting';
    const o = this.options;
    try {
      // The admin server first: /healthz and /readyz answer (503) while workers warm up.
      await this.#admin?.listen();
      await this.#dispatcher.start();
    } catch (err) {
      this.#state = 'closed';
      await this.#admin?.close();
      throw err;
    }
    if (this.#state !== 'starting') {
      await this.#dispatcher.close(1000);
      await this.#admin?.close();
      throw new ShoalError('SHOAL_SERVER_CLOSED', 'server closed while starting');
    }
    const net = createNetServer({ allowHalfOpen: true, noDelay: true }, this.#onConnection);
    this.#net = net;
    net.listen({ port: opts.port ?? DEFAULTS.port, host: opts.host ?? DEFAULTS.host, backlog: o.backlog });
    try {
      await once(net, 'listening');
    } catch (err) {
      this.#net = null;
      this.#state = 'closed';
      await this.#dispatcher.close(1000);
      await this.#admin?.close();
      throw err;
    }
    net.on('error', (err) => o.logger.error({ err }, 'listener error'));
    this.#tick = setInterval(this.#onTick, TICK_MS);
    this.#tick.unref();
    this.#state = 'listening';
    const address = net.address() as AddressInfo;
    o.logger.info(
      {
        address: address.address,
        port: address.port,
        workers: o.workers,
        framing: o.framing.name,
        // A module's codec export (read by each thread's runtime) replaces the default one.
        codec: o.codecGiven ? o.codec : `the module's, else ${o.codec}`,
        handler: o.handlerUrl,
      },
      'listening',
    );
    return address;
  }

  /** The bound address once listening, else null. */
  address(): AddressInfo | null {
    return (this.#net?.address() as AddressInfo | null) ?? null;
  }

  /** New connections are served while listening and in the lame duck. */
  #accepting(): boolean {
    return this.#state === 'listening' || this.#state === 'lameDuck';
  }

  readonly #onConnection = (socket: Socket): void => {
    const o = this.options;
    if (!this.#accepting()) {
      socket.destroy();
      return;
    }
    // Over a cap the connection is accepted and closed at once (the peer sees a
    // close, not a hang): libuv has already accepted it, so that is the honest answer.
    // Sockets still in their PROXY header or TLS handshake count too.
    if (this.#connections.size + this.#admissions.size + this.#handshakes.size >= o.maxConnections) {
      this.#reject(socket, 'maxConnections', o.maxConnections);
      return;
    }
    if (this.#trusted !== null) {
      const pp = o.proxyProtocol!;
      const trusted = this.#trusted.has(socket.remoteAddress ?? '');
      this.#admissions.set(socket, new ProxyAdmission(socket, trusted, pp.mode, clockMs() + pp.headerTimeout, this.#admissionHooks));
      return;
    }
    this.#afterProxy(socket, null);
  };

  /** After the PROXY header (if any): the TLS handshake (if any), then the Connection. */
  #afterProxy(socket: RawSocket, peer: Peer | null): void {
    if (!this.#accepting()) {
      socket.destroy();
      return;
    }
    if (this.#tls === null) {
      this.#accept(socket, peer);
      return;
    }
    if (peer !== null) socket[PEER] = peer;
    this.#handshakes.add(socket);
    socket.once('close', () => this.#handshakes.delete(socket));
    this.#tls.accept(socket);
  }

  #onSecure(socket: TLSSocket): void {
    // node:tls made this TLSSocket from our raw socket (emit('connection')); _parent is that socket.
    const raw = (socket as TLSSocket & { _parent?: RawSocket })._parent ?? null;
    if (raw !== null) this.#handshakes.delete(raw);
    if (!this.#accepting()) {
      socket.destroy();
      return;
    }
    // Like the plain listener: the peer's FIN ends its side only; replies still go out.
    socket.allowHalfOpen = true;
    this.#accept(socket, raw?.[PEER] ?? null);
  }

  /** Make the Connection. `peer` (from a PROXY header) names the client instead of the socket. */
  #accept(socket: Socket, peer: Peer | null): void {
    const o = this.options;
    if (o.maxConnectionsPerIp > 0) {
      // Only with the cap on: reading the peer address costs memory per connection.
      const ip = peer?.address ?? socket.remoteAddress ?? '';
      const open = this.#perIp.get(ip) ?? 0;
      if (open >= o.maxConnectionsPerIp) {
        this.#reject(socket, 'maxConnectionsPerIp', o.maxConnectionsPerIp);
        return;
      }
      this.#perIp.set(ip, open + 1);
    }
    this.#counters.connectionsAccepted++;
    const conn = new Connection(this.#nextId++, socket, this.#connectionEnv, peer);
    this.#connections.add(conn);
    this.#push.add(conn);
    // Bytes read before the hand-over (after a PROXY header) wait in the socket, paused.
    if (this.#trusted !== null) socket.resume();
    if (this.#dispatcher.saturated) conn.setPoolPaused(true);
    this.emit('connection', conn);
  }

  /**
   * Re-read the TLS certificate and key files and use them for new handshakes; open
   * connections keep theirs. On failure the current ones stay, the reason is logged,
   * and this throws SHOAL_TLS_RELOAD_FAILED. SIGHUP calls it under `shoal start`.
   */
  reloadTls(): void {
    if (this.#tls === null) throw new ShoalError('SHOAL_INVALID_OPTION', 'reloadTls(): this server has no tls option');
    try {
      this.#tls.reload();
    } catch (err) {
      this.options.logger.error({ code: (err as ShoalError).code, err: (err as Error).message }, 'TLS reload failed: the current certificate stays in use');
      throw err;
    }
    this.options.logger.info({ tls: this.options.tls }, 'TLS certificate reloaded: new handshakes use it');
    this.emit('tlsReload');
  }

  /** A connection refused before it became a Connection (PROXY header, TLS handshake): count, log rate-limited. */
  #edgeRefused(error: ShoalError, remote: string | undefined): void {
    this.emit('edgeError', error, remote);
    this.#logThrottled(error.code, 'warn', { code: error.code, err: error.message, remote }, 'connection refused');
  }

  #reject(socket: Socket, budget: BudgetName, limit: number): void {
    this.#counters.connectionsRejected++;
    socket.on('error', () => {});
    socket.destroy();
    this.#budgetHit(budget, { limit, remote: socket.remoteAddress, code: 'SHOAL_TOO_MANY_CONNECTIONS' });
  }

  /**
   * Count a budget hit, emit 'budget', and log it — at most once per
   * BUDGET_LOG_INTERVAL_MS per budget, so a flood of hits cannot flood the log.
   */
  #budgetHit(budget: BudgetName, details: Record<string, unknown> = {}): void {
    this.#budgetHits[budget] = (this.#budgetHits[budget] ?? 0) + 1;
    this.emit('budget', budget, details);
    this.#logThrottled(budget, BACKPRESSURE.has(budget) ? 'debug' : 'warn', { budget, ...details, total: this.#budgetHits[budget] }, 'budget hit');
  }

  /** Log at most once per BUDGET_LOG_INTERVAL_MS per key, saying how many were not logged in between. */
  #logThrottled(key: string, level: 'debug' | 'warn', details: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const last = this.#budgetLogged.get(key);
    if (last && now - last.at < BUDGET_LOG_INTERVAL_MS) {
      last.count++;
      return;
    }
    this.#budgetLogged.set(key, { at: now, count: 0 });
    this.options.logger[level]({ ...details, hitsSinceLastLog: last?.count ?? 0 }, msg);
  }

  readonly #onConnectionClose = (conn: Connection, error: ShoalError | null): void => {
    this.#connections.delete(conn);
    this.#push.remove(conn);
    if (this.options.maxConnectionsPerIp > 0) {
      const ip = conn.remoteAddress;
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left <= 0) this.#perIp.delete(ip);
      else this.#perIp.set(ip, left);
    }
    const c = this.#counters;
    c.framesIn += conn.counters.framesIn;
    c.repliesOut += conn.counters.repliesOut;
    c.bytesIn += conn.counters.bytesIn;
    c.bytesOut += conn.counters.bytesOut;
    this.emit('connectionClose', conn, error);
    if (this.#connections.size === 0) this.emit('idle');
  };

  readonly #onConnectionError = (conn: Connection, error: ShoalError): void => {
    if (error.code.startsWith('SHOAL_FRAME')) this.#counters.frameErrors++;
    conn.logger.warn({ code: error.code, err: error.message }, 'connection error');
    this.emit('connectionError', conn, error);
  };

  #onHandlerError(conn: Connection, seq: number, error: SerializedError): void {
    this.#counters.handlerErrors++;
    conn.logger.warn({ seq, code: error.code, err: error.message, stack: error.stack, policy: this.options.onHandlerError }, 'handler error');
    this.emit('handlerError', error, conn.id, seq);
  }

  readonly #onTick = (): void => {
    const now = clockMs();
    // forEach, not for-of: no iterator result per connection, four times a second.
    this.#connections.forEach((c) => c.tick(now));
    for (const a of this.#admissions.values()) a.tick(now);
  };

  /**
   * Resume reading after the pool queue drained. Resuming a connection pumps its
   * buffered frames, which may fill the queue again (re-entrantly emitting
   * 'saturated'): stop there, and start the next round where this one stopped, so
   * the first connections cannot starve the others.
   */
  #resumeReading(): void {
    const conns = [...this.#connections];
    const n = conns.length;
    const start = this.#resumeCursor;
    for (let k = 0; k < n; k++) {
      if (this.#dispatcher.saturated) return;
      const i = (start + k) % n;
      this.#resumeCursor = i + 1;
      conns[i]!.setPoolPaused(false);
    }
  }

  get connections(): ReadonlySet<Connection> {
    return this.#connections;
  }

  /**
   * Push `body` (a reply value: encoded by the codec, framed by the framing) to
   * connection `connectionId` now, through its send queue and budgets. False when that
   * connection is closed or unknown (counted in stats().counters.pushesUndelivered).
   * Throws SHOAL_PUSH_INVALID (bad id, null body) or SHOAL_FRAME_TOO_LARGE.
   */
  send(connectionId: number, body: unknown): boolean {
    return this.#push.send(checkConnectionId(connectionId), this.#framePush(body));
  }

  /**
   * Push `body` to every member of `options.group` now, or without a group to every
   * connection. Returns how many connections it was written to. Throws like send().
   */
  broadcast(body: unknown, options?: BroadcastOptions): number {
    const group = options?.group === undefined ? null : checkGroup(options.group);
    return this.#push.broadcast(this.#framePush(body), group);
  }

  /** Connections in `group` now. */
  groupSize(group: string): number {
    return this.#push.size(checkGroup(group));
  }

  /** A push body as handlers' pushes are made (runtime.ts encodeBody; no route id: it answers no message). */
  #framePush(body: unknown): Buffer {
    const o = this.options;
    return frameOne(o.framing, encodeBody(checkBody(body), o.codec, o.routing, undefined));
  }

  /** A snapshot of connections, counters, budget hits and the dispatcher. */
  stats(): ServerStats {
    const counters = { ...this.#counters, ...this.#push.counters };
    let paused = 0;
    let queuedBytes = 0;
    let inFlight = 0;
    for (const c of this.#connections) {
      if (c.paused) paused++;
      queuedBytes += c.queuedBytes;
      inFlight += c.inFlight;
      counters.framesIn += c.counters.framesIn;
      counters.repliesOut += c.counters.repliesOut;
      counters.bytesIn += c.counters.bytesIn;
      counters.bytesOut += c.counters.bytesOut;
    }
    return {
      state: this.#state,
      budgetHits: { ...this.#budgetHits },
      connections: { active: this.#connections.size, paused, queuedBytes, inFlight },
      counters,
      dispatcher: this.#dispatcher.stats(),
    };
  }

  /** Graceful close; idempotent. Resolves when everything is closed (never later than lameDuck + drainTimeout + teardown). */
  close(): Promise<DrainReport> {
    this.#closing ??= this.#close(this.options.drainTimeout, this.options.lameDuck);
    return this.#closing;
  }

  /** Immediate close: connections destroyed, pool destroyed. */
  destroy(): Promise<DrainReport> {
    this.#closing ??= this.#close(0, 0);
    this.#endLameDuck?.();
    for (const c of this.#connections) c.destroy(new ShoalError('SHOAL_SERVER_CLOSED', 'server destroyed'));
    return this.#closing;
  }

  async #close(drainTimeout: number, lameDuckMs: number): Promise<DrainReport> {
    const o = this.options;
    const wasStarting = this.#state === 'new' || this.#state === 'starting';
    const lameDuck = wasStarting ? 0 : lameDuckMs;
    this.#state = lameDuck > 0 ? 'lameDuck' : 'closing';
    this.emit('closing');
    if (lameDuck > 0) {
      o.logger.info({ lameDuck, connections: this.#connections.size }, 'shutdown: lame duck: not ready, still accepting');
      await waitAtMost(new Promise<void>((r) => (this.#endLameDuck = r)), lameDuck);
      this.#endLameDuck = null;
      this.#state = 'closing';
    }
    this.emit('draining');
    const report: DrainReport = { connections: this.#connections.size, drained: 0, destroyed: 0 };
    o.logger.info({ connections: report.connections, drainTimeout }, 'shutdown: stop accepting, draining connections');
    const net = this.#net;
    const listenerClosed = net ? new Promise<void>((r) => net.close(() => r())) : Promise.resolve();
    // Not yet connections (PROXY header, TLS handshake): nothing of theirs was read; drop them.
    for (const a of [...this.#admissions.values()]) a.destroy();
    this.#admissions.clear();
    for (const h of [...this.#handshakes]) h.destroy();
    for (const c of this.#connections) c.shutdown(o.goAway);
    if (this.#connections.size > 0) {
      await waitAtMost(once(this, 'idle'), drainTimeout);
      report.destroyed = this.#connections.size;
      report.drained = report.connections - report.destroyed;
      if (report.destroyed > 0) {
        this.#budgetHit('drainTimeout', { destroyed: report.destroyed });
        for (const c of this.#connections) c.destroy(new ShoalError('SHOAL_SERVER_CLOSED', 'drain deadline reached'));
        if (this.#connections.size > 0) await once(this, 'idle');
      }
    }
    await listenerClosed;
    if (this.#tick) clearInterval(this.#tick);
    if (report.connections > 0) o.logger.info({ ...report }, 'shutdown: connections closed');
    await this.#admin?.close();
    if (!wasStarting || this.#net) {
      o.logger.info({ workers: o.workers }, 'shutdown: running teardown, stopping workers');
      await this.#dispatcher.close(Math.max(1000, Math.min(5000, drainTimeout)));
    }
    this.#state = 'closed';
    const { framesIn, repliesOut } = this.stats().counters;
    o.logger.info({ ...report, framesIn, repliesOut }, 'closed'); // what it read and answered over its life
    this.emit('close', report);
    return report;
  }
}

/** The handler URL with a query that makes `import()` evaluate the module again. */
function withReloadQuery(url: string, generation: number): string {
  const u = new URL(url);
  u.searchParams.set('shoal-reload', String(generation));
  return u.href;
}

/** Make a server (validates the options; throws SHOAL_INVALID_OPTION). Call listen() to start it. */
export function createServer(options: ServerOptions): ShoalServer {
  return new ShoalServer(options);
}
