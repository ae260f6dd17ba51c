/**
 * How many messages the shared queue holds ahead of the workers (pure; pool.ts asks).
 *
 * About QUEUE_AHEAD_MS of work per worker beyond what runs: enough that a worker
 * finishing a message finds the next one without a round trip through the main
 * thread, little enough that a light connection's message, waiting in the fair queue
 * behind the shared one, is not stuck behind a heavy one's hundreds (the shared queue
 * is first come, first served; the fair queue takes every connection in turn).
 * Bounded per worker by AHEAD_MIN and AHEAD_MAX messages; AHEAD_MIN while the cost
 * is unknown (the first burst) and after a worker died (the next message may kill
 * one too: pool.ts then raises its cost estimate to QUEUE_AHEAD_MS).
 */
export const QUEUE_AHEAD_MS = 2;
export const AHEAD_MIN = 2;
/**
 * Measured in-process (200k pooled 64 B echoes, 256 in flight, 2 workers, main thread
 * busy time per message; bench/handoff.ts): 32 -> 6.6-7.6 µs, 256 -> 4.8-5.1 µs (the
 * workers ran dry and parked, and each wake is a futex syscall on the main thread).
 */
export const AHEAD_MAX = 256;

/** Messages the shared queue may hold for `workers` workers at `costMs` per message (0: unknown). */
export function aheadLimit(workers: number, costMs: number): number {
  if (!(costMs > 0)) return AHEAD_MIN * workers;
  return Math.min(AHEAD_MAX * workers, Math.max(AHEAD_MIN * workers, Math.ceil((workers * QUEUE_AHEAD_MS) / costMs)));
}
