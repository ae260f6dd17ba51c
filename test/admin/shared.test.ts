import { describe, expect, it } from 'vitest';
import { FixedHistogram, bucketIndex } from '../../dist/src/admin/histogram.js';
import {
  HANDLER_BUCKETS_MS,
  NO_ROUTE,
  OTHER_ROUTE,
  ROUTE_ROWS,
  WorkerMeter,
  createSharedMetrics,
  readSharedMetrics,
} from '../../dist/src/admin/shared.js';

// The workers' counters in shared memory: what a worker writes is what a scrape reads.

describe('bucketIndex and FixedHistogram', () => {
  it('le buckets: a value equal to a bound lands in that bound; above every bound, in the last', () => {
    const b = [1, 2, 5];
    expect([0, 1, 1.5, 2, 5, 5.01, 1e9].map((v) => bucketIndex(b, v))).toEqual([0, 0, 1, 1, 2, 3, 3]);
    const h = new FixedHistogram(b);
    for (const v of [0.5, 2, 9]) h.observe(v);
    expect([...h.counts]).toEqual([1, 1, 0, 1]);
    expect(h.count).toBe(3);
    expect(h.sum).toBe(11.5);
  });
});

describe('WorkerMeter -> readSharedMetrics', () => {
  it('handler times per route, runs of n messages, batches and busy time add up across workers', () => {
    const sab = createSharedMetrics(2);
    const a = new WorkerMeter(sab, 11);
    const b = new WorkerMeter(sab, 12);
    a.handlers(undefined, 0.003, 1); // 3 µs
    a.handlers(undefined, 0.08, 8); // a run of 8 at 10 µs each
    b.handlers(undefined, 2, 1);
    a.batch(9, 0.2, 0.09, 0);
    b.batch(1, NaN, 2, 0); // queue wait unknown: not counted
    const s = readSharedMetrics(sab);
    const h = s.handler.get(NO_ROUTE)!;
    expect(h.count).toBe(10);
    expect(h.sum).toBeCloseTo(2.083, 10);
    expect(h.counts[bucketIndex(HANDLER_BUCKETS_MS, 0.003)]).toBe(1);
    expect(h.counts[bucketIndex(HANDLER_BUCKETS_MS, 0.01)]).toBe(8);
    expect(h.counts[bucketIndex(HANDLER_BUCKETS_MS, 2)]).toBe(1);
    expect(s.batchFrames.count).toBe(2);
    expect(s.batchFrames.sum).toBe(10);
    expect(s.queueWait.count).toBe(1);
    expect(s.queueWait.sum).toBeCloseTo(0.2, 10);
    expect(s.busyMs).toBeCloseTo(2.09, 10);
  });

  it('routes get their own rows; past ROUTE_ROWS - 1 of them, the rest share the "other" row', () => {
    const sab = createSharedMetrics(1);
    const m = new WorkerMeter(sab, 1);
    for (let route = 0; route < ROUTE_ROWS + 10; route++) m.handlers(route, 1, 1);
    m.handlers(3, 1, 1); // a known route again, after others
    const s = readSharedMetrics(sab);
    expect(s.handler.get(3)!.count).toBe(2);
    expect(s.handler.get(ROUTE_ROWS - 2)!.count).toBe(1);
    expect(s.handler.has(ROUTE_ROWS - 1)).toBe(false);
    expect(s.handler.get(OTHER_ROUTE)!.count).toBe(11);
    let total = 0;
    for (const h of s.handler.values()) total += h.count;
    expect(total).toBe(ROUTE_ROWS + 11);
  });

  it('a replacement worker takes the next slot; when slots wrap, counts carry on (counters never go back)', () => {
    const sab = createSharedMetrics(1); // 2 slots
    const first = new WorkerMeter(sab, 1);
    first.handlers(7, 1, 5);
    const second = new WorkerMeter(sab, 2); // slot 1
    second.handlers(7, 1, 1);
    const third = new WorkerMeter(sab, 3); // slot 0 again: worker 1 is gone
    third.handlers(7, 1, 2);
    third.handlers(8, 1, 1);
    const s = readSharedMetrics(sab);
    expect(s.handler.get(7)!.count).toBe(8);
    expect(s.handler.get(8)!.count).toBe(1);
  });
});
