/**
 * One message, start to end: decode -> route -> handler -> replies -> error policy.
 *
 * The one path every message takes, wherever it runs: in a pool worker
 * (workers/serve.ts) and on the main thread (dispatch/inline.ts, and the pool's
 * adaptive offload). Only where the replies go differs: a ReplySink.
 */
import { HandlerTimeoutError } from '../src/errors.js';
import type { SerializedError } from '../src/errors.js';
import type { Context, HandlerRuntime, Replies } from './runtime.js';

/** Where a message's outcome goes. `Id` names the message to the sink. */
export interface ReplySink<Id> {
  /**
   * The message's replies (null: none); `close`: close the connection after them.
   * Must write all or nothing: throwing (e.g. a reply over maxFrame) leaves no trace,
   * and the message then fails with that error.
   */
  replies(id: Id, ctx: Context, replies: Replies, close: boolean): void;
  /** The message failed (its error replies, if any, follow through replies()). */
  failed(id: Id, ctx: Context, error: SerializedError): void;
}

/** Reject after `ms` unless `promise` settles first (the timer never outlives the race). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HandlerTimeoutError(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class MessageRunner<Id> {
  readonly runtime: HandlerRuntime;
  readonly #sink: ReplySink<Id>;
  /** ms an async handler may take before its message fails with SHOAL_HANDLER_TIMEOUT; 0 = off. */
  readonly #asyncTimeout: number;

  constructor(runtime: HandlerRuntime, sink: ReplySink<Id>, asyncTimeout: number) {
    this.runtime = runtime;
    this.#sink = sink;
    this.#asyncTimeout = asyncTimeout;
  }

  /**
   * Run one message. A sync handler's outcome is in the sink when this returns
   * (undefined); an async handler's when the returned promise resolves (it never
   * rejects).
   */
  run(id: Id, frame: Buffer, ctx: Context): Promise<void> | undefined {
    let result: Replies | Promise<Replies>;
    try {
      result = this.runtime.run(frame, ctx);
    } catch (err) {
      this.fail(id, ctx, err);
      return undefined;
    }
    if (result instanceof Promise) {
      const p = this.#asyncTimeout > 0 ? withTimeout(result, this.#asyncTimeout) : result;
      return p.then(
        (r) => this.complete(id, ctx, r),
        (err: unknown) => this.fail(id, ctx, err),
      );
    }
    this.complete(id, ctx, result);
    return undefined;
  }

  complete(id: Id, ctx: Context, replies: Replies): void {
    try {
      this.#sink.replies(id, ctx, replies, false);
    } catch (err) {
      this.fail(id, ctx, err); // e.g. a reply over maxFrame: the policy decides
    }
  }

  /** Apply the error policy. Never throws. */
  fail(id: Id, ctx: Context, err: unknown): void {
    const outcome = this.runtime.fail(err, ctx);
    this.#sink.failed(id, ctx, outcome.error);
    try {
      this.#sink.replies(id, ctx, outcome.replies, outcome.close);
    } catch {
      this.#sink.replies(id, ctx, null, outcome.close); // an error reply that cannot be framed: none
    }
  }
}
