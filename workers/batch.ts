/**
 * Runs one batch through the handler runtime and packs the replies.
 * Pure of threads: the worker calls it, and so do unit tests.
 */
import { HandlerTimeoutError } from '../src/errors.js';
import { META_IN, META_OUT, META_PEER, PROGRESS_ASYNC, PROGRESS_BYTES, PROGRESS_DONE, PROGRESS_INDEX, PROGRESS_STARTED, STATUS_CLOSE, STATUS_REPLY } from '../src/dispatch/protocol.js';
import type { BatchError, BatchResult, BatchTask } from '../src/dispatch/protocol.js';
import type { FrameEncoder } from '../src/framing/types.js';
import type { WorkerMeter } from '../src/admin/shared.js';
import { Context } from './runtime.js';
import type { HandlerRuntime, Replies } from './runtime.js';

/**
 * The output of a batch: frames replies into the slot's shared output buffer as it
 * appends them; past its end, into a larger shared buffer (`grown`) that the main
 * thread keeps for the slot's next batches.
 */
export class ReplyPacker {
  buf: Uint8Array;
  length = 0;
  grown = false;
  readonly #encoder: FrameEncoder | null;

  constructor(output: SharedArrayBuffer, encoder: FrameEncoder | null) {
    this.buf = new Uint8Array(output);
    this.#encoder = encoder;
  }

  get output(): SharedArrayBuffer {
    return this.buf.buffer as SharedArrayBuffer;
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
    const next = new Uint8Array(new SharedArrayBuffer(Math.max(this.buf.length * 2, this.length + n, 4096)));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.grown = true;
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

/** Messages are timed in runs of this many while they are cheap (see runBatch). */
const RUN_LENGTH = 8;

export async function runBatch(
  task: BatchTask,
  runtime: HandlerRuntime,
  encoder: FrameEncoder | null,
  /** This batch's progress cell (see PROGRESS_CELL), at the head of its input. */
  progress: Float64Array,
  handlerTimeout = 0,
  meter: WorkerMeter | null = null,
): Promise<BatchResult> {
  const started = performance.now();
  const { count, input, peerCount, addrs } = task;
  // Metrics (meter): bucket counts in shared memory, and as few clock reads as we can.
  // A clock read costs ~50 ns on these machines, as much as an echo handler: timing
  // each message with two reads cost 10% of req/s on 64-byte echo. So a message's
  // time runs from the end of the previous one (its frame view, context, handler and
  // the packing of its replies: one read each), and while messages are cheap (under
  // CHEAP_MS on average, no routing) they are timed in runs of RUN_LENGTH, each
  // message getting the run's mean.
  const timer = meter;
  let tPrev = started;
  let runLength = timer !== null && timer.cheap && runtime.spec.routing === null ? RUN_LENGTH : 1;
  let inRun = 0;
  const timeSync = (route: number | undefined): void => {
    if (++inRun < runLength) return;
    const t = performance.now();
    timer!.handlers(route, t - tPrev, inRun);
    tPrev = t;
    inRun = 0;
  };
  const metaIn = new Uint32Array(input, PROGRESS_BYTES, count * META_IN);
  const peers = new Uint32Array(input, PROGRESS_BYTES + count * META_IN * 4, peerCount * META_PEER);
  const dataStart = PROGRESS_BYTES + (count * META_IN + peerCount * META_PEER) * 4;
  // Copied back by postMessage (small); the replies stay in the shared output.
  const metaOut = new Uint32Array(count * META_OUT);
  const packer = new ReplyPacker(task.output, encoder);
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
    const p = metaIn[m]! * META_PEER;
    const frame = Buffer.from(input, dataStart + metaIn[m + 2]!, metaIn[m + 3]!);
    const ctx = new Context(peers[p]!, metaIn[m + 1]!, addrs[peers[p + 2]!]!, peers[p + 1]!, undefined);
    let result: Replies | Promise<Replies>;
    // One store per message (two with a timeout): cheap, and it names the culprit if we die here.
    if (handlerTimeout > 0) progress[PROGRESS_STARTED] = Date.now();
    progress[PROGRESS_INDEX] = i;
    try {
      result = runtime.run(frame, ctx);
    } catch (err) {
      fail(i, ctx, err);
      if (timer !== null) timeSync(ctx.routeId);
      continue;
    }
    if (result instanceof Promise) {
      if (timer !== null) {
        // An async handler's time runs until it settles; from here on, one read per message.
        const t = performance.now();
        if (inRun > 0) timer.handlers(ctx.routeId, t - tPrev, inRun);
        result = timed(result, timer, ctx, inRun > 0 ? t : tPrev);
        tPrev = t;
        inRun = 0;
        runLength = 1;
      }
      (pending ??= []).push({ index: i, ctx, promise: result });
    } else {
      complete(i, ctx, result);
      if (timer !== null) timeSync(ctx.routeId);
    }
  }
  if (inRun > 0) {
    const t = performance.now();
    timer!.handlers(undefined, t - tPrev, inRun);
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
  const ended = performance.now();
  const out: BatchResult = { meta: metaOut, length: packer.length, errors, elapsedMs: ended - started };
  if (packer.grown) out.output = packer.output;
  if (timer !== null) {
    const waitMs = task.sentAt !== undefined ? Math.max(0, performance.timeOrigin + started - task.sentAt) : NaN;
    timer.batch(count, waitMs, out.elapsedMs, ended);
  }
  progress[PROGRESS_INDEX] = PROGRESS_DONE;
  return out;
}

/** An async handler's duration runs until it settles. */
function timed(promise: Promise<Replies>, timer: WorkerMeter, ctx: Context, t0: number): Promise<Replies> {
  return promise.then(
    (r) => {
      timer.handlers(ctx.routeId, performance.now() - t0, 1);
      return r;
    },
    (err: unknown) => {
      timer.handlers(ctx.routeId, performance.now() - t0, 1);
      throw err;
    },
  );
}
