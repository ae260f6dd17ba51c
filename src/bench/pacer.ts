/**
 * Open-loop pacing (-R), as wrk2 does it: the run has a schedule fixed in advance, and a
 * request's latency counts from the time the schedule says it should have been sent, not
 * from when a slow server finally let us send it (coordinated omission).
 *
 * The total rate R is spread evenly over all connections of all generator threads:
 * connection g (0-based, out of C) sends request i at
 *
 *     intended(i) = t0 + (g + i * C) / R   seconds
 *
 * so the C connections take turns and the whole generator emits one request every 1/R s.
 *
 * One refinement over a plain "latency from intended time": the driver checks the
 * schedule on a ~1 ms timer. A request that is sent on the first check after it fell due
 * is timed from its real send time, so the generator's own timer granularity is not
 * charged to the server. A request that fell due while its connection could not send
 * (all `pipelining` slots waiting for replies, or the connection being re-established)
 * is "held", and its latency counts from its intended time: that wait is the server's.
 */
export class Pacer {
  /** ms between two requests of this connection. */
  readonly interval: number;
  /** ms from t0 to this connection's first request. */
  readonly phase: number;
  readonly t0: number;

  constructor(rate: number, totalConnections: number, globalIndex: number, t0: number) {
    if (!(rate > 0)) throw new RangeError(`rate must be > 0 (got ${rate})`);
    this.interval = (totalConnections * 1000) / rate;
    this.phase = (globalIndex * 1000) / rate;
    this.t0 = t0;
  }

  /** When request i (0-based) of this connection is due, in ms on the same clock as t0. */
  intended(i: number): number {
    return this.t0 + this.phase + i * this.interval;
  }

  /** How many requests are due at `now` (requests 0 .. dueBy(now) - 1). */
  dueBy(now: number): number {
    const since = now - this.t0 - this.phase;
    return since < 0 ? 0 : Math.floor(since / this.interval) + 1;
  }
}

/**
 * What one schedule check sends on one connection (pure, so it can be tested alone).
 * `sent` requests went out so far, `inFlight` wait for replies, `heldUpTo`: requests
 * below this index fell due at an earlier check and could not be sent then.
 * Returns how many to send now and the new heldUpTo. Requests sent are sent..sent+n-1;
 * those below the old heldUpTo are timed from intended(i), the rest from now.
 */
export function scheduleCheck(
  due: number,
  sent: number,
  inFlight: number,
  pipelining: number,
  heldUpTo: number,
  canSend: boolean,
): { send: number; heldUpTo: number } {
  const send = canSend ? Math.max(0, Math.min(due - sent, pipelining - inFlight)) : 0;
  return { send, heldUpTo: sent + send < due ? Math.max(heldUpTo, due) : heldUpTo };
}
