/**
 * What the main thread (dispatch/pool.ts) and the workers (workers/serve.ts) hand
 * each other besides the two shared formats: the work queue (work-queue.ts) and each
 * worker's reply ring (reply-ring.ts).
 *
 * Each worker runs one long Piscina task, a ServeTask, for its whole life: it takes
 * messages from the shared queue until told to stop. Piscina keeps what it does well
 * (starting threads, replacing one that dies, terminating one we abort); the hand-off
 * of each message costs no task, promise or postMessage.
 *
 * Why shared memory and not transferred ArrayBuffers (zero-copy as well)? Transferring
 * detaches the sender's buffer, and the first detach in a thread invalidates V8's
 * "no ArrayBuffer was ever detached" protector for good: from then on every typed
 * array and Buffer access in that thread's optimized code checks for detachment.
 * Handlers heavy on typed arrays ran 18% slower after it (SHA-256 at K=3511:
 * 1.00 -> 1.18 ms per message); shared buffers are never detached.
 */
import type { MessagePort } from 'node:worker_threads';
import type { SerializedError } from '../errors.js';
import type { BuiltinFramingOptions } from '../framing/types.js';
import type { RuntimeSpec } from '../../workers/runtime.js';
import type { ReplyRingBuffers } from './reply-ring.js';
import type { WorkQueueBuffers } from './work-queue.js';

/** How a worker waits when the queue is empty: blocked in Atomics.wait, or with its event loop running. */
export type IdleWait = 'sync' | 'async';

export interface WorkerSpec {
  runtime: RuntimeSpec;
  /** Built-in framing: workers encode replies. null: a user framing, encoded on the main thread. */
  framing: BuiltinFramingOptions | null;
  maxFrame: number;
  /** ms an async handler may take before its message fails with SHOAL_HANDLER_TIMEOUT; 0 = off. */
  handlerTimeout: number;
  idleWait: IdleWait;
  /** With metrics on: the counters workers write (src/admin/shared.ts); absent: no metrics work at all. */
  metrics?: SharedArrayBuffer | null;
}

/**
 * A worker's own cell, shared with the main thread: Int32 [W_CURRENT, W_THREAD] then
 * Float64 [W_STARTED]. W_CURRENT is the message slot whose handler runs synchronously
 * right now (-1: none), W_STARTED when it started (Date.now(), only with a
 * handlerTimeout): the main thread's watchdog terminates a worker stuck past it.
 */
export const W_CURRENT = 0;
export const W_THREAD = 1;
export const W_STARTED = 1; // index in the Float64 view
export const WORKER_CELL_BYTES = 16;

export interface ServeTask {
  kind: 'serve';
  /** This worker's generation: the owner tag of the message slots it takes. */
  gen: number;
  /** This worker's position (0..workers-1): its own queue for messages with affinity (work-queue.ts). */
  shard: number;
  queue: WorkQueueBuffers;
  ring: ReplyRingBuffers;
  cell: SharedArrayBuffer;
  /** Replies too large for the ring (reply-ring.ts). */
  overflow: MessagePort;
  /** Ready/failed notices and control requests and answers. */
  control: MessagePort;
}

/** What a serve task ends with (a worker that dies rejects it instead). */
export interface ServeResult {
  /** Set when this worker could not load the handler module (it served nothing). */
  loadError?: SerializedError;
}

/** Worker -> main on the control port. */
export type WorkerNotice =
  | { type: 'ready'; threadId: number }
  | { type: 'answer'; id: number; value?: unknown; error?: SerializedError };

/** Main -> worker on the control port: a request for that worker. */
export type ControlRequest =
  | { op: 'profile-start'; target: number; intervalUs: number }
  | { op: 'profile-stop'; target: number };

export interface ControlMessage {
  id: number;
  request: ControlRequest;
}
