/**
 * The Prometheus registry behind GET /metrics.
 *
 * Cost rule: nothing here runs per frame or per batch on the main thread.
 * Counters and gauges are read from server.stats() when Prometheus scrapes (one
 * stats() per scrape, shared by every metric); handler durations, queue waits
 * and batch sizes are counted by the workers in shared memory (shared.ts) and
 * summed here at scrape time; rare events (frame errors) are counted from the
 * server's events.
 *
 * With `workers: 0` the handler runs on the main thread, so its duration is
 * measured there, per message: that mode's price for the histogram.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { EventLoopUtilization, IntervalHistogram } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Metric } from 'prom-client';
import type { ShoalError } from '../errors.js';
import type { ServerStats, ShoalServer } from '../server.js';
import { FixedHistogram } from './histogram.js';
import { BATCH_FRAME_BUCKETS, CHEAP_MS, HANDLER_BUCKETS_MS, NO_ROUTE, OTHER_ROUTE, QUEUE_WAIT_BUCKETS_MS, loopDelay, readSharedMetrics } from './shared.js';
import type { LoopDelay, SharedSnapshot } from './shared.js';

const FRAME_ERROR_CODES = ['SHOAL_FRAME_TOO_LARGE', 'SHOAL_FRAME_TRUNCATED', 'SHOAL_FRAME_INVALID'];

type Labels = Record<string, string>;
interface Sample {
  labels?: Labels;
  value: number;
  metricName?: string;
}

/** What the metrics need of the pool (PoolDispatcher has it; `workers: 0` has none). */
export interface PoolView {
  readonly pool: { readonly threads: Worker[]; readonly queueSize: number } | null;
  readonly restarts: Readonly<Record<string, number>>;
}

/**
 * A metric computed when scraped, in prom-client's Metric shape (prom-client's
 * own classes keep per-label state and would need a set() per sample).
 */
class Collected {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    readonly collect: () => Sample[],
  ) {}
  readonly aggregator = 'sum';
  async get(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: string }> {
    return { name: this.name, help: this.help, type: this.type, values: this.collect(), aggregator: this.aggregator };
  }
  reset(): void {}
}

/** Prometheus histogram samples (cumulative buckets, _sum, _count) of a FixedHistogram; `scale` converts units. */
function histogramSamples(name: string, h: FixedHistogram, labels: Labels, scale: number): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    cumulative += h.counts[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: formatBound(h.bounds[i]! * scale) }, value: cumulative });
  }
  cumulative += h.counts[h.bounds.length]!;
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cumulative });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum * scale });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}

function routeLabel(route: number): string {
  if (route === NO_ROUTE) return 'none';
  if (route === OTHER_ROUTE) return 'other';
  return String(route);
}

function formatBound(v: number): string {
  return String(Number(v.toPrecision(6)));
}

const MAIN_LOOP_RESOLUTION_MS = 10;

interface Snapshot {
  stats: ServerStats;
  /** The workers' counters (empty with `workers: 0`). */
  shared: SharedSnapshot | null;
  /** Event-loop delay by thread, ms. */
  loops: Map<string, LoopDelay>;
  /** Event-loop utilization since the previous scrape, by thread. */
  elu: Map<string, number>;
}

/**
 * Handler times on the main thread (`workers: 0`), where every clock read is paid
 * by the thread that does all the I/O too: while handlers are cheap (under
 * CHEAP_MS on average), one message in SAMPLE_EVERY is timed and its time stands
 * for the untimed ones after it; slower handlers are all timed. Counts are exact.
 */
export class InlineTiming {
  static readonly SAMPLE_EVERY = 8;
  readonly #byRoute: Map<number, FixedHistogram>;
  #skip = 0;
  #lastMs = 0;
  #costMs = 1;
  #route = NaN;
  #h: FixedHistogram | null = null;

  constructor(byRoute: Map<number, FixedHistogram>) {
    this.#byRoute = byRoute;
  }

  start(): number {
    if (this.#skip > 0) {
      this.#skip--;
      return -1;
    }
    return performance.now();
  }

  end(route: number | undefined, t0: number): void {
    const r = route ?? NO_ROUTE;
    let h = this.#h;
    if (r !== this.#route || h === null) {
      h = this.#byRoute.get(r) ?? null;
      if (h === null) this.#byRoute.set(r, (h = new FixedHistogram(HANDLER_BUCKETS_MS)));
      this.#h = h;
      this.#route = r;
    }
    let ms = this.#lastMs;
    if (t0 >= 0) {
      ms = this.#lastMs = performance.now() - t0;
      this.#costMs = this.#costMs * 0.75 + ms * 0.25;
      this.#skip = this.#costMs < CHEAP_MS ? InlineTiming.SAMPLE_EVERY - 1 : 0;
    }
    h.observe(ms);
  }
}

export class ShoalMetrics {
  readonly registry = new Registry();
  readonly #server: ShoalServer;
  readonly #pool: PoolView | null;
  readonly #routing: boolean;
  readonly #shared: SharedArrayBuffer | null;
  /** `workers: 0`: handler durations (ms) timed on the main thread, by route id (NO_ROUTE when routing is off). */
  readonly #inline = new Map<number, FixedHistogram>();
  readonly #frameErrors = new Map<string, number>(FRAME_ERROR_CODES.map((c) => [c, 0]));
  readonly #mainLoop: IntervalHistogram;
  /** Event-loop utilization at the previous scrape, by thread ('main' or threadId), for deltas. */
  readonly #elu = new Map<string, EventLoopUtilization>();
  #utilization = { at: performance.now(), busyMs: 0, value: 0 };
  /** One stats() per scrape: every metric of one scrape reads the same snapshot. */
  #snapshot: Snapshot | null = null;

  constructor(server: ShoalServer, pool: PoolView | null, shared: SharedArrayBuffer | null) {
    this.#server = server;
    this.#pool = pool;
    this.#shared = shared;
    this.#routing = server.options.routing !== null;
    collectDefaultMetrics({ register: this.registry });
    this.#mainLoop = monitorEventLoopDelay({ resolution: MAIN_LOOP_RESOLUTION_MS });
    this.#mainLoop.enable();
    server.on('connectionError', this.#onConnectionError);
    this.#register();
  }

  /** `workers: 0`: handlers timed on the main thread (see InlineTiming). */
  readonly onHandlerTiming = new InlineTiming(this.#inline);

  readonly #onConnectionError = (_conn: unknown, error: ShoalError): void => {
    if (error.code.startsWith('SHOAL_FRAME')) this.#frameErrors.set(error.code, (this.#frameErrors.get(error.code) ?? 0) + 1);
  };

  /** Stop the event-loop monitor and the listeners (the registry's default metrics are left to GC). */
  close(): void {
    this.#mainLoop.disable();
    this.#server.off('connectionError', this.#onConnectionError);
  }

  /** Pool utilization since the previous call (the busy time workers report over the time they had). */
  #poolUtilization(busyMs: number): number {
    const now = performance.now();
    const u = this.#utilization;
    const workers = this.#server.options.workers;
    const span = now - u.at;
    if (workers > 0 && span >= 100) {
      u.value = Math.max(0, Math.min(1, (busyMs - u.busyMs) / (span * workers)));
      u.at = now;
      u.busyMs = busyMs;
    }
    return u.value;
  }

  #threads(): Worker[] {
    return this.#pool?.pool?.threads ?? [];
  }

  #take(): Snapshot {
    if (this.#snapshot !== null) return this.#snapshot;
    const loops = new Map<string, LoopDelay>();
    const main = this.#mainLoop;
    if (main.count > 0) loops.set('main', loopDelay(main, MAIN_LOOP_RESOLUTION_MS));
    main.reset();
    const elu = new Map<string, number>();
    const measure = (key: string, now: EventLoopUtilization): void => {
      const prev = this.#elu.get(key);
      this.#elu.set(key, now);
      const d = prev ? performance.eventLoopUtilization(now, prev) : now;
      elu.set(key, d.utilization);
    };
    measure('main', performance.eventLoopUtilization());
    const shared = this.#shared ? readSharedMetrics(this.#shared) : null;
    const live = new Set<string>(['main']);
    for (const w of this.#threads()) {
      const key = String(w.threadId);
      live.add(key);
      measure(key, w.performance.eventLoopUtilization());
      const l = shared?.loops.get(w.threadId);
      if (l !== undefined) loops.set(key, l);
    }
    for (const key of this.#elu.keys()) if (!live.has(key)) this.#elu.delete(key);
    const snap: Snapshot = { stats: this.#server.stats(), shared, loops, elu };
    this.#snapshot = snap;
    // Every metric's get() of one scrape runs in this same synchronous pass.
    queueMicrotask(() => (this.#snapshot = null));
    return snap;
  }

  #register(): void {
    const add = (name: string, help: string, type: 'counter' | 'gauge' | 'histogram', collect: () => Sample[]): void => {
      this.registry.registerMetric(new Collected(name, help, type, collect) as unknown as Metric);
    };
    const one = (f: (s: ServerStats) => number) => (): Sample[] => [{ value: f(this.#take().stats) }];
    const server = this.#server;

    add('shoal_connections_active', 'Open client connections.', 'gauge', one((s) => s.connections.active));
    add('shoal_connections_total', 'Client connections, by outcome: accepted, or rejected by maxConnections / maxConnectionsPerIp.', 'counter', () => {
      const c = this.#take().stats.counters;
      return [
        { labels: { outcome: 'accepted' }, value: c.connectionsAccepted },
        { labels: { outcome: 'rejected' }, value: c.connectionsRejected },
      ];
    });
    add('shoal_tls_handshake_failures_total', 'TLS handshakes that failed or ran past tlsHandshakeTimeout (the connection was closed).', 'counter', one((s) => s.counters.tlsHandshakeFailures));
    add('shoal_proxy_headers_rejected_total', 'Connections closed over their PROXY protocol header, by reason: refused (from an untrusted address) or invalid (malformed, missing or late from a trusted one).', 'counter', () => {
      const c = this.#take().stats.counters;
      return [
        { labels: { reason: 'refused' }, value: c.proxyHeadersRefused },
        { labels: { reason: 'invalid' }, value: c.proxyHeaderErrors },
      ];
    });
    add('shoal_frames_received_total', 'Frames cut from client byte streams.', 'counter', one((s) => s.counters.framesIn));
    add('shoal_replies_sent_total', 'Messages answered (each may have zero, one or several reply frames).', 'counter', one((s) => s.counters.repliesOut));
    add('shoal_bytes_received_total', 'Bytes read from clients.', 'counter', one((s) => s.counters.bytesIn));
    add('shoal_bytes_sent_total', 'Bytes of replies written to clients.', 'counter', one((s) => s.counters.bytesOut));
    add('shoal_late_replies_total', 'Replies dropped because their connection had closed.', 'counter', one((s) => s.counters.lateReplies));
    add('shoal_pushes_total', 'Pushes (ctx.sendTo/broadcast, server.send/broadcast) by outcome: sent (one per member written to), undelivered (the target had closed or was cut at sendQueueLimit), dropped (the sender closed before its message was released).', 'counter', () => {
      const c = this.#take().stats.counters;
      return [
        { labels: { outcome: 'sent' }, value: c.pushesSent },
        { labels: { outcome: 'undelivered' }, value: c.pushesUndelivered },
        { labels: { outcome: 'dropped' }, value: c.pushesDropped },
      ];
    });
    add('shoal_frame_errors_total', 'Connections ended by a framing error, by code.', 'counter', () =>
      [...this.#frameErrors].map(([code, value]) => ({ labels: { code }, value })),
    );
    add('shoal_handler_errors_total', 'Messages whose handler threw, rejected or timed out, by the error policy applied.', 'counter', () => [
      { labels: { policy: server.options.onHandlerError }, value: this.#take().stats.counters.handlerErrors },
    ]);
    add('shoal_reloads_total', 'Hot reloads (server.reload(), SIGHUP), by result: ok (switched to the new code) or failed (the old code kept serving).', 'counter', () => {
      const c = this.#take().stats.counters;
      return [
        { labels: { result: 'ok' }, value: c.reloads },
        { labels: { result: 'failed' }, value: c.reloadFailures },
      ];
    });
    add('shoal_worker_failures_total', 'Batches lost to a dying worker (their messages were retried or got the error policy).', 'counter', one((s) => s.counters.workerFailures));
    add(
      'shoal_handler_duration_seconds',
      this.#routing ? 'Handler run time per message, by route, measured where it ran (a worker, or the main thread).' : 'Handler run time per message, measured where it ran (a worker, or the main thread).',
      'histogram',
      () => {
        const out: Sample[] = [];
        // Workers count into shared memory; messages the pool's offload ran inline are counted here.
        const shared = this.#take().shared?.handler ?? null;
        let byRoute = this.#inline;
        if (shared !== null) {
          byRoute = new Map(shared);
          for (const [route, h] of this.#inline) {
            const into = byRoute.get(route);
            if (into === undefined) byRoute.set(route, h);
            else into.merge(h.counts, 0, h.sum);
          }
        }
        if (byRoute.size === 0) byRoute.set(NO_ROUTE, new FixedHistogram(HANDLER_BUCKETS_MS));
        for (const [route, h] of byRoute) {
          const labels: Labels = this.#routing ? { route: routeLabel(route) } : {};
          out.push(...histogramSamples('shoal_handler_duration_seconds', h, labels, 1 / 1000));
        }
        return out;
      },
    );
    const empty = { queueWait: new FixedHistogram(QUEUE_WAIT_BUCKETS_MS), batchFrames: new FixedHistogram(BATCH_FRAME_BUCKETS), busyMs: 0 };
    add('shoal_pool_queue_wait_seconds', 'Time a message waits in the shared queue before a worker takes it.', 'histogram', () =>
      histogramSamples('shoal_pool_queue_wait_seconds', (this.#take().shared ?? empty).queueWait, {}, 1 / 1000),
    );
    add('shoal_batch_frames', 'Messages per hand-off to a worker (workers take one message at a time from the shared queue).', 'histogram', () =>
      histogramSamples('shoal_batch_frames', (this.#take().shared ?? empty).batchFrames, {}, 1),
    );
    add('shoal_pool_queue_depth', 'Frames waiting for a free pool slot (the dispatcher queue; over maxPendingFrames all reading pauses).', 'gauge', one((s) => s.dispatcher.pendingFrames));
    add('shoal_pool_tasks_queued', "Tasks queued inside Piscina, waiting for a worker (a worker's serve task while it starts).", 'gauge', () => [{ value: this.#pool?.pool?.queueSize ?? 0 }]);
    add('shoal_pool_threads', 'Live worker threads.', 'gauge', () => [{ value: this.#threads().length }]);
    add('shoal_pool_utilization', 'Share of the workers\' time spent running batches since the previous scrape (0..1).', 'gauge', () => [
      { value: this.#poolUtilization((this.#take().shared ?? empty).busyMs) },
    ]);
    add('shoal_pool_busy_seconds_total', 'Time workers spent running batches (rate() / workers = utilization).', 'counter', () => [
      { value: (this.#take().shared ?? empty).busyMs / 1000 },
    ]);
    add('shoal_worker_restarts_total', 'Workers replaced, by reason: handler_timeout (terminated by shoal) or exit (crashed or exited).', 'counter', () => {
      const r = this.#pool?.restarts ?? { handler_timeout: 0, exit: 0 };
      return Object.entries(r).map(([reason, value]) => ({ labels: { reason }, value }));
    });
    add('shoal_send_queue_bytes', 'Reply bytes queued in user space, summed over connections.', 'gauge', one((s) => s.connections.queuedBytes));
    add('shoal_paused_connections', 'Connections whose reading is paused by a budget (back pressure).', 'gauge', one((s) => s.connections.paused));
    add('shoal_in_flight_frames', 'Frames read and not yet answered, summed over connections.', 'gauge', one((s) => s.connections.inFlight));
    add('shoal_budget_hits_total', 'Times a budget was hit, by the option that sets it.', 'counter', () =>
      Object.entries(this.#take().stats.budgetHits).map(([budget, value]) => ({ labels: { budget }, value: value ?? 0 })),
    );
    add('shoal_ready', '1 while the server accepts connections; 0 from the moment shutdown begins.', 'gauge', () => [{ value: server.ready ? 1 : 0 }]);
    add('shoal_event_loop_utilization', 'Event-loop utilization since the previous scrape, by thread (main or worker threadId).', 'gauge', () =>
      [...this.#take().elu].map(([thread, value]) => ({ labels: { thread }, value })),
    );
    const loop = (stat: keyof LoopDelay) => (): Sample[] =>
      [...this.#take().loops].map(([thread, l]) => ({ labels: { thread }, value: l[stat] / 1000 }));
    add('shoal_event_loop_delay_mean_seconds', 'Mean event-loop delay by thread (main: since the previous scrape; workers: their last 1 s report).', 'gauge', loop('mean'));
    add('shoal_event_loop_delay_p99_seconds', '99th percentile event-loop delay by thread.', 'gauge', loop('p99'));
    add('shoal_event_loop_delay_max_seconds', 'Largest event-loop delay by thread.', 'gauge', loop('max'));
  }
}
