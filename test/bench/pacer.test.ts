import { describe, expect, it } from 'vitest';
import { Pacer, scheduleCheck } from '../../dist/src/bench/pacer.js';

describe('rate pacing', () => {
  it('spreads the total rate evenly over all connections', () => {
    // 1000 req/s over 4 connections: one request per ms overall, one per 4 ms per connection.
    const pacers = [0, 1, 2, 3].map((g) => new Pacer(1000, 4, g, 100));
    expect(pacers[0]!.interval).toBe(4);
    expect(pacers.map((p) => p.intended(0))).toEqual([100, 101, 102, 103]);
    expect(pacers[2]!.intended(3)).toBe(114);
    const all = pacers.flatMap((p) => [0, 1, 2, 3, 4].map((i) => p.intended(i))).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i));
  });

  it('dueBy counts the requests whose intended time has come', () => {
    const p = new Pacer(1000, 4, 1, 100); // requests at 101, 105, 109, ...
    expect(p.dueBy(50)).toBe(0);
    expect(p.dueBy(100.999)).toBe(0);
    expect(p.dueBy(101)).toBe(1);
    expect(p.dueBy(104.9)).toBe(1);
    expect(p.dueBy(105)).toBe(2);
    expect(p.dueBy(1100.5)).toBe(250);
    // Over a whole second the generator as a whole sends exactly the rate.
    const total = [0, 1, 2, 3].map((g) => new Pacer(1000, 4, g, 0).dueBy(1000 - 1e-6)).reduce((a, b) => a + b);
    expect(total).toBe(1000);
  });

  it('fractional intervals do not drift', () => {
    const p = new Pacer(3000, 7, 0, 0);
    expect(p.dueBy(p.intended(299_999))).toBe(300_000);
    expect(p.dueBy(p.intended(299_999) - 1e-6)).toBe(299_999);
  });

  it('sends what is due within the pipelining budget; the rest is held', () => {
    // 5 due, 2 sent, 1 in flight, pipelining 2: one more may go, two are held.
    expect(scheduleCheck(5, 2, 1, 2, 0, true)).toEqual({ send: 1, heldUpTo: 5 });
    // Nothing in flight: all three go, nothing held.
    expect(scheduleCheck(5, 2, 0, 8, 0, true)).toEqual({ send: 3, heldUpTo: 0 });
    // A connection being re-established sends nothing: everything due is held.
    expect(scheduleCheck(5, 2, 0, 8, 0, false)).toEqual({ send: 0, heldUpTo: 5 });
    // heldUpTo never goes back.
    expect(scheduleCheck(3, 3, 0, 8, 6, true)).toEqual({ send: 0, heldUpTo: 6 });
  });
});
