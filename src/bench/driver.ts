/**
 * The connection driver: one per generator thread, driving its share of the connections.
 *
 * Built for the hot path of a load generator, not for convenience (src/client.ts is the
 * convenient client, one promise per request):
 * - requests are pre-encoded; n requests go out as one write of a pre-built block;
 * - sockets read into one reused buffer (net `onread`), so no Buffer per read;
 * - replies are verified and counted per chunk (verifier.ts), not per frame;
 * - send times are kept as (time, count) groups, so the latency of a chunk of replies
 *   sent together is recorded with one recordValueWithCount.
 *
 * Counters live in a Float64Array that the main thread may read at any time (shared
 * memory when the driver runs in a worker thread): progress and per-second samples
 * need no messages.
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { createHistogram, encodeHistogram } from './histogram.js';
import type { Histogram } from './histogram.js';
import type { MessageSpec } from './message.js';
import { Pacer, scheduleCheck } from './pacer.js';
import { ReplyVerifier } from './verifier.js';
import { endIsReset, loopTurn } from '../loop-turn.js';

/** Slots of one driver's counters. */
export const C = {
  WINDOW_REPLIES: 0, // verified replies received inside the measured window
  WINDOW_BYTES: 1, // reply bytes received inside the measured window
  REPLIES: 2, // every reply received (warm-up and drain included)
  SENT: 3, // requests written
  MISMATCHES: 4, // replies that differed from the expected bytes (or came unasked)
  TIMEOUTS: 5, // requests abandoned after `timeout` without progress
  RESETS: 6, // connections closed or reset by the peer during the run
  CONNECT_ERRORS: 7, // failed connection attempts
  LOST: 8, // requests in flight on a connection that closed
  CONNECTED: 9, // connections open right now
  RESENT: 10, // --reconnect: requests sent again after the server closed in order (FIN)
  ORDERLY_CLOSES: 11, // --reconnect: connections the server closed in order (FIN), then reopened
} as const;
export const COUNTER_SLOTS = Object.keys(C).length;

export interface DriverConfig {
  host: string;
  port: number;
  /** This driver's connections are global indices first .. first + count - 1. */
  first: number;
  count: number;
  totalConnections: number;
  pipelining: number;
  /** Open loop: total requests/s over all connections of all drivers; 0 = closed loop. */
  rate: number;
  /** Total requests over all drivers; 0 = timed run. */
  amount: number;
  timeout: number;
  message: MessageSpec;
  /** TLS (bench --tls): a CA file to verify against, or insecure; null = plain TCP. */
  tls: { ca: string | null; insecure: boolean } | null;
  /**
   * After the server's FIN, re-send on a new connection the requests it left unanswered:
   * shoal answers everything it read before an orderly close, so those were never read.
   * After a reset they are lost (outcome unknown), as without it.
   */
  reconnect: boolean;
}

/** Absolute times (ms since the epoch, performance.timeOrigin + now) so every thread agrees. */
export interface Schedule {
  start: number;
  measureFrom: number;
  /** End of sending; null for an --amount run (ends when every request is answered). */
  end: number | null;
}

export interface DriverResult {
  histogram: string;
  counters: number[];
  /** Event-loop utilization of this thread over the measured window (1 = saturated). */
  elu: number;
  errorCodes: Record<string, number>;
  /** ms the run took from start until the last reply (or give-up). */
  elapsed: number;
}

/** Largest block written in one call. */
const MAX_BLOCK_BYTES = 4 * 1024 * 1024;
/** Read buffer shared by every socket of the thread: reads are handled synchronously. */
const READ_BUFFER_BYTES = 256 * 1024;
const RECONNECT_DELAY = 50; // ms after a reset
const CONNECT_RETRY_DELAY = 250; // ms after a failed connect

/** Requests this connection may send in an --amount run (spread as evenly as possible). */
export function quotaOf(amount: number, totalConnections: number, g: number): number {
  return Math.floor(amount / totalConnections) + (g < amount % totalConnections ? 1 : 0);
}

class Conn {
  socket: Socket | null = null;
  ready = false;
  /** Set before we close the socket ourselves, so its 'close' is not counted as a reset. */
  expectClose = false;
  lastError = '';
  /** The server sent FIN on this socket (an orderly close). */
  sawFin = false;
  /** loopTurn() of the last read (-1: none): an end in that turn is a reset (loop-turn.ts). */
  readTurn = -1;
  /** Requests to send again when the connection is back (--reconnect). */
  owed = 0;
  inFlight = 0;
  sent = 0;
  heldUpTo = 0;
  lastProgress = 0;
  /** Send-time groups of the requests in flight: FIFO ring of (time, count). */
  readonly times: Float64Array;
  readonly counts: Int32Array;
  head = 0;
  groups = 0;
  reconnectTimer: NodeJS.Timeout | null = null;
  readonly verifier: ReplyVerifier;
  /** Open loop only: this connection's schedule (set when the run starts). */
  pacer: Pacer | null = null;
  constructor(
    readonly g: number,
    /** Requests this connection may send in the run (Infinity for a timed closed-loop run). */
    public limit: number,
    pipelining: number,
    message: MessageSpec,
  ) {
    this.times = new Float64Array(pipelining);
    this.counts = new Int32Array(pipelining);
    this.verifier = new ReplyVerifier(message);
  }
  pushGroup(time: number, n: number): void {
    const cap = this.times.length;
    if (this.groups > 0) {
      const last = (this.head + this.groups - 1) % cap;
      if (this.times[last] === time) {
        this.counts[last] += n;
        return;
      }
    }
    const at = (this.head + this.groups) % cap;
    this.times[at] = time;
    this.counts[at] = n;
    this.groups++;
  }
  clearFlight(): void {
    this.inFlight = 0;
    this.head = 0;
    this.groups = 0;
    this.verifier.reset();
  }
}

export class Driver {
  readonly #cfg: DriverConfig;
  /** The TLS options, made on first connect (undefined until then). */
  #tls: TlsConnectionOptions | undefined = undefined;
  readonly #counters: Float64Array;
  readonly #base: number;
  readonly #conns: Conn[] = [];
  readonly #blocks: Buffer[] = [];
  readonly #maxBlock: number;
  readonly #readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  readonly #hist: Histogram = createHistogram();
  readonly #errorCodes: Record<string, number> = {};
  /** Local clock (performance.now()) versions of the schedule. */
  #start = 0;
  #measureFrom = Infinity;
  #end = Infinity;
  /** Sending allowed (between start and end). */
  #sending = false;
  /** Between connect() and the end of run(): closes are failures and trigger reconnects. */
  #active = false;
  #started = false;
  /** A timed run passed its end: closed loop stops sending, open loop sends only what it still owes. */
  #ended = false;
  #finished = false;
  #lastGlobalProgress = 0;
  #elu0: EventLoopUtilization | null = null;
  #elu = 0;
  #timers: NodeJS.Timeout[] = [];
  #finish: (() => void) | null = null;

  constructor(cfg: DriverConfig, counters: Float64Array, base = 0) {
    this.#cfg = cfg;
    this.#counters = counters;
    this.#base = base;
    const req = Buffer.from(cfg.message.request);
    this.#maxBlock = Math.max(1, Math.min(cfg.pipelining, Math.floor(MAX_BLOCK_BYTES / Math.max(1, req.length))));
    const all = Buffer.allocUnsafe(req.length * this.#maxBlock);
    for (let i = 0; i < this.#maxBlock; i++) req.copy(all, i * req.length);
    for (let n = 0; n <= this.#maxBlock; n++) this.#blocks.push(all.subarray(0, n * req.length));
  }

  #add(slot: number, n: number): void {
    this.#counters[this.#base + slot]! += n;
  }

  #code(code: string): void {
    this.#errorCodes[code] = (this.#errorCodes[code] ?? 0) + 1;
  }

  /** Open every connection once; resolves with how many connected and the first error seen. */
  async connect(): Promise<{ connected: number; error: string | null }> {
    const cfg = this.#cfg;
    this.#active = true;
    for (let i = 0; i < cfg.count; i++) {
      const g = cfg.first + i;
      const limit = cfg.amount > 0 ? quotaOf(cfg.amount, cfg.totalConnections, g) : Infinity;
      this.#conns.push(new Conn(g, limit, cfg.pipelining, cfg.message));
    }
    // Connect in waves: a burst of thousands of SYNs overflows the listen backlog.
    const WAVE = 256;
    let firstError: string | null = null;
    for (let i = 0; i < this.#conns.length; i += WAVE) {
      await Promise.all(
        this.#conns.slice(i, i + WAVE).map(
          (conn) =>
            new Promise<void>((resolve) => {
              this.#open(conn, (err) => {
                if (err && firstError === null) firstError = err;
                resolve();
              });
            }),
        ),
      );
    }
    return { connected: this.#conns.filter((c) => c.ready).length, error: firstError };
  }

  /** node:tls options for every connection of this driver (the CA file read once), or null. */
  #tlsOptions(): TlsConnectionOptions | null {
    const t = this.#cfg.tls;
    if (t === null) return null;
    if (this.#tls === undefined) {
      const host = this.#cfg.host;
      this.#tls = {
        ...(isIP(host) ? {} : { servername: host }),
        ...(t.ca !== null ? { ca: readFileSync(t.ca) } : {}),
        rejectUnauthorized: !t.insecure,
      };
    }
    return this.#tls;
  }

  /** TLS: node:tls has no `onread`, so replies arrive as 'data' chunks (one Buffer per read). */
  #openTls(conn: Conn, tls: TlsConnectionOptions): Socket {
    const socket = tlsConnect({ ...tls, host: this.#cfg.host, port: this.#cfg.port });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(conn, chunk.length, chunk));
    // TLS 1.3 session tickets come after the handshake and carry no data: a read all the same.
    socket.on('session', () => (conn.readTurn = loopTurn()));
    return socket;
  }

  #open(conn: Conn, onFirst?: (err: string | null) => void): void {
    const cfg = this.#cfg;
    conn.reconnectTimer = null;
    conn.expectClose = false;
    conn.lastError = '';
    conn.sawFin = false;
    conn.readTurn = -1;
    const tls = this.#tlsOptions();
    const socket = tls !== null ? this.#openTls(conn, tls) : netConnect({
      host: cfg.host,
      port: cfg.port,
      noDelay: true,
      onread: {
        buffer: this.#readBuffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          this.#onData(conn, n, buf as Buffer);
          return true;
        },
      },
    });
    conn.socket = socket;
    // A connect that neither succeeds nor fails (SYNs dropped by a full backlog, a stuck
    // server) gives up after `timeout`, like a request would.
    const connectTimer = setTimeout(() => {
      conn.lastError = 'ETIMEDOUT';
      socket.destroy();
    }, cfg.timeout);
    socket.once('close', () => clearTimeout(connectTimer));
    socket.once(tls !== null ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      conn.ready = true;
      this.#add(C.CONNECTED, 1);
      onFirst?.(null);
      onFirst = undefined;
      const now = performance.now();
      if (conn.owed > 0) this.#resend(conn, now);
      if (this.#sending) this.#fill(conn, now);
    });
    socket.once('end', () => {
      if (endIsReset(conn.readTurn)) conn.lastError ||= 'ECONNRESET';
      else conn.sawFin = true;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      conn.lastError = err.code ?? err.message;
    });
    socket.once('close', () => {
      if (conn.socket !== socket) return;
      conn.socket = null;
      const wasReady = conn.ready;
      conn.ready = false;
      if (wasReady) this.#add(C.CONNECTED, -1);
      if (!wasReady) {
        this.#add(C.CONNECT_ERRORS, 1);
        this.#code(conn.lastError || 'ECONNCLOSED');
        onFirst?.(conn.lastError || 'connection closed before it was established');
        onFirst = undefined;
      } else if (!conn.expectClose && this.#active && this.#cfg.reconnect && conn.sawFin) {
        // Orderly: what is unanswered was never read; it goes out again on the next connection.
        this.#add(C.ORDERLY_CLOSES, 1);
        conn.owed += conn.inFlight;
        conn.clearFlight();
      } else if (!conn.expectClose && this.#active) {
        this.#add(C.RESETS, 1);
        this.#code(conn.lastError || 'EOF');
      }
      if (!conn.expectClose || !wasReady) {
        this.#add(C.LOST, conn.inFlight);
        conn.clearFlight();
      }
      if (this.#wantsConnection(conn)) {
        conn.reconnectTimer = setTimeout(() => this.#open(conn), wasReady ? RECONNECT_DELAY : CONNECT_RETRY_DELAY);
      }
      this.#checkDone();
    });
  }

  #onData(conn: Conn, n: number, buf: Buffer): void {
    conn.readTurn = loopTurn();
    const now = performance.now();
    let k: number;
    try {
      k = conn.verifier.push(buf, 0, n);
    } catch (err) {
      // The stream cannot be framed at all (e.g. a length above maxFrame): count, replace.
      this.#add(C.MISMATCHES, 1);
      this.#code((err as { code?: string }).code ?? 'EBADFRAME');
      this.#replace(conn, false);
      return;
    }
    // Taken from the verifier as they come: it lives as long as the connection slot,
    // across reconnects, so a count kept beside it would count them again.
    const m = conn.verifier.mismatches;
    if (m > 0) {
      this.#add(C.MISMATCHES, m);
      conn.verifier.mismatches = 0;
    }
    const inWindow = now >= this.#measureFrom && now < this.#end;
    if (inWindow) this.#add(C.WINDOW_BYTES, n);
    if (k === 0) return;
    if (k > conn.inFlight) {
      this.#add(C.MISMATCHES, k - conn.inFlight); // replies nobody asked for
      this.#code('EUNEXPECTED');
      k = conn.inFlight;
      if (k === 0) return;
    }
    conn.inFlight -= k;
    this.#add(C.REPLIES, k);
    if (inWindow) this.#add(C.WINDOW_REPLIES, k);
    conn.lastProgress = now;
    this.#lastGlobalProgress = now;
    // Pop the send-time groups of the k oldest requests.
    const record = now >= this.#measureFrom;
    const cap = conn.times.length;
    let left = k;
    while (left > 0) {
      const h = conn.head;
      const c = conn.counts[h]!;
      const take = c <= left ? c : left;
      if (record) {
        const us = Math.round((now - conn.times[h]!) * 1000);
        this.#hist.recordValueWithCount(us > 0 ? us : 1, take);
      }
      if (take === c) {
        conn.head = (h + 1) % cap;
        conn.groups--;
      } else {
        conn.counts[h] = c - take;
      }
      left -= take;
    }
    if (this.#sending) this.#fill(conn, now);
    else if (conn.inFlight === 0) this.#checkDone();
  }

  /** Send what this connection may send now: closed loop refills the pipeline, open loop follows the pacer. */
  #fill(conn: Conn, now: number): void {
    if (!conn.ready) return;
    const p = this.#cfg.pipelining;
    if (conn.pacer === null) {
      const n = Math.min(p - conn.inFlight, conn.limit - conn.sent);
      if (n > 0) {
        conn.pushGroup(now, n);
        this.#send(conn, n, now);
      }
      else if (conn.inFlight === 0 && conn.sent >= conn.limit) this.#checkDone();
      return;
    }
    const due = Math.min(conn.pacer.dueBy(now), conn.limit);
    const { send, heldUpTo } = scheduleCheck(due, conn.sent, conn.inFlight, p, conn.heldUpTo, true);
    if (send > 0) {
      // Held requests (fell due at an earlier check) are timed from their intended time.
      const held = Math.min(send, Math.max(0, conn.heldUpTo - conn.sent));
      for (let i = 0; i < held; i++) conn.pushGroup(conn.pacer.intended(conn.sent + i), 1);
      if (send > held) conn.pushGroup(now, send - held);
      this.#send(conn, send, now);
    }
    conn.heldUpTo = heldUpTo;
    if (conn.inFlight === 0 && conn.sent >= conn.limit) this.#checkDone();
  }

  /** Send the requests the last connection left unanswered at its FIN (not counted as sent again). */
  #resend(conn: Conn, now: number): void {
    const n = conn.owed;
    conn.owed = 0;
    this.#add(C.RESENT, n);
    conn.pushGroup(now, n);
    conn.inFlight += n;
    conn.lastProgress = now;
    let left = n;
    while (left > 0) {
      const b = Math.min(left, this.#maxBlock);
      conn.socket!.write(this.#blocks[b]!);
      left -= b;
    }
  }

  /** Write n requests (their send-time groups are pushed by the caller). */
  #send(conn: Conn, n: number, now: number): void {
    if (conn.inFlight === 0) conn.lastProgress = now;
    conn.inFlight += n;
    conn.sent += n;
    this.#add(C.SENT, n);
    const socket = conn.socket!;
    let left = n;
    while (left > 0) {
      const b = Math.min(left, this.#maxBlock);
      socket.write(this.#blocks[b]!);
      left -= b;
    }
  }

  /** Open loop: the ~1 ms schedule check. Connections being re-established accumulate held requests. */
  #tick(): void {
    const now = performance.now();
    const p = this.#cfg.pipelining;
    for (const conn of this.#conns) {
      if (conn.ready) {
        this.#fill(conn, now);
      } else if (conn.pacer) {
        const due = Math.min(conn.pacer.dueBy(now), conn.limit);
        conn.heldUpTo = scheduleCheck(due, conn.sent, conn.inFlight, p, conn.heldUpTo, false).heldUpTo;
      }
    }
  }

  /** No reply for `timeout` while requests wait: count them as timeouts and replace the connection. */
  #checkTimeouts(): void {
    const now = performance.now();
    const timeout = this.#cfg.timeout;
    for (const conn of this.#conns) {
      if (conn.ready && conn.inFlight > 0 && now - conn.lastProgress > timeout) {
        this.#add(C.TIMEOUTS, conn.inFlight);
        this.#code('ETIMEDOUT');
        this.#replace(conn, true);
      }
    }
    // An --amount run that makes no progress at all (nothing connects, nothing answers) gives up.
    if (this.#end === Infinity && now - this.#lastGlobalProgress > timeout + 1000) this.#done();
  }

  /** Drop a connection ourselves (timeout, undecodable stream) and open a new one. */
  #replace(conn: Conn, timedOut: boolean): void {
    const socket = conn.socket;
    if (!timedOut) this.#add(C.LOST, conn.inFlight);
    conn.clearFlight();
    conn.expectClose = true;
    if (conn.ready) this.#add(C.CONNECTED, -1);
    conn.ready = false;
    conn.socket = null;
    socket?.destroy();
    if (this.#wantsConnection(conn)) conn.reconnectTimer = setTimeout(() => this.#open(conn), RECONNECT_DELAY);
    this.#checkDone();
  }

  /** Reconnect after a close? Before the start and while sending, if it has requests left to send. */
  #wantsConnection(conn: Conn): boolean {
    if (!this.#active || this.#finished) return false;
    return conn.owed > 0 || ((!this.#started || this.#sending) && conn.sent < conn.limit);
  }

  /** Done when nothing is in flight and nothing is left to send (sending stopped, or every quota sent). */
  #checkDone(): void {
    if (this.#finished || this.#finish === null) return;
    if (this.#end !== Infinity && !this.#ended) return;
    for (const conn of this.#conns) {
      if (conn.inFlight > 0 || conn.owed > 0) return;
      if (this.#sending && conn.sent < conn.limit) return;
    }
    this.#done();
  }

  #done(): void {
    if (this.#finished) return;
    const f = this.#finish;
    if (f) f();
  }

  /** Run the schedule; resolves after the last reply (or the drain deadline) with this thread's figures. */
  run(schedule: Schedule): Promise<DriverResult> {
    const cfg = this.#cfg;
    const origin = performance.timeOrigin;
    const now0 = performance.now();
    this.#start = schedule.start - origin;
    this.#measureFrom = schedule.measureFrom - origin;
    this.#end = schedule.end === null ? Infinity : schedule.end - origin;
    this.#lastGlobalProgress = Math.max(now0, this.#start);
    if (cfg.rate > 0) {
      for (const conn of this.#conns) {
        conn.pacer = new Pacer(cfg.rate, cfg.totalConnections, conn.g, this.#start);
        // A timed open-loop run sends only the requests the schedule places before the end.
        if (this.#end !== Infinity) conn.limit = Math.min(conn.limit, conn.pacer.dueBy(this.#end - 1e-6));
      }
    }
    return new Promise<DriverResult>((resolve) => {
      const at = (t: number, fn: () => void): void => {
        this.#timers.push(setTimeout(fn, Math.max(0, t - performance.now())));
      };
      const tickers: NodeJS.Timeout[] = [];
      this.#finish = () => {
        if (this.#finished) return;
        this.#finished = true;
        this.#sending = false;
        const endNow = performance.now();
        if (this.#elu0 && this.#end === Infinity) this.#elu = performance.eventLoopUtilization(this.#elu0).utilization;
        for (const t of this.#timers) clearTimeout(t);
        for (const t of tickers) clearInterval(t);
        // Whatever is still in flight now will never be answered: count it.
        let left = 0;
        for (const conn of this.#conns) left += conn.inFlight + conn.owed;
        if (left > 0) {
          this.#add(C.TIMEOUTS, left);
          this.#code('ETIMEDOUT');
        }
        this.#closeAll().then(() => {
          this.#active = false;
          const base = this.#base;
          resolve({
            histogram: encodeHistogram(this.#hist),
            counters: Array.from(this.#counters.subarray(base, base + COUNTER_SLOTS)),
            elu: this.#elu,
            errorCodes: { ...this.#errorCodes },
            elapsed: endNow - this.#start,
          });
        });
      };
      at(this.#start, () => {
        this.#started = true;
        this.#sending = true;
        const now = performance.now();
        // Timers may fire a little before their time (libuv's cached loop clock): with no
        // warm-up, measuring starts with the first request, whatever the clock says.
        if (this.#measureFrom <= this.#start) this.#measureFrom = Math.min(this.#measureFrom, now);
        this.#lastGlobalProgress = now;
        for (const conn of this.#conns) this.#fill(conn, now);
        if (cfg.rate > 0) tickers.push(setInterval(() => this.#tick(), 1));
      });
      at(this.#measureFrom, () => {
        this.#elu0 = performance.eventLoopUtilization();
      });
      if (this.#end !== Infinity) {
        at(this.#end, () => {
          this.#ended = true;
          if (this.#elu0) this.#elu = performance.eventLoopUtilization(this.#elu0).utilization;
          // Open loop: requests the schedule placed before the end are still owed, even
          // those held back by a slow server (each conn.limit stops at the end); they go
          // out as slots free up and count from their intended time. Closed loop: stop.
          if (cfg.rate > 0) this.#tick();
          else this.#sending = false;
          // Drain: replies to requests already sent are still verified and timed, up to `timeout`.
          at(performance.now() + cfg.timeout, () => this.#done());
          this.#checkDone();
        });
      }
      const every = Math.max(10, Math.min(100, Math.floor(cfg.timeout / 4)));
      tickers.push(setInterval(() => this.#checkTimeouts(), every));
    });
  }

  /** End every socket politely (FIN), destroy what has not closed within 1 s. */
  async #closeAll(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const conn of this.#conns) {
      if (conn.reconnectTimer) clearTimeout(conn.reconnectTimer);
      conn.reconnectTimer = null;
      const socket = conn.socket;
      conn.expectClose = true;
      if (!socket || socket.destroyed) continue;
      closing.push(
        new Promise<void>((resolve) => {
          const t = setTimeout(() => socket.destroy(), 1000);
          socket.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          socket.end();
        }),
      );
    }
    await Promise.all(closing);
  }
}
