/**
 * Worker metrics in shared memory: each worker counts into its own slot of one
 * SharedArrayBuffer (handler durations per route, queue waits, batch sizes, busy
 * time, event-loop delay); the main thread reads the slots when Prometheus
 * scrapes. Nothing is sent with batch results and the main thread does no
 * metrics work per frame or per batch (but one clock read for the queue wait):
 * on a 64-byte echo the main thread is the bottleneck. A first version (metrics
 * cloned with every result and merged per batch, two clock reads per message)
 * cost ~10% req/s.
 *
 * A replacement worker claims the next slot, round robin over twice as many
 * slots as workers; slots keep their counts when their worker dies, so every
 * counter stays monotonic. Writes are plain (one writer per slot); a scrape may
 * see a bucket count and its sum one observation apart, which Prometheus
 * tolerates.
 *
 * Slot layout, in float64s:
 *   [threadId, busyMs, loopMeanMs, loopP99Ms, loopMaxMs,
 *    queue wait: count per QUEUE_WAIT_BUCKETS_MS bucket (+1 above), sumMs,
 *    batch size: count per BATCH_FRAME_BUCKETS bucket (+1 above), sum,
 *    ROUTE_ROWS x [routeId (NaN: unused), sumMs, count per HANDLER_BUCKETS_MS bucket (+1 above)]]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { FixedHistogram, bucketIndex } from './histogram.js';

/** Handler run time, ms (Prometheus 'le' upper bounds; exported in seconds). */
export const HANDLER_BUCKETS_MS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000,
]);
/** Time a batch waits between pool.run() and a worker starting it, ms. */
export const QUEUE_WAIT_BUCKETS_MS: readonly number[] = Object.freeze([
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500,
]);
/** Frames per pool task. */
export const BATCH_FRAME_BUCKETS: readonly number[] = Object.freeze([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]);

/** Route id when routing is off (or a message had no valid route id). */
export const NO_ROUTE = -1;
/** The row that collects routes beyond ROUTE_ROWS - 1 distinct ones. */
export const OTHER_ROUTE = -2;
/** Distinct routes tracked per worker slot (the last row is OTHER_ROUTE). */
export const ROUTE_ROWS = 32;

const THREAD = 0;
const BUSY = 1;
const LOOP = 2; // mean, p99, max
const QUEUE = 5;
const BATCH = QUEUE + QUEUE_WAIT_BUCKETS_MS.length + 2;
const ROUTES = BATCH + BATCH_FRAME_BUCKETS.length + 2;
const ROW = 2 + HANDLER_BUCKETS_MS.length + 1;
const SLOT = ROUTES + ROUTE_ROWS * ROW;
/** Bytes before the slots: Int32 [claimed, slots]. */
const HEADER = 8;

/** The buffer for `workers` workers (shared with them through workerData). */
export function createSharedMetrics(workers: number): SharedArrayBuffer {
  const slots = Math.max(2, workers * 2);
  const sab = new SharedArrayBuffer(HEADER + slots * SLOT * 8);
  new Int32Array(sab, 0, 2)[1] = slots;
  const f = new Float64Array(sab, HEADER);
  for (let s = 0; s < slots; s++) {
    for (let r = 0; r < ROUTE_ROWS; r++) f[s * SLOT + ROUTES + r * ROW] = NaN;
  }
  return sab;
}

/**
 * Below this mean time per message (ms), messages are timed in runs (runBatch, see
 * workers/batch.ts) or sampled (InlineTiming): a clock read costs as much as they do.
 */
export const CHEAP_MS = 0.02;
/** A worker publishes its event-loop delay at most this often (ms), at the end of a batch. */
const LOOP_REPORT_MS = 1000;
/** Sampling interval of the worker's event-loop delay monitor (ms). */
const LOOP_RESOLUTION_MS = 20;

/** A worker's writer: claims a slot once, then counts into it. */
export class WorkerMeter {
  readonly #f: Float64Array;
  readonly #base: number;
  readonly #rows = new Map<number, number>();
  #lastRoute = NaN;
  #lastRow = 0;
  readonly #loop: IntervalHistogram;
  #loopReportedAt = 0;

  constructor(sab: SharedArrayBuffer, threadId: number) {
    const header = new Int32Array(sab, 0, 2);
    const slot = Atomics.add(header, 0, 1) % header[1]!;
    this.#f = new Float64Array(sab, HEADER);
    this.#base = slot * SLOT;
    this.#f[this.#base + THREAD] = threadId;
    this.#f[this.#base + LOOP] = NaN;
    // A reused slot (its worker died) keeps its rows: go on counting into them.
    for (let r = 0; r < ROUTE_ROWS; r++) {
      const id = this.#f[this.#base + ROUTES + r * ROW]!;
      if (id === id) this.#rows.set(id, this.#base + ROUTES + r * ROW);
    }
    this.#loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.#loop.enable();
  }

  /** Mean time per message of recent batches (ms), to choose how finely runBatch times them. */
  #costMs = 1;

  /** Messages are cheap (under CHEAP_MS each, on average): runBatch may time them in runs. */
  get cheap(): boolean {
    return this.#costMs < CHEAP_MS;
  }

  /** `n` messages of `route` (undefined: no routing) that took `ms` together: each counts as ms / n. */
  handlers(route: number | undefined, ms: number, n: number): void {
    const r = route ?? NO_ROUTE;
    let row = this.#lastRow;
    if (r !== this.#lastRoute) {
      row = this.#row(r);
      this.#lastRoute = r;
      this.#lastRow = row;
    }
    const f = this.#f;
    f[row + 1]! += ms;
    f[row + 2 + bucketIndex(HANDLER_BUCKETS_MS, ms / n)]! += n;
  }

  #row(route: number): number {
    const known = this.#rows.get(route);
    if (known !== undefined) return known;
    const f = this.#f;
    const last = ROUTE_ROWS - 1;
    let r = 0;
    while (r < last && f[this.#base + ROUTES + r * ROW] === f[this.#base + ROUTES + r * ROW]) r++; // first unused (NaN)
    const row = this.#base + ROUTES + r * ROW;
    f[row] = r < last ? route : OTHER_ROUTE;
    this.#rows.set(route, row);
    return row;
  }

  /**
   * One batch: its size, how long it waited for this worker (NaN: unknown), its
   * run time, and the clock at its end (reused: no clock read of its own here).
   */
  batch(frames: number, waitMs: number, elapsedMs: number, now: number): void {
    const f = this.#f;
    const b = this.#base;
    if (now - this.#loopReportedAt >= LOOP_REPORT_MS) this.#reportLoop(now);
    this.#costMs = this.#costMs * 0.75 + (elapsedMs / frames) * 0.25;
    f[b + BUSY]! += elapsedMs;
    f[b + BATCH + bucketIndex(BATCH_FRAME_BUCKETS, frames)]!++;
    f[b + BATCH + BATCH_FRAME_BUCKETS.length + 1]! += frames;
    if (waitMs === waitMs) {
      f[b + QUEUE + bucketIndex(QUEUE_WAIT_BUCKETS_MS, waitMs)]!++;
      f[b + QUEUE + QUEUE_WAIT_BUCKETS_MS.length + 1]! += waitMs;
    }
  }

  /** While idle (no message to count): publish the event-loop delay when it is due. */
  idle(now: number): void {
    if (now - this.#loopReportedAt >= LOOP_REPORT_MS) this.#reportLoop(now);
  }

  /**
   * Publish this thread's event-loop delay since the last report, in ms. The
   * histogram counts the sampling interval too: subtract it (idle reads ~0).
   * Under atomics 'sync' the loop of a busy worker may not turn at all (no samples).
   */
  #reportLoop(now: number): void {
    this.#loopReportedAt = now;
    const h = this.#loop;
    if (h.count > 0) {
      const d = loopDelay(h, LOOP_RESOLUTION_MS);
      const f = this.#f;
      f[this.#base + LOOP] = d.mean;
      f[this.#base + LOOP + 1] = d.p99;
      f[this.#base + LOOP + 2] = d.max;
    }
    h.reset();
  }
}

export interface LoopDelay {
  mean: number;
  p99: number;
  max: number;
}

/**
 * monitorEventLoopDelay samples with a timer every `resolution` ms and records
 * the time between ticks, so an idle loop reads `resolution`: subtract it, so
 * the metric shows the delay itself (idle ~ 0).
 */
export function loopDelay(h: IntervalHistogram, resolutionMs: number): LoopDelay {
  const ms = (ns: number): number => Math.max(0, ns / 1e6 - resolutionMs);
  return { mean: ms(h.mean), p99: ms(h.percentile(99)), max: ms(h.max) };
}

/** Every slot summed (main thread, at scrape time). */
export interface SharedSnapshot {
  busyMs: number;
  queueWait: FixedHistogram;
  batchFrames: FixedHistogram;
  /** Handler durations by route id (NO_ROUTE without routing, OTHER_ROUTE past ROUTE_ROWS). */
  handler: Map<number, FixedHistogram>;
  /** Last reported event-loop delay by threadId. */
  loops: Map<number, LoopDelay>;
}

export function readSharedMetrics(sab: SharedArrayBuffer): SharedSnapshot {
  const slots = new Int32Array(sab, 0, 2)[1]!;
  const f = new Float64Array(sab, HEADER);
  const out: SharedSnapshot = {
    busyMs: 0,
    queueWait: new FixedHistogram(QUEUE_WAIT_BUCKETS_MS),
    batchFrames: new FixedHistogram(BATCH_FRAME_BUCKETS),
    handler: new Map(),
    loops: new Map(),
  };
  for (let s = 0; s < slots; s++) {
    const b = s * SLOT;
    const threadId = f[b + THREAD]!;
    if (threadId === 0) continue; // never claimed
    out.busyMs += f[b + BUSY]!;
    out.queueWait.merge(f, b + QUEUE, f[b + QUEUE + QUEUE_WAIT_BUCKETS_MS.length + 1]!);
    out.batchFrames.merge(f, b + BATCH, f[b + BATCH + BATCH_FRAME_BUCKETS.length + 1]!);
    for (let r = 0; r < ROUTE_ROWS; r++) {
      const row = b + ROUTES + r * ROW;
      const route = f[row]!;
      if (route !== route) continue;
      let h = out.handler.get(route);
      if (h === undefined) out.handler.set(route, (h = new FixedHistogram(HANDLER_BUCKETS_MS)));
      h.merge(f, row + 2, f[row + 1]!);
    }
    const mean = f[b + LOOP]!;
    if (mean === mean) out.loops.set(threadId, { mean, p99: f[b + LOOP + 1]!, max: f[b + LOOP + 2]! });
  }
  return out;
}
