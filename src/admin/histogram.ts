/**
 * Fixed-bucket histograms: cheap enough for the hot path, and mergeable (the
 * workers count into buckets in shared memory, see shared.ts; the main thread
 * adds the slots up when scraped). Pure of threads and of prom-client.
 */

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
