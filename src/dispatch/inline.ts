import { EventEmitter } from 'node:events';
import type { Framing } from '../framing/types.js';
import { Context, HandlerRuntime } from '../../workers/runtime.js';
import type { Replies, RuntimeSpec } from '../../workers/runtime.js';
import { withTimeout } from '../../workers/batch.js';
import { waitAtMost } from '../wait.js';
import type { DispatchEvents, Dispatcher, DispatcherStats, DispatchTarget } from './types.js';

/** Frame replies into one buffer (null when there are none). Throws if a reply cannot be framed. */
export function frameReplies(framing: Framing, replies: Replies): Buffer | null {
  if (replies === null) return null;
  const enc = framing.encoder;
  if (!Array.isArray(replies)) {
    const out = Buffer.allocUnsafe(enc.frameLength(replies.length));
    enc.encodeInto(replies, out, 0);
    return out;
  }
  let total = 0;
  for (const r of replies) total += enc.frameLength(r.length);
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const r of replies) off += enc.encodeInto(r, out, off);
  return out;
}

/**
 * Times handlers for the metrics (src/admin/metrics.ts). start() returns a clock
 * value, or -1 when this message is not timed (cheap handlers are sampled: a
 * clock read costs as much as an echo handler); end() counts the message.
 */
export interface HandlerTiming {
  start(): number;
  end(route: number | undefined, t0: number): void;
}

/**
 * `workers: 0`: handlers run on the main thread, one call per message, with the
 * same runtime the workers use. The single-thread baseline of every benchmark.
 */
export class InlineDispatcher extends EventEmitter implements Dispatcher {
  readonly saturated = false;
  readonly #spec: RuntimeSpec;
  readonly #framing: Framing;
  readonly #events: DispatchEvents;
  #runtime: HandlerRuntime | null = null;
  #inFlight = 0;
  #sent = 0;

  readonly #handlerTimeout: number;
  /** Set by the admin server when metrics are on: times handlers here, on the main thread. */
  onHandlerTiming: HandlerTiming | null = null;

  /** handlerTimeout applies to async handlers only here: a sync loop on the main thread cannot be stopped. */
  constructor(spec: RuntimeSpec, framing: Framing, events: DispatchEvents, handlerTimeout = 0) {
    super();
    this.#handlerTimeout = handlerTimeout;
    this.#spec = spec;
    this.#framing = framing;
    this.#events = events;
  }

  async start(): Promise<void> {
    this.#runtime = await HandlerRuntime.load(this.#spec, 0);
  }

  submit(target: DispatchTarget, seq: number, frame: Buffer): void {
    const ctx = new Context(target.id, seq, target.remoteAddress, target.remotePort, undefined);
    this.#sent++;
    const timing = this.onHandlerTiming;
    const t0 = timing !== null ? timing.start() : 0;
    let result;
    try {
      result = this.#runtime!.run(frame, ctx);
    } catch (err) {
      timing?.end(ctx.routeId, t0);
      this.#fail(target, seq, ctx, err);
      return;
    }
    if (result instanceof Promise) {
      this.#inFlight++;
      (this.#handlerTimeout > 0 ? withTimeout(result, this.#handlerTimeout) : result).then(
        (r) => {
          this.#inFlight--;
          timing?.end(ctx.routeId, t0);
          this.#complete(target, seq, ctx, r);
        },
        (err) => {
          this.#inFlight--;
          timing?.end(ctx.routeId, t0);
          this.#fail(target, seq, ctx, err);
        },
      );
    } else {
      timing?.end(ctx.routeId, t0);
      this.#complete(target, seq, ctx, result);
    }
  }

  #complete(target: DispatchTarget, seq: number, ctx: Context, replies: Replies): void {
    let bytes;
    try {
      bytes = frameReplies(this.#framing, replies);
    } catch (err) {
      this.#fail(target, seq, ctx, err);
      return;
    }
    target.deliver(seq, 1, bytes, false);
  }

  #fail(target: DispatchTarget, seq: number, ctx: Context, err: unknown): void {
    const outcome = this.#runtime!.fail(err, ctx);
    this.#events.handlerError(target, seq, outcome.error);
    let bytes: Buffer | null = null;
    try {
      bytes = frameReplies(this.#framing, outcome.replies);
    } catch {
      bytes = null;
    }
    target.deliver(seq, 1, bytes, outcome.close);
  }

  stats(): DispatcherStats {
    return {
      workers: 0,
      pendingFrames: 0,
      pendingBytes: 0,
      batchesInFlight: 0,
      framesInFlight: this.#inFlight,
      batchesSent: this.#sent,
      framesSent: this.#sent,
      saturated: false,
    };
  }

  async close(timeoutMs: number): Promise<void> {
    const rt = this.#runtime;
    if (!rt) return;
    await waitAtMost(rt.teardown().catch(() => {}), timeoutMs);
  }
}
