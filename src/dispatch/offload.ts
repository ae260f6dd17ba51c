/**
 * Adaptive offload: where each message runs, decided from what its kind costs.
 *
 * A message cheaper than the hand-off to a worker is cheaper to run on the main
 * thread than to send away: the main thread spends about as much on the copy in,
 * the queue and the reply as the handler would take, and the reply comes back a
 * thread hop later. So per kind (a route with routing, else the handler as a whole)
 * shoal keeps a moving average of the measured handler time and runs the kind inline
 * while it is below INLINE_BELOW_MS, in the pool once it is above POOL_ABOVE_MS (the
 * gap between the two is the hysteresis: a kind near the line does not flap). Every
 * message in the pool is timed by its worker; inline ones are sampled. A kind starts
 * in the pool: an unknown handler could block the main thread for long.
 *
 * `offload: 'always'` sends every message to the pool, `'never'` runs every message
 * inline (as `workers: 0` does, with the pool idle).
 */

export type OffloadMode = 'auto' | 'always' | 'never';

/** Where a message runs (OffloadPolicy.route()). */
export const RUN_POOL = 0;
export const RUN_INLINE = 1;
/** Inline, and timed: a sample of its kind's cost. */
export const RUN_INLINE_TIMED = 2;
export type Placement = typeof RUN_POOL | typeof RUN_INLINE | typeof RUN_INLINE_TIMED;

/**
 * Measured on the 2-core machine (bench protocol, 64 x 16 pipelined): the main thread's
 * own cost of one pooled message was ~3-5 µs (bench/handoff.ts) against ~1 µs for running
 * a 64-byte echo inline, and a trivial handler measured 3-12 µs in a worker (its time
 * there includes decoding, routing and encoding; these machines differ 2-3x). Kinds
 * under 20 µs run inline; over 50 µs, in the pool.
 */
export const INLINE_BELOW_MS = 0.02;
export const POOL_ABOVE_MS = 0.05;
/** Samples before a kind may move inline: the first messages of a cold worker are slow. */
const MIN_SAMPLES = 16;
/** Samples count at most this much (ms): see observe(). */
const CLAMP_MS = 8 * POOL_ABOVE_MS;
/**
 * Samples over POOL_ABOVE_MS in a row before an inline kind goes back to the pool. One
 * message preempted on a busy machine is timed at the preemption's length; the message run
 * right after it, in the thread's fresh time slice, is not: a cost that is real shows in
 * every sample.
 */
export const CONFIRM_COSTLY = 3;
/** Weight of a new sample in the moving average. */
const ALPHA = 0.1;
/** A sample of CLAMP_MS weighs above HOLD_BELOW_MS (work-queue.ts) for ~70 samples after it. */
const PEAK_DECAY = 0.99;
/** An inline kind is timed once every this many messages (a clock read costs about an echo). */
export const INLINE_SAMPLE_EVERY = 16;
/** Distinct kinds tracked; more share the last one. */
const MAX_KINDS = 1024;

class Kind {
  inline = false;
  cost = 0;
  samples = 0;
  pinned = false;
  /** Counts inline messages, to sample one in INLINE_SAMPLE_EVERY. */
  tick = 0;
  /** Inline samples over POOL_ABOVE_MS in a row; while any, every message is timed. */
  costly = 0;
  /** The largest recent sample, decaying by PEAK_DECAY per sample (shortBelow). */
  peak = 0;
}

export class OffloadPolicy {
  readonly mode: OffloadMode;
  readonly #kinds = new Map<number, Kind>();
  /** The kind of the last lookup: most traffic is one kind at a time. */
  #lastKey = NaN;
  #last: Kind | null = null;
  /** Shared by the kinds past MAX_KINDS. */
  readonly #overflow = new Kind();

  constructor(mode: OffloadMode) {
    this.mode = mode;
  }

  #kind(key: number): Kind {
    if (key === this.#lastKey) return this.#last!;
    let k = this.#kinds.get(key);
    if (k === undefined) {
      if (this.#kinds.size < MAX_KINDS) this.#kinds.set(key, (k = new Kind()));
      else k = this.#overflow;
    }
    this.#lastKey = key;
    this.#last = k;
    return k;
  }

  /** Does this kind run inline now? (A query: it counts no message.) */
  inline(key: number): boolean {
    if (this.mode !== 'auto') return this.mode === 'never';
    return this.#kind(key).inline;
  }

  /**
   * Where this message runs, in one lookup (the path of every message): in the pool, inline,
   * or inline and timed as a sample of its kind. Samples are one in INLINE_SAMPLE_EVERY, and
   * every message after a costly sample until the next few confirm it or not (a kind that
   * turned costly leaves the main thread after CONFIRM_COSTLY messages, not that many x 16).
   */
  route(key: number): Placement {
    if (this.mode !== 'auto') return this.mode === 'never' ? RUN_INLINE : RUN_POOL;
    const k = this.#kind(key);
    if (!k.inline) return RUN_POOL;
    return ++k.tick % INLINE_SAMPLE_EVERY === 0 || k.costly > 0 ? RUN_INLINE_TIMED : RUN_INLINE;
  }

  /** Keep this kind in the pool for good: one of its messages killed or hung a worker. */
  pin(key: number): void {
    const k = this.#kind(key);
    k.pinned = true;
    k.inline = false;
  }

  /** A message of this kind took `ms` of handler time (inline or in a worker). */
  observe(key: number, ms: number): void {
    const k = this.#kind(key);
    // A sample is clamped, and an inline kind moves only after CONFIRM_COSTLY costly samples
    // in a row: messages preempted for milliseconds here and there (a busy machine) must not
    // move a cheap kind, while a kind that costs more now does move.
    const v = ms < CLAMP_MS ? ms : CLAMP_MS;
    k.cost = k.samples === 0 ? v : k.cost + (v - k.cost) * ALPHA;
    k.samples++;
    const decayed = k.peak * PEAK_DECAY;
    k.peak = v > decayed ? v : decayed;
    // Every mode keeps the estimate (shortBelow); only 'auto' moves kinds.
    if (this.mode !== 'auto') return;
    if (k.inline) {
      k.costly = v > POOL_ABOVE_MS ? k.costly + 1 : 0;
      if (k.cost > POOL_ABOVE_MS && k.costly >= CONFIRM_COSTLY) {
        k.inline = false;
        k.costly = 0;
      }
    } else if (!k.pinned && k.samples >= MIN_SAMPLES && k.cost < INLINE_BELOW_MS) {
      k.inline = true;
    }
  }

  /**
   * Is this kind's next message expected to take less than `ms`? Only if none of its recent
   * samples took that long (a kind of mostly short messages and some long ones is not short);
   * false while its cost is unknown.
   */
  shortBelow(key: number, ms: number): boolean {
    const k = this.#kind(key);
    return k.samples > 0 && k.peak < ms;
  }

  /** For stats: kinds inline and in the pool. */
  summary(): { inline: number; pool: number } {
    let inline = 0;
    for (const k of this.#kinds.values()) if (k.inline) inline++;
    return { inline, pool: this.#kinds.size - inline };
  }
}
