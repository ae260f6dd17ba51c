import { connect as netConnect, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { InvalidOptionError, ShoalError } from './errors.js';
import { DEFAULTS } from './options.js';
import { FrameReader, createFraming, encodeFrame, isFraming } from './framing/index.js';
import type { BuiltinFramingOptions, Framing } from './framing/index.js';

/** Options of connect(): where to connect, the framing (the server's), and the request timeout. */
export interface ClientOptions {
  host?: string;
  port: number;
  /** Same framing options as the server. Default: [u32 BE length][body]. */
  framing?: BuiltinFramingOptions | Framing;
  /** Largest frame, either way. Default: the server's (DEFAULTS.maxFrame, 1 MiB of body plus a 4-byte header). */
  maxFrame?: number;
  /** ms to wait for each reply; 0 = no timeout. Default 30 s. */
  timeout?: number;
  /** ms to wait for the TCP connection (and the TLS handshake). Default 10 s. */
  connectTimeout?: number;
  /**
   * Speak TLS: node:tls connect options (ca, servername, cert, key, rejectUnauthorized, ...);
   * `true` for the defaults (the system's CAs). servername defaults to a host that is not an IP.
   */
  tls?: TlsConnectionOptions | true;
}

interface Pending {
  resolve(frame: Buffer): void;
  reject(err: Error): void;
  deadline: number;
}

/**
 * A client speaking shoal's framing: request(body) -> Promise<reply>.
 * Requests may be pipelined; replies come back in order (one per request), so
 * the client matches them FIFO, like the server writes them.
 */
export class Client {
  readonly #socket: Socket;
  readonly #framing: Framing;
  readonly #reader: FrameReader;
  readonly #timeout: number;
  #pending: Pending[] = [];
  #head = 0;
  #closed: ShoalError | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Frames the server sent that no request was waiting for (e.g. a going-away frame). */
  readonly unsolicited: Buffer[] = [];

  private constructor(socket: Socket, framing: Framing, timeout: number) {
    this.#socket = socket;
    this.#framing = framing;
    this.#reader = new FrameReader(framing.createDecoder());
    this.#timeout = timeout;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#fail(new ShoalError('SHOAL_CONNECTION_CLOSED', `connection error: ${err.message}`)));
    socket.on('close', () => this.#fail(new ShoalError('SHOAL_CONNECTION_CLOSED', 'connection closed by the server')));
    if (timeout > 0) {
      this.#timer = setInterval(() => this.#checkTimeouts(), Math.max(10, Math.min(1000, timeout / 4)));
      this.#timer.unref();
    }
  }

  /** Open a connection; resolves once it is connected (rejects with the socket error). */
  static async connect(options: ClientOptions): Promise<Client> {
    const maxFrame = options.maxFrame ?? DEFAULTS.maxFrame;
    const framing = isFraming(options.framing)
      ? options.framing
      : createFraming(options.framing ?? { type: 'length' }, maxFrame);
    if (!Number.isInteger(options.port)) throw new InvalidOptionError(`port must be an integer (got ${options.port})`);
    const host = options.host ?? '127.0.0.1';
    const tls = options.tls === true ? {} : options.tls;
    const socket: Socket = tls
      ? tlsConnect({ ...(isIP(host) ? {} : { servername: host }), ...tls, host, port: options.port })
      : netConnect({ host, port: options.port });
    const connectTimeout = options.connectTimeout ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ShoalError('SHOAL_REQUEST_TIMEOUT', `connect to ${options.host ?? '127.0.0.1'}:${options.port} timed out`));
      }, connectTimeout);
      socket.once(tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new ShoalError('SHOAL_CONNECTION_CLOSED', `connect failed: ${err.message}`, { cause: err }));
      });
    });
    return new Client(socket, framing, options.timeout ?? 30_000);
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.#pending.length - this.#head;
  }

  /** Send one request; resolves with its reply body. */
  request(body: Uint8Array | string): Promise<Buffer> {
    if (this.#closed) return Promise.reject(this.#closed);
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    const frame = encodeFrame(this.#framing, bytes);
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.push({ resolve, reject, deadline: this.#timeout > 0 ? Date.now() + this.#timeout : 0 });
      this.#socket.write(frame);
    });
  }

  /** Write raw bytes, unframed (tests of hostile input). */
  writeRaw(bytes: Uint8Array): void {
    this.#socket.write(bytes);
  }

  #onData(chunk: Buffer): void {
    this.#reader.push(chunk);
    for (;;) {
      let frame: Buffer | null;
      try {
        frame = this.#reader.next();
      } catch (err) {
        this.#fail(err as ShoalError);
        this.#socket.destroy();
        return;
      }
      if (frame === null) return;
      // Replies are views into socket chunks; copy so a caller may keep them.
      const reply = Buffer.from(frame);
      if (this.#head < this.#pending.length) {
        const p = this.#pending[this.#head++]!;
        if (this.#head > 1024 && this.#head * 2 > this.#pending.length) {
          this.#pending = this.#pending.slice(this.#head);
          this.#head = 0;
        }
        p.resolve(reply);
      } else {
        this.unsolicited.push(reply);
      }
    }
  }

  #checkTimeouts(): void {
    const p = this.#pending[this.#head];
    if (p && p.deadline > 0 && Date.now() > p.deadline) {
      // Replies are ordered: once one is late the stream is out of step; give up the connection.
      this.#fail(new ShoalError('SHOAL_REQUEST_TIMEOUT', `no reply within ${this.#timeout} ms`));
      this.#socket.destroy();
    }
  }

  #fail(err: ShoalError): void {
    this.#closed ??= err;
    if (this.#timer) clearInterval(this.#timer);
    const pending = this.#pending.slice(this.#head);
    this.#pending = [];
    this.#head = 0;
    for (const p of pending) p.reject(err);
  }

  /** Half-close: no more requests; pending ones still get their replies. Resolves when the server closes. */
  async end(): Promise<void> {
    if (this.#socket.destroyed) return;
    const closed = new Promise<void>((r) => this.#socket.once('close', () => r()));
    this.#socket.end();
    await closed;
  }

  /** Close now; pending requests reject with SHOAL_CONNECTION_CLOSED. */
  close(): void {
    this.#socket.destroy();
    this.#fail(new ShoalError('SHOAL_CONNECTION_CLOSED', 'client closed'));
  }

  get socket(): Socket {
    return this.#socket;
  }
}

/** Connect a client with the same framing as the server: request/response, pipelined, replies matched in order. */
export function connect(options: ClientOptions): Promise<Client> {
  return Client.connect(options);
}
