import { describe, expect, it } from 'vitest';
import { PACE_TOLERANCE, paceHolds } from '../../dist/bench/calibration.js';

describe('the calibration pace check', () => {
  it('keeps a stored step cost within the tolerance and drops one from another machine', () => {
    expect(PACE_TOLERANCE).toBeGreaterThan(0);
    expect(paceHolds(0.62, 0.62)).toBe(true);
    expect(paceHolds(0.62, 0.62 * (1 + PACE_TOLERANCE * 0.9))).toBe(true);
    expect(paceHolds(0.62, 0.62 * (1 - PACE_TOLERANCE * 0.9))).toBe(true);
    expect(paceHolds(0.62, 0.62 * (1 + PACE_TOLERANCE * 1.1))).toBe(false);
    // 2026-12-01's calibration (0.6207 µs per step) on 2026-12-03's machine (0.215)
    expect(paceHolds(0.6207, 0.215)).toBe(false);
    expect(paceHolds(0.215, 0.6207)).toBe(false);
  });
});
