/**
 * Latency histograms: HDR (hdr-histogram-js), microsecond resolution, 3 significant
 * digits. Each generator thread records into its own; they cross to the main thread
 * as compressed base64 and are merged there by adding counts, so the merged
 * percentiles are exactly those of one histogram holding every sample.
 */
import hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';

export type { Histogram };

export function createHistogram(): Histogram {
  return hdr.build({
    bitBucketSize: 32,
    lowestDiscernibleValue: 1, // 1 µs
    highestTrackableValue: 60_000_000, // 60 s; auto-resizes beyond
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function decodeHistogram(encoded: string): Histogram {
  return hdr.decodeFromCompressedBase64(encoded, 32);
}

/** One histogram holding every sample of `parts` (encoded or not). */
export function mergeHistograms(parts: Array<string | Histogram>): Histogram {
  const merged = createHistogram();
  for (const p of parts) merged.add(typeof p === 'string' ? decodeHistogram(p) : p);
  return merged;
}

/** Latency figures in milliseconds (µs resolution). */
export interface LatencySummary {
  p2_5: number;
  p50: number;
  p97_5: number;
  p99: number;
  p99_9: number;
  average: number;
  stdev: number;
  min: number;
  max: number;
  count: number;
}

const ms = (us: number): number => Math.round(us) / 1000;

export function summarizeLatency(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { p2_5: 0, p50: 0, p97_5: 0, p99: 0, p99_9: 0, average: 0, stdev: 0, min: 0, max: 0, count: 0 };
  return {
    p2_5: ms(h.getValueAtPercentile(2.5)),
    p50: ms(h.getValueAtPercentile(50)),
    p97_5: ms(h.getValueAtPercentile(97.5)),
    p99: ms(h.getValueAtPercentile(99)),
    p99_9: ms(h.getValueAtPercentile(99.9)),
    average: Math.round(h.mean) / 1000,
    stdev: Math.round(h.stdDeviation) / 1000,
    min: ms(h.minNonZeroValue),
    max: ms(h.getValueAtPercentile(100)), // as merged histograms report it (bucket precision)
    count: h.totalCount,
  };
}

/** Per-second samples (req/s or bytes/s): autocannon's columns. */
export interface RateSummary {
  p1: number;
  p2_5: number;
  p50: number;
  p97_5: number;
  average: number;
  stdev: number;
  min: number;
  max: number;
  samples: number;
}

/** Nearest-rank percentile of a sorted array. */
function rank(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarizeSamples(samples: number[]): RateSummary {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const average = n ? s.reduce((a, b) => a + b, 0) / n : 0;
  const stdev = n ? Math.sqrt(s.reduce((a, b) => a + (b - average) ** 2, 0) / n) : 0;
  const r = (x: number): number => Math.round(x * 100) / 100;
  return {
    p1: r(rank(s, 1)),
    p2_5: r(rank(s, 2.5)),
    p50: r(rank(s, 50)),
    p97_5: r(rank(s, 97.5)),
    average: r(average),
    stdev: r(stdev),
    min: r(s[0] ?? 0),
    max: r(s[n - 1] ?? 0),
    samples: n,
  };
}
