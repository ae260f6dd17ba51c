/**
 * Runs one batch through the handler runtime and packs the replies.
 * Pure of threads: the worker calls it, and so do unit tests.
 */
import { HandlerTimeoutError } from '../src/errors.js';
import { META_IN, META_OUT, PROGRESS_ASYNC, PROGRESS_DONE, PROGRESS_INDEX, PROGRESS_STARTED, STATUS_CLOSE, STATUS_REPLY } from '../src/dispatch/protocol.js';
import type { BatchError, BatchResult, BatchTask } from '../src/dispatch/protocol.js';
import type { FrameEncoder } from '../src/framing/types.js';
import { RouteTimer } from '../src/admin/histogram.js';
import { Context } from './runtime.js';
import type { HandlerRuntime, Replies } from './runtime.js';

/** A growable output buffer that frames replies as it appends them. */
export class ReplyPacker {
  buf: Uint8Array;
  length = 0;
  readonly #encoder: FrameEncoder | null;

  constructor(capacity: number, encoder: FrameEncoder | null) {
    this.buf = new Uint8Array(Math.max(64, capacity));
    this.#encoder = encoder;
  }

  /** Append the framed replies; with no encoder, as [u32 BE length][body] for the main thread to frame. */
  append(replies: Replies): void {
    if (replies === null) return;
    if (Array.isArray(replies)) {
      for (const r of replies) this.#appendOne(r);
    } else {
      this.#appendOne(replies);
    }
  }

  #appendOne(body: Uint8Array): void {
    const enc = this.#encoder;
    const need = enc ? enc.frameLength(body.length) : 4 + body.length;
    this.#reserve(need);
    if (enc) {
      enc.encodeInto(body, this.buf, this.length);
    } else {
      new DataView(this.buf.buffer).setUint32(this.length, body.length);
      this.buf.set(body, this.length + 4);
    }
    this.length += need;
  }

  #reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}

/** Reject after `ms` unless `promise` settles first (the timer never outlives the race). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HandlerTimeoutError(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function runBatch(
  task: BatchTask,
  runtime: HandlerRuntime,
  encoder: FrameEncoder | null,
  handlerTimeout = 0,
  metrics = false,
): Promise<BatchResult> {
  const started = performance.now();
  const { count, buf, peers, progress } = task;
  // Metrics: one clock read per handler call and a bucket count, all in this thread.
  const timer = metrics ? new RouteTimer() : null;
  const queueWaitMs = task.sentAt !== undefined ? Math.max(0, performance.timeOrigin + started - task.sentAt) : NaN;
  const metaIn = new Uint32Array(buf, 0, count * META_IN);
  const dataStart = count * META_IN * 4;
  const metaOut = new Uint32Array(count * META_OUT);
  const packer = new ReplyPacker(buf.byteLength - dataStart + count * 8, encoder);
  let errors: BatchError[] | null = null;
  let pending: { index: number; ctx: Context; promise: Promise<Replies> }[] | null = null;

  const fail = (index: number, ctx: Context, err: unknown): void => {
    const outcome = runtime.fail(err, ctx);
    (errors ??= []).push({ index, ...outcome.error });
    const start = packer.length;
    try {
      packer.append(outcome.replies);
    } catch {
      packer.length = start; // an error reply that cannot be framed: send nothing
    }
    metaOut[index * META_OUT] = outcome.close ? STATUS_CLOSE : STATUS_REPLY;
    metaOut[index * META_OUT + 1] = start;
    metaOut[index * META_OUT + 2] = packer.length - start;
  };

  const complete = (index: number, ctx: Context, replies: Replies): void => {
    const start = packer.length;
    try {
      packer.append(replies);
    } catch (err) {
      packer.length = start; // e.g. a reply over maxFrame: the policy decides
      fail(index, ctx, err);
      return;
    }
    metaOut[index * META_OUT] = STATUS_REPLY;
    metaOut[index * META_OUT + 1] = start;
    metaOut[index * META_OUT + 2] = packer.length - start;
  };

  for (let i = 0; i < count; i++) {
    const m = i * META_IN;
    const p = metaIn[m]! * 3;
    const frame = Buffer.from(buf, dataStart + metaIn[m + 2]!, metaIn[m + 3]!);
    const ctx = new Context(peers[p] as number, metaIn[m + 1]!, peers[p + 1] as string, peers[p + 2] as number, undefined);
    let result: Replies | Promise<Replies>;
    // One store per message (two with a timeout): cheap, and it names the culprit if we die here.
    if (handlerTimeout > 0) progress[PROGRESS_STARTED] = Date.now();
    progress[PROGRESS_INDEX] = i;
    const t0 = timer !== null ? performance.now() : 0;
    try {
      result = runtime.run(frame, ctx);
    } catch (err) {
      timer?.observe(ctx.routeId, performance.now() - t0);
      fail(i, ctx, err);
      continue;
    }
    if (result instanceof Promise) {
      if (timer !== null) result = timed(result, timer, ctx, t0);
      (pending ??= []).push({ index: i, ctx, promise: result });
    } else {
      timer?.observe(ctx.routeId, performance.now() - t0);
      complete(i, ctx, result);
    }
  }

  progress[PROGRESS_INDEX] = PROGRESS_ASYNC;

  if (pending !== null) {
    // Async handlers of one batch run concurrently; each result lands in its own slot.
    // An async handler past the deadline is not killed (its thread is fine); its message fails.
    const settled = await Promise.allSettled(
      pending.map((p) => (handlerTimeout > 0 ? withTimeout(p.promise, handlerTimeout) : p.promise)),
    );
    for (let k = 0; k < pending.length; k++) {
      const { index, ctx } = pending[k]!;
      const s = settled[k]!;
      if (s.status === 'fulfilled') complete(index, ctx, s.value);
      else fail(index, ctx, s.reason);
    }
  }
  const out: BatchResult = { meta: metaOut, data: packer.buf, errors, elapsedMs: performance.now() - started };
  if (timer !== null) out.metrics = timer.encode(queueWaitMs);
  progress[PROGRESS_INDEX] = PROGRESS_DONE;
  return out;
}

/** An async handler's duration runs until it settles. */
function timed(promise: Promise<Replies>, timer: RouteTimer, ctx: Context, t0: number): Promise<Replies> {
  return promise.then(
    (r) => {
      timer.observe(ctx.routeId, performance.now() - t0);
      return r;
    },
    (err: unknown) => {
      timer.observe(ctx.routeId, performance.now() - t0);
      throw err;
    },
  );
}
