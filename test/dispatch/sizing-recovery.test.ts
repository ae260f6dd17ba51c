import { describe, expect, it } from 'vitest';
import { AHEAD_MAX, AHEAD_MIN, QUEUE_AHEAD_MS, aheadLimit } from '../../dist/src/dispatch/sizing.js';
import { MAX_BLIND_RETRIES, deathError, fateOf, timeoutError } from '../../dist/src/dispatch/recovery.js';
import { PHASE_ASYNC, PHASE_RUNNING, STATE_FREE, STATE_QUEUED, owned } from '../../dist/src/dispatch/work-queue.js';
import { ShoalError } from '../../dist/src/errors.js';

describe('how much the shared queue holds', () => {
  it('about QUEUE_AHEAD_MS of work per worker, within AHEAD_MIN..AHEAD_MAX messages each; the minimum while the cost is unknown', () => {
    expect(aheadLimit(2, 0)).toBe(2 * AHEAD_MIN);
    expect(aheadLimit(2, NaN)).toBe(2 * AHEAD_MIN);
    expect(aheadLimit(2, 0.1)).toBe(Math.ceil((2 * QUEUE_AHEAD_MS) / 0.1)); // ~100 µs: 40
    expect(aheadLimit(2, 1)).toBe(2 * AHEAD_MIN); // ~1 ms: 4, the floor
    expect(aheadLimit(2, 0.0001)).toBe(2 * AHEAD_MAX); // echo-cheap: the cap
    expect(aheadLimit(8, 0.1)).toBe(4 * aheadLimit(2, 0.1)); // scales with the workers
  });
});

describe("a dead worker's messages", () => {
  const gen = 7;
  it('the one running synchronously is the culprit; async ones are run again once, then fail; others are not its', () => {
    expect(fateOf(owned(gen, PHASE_RUNNING), gen, 0)).toBe('culprit');
    expect(fateOf(owned(gen, PHASE_ASYNC), gen, 0)).toBe('retry');
    expect(fateOf(owned(gen, PHASE_ASYNC), gen, MAX_BLIND_RETRIES)).toBe('fail');
    expect(fateOf(owned(gen + 1, PHASE_RUNNING), gen, 0)).toBe(null); // another worker's
    expect(fateOf(STATE_QUEUED, gen, 0)).toBe(null); // nobody took it
    expect(fateOf(STATE_FREE, gen, 0)).toBe(null);
  });

  it('errors keep a coded error as it is; anything else is SHOAL_WORKER_DIED', () => {
    expect(deathError(new ShoalError('SHOAL_POOL_SATURATED', 'full'))).toMatchObject({ code: 'SHOAL_POOL_SATURATED' });
    expect(deathError(new Error('exit code 1'))).toEqual({ code: 'SHOAL_WORKER_DIED', message: 'worker died: exit code 1' });
    expect(timeoutError(500).code).toBe('SHOAL_HANDLER_TIMEOUT');
  });
});
