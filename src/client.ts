import { connect as netConnect, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { InvalidOptionError, ShoalError } from './errors.js';
import { endIsReset, loopTurn } from './loop-turn.js';
import { DEFAULTS } from './options.js';
import { FrameReader, createFraming, encodeFrame, isFraming } from './framing/index.js';
import type { BuiltinFramingOptions, Framing } from './framing/index.js';

/** One server the client may connect to. */
export interface Endpoint {
  host?: string;
  port: number;
}

/** Options of connect(): where to connect, the framing (the server's), timeouts, and how to survive closes. */
export interface ClientOptions {
  host?: string;
  /** The server's port (or give `endpoints`). */
  port?: number;
  /** Servers to use, in turn: the first to connect, the next ones on reconnect. Default: [{ host, port }]. */
  endpoints?: Endpoint[];
  /** Same framing options as the server. Default: [u32 BE length][body]. */
  framing?: BuiltinFramingOptions | Framing;
  /** Largest frame, either way. Default: the server's (DEFAULTS.maxFrame, 1 MiB of body plus a 4-byte header). */
  maxFrame?: number;
  /** ms to wait for each reply (from request(), over every re-send); 0 = no timeout. Default 30 s. */
  timeout?: number;
  /** ms to wait for the TCP connection (and the TLS handshake). Default 10 s. */
  connectTimeout?: number;
  /**
   * Speak TLS: node:tls connect options (ca, servername, cert, key, rejectUnauthorized, ...);
   * `true` for the defaults (the system's CAs). servername defaults to a host that is not an IP.
   */
  tls?: TlsConnectionOptions | true;
  /**
   * Survive the server closing the connection. After an orderly close (FIN) the requests
   * left unanswered were never read by the server (shoal's retry-safe close), so they are
   * re-sent, in order, on a new connection; after a going-away frame new requests go to a
   * new connection while the old one finishes. Default false: a close fails what is pending.
   */
  reconnect?: boolean;
  /**
   * After a reset or a request timeout the outcome of the pending requests is unknown:
   * 'never' (default) fails them, 'idempotent' re-sends them too (only for requests that
   * may run twice). Needs `reconnect`.
   */
  retry?: 'never' | 'idempotent';
  /** The server's going-away bytes (its `goAway` option, one whole frame): never taken as a reply. */
  goAway?: Uint8Array | null;
  /** How often one request may be re-sent before it fails. Default 8. */
  maxResends?: number;
  /** ms to keep trying to reconnect (every endpoint in turn) before pending requests fail. Default 10 s. */
  reconnectTimeout?: number;
  /**
   * Frames no request was waiting for (a server's pushes: broadcasts, ctx.sendTo) go here
   * instead of `client.unsolicited`. Replies are matched to requests in order, so on a
   * connection that gets pushes use send() (no reply awaited) and take every frame here.
   */
  onUnsolicited?: ((frame: Buffer) => void) | null;
}

/** What a client did to survive closes (client.stats). */
export interface ClientStats {
  /** New connections made after the first. */
  reconnects: number;
  /** Requests sent again on a new connection. */
  resent: number;
  /** Going-away frames received. */
  goAways: number;
  /** Ends of stream taken as resets: they came in the event-loop turn of a read (see loop-turn.ts). */
  resetsAsEnd: number;
}

interface Pending {
  frame: Buffer;
  resolve(reply: Buffer): void;
  reject(err: Error): void;
  deadline: number;
  resends: number;
}

/** One TCP connection and the requests written to it, oldest first. */
interface Link {
  socket: Socket;
  reader: FrameReader;
  fifo: Pending[];
  head: number;
  /** The server sent its going-away frame: no new requests here; closed once answered. */
  goingAway: boolean;
  /** Handled (FIN, reset, timeout, close()): nothing more is done with its requests. */
  done: boolean;
  /** loopTurn() of the last read from the server (-1: none): see loop-turn.ts. */
  readTurn: number;
}

const RECONNECT_BACKOFF_MIN = 50;
const RECONNECT_BACKOFF_MAX = 1000;

/**
 * A client speaking shoal's framing: request(body) -> Promise<reply>.
 * Requests may be pipelined; replies come back in order (one per request), so
 * the client matches them FIFO, like the server writes them. With `reconnect`, it
 * survives drains, restarts and max-age closes (see ClientOptions.reconnect).
 */
export class Client {
  readonly #framing: Framing;
  readonly #endpoints: Required<Endpoint>[];
  readonly #tls: TlsConnectionOptions | null;
  readonly #timeout: number;
  readonly #connectTimeout: number;
  readonly #reconnect: boolean;
  readonly #retryUnknown: boolean;
  readonly #goAwayBody: Buffer | null;
  readonly #maxResends: number;
  readonly #reconnectTimeout: number;
  readonly #onUnsolicited: ((frame: Buffer) => void) | null;
  /** The connection new requests go to (null while reconnecting). */
  #link: Link | null;
  #lastSocket: Socket;
  /** Links that went away and still have replies to deliver. */
  readonly #leaving = new Set<Link>();
  /** Requests waiting for a connection, in order. */
  #waiting: Pending[] = [];
  #connecting = false;
  #endpointIndex = 0;
  #closed: ShoalError | null = null;
  #ending = false;
  #timer: NodeJS.Timeout | null = null;
  /** Frames the server sent that no request was waiting for (e.g. a going-away frame it was not told of). */
  readonly unsolicited: Buffer[] = [];
  readonly stats: ClientStats = { reconnects: 0, resent: 0, goAways: 0, resetsAsEnd: 0 };

  private constructor(socket: Socket, endpointIndex: number, framing: Framing, o: ResolvedClientOptions, goAwayBody: Buffer | null) {
    this.#framing = framing;
    this.#endpoints = o.endpoints;
    this.#tls = o.tls;
    this.#endpointIndex = endpointIndex;
    this.#timeout = o.timeout;
    this.#connectTimeout = o.connectTimeout;
    this.#reconnect = o.reconnect;
    this.#retryUnknown = o.retry === 'idempotent';
    this.#goAwayBody = goAwayBody;
    this.#maxResends = o.maxResends;
    this.#reconnectTimeout = o.reconnectTimeout;
    this.#onUnsolicited = o.onUnsolicited;
    this.#lastSocket = socket;
    this.#link = this.#attach(socket);
    if (this.#timeout > 0) {
      this.#timer = setInterval(() => this.#checkTimeouts(), Math.max(10, Math.min(1000, this.#timeout / 4)));
      this.#timer.unref();
    }
  }

  /** Open a connection (to the first endpoint that answers); resolves once it is connected (rejects with the last error). */
  static async connect(options: ClientOptions): Promise<Client> {
    const o = resolveClientOptions(options);
    const framing = isFraming(options.framing) ? options.framing : createFraming(options.framing ?? { type: 'length' }, o.maxFrame);
    const goAwayBody = o.goAway === null ? null : oneFrame(framing, o.goAway);
    let lastError: ShoalError | null = null;
    // The first connection: every endpoint in turn once.
    for (let i = 0; i < o.endpoints.length; i++) {
      try {
        const socket = await openSocket(o.endpoints[i]!, o.connectTimeout, o.tls);
        return new Client(socket, i, framing, o, goAwayBody);
      } catch (err) {
        lastError = err as ShoalError;
      }
    }
    throw lastError!;
  }

  /** Requests sent (or waiting for a connection) and not yet answered. */
  get inFlight(): number {
    let n = this.#waiting.length;
    for (const l of this.#links()) n += l.fifo.length - l.head;
    return n;
  }

  /** Is this frame the server's going-away frame (ClientOptions.goAway)? */
  isGoAway(frame: Uint8Array): boolean {
    return this.#goAwayBody !== null && this.#goAwayBody.equals(frame);
  }

  /** Send one request; resolves with its reply body. */
  request(body: Uint8Array | string): Promise<Buffer> {
    if (this.#closed) return Promise.reject(this.#closed);
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    const frame = encodeFrame(this.#framing, bytes);
    return new Promise<Buffer>((resolve, reject) => {
      const p: Pending = { frame, resolve, reject, deadline: this.#timeout > 0 ? Date.now() + this.#timeout : 0, resends: 0 };
      const link = this.#link;
      // Without reconnect a going-away connection is still the only one: keep using it.
      if (link !== null && (!link.goingAway || !this.#reconnect)) this.#write(link, p);
      else this.#queue([p]);
    });
  }

  /**
   * Send one frame and await no reply: for protocols where the server answers with
   * pushes, or not at all (take those frames with `onUnsolicited`). Throws
   * SHOAL_CONNECTION_CLOSED when there is no connection to write to.
   */
  send(body: Uint8Array | string): void {
    if (this.#closed) throw this.#closed;
    const link = this.#link;
    if (link === null) throw new ShoalError('SHOAL_CONNECTION_CLOSED', 'no connection to send on (reconnecting)');
    link.socket.write(encodeFrame(this.#framing, typeof body === 'string' ? Buffer.from(body) : body));
  }

  /** Write raw bytes, unframed (tests of hostile input). */
  writeRaw(bytes: Uint8Array): void {
    this.#lastSocket.write(bytes);
  }

  #write(link: Link, p: Pending): void {
    link.fifo.push(p);
    link.socket.write(p.frame);
  }

  *#links(): Iterable<Link> {
    if (this.#link) yield this.#link;
    yield* this.#leaving;
  }

  #attach(socket: Socket): Link {
    const link: Link = { socket, reader: new FrameReader(this.#framing.createDecoder()), fifo: [], head: 0, goingAway: false, done: false, readTurn: -1 };
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      link.readTurn = loopTurn();
      this.#onData(link, chunk);
    });
    // TLS 1.3 session tickets come after the handshake and carry no data: a read all the same.
    if (socket instanceof TLSSocket) socket.on('session', () => (link.readTurn = loopTurn()));
    socket.on('end', () => {
      // FIN from the server: a shoal server answered everything it read before it (retry-safe).
      // An end in the turn of a read is a reset reported as an end (loop-turn.ts): outcome unknown.
      // Not once we ended our side: a FIN then raises POLLHUP too (and all was answered).
      const orderly = socket.writableEnded || !endIsReset(link.readTurn);
      if (!orderly) this.stats.resetsAsEnd++;
      this.#lost(link, orderly, new ShoalError('SHOAL_CONNECTION_CLOSED', orderly ? 'connection closed by the server' : 'connection reset by the server'));
    });
    socket.on('error', (err) => this.#lost(link, false, new ShoalError('SHOAL_CONNECTION_CLOSED', `connection error: ${err.message}`)));
    socket.on('close', () => this.#lost(link, false, new ShoalError('SHOAL_CONNECTION_CLOSED', 'connection closed by the server')));
    return link;
  }

  #onData(link: Link, chunk: Buffer): void {
    link.reader.push(chunk);
    for (;;) {
      let frame: Buffer | null;
      try {
        frame = link.reader.next();
      } catch (err) {
        // The stream cannot be framed: the replies are out of step, the outcome unknown.
        this.#lost(link, false, err as ShoalError);
        link.socket.destroy();
        return;
      }
      if (frame === null) return;
      if (this.isGoAway(frame)) {
        this.#goingAway(link);
        continue;
      }
      // Replies are views into socket chunks; copy so a caller may keep them.
      const reply = Buffer.from(frame);
      if (link.head < link.fifo.length) {
        const p = link.fifo[link.head++]!;
        if (link.head > 1024 && link.head * 2 > link.fifo.length) {
          link.fifo = link.fifo.slice(link.head);
          link.head = 0;
        }
        p.resolve(reply);
        if (link.goingAway && link.head === link.fifo.length) link.socket.end();
      } else if (this.#onUnsolicited !== null) {
        this.#onUnsolicited(reply);
      } else {
        this.unsolicited.push(reply);
      }
    }
  }

  /** The server is going away: new requests go to a new connection; this one ends once answered. */
  #goingAway(link: Link): void {
    this.stats.goAways++;
    if (link.goingAway) return;
    link.goingAway = true;
    if (!this.#reconnect) return;
    if (this.#link === link) this.#link = null;
    this.#leaving.add(link);
    if (link.head === link.fifo.length) link.socket.end();
  }

  /**
   * The connection ended. `orderly` (the server's FIN): what is unanswered was never read
   * and is re-sent with reconnect; otherwise (reset, timeout) only with retry: 'idempotent'.
   */
  #lost(link: Link, orderly: boolean, err: ShoalError): void {
    if (link.done) return;
    link.done = true;
    this.#leaving.delete(link);
    if (this.#link === link) this.#link = null;
    const unanswered = link.fifo.slice(link.head);
    link.fifo = [];
    link.head = 0;
    if (!link.socket.destroyed && !orderly) link.socket.destroy();
    if (this.#reconnect && !this.#ending && this.#closed === null) {
      if (orderly || this.#retryUnknown) this.#queue(unanswered, true);
      else for (const p of unanswered) p.reject(err);
      return;
    }
    // No reconnect: the client is done, as a plain socket would be.
    this.#fail(err, unanswered);
  }

  /** Queue requests for the next connection (re-sent ones first, in order) and make sure one is coming. */
  #queue(ps: Pending[], resend = false): void {
    const now = Date.now();
    const keep: Pending[] = [];
    for (const p of ps) {
      if (!resend) keep.push(p);
      else if (p.deadline > 0 && now > p.deadline) p.reject(new ShoalError('SHOAL_REQUEST_TIMEOUT', `no reply within ${this.#timeout} ms`));
      else if (p.resends >= this.#maxResends) p.reject(new ShoalError('SHOAL_CONNECTION_CLOSED', `closed ${p.resends + 1} times before it was answered`));
      else {
        p.resends++;
        this.stats.resent++;
        keep.push(p);
      }
    }
    if (keep.length === 0) return;
    this.#waiting = resend ? [...keep, ...this.#waiting] : [...this.#waiting, ...keep];
    void this.#connectAgain();
  }

  /** Connect to the endpoints in turn (bounded by reconnectTimeout), then send what waits. */
  async #connectAgain(): Promise<void> {
    if (this.#connecting || this.#link !== null) return this.#flush();
    this.#connecting = true;
    const giveUpAt = Date.now() + this.#reconnectTimeout;
    let backoff = RECONNECT_BACKOFF_MIN;
    let lastError = '';
    try {
      while (this.#closed === null && this.#waiting.length > 0) {
        // Start with the next endpoint: the one that just closed is likely going away.
        this.#endpointIndex = (this.#endpointIndex + 1) % this.#endpoints.length;
        try {
          const socket = await openSocket(this.#endpoints[this.#endpointIndex]!, this.#connectTimeout, this.#tls);
          if (this.#closed !== null) {
            socket.destroy();
            return;
          }
          this.stats.reconnects++;
          this.#lastSocket = socket;
          this.#link = this.#attach(socket);
          return;
        } catch (err) {
          lastError = (err as Error).message;
        }
        if (Date.now() >= giveUpAt) {
          const e = new ShoalError('SHOAL_CONNECTION_CLOSED', `could not reconnect within ${this.#reconnectTimeout} ms: ${lastError}`);
          for (const p of this.#waiting.splice(0)) p.reject(e);
          return;
        }
        if (this.#endpointIndex === this.#endpoints.length - 1 || this.#endpoints.length === 1) {
          await new Promise((r) => setTimeout(r, backoff).unref());
          backoff = Math.min(RECONNECT_BACKOFF_MAX, backoff * 2);
        }
      }
    } finally {
      this.#connecting = false;
      this.#flush();
    }
  }

  #flush(): void {
    const link = this.#link;
    if (link === null || this.#waiting.length === 0) return;
    const ps = this.#waiting;
    this.#waiting = [];
    link.socket.cork();
    for (const p of ps) this.#write(link, p);
    link.socket.uncork();
  }

  #checkTimeouts(): void {
    const now = Date.now();
    for (const link of [...this.#links()]) {
      const p = link.fifo[link.head];
      if (p && p.deadline > 0 && now > p.deadline) {
        // Replies are ordered: once one is late the stream is out of step; give up the connection.
        link.head++;
        const err = new ShoalError('SHOAL_REQUEST_TIMEOUT', `no reply within ${this.#timeout} ms`);
        p.reject(err);
        this.#lost(link, false, err);
      }
    }
    const late = this.#waiting.filter((p) => p.deadline > 0 && now > p.deadline);
    if (late.length > 0) {
      this.#waiting = this.#waiting.filter((p) => !late.includes(p));
      for (const p of late) p.reject(new ShoalError('SHOAL_REQUEST_TIMEOUT', `no reply within ${this.#timeout} ms`));
    }
  }

  #fail(err: ShoalError, more: Pending[] = []): void {
    this.#closed ??= err;
    if (this.#timer) clearInterval(this.#timer);
    const pending = [...more, ...this.#waiting];
    this.#waiting = [];
    for (const link of [...this.#links()]) {
      link.done = true;
      pending.push(...link.fifo.slice(link.head));
      link.fifo = [];
      link.socket.destroy();
    }
    this.#link = null;
    this.#leaving.clear();
    for (const p of pending) p.reject(err);
  }

  /** Half-close: no more requests; pending ones still get their replies. Resolves when the server closes. */
  async end(): Promise<void> {
    this.#ending = true;
    const closing: Promise<void>[] = [];
    for (const link of this.#links()) {
      if (link.socket.destroyed) continue;
      closing.push(new Promise<void>((r) => link.socket.once('close', () => r())));
      link.socket.end();
    }
    await Promise.all(closing);
  }

  /** Close now; pending requests reject with SHOAL_CONNECTION_CLOSED. */
  close(): void {
    this.#lastSocket.destroy();
    this.#fail(new ShoalError('SHOAL_CONNECTION_CLOSED', 'client closed'));
  }

  /** The current connection's socket (the latest one, after a reconnect). */
  get socket(): Socket {
    return this.#lastSocket;
  }
}

interface ResolvedClientOptions {
  endpoints: Required<Endpoint>[];
  tls: TlsConnectionOptions | null;
  maxFrame: number;
  timeout: number;
  connectTimeout: number;
  reconnect: boolean;
  retry: 'never' | 'idempotent';
  goAway: Uint8Array | null;
  maxResends: number;
  reconnectTimeout: number;
  onUnsolicited: ((frame: Buffer) => void) | null;
}

function nonNegativeInt(name: string, v: unknown, dflt: number): number {
  const n = v ?? dflt;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new InvalidOptionError(`${name} must be an integer >= 0 (got ${JSON.stringify(v)})`);
  return n;
}

function resolveClientOptions(o: ClientOptions): ResolvedClientOptions {
  const list = o.endpoints ?? [{ host: o.host, port: o.port as number }];
  if (!Array.isArray(list) || list.length === 0) throw new InvalidOptionError('endpoints must be a non-empty array of { host, port }');
  const endpoints = list.map((e) => {
    if (!Number.isInteger(e?.port)) throw new InvalidOptionError(`port must be an integer (got ${e?.port})`);
    return { host: e.host ?? '127.0.0.1', port: e.port };
  });
  const reconnect = o.reconnect ?? false;
  const retry = o.retry ?? 'never';
  if (typeof reconnect !== 'boolean') throw new InvalidOptionError(`reconnect must be a boolean (got ${JSON.stringify(reconnect)})`);
  if (retry !== 'never' && retry !== 'idempotent') throw new InvalidOptionError(`retry must be 'never' or 'idempotent' (got ${JSON.stringify(retry)})`);
  if (retry === 'idempotent' && !reconnect) throw new InvalidOptionError("retry: 'idempotent' needs reconnect: true");
  const goAway = o.goAway ?? null;
  if (goAway !== null && !(goAway instanceof Uint8Array)) throw new InvalidOptionError('goAway must be a Uint8Array or null');
  const onUnsolicited = o.onUnsolicited ?? null;
  if (onUnsolicited !== null && typeof onUnsolicited !== 'function') throw new InvalidOptionError('onUnsolicited must be a function or null');
  return {
    endpoints,
    tls: o.tls === true ? {} : (o.tls ?? null),
    maxFrame: nonNegativeInt('maxFrame', o.maxFrame, DEFAULTS.maxFrame),
    timeout: nonNegativeInt('timeout', o.timeout, 30_000),
    connectTimeout: nonNegativeInt('connectTimeout', o.connectTimeout, 10_000),
    reconnect,
    retry,
    goAway,
    maxResends: nonNegativeInt('maxResends', o.maxResends, 8),
    reconnectTimeout: nonNegativeInt('reconnectTimeout', o.reconnectTimeout, 10_000),
    onUnsolicited,
  };
}

/** The body of the going-away bytes, read with the client's framing: they must be exactly one frame. */
function oneFrame(framing: Framing, bytes: Uint8Array): Buffer {
  const reader = new FrameReader(framing.createDecoder());
  reader.push(Buffer.from(bytes));
  let frame: Buffer | null = null;
  try {
    frame = reader.next();
  } catch {
    // not a frame at all: reported below
  }
  if (frame === null || reader.buffered !== 0) {
    throw new InvalidOptionError(`goAway must be exactly one frame of the client's framing (${bytes.length} bytes given)`);
  }
  return Buffer.from(frame);
}

function openSocket(e: Required<Endpoint>, connectTimeout: number, tls: TlsConnectionOptions | null): Promise<Socket> {
  const socket: Socket = tls
    ? tlsConnect({ ...(isIP(e.host) ? {} : { servername: e.host }), ...tls, host: e.host, port: e.port })
    : netConnect({ host: e.host, port: e.port });
  return new Promise<Socket>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ShoalError('SHOAL_REQUEST_TIMEOUT', `connect to ${e.host}:${e.port} timed out`));
    }, connectTimeout);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new ShoalError('SHOAL_CONNECTION_CLOSED', `connect to ${e.host}:${e.port} failed: ${err.message}`, { cause: err }));
    });
  });
}

/** Connect a client with the same framing as the server: request/response, pipelined, replies matched in order. */
export function connect(options: ClientOptions): Promise<Client> {
  return Client.connect(options);
}
