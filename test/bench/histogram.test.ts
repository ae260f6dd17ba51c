import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import {
  createHistogram,
  decodeHistogram,
  encodeHistogram,
  mergeHistograms,
  summarizeLatency,
  summarizeSamples,
} from '../../dist/src/bench/histogram.js';

// A deterministic spread of latencies (µs): mostly fast, a slow tail.
function values(seed: number, n: number): number[] {
  const out: number[] = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const u = x / 2 ** 31;
    out.push(Math.max(1, Math.round(u < 0.99 ? 50 + u * 500 : 10_000 + u * 90_000)));
  }
  return out;
}

describe('histogram merging', () => {
  it('merging per-thread histograms gives exactly the histogram of all samples', () => {
    const parts = [values(1, 20_000), values(2, 5_000), values(3, 1)];
    const all = createHistogram();
    const encoded = parts.map((vs) => {
      const h = createHistogram();
      for (const v of vs) {
        h.recordValue(v);
        all.recordValue(v);
      }
      return encodeHistogram(h);
    });
    const merged = mergeHistograms(encoded);
    expect(merged.totalCount).toBe(25_001);
    for (const p of [0.1, 2.5, 50, 97.5, 99, 99.9, 100]) {
      expect(merged.getValueAtPercentile(p)).toBe(all.getValueAtPercentile(p));
    }
    expect(merged.getValueAtPercentile(100)).toBe(all.getValueAtPercentile(100));
    expect(merged.mean).toBeCloseTo(all.mean, 6);
    expect(summarizeLatency(merged)).toEqual(summarizeLatency(all));
  });

  it('recordValueWithCount (one call per group of replies) equals recording one by one', () => {
    const a = createHistogram();
    const b = createHistogram();
    a.recordValueWithCount(123, 16);
    for (let i = 0; i < 16; i++) b.recordValue(123);
    expect(encodeHistogram(a)).toBe(encodeHistogram(b));
  });

  it('histograms survive the trip from a worker thread', async () => {
    const url = new URL('../../dist/src/bench/histogram.js', import.meta.url).href;
    const code = `
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then(({ createHistogram, encodeHistogram }) => {
        const h = createHistogram();
        for (let v = 1; v <= 1000; v++) h.recordValue(v);
        parentPort.postMessage(encodeHistogram(h));
      });`;
    const w = new Worker(code, { eval: true });
    const encoded = await new Promise<string>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    const local = createHistogram();
    for (let v = 1001; v <= 2000; v++) local.recordValue(v);
    const merged = mergeHistograms([encoded, local]);
    expect(merged.totalCount).toBe(2000);
    expect(merged.getValueAtPercentile(50)).toBe(1000);
    expect(decodeHistogram(encoded).maxValue).toBe(1000);
  });

  it('summarizes in milliseconds at microsecond resolution', () => {
    const h = createHistogram();
    h.recordValueWithCount(87, 99);
    h.recordValue(1500);
    const s = summarizeLatency(h);
    expect(s.p50).toBe(0.087);
    expect(s.max).toBe(1.5);
    expect(s.min).toBe(0.087);
    expect(s.count).toBe(100);
    expect(summarizeLatency(createHistogram()).count).toBe(0);
  });

  it('per-second samples: nearest-rank percentiles, mean, stdev, min', () => {
    const s = summarizeSamples([10, 20, 30, 40]);
    expect(s).toMatchObject({ p1: 10, p2_5: 10, p50: 20, p97_5: 40, average: 25, min: 10, max: 40, samples: 4 });
    expect(s.stdev).toBeCloseTo(Math.sqrt(125), 2);
    expect(summarizeSamples([]).samples).toBe(0);
  });
});
