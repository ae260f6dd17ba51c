/**
 * runBench(): one load test, end to end. Splits the connections over the generator
 * threads (or drives them from this thread with -w 0), starts every thread on one shared
 * schedule, samples the shared counters once per second (req/s and bytes/s tables) and
 * for the progress bar, merges the threads' histograms, and measures the generator itself.
 */
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { C, COUNTER_SLOTS, Driver } from './driver.js';
import type { DriverConfig, DriverResult, Schedule } from './driver.js';
import { mergeHistograms, summarizeLatency, summarizeSamples } from './histogram.js';
import type { LatencySummary, RateSummary } from './histogram.js';
import { buildMessage } from './message.js';
import { formatTarget, validateBenchOptions } from './options.js';
import type { BenchOptions } from './options.js';

/** Event-loop utilization above which a generator thread counts as saturated. */
export const SATURATION_ELU = 0.9;
/** ms between the threads being told to start and the start: time for the message to arrive. */
const START_DELAY = 50;

export interface BenchResult {
  target: string;
  protocol: BenchOptions['protocol'];
  framing: string;
  iterations: number;
  size: number;
  connections: number;
  pipelining: number;
  /** Open-loop rate asked for (req/s), 0 = closed loop. */
  rate: number;
  amount: number;
  warmup: number;
  /** Seconds measured. */
  duration: number;
  /** total: replies in the measured window (all replies for --amount); answered: every reply, warm-up and drain included. */
  requests: RateSummary & { total: number; sent: number; answered: number; perSecond: number; /** --reconnect: re-sent after the server closed in order, and those closes. */ resent: number; orderlyCloses: number };
  throughput: RateSummary & { total: number };
  latency: LatencySummary;
  errors: {
    /** mismatches + timeouts + resets + connectErrors (lost requests come with their reset). */
    total: number;
    mismatches: number;
    timeouts: number;
    resets: number;
    connectErrors: number;
    lost: number;
    codes: Record<string, number>;
  };
  generator: {
    threads: number;
    cores: number;
    /** CPU used by the whole generator process during the measured window, % of one core. */
    cpu: number;
    /** Per thread event-loop utilization (0..1) during the measured window. */
    elu: number[];
    saturated: boolean;
    warning: string | null;
  };
  startedAt: string;
}

export interface BenchProgress {
  /** ms since the start (warm-up included). */
  elapsed: number;
  /** ms the run should take (warm-up + duration), or null for --amount. */
  planned: number | null;
  replies: number;
  amount: number;
  /** req/s over the last progress interval. */
  rate: number;
  errors: number;
  warmingUp: boolean;
}

interface Thread {
  connected: Promise<{ connected: number; error: string | null }>;
  run(schedule: Schedule): Promise<DriverResult>;
  stop(): Promise<void>;
}

function splitConnections(total: number, threads: number): Array<{ first: number; count: number }> {
  const out: Array<{ first: number; count: number }> = [];
  let first = 0;
  for (let t = 0; t < threads; t++) {
    const count = Math.floor(total / threads) + (t < total % threads ? 1 : 0);
    out.push({ first, count });
    first += count;
  }
  return out;
}

function inlineThread(cfg: DriverConfig, counters: Float64Array): Thread {
  const driver = new Driver(cfg, counters, 0);
  return { connected: driver.connect(), run: (s) => driver.run(s), stop: async () => {} };
}

function workerThread(cfg: DriverConfig, counters: SharedArrayBuffer, base: number): Thread {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { cfg, counters, base } });
  let onResult: ((r: DriverResult) => void) | null = null;
  let onConnected: ((r: { connected: number; error: string | null }) => void) | null = null;
  let fail: (err: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => {});
  let gotResult = false;
  worker.on('message', (m: { type: string; result?: DriverResult; connected?: number; error?: string | null }) => {
    if (m.type === 'connected') onConnected?.({ connected: m.connected!, error: m.error ?? null });
    if (m.type === 'result') {
      gotResult = true;
      onResult?.(m.result!);
    }
  });
  worker.on('error', (err) => fail(err));
  worker.on('exit', (code) => {
    if (!gotResult) fail(new Error(`generator thread exited with code ${code} before reporting`));
  });
  const connected = Promise.race([new Promise<{ connected: number; error: string | null }>((r) => (onConnected = r)), failed]);
  return {
    connected,
    run(schedule) {
      const result = new Promise<DriverResult>((r) => (onResult = r));
      worker.postMessage({ type: 'run', schedule });
      return Promise.race([result, failed]);
    },
    async stop() {
      await worker.terminate();
    },
  };
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

export async function runBench(input: Partial<BenchOptions> & { port: number }, onProgress?: (p: BenchProgress) => void): Promise<BenchResult> {
  const o = validateBenchOptions(input);
  const message = buildMessage(o);
  const threadCount = Math.max(1, o.workers);
  const shared = o.workers > 0 ? new SharedArrayBuffer(threadCount * COUNTER_SLOTS * 8) : null;
  const counters = shared ? new Float64Array(shared) : new Float64Array(COUNTER_SLOTS);
  const total = (slot: number): number => {
    let s = 0;
    for (let t = 0; t < threadCount; t++) s += counters[t * COUNTER_SLOTS + slot]!;
    return s;
  };
  const threads: Thread[] = splitConnections(o.connections, threadCount).map(({ first, count }, t) => {
    const cfg: DriverConfig = {
      host: o.host,
      port: o.port,
      first,
      count,
      totalConnections: o.connections,
      pipelining: o.pipelining,
      rate: o.rate,
      amount: o.amount,
      timeout: o.timeout,
      reconnect: o.reconnect,
      message,
      tls: o.tls,
    };
    return shared ? workerThread(cfg, shared, t * COUNTER_SLOTS) : inlineThread(cfg, counters);
  });
  const stopAll = (): Promise<unknown> => Promise.allSettled(threads.map((t) => t.stop()));
  let timers: NodeJS.Timeout[] = [];
  try {
    const connects = await Promise.all(threads.map((t) => t.connected));
    if (sum(connects.map((c) => c.connected)) === 0) {
      const why = connects.find((c) => c.error)?.error ?? 'no connection';
      throw new Error(`could not connect to ${o.host}:${o.port} (${why})`);
    }

    const abs = (): number => performance.timeOrigin + performance.now();
    const start = abs() + START_DELAY;
    const measureFrom = start + o.warmup;
    const timed = o.amount === 0;
    const schedule: Schedule = { start, measureFrom, end: timed ? measureFrom + o.duration : null };
    const startedAt = new Date(start).toISOString();
    const results = Promise.all(threads.map((t) => t.run(schedule)));
    let finished = false;
    results.then(
      () => (finished = true),
      () => (finished = true),
    );

    // Once-per-second samples (autocannon's req/s and bytes/s tables), from the shared counters.
    const reqSamples: number[] = [];
    const byteSamples: number[] = [];
    let cpu0: NodeJS.CpuUsage | null = null;
    let cpu: NodeJS.CpuUsage | null = null;
    let last = { t: 0, replies: 0, bytes: 0 };
    const sample = (): void => {
      const t = abs();
      const replies = total(C.WINDOW_REPLIES);
      const bytes = total(C.WINDOW_BYTES);
      const dt = (t - last.t) / 1000;
      // A (last) partial second counts if it is long enough to say something; a shorter
      // one is left for the next sample to cover.
      if (dt < 0.25) return;
      reqSamples.push((replies - last.replies) / dt);
      byteSamples.push((bytes - last.bytes) / dt);
      last = { t, replies, bytes };
    };
    const at = (when: number, fn: () => void): void => {
      timers.push(setTimeout(fn, Math.max(0, when - abs())));
    };
    at(measureFrom, () => {
      cpu0 = process.cpuUsage();
      last = { t: abs(), replies: total(C.WINDOW_REPLIES), bytes: total(C.WINDOW_BYTES) };
      let k = 1;
      const next = (): void => {
        if (finished) return;
        const when = measureFrom + k * 1000;
        if (timed && when >= schedule.end! - 100) return; // the end's own sample covers the rest
        at(when, () => {
          sample();
          k++;
          next();
        });
      };
      next();
    });
    if (timed) {
      at(schedule.end!, () => {
        cpu = process.cpuUsage(cpu0 ?? undefined);
        sample();
      });
    }
    if (onProgress) {
      let prev = { t: abs(), replies: 0 };
      const tick = setInterval(() => {
        const t = abs();
        const replies = total(C.REPLIES);
        onProgress({
          elapsed: Math.max(0, t - start),
          planned: timed ? o.warmup + o.duration : null,
          replies,
          amount: o.amount,
          rate: ((replies - prev.replies) * 1000) / Math.max(1, t - prev.t),
          errors: total(C.MISMATCHES) + total(C.TIMEOUTS) + total(C.RESETS) + total(C.CONNECT_ERRORS),
          warmingUp: t < measureFrom,
        });
        prev = { t, replies };
      }, 200);
      timers.push(tick);
    }

    const parts = await results;
    const endAbs = abs();
    for (const t of timers) clearTimeout(t);
    timers = [];
    if (!timed) {
      cpu = process.cpuUsage(cpu0 ?? undefined);
      sample();
    }
    await stopAll();

    const count = (slot: number): number => sum(parts.map((p) => p.counters[slot]!));
    const elapsedMs = timed ? o.duration : Math.max(1, Math.max(...parts.map((p) => p.elapsed)));
    const seconds = elapsedMs / 1000;
    const windowReplies = count(C.WINDOW_REPLIES);
    const windowBytes = count(C.WINDOW_BYTES);
    const hist = mergeHistograms(parts.map((p) => p.histogram));
    const codes: Record<string, number> = {};
    for (const p of parts) for (const [k, v] of Object.entries(p.errorCodes)) codes[k] = (codes[k] ?? 0) + v;
    const errors = {
      mismatches: count(C.MISMATCHES),
      timeouts: count(C.TIMEOUTS),
      resets: count(C.RESETS),
      connectErrors: count(C.CONNECT_ERRORS),
      lost: count(C.LOST),
    };
    const elu = parts.map((p) => Math.round(p.elu * 1000) / 1000);
    const busiest = Math.max(...elu);
    const saturated = busiest > SATURATION_ELU;
    const cpuMs = cpu ? ((cpu as NodeJS.CpuUsage).user + (cpu as NodeJS.CpuUsage).system) / 1000 : 0;
    const windowMs = timed ? o.duration : Math.max(1, endAbs - measureFrom);
    const replies = timed ? windowReplies : count(C.REPLIES);
    return {
      target: formatTarget(o.host, o.port),
      protocol: o.protocol,
      framing: o.framing.type,
      iterations: o.iterations,
      size: o.size,
      connections: o.connections,
      pipelining: o.pipelining,
      rate: o.rate,
      amount: o.amount,
      warmup: o.warmup / 1000,
      duration: Math.round(seconds * 1000) / 1000,
      requests: {
        ...summarizeSamples(reqSamples),
        total: replies,
        sent: count(C.SENT),
        answered: count(C.REPLIES),
        resent: count(C.RESENT),
        orderlyCloses: count(C.ORDERLY_CLOSES),
        perSecond: Math.round((replies / seconds) * 100) / 100,
      },
      throughput: { ...summarizeSamples(byteSamples), total: windowBytes },
      latency: summarizeLatency(hist),
      errors: { total: errors.mismatches + errors.timeouts + errors.resets + errors.connectErrors, ...errors, codes },
      generator: {
        threads: threadCount,
        cores: availableParallelism(),
        cpu: Math.round((cpuMs / windowMs) * 1000) / 10,
        elu,
        saturated,
        warning: saturated
          ? `generator thread ${elu.indexOf(busiest)} was busy ${Math.round(busiest * 100)}% of the measured time: ` +
            `the figures may measure the generator, not the server (add generator threads with -w, or lower -c/-p)`
          : null,
      },
      startedAt,
    };
  } finally {
    for (const t of timers) clearTimeout(t);
    await stopAll();
  }
}
