import { EventEmitter } from 'node:events';
import type { SerializedError } from '../errors.js';
import type { Framing } from '../framing/types.js';
import { Context, HandlerRuntime } from '../../workers/runtime.js';
import type { Replies, RuntimeSpec } from '../../workers/runtime.js';
import { MessageRunner } from '../../workers/message.js';
import type { ReplySink } from '../../workers/message.js';
import { waitAtMost } from '../wait.js';
import { framePushes } from './push-wire.js';
import type { DispatchEvents, Dispatcher, DispatcherStats, DispatchTarget, FramedBytes } from './types.js';

/**
 * A single reply at least this large goes out as [header, body] when the framing can say
 * its header alone (FrameEncoder.encodeHeader): the body is written as the handler made it,
 * not copied. On the 16 KiB echo the copy was most of the main thread's memmove, and each
 * copy is external memory V8 counts toward its next collection.
 */
export const UNCOPIED_REPLY_BYTES = 4096;

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
 * Runs messages on the main thread, replies straight to their connection: the one
 * message path (workers/message.ts) with a sink that frames and delivers. Used by
 * `workers: 0` and by the pool for the messages its adaptive offload keeps inline.
 */
export class InlineExecutor implements ReplySink<DispatchTarget> {
  readonly #framing: Framing;
  readonly #events: DispatchEvents;
  readonly runner: MessageRunner<DispatchTarget>;
  /** A lone reply body is already its frame (RESP): sent as it is, not copied into a new buffer. */
  readonly #framed: boolean;
  /** Async handlers not settled yet. */
  pending = 0;

  constructor(runtime: HandlerRuntime, framing: Framing, events: DispatchEvents, asyncTimeout: number) {
    this.#framing = framing;
    this.#events = events;
    this.runner = new MessageRunner(runtime, this, asyncTimeout);
    this.#framed = framing.encoder.identity === true && runtime.repliesFramed;
  }

  /** Run one message; resolves (never rejects) once an async handler's replies are delivered. */
  run(target: DispatchTarget, seq: number, frame: Buffer): Context | Promise<Context> {
    const ctx = Context.of(target, seq);
    const done = this.runner.run(target, frame, ctx);
    if (done === undefined) return ctx;
    this.pending++;
    return done.then(() => {
      this.pending--;
      return ctx;
    });
  }

  /** Clock read when the last sync message's replies came, before they were framed and written (-1: not timed). */
  clock = -1;
  /** Read the clock at the next sync reply (the offload's measure of handler time, without the socket write). */
  timeNext = false;

  replies(target: DispatchTarget, ctx: Context, replies: Replies, close: boolean): void {
    if (this.timeNext) {
      this.timeNext = false;
      this.clock = performance.now();
    }
    let bytes: FramedBytes | null;
    const enc = this.#framing.encoder;
    if (replies === null || Array.isArray(replies)) {
      bytes = frameReplies(this.#framing, replies);
    } else if (this.#framed) {
      enc.frameLength(replies.length); // maxFrame still holds
      bytes = replies;
    } else if (replies.length >= UNCOPIED_REPLY_BYTES && enc.encodeHeader !== undefined) {
      const header = Buffer.allocUnsafe(enc.frameLength(replies.length) - replies.length);
      enc.encodeHeader(replies.length, header, 0);
      bytes = [header, replies];
    } else {
      bytes = frameReplies(this.#framing, replies);
    }
    const pushes = ctx.encodedPushes;
    // Both framed before anything is delivered: all or nothing.
    target.deliver(ctx.sequence, 1, bytes, close, pushes === null ? null : framePushes(this.#framing, pushes));
  }

  failed(target: DispatchTarget, ctx: Context, error: SerializedError): void {
    this.#events.handlerError(target, ctx.sequence, error);
  }
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
  readonly #handlerTimeout: number;
  #exec: InlineExecutor | null = null;
  #sent = 0;
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
    const runtime = await HandlerRuntime.load(this.#spec, 0);
    this.#exec = new InlineExecutor(runtime, this.#framing, this.#events, this.#handlerTimeout);
  }

  submit(target: DispatchTarget, seq: number, frame: Buffer): void {
    this.#sent++;
    const timing = this.onHandlerTiming;
    if (timing === null) {
      this.#exec!.run(target, seq, frame);
      return;
    }
    const t0 = timing.start();
    const r = this.#exec!.run(target, seq, frame);
    if (r instanceof Promise) void r.then((ctx) => timing.end(ctx.routeId, t0));
    else timing.end(r.routeId, t0);
  }

  stats(): DispatcherStats {
    const pending = this.#exec?.pending ?? 0;
    return {
      workers: 0,
      pendingFrames: 0,
      pendingBytes: 0,
      batchesInFlight: 0,
      framesInFlight: pending,
      batchesSent: this.#sent,
      framesSent: this.#sent,
      saturated: false,
    };
  }

  async close(timeoutMs: number): Promise<void> {
    const rt = this.#exec?.runner.runtime;
    if (!rt) return;
    await waitAtMost(rt.teardown().catch(() => {}), timeoutMs);
  }
}
