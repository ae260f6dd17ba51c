/**
 * Message shapes shared by the main thread (dispatch/) and the workers (workers/).
 *
 * A batch travels as ONE transferred ArrayBuffer, no per-frame structured clone:
 *
 *   [meta: u32 x 4 per frame][peers: u32 x 3 per connection][data: frame bodies, back to back]
 *   meta[i] = peerIndex, sequence, offset into data, length
 *
 * The result comes back as two transferred buffers:
 *   meta: u32 x 3 per frame = status, offset into data, length
 *   data: the encoded reply frames of every message; one message's replies are
 *         contiguous, so a run of one connection's messages is one write.
 */
import type { SerializedError } from '../errors.js';
import type { BuiltinFramingOptions } from '../framing/types.js';
import type { RuntimeSpec } from '../../workers/runtime.js';

export const META_IN = 4;
export const META_OUT = 3;

/** The message's replies (maybe none) are at [offset, offset+length). */
export const STATUS_REPLY = 0;
/** Write the replies, then close the connection (the 'close' error policy). */
export const STATUS_CLOSE = 1;

export interface WorkerSpec {
  runtime: RuntimeSpec;
  /** Built-in framing: workers encode replies. null: a user framing, encoded on the main thread. */
  framing: BuiltinFramingOptions | null;
  maxFrame: number;
  /** ms an async handler may take before its message fails with SHOAL_HANDLER_TIMEOUT; 0 = off. */
  handlerTimeout: number;
  /** With metrics on: the counters workers write (src/admin/shared.ts); absent: no metrics work at all. */
  metrics?: SharedArrayBuffer | null;
  /**
   * Progress cells, PROGRESS_CELL Float64s per batch slot, shared by the main thread
   * and every worker: [index of the message whose handler is running synchronously,
   * or PROGRESS_NOT_STARTED / PROGRESS_ASYNC / PROGRESS_DONE; Date.now() when it
   * started]. Lets the main thread name the culprit when a worker dies, tell a batch
   * that never ran from one that did, and kill a handler stuck past handlerTimeout.
   * One buffer for the pool's life: nothing is allocated per batch.
   */
  progress?: SharedArrayBuffer;
}

export const PROGRESS_CELL = 2;

/**
 * Layout of BatchTask.buf:
 *   [meta: META_IN u32 per frame][peers: META_PEER u32 per connection][frame bodies]
 *   peer = connection id, remote port, index into BatchTask.addrs
 */
export const META_PEER = 3;

export interface BatchTask {
  kind: 'batch';
  count: number;
  /** Distinct connections in the batch. */
  peerCount: number;
  buf: ArrayBuffer;
  /** Distinct remote addresses of the batch's connections (usually one or a few). */
  addrs: string[];
  /** This batch's progress cell in WorkerSpec.progress. */
  slot: number;
  /** With metrics: when pool.run() was called (performance.timeOrigin + performance.now(), ms). */
  sentAt?: number;
}

export const PROGRESS_INDEX = 0;
export const PROGRESS_STARTED = 1;
/** The batch has not started: it was queued behind another on its worker. */
export const PROGRESS_NOT_STARTED = -2;
/** Every handler has been called; async ones may still be running. */
export const PROGRESS_ASYNC = -1;
/** The batch is complete; its result may not have reached the main thread before its worker died. */
export const PROGRESS_DONE = -3;

export interface BatchError extends SerializedError {
  /** Index of the message in the batch. */
  index: number;
}

export interface BatchResult {
  meta: Uint32Array;
  data: Uint8Array;
  /** Handler errors, for the main thread to log and count; null when none. */
  errors: BatchError[] | null;
  /** Time the worker spent on the batch, in ms (sizes the next batches). */
  elapsedMs: number;
  /** Set instead of results when this worker could not load the handler module. */
  loadError?: SerializedError;
  /**
   * The batch's input buffer, transferred back: left in the worker it would be
   * garbage there until that worker's next GC (rare when it is idle), and dead
   * batches piled up tens of MiB. The main thread reuses it for a later batch.
   */
  input?: ArrayBuffer;
}

/**
 * Warm-up, teardown and control: every worker must take part exactly once (see
 * workers/worker.ts). A control task is acted on by the worker named in it; the
 * others only join (that is how a message reaches one chosen worker: Piscina
 * picks workers, and with atomics 'sync' an idle worker reads nothing else).
 */
export interface BarrierTask {
  kind: 'init' | 'teardown' | 'control';
  /** Int32Array over a SharedArrayBuffer: [arrived, failed]. */
  barrier: Int32Array;
  parties: number;
  timeoutMs: number;
  control?: ControlRequest;
}

/** What a control task asks of its target worker (by Node threadId). */
export type ControlRequest =
  | { op: 'profile-start'; target: number; intervalUs: number }
  | { op: 'profile-stop'; target: number };

export interface BarrierResult {
  threadId: number;
  /** This worker had already taken part: ignore this answer. */
  again: boolean;
  error: SerializedError | null;
  /** A control task's answer, from its target (profile-stop: the .cpuprofile JSON text). */
  value?: unknown;
}

export type Task = BatchTask | BarrierTask;
