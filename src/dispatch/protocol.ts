/**
 * Message shapes shared by the main thread (dispatch/) and the workers (workers/).
 *
 * A batch travels in two SharedArrayBuffers that belong to its slot (a slot is one
 * of the workers x tasksPerWorker batches that can be out at once), reused batch
 * after batch, so nothing is copied by postMessage and nothing is transferred:
 *
 *   input:  [progress: PROGRESS_CELL f64][meta: u32 x META_IN per frame]
 *           [peers: u32 x META_PEER per connection][data: frame bodies, back to back]
 *           meta[i] = peerIndex, sequence, offset into data, length
 *   output: the encoded reply frames of every message; one message's replies are
 *           contiguous, so a run of one connection's messages is one write.
 *
 * The result carries a small copied meta array (u32 x META_OUT per frame = status,
 * offset into output, length) and the number of output bytes used.
 *
 * Why not transfer ArrayBuffers (zero-copy as well)? Transferring detaches the
 * sender's buffer, and the first detach in a thread invalidates V8's "no
 * ArrayBuffer was ever detached" protector for good: from then on every typed
 * array and Buffer access in that thread's optimized code checks for detachment.
 * Handlers heavy on typed arrays ran 18% slower after it (SHA-256 at K=3511:
 * 1.00 -> 1.18 ms per message); shared buffers are never detached.
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
}

/**
 * The progress cell at the head of a batch's input, PROGRESS_CELL Float64s shared by
 * the main thread and the worker: [index of the message whose handler is running
 * synchronously, or PROGRESS_NOT_STARTED / PROGRESS_ASYNC / PROGRESS_DONE; Date.now()
 * when it started]. Lets the main thread name the culprit when a worker dies, tell a
 * batch that never ran from one that did, and kill a handler stuck past handlerTimeout.
 */
export const PROGRESS_CELL = 2;
export const PROGRESS_BYTES = PROGRESS_CELL * 8;

/** A peer in the input: connection id, remote port, index into BatchTask.addrs. */
export const META_PEER = 3;

export interface BatchTask {
  kind: 'batch';
  count: number;
  /** Distinct connections in the batch. */
  peerCount: number;
  /** The slot's input (layout above); the main thread wrote it, the worker only reads it. */
  input: SharedArrayBuffer;
  /** The slot's output, for the replies; a worker that needs more makes a larger one. */
  output: SharedArrayBuffer;
  /** Distinct remote addresses of the batch's connections (usually one or a few). */
  addrs: string[];
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
  /** META_OUT u32 per frame: status, offset into the output, length. */
  meta: Uint32Array;
  /** Bytes of replies at the start of the output. */
  length: number;
  /** Set when the replies did not fit the slot's output: a larger buffer holding them. */
  output?: SharedArrayBuffer;
  /** Handler errors, for the main thread to log and count; null when none. */
  errors: BatchError[] | null;
  /** Time the worker spent on the batch, in ms (sizes the next batches). */
  elapsedMs: number;
  /** Set instead of results when this worker could not load the handler module. */
  loadError?: SerializedError;
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
