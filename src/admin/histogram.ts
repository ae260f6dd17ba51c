/**
 * Fixed-bucket histograms, cheap enough for the hot path and mergeable across
 * threads: a worker counts its batch's handler durations into buckets
 * (RouteTimer), sends the counts with the batch result, and the main thread
 * adds them into a FixedHistogram (a few additions per batch, none per frame).
 *
 * Pure of threads and of prom-client: used by workers/batch.ts, by the inline
 * dispatcher and by the metrics registry (src/admin/metrics.ts).
 */
import { BATCH_METRICS_HEADER, BATCH_METRICS_STRIDE, HANDLER_BUCKETS_MS } from '../dispatch/protocol.js';

/** Index of the first bucket whose upper bound is >= v (bounds.length: above every bound). */
export function bucketIndex(bounds: readonly number[], v: number): number {
  let i = 0;
  while (i < bounds.length && v > bounds[i]!) i++;
  return i;
}

/** Counts per bucket (not cumulative; the last counts what is above every bound), sum and count. */
export class FixedHistogram {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    this.counts[bucketIndex(this.bounds, v)]!++;
    this.sum += v;
    this.count++;
  }

  /** Add counts laid out like `counts` at src[offset..], with their sum. */
  merge(src: ArrayLike<number>, offset: number, sum: number): void {
    const counts = this.counts;
    let n = 0;
    for (let i = 0; i < counts.length; i++) {
      const c = src[offset + i]!;
      counts[i]! += c;
      n += c;
    }
    this.count += n;
    this.sum += sum;
  }
}

/** Route id used when routing is off (or a message had no valid route). */
export const NO_ROUTE = -1;

/**
 * Handler durations of one batch, per route, in HANDLER_BUCKETS_MS buckets.
 * Encodes to the BatchResult.metrics layout (protocol.ts).
 */
export class RouteTimer {
  #route = NO_ROUTE;
  #row: Float64Array | null = null;
  #rows: Map<number, Float64Array> | null = null;

  observe(route: number | undefined, ms: number): void {
    const r = route ?? NO_ROUTE;
    let row: Float64Array;
    if (this.#row === null) {
      this.#route = r;
      row = this.#row = new Float64Array(BATCH_METRICS_STRIDE);
    } else if (r === this.#route) {
      row = this.#row;
    } else {
      // A second route in this batch: from here on, a map (routing only).
      const rows = (this.#rows ??= new Map([[this.#route, this.#row]]));
      let found = rows.get(r);
      if (found === undefined) rows.set(r, (found = new Float64Array(BATCH_METRICS_STRIDE)));
      row = found;
    }
    row[1]! += ms;
    row[2 + bucketIndex(HANDLER_BUCKETS_MS, ms)]!++;
  }

  /** The BatchResult.metrics array; threadId and loop delay are left for the worker to fill. */
  encode(queueWaitMs: number): Float64Array {
    const rows = this.#rows ?? (this.#row ? new Map([[this.#route, this.#row]]) : new Map<number, Float64Array>());
    const out = new Float64Array(BATCH_METRICS_HEADER + rows.size * BATCH_METRICS_STRIDE);
    out[0] = 0;
    out[1] = queueWaitMs;
    out[2] = out[3] = out[4] = NaN;
    out[5] = rows.size;
    let off = BATCH_METRICS_HEADER;
    for (const [route, row] of rows) {
      out.set(row, off);
      out[off] = route;
      off += BATCH_METRICS_STRIDE;
    }
    return out;
  }
}
