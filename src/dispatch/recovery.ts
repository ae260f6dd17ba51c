/**
 * What becomes of the messages a dead worker held (pure; pool.ts acts on it).
 *
 * A worker marks each message it takes with its generation (work-queue.ts): RUNNING
 * while the handler runs synchronously (at most one per worker: it publishes a
 * message's replies before it takes the next, and the main thread reads them before
 * it recovers), ASYNC while an async handler has not settled.
 * - RUNNING: the culprit (it crashed or hung the worker): the error policy.
 * - ASYNC: it cannot be told from a culprit: run again, at most MAX_BLIND_RETRIES
 *   times, then the policy, so nothing is silently lost and a message that kills
 *   every worker cannot loop forever. Except a message with affinity: the state it
 *   ran against died with the worker, and a retry would run behind its key's later
 *   messages (out of order): the policy.
 */
import { ShoalError } from '../errors.js';
import type { SerializedError } from '../errors.js';
import { PHASE_ASYNC, PHASE_RUNNING, STATE_QUEUED_OWN, genOf, phaseOf } from './work-queue.js';

export const MAX_BLIND_RETRIES = 1;

export type Fate = 'culprit' | 'retry' | 'fail';

/** The fate of a slot in `state` after the worker of generation `gen` died; null: not that worker's. */
export function fateOf(state: number, gen: number, retriesSoFar: number, affine = false): Fate | null {
  // FREE, QUEUED and QUEUED_OWN carry generation 0 (no worker's): waiting, nobody's to fail.
  if (state <= STATE_QUEUED_OWN || genOf(state) !== gen) return null;
  const phase = phaseOf(state);
  if (phase === PHASE_RUNNING) return 'culprit';
  if (affine) return 'fail';
  if (phase === PHASE_ASYNC) return retriesSoFar >= MAX_BLIND_RETRIES ? 'fail' : 'retry';
  return 'retry';
}

/** The error a dead worker's failed messages get. */
export function deathError(err: unknown): SerializedError {
  if (err instanceof ShoalError) return err.toJSON();
  const message = (err as Error)?.message ?? String(err);
  return { code: 'SHOAL_WORKER_DIED', message: `worker died: ${message}` };
}

/** The error of the message the watchdog killed its worker for. */
export function timeoutError(handlerTimeout: number): SerializedError {
  return { code: 'SHOAL_HANDLER_TIMEOUT', message: `handler ran past handlerTimeout (${handlerTimeout} ms); its worker was replaced` };
}
