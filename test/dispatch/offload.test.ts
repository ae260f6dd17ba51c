import { describe, expect, it } from 'vitest';
import { INLINE_BELOW_MS, OffloadPolicy, POOL_ABOVE_MS } from '../../dist/src/dispatch/offload.js';

describe('offload policy', () => {
  it('a kind starts in the pool and moves inline only after enough cheap samples', () => {
    const p = new OffloadPolicy('auto');
    for (let i = 0; i < 15; i++) {
      p.observe(1, INLINE_BELOW_MS / 10);
      expect(p.inline(1)).toBe(false);
    }
    p.observe(1, INLINE_BELOW_MS / 10);
    expect(p.inline(1)).toBe(true);
    expect(p.inline(2)).toBe(false); // another kind is judged on its own
  });

  it('hysteresis: between the two thresholds a kind stays where it is; one costly message moves it back', () => {
    const p = new OffloadPolicy('auto');
    for (let i = 0; i < 50; i++) p.observe(-1, INLINE_BELOW_MS / 10);
    expect(p.inline(-1)).toBe(true);
    const between = (INLINE_BELOW_MS + POOL_ABOVE_MS) / 2;
    for (let i = 0; i < 200; i++) p.observe(-1, between);
    expect(p.inline(-1)).toBe(true);
    for (let i = 0; i < 100; i++) p.observe(-1, INLINE_BELOW_MS / 10);
    p.observe(-1, 5); // a 5 ms message (or one preempted that long): counted as 8 x POOL_ABOVE_MS
    expect(p.inline(-1)).toBe(true);
    p.observe(-1, 5); // a second one in a row
    expect(p.inline(-1)).toBe(false);
    for (let i = 0; i < 200; i++) p.observe(-1, between);
    expect(p.inline(-1)).toBe(false);
  });

  it('a pinned kind (it killed a worker) never runs inline; always/never ignore measurements', () => {
    const p = new OffloadPolicy('auto');
    p.pin(3);
    for (let i = 0; i < 100; i++) p.observe(3, 0);
    expect(p.inline(3)).toBe(false);
    const always = new OffloadPolicy('always');
    const never = new OffloadPolicy('never');
    for (let i = 0; i < 100; i++) always.observe(1, 0);
    expect(always.inline(1)).toBe(false);
    expect(never.inline(1)).toBe(true);
  });
});
