import { describe, expect, it } from 'vitest';
import { CONFIRM_COSTLY, INLINE_BELOW_MS, INLINE_SAMPLE_EVERY, OffloadPolicy, POOL_ABOVE_MS, RUN_INLINE, RUN_INLINE_TIMED, RUN_POOL } from '../../dist/src/dispatch/offload.js';
import { HOLD_BELOW_MS } from '../../dist/src/dispatch/work-queue.js';

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

  it('hysteresis: between the two thresholds a kind stays where it is; costly messages move it back only in a row', () => {
    const p = new OffloadPolicy('auto');
    for (let i = 0; i < 50; i++) p.observe(-1, INLINE_BELOW_MS / 10);
    expect(p.inline(-1)).toBe(true);
    const between = (INLINE_BELOW_MS + POOL_ABOVE_MS) / 2;
    for (let i = 0; i < 200; i++) p.observe(-1, between);
    expect(p.inline(-1)).toBe(true);
    for (let i = 0; i < 100; i++) p.observe(-1, INLINE_BELOW_MS / 10);
    // Messages preempted for 5 ms, each followed by a cheap one: the average goes over the line, the kind stays.
    for (let i = 0; i < 10; i++) {
      for (let j = 0; j < CONFIRM_COSTLY - 1; j++) p.observe(-1, 5);
      p.observe(-1, INLINE_BELOW_MS / 10);
      expect(p.inline(-1)).toBe(true);
    }
    for (let i = 0; i < 100; i++) p.observe(-1, INLINE_BELOW_MS / 10);
    for (let j = 0; j < CONFIRM_COSTLY - 1; j++) p.observe(-1, 5);
    expect(p.inline(-1)).toBe(true);
    p.observe(-1, 5); // the last of CONFIRM_COSTLY in a row
    expect(p.inline(-1)).toBe(false);
    for (let i = 0; i < 200; i++) p.observe(-1, between);
    expect(p.inline(-1)).toBe(false);
  });

  it('an inline kind is timed one message in 16, and every message after a costly sample until it is confirmed or not', () => {
    const p = new OffloadPolicy('auto');
    for (let i = 0; i < 50; i++) p.observe(7, INLINE_BELOW_MS / 10);
    const sampled = (n: number) => Array.from({ length: n }, () => p.route(7)).filter((w) => w === RUN_INLINE_TIMED).length;
    expect(sampled(INLINE_SAMPLE_EVERY * 10)).toBe(10);
    p.observe(7, 5);
    expect(sampled(5)).toBe(5); // confirming
    p.observe(7, INLINE_BELOW_MS / 10); // not confirmed: back to one in 16
    expect(sampled(INLINE_SAMPLE_EVERY * 10)).toBe(10);
    expect(p.inline(7)).toBe(true);
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
    expect(always.route(1)).toBe(RUN_POOL);
    expect(never.route(1)).toBe(RUN_INLINE); // inline, and never a sample: 'never' measures nothing
    expect(p.route(3)).toBe(RUN_POOL);
  });

  it('shortBelow: unknown kinds are not short; one long sample keeps a kind from being short for a while, in every mode', () => {
    for (const mode of ['auto', 'always', 'never'] as const) {
      const p = new OffloadPolicy(mode);
      expect(p.shortBelow(1, HOLD_BELOW_MS)).toBe(false);
      for (let i = 0; i < 20; i++) p.observe(1, HOLD_BELOW_MS / 4);
      expect(p.shortBelow(1, HOLD_BELOW_MS)).toBe(true);
      expect(p.shortBelow(2, HOLD_BELOW_MS)).toBe(false);
      p.observe(1, 50); // one long message among short ones
      let after = 0;
      while (!p.shortBelow(1, HOLD_BELOW_MS)) {
        p.observe(1, HOLD_BELOW_MS / 4);
        after++;
      }
      expect(after).toBeGreaterThanOrEqual(50);
      expect(after).toBeLessThanOrEqual(100);
    }
  });
});
