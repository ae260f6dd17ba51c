/**
 * The admin HTTP server: the Node analogue of Go's net/http/pprof endpoint,
 * plus Prometheus metrics and the probes a load balancer or Kubernetes needs.
 *
 *   GET /metrics                        Prometheus text (prom-client)
 *   GET /healthz                        200 while alive with live workers, else 503
 *   GET /readyz                         200 while listening; 503 from the moment close() begins
 *   GET /debug/stats                    JSON snapshot: connections, pool, budgets, uptime
 *   GET /debug/profile?seconds=N&thread=main|<threadId>   V8 CPU profile (.cpuprofile)
 *   GET /debug/heap?thread=main|<threadId>                heap snapshot, streamed
 *
 * Thread ids are Node threadIds, listed by /debug/stats. Bad requests get a 4xx
 * with the reason in the body; an unknown thread is 404.
 *
 * It binds loopback unless told otherwise (options.ts refuses a public address
 * without admin.allowPublic): heap snapshots show every byte in the process.
 */
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getHeapSnapshot } from 'node:v8';
import type { Worker } from 'node:worker_threads';
import { InlineDispatcher } from '../dispatch/inline.js';
import { PoolDispatcher } from '../dispatch/pool.js';
import { ShoalError } from '../errors.js';
import type { ResolvedAdminOptions } from '../options.js';
import type { ShoalServer } from '../server.js';
import { ShoalMetrics } from './metrics.js';
import type { PoolView } from './metrics.js';
import { profiling, startCpuProfile, stopCpuProfile } from './profile.js';
import { waitAtMost } from '../wait.js';

/** Longest CPU profile one request may ask for, in seconds. */
export const MAX_PROFILE_SECONDS = 120;
const DEFAULT_PROFILE_SECONDS = 10;
/** V8 sampling interval, µs (as node --cpu-prof-interval). */
const PROFILE_INTERVAL_US = 1000;
/** Time a control task (profile start/stop in a worker) may take: every worker must join it. */
const CONTROL_TIMEOUT_MS = 10_000;
/** How long close() waits for running profiles to stop before cutting connections. */
const CLOSE_GRACE_MS = 2_000;
/** Concurrent admin connections (a scraper, a probe, an operator: a handful). */
const MAX_ADMIN_CONNECTIONS = 32;

/** A request the admin server refuses, with the status and the reason sent back. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Thread = { kind: 'main' } | { kind: 'worker'; worker: Worker };

const INDEX = `shoal admin
  /metrics                                   Prometheus metrics
  /healthz                                   liveness: process up, pool has live workers
  /readyz                                    readiness: 503 from the moment shutdown begins
  /debug/stats                               JSON snapshot (thread ids are listed here)
  /debug/profile?seconds=N&thread=main|<id>  CPU profile (.cpuprofile, opens in Chrome DevTools)
  /debug/heap?thread=main|<id>               heap snapshot (.heapsnapshot), streamed
`;

export class AdminServer {
  readonly options: ResolvedAdminOptions;
  /** null when admin.metrics is false (then /metrics is 404). */
  readonly metrics: ShoalMetrics | null;
  readonly #server: ShoalServer;
  #http: HttpServer | null = null;
  #listening: Promise<AddressInfo> | null = null;
  #closing: Promise<void> | null = null;
  /** Aborted by close(): running profiles stop waiting. */
  readonly #abort = new AbortController();
  /** Threads being profiled ('main' or threadId), and whether a heap snapshot is being taken. */
  readonly #profiling = new Set<string>();
  #heapBusy = false;
  /** Requests still working (profiles, snapshots): close() lets them finish, bounded. */
  readonly #work = new Set<Promise<void>>();
  #listenedAt = 0;

  /**
   * Call before the dispatcher starts. `shared`: the workers' counters (src/admin/shared.ts),
   * null with `workers: 0` (then handler durations are timed inline, on the main thread).
   */
  constructor(server: ShoalServer, options: ResolvedAdminOptions, shared: SharedArrayBuffer | null) {
    this.options = options;
    this.#server = server;
    const swap = server.dispatcher;
    // A view that follows reload(): the pool serving now, restarts over every generation.
    const view: PoolView = {
      get pool() {
        const d = swap.current;
        return d instanceof PoolDispatcher ? d.pool : null;
      },
      get restarts() {
        return swap.restarts;
      },
    };
    this.metrics = options.metrics ? new ShoalMetrics(server, server.options.workers > 0 ? view : null, shared) : null;
    // Later generations get the timing from the server when they are made (server.ts #createDispatcher).
    const d = swap.current;
    if (this.metrics !== null && (d instanceof InlineDispatcher || d instanceof PoolDispatcher)) d.onHandlerTiming = this.metrics.onHandlerTiming;
  }

  /** The pool serving now (reload() replaces it), or null with `workers: 0`. */
  get #pool(): PoolDispatcher | null {
    const d = this.#server.dispatcher.current;
    return d instanceof PoolDispatcher ? d : null;
  }

  listen(): Promise<AddressInfo> {
    this.#listening ??= this.#listen();
    return this.#listening;
  }

  async #listen(): Promise<AddressInfo> {
    const http = createHttpServer({ headersTimeout: 10_000, requestTimeout: 10_000 }, (req, res) => this.#onRequest(req, res));
    http.maxConnections = MAX_ADMIN_CONNECTIONS;
    this.#http = http;
    http.listen({ port: this.options.port, host: this.options.host });
    await once(http, 'listening');
    http.on('error', (err) => this.#server.options.logger.error({ err }, 'admin server error'));
    this.#listenedAt = performance.now();
    const address = http.address() as AddressInfo;
    this.#server.options.logger.info({ address: address.address, port: address.port, metrics: this.metrics !== null }, 'admin server listening');
    return address;
  }

  address(): AddressInfo | null {
    return (this.#http?.address() as AddressInfo | null) ?? null;
  }

  /** Stop: running profiles end early (503), then the server and its connections close. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#abort.abort();
    await this.#listening?.catch(() => null);
    if (this.#work.size > 0) await waitAtMost(Promise.allSettled([...this.#work]), CLOSE_GRACE_MS);
    const http = this.#http;
    if (http !== null) {
      const closed = new Promise<void>((r) => http.close(() => r()));
      http.closeAllConnections();
      await closed;
    }
    this.metrics?.close();
  }

  // ---- routing ------------------------------------------------------------------

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const work = this.#route(req, res).catch((err: unknown) => this.#fail(res, err));
    if (work !== undefined) {
      this.#work.add(work);
      void work.finally(() => this.#work.delete(work));
    }
  };

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const cheap = url.pathname !== '/debug/profile' && url.pathname !== '/debug/heap';
    if (req.method !== 'GET' && !(req.method === 'HEAD' && cheap)) {
      res.setHeader('Allow', cheap ? 'GET, HEAD' : 'GET');
      throw new HttpError(405, `method ${req.method} not allowed on ${url.pathname}`);
    }
    switch (url.pathname) {
      case '/':
      case '/debug':
      case '/debug/':
        query(url, []);
        return text(res, 200, INDEX);
      case '/metrics':
        query(url, []);
        return this.#metrics(res);
      case '/healthz':
        query(url, []);
        return this.#healthz(res);
      case '/readyz':
        query(url, []);
        return this.#server.ready ? text(res, 200, 'ready\n') : text(res, 503, `not ready: server is ${this.#server.state}\n`);
      case '/debug/stats':
        query(url, []);
        return json(res, 200, this.stats());
      case '/debug/profile':
        return this.#profile(url, res);
      case '/debug/heap':
        return this.#heap(url, res);
      default:
        throw new HttpError(404, `no such endpoint: ${url.pathname}\n\n${INDEX}`);
    }
  }

  #fail(res: ServerResponse, err: unknown): void {
    let status = 500;
    let message: string;
    if (err instanceof HttpError) {
      status = err.status;
      message = err.message;
    } else {
      const shoal = err instanceof ShoalError ? err : null;
      if (shoal?.code === 'SHOAL_SERVER_CLOSED') status = 503;
      message = (err as Error)?.message ?? String(err);
      this.#server.options.logger.warn({ err: message, code: shoal?.code }, 'admin request failed');
    }
    if (res.headersSent) {
      res.destroy(); // mid-stream: the client sees a cut response, not a bogus tail
      return;
    }
    text(res, status, `${message}\n`);
  }

  async #metrics(res: ServerResponse): Promise<void> {
    if (this.metrics === null) throw new HttpError(404, 'metrics are off (admin.metrics: false)');
    const body = await this.metrics.registry.metrics();
    res.writeHead(200, { 'Content-Type': this.metrics.registry.contentType, 'Cache-Control': 'no-store' });
    res.end(body);
  }

  #healthz(res: ServerResponse): void {
    const s = this.#server;
    if (s.state === 'closed') return text(res, 503, 'unhealthy: server closed\n');
    if (s.state === 'new' || s.state === 'starting') return text(res, 503, 'unhealthy: workers are still starting\n');
    if (this.#pool !== null) {
      const threads = this.#pool.pool?.threads.length ?? 0;
      if (threads === 0) return text(res, 503, 'unhealthy: the pool has no live workers\n');
    }
    text(res, 200, 'ok\n');
  }

  /** The /debug/stats document. */
  stats(): Record<string, unknown> {
    const s = this.#server.stats();
    const d = s.dispatcher;
    const piscina = this.#pool?.pool ?? null;
    return {
      state: s.state,
      ready: this.#server.ready,
      uptime: {
        process: process.uptime(),
        server: this.#listenedAt > 0 ? (performance.now() - this.#listenedAt) / 1000 : 0,
      },
      connections: { count: s.connections.active, ...s.connections },
      pool: {
        workers: d.workers,
        threads: (piscina?.threads ?? []).map((w) => ({
          threadId: w.threadId,
          eventLoopUtilization: w.performance.eventLoopUtilization().utilization,
        })),
        queue: { frames: d.pendingFrames, bytes: d.pendingBytes, tasks: piscina?.queueSize ?? 0 },
        batchesInFlight: d.batchesInFlight,
        framesInFlight: d.framesInFlight,
        batchesSent: d.batchesSent,
        framesSent: d.framesSent,
        saturated: d.saturated,
        utilization: piscina?.utilization ?? 0,
        restarts: this.#pool !== null ? this.#server.dispatcher.restarts : {},
      },
      budgetHits: s.budgetHits,
      counters: s.counters,
      memory: process.memoryUsage(),
      mainThread: { eventLoopUtilization: performance.eventLoopUtilization().utilization },
    };
  }

  // ---- profiles -------------------------------------------------------------------

  /** `thread` query value -> the thread, or a 400 / 404. */
  #thread(value: string | null): Thread {
    if (value === null || value === 'main' || value === '0') return { kind: 'main' };
    if (!/^[1-9]\d{0,9}$/.test(value)) throw new HttpError(400, `thread must be 'main' or a worker threadId (got '${value}')`);
    const id = Number(value);
    const threads = this.#pool?.pool?.threads ?? [];
    const worker = threads.find((w) => w.threadId === id);
    if (worker === undefined) {
      const known = threads.map((w) => w.threadId).join(', ') || 'none: handlers run on the main thread';
      throw new HttpError(404, `no worker thread ${id} (live workers: ${known})`);
    }
    return { kind: 'worker', worker };
  }

  async #profile(url: URL, res: ServerResponse): Promise<void> {
    const q = query(url, ['seconds', 'thread']);
    let seconds = DEFAULT_PROFILE_SECONDS;
    const raw = q.get('seconds');
    if (raw !== null) {
      seconds = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
      if (!(seconds > 0 && seconds <= MAX_PROFILE_SECONDS)) {
        throw new HttpError(400, `seconds must be a number > 0 and <= ${MAX_PROFILE_SECONDS} (got '${raw}')`);
      }
    }
    const thread = this.#thread(q.get('thread'));
    const key = thread.kind === 'main' ? 'main' : String(thread.worker.threadId);
    if (this.#profiling.has(key) || (thread.kind === 'main' && profiling())) {
      throw new HttpError(409, `a CPU profile of thread ${key} is already running`);
    }
    if (this.#abort.signal.aborted) throw new ShoalError('SHOAL_SERVER_CLOSED', 'the admin server is closing');
    this.#profiling.add(key);
    try {
      const log = this.#server.options.logger;
      log.info({ thread: key, seconds }, 'CPU profile started');
      let profile: string;
      if (thread.kind === 'main') {
        await startCpuProfile(PROFILE_INTERVAL_US);
        try {
          await this.#wait(seconds, res);
        } finally {
          profile = await stopCpuProfile();
        }
      } else {
        const pool = this.#pool!;
        const target = thread.worker.threadId;
        await pool.control({ op: 'profile-start', target, intervalUs: PROFILE_INTERVAL_US }, CONTROL_TIMEOUT_MS);
        try {
          await this.#wait(seconds, res);
        } finally {
          // Always stop, even if the client left: a forgotten profiler samples forever.
          profile = (await pool.control({ op: 'profile-stop', target }, CONTROL_TIMEOUT_MS)) as string;
        }
      }
      log.info({ thread: key, seconds, bytes: profile.length }, 'CPU profile taken');
      if (this.#abort.signal.aborted) throw new ShoalError('SHOAL_SERVER_CLOSED', 'the server began shutting down during the profile');
      if (res.destroyed) return;
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Disposition': `attachment; filename="shoal-${key === 'main' ? 'main' : `worker-${key}`}-${stamp()}.cpuprofile"`,
        'Cache-Control': 'no-store',
      });
      res.end(profile);
    } finally {
      this.#profiling.delete(key);
    }
  }

  /** Sleep `seconds`, cut short by close() or by the client going away. */
  async #wait(seconds: number, res: ServerResponse): Promise<void> {
    const signal = this.#abort.signal;
    if (signal.aborted) return;
    let timer: NodeJS.Timeout | undefined;
    let onEnd: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      onEnd = resolve;
      timer = setTimeout(resolve, seconds * 1000);
      signal.addEventListener('abort', onEnd, { once: true });
      res.once('close', onEnd);
    });
    clearTimeout(timer);
    signal.removeEventListener('abort', onEnd!);
    res.off('close', onEnd!);
  }

  async #heap(url: URL, res: ServerResponse): Promise<void> {
    const q = query(url, ['thread']);
    const thread = this.#thread(q.get('thread'));
    if (this.#heapBusy) throw new HttpError(409, 'a heap snapshot is already being taken');
    if (this.#abort.signal.aborted) throw new ShoalError('SHOAL_SERVER_CLOSED', 'the admin server is closing');
    this.#heapBusy = true;
    const key = thread.kind === 'main' ? 'main' : String(thread.worker.threadId);
    const log = this.#server.options.logger;
    log.info({ thread: key }, 'heap snapshot requested');
    let stream: Readable;
    let release = (): void => {};
    try {
      if (thread.kind === 'main') {
        stream = getHeapSnapshot();
      } else {
        // Piscina unrefs its workers; taking a snapshot of an unref'd Worker crashes
        // Node 20 (SIGSEGV, cf. nodejs/node#46210): hold a ref while the stream lives.
        const w = thread.worker;
        w.ref();
        release = () => w.unref();
        stream = await w.getHeapSnapshot();
      }
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Disposition': `attachment; filename="shoal-${key === 'main' ? 'main' : `worker-${key}`}-${stamp()}.heapsnapshot"`,
        'Cache-Control': 'no-store',
      });
      // Streamed chunk by chunk: a snapshot is never held whole in this process.
      await pipeline(stream, res).catch((err: unknown) => {
        if (!res.destroyed) throw err;
        // The client went away mid-stream: nothing to answer.
      });
      log.info({ thread: key }, 'heap snapshot sent');
    } finally {
      release();
      this.#heapBusy = false;
    }
  }
}

/** The query, with only `allowed` keys, each at most once; else 400. */
function query(url: URL, allowed: string[]): URLSearchParams {
  const q = url.searchParams;
  const seen = new Set<string>();
  for (const key of q.keys()) {
    if (!allowed.includes(key)) {
      const hint = allowed.length > 0 ? `; allowed: ${allowed.join(', ')}` : '; this endpoint takes none';
      throw new HttpError(400, `unknown query parameter '${key}' for ${url.pathname}${hint}`);
    }
    if (seen.has(key)) throw new HttpError(400, `query parameter '${key}' given twice`);
    seen.add(key);
  }
  return q;
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}
