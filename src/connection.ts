import type { Socket } from 'node:net';
import { ShoalError } from './errors.js';
import type { ErrorCode } from './errors.js';
import { FrameReader } from './framing/reader.js';
import type { Framing } from './framing/types.js';
import type { Dispatcher, DispatchTarget, FramedBytes } from './dispatch/types.js';
import type { Push } from './dispatch/push-wire.js';
import type { Peer } from './edge/admission.js';
import type { ProxyHeader } from './edge/proxy-protocol.js';
import { CLOCK_EPOCH, clockMs } from './clock.js';
import { childLogger } from './options.js';
import type { Logger } from './options.js';

/**
 * The state of one connection. Every change goes through #setState().
 *
 *   active   reading and serving. -> goingAway, draining, closing, closed
 *   goingAway the going-away frame was sent (shutdown or max age); still reading and
 *            serving until the peer closes (a cooperating client sends nothing new).
 *            -> draining, closing, closed
 *   draining no new bytes are read (shutdown, peer FIN or a bad frame); frames
 *            already received are still served and flushed. -> closing, closed
 *   closing  our FIN is sent; we discard input until the peer's FIN or the
 *            linger time (a lingering close: a RST now could make the peer lose
 *            replies it has not read yet). -> closed
 *   closed   the socket is destroyed; late replies are dropped and counted.
 */
export type ConnState = 'active' | 'goingAway' | 'draining' | 'closing' | 'closed';

/** Why reading is paused; reading resumes when no reason is left. */
const PAUSE_IN_FLIGHT = 1; // maxInFlightPerConnection frames are being processed
const PAUSE_SEND_QUEUE = 2; // the send queue is above the high water mark
const PAUSE_POOL = 4; // the dispatcher's queue to the pool is full
const PAUSE_DRAIN = 8; // draining or closing: never read again (but frames already buffered are served)
const PAUSE_PUSH_BURST = 16; // this connection's pushes passed a member's high water mark in this turn: read again next turn

/**
 * How replies are written (#writeMode). A reply written while a lone frame is being
 * cut goes out at once (DIRECT: no cork, no tick, no buffered-write entry); while a
 * chunk with several frames is cut, the socket is corked and their replies (inline
 * handlers) leave in one write at the end of the cut (CUT); a reply from elsewhere (the
 * pool, an async handler) corks until the next tick, so the replies delivered together
 * leave together (TICK).
 */
const WRITE_IDLE = 0;
const WRITE_DIRECT = 1;
const WRITE_CUT = 2;
const WRITE_TICK = 3;

/**
 * Small replies made while one read's frames are cut (WRITE_CUT) are gathered and leave as
 * one buffer: a copy of a few hundred bytes costs less than a socket.write() per reply.
 * One list for the whole thread: only the connection whose frames are being cut gathers.
 */
const GATHER_MAX_BYTES = 1024;
/** At most this much is gathered before it is written (bounds the bytes the high water mark does not see yet). */
const GATHER_LIMIT_BYTES = 16 * GATHER_MAX_BYTES;
/** Pieces up to this size are copied byte by byte when gathered (16 replies of 9 bytes: 300 ns against 480 with set()). */
const SMALL_COPY_BYTES = 32;
const gathered: Uint8Array[] = [];
let gatheredBytes = 0;
let gatherer: Connection | null = null;

/** Connection #flags, one bit per boolean (8 B per connection each as fields of their own). */
const F_SOCKET_PAUSED = 1; // we paused the socket (socket.pause()) and have not resumed it
const F_READ_ENDED = 2; // the peer's FIN arrived
const F_READER_DRY = 4; // the last reader.next() found no whole frame (cleared by new bytes)
const F_SAW_ACTIVITY = 8; // traffic since the last tick; the coarse tick turns it into #lastActive (no Date.now() per frame)
const F_AGE_GRACE = 16; // max age sent this connection away: #ageDeadline is the end of its grace
const F_PUMPING = 32; // #pump's loop is running (a reply it caused asks for more frames: the loop takes them)

/** How long a closing connection waits for the peer's FIN before it is destroyed. */
const LINGER_MS = 2_000;

/** Where a socket keeps its connection, for the shared listeners. */
const CONN = Symbol('shoal.connection');
type SocketWithConn = Socket & { [CONN]?: Connection };

export interface ConnectionLimits {
  maxInFlight: number;
  sendHighWater: number;
  sendLowWater: number;
  sendTimeout: number;
  /** Bytes queued above which a push cuts the connection (SHOAL_SEND_QUEUE_FULL). */
  sendQueueLimit: number;
  idleTimeout: number;
  /** ms a connection may live (jittered +-10% per connection); 0 = off. */
  maxAge: number;
  /** ms after maxAge before a connection still open is destroyed. */
  maxAgeGrace: number;
  /** The going-away frame (shutdown and max age), or null: then an orderly drain close. */
  goAway: Uint8Array | null;
}

/**
 * What every connection of one server shares: one object made by the server, so a
 * connection holds one reference to it, not five fields of the same values.
 */
export interface ConnectionEnv {
  readonly framing: Framing;
  readonly dispatcher: Dispatcher;
  readonly limits: ConnectionLimits;
  readonly hooks: ConnectionHooks;
  /** The server's logger (each connection's own is made from it on first use). */
  readonly logger: Logger;
}

/**
 * Node puts an 'end' listener on every socket (net.js onReadableStreamEnd) that only makes
 * writes fail when allowHalfOpen is off. shoal's sockets are half-open (the listener and
 * the TLS terminator set it), so there it does nothing; without it the connection's own
 * 'end' listener is stored alone, not in an array of two (64 B less per connection).
 * Any other listener, or a socket that is not half-open, is left as it is.
 */
function dropNodeEndListener(socket: Socket): void {
  if (!socket.allowHalfOpen) return;
  if (nodeEndListener === undefined) {
    // Looked up once, on the first socket (rawListeners() copies the list: not per connection).
    const first = socket.rawListeners('end')[0];
    nodeEndListener = typeof first === 'function' && first.name === 'onReadableStreamEnd' ? (first as () => void) : null;
  }
  if (nodeEndListener !== null) socket.removeListener('end', nodeEndListener);
}
/** Node's onReadableStreamEnd; null: this Node has none of that name (then nothing is removed). */
let nodeEndListener: (() => void) | null | undefined;

/** +-10%: connections accepted together (after a deploy) do not all leave together. */
const AGE_JITTER = 0.1;

/** One connection's maximum age: `maxAge` +-10%, from `random` in [0, 1). */
export function jitteredAge(maxAge: number, random: number = Math.random()): number {
  return Math.round(maxAge * (1 - AGE_JITTER + 2 * AGE_JITTER * random));
}

/** Traffic counted on one connection (summed into the server's counters when it closes). */
export interface ConnectionCounters {
  framesIn: number;
  bytesIn: number;
  repliesOut: number;
  bytesOut: number;
  lateReplies: number;
}

export interface ConnectionHooks {
  /** Called once, when the socket is gone. */
  onClose(conn: Connection, error: ShoalError | null): void;
  /** A frame error or a budget that closed the connection, for logs and metrics. */
  onError(conn: Connection, error: ShoalError): void;
  /** A budget was hit (reading paused, or the connection cut), for logs and metrics. */
  onBudget(conn: Connection, budget: Budget): void;
  /** Replies that finished after the connection closed (also after onClose). */
  onLateReplies(conn: Connection, count: number): void;
  /** A message's pushes, at its release (before its replies are written); `dropped`: never released (the connection closed first). */
  onPushes(conn: Connection, pushes: Push[], dropped: boolean): void;
}

/** The per-connection budgets, by the option that sets each. */
export type Budget = 'maxInFlightPerConnection' | 'sendHighWater' | 'sendTimeout' | 'sendQueueLimit' | 'idleTimeout' | 'maxFrame' | 'maxConnectionAge' | 'maxConnectionAgeGrace';

/** One client socket: its framer, reorder buffer, send queue, timeouts and state. Made by the server for each accepted connection (the 'connection' event). */
export class Connection implements DispatchTarget {
  readonly id: number;

  lane: unknown = null;
  // Counted in fields of their own, not an object: 40 B less per connection. Replies
  // out are not counted apart: every reply released advances #nextWrite (counters).
  #framesIn = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  #lateReplies = 0;

  readonly #socket: Socket;
  /** The client a PROXY header named, or null: the socket's own peer. */
  readonly #peer: Peer | null;
  readonly #reader: FrameReader;
  readonly #env: ConnectionEnv;
  #childLogger: Logger | null = null;

  #state: ConnState = 'active';
  /** Timestamps in clockMs() (clock.ts: small integers, no heap number each). */
  #stateSince = clockMs();
  #paused = 0;
  /** F_* bits (above): one field for five booleans. */
  #flags = F_READER_DRY;
  /** Next sequence number to give a frame, and next one whose replies may be written. */
  #nextSeq = 0;
  #nextWrite = 0;
  /** Replies that finished before an earlier message: seq -> [count, bytes, close, pushes]. Bounded by maxInFlight. */
  #reorder: Map<number, { count: number; bytes: FramedBytes | null; close: boolean; pushes: Push[] | null }> | null = null;
  #writeMode = WRITE_IDLE;
  /** Stop cutting frames after this error (a bad frame, the close policy). */
  #failed: ShoalError | null = null;
  #lastActive = this.#stateSince;
  #aboveHighSince = 0;
  /**
   * Max age (0 = off): when it sends this connection away; once sent away (F_AGE_GRACE),
   * when its grace ends. One field for both deadlines: they never count at the same time.
   */
  #ageDeadline = 0;
  #closeError: ShoalError | null = null;

  constructor(id: number, socket: Socket, env: ConnectionEnv, peer: Peer | null = null) {
    this.id = id;
    this.#socket = socket;
    this.#peer = peer;
    void socket.remoteAddress; // caches the peer address on the socket (see remoteAddress)
    this.#reader = new FrameReader(env.framing.createDecoder());
    this.#env = env;
    const limits = env.limits;
    if (limits.maxAge > 0) this.#ageDeadline = this.#stateSince + jitteredAge(limits.maxAge);
    // Listeners are shared by every connection (found through the socket), not
    // closures per connection: an idle connection should cost little more than its socket.
    (socket as SocketWithConn)[CONN] = this;
    socket.on('data', Connection.#dataListener);
    dropNodeEndListener(socket);
    socket.on('end', Connection.#endListener);
    socket.on('error', Connection.#errorListener);
    socket.on('close', Connection.#closeListener);
    // 'drain' is listened to only while paused above the high water mark (#afterWrite).
  }

  static #dataListener(this: Socket, chunk: Buffer): void {
    (this as SocketWithConn)[CONN]!.#onData(chunk);
  }
  static #endListener(this: Socket): void {
    (this as SocketWithConn)[CONN]!.#onEnd();
  }
  static #errorListener(this: Socket, err: Error): void {
    (this as SocketWithConn)[CONN]!.#onSocketError(err);
  }
  static #closeListener(this: Socket): void {
    (this as SocketWithConn)[CONN]!.#onSocketClose();
  }
  static #drainListener(this: Socket): void {
    (this as SocketWithConn)[CONN]!.#checkLowWater();
  }
  static #uncorkTick(conn: Connection): void {
    conn.#uncork();
  }

  /** This connection's logger (bound to its id and remote address), made on first use: most connections log nothing. */
  get logger(): Logger {
    return (this.#childLogger ??= childLogger(this.#env.logger, { conn: this.id, remote: `${this.remoteAddress}:${this.remotePort}` }));
  }

  /**
   * The client's address: the one a trusted proxy's PROXY header named, else the
   * socket's peer. The socket's is read once in the constructor, while the handle
   * exists: Node caches it on the socket and answers from that cache after a reset
   * destroyed the handle, so every close can name its peer.
   */
  get remoteAddress(): string {
    return this.#peer !== null ? this.#peer.address : (this.#socket.remoteAddress ?? '');
  }
  get remotePort(): number {
    return this.#peer !== null ? this.#peer.port : (this.#socket.remotePort ?? 0);
  }
  /** The PROXY header this connection came with (destination, TLVs), or null. */
  get proxy(): ProxyHeader | null {
    return this.#peer?.proxy ?? null;
  }
  /** The TCP peer itself (the proxy, when there is one). */
  get socketAddress(): { address: string; port: number } {
    return { address: this.#socket.remoteAddress ?? '', port: this.#socket.remotePort ?? 0 };
  }

  get state(): ConnState {
    return this.#state;
  }
  /** When the connection entered its state (Date.now() time). */
  get stateSince(): number {
    return CLOCK_EPOCH + this.#stateSince;
  }

  /** Traffic counted on this connection so far (a snapshot). */
  get counters(): ConnectionCounters {
    return { framesIn: this.#framesIn, bytesIn: this.#bytesIn, repliesOut: this.#nextWrite, bytesOut: this.#bytesOut, lateReplies: this.#lateReplies };
  }
  /** Frames read and not yet answered. */
  get inFlight(): number {
    return this.#nextSeq - this.#nextWrite;
  }
  /** Bytes handed to the socket and not yet flushed to the kernel. */
  get queuedBytes(): number {
    return this.#socket.writableLength;
  }
  get paused(): boolean {
    return (this.#flags & F_SOCKET_PAUSED) !== 0;
  }

  /** Replies may still be written: not yet closing or closed. */
  #serving(): boolean {
    return this.#state !== 'closing' && this.#state !== 'closed';
  }

  #setState(next: ConnState): void {
    if (this.#state === next || this.#state === 'closed') return;
    this.#state = next;
    this.#stateSince = clockMs();
  }

  // ---- read side -------------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (this.#state === 'closing') return; // lingering close: discard
    this.#bytesIn += chunk.length;
    this.#flags = (this.#flags | F_SAW_ACTIVITY) & ~F_READER_DRY;
    this.#reader.push(chunk);
    this.#pump();
  }

  /**
   * Cut and dispatch frames while no budget says stop. Not re-entered: a message run
   * inline answers inside the loop, and its reply (deliver -> #afterWrite) asks for more
   * frames; the running loop takes them. Calling the loop again from there nested a few
   * stack frames per message: thousands of frames left in a read while draining
   * overflowed the stack, and the messages it unwound were answered twice or never.
   */
  #pump(): void {
    if ((this.#flags & F_PUMPING) !== 0) return;
    this.#flags |= F_PUMPING;
    const outer = this.#writeMode === WRITE_IDLE; // else inside a tick's writes: that one flushes
    if (outer) this.#writeMode = WRITE_DIRECT;
    try {
      this.#cutFrames();
    } finally {
      this.#flags &= ~F_PUMPING;
      if (outer) {
        // Whatever happened, nothing gathered or corked stays behind this read.
        if (gatherer === this) this.#flushGathered();
        if (this.#writeMode === WRITE_CUT) this.#socket.uncork();
        if (this.#writeMode !== WRITE_TICK) this.#writeMode = WRITE_IDLE;
      }
    }
    this.#maybeFinish();
  }

  #cutFrames(): void {
    const reader = this.#reader;
    const max = this.#env.limits.maxInFlight;
    while ((this.#paused & ~PAUSE_DRAIN) === 0 && this.#failed === null && this.#state !== 'closed') {
      let frame: Buffer | null;
      try {
        frame = reader.next();
      } catch (err) {
        this.#frameError(err);
        break;
      }
      if (frame === null) {
        this.#flags |= F_READER_DRY;
        break;
      }
      if (this.#writeMode === WRITE_DIRECT && reader.buffered > 0) {
        // More frames follow in what was read: their replies leave in one write (#pump).
        this.#writeMode = WRITE_CUT;
        this.#socket.cork();
        if (gatherer === null) gatherer = this;
      }
      const seq = this.#nextSeq++;
      this.#framesIn++;
      this.#env.dispatcher.submit(this, seq, frame);
      if (this.#nextSeq - this.#nextWrite >= max && (this.#paused & PAUSE_IN_FLIGHT) === 0) {
        this.#pause(PAUSE_IN_FLIGHT);
        this.#env.hooks.onBudget(this, 'maxInFlightPerConnection');
      }
    }
  }

  #frameError(err: unknown): void {
    const e = err instanceof ShoalError ? err : new ShoalError('SHOAL_FRAME_INVALID', String(err));
    this.#failed = e;
    this.#closeError = e;
    if (e.code === 'SHOAL_FRAME_TOO_LARGE') this.#env.hooks.onBudget(this, 'maxFrame');
    this.#env.hooks.onError(this, e);
    // A protocol with its own error replies (RESP's -ERR Protocol error) tells the peer why,
    // in order after the replies already due, as the reply of one more message.
    const reply = this.#env.framing.errorReply?.(e.toJSON());
    if (reply !== undefined) {
      this.deliver(this.#nextSeq++, 1, reply, false);
    }
    // Answer what is already in flight, then close: a bad frame ends this connection only.
    this.#stopReading();
  }

  #onEnd(): void {
    this.#flags |= F_READ_ENDED;
    if (this.#state === 'closing') {
      this.#socket.destroy();
      return;
    }
    // Half-close: finish what was received (as budgets allow), flush, then FIN.
    this.#stopReading();
  }

  #pause(reason: number): void {
    this.#paused |= reason;
    if ((this.#flags & F_SOCKET_PAUSED) === 0) {
      this.#flags |= F_SOCKET_PAUSED;
      this.#socket.pause();
    }
  }

  #unpause(reason: number): void {
    if ((this.#paused & reason) === 0) return;
    this.#paused &= ~reason;
    if (this.#paused === 0 && (this.#flags & F_SOCKET_PAUSED) !== 0 && (this.#state === 'active' || this.#state === 'goingAway')) {
      this.#flags &= ~F_SOCKET_PAUSED;
      this.#socket.resume();
    }
    // Frames may be waiting in the reader from before the pause.
    if ((this.#paused & ~PAUSE_DRAIN) === 0) this.#pump();
  }

  /** The dispatcher's queue is full / has drained (server-wide back pressure). */
  setPoolPaused(paused: boolean): void {
    if (paused) this.#pause(PAUSE_POOL);
    else this.#unpause(PAUSE_POOL);
  }

  #stopReading(): void {
    if (this.#state === 'active' || this.#state === 'goingAway') this.#setState('draining');
    this.#pause(PAUSE_DRAIN);
    this.#maybeFinish();
  }

  // ---- write side ------------------------------------------------------------

  deliver(seq: number, count: number, bytes: FramedBytes | null, close: boolean, pushes: Push[] | null = null): void {
    if (this.#state === 'closed' || this.#state === 'closing') {
      this.#late(count);
      if (pushes !== null) this.#env.hooks.onPushes(this, pushes, true);
      return;
    }
    if (seq !== this.#nextWrite) {
      (this.#reorder ??= new Map()).set(seq, { count, bytes, close, pushes });
      return;
    }
    this.#release(count, bytes, close, pushes);
    const reorder = this.#reorder;
    // #release may have closed it (the 'close' error policy).
    while (reorder !== null && reorder.size > 0 && this.#serving()) {
      const next = reorder.get(this.#nextWrite);
      if (next === undefined) break;
      reorder.delete(this.#nextWrite);
      this.#release(next.count, next.bytes, next.close, next.pushes);
    }
    this.#afterWrite();
  }

  /** Write the replies of the next `count` messages in order; their pushes go out first (issue 12's order). */
  #release(count: number, bytes: FramedBytes | null, close: boolean, pushes: Push[] | null): void {
    this.#nextWrite += count;
    if (pushes !== null) this.#env.hooks.onPushes(this, pushes, false);
    if (bytes !== null && bytes.length > 0 && !this.#socket.destroyed) {
      if (bytes instanceof Uint8Array) this.#write(bytes);
      else for (let i = 0; i < bytes.length; i++) this.#write(bytes[i]!); // in pieces: one writev in this tick's cork
    }
    if (close) {
      // The 'close' error policy: what precedes is written, then we close.
      this.#failed ??= new ShoalError('SHOAL_HANDLER_ERROR', 'closed by the handler error policy');
      this.#finish();
    }
  }

  #write(bytes: Uint8Array): void {
    const socket = this.#socket;
    if (this.#writeMode === WRITE_IDLE) {
      // Every reply written in this tick leaves in one writev.
      this.#writeMode = WRITE_TICK;
      socket.cork();
      process.nextTick(Connection.#uncorkTick, this);
    }
    this.#bytesOut += bytes.length;
    if (gatherer === this) {
      if (bytes.length <= GATHER_MAX_BYTES && gatheredBytes + bytes.length <= GATHER_LIMIT_BYTES) {
        gathered.push(bytes);
        gatheredBytes += bytes.length;
        return;
      }
      this.#flushGathered(); // in order: what was gathered goes first
      gatherer = this;
    }
    socket.write(bytes);
  }

  /** Write what this connection gathered (#write), as one buffer. */
  #flushGathered(): void {
    gatherer = null;
    const n = gathered.length;
    if (n === 0) return;
    if (this.#socket.destroyed) {
      gathered.length = 0;
      gatheredBytes = 0;
      return; // reset while its frames were cut: what was queued is lost, as for any write
    }
    let out: Uint8Array;
    if (n === 1) out = gathered[0]!;
    else {
      const b = Buffer.allocUnsafe(gatheredBytes);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const piece = gathered[i]!;
        const len = piece.length;
        // Most replies are a few bytes (+OK, $3 xxx): a loop copies those faster than a set() call.
        if (len <= SMALL_COPY_BYTES) for (let j = 0; j < len; j++) b[at + j] = piece[j]!;
        else b.set(piece, at);
        at += len;
      }
      out = b;
    }
    gathered.length = 0;
    gatheredBytes = 0;
    this.#socket.write(out);
  }

  /** The tick's flush (WRITE_TICK), or any cork before the FIN. */
  #uncork(): void {
    if (gatherer === this) this.#flushGathered(); // a FIN in the middle of a read's frames
    if (this.#writeMode === WRITE_TICK || this.#writeMode === WRITE_CUT) this.#socket.uncork();
    this.#writeMode = WRITE_IDLE;
  }

  #afterWrite(): void {
    this.#flags |= F_SAW_ACTIVITY;
    const limits = this.#env.limits;
    this.#checkHighWater();
    if ((this.#paused & PAUSE_IN_FLIGHT) !== 0 && this.inFlight < limits.maxInFlight) this.#unpause(PAUSE_IN_FLIGHT);
    else if (this.#state === 'draining') this.#pump();
    this.#maybeFinish();
  }

  /** Above the high water mark: pause reading until the queue drains (sendTimeout counts from now). */
  #checkHighWater(): void {
    if (this.#socket.writableLength > this.#env.limits.sendHighWater && (this.#paused & PAUSE_SEND_QUEUE) === 0) {
      this.#aboveHighSince = clockMs();
      this.#pause(PAUSE_SEND_QUEUE);
      this.#socket.once('drain', Connection.#drainListener);
      this.#env.hooks.onBudget(this, 'sendHighWater');
    }
  }

  /**
   * A push from another message (or server.send): framed bytes through the send queue,
   * with the same high water mark and sendTimeout as replies. A peer that does not read
   * cannot make it grow without bound: past sendQueueLimit it is cut. False when this
   * connection no longer writes (closing, closed, or cut now).
   */
  push(bytes: Uint8Array): boolean {
    if (!this.#serving() || this.#socket.destroyed) return false;
    const queued = this.#socket.writableLength;
    if (queued + bytes.length > this.#env.limits.sendQueueLimit) {
      this.#budgetClose('sendQueueLimit', 'SHOAL_SEND_QUEUE_FULL', `a push of ${bytes.length} bytes onto ${queued} queued bytes would pass sendQueueLimit (${this.#env.limits.sendQueueLimit})`);
      return false;
    }
    this.#write(bytes);
    this.#flags |= F_SAW_ACTIVITY;
    this.#checkHighWater();
    return true;
  }

  /**
   * This connection's pushes made a burst at a member (push.ts PushHub): cut no more
   * frames this turn; read again on the next, once the members' queues had a turn to drain.
   */
  backOff(): void {
    if ((this.#paused & PAUSE_PUSH_BURST) !== 0) return;
    this.#pause(PAUSE_PUSH_BURST);
    setImmediate(Connection.#afterBackOff, this);
  }

  static #afterBackOff(conn: Connection): void {
    conn.#unpause(PAUSE_PUSH_BURST);
  }

  #checkLowWater(): void {
    if ((this.#paused & PAUSE_SEND_QUEUE) !== 0 && this.#socket.writableLength <= this.#env.limits.sendLowWater) {
      this.#aboveHighSince = 0;
      this.#socket.removeListener('drain', Connection.#drainListener);
      this.#unpause(PAUSE_SEND_QUEUE);
    }
  }

  /** Draining and nothing left to serve: FIN. */
  #maybeFinish(): void {
    if (this.#state !== 'draining' || this.inFlight > 0) return;
    // Whole frames received before the drain began are still served.
    if (this.#failed === null && (this.#flags & F_READER_DRY) === 0) return;
    if (this.#failed === null && (this.#flags & F_READ_ENDED) !== 0 && this.#reader.buffered > 0) {
      try {
        this.#reader.end();
      } catch (err) {
        this.#env.hooks.onError(this, err as ShoalError);
      }
    }
    this.#finish();
  }

  /** Send FIN after what is queued, then linger for the peer's FIN. */
  #finish(): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#setState('closing');
    this.#dropHeld();
    const socket = this.#socket;
    this.#uncork();
    socket.end();
    if ((this.#flags & F_READ_ENDED) !== 0) return; // both sides done: the socket closes by itself
    // Keep reading (and discarding) so the peer's late bytes do not turn our close into a RST.
    this.#flags &= ~F_SOCKET_PAUSED;
    socket.resume();
    const linger = setTimeout(() => this.destroy(), LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  }

  // ---- lifecycle ---------------------------------------------------------------

  /**
   * Graceful shutdown: with a going-away frame, send it and keep serving until
   * the peer closes; without, stop reading and finish what was received.
   */
  shutdown(goAway: Uint8Array | null): void {
    if (this.#state !== 'active') return;
    if (goAway !== null) {
      this.#write(goAway);
      this.#setState('goingAway');
      return;
    }
    this.#stopReading();
  }

  /**
   * Immediate close (drain deadline, send timeout, max-age grace, destroy()): what is
   * queued is lost. With requests read and not answered it is a reset (RST), never a
   * FIN: a FIN from shoal promises that everything it read was answered (the retry-safe
   * close), so a client may re-send what is unanswered at a FIN; after a reset the
   * outcome is unknown and only idempotent requests may be re-sent.
   */
  destroy(error?: ShoalError): void {
    if (this.#state === 'closed') return;
    if (error) this.#closeError ??= error;
    if (!this.#socket.destroyed && this.#wouldBreakFinPromise()) this.#reset();
    this.#socket.destroy();
  }

  /**
   * Would a FIN now tell the peer something untrue: that all it sent and we read was
   * answered? True with requests in flight or whole frames unread from the buffer, and
   * with replies still queued in user space (destroy() drops them, the kernel would send
   * FIN after what it holds). Once closing, our FIN has gone out unless writes are stuck.
   */
  #wouldBreakFinPromise(): boolean {
    const queued = this.#socket.writableLength > 0;
    if (this.#state === 'closing') return queued;
    return queued || this.inFlight > 0 || (this.#flags & F_READER_DRY) === 0;
  }

  /** RST. A TLSSocket's handle is TLS over the TCP socket it was made from (`_parent`): reset that one. */
  #reset(): void {
    const tcp = (this.#socket as Socket & { _parent?: Socket })._parent ?? this.#socket;
    try {
      tcp.resetAndDestroy();
    } catch {
      // not a TCP handle (e.g. a pipe): a plain close is all there is
    }
  }

  /** Budget timers, driven by the server's one coarse tick (no timer per connection). */
  /** `now`: clockMs() (clock.ts). */
  tick(now: number): void {
    const l = this.#env.limits;
    if (this.#state === 'closed') return;
    if ((this.#flags & F_SAW_ACTIVITY) !== 0) {
      this.#flags &= ~F_SAW_ACTIVITY;
      this.#lastActive = now;
    }
    this.#checkLowWater();
    if (l.sendTimeout > 0 && this.#aboveHighSince > 0) {
      if (this.#aboveHighSince > 0 && now - this.#aboveHighSince >= l.sendTimeout) {
        this.#budgetClose('sendTimeout', 'SHOAL_SEND_TIMEOUT', `peer read nothing for ${l.sendTimeout} ms with ${this.#socket.writableLength} bytes queued`);
        return;
      }
    }
    if (l.idleTimeout > 0 && this.#state === 'active' && this.inFlight === 0 && now - this.#lastActive >= l.idleTimeout) {
      // An orderly close (retry-safe): a request racing the timeout is answered, or never read.
      const err = new ShoalError('SHOAL_IDLE_TIMEOUT', `no message for ${l.idleTimeout} ms`);
      this.#closeError ??= err;
      this.#env.hooks.onBudget(this, 'idleTimeout');
      this.#env.hooks.onError(this, err);
      this.#stopReading();
      return;
    }
    if (this.#ageDeadline > 0 && now >= this.#ageDeadline) {
      if ((this.#flags & F_AGE_GRACE) === 0) this.#sendAway(now);
      else this.#budgetClose('maxConnectionAgeGrace', 'SHOAL_MAX_CONNECTION_AGE', `still open ${l.maxAgeGrace} ms after its maximum age`);
    }
  }

  /** Max age reached: the going-away frame or an orderly drain close; destroyed if still open after the grace. */
  #sendAway(now: number): void {
    this.#flags |= F_AGE_GRACE;
    this.#ageDeadline = now + this.#env.limits.maxAgeGrace;
    if (this.#state !== 'active') return; // already leaving (shutdown, peer FIN, bad frame)
    // Still 'active', the state it was born in: #stateSince is when it was accepted.
    this.#closeError ??= new ShoalError('SHOAL_MAX_CONNECTION_AGE', `open for ${now - this.#stateSince} ms`);
    this.#env.hooks.onBudget(this, 'maxConnectionAge');
    this.shutdown(this.#env.limits.goAway);
  }

  #budgetClose(budget: Budget, code: ErrorCode, message: string): void {
    const err = new ShoalError(code, message);
    this.#env.hooks.onBudget(this, budget);
    this.#env.hooks.onError(this, err);
    this.destroy(err);
  }

  #onSocketError(err: Error): void {
    // Read and write side die together: the socket is destroyed, 'close' follows.
    this.logger.debug({ err: err.message }, 'socket error');
  }

  #onSocketClose(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#stateSince = clockMs();
    this.#dropHeld();
    this.#env.hooks.onClose(this, this.#closeError);
  }

  /** Replies held for reordering will not be sent now: count them as late (and their pushes as dropped). */
  #dropHeld(): void {
    let held = 0;
    if (this.#reorder !== null) {
      for (const r of this.#reorder.values()) {
        held += r.count;
        if (r.pushes !== null) this.#env.hooks.onPushes(this, r.pushes, true);
      }
    }
    this.#reorder = null;
    if (held > 0) this.#late(held);
  }

  /** Count replies nobody will read; the server hears of them even after onClose. */
  #late(count: number): void {
    this.#lateReplies += count;
    this.#env.hooks.onLateReplies(this, count);
  }
}
